"""The message layer's fixed bodies, for code outside the engine (spec.md §4.5, §7.1.3,
§7.2.1): error bodies, holes, V1 stream calls and chunks, and the V1 limits.

    from xdrstream.protocol import bodies
    bodies.unpack_error(payload)              # -> RemoteError (RemoteProtocolError if bad)
    bodies.pack_v1_call(1, bodies.V1Op.READ, 4096)

The implementation is :mod:`xdrstream.protocol._bodies` (hand-written :mod:`struct` code on
the engine's hot path); this module is its public face. Decoders are strict and raise
:class:`~xdrstream.protocol.errors.RemoteProtocolError` naming the payload byte offset.
"""

from xdrstream.protocol._bodies import (
    UUID_SIZE,
    V1_CHUNK_MAX,
    V1_WINDOW,
    V1Op,
    check_error,
    pack_error,
    pack_hole,
    pack_v1_call,
    pack_v1_chunk,
    pad,
    unpack_error,
    unpack_hole,
    unpack_v1_call,
    unpack_v1_chunk,
    v1_chunk_data_prefix,
    v1_data_prefix,
)

__all__ = [
    "UUID_SIZE",
    "V1_CHUNK_MAX",
    "V1_WINDOW",
    "V1Op",
    "check_error",
    "pack_error",
    "pack_hole",
    "pack_v1_call",
    "pack_v1_chunk",
    "pad",
    "unpack_error",
    "unpack_hole",
    "unpack_v1_call",
    "unpack_v1_chunk",
    "v1_chunk_data_prefix",
    "v1_data_prefix",
]

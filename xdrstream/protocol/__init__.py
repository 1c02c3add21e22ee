"""Protocol layer: framing, header, schemas and sans-I/O state machines. Does no I/O.

Public API (spec.md §12)::

    from xdrstream.protocol import Connection, Role, Limits, NEED_DATA, schemas
    from xdrstream.protocol.events import Call, Reply, StreamData, ...
    conn = Connection(Role.CLIENT, programs=[schemas.load("restore")])

Modules: :mod:`.framing` (frames, header, FrameDecoder), :mod:`.events`,
:mod:`.connection` (the engine's core and V2/V3 streams), :mod:`.v1` (the V1
sub-protocol), :mod:`.exchange` (exchanges, draining), :mod:`.flow` (flow-control policy),
:mod:`.programs` (stream declarations), :mod:`.states`
(the state tables of spec.md §9), :mod:`.bodies` (error, hole and V1 stream bodies),
:mod:`.errors`, :mod:`.schemas`. Captures and their descriptions are :mod:`xdrstream.capture`.
Modules whose names start with ``_`` are the engine's own; use their public faces.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xdrstream.protocol._state import Role
    from xdrstream.protocol.connection import Connection, Limits, StreamInfo
    from xdrstream.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
    from xdrstream.protocol.events import NEED_DATA, RemoteError
    from xdrstream.protocol.programs import (
        Direction,
        Procedure,
        Program,
        Registry,
        StreamMode,
        Variant,
        programs_from_schema,
    )

# Start-up: each name is imported at its first use (``from xdrstream.protocol import
# Connection`` included), so that importing one module of the layer (e.g. ``.framing`` or
# ``.schemas``) does not load the whole engine.
_LAZY = {
    "Role": "xdrstream.protocol._state",
    "Connection": "xdrstream.protocol.connection",
    "Limits": "xdrstream.protocol.connection",
    "StreamInfo": "xdrstream.protocol.connection",
    "LocalProtocolError": "xdrstream.protocol.errors",
    "ProtocolError": "xdrstream.protocol.errors",
    "RemoteProtocolError": "xdrstream.protocol.errors",
    "NEED_DATA": "xdrstream.protocol.events",
    "RemoteError": "xdrstream.protocol.events",
    "Direction": "xdrstream.protocol.programs",
    "Procedure": "xdrstream.protocol.programs",
    "Program": "xdrstream.protocol.programs",
    "Registry": "xdrstream.protocol.programs",
    "StreamMode": "xdrstream.protocol.programs",
    "Variant": "xdrstream.protocol.programs",
    "programs_from_schema": "xdrstream.protocol.programs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "NEED_DATA",
    "Connection",
    "Direction",
    "Limits",
    "LocalProtocolError",
    "Procedure",
    "Program",
    "ProtocolError",
    "Registry",
    "RemoteError",
    "RemoteProtocolError",
    "Role",
    "StreamInfo",
    "StreamMode",
    "Variant",
    "programs_from_schema",
]

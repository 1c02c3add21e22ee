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

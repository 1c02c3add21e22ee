"""Events of the sans-I/O engine (spec.md §12).

Each event is a frozen, slotted dataclass deriving from :class:`Event`; those of one
exchange derive from :class:`ExchangeEvent` (``serial``), those of its data stream from
:class:`StreamEvent`.  The application passes events to
:meth:`Connection.send` and receives them from :meth:`Connection.next_event`; the same class
stands for the same protocol step in every variant, the engine chooses its wire form
(spec.md §7, table in §12.2).

``serial`` of a stream event is the serial of the stream's primary call (the stream's
identity).  Who may send what:

==================  ======  =====================================================
event               sender  meaning
==================  ======  =====================================================
Call                client  call a procedure; opens its stream if it has one
Reply               server  successful result (V3: concludes the stream)
ErrorReply          server  failed call (V3: fails or concludes the stream)
Message             either  notification without reply (serial 0)
StreamData          data    bytes of the stream, in order
StreamHole          data    ``length`` bytes of zeros (``@sparse`` procedures only)
StreamEnd           server  end of a download's data (EOF)
StreamFinish        client  upload: end of data, please commit; download (V1, V2):
                            acknowledges StreamEnd
StreamAbort         client  give the stream up
StreamError         server  the stream failed (V1, V2)
StreamConfirm       server  StreamFinish / StreamAbort done (V1, V2)
StreamRead          client  V1 download: ask for one more chunk of <= max_bytes
StreamAck           server  V1 upload: the oldest unacknowledged chunk is consumed
KeepalivePing/Pong  either  keepalive program (§5)
ConnectionClosed    peer    the peer closed its side (``receive_data(b"")``)
==================  ======  =====================================================

"data" is the client for uploads and the server for downloads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event the engine sends or delivers."""


@dataclass(frozen=True, slots=True)
class ExchangeEvent(Event):
    """An event of one exchange (spec.md §2.3): ``serial`` is its primary call's serial."""

    serial: int


@dataclass(frozen=True, slots=True)
class StreamEvent(ExchangeEvent):
    """An event of an exchange's data stream (spec.md §7)."""


@dataclass(frozen=True, slots=True)
class RemoteError:
    """The error body of a failed reply or stream (spec.md §4.5, libvirt's layout).

    ``dom`` = (name, uuid, id) and ``net`` = (name, uuid) exist for layout compatibility.
    """

    code: int
    domain: int = 0
    message: str | None = None
    level: int = 2
    str1: str | None = None
    str2: str | None = None
    str3: str | None = None
    int1: int = 0
    int2: int = 0
    dom: tuple[str, bytes, int] | None = None
    net: tuple[str, bytes] | None = None


#: The answer to a call refused from its header (spec.md §3.6): what libvirtd answers an
#: argument that does not decode (virnetmessage.c: VIR_ERR_RPC 39, VIR_FROM_RPC 7).
OVERSIZED_CALL: Final = RemoteError(
    code=39,
    domain=7,
    message="Unable to decode message payload",
    level=2,
    str1="%s",
    str2="Unable to decode message payload",
    int1=-1,
    int2=-1,
)


@dataclass(frozen=True, slots=True)
class Call(ExchangeEvent):
    """``serial`` from :meth:`Connection.next_serial`; ``args`` for the procedure's codec.
    On the server ``known`` is False when the program, version or procedure is not
    registered: ``args`` is then the raw payload and the only valid answer is ErrorReply.
    ``refusal`` is set (and ``known`` False, ``args`` None) for a call refused from its
    header because it announced more than its procedure's largest valid argument
    (spec.md §3.6): answer with ``ErrorReply(serial, call.refusal)``."""

    program: int
    version: int
    procedure: int
    args: Any = None
    known: bool = True
    refusal: RemoteError | None = None


@dataclass(frozen=True, slots=True)
class Reply(ExchangeEvent):
    result: Any = None


@dataclass(frozen=True, slots=True)
class ErrorReply(ExchangeEvent):
    error: RemoteError


@dataclass(frozen=True, slots=True)
class Message(Event):
    """Asynchronous notification (type MESSAGE, serial 0); ``body`` decoded with the
    procedure's argument codec when known, else raw bytes."""

    program: int
    version: int
    procedure: int
    body: Any = None


@dataclass(frozen=True, slots=True, init=False)
class StreamData(StreamEvent):
    """``data`` is sent without copying by :meth:`Connection.send_buffers`; received data
    is a read-only memoryview that stays valid."""

    data: bytes | bytearray | memoryview

    def __init__(self, serial: int, data: bytes | bytearray | memoryview) -> None:
        # One of these per chunk each way: the slots' own setters (what a frozen
        # dataclass's object.__setattr__ ends in) cost half the generated __init__.
        _set_serial(self, serial)
        _set_data(self, data)


_set_serial = ExchangeEvent.__dict__["serial"].__set__
_set_data = StreamData.__dict__["data"].__set__


@dataclass(frozen=True, slots=True)
class StreamHole(StreamEvent):
    length: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class StreamEnd(StreamEvent):
    """End of a download's data (EOF)."""


@dataclass(frozen=True, slots=True)
class StreamFinish(StreamEvent):
    """Upload: end of data, please commit; download (V1, V2): acknowledges StreamEnd."""


@dataclass(frozen=True, slots=True)
class StreamAbort(StreamEvent):
    """The client gives the stream up."""


@dataclass(frozen=True, slots=True)
class StreamError(StreamEvent):
    error: RemoteError


@dataclass(frozen=True, slots=True)
class StreamConfirm(StreamEvent):
    """The server has done StreamFinish / StreamAbort (V1, V2)."""


@dataclass(frozen=True, slots=True)
class StreamRead(StreamEvent):
    max_bytes: int


@dataclass(frozen=True, slots=True)
class StreamAck(StreamEvent):
    """V1 upload: the oldest unacknowledged chunk is consumed."""


@dataclass(frozen=True, slots=True)
class KeepalivePing(Event):
    pass


@dataclass(frozen=True, slots=True)
class KeepalivePong(Event):
    pass


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    pass


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel: an enum, so that ``if event is NEED_DATA``
    narrows the event's type for type checkers."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`Connection.next_event` when more bytes are needed.
NEED_DATA: Final = NeedData.NEED_DATA

"""The sans-I/O protocol engine (spec.md §12): one :class:`Connection` per endpoint.

Usage, h11-style::

    conn = Connection(Role.CLIENT, programs=[schemas.load("restore")])
    serial = conn.next_serial()
    sock.sendall(conn.send(Call(serial, PROG, 1, 2, args)))
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(sock.recv(65536))   # b"" at EOF
            continue
        ...

* ``receive_data(data)`` buffers bytes (``b""`` = the peer closed); ``next_event()``
  parses one frame at a time and returns an event from :mod:`.events` or ``NEED_DATA``.
  Any split of the input, down to one byte at a time, yields the same events.
* ``send(event) -> bytes``; ``send_buffers(event) -> list`` returns the same bytes as a
  list of buffers whose stream payload is the caller's own object (no copy).
* ``get_buffer()`` / ``buffer_updated(n)``: the same, receiving in place (zero-copy for
  large stream payloads); ``frame_remaining``: the rest of a large frame is due, and
  ``get_buffer()`` is exactly its payload's remainder (fill it with several reads if
  need be, then report them with one ``buffer_updated``).
* Received ``StreamData.data`` is a read-only view that stays valid for as long as it is
  held: receive buffers are reused only once no view of them is alive (§8.1), whatever
  ``stream_consumed`` says (that is flow-control accounting only).
* ``next_serial()`` allocates a client serial (V1 stream calls use the same counter).
* Flow control numbers (§8): ``buffered``, ``stream_info(serial)``,
  ``stream_consumed(serial, n)``, ``reading_paused``.

The engine checks every received frame against the tables of spec.md §9 (in
:mod:`._state`) and the guards of §7; errors are :class:`RemoteProtocolError` (the
connection is then unusable: every later call re-raises) or :class:`LocalProtocolError`
(nothing changed; the application may carry on).  No other exception escapes.
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xdrstream.protocol import _bodies
from xdrstream.protocol._bodies import V1_CHUNK_MAX, V1_WINDOW, V1Op
from xdrstream.protocol._state import SECTIONS, TABLES, Role, Table
from xdrstream.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdrstream.protocol.events import (
    NEED_DATA,
    Call,
    ConnectionClosed,
    ErrorReply,
    Event,
    KeepalivePing,
    KeepalivePong,
    Message,
    NeedData,
    RemoteError,
    Reply,
    StreamAbort,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamError,
    StreamFinish,
    StreamHole,
    StreamRead,
)
from xdrstream.protocol.framing import (
    HEADER_SIZE,
    KEEPALIVE_PING,
    KEEPALIVE_PONG,
    KEEPALIVE_PROGRAM,
    KEEPALIVE_VERSION,
    LEN_SIZE,
    MAX_FRAME,
    MIN_FRAME,
    Frame,
    FrameDecoder,
    Header,
    MessageStatus,
    MessageType,
    pack_header,
)
from xdrstream.protocol.programs import (
    Direction,
    Procedure,
    Program,
    Registry,
    StreamMode,
    Variant,
    programs_from_schema,
)

_CALL = MessageType.CALL
_REPLY = MessageType.REPLY
_MESSAGE = MessageType.MESSAGE
_STREAM = MessageType.STREAM
_HOLE = MessageType.STREAM_HOLE
_OK = MessageStatus.OK
_ERROR = MessageStatus.ERROR
_CONTINUE = MessageStatus.CONTINUE
_U32 = 0xFFFFFFFF
_TYPE_OF = {int(t): t for t in MessageType}  # (next_raw has checked the values)
_STATUS_OF = {int(s): s for s in MessageStatus}
_TYPE_STREAM = int(MessageType.STREAM)
_STATUS_CONTINUE = int(MessageStatus.CONTINUE)
_HEADER = struct.Struct(">IIiiIi")  # the six header words (§3.2)
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one connection (spec.md §3.3, §8).

    ``max_frame``: largest frame accepted and sent, length word excluded.
    ``max_receive_buffer``: ``receive_data`` refuses to buffer more unparsed bytes (the
    driver must drain ``next_event`` before reading more).
    ``stream_buffer``: per-stream bytes delivered but not yet reported consumed with
    :meth:`Connection.stream_consumed` above which ``reading_paused`` is True (§8.2);
    ``None`` disables the accounting.
    ``max_draining``: failed or finished stream serials remembered to drop the peer's
    late messages (§10.2).
    """

    max_frame: int = MAX_FRAME
    max_receive_buffer: int = MAX_FRAME + LEN_SIZE + 4 * 1024 * 1024
    stream_buffer: int | None = 4 * 1024 * 1024
    max_draining: int = 256


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What :meth:`Connection.stream_info` reports about one exchange."""

    serial: int
    state: str
    kind: str  # "call" or e.g. "v1 upload"
    sparse: bool
    outstanding: int  # V1: stream calls sent/received and not yet answered
    window: int  # V1: stream calls the client may still send (0 otherwise)
    read_max: int  # V1 download, server: max_bytes of the oldest READ (0 if none)
    unconsumed: int  # bytes delivered by next_event not yet passed to stream_consumed


class _Exchange:
    """One call (and its stream, if any) identified by the primary call's serial."""

    __slots__ = (
        "data_head",
        "header",
        "kind",
        "known",
        "mode",
        "pending",
        "procedure",
        "receives_data",
        "sends_data",
        "serial",
        "state",
        "table",
        "unconsumed",
        "words",
    )

    def __init__(
        self, serial: int, header: Header, procedure: Procedure | None, role: Role, known: bool
    ) -> None:
        self.serial = serial
        self.header = header  # primary call's header (prog, vers, proc)
        self.procedure = procedure
        self.known = known
        self.mode: StreamMode | None = procedure.stream if procedure is not None else None
        if self.mode is not None:
            self.kind = f"{self.mode.variant.value} {self.mode.direction.value}"
        else:  # a server does not know whether an unknown procedure has a stream (§10.2)
            self.kind = "call" if known else "unknown call"
        self.table: Table = TABLES[(role, self.kind)]
        self.state = "IDLE"
        self.words = (header.prog, header.vers, header.proc)
        # Fast data path (V2/V3): whether the current state lets data in / out and stay in
        # that state (the table's row, precomputed at each state change), and the 24
        # header bytes of this stream's STREAM/CONTINUE frames.
        self.receives_data = False
        self.sends_data = False
        self.data_head = b""
        # V1: outstanding stream calls, oldest first: [chunk serial, op, max_bytes]
        self.pending: deque[tuple[int, int, int]] = deque()
        self.unconsumed = 0


def _event_name(event: object) -> str:
    return type(event).__name__


class Connection:
    """One endpoint of an xdrstream connection (spec.md §12)."""

    def __init__(
        self,
        role: Role,
        programs: Iterable[Any] | Registry = (),  # compiled schemas, Program or Registry
        limits: Limits | None = None,
    ) -> None:
        self.role = role
        self.limits = limits or Limits()
        self._registry = programs if isinstance(programs, Registry) else Registry()
        if not isinstance(programs, Registry):
            for item in programs:
                if isinstance(item, Program):
                    self._registry.add(item)
                elif isinstance(item, Registry):
                    for program in item:
                        self._registry.add(program)
                elif hasattr(item, "programs"):  # a schema compiled by xdrstream.codec
                    for program in programs_from_schema(item):
                        self._registry.add(program)
                else:
                    raise TypeError(f"programs: expected schemas or Program objects, got {item!r}")
        self._decoder = FrameDecoder(self.limits.max_frame)
        self._exchanges: dict[int, _Exchange] = {}
        self._v1_calls: dict[int, _Exchange] = {}  # V1 stream-call serial -> exchange
        self._draining: OrderedDict[int, None] = OrderedDict()
        self._next_serial = 0
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._paused_streams = 0

    # ------------------------------------------------------------------ public queries
    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return self._decoder.buffered

    @property
    def reading_paused(self) -> bool:
        """True when the driver should stop reading the transport (§8.2): some stream
        holds ``limits.stream_buffer`` or more delivered, unconsumed bytes."""
        return self._paused_streams > 0

    @property
    def frame_remaining(self) -> int:
        """Bytes still due for the frame being received in place (0 if none).  While it is
        non-zero, :meth:`get_buffer` returns exactly the rest of that frame's payload: a
        driver may fill it with several reads and report them with one
        :meth:`buffer_updated`, since no event can come out before the frame is complete."""
        return self._decoder.frame_remaining

    def stream_info(self, serial: int) -> StreamInfo | None:
        """State and counters of the exchange with primary serial ``serial`` (None if the
        engine does not know it)."""
        ex = self._exchanges.get(serial)
        if ex is None:
            return None
        v1 = ex.mode is not None and ex.mode.variant is Variant.V1
        window = 0
        read_max = 0
        if v1:
            window = max(0, V1_WINDOW - len(ex.pending))
            if ex.pending and ex.pending[0][1] == V1Op.READ:
                read_max = ex.pending[0][2]
        return StreamInfo(
            serial,
            ex.state,
            ex.kind,
            bool(ex.mode and ex.mode.sparse),
            len(ex.pending),
            window,
            read_max,
            ex.unconsumed,
        )

    def stream_consumed(self, serial: int, nbytes: int) -> None:
        """Report that the application has consumed ``nbytes`` of stream ``serial``'s
        delivered data (§8.2).  Streams that have ended are ignored: their count was
        released when they ended."""
        ex = self._exchanges.get(serial)
        if ex is None or self.limits.stream_buffer is None:
            return
        if ex.state == "DRAINING":  # its count was released when it ended
            return
        if nbytes < 0 or nbytes > ex.unconsumed:
            raise LocalProtocolError(
                f"stream {serial}: consumed {nbytes} of {ex.unconsumed} unconsumed bytes",
                section="§8.2",
            )
        self._account(ex, -nbytes)

    def next_serial(self) -> int:
        """A serial for the next Call (§4.3): increments by one, skipping serials in use."""
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only clients allocate serials", section="§4.3")
        for _ in range(len(self._exchanges) + len(self._v1_calls) + 1):
            serial = self._next_serial
            self._next_serial = (serial + 1) & _U32
            if serial not in self._exchanges and serial not in self._v1_calls:
                return serial
        raise AssertionError("unreachable: more serials in use than tried")

    # ------------------------------------------------------------------ receiving
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed its side."""
        if self._error is not None:
            raise self._error
        if self._eof:
            raise LocalProtocolError("receive_data after end of input", section="§12.1")
        if not data:
            self._eof = True
            return
        if self._decoder.buffered + len(data) > self.limits.max_receive_buffer:
            raise LocalProtocolError(
                f"receive buffer would exceed {self.limits.max_receive_buffer} bytes: "
                "drain next_event() before reading more",
                section="§8.1",
            )
        self._decoder.feed(data)

    def get_buffer(self, sizehint: int = 65536) -> memoryview:
        """Receive in place (``sock.recv_into``, asyncio ``BufferedProtocol``): a writable
        buffer for the next bytes; then call :meth:`buffer_updated`.  A large frame's payload
        is received directly into its final buffer, so stream data is copied only by the
        transport; those buffers come from a small pool and are reused only when no view
        of them is alive.  Mixing this with :meth:`receive_data` gives the same events."""
        if self._error is not None:
            raise self._error
        if self._eof:
            raise LocalProtocolError("get_buffer after end of input", section="§12.1")
        room = self.limits.max_receive_buffer - self._decoder.buffered
        if room <= 0:
            raise LocalProtocolError(
                f"receive buffer holds {self._decoder.buffered} bytes: drain next_event() "
                "before reading more",
                section="§8.1",
            )
        try:
            return self._decoder.get_buffer(min(sizehint, room))
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` bytes were written into the buffer of the last :meth:`get_buffer`
        (0 means the peer closed its side, like ``receive_data(b"")``)."""
        if self._error is not None:
            raise self._error
        if nbytes == 0:
            self.receive_data(b"")
            return
        try:
            self._decoder.buffer_updated(nbytes)
        except ValueError as exc:
            raise LocalProtocolError(str(exc), section="§12.1") from None

    def next_event(self) -> Event | NeedData:
        """The next event, or ``NEED_DATA``.  After the peer closed, ``ConnectionClosed``
        (repeatedly)."""
        if self._error is not None:
            raise self._error
        try:
            while True:
                raw = self._decoder.next_raw()
                if raw is None:
                    if not self._eof:
                        return NEED_DATA
                    if self._decoder.buffered:
                        raise RemoteProtocolError(
                            f"connection closed inside a frame ({self._decoder.buffered} "
                            "bytes buffered)",
                            section="§3.5",
                            offset=self._decoder.offset,
                        )
                    return ConnectionClosed()
                prog, vers, proc, mtype, serial, status, payload, offset = raw
                if mtype == _TYPE_STREAM and status == _STATUS_CONTINUE and payload:
                    # Fast path: data of a V2/V3 stream whose state takes data (what the
                    # table and _receive_stream would decide, without their generality).
                    ex = self._exchanges.get(serial)
                    if ex is not None and ex.receives_data and ex.words == (prog, vers, proc):
                        if self.limits.stream_buffer is not None:
                            self._account(ex, len(payload))
                        return StreamData(serial, payload)
                header = Header(prog, vers, proc, _TYPE_OF[mtype], serial, _STATUS_OF[status])
                event = self._receive(Frame(header, payload, offset))
                if event is not None:
                    return event
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _remote(self, frame: Frame, message: str, section: str) -> RemoteProtocolError:
        h = frame.header
        what = f"{MessageType(h.type).name}/{MessageStatus(h.status).name}"
        return RemoteProtocolError(
            f"{what} serial {h.serial} proc {h.proc}: {message}",
            section=section,
            offset=frame.offset,
        )

    def _receive(self, frame: Frame) -> Event | None:
        h = frame.header
        mtype = h.type
        if mtype is _MESSAGE:
            return self._receive_message(frame)
        if mtype is _STREAM or mtype is _HOLE:
            return self._receive_stream(frame)
        if self.role is Role.SERVER:
            if mtype is _CALL:
                if h.status is _OK:
                    return self._receive_call(frame)
                if h.status is _CONTINUE:
                    return self._receive_v1_call(frame)
                raise self._remote(frame, "a call's status must be OK or CONTINUE", "§4.4")
        elif mtype is _REPLY:
            return self._receive_reply(frame)
        if mtype in (MessageType.CALL_WITH_FDS, MessageType.REPLY_WITH_FDS):
            raise self._remote(frame, "descriptor passing is not supported", "§4.8")
        raise self._remote(frame, f"a {self.role.value} never receives this type", "§4.1")

    def _receive_message(self, frame: Frame) -> Event:
        h = frame.header
        if h.status is not _OK or h.serial != 0:
            raise self._remote(frame, "a MESSAGE has status OK and serial 0", "§4.6")
        if h.prog == KEEPALIVE_PROGRAM:
            if h.vers != KEEPALIVE_VERSION or h.proc not in (KEEPALIVE_PING, KEEPALIVE_PONG):
                raise self._remote(frame, "unknown keepalive version or procedure", "§5")
            if len(frame.payload):
                raise self._remote(frame, "keepalive messages have no payload", "§5")
            return KeepalivePing() if h.proc == KEEPALIVE_PING else KeepalivePong()
        proc = self._registry.lookup(h.prog, h.vers, h.proc)
        if proc is None:
            return Message(h.prog, h.vers, h.proc, bytes(frame.payload))
        return Message(h.prog, h.vers, h.proc, self._decode(frame, proc.arg, "§4.6"))

    def _decode(self, frame: Frame, codec: Any, section: str) -> Any:
        payload = frame.payload
        if codec is None:
            if len(payload):
                raise self._remote(frame, f"{len(payload)} bytes for a void body", section)
            return None
        try:
            return codec.unpack(payload)
        except Exception as exc:  # the codec's DecodeError, or anything it lets through
            raise self._remote(frame, f"body does not decode: {exc}", section) from exc

    def _decode_error(self, frame: Frame, section: str) -> RemoteError:
        try:
            return _bodies.unpack_error(frame.payload)
        except RemoteProtocolError as exc:
            raise self._remote(frame, str(exc), section) from None

    def _transition(self, ex: _Exchange, message: str, frame: Frame | None) -> str:
        """Apply ``message`` to ``ex``; returns the action.  Unknown pairs raise."""
        try:
            nxt, action = ex.table[(ex.state, message)]
        except KeyError:
            section = SECTIONS[ex.kind]
            text = f"{message} is not allowed in state {ex.state} of a {ex.kind} exchange"
            if frame is None:
                raise LocalProtocolError(text, section=section) from None
            raise self._remote(frame, text, section) from None
        self._set_state(ex, nxt)
        return action

    def _set_state(self, ex: _Exchange, state: str) -> None:
        if ex.state != state and ex.mode is not None and ex.mode.variant is not Variant.V1:
            table = ex.table
            ex.receives_data = table.get((state, "<StreamData")) == (state, "deliver")
            ex.sends_data = table.get((state, ">StreamData")) == (state, "send")
            if ex.sends_data and not ex.data_head:
                prog, vers, proc = ex.words
                ex.data_head = _HEADER.pack(prog, vers, proc, _STREAM, ex.serial, _CONTINUE)
        ex.state = state
        if state == "CLOSED" or state == "DRAINING":
            for chunk_serial, _op, _max in ex.pending:
                self._v1_calls.pop(chunk_serial, None)
            ex.pending.clear()
            self._account(ex, -ex.unconsumed)
        if state == "CLOSED":
            self._exchanges.pop(ex.serial, None)
            self._draining.pop(ex.serial, None)
        elif state == "DRAINING":
            self._draining[ex.serial] = None
            while len(self._draining) > self.limits.max_draining:
                old, _ = self._draining.popitem(last=False)
                self._exchanges.pop(old, None)

    def _account(self, ex: _Exchange, delta: int) -> None:
        limit = self.limits.stream_buffer
        if limit is None or delta == 0:
            return
        before = ex.unconsumed >= limit
        ex.unconsumed += delta
        after = ex.unconsumed >= limit
        self._paused_streams += int(after) - int(before)

    def _receive_call(self, frame: Frame) -> Event:
        h = frame.header
        serial = h.serial
        old = self._exchanges.get(serial)
        if old is not None and old.state == "DRAINING":
            self._set_state(old, "CLOSED")  # the client is done with it: serial reused
        elif old is not None or serial in self._v1_calls:
            raise self._remote(frame, "serial is already in use", "§4.3")
        proc = self._registry.lookup(h.prog, h.vers, h.proc)
        ex = _Exchange(serial, h, proc, Role.SERVER, proc is not None)
        if proc is None:
            args: Any = bytes(frame.payload)
        else:
            args = self._decode(frame, proc.arg, "§4.4")
        self._transition(ex, "<Call", frame)
        self._exchanges[serial] = ex
        return Call(serial, h.prog, h.vers, h.proc, args, proc is not None)

    def _stream_exchange(self, frame: Frame, serial: int, section: str) -> _Exchange:
        ex = self._exchanges.get(serial)
        if ex is None:
            raise self._remote(frame, f"no open stream with serial {serial}", section)
        h = frame.header
        if (ex.mode is None and ex.known) or (h.prog, h.vers, h.proc) != ex.header[:3]:
            raise self._remote(frame, f"does not match the procedure of stream {serial}", "§7.1.1")
        return ex

    def _receive_stream(self, frame: Frame) -> Event | None:
        h = frame.header
        ex = self._stream_exchange(frame, h.serial, "§7.1.1")
        if ex.mode is None:  # a call of an unknown procedure: V3 frames sent early (§10.2)
            return self._deliver(ex, self._unknown_stream_event(frame), frame)
        if ex.mode.variant is Variant.V1:
            raise self._remote(frame, "V1 streams carry no STREAM messages", "§7.2.1")
        payload = frame.payload
        event: Event
        if h.type is _HOLE:
            if h.status is not _CONTINUE:
                raise self._remote(frame, "a STREAM_HOLE has status CONTINUE", "§7.1.3")
            if not ex.mode.sparse:
                raise self._remote(frame, "hole in a stream not declared @sparse", "§7.1.3")
            try:
                length, flags = _bodies.unpack_hole(payload)
            except RemoteProtocolError as exc:
                raise self._remote(frame, str(exc), "§7.1.3") from None
            event = StreamHole(h.serial, length, flags)
        elif h.status is _CONTINUE:
            event = StreamData(h.serial, payload) if len(payload) else StreamEnd(h.serial)
        elif h.status is _OK:
            if len(payload):
                raise self._remote(frame, "STREAM/OK has an empty payload", "§7.3.3")
            is_client = self.role is Role.CLIENT
            event = StreamConfirm(h.serial) if is_client else StreamFinish(h.serial)
        elif self.role is Role.CLIENT:
            event = StreamError(h.serial, self._decode_error(frame, "§4.5"))
        else:
            if len(payload):
                raise self._remote(frame, "a client abort has an empty payload", "§7.3.3")
            event = StreamAbort(h.serial)
        return self._deliver(ex, event, frame)

    def _unknown_stream_event(self, frame: Frame) -> Event:
        """What a client's STREAM/STREAM_HOLE frame is, for a call this server could not
        take (the table drops the client's stream events and refuses anything else)."""
        h = frame.header
        payload = frame.payload
        if h.type is _HOLE:
            if h.status is not _CONTINUE:
                raise self._remote(frame, "a STREAM_HOLE has status CONTINUE", "§7.1.3")
            try:
                length, flags = _bodies.unpack_hole(payload)
            except RemoteProtocolError as exc:
                raise self._remote(frame, str(exc), "§7.1.3") from None
            return StreamHole(h.serial, length, flags)
        if h.status is _CONTINUE:
            return StreamData(h.serial, payload) if len(payload) else StreamEnd(h.serial)
        if len(payload):
            raise self._remote(frame, "a client's finish or abort has an empty payload", "§7.4")
        return StreamFinish(h.serial) if h.status is _OK else StreamAbort(h.serial)

    def _deliver(self, ex: _Exchange, event: Event, frame: Frame) -> Event | None:
        action = self._transition(ex, "<" + _event_name(event), frame)
        if action == "drop":
            return None
        if type(event) is StreamData and ex.state != "CLOSED":
            self._account(ex, len(event.data))
        return event

    def _receive_v1_call(self, frame: Frame) -> Event | None:
        try:
            stream, op, arg = _bodies.unpack_v1_call(frame.payload)
        except RemoteProtocolError as exc:
            raise self._remote(frame, str(exc), "§7.2.1") from None
        ex = self._stream_exchange(frame, stream, "§7.2.1")
        assert ex.mode is not None
        if ex.mode.variant is not Variant.V1:
            raise self._remote(frame, f"stream {stream} is not a V1 stream", "§7.2.1")
        chunk_serial = frame.header.serial
        other = self._exchanges.get(chunk_serial)
        if other is not None and other.state == "DRAINING" and other is not ex:
            self._set_state(other, "CLOSED")  # a DRAINING serial is free (§4.3.2)
        elif other is not None or chunk_serial in self._v1_calls:
            raise self._remote(frame, "serial is already in use", "§4.3")
        event: Event
        if op == V1Op.DATA:
            assert isinstance(arg, (bytes, memoryview))
            if not len(arg):
                raise self._remote(frame, "V1 DATA carries at least one byte", "§7.2.1")
            event = StreamData(stream, arg)
        elif op == V1Op.HOLE:
            assert isinstance(arg, tuple)
            if not ex.mode.sparse:
                raise self._remote(frame, "hole in a stream not declared @sparse", "§7.1.3")
            event = StreamHole(stream, arg[0], arg[1])
        elif op == V1Op.FINISH:
            event = StreamFinish(stream)
        elif op == V1Op.ABORT:
            event = StreamAbort(stream)
        else:
            assert isinstance(arg, int)
            event = StreamRead(stream, arg)
        if (
            op != V1Op.ABORT
            and ex.state not in ("DRAINING", "EOF")
            and len(ex.pending) >= V1_WINDOW
        ):
            raise self._remote(frame, f"more than {V1_WINDOW} stream calls outstanding", "§7.2.4")
        action = self._transition(ex, "<" + _event_name(event), frame)
        if action == "drop" or ex.state == "CLOSED":
            return None if action == "drop" else event
        if op == V1Op.ABORT:  # outstanding calls are cancelled: they get no reply (§7.2.5)
            for cancelled, _op, _max in ex.pending:
                self._v1_calls.pop(cancelled, None)
            ex.pending.clear()
        ex.pending.append((chunk_serial, op, arg if op == V1Op.READ else 0))  # type: ignore[arg-type]
        self._v1_calls[chunk_serial] = ex
        if op == V1Op.DATA:
            self._account(ex, len(event.data))  # type: ignore[union-attr]
        return event

    def _receive_reply(self, frame: Frame) -> Event | None:
        h = frame.header
        serial = h.serial
        ex = self._v1_calls.get(serial)
        if ex is not None:
            return self._receive_v1_reply(frame, ex)
        ex = self._exchanges.get(serial)
        if ex is None:
            raise self._remote(frame, "no call is waiting for this reply", "§4.4")
        if (h.prog, h.vers, h.proc) != ex.header[:3]:
            raise self._remote(frame, "reply does not match its call's procedure", "§4.4")
        event: Event
        if h.status is _OK:
            if ex.state not in ("CALLING", "FINISHING", "ABORTING", "EOF"):
                # decode only where a Reply is allowed; the table rejects it otherwise
                event = Reply(serial, None)
            else:
                codec = ex.procedure.result if ex.procedure is not None else None
                event = Reply(serial, self._decode(frame, codec, "§4.4"))
        elif h.status is _ERROR:
            event = ErrorReply(serial, self._decode_error(frame, "§4.5"))
        else:
            raise self._remote(frame, "a reply's status must be OK or ERROR", "§4.4")
        return self._deliver(ex, event, frame)

    def _receive_v1_reply(self, frame: Frame, ex: _Exchange) -> Event | None:
        h = frame.header
        if (h.prog, h.vers, h.proc) != ex.header[:3]:
            raise self._remote(frame, "reply does not match its stream's procedure", "§7.2.1")
        if h.status is _CONTINUE:
            raise self._remote(frame, "a reply's status must be OK or ERROR", "§4.4")
        head_serial, op, max_bytes = ex.pending[0]
        if h.serial != head_serial:
            # Only the abort call may be answered before older calls: they are cancelled.
            abort = ex.pending[-1]
            if ex.state != "ABORTING" or h.serial != abort[0]:
                raise self._remote(
                    frame, "V1 replies come in the order of the stream's calls", "§7.2.1"
                )
            while len(ex.pending) > 1:
                self._v1_calls.pop(ex.pending.popleft()[0], None)
            head_serial, op, max_bytes = abort
        event: Event
        if h.status is _ERROR:
            event = StreamError(ex.serial, self._decode_error(frame, "§4.5"))
        elif op in (V1Op.DATA, V1Op.HOLE):
            if len(frame.payload):
                raise self._remote(frame, "a V1 acknowledgement has no payload", "§7.2.1")
            event = StreamAck(ex.serial)
        elif op in (V1Op.FINISH, V1Op.ABORT):
            if len(frame.payload):
                raise self._remote(frame, "a V1 confirmation has no payload", "§7.2.1")
            event = StreamConfirm(ex.serial)
        else:  # READ
            try:
                chunk_op, arg = _bodies.unpack_v1_chunk(frame.payload)
            except RemoteProtocolError as exc:
                raise self._remote(frame, str(exc), "§7.2.1") from None
            if chunk_op == V1Op.DATA:
                assert isinstance(arg, (bytes, memoryview))
                if not 1 <= len(arg) <= max_bytes:
                    raise self._remote(
                        frame, f"V1 chunk of {len(arg)} bytes for a READ of {max_bytes}", "§7.2.3"
                    )
                event = StreamData(ex.serial, arg)
            elif chunk_op == V1Op.HOLE:
                assert isinstance(arg, tuple)
                if not (ex.mode and ex.mode.sparse):
                    raise self._remote(frame, "hole in a stream not declared @sparse", "§7.1.3")
                event = StreamHole(ex.serial, arg[0], arg[1])
            else:
                event = StreamEnd(ex.serial)
        self._v1_calls.pop(head_serial, None)
        ex.pending.popleft()
        result = self._deliver(ex, event, frame)
        if type(event) is StreamEnd and ex.state == "EOF":
            # READs sent after the one that met EOF are cancelled (§7.2.3).
            for cancelled, _op, _max in ex.pending:
                self._v1_calls.pop(cancelled, None)
            ex.pending.clear()
        return result

    # ------------------------------------------------------------------ sending
    def send(self, event: Event) -> bytes:
        """The bytes that carry ``event`` (spec.md §12.2)."""
        buffers = self.send_buffers(event)
        return buffers[0] if len(buffers) == 1 else b"".join(buffers)  # type: ignore[return-value]

    def send_buffers(self, event: Event) -> list[bytes | bytearray | memoryview]:
        """As :meth:`send`, as a list of buffers: a stream payload is passed through as
        the caller's own object, not copied (write it with ``sendmsg``/``writelines``)."""
        if self._error is not None:
            raise self._error
        kind = type(event)
        if kind is StreamData:
            # Fast path: data on a V2/V3 stream whose state lets data out (as _send_v2v3)
            ex = self._exchanges.get(event.serial)  # type: ignore[union-attr]
            if ex is not None and ex.sends_data:
                data = event.data  # type: ignore[union-attr]
                size = len(data)
                if 0 < size <= self.limits.max_frame - HEADER_SIZE:
                    return [_LEN.pack(MIN_FRAME + size) + ex.data_head, data]
        if kind is Call:
            return self._send_call(event)  # type: ignore[arg-type]
        if kind is Message:
            return [self._send_message(event)]  # type: ignore[arg-type]
        if kind is KeepalivePing or kind is KeepalivePong:
            proc = KEEPALIVE_PING if kind is KeepalivePing else KEEPALIVE_PONG
            header = Header(KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, proc, _MESSAGE, 0, _OK)
            return [pack_header(header)]
        if kind is ConnectionClosed:
            raise LocalProtocolError("ConnectionClosed is only received", section="§12.1")
        serial = getattr(event, "serial", None)
        if not isinstance(serial, int):
            raise LocalProtocolError(f"cannot send {event!r}", section="§12.1")
        ex = self._exchanges.get(serial)
        if ex is None or ex.state == "DRAINING":
            raise LocalProtocolError(
                f"{_event_name(event)}: no open call or stream with serial {serial}",
                section="§4.3",
            )
        if kind is Reply or kind is ErrorReply:
            return self._send_reply(ex, event)  # type: ignore[arg-type]
        if ex.mode is None:
            raise LocalProtocolError(
                f"{_event_name(event)}: call {serial} has no stream", section="§6"
            )
        if ex.mode.variant is Variant.V1:
            return self._send_v1(ex, event)
        return self._send_v2v3(ex, event)

    def _local_check(self, ex: _Exchange, message: str) -> None:
        if (ex.state, message) not in ex.table:
            raise LocalProtocolError(
                f"{message} is not allowed in state {ex.state} of a {ex.kind} exchange",
                section=SECTIONS[ex.kind],
            )

    def _encode(self, codec: Any, value: Any, what: str, section: str) -> bytes:
        if codec is None:
            if value is not None:
                raise LocalProtocolError(f"{what} is void: pass None", section=section)
            return b""
        try:
            return bytes(codec.pack(value))
        except Exception as exc:  # the codec's EncodeError, or anything it lets through
            raise LocalProtocolError(f"{what} does not encode: {exc}", section=section) from exc

    def _check_words(self, prog: int, vers: int, proc: int, serial: int) -> None:
        for name, value, low, high in (
            ("program", prog, 0, _U32),
            ("version", vers, 0, _U32),
            ("procedure", proc, -(2**31), 2**31 - 1),
            ("serial", serial, 0, _U32),
        ):
            if not isinstance(value, int) or not low <= value <= high:
                raise LocalProtocolError(f"{name} {value!r} out of range", section="§3.2")

    def _frame(self, header: Header, payload: bytes) -> bytes:
        if len(payload) > self.limits.max_frame - HEADER_SIZE:
            raise LocalProtocolError(
                f"payload of {len(payload)} bytes exceeds the frame limit", section="§3.3"
            )
        return pack_header(header, len(payload)) + payload

    def _send_call(self, event: Call) -> list[bytes | bytearray | memoryview]:
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only a client sends calls", section="§4.4")
        serial = event.serial
        self._check_words(event.program, event.version, event.procedure, serial)
        if serial in self._exchanges or serial in self._v1_calls:
            raise LocalProtocolError(f"serial {serial} is in use", section="§4.3")
        proc = self._registry.lookup(event.program, event.version, event.procedure)
        if proc is None:
            raise LocalProtocolError(
                f"procedure {event.program:#x}/{event.version}/{event.procedure} is not "
                "registered with this connection",
                section="§4.4",
            )
        header = Header(event.program, event.version, event.procedure, _CALL, serial, _OK)
        data = self._frame(header, self._encode(proc.arg, event.args, "call arguments", "§4.4"))
        ex = _Exchange(serial, header, proc, Role.CLIENT, True)
        self._transition(ex, ">Call", None)
        self._exchanges[serial] = ex
        return [data]

    def _send_message(self, event: Message) -> bytes:
        self._check_words(event.program, event.version, event.procedure, 0)
        proc = self._registry.lookup(event.program, event.version, event.procedure)
        if proc is None:
            if not isinstance(event.body, (bytes, bytearray, memoryview)):
                raise LocalProtocolError(
                    "body of an unregistered message must be bytes", section="§4.6"
                )
            payload = bytes(event.body)
        else:
            payload = self._encode(proc.arg, event.body, "message body", "§4.6")
        header = Header(event.program, event.version, event.procedure, _MESSAGE, 0, _OK)
        return self._frame(header, payload)

    def _error_payload(self, error: RemoteError) -> bytes:
        if not isinstance(error, RemoteError):
            raise LocalProtocolError("error must be a RemoteError", section="§4.5")
        problem = _bodies.check_error(error)
        if problem is not None:
            raise LocalProtocolError(f"error body: {problem}", section="§4.5")
        return _bodies.pack_error(error)

    def _send_reply(
        self, ex: _Exchange, event: Reply | ErrorReply
    ) -> list[bytes | bytearray | memoryview]:
        message = ">" + _event_name(event)
        if not ex.known and type(event) is Reply:
            raise LocalProtocolError(
                "the procedure is not registered: answer with ErrorReply", section="§4.4"
            )
        self._local_check(ex, message)
        prog, vers, proc = ex.header[:3]
        if type(event) is ErrorReply:
            payload = self._error_payload(event.error)
            status = _ERROR
        else:
            codec = ex.procedure.result if ex.procedure is not None else None
            payload = self._encode(codec, event.result, "reply result", "§4.4")  # type: ignore[union-attr]
            status = _OK
        data = self._frame(Header(prog, vers, proc, _REPLY, ex.serial, status), payload)
        self._transition(ex, message, None)
        return [data]

    def _check_data(self, ex: _Exchange, event: StreamData | StreamHole, limit: int) -> None:
        if type(event) is StreamHole:
            assert ex.mode is not None
            if not ex.mode.sparse:
                raise LocalProtocolError("holes need a @sparse procedure", section="§7.1.3")
            if not isinstance(event.length, int) or not 0 <= event.length < 2**63:
                raise LocalProtocolError(f"hole length {event.length!r}", section="§7.1.3")
            if event.flags != 0:
                raise LocalProtocolError("hole flags must be 0", section="§7.1.3")
        else:
            size = len(event.data)  # type: ignore[union-attr]
            if not 1 <= size <= limit:
                raise LocalProtocolError(
                    f"stream data of {size} bytes: must be 1..{limit}", section="§7.1.2"
                )

    def _send_v2v3(self, ex: _Exchange, event: Event) -> list[bytes | bytearray | memoryview]:
        message = ">" + _event_name(event)
        self._local_check(ex, message)
        prog, vers, proc = ex.header[:3]
        serial = ex.serial
        kind = type(event)
        out: list[bytes | bytearray | memoryview]
        if kind is StreamData:
            self._check_data(ex, event, self.limits.max_frame - HEADER_SIZE)  # type: ignore[arg-type]
            data = event.data  # type: ignore[union-attr]
            header = Header(prog, vers, proc, _STREAM, serial, _CONTINUE)
            out = [pack_header(header, len(data)), data]
        elif kind is StreamHole:
            self._check_data(ex, event, 0)  # type: ignore[arg-type]
            body = _bodies.pack_hole(event.length, event.flags)  # type: ignore[union-attr]
            out = [pack_header(Header(prog, vers, proc, _HOLE, serial, _CONTINUE), 12) + body]
        elif kind is StreamError:
            payload = self._error_payload(event.error)  # type: ignore[union-attr]
            out = [self._frame(Header(prog, vers, proc, _STREAM, serial, _ERROR), payload)]
        else:
            status = {
                StreamEnd: _CONTINUE,
                StreamFinish: _OK,
                StreamConfirm: _OK,
                StreamAbort: _ERROR,
            }.get(kind)
            if status is None:
                raise LocalProtocolError(
                    f"{_event_name(event)} does not exist in {ex.kind} streams",
                    section=SECTIONS[ex.kind],
                )
            out = [pack_header(Header(prog, vers, proc, _STREAM, serial, status))]
        self._transition(ex, message, None)
        return out

    def _send_v1(self, ex: _Exchange, event: Event) -> list[bytes | bytearray | memoryview]:
        message = ">" + _event_name(event)
        self._local_check(ex, message)
        if self.role is Role.CLIENT:
            out = self._send_v1_call(ex, event)
        else:
            out = self._send_v1_reply(ex, event)
        self._transition(ex, message, None)
        return out

    def _send_v1_call(self, ex: _Exchange, event: Event) -> list[bytes | bytearray | memoryview]:
        kind = type(event)
        if kind is not StreamAbort and len(ex.pending) >= V1_WINDOW:
            raise LocalProtocolError(
                f"{V1_WINDOW} stream calls outstanding: wait for a reply", section="§7.2.4"
            )
        prog, vers, proc = ex.header[:3]
        chunk_serial = self.next_serial()
        header = Header(prog, vers, proc, _CALL, chunk_serial, _CONTINUE)
        max_bytes = 0
        out: list[bytes | bytearray | memoryview]
        if kind is StreamData:
            self._check_data(ex, event, V1_CHUNK_MAX)  # type: ignore[arg-type]
            data = event.data  # type: ignore[union-attr]
            size = len(data)
            prefix = _bodies.v1_data_prefix(ex.serial, size)
            padding = _bodies.pad(size)
            out = [pack_header(header, len(prefix) + size + len(padding)) + prefix, data]
            if padding:
                out.append(padding)
            op = V1Op.DATA
        else:
            if kind is StreamHole:
                self._check_data(ex, event, 0)  # type: ignore[arg-type]
                op = V1Op.HOLE
                body = _bodies.pack_v1_call(ex.serial, op, (event.length, event.flags))  # type: ignore[union-attr]
            elif kind is StreamRead:
                max_bytes = event.max_bytes  # type: ignore[union-attr]
                if not isinstance(max_bytes, int) or not 1 <= max_bytes <= V1_CHUNK_MAX:
                    raise LocalProtocolError(
                        f"max_bytes {max_bytes!r}: must be 1..{V1_CHUNK_MAX}", section="§7.2.3"
                    )
                op = V1Op.READ
                body = _bodies.pack_v1_call(ex.serial, op, max_bytes)
            else:
                op = V1Op.FINISH if kind is StreamFinish else V1Op.ABORT
                body = _bodies.pack_v1_call(ex.serial, op)
            out = [pack_header(header, len(body)) + body]
        ex.pending.append((chunk_serial, op, max_bytes))
        self._v1_calls[chunk_serial] = ex
        return out

    def _send_v1_reply(self, ex: _Exchange, event: Event) -> list[bytes | bytearray | memoryview]:
        kind = type(event)
        if not ex.pending:
            raise LocalProtocolError(
                f"{_event_name(event)}: no outstanding stream call to answer", section="§7.2.1"
            )
        head_serial, op, max_bytes = ex.pending[0]
        expected = {
            StreamAck: (V1Op.DATA, V1Op.HOLE),
            StreamConfirm: (V1Op.FINISH, V1Op.ABORT),
            StreamData: (V1Op.READ,),
            StreamHole: (V1Op.READ,),
            StreamEnd: (V1Op.READ,),
        }.get(kind)
        if expected is not None and op not in expected:
            raise LocalProtocolError(
                f"{_event_name(event)} cannot answer the oldest outstanding stream call (op {op})",
                section="§7.2.1",
            )
        prog, vers, proc = ex.header[:3]
        status = _ERROR if kind is StreamError else _OK
        header = Header(prog, vers, proc, _REPLY, head_serial, status)
        out: list[bytes | bytearray | memoryview]
        if kind is StreamData:
            self._check_data(ex, event, max_bytes)  # type: ignore[arg-type]
            data = event.data  # type: ignore[union-attr]
            size = len(data)
            prefix = _bodies.v1_chunk_data_prefix(size)
            padding = _bodies.pad(size)
            out = [pack_header(header, len(prefix) + size + len(padding)) + prefix, data]
            if padding:
                out.append(padding)
        else:
            if kind is StreamHole:
                self._check_data(ex, event, 0)  # type: ignore[arg-type]
                body = _bodies.pack_v1_chunk(V1Op.HOLE, (event.length, event.flags))  # type: ignore[union-attr]
            elif kind is StreamEnd:
                body = _bodies.pack_v1_chunk(V1Op.FINISH)
            elif kind is StreamError:
                body = self._error_payload(event.error)  # type: ignore[union-attr]
            else:
                body = b""
            out = [self._frame(header, body)]
        self._v1_calls.pop(head_serial, None)
        ex.pending.popleft()
        if kind is StreamEnd:  # later READs are cancelled (§7.2.3)
            for cancelled, _op, _max in ex.pending:
                self._v1_calls.pop(cancelled, None)
            ex.pending.clear()
        return out


__all__ = [
    "NEED_DATA",
    "Connection",
    "Direction",
    "Limits",
    "Role",
    "StreamInfo",
    "Variant",
]

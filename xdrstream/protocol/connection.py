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
  ``stream_consumed`` says (that is flow-control accounting only).  The pool of those
  buffers follows the per-stream limit (``framing.pool_size_for``): a stream the
  application keeps within it is received without allocating (``receive_allocations``).
* ``next_serial()`` allocates a client serial (V1 stream calls use the same counter).
* Flow control numbers (§8): ``buffered``, ``stream_info(serial)``,
  ``stream_consumed(serial, n)``, ``reading_paused``.

The engine checks every received frame against the tables of spec.md §9 (in
:mod:`._state`) and the guards of §7; this module maps V2/V3 frames to events and back,
:mod:`.v1` the V1 sub-protocol, :mod:`.exchange` holds the exchanges (and draining),
:mod:`.flow` the flow-control accounting; errors are :class:`RemoteProtocolError` (the
connection is then unusable: every later call re-raises) or :class:`LocalProtocolError`
(nothing changed; the application may carry on).  No other exception escapes.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xdrstream.protocol import _bodies, _wire, v1
from xdrstream.protocol._state import Kind, Role, State
from xdrstream.protocol._wire import (
    CALL,
    CONTINUE,
    ERROR,
    HOLE,
    MESSAGE,
    OK,
    REPLY,
    STREAM,
    Buffers,
    remote,
)
from xdrstream.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdrstream.protocol.events import (
    NEED_DATA,
    OVERSIZED_CALL,
    Call,
    ConnectionClosed,
    ErrorReply,
    Event,
    ExchangeEvent,
    KeepalivePing,
    KeepalivePong,
    Message,
    NeedData,
    Reply,
    StreamAbort,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamHole,
)
from xdrstream.protocol.exchange import Exchange, Exchanges
from xdrstream.protocol.flow import FlowControl
from xdrstream.protocol.framing import (
    HEADER_SIZE,
    KEEPALIVE_PING,
    KEEPALIVE_PONG,
    KEEPALIVE_PROGRAM,
    KEEPALIVE_VERSION,
    LEN_SIZE,
    MAX_FRAME,
    MIN_FRAME,
    STREAM_BUFFER,
    Frame,
    FrameDecoder,
    Header,
    MessageStatus,
    MessageType,
    pack_header,
    pool_size_for,
)
from xdrstream.protocol.programs import Direction, Registry, Variant

_TYPE_OF = {int(t): t for t in MessageType}  # (next_raw has checked the values)
_STATUS_OF = {int(s): s for s in MessageStatus}
_TYPE_STREAM = int(MessageType.STREAM)
_STATUS_CONTINUE = int(MessageStatus.CONTINUE)
_LEN = struct.Struct(">I")

# Status of the V2/V3 STREAM frame that carries each control event (§7.3, §7.4).
_STREAM_STATUS: dict[type[StreamEvent], MessageStatus] = {
    StreamEnd: CONTINUE,
    StreamFinish: OK,
    StreamConfirm: OK,
    StreamAbort: ERROR,
}


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
    ``max_held``: bytes of download data one exchange may receive before its reply (§7.3.2).
    They cannot wait in the socket (the reply is behind them), so this bound is its own,
    larger than ``stream_buffer``: libvirtd's race can send several chunks first.
    """

    max_frame: int = MAX_FRAME
    max_receive_buffer: int = MAX_FRAME + LEN_SIZE + 4 * 1024 * 1024
    stream_buffer: int | None = STREAM_BUFFER
    max_draining: int = 256
    max_held: int = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What :meth:`Connection.stream_info` reports about one exchange."""

    serial: int
    state: State
    kind: Kind  # Kind.CALL or e.g. Kind.V1_UPLOAD ("v1 upload")
    sparse: bool
    outstanding: int  # V1: stream calls sent/received and not yet answered
    window: int  # V1: stream calls the client may still send (0 otherwise)
    read_max: int  # V1 download, server: max_bytes of the oldest READ (0 if none)
    unconsumed: int  # bytes delivered by next_event not yet passed to stream_consumed


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
        self._registry = Registry.of(programs)
        self._decoder = FrameDecoder(
            self.limits.max_frame,
            self.limits.max_receive_buffer,
            pool_size_for(self.limits.stream_buffer),
        )
        self._max_data = self.limits.max_frame - HEADER_SIZE  # largest payload of a frame
        if role is Role.SERVER:  # refuse oversized calls from their header (§3.6)
            self._decoder.call_bound = self._call_bound
        self._flow = FlowControl(self.limits.stream_buffer)
        self._exchanges = Exchanges(
            role,
            self._flow,
            self.limits.max_draining,
            self.limits.max_held,
        )
        # events held before their reply (§7.3.2), to apply before reading more frames
        self._replay: deque[tuple[Exchange, ExchangeEvent, Frame]] = deque()
        self._eof = False
        self._closed = False  # ConnectionClosed delivered and the decoder released
        self._error: RemoteProtocolError | None = None

    # ------------------------------------------------------------------ public queries
    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return self._decoder.buffered

    @property
    def reading_paused(self) -> bool:
        """True when the driver should stop reading the transport (§8.2): some stream
        holds ``limits.stream_buffer`` or more delivered, unconsumed bytes."""
        return self._flow.paused

    @property
    def receive_allocations(self) -> int:
        """Receive buffers allocated so far for frames received in place (:meth:`get_buffer`):
        a stream kept within its limit reuses pooled ones, so this stops growing (§8.1)."""
        return self._decoder.allocations

    @property
    def frame_remaining(self) -> int:
        """Bytes still due for the frame being received in place (0 if none).  While it is
        non-zero, :meth:`get_buffer` returns exactly the rest of that frame's payload: a
        driver may fill it with several reads and report them with one
        :meth:`buffer_updated`, since no event can come out before the frame is complete."""
        return self._decoder.frame_remaining

    def exchange(self, serial: int) -> Exchange | None:
        """The engine's own exchange with primary serial ``serial`` (None if it does not
        know it, e.g. once it has ended): read its ``state``, ``kind``, ``window``,
        ``read_max`` and ``unconsumed`` without a copy; never change it."""
        return self._exchanges.get(serial)

    def stream_info(self, serial: int) -> StreamInfo | None:
        """State and counters of the exchange with primary serial ``serial`` (None if the
        engine does not know it)."""
        ex = self._exchanges.get(serial)
        if ex is None:
            return None
        return StreamInfo(
            serial,
            ex.state,
            ex.kind,
            ex.sparse,
            len(ex.pending),
            ex.window,
            ex.read_max,
            ex.unconsumed,
        )

    def stream_consumed(self, serial: int, nbytes: int) -> None:
        """Report that the application has consumed ``nbytes`` of stream ``serial``'s
        delivered data (§8.2).  Streams that have ended are ignored: their count was
        released when they ended."""
        ex = self._exchanges.get(serial)
        if ex is None or self._flow.limit is None:
            return
        if ex.state is State.DRAINING:  # its count was released when it ended
            return
        self._flow.consumed(ex, nbytes)

    def next_serial(self) -> int:
        """A serial for the next Call (§4.3): increments by one, skipping serials in use."""
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only clients allocate serials", section="§4.3")
        return self._exchanges.next_serial()

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
        self._decoder.feed(data)  # LocalProtocolError beyond max_receive_buffer (§8.1)

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
        try:  # (LocalProtocolError if max_receive_buffer bytes are held, §8.1)
            return self._decoder.get_buffer(sizehint)
        except RemoteProtocolError as exc:
            self._error = exc
            self._decoder.release()
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
        if self._closed:
            return ConnectionClosed()
        try:
            while True:
                if self._replay:
                    early = self._replay.popleft()
                    replayed = self._exchanges.deliver(*early)
                    if replayed is not None:
                        return replayed
                    continue
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
                    self._decoder.release()  # the connection ended: give memory back
                    self._closed = True
                    return ConnectionClosed()
                prog, vers, proc, mtype, serial, status, payload, offset = raw
                if mtype == _TYPE_STREAM and status == _STATUS_CONTINUE and payload:
                    # Fast path: data of a V2/V3 stream whose state takes data (what the
                    # table and _receive_stream would decide, without their generality).
                    ex = self._exchanges.by_serial.get(serial)
                    if ex is not None and ex.receives_data and ex.words == (prog, vers, proc):
                        if self._flow.limit is not None:
                            self._flow.delivered(ex, len(payload))
                        return StreamData(serial, payload)
                header = Header(prog, vers, proc, _TYPE_OF[mtype], serial, _STATUS_OF[status])
                event = self._receive(Frame(header, payload, offset))
                if event is not None:
                    return event
        except RemoteProtocolError as exc:
            self._error = exc
            self._decoder.release()  # the connection is unusable: its buffers are garbage
            raise

    def _receive(self, frame: Frame) -> Event | None:
        h = frame.header
        mtype = h.type
        if mtype is MESSAGE:
            return self._receive_message(frame)
        if mtype is STREAM or mtype is HOLE:
            return self._receive_stream(frame)
        if self.role is Role.SERVER:
            if mtype is CALL:
                if h.status is OK:
                    return self._receive_call(frame)
                if h.status is CONTINUE:
                    return v1.receive_call(self._exchanges, frame)
                raise remote(frame, "a call's status must be OK or CONTINUE", "§4.4")
        elif mtype is REPLY:
            return self._receive_reply(frame)
        if mtype in (MessageType.CALL_WITH_FDS, MessageType.REPLY_WITH_FDS):
            raise remote(frame, "descriptor passing is not supported", "§4.8")
        raise remote(frame, f"a {self.role.value} never receives this type", "§4.1")

    def _receive_message(self, frame: Frame) -> Event:
        h = frame.header
        if h.status is not OK or h.serial != 0:
            raise remote(frame, "a MESSAGE has status OK and serial 0", "§4.6")
        if h.prog == KEEPALIVE_PROGRAM:
            if h.vers != KEEPALIVE_VERSION or h.proc not in (KEEPALIVE_PING, KEEPALIVE_PONG):
                raise remote(frame, "unknown keepalive version or procedure", "§5")
            if len(frame.payload):
                raise remote(frame, "keepalive messages have no payload", "§5")
            return KeepalivePing() if h.proc == KEEPALIVE_PING else KeepalivePong()
        proc = self._registry.lookup(h.prog, h.vers, h.proc)
        if proc is None:
            return Message(h.prog, h.vers, h.proc, bytes(frame.payload))
        return Message(h.prog, h.vers, h.proc, _wire.decode(frame, proc.arg, "§4.6"))

    def _call_bound(self, prog: int, vers: int, proc: int) -> int | None:
        found = self._registry.lookup(prog, vers, proc)
        return None if found is None else found.arg_max

    def _receive_call(self, frame: Frame) -> Event:
        h = frame.header
        serial = h.serial
        # a DRAINING serial is free: the client is done with it (§4.3.2)
        if not self._exchanges.free_draining(serial) and self._exchanges.in_use(serial):
            raise remote(frame, "serial is already in use", "§4.3")
        if self._decoder.discarded:  # refused from its header, payload discarded (§3.6)
            ex = Exchange(serial, (h.prog, h.vers, h.proc), None, Role.SERVER, False)
            self._exchanges.received(ex, "<Call", frame)
            self._exchanges.add(ex)
            return Call(serial, h.prog, h.vers, h.proc, None, False, OVERSIZED_CALL)
        proc = self._registry.lookup(h.prog, h.vers, h.proc)
        if proc is None:
            args: Any = bytes(frame.payload)
        else:
            args = _wire.decode(frame, proc.arg, "§4.4")
        ex = Exchange(serial, (h.prog, h.vers, h.proc), proc, Role.SERVER, proc is not None, args)
        self._exchanges.received(ex, "<Call", frame)
        self._exchanges.add(ex)
        return Call(serial, h.prog, h.vers, h.proc, args, proc is not None)

    def _receive_stream(self, frame: Frame) -> Event | None:
        h = frame.header
        ex = self._exchanges.for_stream(frame, h.serial, "§7.1.1")
        if ex.mode is None:  # a call of an unknown procedure: V3 frames sent early (§10.2)
            return self._exchanges.deliver(ex, self._unknown_stream_event(frame), frame)
        if ex.mode.variant is Variant.V1:
            raise remote(frame, "V1 streams carry no STREAM messages", "§7.2.1")
        payload = frame.payload
        event: StreamEvent
        if h.type is HOLE:
            if not ex.sparse and h.status is CONTINUE:
                raise remote(
                    frame,
                    "hole in a stream not declared @sparse or whose call asked for none",
                    "§7.1.3",
                )
            event = self._hole(frame)
        elif h.status is CONTINUE:
            event = StreamData(h.serial, payload) if len(payload) else StreamEnd(h.serial)
        elif h.status is OK:
            if len(payload):
                raise remote(frame, "STREAM/OK has an empty payload", "§7.3.3")
            is_client = self.role is Role.CLIENT
            event = StreamConfirm(h.serial) if is_client else StreamFinish(h.serial)
        elif self.role is Role.CLIENT:
            event = StreamError(h.serial, _wire.decode_error(frame, "§4.5"))
        else:
            if len(payload):
                raise remote(frame, "a client abort has an empty payload", "§7.3.3")
            event = StreamAbort(h.serial)
        return self._exchanges.deliver(ex, event, frame)

    @staticmethod
    def _hole(frame: Frame) -> StreamHole:
        h = frame.header
        if h.status is not CONTINUE:
            raise remote(frame, "a STREAM_HOLE has status CONTINUE", "§7.1.3")
        try:
            length, flags = _bodies.unpack_hole(frame.payload)
        except RemoteProtocolError as exc:
            raise remote(frame, str(exc), "§7.1.3") from None
        return StreamHole(h.serial, length, flags)

    def _unknown_stream_event(self, frame: Frame) -> StreamEvent:
        """What a client's STREAM/STREAM_HOLE frame is, for a call this server could not
        take (the table drops the client's stream events and refuses anything else)."""
        h = frame.header
        payload = frame.payload
        if h.type is HOLE:
            return self._hole(frame)
        if h.status is CONTINUE:
            return StreamData(h.serial, payload) if len(payload) else StreamEnd(h.serial)
        if len(payload):
            raise remote(frame, "a client's finish or abort has an empty payload", "§7.4")
        return StreamFinish(h.serial) if h.status is OK else StreamAbort(h.serial)

    def _receive_reply(self, frame: Frame) -> Event | None:
        h = frame.header
        serial = h.serial
        ex = self._exchanges.v1_calls.get(serial)
        if ex is not None:
            return v1.receive_reply(self._exchanges, ex, frame)
        ex = self._exchanges.get(serial)
        if ex is None:
            raise remote(frame, "no call is waiting for this reply", "§4.4")
        if (h.prog, h.vers, h.proc) != ex.words:
            raise remote(frame, "reply does not match its call's procedure", "§4.4")
        event: ExchangeEvent
        if h.status is OK:
            if ex.state not in (State.CALLING, State.FINISHING, State.ABORTING, State.EOF):
                # decode only where a Reply is allowed; the table rejects it otherwise
                event = Reply(serial, None)
            else:
                codec = ex.procedure.result if ex.procedure is not None else None
                event = Reply(serial, _wire.decode(frame, codec, "§4.4"))
        elif h.status is ERROR:
            event = ErrorReply(serial, _wire.decode_error(frame, "§4.5"))
        else:
            raise remote(frame, "a reply's status must be OK or ERROR", "§4.4")
        delivered = self._exchanges.deliver(ex, event, frame)
        if ex.held:  # stream events that came before this reply follow it (§7.3.2)
            self._replay.extend((ex, e, f) for e, f in self._exchanges.take_held(ex))
        return delivered

    # ------------------------------------------------------------------ sending
    def send(self, event: Event) -> bytes:
        """The bytes that carry ``event`` (spec.md §12.2)."""
        buffers = self.send_buffers(event)
        return bytes(buffers[0]) if len(buffers) == 1 else b"".join(buffers)

    def send_buffers(self, event: Event) -> Buffers:
        """As :meth:`send`, as a list of buffers: a stream payload is passed through as
        the caller's own object, not copied (write it with ``sendmsg``/``writelines``)."""
        if self._error is not None:
            raise self._error
        if type(event) is StreamData:
            # Fast path: data on a V2/V3 stream whose state lets data out (as _send_stream)
            ex = self._exchanges.by_serial.get(event.serial)
            if ex is not None and ex.sends_data:
                data = event.data
                size = data.nbytes if type(data) is memoryview else len(data)
                if size == ex.data_size:
                    return [ex.data_frame, data]
                if 0 < size <= self._max_data:
                    head = _LEN.pack(MIN_FRAME + size) + ex.data_head
                    ex.data_size, ex.data_frame = size, head
                    return [head, data]
        if isinstance(event, Call):
            return self._send_call(event)
        if isinstance(event, Message):
            return [self._send_message(event)]
        if isinstance(event, (KeepalivePing, KeepalivePong)):
            proc = KEEPALIVE_PING if type(event) is KeepalivePing else KEEPALIVE_PONG
            header = Header(KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, proc, MESSAGE, 0, OK)
            return [pack_header(header)]
        if type(event) is ConnectionClosed:
            raise LocalProtocolError("ConnectionClosed is only received", section="§12.1")
        if not isinstance(event, ExchangeEvent) or not isinstance(event.serial, int):
            raise LocalProtocolError(f"cannot send {event!r}", section="§12.1")
        serial = event.serial
        ex = self._exchanges.get(serial)
        if ex is None or ex.state is State.DRAINING:
            raise LocalProtocolError(
                f"{_wire.event_name(event)}: no open call or stream with serial {serial}",
                section="§4.3",
            )
        if isinstance(event, (Reply, ErrorReply)):
            return self._send_reply(ex, event)
        if ex.mode is None or not isinstance(event, StreamEvent):
            raise LocalProtocolError(
                f"{_wire.event_name(event)}: call {serial} has no stream", section="§6"
            )
        if ex.mode.variant is Variant.V1:
            return v1.send(self._exchanges, ex, event, self.limits.max_frame)
        return self._send_stream(ex, event)

    def _send_call(self, event: Call) -> Buffers:
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only a client sends calls", section="§4.4")
        serial = event.serial
        _wire.check_words(event.program, event.version, event.procedure, serial)
        if self._exchanges.in_use(serial):
            raise LocalProtocolError(f"serial {serial} is in use", section="§4.3")
        proc = self._registry.lookup(event.program, event.version, event.procedure)
        if proc is None:
            raise LocalProtocolError(
                f"procedure {event.program:#x}/{event.version}/{event.procedure} is not "
                "registered with this connection",
                section="§4.4",
            )
        header = Header(event.program, event.version, event.procedure, CALL, serial, OK)
        payload = _wire.encode(proc.arg, event.args, "call arguments", "§4.4")
        data = _wire.frame(header, payload, self.limits.max_frame)
        words = (event.program, event.version, event.procedure)
        ex = Exchange(serial, words, proc, Role.CLIENT, True, event.args)
        self._exchanges.sent(ex, ">Call")
        self._exchanges.add(ex)
        return [data]

    def _send_message(self, event: Message) -> bytes:
        _wire.check_words(event.program, event.version, event.procedure, 0)
        proc = self._registry.lookup(event.program, event.version, event.procedure)
        if proc is None:
            if not isinstance(event.body, (bytes, bytearray, memoryview)):
                raise LocalProtocolError(
                    "body of an unregistered message must be bytes", section="§4.6"
                )
            payload = bytes(event.body)
        else:
            payload = _wire.encode(proc.arg, event.body, "message body", "§4.6")
        header = Header(event.program, event.version, event.procedure, MESSAGE, 0, OK)
        return _wire.frame(header, payload, self.limits.max_frame)

    def _send_reply(self, ex: Exchange, event: Reply | ErrorReply) -> Buffers:
        message = ">" + _wire.event_name(event)
        if not ex.known and type(event) is Reply:
            raise LocalProtocolError(
                "the procedure is not registered: answer with ErrorReply", section="§4.4"
            )
        ex.check_send(message)
        prog, vers, proc = ex.words
        if isinstance(event, ErrorReply):
            payload = _wire.error_payload(event.error)
            status = ERROR
        else:
            codec = ex.procedure.result if ex.procedure is not None else None
            payload = _wire.encode(codec, event.result, "reply result", "§4.4")
            status = OK
        header = Header(prog, vers, proc, REPLY, ex.serial, status)
        data = _wire.frame(header, payload, self.limits.max_frame)
        self._exchanges.sent(ex, message)
        return [data]

    def _send_stream(self, ex: Exchange, event: StreamEvent) -> Buffers:
        """A stream event on a V2/V3 stream (§7.3, §7.4)."""
        message = ">" + _wire.event_name(event)
        ex.check_send(message)
        prog, vers, proc = ex.words
        serial = ex.serial
        out: Buffers
        if isinstance(event, StreamData):
            size = _wire.check_data(event, self.limits.max_frame - HEADER_SIZE)
            header = Header(prog, vers, proc, STREAM, serial, CONTINUE)
            out = [pack_header(header, size), event.data]
        elif isinstance(event, StreamHole):
            _wire.check_hole(event, ex.sparse)
            body = _bodies.pack_hole(event.length, event.flags)
            out = [pack_header(Header(prog, vers, proc, HOLE, serial, CONTINUE), 12) + body]
        elif isinstance(event, StreamError):
            payload = _wire.error_payload(event.error)
            header = Header(prog, vers, proc, STREAM, serial, ERROR)
            out = [_wire.frame(header, payload, self.limits.max_frame)]
        else:
            status = _STREAM_STATUS.get(type(event))
            if status is None:
                raise LocalProtocolError(
                    f"{_wire.event_name(event)} does not exist in {ex.kind} streams",
                    section=ex.kind.section,
                )
            out = [pack_header(Header(prog, vers, proc, STREAM, serial, status))]
        self._exchanges.sent(ex, message)
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

"""The V1 sub-protocol (spec.md §7.2): a stream call per chunk, answered in order.

A V1 stream is opened by its primary call and reply like any call; then every chunk, hole,
READ, FINISH and ABORT is a CALL/CONTINUE with a serial of its own, naming the stream in its
body (``xs_v1_call``), and the server answers each, oldest first, with a REPLY.  At most
``V1_WINDOW`` of these calls are outstanding (§7.2.4).  The engine maps them onto the same
events as V2/V3 streams; this module is that mapping, both ways, for both roles.
"""

from __future__ import annotations

from xdrstream.protocol import _bodies, _wire
from xdrstream.protocol._bodies import V1_CHUNK_MAX, V1_WINDOW, V1Op
from xdrstream.protocol._state import Action, Role, State
from xdrstream.protocol._wire import CALL, CONTINUE, ERROR, OK, REPLY, Buffers, remote
from xdrstream.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdrstream.protocol.events import (
    StreamAbort,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamHole,
    StreamRead,
)
from xdrstream.protocol.exchange import Exchange, Exchanges, V1Call
from xdrstream.protocol.framing import Frame, Header, pack_header

# Which outstanding call each of the server's answers may answer (§7.2.1).
_ANSWERS: dict[type[StreamEvent], tuple[int, ...]] = {
    StreamAck: (V1Op.DATA, V1Op.HOLE),
    StreamConfirm: (V1Op.FINISH, V1Op.ABORT),
    StreamData: (V1Op.READ,),
    StreamHole: (V1Op.READ,),
    StreamEnd: (V1Op.READ,),
}


# --------------------------------------------------------------------------- receiving
def receive_call(exchanges: Exchanges, frame: Frame) -> StreamEvent | None:
    """Server: a CALL/CONTINUE, one stream call of a V1 stream."""
    try:
        stream, op, arg = _bodies.unpack_v1_call(frame.payload)
    except RemoteProtocolError as exc:
        raise remote(frame, str(exc), "§7.2.1") from None
    ex = exchanges.for_stream(frame, stream, "§7.2.1")
    if not ex.v1:
        raise remote(frame, f"stream {stream} is not a V1 stream", "§7.2.1")
    sparse = ex.sparse
    chunk_serial = frame.header.serial
    if not exchanges.free_draining(chunk_serial, keep=ex) and exchanges.in_use(chunk_serial):
        raise remote(frame, "serial is already in use", "§4.3")
    event: StreamEvent
    max_bytes = 0
    if op == V1Op.DATA:
        assert isinstance(arg, (bytes, memoryview))
        if not len(arg):
            raise remote(frame, "V1 DATA carries at least one byte", "§7.2.1")
        event = StreamData(stream, arg)
    elif op == V1Op.HOLE:
        assert isinstance(arg, tuple)
        if not sparse:
            raise remote(
                frame,
                "hole in a stream not declared @sparse or whose call asked for none",
                "§7.1.3",
            )
        event = StreamHole(stream, arg[0], arg[1])
    elif op == V1Op.FINISH:
        event = StreamFinish(stream)
    elif op == V1Op.ABORT:
        event = StreamAbort(stream)
    else:
        assert isinstance(arg, int)
        max_bytes = arg
        event = StreamRead(stream, arg)
    if (
        op != V1Op.ABORT
        and ex.state is not State.DRAINING
        and ex.state is not State.EOF
        and len(ex.pending) >= V1_WINDOW
    ):
        raise remote(frame, f"more than {V1_WINDOW} stream calls outstanding", "§7.2.4")
    action = exchanges.received(ex, "<" + type(event).__name__, frame)
    if action is Action.DROP:
        return None
    if ex.state is State.CLOSED:
        return event
    if op == V1Op.ABORT:  # outstanding calls are cancelled: they get no reply (§7.2.5)
        exchanges.cancel_pending(ex)
    exchanges.add_pending(ex, V1Call(chunk_serial, op, max_bytes))
    if type(event) is StreamData:
        exchanges.flow.delivered(ex, len(event.data))
    return event


def receive_reply(exchanges: Exchanges, ex: Exchange, frame: Frame) -> StreamEvent | None:
    """Client: the REPLY to one of ``ex``'s stream calls."""
    h = frame.header
    if (h.prog, h.vers, h.proc) != ex.words:
        raise remote(frame, "reply does not match its stream's procedure", "§7.2.1")
    if h.status is CONTINUE:
        raise remote(frame, "a reply's status must be OK or ERROR", "§4.4")
    head = ex.pending[0]
    if h.serial != head.serial:
        # Only the abort call may be answered before older calls: they are cancelled.
        abort = ex.pending[-1]
        if ex.state is not State.ABORTING or h.serial != abort.serial:
            raise remote(frame, "V1 replies come in the order of the stream's calls", "§7.2.1")
        while len(ex.pending) > 1:
            exchanges.answer_oldest(ex)
        head = abort
    event: StreamEvent
    if h.status is ERROR:
        event = StreamError(ex.serial, _wire.decode_error(frame, "§4.5"))
    elif head.op in (V1Op.DATA, V1Op.HOLE):
        if len(frame.payload):
            raise remote(frame, "a V1 acknowledgement has no payload", "§7.2.1")
        event = StreamAck(ex.serial)
    elif head.op in (V1Op.FINISH, V1Op.ABORT):
        if len(frame.payload):
            raise remote(frame, "a V1 confirmation has no payload", "§7.2.1")
        event = StreamConfirm(ex.serial)
    else:  # READ
        event = _read_answer(ex, frame, head.max_bytes)
    exchanges.answer_oldest(ex)
    result = exchanges.deliver(ex, event, frame)
    if type(event) is StreamEnd and ex.state is State.EOF:
        exchanges.cancel_pending(ex)  # READs sent after the one that met EOF (§7.2.3)
    assert result is None or isinstance(result, StreamEvent)
    return result


def _read_answer(ex: Exchange, frame: Frame, max_bytes: int) -> StreamEvent:
    try:
        chunk_op, arg = _bodies.unpack_v1_chunk(frame.payload)
    except RemoteProtocolError as exc:
        raise remote(frame, str(exc), "§7.2.1") from None
    if chunk_op == V1Op.DATA:
        assert isinstance(arg, (bytes, memoryview))
        if not 1 <= len(arg) <= max_bytes:
            raise remote(frame, f"V1 chunk of {len(arg)} bytes for a READ of {max_bytes}", "§7.2.3")
        return StreamData(ex.serial, arg)
    if chunk_op == V1Op.HOLE:
        assert isinstance(arg, tuple)
        if not ex.sparse:
            raise remote(
                frame,
                "hole in a stream not declared @sparse or whose call asked for none",
                "§7.1.3",
            )
        return StreamHole(ex.serial, arg[0], arg[1])
    return StreamEnd(ex.serial)


# --------------------------------------------------------------------------- sending
def send(exchanges: Exchanges, ex: Exchange, event: StreamEvent, max_frame: int) -> Buffers:
    """The frames of a stream event on V1 stream ``ex`` (a call or an answer)."""
    message = ">" + type(event).__name__
    ex.check_send(message)
    if exchanges.role is Role.CLIENT:
        out = _send_call(exchanges, ex, event)
    else:
        out = _send_answer(exchanges, ex, event, max_frame)
    exchanges.sent(ex, message)
    return out


def _send_call(exchanges: Exchanges, ex: Exchange, event: StreamEvent) -> Buffers:
    if type(event) is not StreamAbort and len(ex.pending) >= V1_WINDOW:
        raise LocalProtocolError(
            f"{V1_WINDOW} stream calls outstanding: wait for a reply", section="§7.2.4"
        )
    prog, vers, proc = ex.words
    chunk_serial = exchanges.next_serial()
    header = Header(prog, vers, proc, CALL, chunk_serial, CONTINUE)
    max_bytes = 0
    out: Buffers
    if isinstance(event, StreamData):
        size = _wire.check_data(event, V1_CHUNK_MAX)
        prefix = _bodies.v1_data_prefix(ex.serial, size)
        padding = _bodies.pad(size)
        out = [pack_header(header, len(prefix) + size + len(padding)) + prefix, event.data]
        if padding:
            out.append(padding)
        op = V1Op.DATA
    else:
        if isinstance(event, StreamHole):
            _wire.check_hole(event, ex.sparse)
            op = V1Op.HOLE
            body = _bodies.pack_v1_call(ex.serial, op, (event.length, event.flags))
        elif isinstance(event, StreamRead):
            max_bytes = event.max_bytes
            if not isinstance(max_bytes, int) or not 1 <= max_bytes <= V1_CHUNK_MAX:
                raise LocalProtocolError(
                    f"max_bytes {max_bytes!r}: must be 1..{V1_CHUNK_MAX}", section="§7.2.3"
                )
            op = V1Op.READ
            body = _bodies.pack_v1_call(ex.serial, op, max_bytes)
        else:
            op = V1Op.FINISH if type(event) is StreamFinish else V1Op.ABORT
            body = _bodies.pack_v1_call(ex.serial, op)
        out = [pack_header(header, len(body)) + body]
    exchanges.add_pending(ex, V1Call(chunk_serial, op, max_bytes))
    return out


def _send_answer(exchanges: Exchanges, ex: Exchange, event: StreamEvent, max_frame: int) -> Buffers:
    name = type(event).__name__
    if not ex.pending:
        raise LocalProtocolError(f"{name}: no outstanding stream call to answer", section="§7.2.1")
    head = ex.pending[0]
    expected = _ANSWERS.get(type(event))
    if expected is not None and head.op not in expected:
        raise LocalProtocolError(
            f"{name} cannot answer the oldest outstanding stream call (op {head.op})",
            section="§7.2.1",
        )
    prog, vers, proc = ex.words
    status = ERROR if type(event) is StreamError else OK
    header = Header(prog, vers, proc, REPLY, head.serial, status)
    out: Buffers
    if isinstance(event, StreamData):
        size = _wire.check_data(event, head.max_bytes)
        prefix = _bodies.v1_chunk_data_prefix(size)
        padding = _bodies.pad(size)
        out = [pack_header(header, len(prefix) + size + len(padding)) + prefix, event.data]
        if padding:
            out.append(padding)
    else:
        if isinstance(event, StreamHole):
            _wire.check_hole(event, ex.sparse)
            body = _bodies.pack_v1_chunk(V1Op.HOLE, (event.length, event.flags))
        elif type(event) is StreamEnd:
            body = _bodies.pack_v1_chunk(V1Op.FINISH)
        elif isinstance(event, StreamError):
            body = _wire.error_payload(event.error)
        else:
            body = b""
        out = [_wire.frame(header, body, max_frame)]
    exchanges.answer_oldest(ex)
    if type(event) is StreamEnd:  # later READs are cancelled (§7.2.3)
        exchanges.cancel_pending(ex)
    return out

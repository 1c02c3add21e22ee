"""The public stream API: :class:`Stream` (asyncio) and :class:`BlockingStream`.

A stream object stands for one exchange (spec.md §2.3) on a driver's connection
(:mod:`.aio` or :mod:`.blocking`): a call, its reply and, if the procedure declares one
(§6), its data stream.  The same object serves both roles.

Client side (returned by ``open_stream()``/``call()`` of the connection or the clients)::

    stream = await conn.open_stream(proc, args)     # V1/V2: waits for the reply
    await stream.send(buf)                          # upload: data, cut into frames
    await stream.send_hole(length)                  # upload, @sparse procedures
    result = await stream.finish()                  # upload: commit; V3: the reply
    chunk = await stream.recv()                     # download: memoryview | Hole | None
    async for chunk in stream: ...                  # download until the end
    await stream.abort()                            # give up (either direction)

Server side (handed to the handler of an incoming call)::

    await stream.accept(result)                     # plain call: reply; V1/V2: open stream
    chunk = await stream.recv()                     # upload: data | Hole | None (finished)
    await stream.complete(result)                   # upload: confirm (V3: reply)
    await stream.send(buf); await stream.send_hole(n)
    await stream.end(result)                        # download: end of data (V3: reply)
    await stream.fail(code, message)                # error reply / stream error

``BlockingStream`` has the same methods without ``await`` (and plain iteration).  A stream
is used by one task or thread at a time; different streams of one connection may be used
concurrently.  Errors: :class:`~.errors.RemoteFailure` (the peer's error body, with
``code`` and ``message``), :class:`~.errors.ConnectionLost`/:class:`~.errors.PeerTimeout`,
:class:`~.errors.StreamAborted` (server: the client aborted), :class:`~.errors.StreamClosed`.

Received data is a read-only ``memoryview`` that stays valid; sent buffers are passed to
the socket without copying and may be reused when the call returns.

How it works: every operation is written once, as a generator over the exchange state
that yields the events to send and ``WAIT`` when it needs the peer's next event; the
drivers run these generators with their own I/O (threads or asyncio).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from xdrstream.protocol import LocalProtocolError, RemoteError, Variant
from xdrstream.protocol.bodies import V1_CHUNK_MAX
from xdrstream.protocol.events import (
    Call,
    ErrorReply,
    Event,
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
from xdrstream.protocol.exchange import Exchange as EngineExchange
from xdrstream.protocol.framing import LEGACY_STREAM_PAYLOAD
from xdrstream.protocol.states import Kind as EngineKind
from xdrstream.transport.errors import (
    ERR_INTERNAL,
    ERR_OPERATION_ABORTED,
    ConnectionLost,
    RemoteFailure,
    ServerError,
    StreamAborted,
    StreamClosed,
    TransportError,
    remote_error,
)
from xdrstream.transport.sparse import Hole as Hole  # the one hole type, re-exported

T = TypeVar("T")

DEFAULT_CHUNK = LEGACY_STREAM_PAYLOAD
"""Data bytes per stream frame by default: what libvirt sends (spec.md §3.3)."""


Chunk = memoryview | Hole


class Wait:
    """The type of :data:`WAIT`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WAIT"


WAIT: Final = Wait()
"""Yielded by an operation that needs the next event of its exchange."""

Op = Generator[Event | Wait, None, T]


class Steps(Generic[T]):
    """An operation as a driver runs it: :meth:`advance` gives the next step (an event to
    send, or WAIT) until it returns None, the operation's result then in ``value``."""

    __slots__ = ("_op", "value")

    def __init__(self, op: Op[T]) -> None:
        self._op = op
        self.value: T = cast(T, None)

    def advance(self, refused: LocalProtocolError | None = None) -> Event | Wait | None:
        """The step after the last one was done; ``refused``: the engine refused to send
        its event (the operation decides what that means, see ``_emit``)."""
        try:
            return self._op.send(None) if refused is None else self._op.throw(refused)
        except StopIteration as stop:
            self.value = stop.value
            return None

    def close(self) -> None:
        self._op.close()


class Kind(enum.Enum):
    CALL = "call"
    UPLOAD = "upload"
    DOWNLOAD = "download"


class Exchange:
    """Driver-side state of one exchange, keyed by its primary serial."""

    def __init__(
        self,
        serial: int,
        client: bool,
        kind: Kind,
        variant: Variant | None,
        sparse: bool,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.serial = serial
        self.client = client
        self.kind = kind
        self.variant = variant
        self.sparse = sparse
        limit = V1_CHUNK_MAX if variant is Variant.V1 else chunk_size
        self.chunk_size = max(1, min(chunk_size, limit))
        # What the wire says (V1 calls outstanding, READs to answer, the table's state) is
        # the engine's exchange's, read there.  What is kept here is the application's side:
        # the events routed to it and not yet taken (the engine routes ahead of it), and
        # what it has taken or promised so far.
        self.inbox: deque[Event] = deque()
        self.closed = False  # the application has seen (or made) the exchange's end
        self.result: Any = None  # the primary reply's result
        self.ack_due = False  # server V1 upload: last chunk handed out, not yet acked
        self.accepted = False  # server: the application accepted the call (V3: no reply)
        self.eof = False  # the application took (or sent) the end of data
        self.aborted = False  # server: the application saw the client's abort
        # set by the driver
        self.on_consumed: Callable[[int, int], None] = lambda serial, n: None
        self.engine: EngineExchange | None = None  # the engine's exchange, once it has one
        self.waker: Any = None
        self.abort_event: Any = None  # server: set when the client's abort arrives

    @property
    def v1(self) -> bool:
        return self.variant is Variant.V1

    def __repr__(self) -> str:
        what = (
            self.kind.value if self.variant is None else f"{self.variant.value} {self.kind.value}"
        )
        return f"<exchange {self.serial} {what}{' closed' if self.closed else ''}>"


# --------------------------------------------------------------------------- helpers
def _pop(ex: Exchange) -> Op[Event]:
    while not ex.inbox:
        yield WAIT
    return _take(ex)


def _take(ex: Exchange) -> Event:
    """The inbox's oldest event, its data counted as consumed (§8.2)."""
    event = ex.inbox.popleft()
    if type(event) is StreamData:
        ex.on_consumed(ex.serial, len(event.data))
    return event


def _upload_chunk(ex: Exchange, event: StreamData | StreamHole) -> Chunk:
    """What an upload's data or hole gives the application; V1 acknowledges it when the
    application asks for the next one (§7.2.2)."""
    ex.ack_due = ex.v1
    if isinstance(event, StreamData):
        return memoryview(event.data)
    return Hole(event.length)


def _engine(ex: Exchange) -> EngineExchange:
    """The engine's exchange, where V1's outstanding calls are counted (§7.2.4)."""
    if ex.engine is None:
        raise TransportError(f"{ex!r}: the engine has no exchange for it (driver bug)")
    return ex.engine


def _emit(ex: Exchange, event: Event) -> Op[bool]:
    """Send ``event`` (True).  If the engine refuses it because the peer ended the exchange
    (or reached the end of data) meanwhile, the peer's event, still in the inbox, explains
    (False: a READ that came too late, the end of data is on its way)."""
    try:
        yield event
        return True
    except LocalProtocolError:
        for pending in ex.inbox:
            kind = type(pending)
            if isinstance(pending, (StreamError, ErrorReply)):
                raise _failed(ex, pending.error) from None
            if kind is StreamAbort and not ex.client:
                raise _server_aborted(ex) from None
            if kind is StreamEnd and type(event) is StreamRead:
                return False  # the READ came too late: end of data is on its way (§7.2.3)
        raise


def _unexpected(ex: Exchange, event: Event) -> TransportError:
    return TransportError(f"{ex!r}: unexpected {type(event).__name__} (driver bug)")


def _failed(ex: Exchange, error: RemoteError) -> RemoteFailure:
    ex.closed = True
    return RemoteFailure(error)


def _open(ex: Exchange, kind: Kind | None = None) -> None:
    if kind is not None and ex.kind is not kind:
        raise TransportError(f"{ex!r}: this operation is for {kind.value} streams")
    if ex.closed:
        raise StreamClosed(f"{ex!r} has ended")


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def pieces(data: bytes | bytearray | memoryview, size: int) -> Iterator[memoryview]:
    """``data`` as views of at most ``size`` bytes (no copy)."""
    view = _byte_view(data)
    for start in range(0, len(view), size):
        yield view[start : start + size]


# --------------------------------------------------------------------------- client
def client_call(ex: Exchange, call: Call) -> Op[Any]:
    """Send the primary call; V1/V2 and plain calls wait for the reply."""
    yield call
    if ex.variant is Variant.V3:
        return None
    event = yield from _pop(ex)
    if type(event) is ErrorReply:
        raise _failed(ex, event.error)
    if type(event) is not Reply:
        raise _unexpected(ex, event)
    ex.result = event.result
    if ex.kind is Kind.CALL:
        ex.closed = True
    return event.result


def _upload_event(ex: Exchange, event: Event) -> None:
    kind = type(event)
    if kind is StreamAck:
        pass  # the engine freed its window slot when it arrived
    elif isinstance(event, (StreamError, ErrorReply)):
        raise _failed(ex, event.error)
    else:
        raise _unexpected(ex, event)


def _upload_slot(ex: Exchange) -> Op[None]:
    """Absorb acknowledgements and failures; V1: wait for a free window slot."""
    while ex.inbox:
        _upload_event(ex, ex.inbox.popleft())
    if ex.v1:
        while not _engine(ex).window:
            _upload_event(ex, (yield from _pop(ex)))


def client_send(ex: Exchange, data: bytes | bytearray | memoryview) -> Op[None]:
    _open(ex, Kind.UPLOAD)
    for piece in pieces(data, ex.chunk_size):
        yield from _upload_slot(ex)
        yield from _emit(ex, StreamData(ex.serial, piece))


def client_send_hole(ex: Exchange, length: int) -> Op[None]:
    _open(ex, Kind.UPLOAD)
    if length <= 0:
        return
    if not ex.sparse:  # the procedure has no holes: send the zeros
        zeros = memoryview(bytes(min(length, ex.chunk_size)))
        while length:
            step = min(length, len(zeros))
            yield from client_send(ex, zeros[:step])
            length -= step
        return
    yield from _upload_slot(ex)
    yield from _emit(ex, StreamHole(ex.serial, length))


def client_finish(ex: Exchange) -> Op[Any]:
    """Upload: end of data; wait for the confirmation (V3: the reply)."""
    _open(ex, Kind.UPLOAD)
    yield from _upload_slot(ex)
    yield from _emit(ex, StreamFinish(ex.serial))
    while True:
        event = yield from _pop(ex)
        kind = type(event)
        if kind is StreamAck:
            continue
        if kind is StreamConfirm or kind is Reply:
            ex.closed = True
            if isinstance(event, Reply):
                ex.result = event.result
            return ex.result
        elif isinstance(event, (StreamError, ErrorReply)):
            raise _failed(ex, event.error)
        else:
            raise _unexpected(ex, event)


def client_abort(ex: Exchange) -> Op[None]:
    if ex.closed:
        return
    try:
        yield from _emit(ex, StreamAbort(ex.serial))
    except RemoteFailure:  # the peer ended the exchange first: nothing left to abort
        return
    while True:
        event = yield from _pop(ex)
        if type(event) in (StreamConfirm, Reply, StreamError, ErrorReply):
            ex.closed = True
            return
        # data, holes, acks and end of data sent before the peer saw the abort


def client_recv(ex: Exchange) -> Op[Chunk | None]:
    """Download: the next chunk; at the end, finish the exchange and return None."""
    if ex.kind is not Kind.DOWNLOAD:
        raise TransportError(f"{ex!r}: recv() is for download streams")
    if ex.closed:
        return None
    while True:
        # V1: READs outstanding on the wire plus answers not yet taken stay within the
        # window (§7.2.4), so at most a window of chunks waits for the application
        while ex.v1 and not ex.eof and _engine(ex).window > len(ex.inbox):
            if not (yield from _emit(ex, StreamRead(ex.serial, ex.chunk_size))):
                break
        event = yield from _pop(ex)
        kind = type(event)
        if isinstance(event, StreamData):
            return memoryview(event.data)
        if isinstance(event, StreamHole):
            return Hole(event.length)
        if kind is StreamEnd:
            ex.eof = True  # the engine cancelled the later READs (§7.2.3)
            if ex.variant is not Variant.V3:
                yield from _emit(ex, StreamFinish(ex.serial))
            continue
        if kind is StreamConfirm or kind is Reply:
            ex.closed = True
            if isinstance(event, Reply):
                ex.result = event.result
            return None
        if isinstance(event, (StreamError, ErrorReply)):
            raise _failed(ex, event.error)
        raise _unexpected(ex, event)


# --------------------------------------------------------------------------- server
def _server_aborted(ex: Exchange) -> StreamAborted:
    ex.aborted = True
    ex.ack_due = False
    return StreamAborted(f"{ex!r}: the client aborted the stream")


def server_accept(ex: Exchange, result: Any) -> Op[None]:
    _open(ex)
    if ex.accepted:
        raise TransportError(f"{ex!r} was already accepted")
    ex.accepted = True
    if ex.variant is Variant.V3:
        ex.result = result
        return
    yield from _emit(ex, Reply(ex.serial, result))
    if ex.kind is Kind.CALL:
        ex.closed = True


def _must_be_open(ex: Exchange, kind: Kind) -> None:
    _open(ex, kind)
    if ex.aborted:
        raise StreamAborted(f"{ex!r}: the client aborted the stream")
    if not ex.accepted:
        raise TransportError(f"{ex!r}: accept() the call before streaming")


def server_recv(ex: Exchange) -> Op[Chunk | None]:
    """Upload: next chunk, or None when the client finished (then complete() or fail())."""
    _must_be_open(ex, Kind.UPLOAD)
    if ex.eof:
        return None
    if ex.ack_due:  # the application came back: the previous chunk is consumed (§7.2.2)
        ex.ack_due = False
        yield from _emit(ex, StreamAck(ex.serial))
    event = yield from _pop(ex)
    kind = type(event)
    if isinstance(event, (StreamData, StreamHole)):
        return _upload_chunk(ex, event)
    if kind is StreamFinish:
        ex.eof = True
        return None
    if kind is StreamAbort:
        raise _server_aborted(ex)
    raise _unexpected(ex, event)


def server_takes_data(ex: Exchange) -> bool:
    """Whether :func:`server_recv`'s next step, were its chunk data already routed, would
    need nothing sent and nothing checked but what this tests (an open, accepted upload,
    no end of data yet, no V1 ACK due): the drivers then take the chunk with
    :func:`server_take_data` (waiting for it themselves) instead of running the operation,
    which a stream pays once per frame."""
    return (
        ex.kind is Kind.UPLOAD
        and ex.accepted
        and not (ex.ack_due or ex.eof or ex.closed or ex.aborted)
    )


def server_take_data(ex: Exchange) -> Chunk | None:
    """What :func:`server_recv` returns for the data at the head of the inbox (with the
    same effects: consumed, a V1 ACK due), if :func:`server_takes_data` and the next event
    is data; None otherwise (anything else goes through the operation)."""
    inbox = ex.inbox
    if not inbox or type(inbox[0]) is not StreamData or not server_takes_data(ex):
        return None
    return _upload_chunk(ex, cast(StreamData, _take(ex)))


def server_complete(ex: Exchange, result: Any) -> Op[None]:
    """Upload: the data is committed; confirm (V3: reply with ``result``)."""
    _must_be_open(ex, Kind.UPLOAD)
    if not ex.eof:
        raise TransportError(f"{ex!r}: complete() before the client finished the upload")
    yield from _emit(
        ex, Reply(ex.serial, result) if ex.variant is Variant.V3 else StreamConfirm(ex.serial)
    )
    ex.closed = True


def _download_event(ex: Exchange, event: Event) -> None:
    kind = type(event)
    if kind is StreamRead:
        pass  # the engine keeps the READs to answer (§7.2.3)
    elif kind is StreamAbort:
        raise _server_aborted(ex)
    else:
        raise _unexpected(ex, event)


def _download_slot(ex: Exchange) -> Op[int]:
    """Bytes the next data answer may carry (V1: wait for a READ)."""
    while ex.inbox:
        _download_event(ex, ex.inbox.popleft())
    if not ex.v1:
        return ex.chunk_size
    while not (size := _engine(ex).read_max):  # the oldest READ to answer
        _download_event(ex, (yield from _pop(ex)))
    return size


def server_send(ex: Exchange, data: bytes | bytearray | memoryview) -> Op[None]:
    _must_be_open(ex, Kind.DOWNLOAD)
    view = _byte_view(data)
    while view:
        size = yield from _download_slot(ex)
        yield from _emit(ex, StreamData(ex.serial, view[:size]))
        view = view[size:]


def server_send_hole(ex: Exchange, length: int) -> Op[None]:
    _must_be_open(ex, Kind.DOWNLOAD)
    if length <= 0:
        return
    if not ex.sparse:
        zeros = memoryview(bytes(min(length, ex.chunk_size)))
        while length:
            step = min(length, len(zeros))
            yield from server_send(ex, zeros[:step])
            length -= step
        return
    yield from _download_slot(ex)
    yield from _emit(ex, StreamHole(ex.serial, length))


def server_end(ex: Exchange, result: Any) -> Op[None]:
    """Download: end of data; V1/V2 wait for the client's finish and confirm; V3 reply."""
    _must_be_open(ex, Kind.DOWNLOAD)
    yield from _download_slot(ex)
    yield from _emit(ex, StreamEnd(ex.serial))
    ex.eof = True
    if ex.variant is Variant.V3:
        yield from _emit(ex, Reply(ex.serial, result))
        ex.closed = True
        return
    while True:
        event = yield from _pop(ex)
        kind = type(event)
        if kind is StreamFinish or kind is StreamAbort:
            yield from _emit(ex, StreamConfirm(ex.serial))
            ex.closed = True
            return
        if kind is not StreamRead:
            raise _unexpected(ex, event)


def server_fail(ex: Exchange, error: RemoteError) -> Op[None]:
    """Fail the call or stream with ``error`` (whatever its state)."""
    if ex.closed:
        return
    if ex.kind is Kind.CALL or not ex.accepted or ex.variant is Variant.V3:
        yield from _emit(ex, ErrorReply(ex.serial, error))
    elif ex.variant is Variant.V2:
        yield from _emit(ex, StreamError(ex.serial, error))
    else:  # V1 answers the oldest outstanding stream call; wait for one (§7.2.5)
        while not _v1_outstanding(ex):
            event = yield from _pop(ex)
            if type(event) is StreamAbort:
                ex.aborted = True
        yield from _emit(ex, StreamError(ex.serial, error))
    ex.closed = True


def _v1_outstanding(ex: Exchange) -> int:
    return len(_engine(ex).pending)


def server_conclude(ex: Exchange, exc: BaseException | None, value: Any) -> Op[None]:
    """After the handler returned ``value`` or raised ``exc``: end the exchange if it has
    not ended (a handler that lost its connection has nothing left to end; one that saw
    the client's abort ends as if it had returned)."""
    if ex.closed or isinstance(exc, ConnectionLost):
        return
    if isinstance(exc, StreamAborted):
        exc = None
    if not ex.aborted and any(type(event) is StreamAbort for event in ex.inbox):
        ex.aborted = True  # the handler gave up before reading up to the abort
        ex.inbox.clear()
    if ex.aborted:
        if ex.variant is Variant.V3:
            yield from _emit(
                ex, ErrorReply(ex.serial, remote_error(ERR_OPERATION_ABORTED, "stream aborted"))
            )
        else:
            yield from _emit(ex, StreamConfirm(ex.serial))
        ex.closed = True
        return
    if exc is None and ex.kind is Kind.CALL:
        yield from _emit(ex, Reply(ex.serial, value))
        ex.closed = True
        return
    yield from server_fail(ex, error_body(exc))


def error_body(exc: BaseException | None) -> RemoteError:
    """The error body a server sends for a handler's exception."""
    if isinstance(exc, ServerError):
        return remote_error(exc.code, exc.message)
    if isinstance(exc, RemoteFailure):
        return exc.error
    if exc is None:
        return remote_error(ERR_INTERNAL, "the handler ended without completing the stream")
    return remote_error(ERR_INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- objects
class AsyncRunner(Protocol):
    async def run(self, ex: Exchange, op: Op[T]) -> T: ...

    async def wait(self, ex: Exchange) -> None: ...


class SyncRunner(Protocol):
    def run(self, ex: Exchange, op: Op[T]) -> T: ...


class _Base:
    def __init__(self, ex: Exchange, call: Call | None = None) -> None:
        self._ex = ex
        self.call = call  # server: the incoming call (procedure, args)

    @property
    def serial(self) -> int:
        return self._ex.serial

    @property
    def closed(self) -> bool:
        return self._ex.closed

    @property
    def sparse(self) -> bool:
        return self._ex.sparse

    @property
    def variant(self) -> Variant | None:
        return self._ex.variant

    @property
    def direction(self) -> str:
        """ "call", "upload" or "download"."""
        return self._ex.kind.value

    @property
    def result(self) -> Any:
        """The primary reply's result (V1/V2: from the opening reply; V3: the final one)."""
        return self._ex.result

    @property
    def abort_requested(self) -> bool:
        """Server: the client's abort has arrived (it may still be behind queued data)."""
        return self._ex.aborted or any(type(e) is StreamAbort for e in self._ex.inbox)

    @property
    def args(self) -> Any:
        return None if self.call is None else self.call.args

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._ex!r}>"


def _nothing() -> None:
    return None


class Stream(_Base):
    """An exchange on an asyncio connection (see the module docstring)."""

    def __init__(self, driver: AsyncRunner, ex: Exchange, call: Call | None = None) -> None:
        super().__init__(ex, call)
        self._driver = driver

    async def wait_abort_requested(self) -> None:
        """Server: return once the client's abort has arrived (for handlers blocked on
        something else, e.g. a stalled pipe, that should give up promptly)."""
        if self.abort_requested:
            return
        await self._ex.abort_event.wait()

    def notify_abort(self, future: asyncio.Future[None]) -> Callable[[], None]:
        """Server: resolve ``future`` when the client's abort arrives (at once if it has),
        so that a handler waits for something else and the abort with one future, no
        Task; returns the function to call when done waiting, which takes it back."""
        if self.abort_requested:
            if not future.done():
                future.set_result(None)
            return _nothing
        signal = self._ex.abort_event
        signal.add_waiter(future)
        return lambda: signal.discard(future)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        ex = self._ex
        await self._driver.run(ex, client_send(ex, data) if ex.client else server_send(ex, data))

    async def send_hole(self, length: int) -> None:
        ex = self._ex
        op = client_send_hole(ex, length) if ex.client else server_send_hole(ex, length)
        await self._driver.run(ex, op)

    async def recv(self) -> Chunk | None:
        ex = self._ex
        if ex.client:
            return await self._driver.run(ex, client_recv(ex))
        if server_takes_data(ex):  # an upload's data: no operation to run per frame
            if not ex.inbox:
                await self._driver.wait(ex)
            data = server_take_data(ex)
            if data is not None:
                return data
        return await self._driver.run(ex, server_recv(ex))

    async def finish(self) -> Any:
        return await self._driver.run(self._ex, client_finish(self._ex))

    async def abort(self) -> None:
        await self._driver.run(self._ex, client_abort(self._ex))

    async def accept(self, result: Any = None) -> None:
        await self._driver.run(self._ex, server_accept(self._ex, result))

    async def complete(self, result: Any = None) -> None:
        await self._driver.run(self._ex, server_complete(self._ex, result))

    async def end(self, result: Any = None) -> None:
        await self._driver.run(self._ex, server_end(self._ex, result))

    async def fail(self, code: int, message: str) -> None:
        await self._driver.run(self._ex, server_fail(self._ex, remote_error(code, message)))

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Chunk]:
        while (chunk := await self.recv()) is not None:
            yield chunk


class BlockingStream(_Base):
    """An exchange on a blocking connection (see the module docstring)."""

    def __init__(self, driver: SyncRunner, ex: Exchange, call: Call | None = None) -> None:
        super().__init__(ex, call)
        self._driver = driver

    def send(self, data: bytes | bytearray | memoryview) -> None:
        ex = self._ex
        self._driver.run(ex, client_send(ex, data) if ex.client else server_send(ex, data))

    def send_hole(self, length: int) -> None:
        ex = self._ex
        op = client_send_hole(ex, length) if ex.client else server_send_hole(ex, length)
        self._driver.run(ex, op)

    def recv(self) -> Chunk | None:
        ex = self._ex
        return self._driver.run(ex, client_recv(ex) if ex.client else server_recv(ex))

    def finish(self) -> Any:
        return self._driver.run(self._ex, client_finish(self._ex))

    def abort(self) -> None:
        self._driver.run(self._ex, client_abort(self._ex))

    def accept(self, result: Any = None) -> None:
        self._driver.run(self._ex, server_accept(self._ex, result))

    def complete(self, result: Any = None) -> None:
        self._driver.run(self._ex, server_complete(self._ex, result))

    def end(self, result: Any = None) -> None:
        self._driver.run(self._ex, server_end(self._ex, result))

    def fail(self, code: int, message: str) -> None:
        self._driver.run(self._ex, server_fail(self._ex, remote_error(code, message)))

    def __iter__(self) -> Iterator[Chunk]:
        while (chunk := self.recv()) is not None:
            yield chunk


def make_exchange(
    serial: int, client: bool, kind: EngineKind, sparse: bool, chunk_size: int
) -> Exchange:
    """An :class:`Exchange` of engine kind ``kind`` (a server's call of a procedure it
    does not know is a plain call here)."""
    variant, direction = kind.variant, kind.direction
    if variant is None or direction is None:
        return Exchange(serial, client, Kind.CALL, None, False, chunk_size)
    return Exchange(serial, client, Kind(direction.value), variant, sparse, chunk_size)


def iter_items(items: Iterable[bytes | bytearray | memoryview | Hole]) -> Iterator[Chunk]:
    """Normalise an iterable of buffers and holes into views and :class:`Hole`s."""
    for item in items:
        if isinstance(item, Hole):
            yield item
        elif len(item):
            yield memoryview(item)

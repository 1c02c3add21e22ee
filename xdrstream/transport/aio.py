"""asyncio driver for the sans-I/O engine, both roles, over Unix sockets, TCP and TLS.

    conn = await AsyncConnection.connect("unix:/run/x.sock", programs=[schema])
    stream = await conn.open_stream(PROG, 1, PROC, args)   # a stream.Stream
    result = await conn.call(PROG, 1, PROC_PING, None)     # plain call
    await conn.close()

    # server side: one connection per accepted socket, a handler task per call
    conn = await AsyncConnection.accept(sock, programs=[schema], handler=handle, tls=ctx)
    async def handle(stream: Stream) -> Any: ...   # returns a plain call's result

I/O: the connection owns its socket in non-blocking mode.  One reader task receives with
``sock_recv_into`` straight into the engine's buffer (``Connection.get_buffer``: a large
stream payload is written by the kernel into the very buffer the application gets, so the
kernel's copy is the only one) and routes events to the exchanges; it stops reading while
the engine's ``reading_paused`` says a stream holds too much unconsumed data (spec.md §8.2).
Frames are written by the task that sends them, one at a time under a lock, with
``socket.sendmsg`` of the header and the caller's payload view (looping on partial sends,
waiting for writability: the peer's pace is the sender's pace).  TLS runs on ``ssl.SSLObject`` over
memory BIOs on the same socket: payloads are encrypted straight from the caller's buffer.
PINGs are answered by a separate task, so reading never waits for writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from xdrstream.protocol import (
    NEED_DATA,
    Connection,
    Limits,
    LocalProtocolError,
    Registry,
    RemoteError,
    Role,
)
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    Event,
    ExchangeEvent,
    KeepalivePing,
    KeepalivePong,
    Message,
    StreamAbort,
)
from xdrstream.protocol.programs import Procedure
from xdrstream.protocol.states import Kind as EngineKind
from xdrstream.transport import address as addresses
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.drivers import (
    advance,
    client_tls,
    connection_error,
    resolve,
    unknown_procedure,
)
from xdrstream.transport.errors import (
    ERR_OPERATION_INVALID,
    ConnectionLost,
    PeerTimeout,
    StreamAborted,
    TransportError,
    remote_error,
)
from xdrstream.transport.limits import Budget, frame_stalled
from xdrstream.transport.options import Options
from xdrstream.transport.stream import (
    WAIT,
    Exchange,
    Op,
    Stream,
    T,
    client_call,
    make_exchange,
    server_conclude,
    server_fail,
)

Handler = Callable[[Stream], Awaitable[Any]]
Buffers = list[bytes | bytearray | memoryview]

TLS_PIECE = 256 * 1024
PAUSE_CHECK = 0.25
"""Seconds between checks for a peer that hung up while reading is paused."""
"""Plaintext bytes encrypted before the ciphertext is written out (bounds the TLS buffer)."""


_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


def peer_gone(sock: socket.socket) -> bool:
    """Whether ``sock``'s peer hung up (Linux POLLRDHUP: even with unread data queued)."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, _HANGUP)
    return any(events & _HANGUP for _, events in poller.poll(0))


class AsyncChannel:
    """A plain non-blocking socket: ``recv_into`` a caller's buffer, ``send_all`` buffers
    with ``sendmsg``."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = asyncio.get_running_loop()

    async def recv_into(self, view: memoryview) -> int:
        return await self.loop.sock_recv_into(self.sock, view)

    async def send_all(
        self, buffers: Iterable[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        while views:
            try:
                sent = self.sock.sendmsg(views)
            except (BlockingIOError, InterruptedError):
                await self._writable(timeout)
                continue
            views = advance(views, sent)

    async def _writable(self, timeout: float | None) -> None:
        fd = self.sock.fileno()
        if fd < 0:
            raise ConnectionLost("the connection is closed")
        future = self.loop.create_future()
        self.loop.add_writer(fd, resolve, future)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise PeerTimeout(
                f"the peer stopped reading: no send progress for {timeout} s"
            ) from None
        finally:
            self.loop.remove_writer(fd)

    async def handshake(self, timeout: float) -> None:
        return None

    def peer_gone(self) -> bool:
        """Whether the peer closed or reset the connection, even with unread data left
        (checked while reading is paused, when end of input cannot be read)."""
        return peer_gone(self.sock)

    def peer_certificate(self) -> dict[str, Any] | None:
        return None

    def shutdown(self) -> None:
        """Stop both directions (pending reads see end of input); the fd stays open
        until close(), so no callback registered on it can meet a reused fd number."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


class AsyncTLSChannel(AsyncChannel):
    """TLS on an ``ssl.SSLObject`` over memory BIOs, written and read on the plain socket."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        peer: str = "",
    ) -> None:
        super().__init__(sock)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self._lock = asyncio.Lock()  # ciphertext leaves in the order it was made
        self._raw = memoryview(bytearray(256 * 1024))
        self._peer = peer
        self._flusher: asyncio.Task[None] | None = None

    async def handshake(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._handshake(), timeout)
        except asyncio.TimeoutError:
            raise tlsmod.TLSError(f"TLS handshake with {self._peer} timed out") from None
        except (ssl.SSLError, OSError, ConnectionLost) as exc:
            if isinstance(exc, ssl.SSLError):  # tell the peer why (the alert is queued)
                with contextlib.suppress(Exception):
                    await self._flush(1.0)
            raise tlsmod.TLSError(
                f"TLS handshake with {self._peer} failed: {tlsmod.describe(exc)}"
            ) from exc

    async def _handshake(self) -> None:
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush(None)
                if not await self._fill():
                    raise ConnectionLost("connection closed during the TLS handshake") from None
        await self._flush(None)

    async def _fill(self) -> bool:
        count = await super().recv_into(self._raw)
        if not count:
            self._in.write_eof()
            return False
        self._in.write(self._raw[:count])
        return True

    async def _flush(self, timeout: float | None) -> None:
        async with self._lock:
            data = self._out.read()
            if data:
                await super().send_all([data], timeout)

    def _flush_later(self) -> None:
        if self._out.pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.ensure_future(self._flush(None))

    async def recv_into(self, view: memoryview) -> int:
        while True:
            try:
                count = cast(int, self._obj.read(len(view), view))
                self._flush_later()  # e.g. a TLS 1.3 key update answer
                return count
            except ssl.SSLWantReadError:
                self._flush_later()
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0
            except ssl.SSLError as exc:
                raise tlsmod.TLSError(
                    f"TLS error with {self._peer}: {tlsmod.describe(exc)}"
                ) from exc

    async def send_all(
        self, buffers: Iterable[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        async with self._lock:
            for buffer in buffers:
                view = memoryview(buffer).cast("B")
                while view:
                    view = view[self._obj.write(view[:TLS_PIECE]) :]
                    if self._out.pending >= TLS_PIECE:
                        await super().send_all([self._out.read()], timeout)
            if self._out.pending:
                await super().send_all([self._out.read()], timeout)

    def peer_certificate(self) -> dict[str, Any] | None:
        return self._obj.getpeercert()

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        super().close()


class AsyncConnection:
    """One endpoint of a connection driven by asyncio (see the module docstring)."""

    def __init__(
        self,
        channel: AsyncChannel,
        role: Role,
        programs: Iterable[Any] | Registry = (),
        options: Options | None = None,
        handler: Handler | None = None,
        name: str = "",
        budget: Budget | None = None,
    ) -> None:
        self.options = options or Options()
        # libvirtd's limits (spec.md §8.5): the server's shared budget, or this one's own
        self._limits = self.options.server_limits()
        self._account = (budget or Budget(self.options.memory_budget)).account()
        self._progress = time.monotonic()  # last byte received (stalled partial frames)
        self._holding = False  # complete frames left in the engine by max_client_requests
        self.role = role
        self.name = name
        self._channel = channel
        self._registry = Registry.of(programs)
        self.engine = Connection(
            role, self._registry, Limits(stream_buffer=self.options.stream_buffer)
        )
        self._handler = handler
        self._exchanges: dict[int, Exchange] = {}
        self._write_lock = asyncio.Lock()
        self._resume = asyncio.Event()
        self._error: TransportError | None = None
        self._closed = asyncio.Event()
        self._last_rx = time.monotonic()
        self._missed_pings = 0
        self._pong_due = False
        self._ponger: asyncio.Task[None] | None = None
        self._refusals: deque[tuple[Exchange, RemoteError]] = deque()
        self._refuser: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ set-up
    @classmethod
    async def connect(
        cls,
        target: str | addresses.Address,
        programs: Iterable[Any] | Registry = (),
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        options: Options | None = None,
    ) -> AsyncConnection:
        """Connect to ``unix:PATH``, ``tcp:HOST:PORT`` or ``tls:HOST:PORT`` (TLS also when
        ``tls`` is given; ``tls:`` without a context verifies against the system CAs)."""
        address = addresses.parse_address(target) if isinstance(target, str) else target
        options = options or Options()
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(
            None, addresses.connect, address, options.handshake_timeout
        )
        channel = cls._client_channel(sock, address, tls, server_hostname)
        try:
            await channel.handshake(options.handshake_timeout)
        except BaseException:
            channel.close()
            raise
        conn = cls(channel, Role.CLIENT, programs, options, name=str(address))
        conn.start()
        return conn

    @staticmethod
    def _client_channel(
        sock: socket.socket,
        address: addresses.Address,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> AsyncChannel:
        settings = client_tls(address, tls, server_hostname)
        if settings is None:
            return AsyncChannel(sock)
        context, host = settings
        return AsyncTLSChannel(sock, context, False, host, peer=str(address))

    @classmethod
    async def accept(
        cls,
        sock: socket.socket,
        programs: Iterable[Any] | Registry,
        handler: Handler,
        *,
        tls: ssl.SSLContext | None = None,
        options: Options | None = None,
        name: str = "",
        budget: Budget | None = None,
    ) -> AsyncConnection:
        """Serve an accepted socket: TLS handshake (if ``tls``), then start reading;
        ``budget``: the server's memory budget shared by its connections (§8.5)."""
        options = options or Options()
        channel = (
            AsyncTLSChannel(sock, tls, True, peer=name or "client")
            if tls is not None
            else AsyncChannel(sock)
        )
        try:
            await channel.handshake(options.handshake_timeout)
        except BaseException:
            channel.close()
            raise
        conn = cls(channel, Role.SERVER, programs, options, handler, name, budget)
        conn.start()
        return conn

    def start(self) -> None:
        self._reader = self._spawn(self._read_loop())
        opts = self.options
        if opts.keepalive_interval or opts.idle_timeout or opts.timeout:
            self._spawn(self._watchdog())

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ state
    @property
    def error(self) -> TransportError | None:
        """Why the connection ended (None while it is usable)."""
        return self._error

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        return self._channel.peer_certificate()

    def _fail(self, exc: BaseException) -> None:
        if self._error is not None:
            return
        error = connection_error(exc)
        error.__cause__ = exc if exc is not error else None
        self._error = error
        self._account.set_input(0)
        self._channel.shutdown()
        self._resume.set()
        self._closed.set()
        for ex in self._exchanges.values():
            if ex.waker is not None:
                ex.waker.set()

    def _raise_error(self) -> None:
        error = self._error
        assert error is not None
        raise type(error)(*error.args) from error

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        """Close the connection: exchanges in progress end with ConnectionLost, handler
        tasks are cancelled and awaited (their clean-up runs)."""
        self._fail(ConnectionLost("connection closed locally"))
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:  # even when this close is itself cancelled (a server closing)
            self._channel.close()

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ running ops
    def _new_exchange(self, serial: int, kind: EngineKind, sparse: bool) -> Exchange:
        ex = make_exchange(serial, self.role is Role.CLIENT, kind, sparse, self.options.chunk_size)
        ex.waker = asyncio.Event()
        ex.abort_event = asyncio.Event()
        ex.on_consumed = self._consumed
        ex.info = lambda: self.engine.stream_info(serial)
        self._exchanges[serial] = ex
        return ex

    def _consumed(self, serial: int, count: int) -> None:
        engine_ex = self.engine.exchange(serial)  # no StreamInfo per chunk
        if engine_ex is None or self._error is not None:
            return
        self.engine.stream_consumed(serial, min(count, engine_ex.unconsumed))
        if not self.engine.reading_paused:
            self._resume.set()

    async def run(self, ex: Exchange, op: Op[T]) -> T:
        """Run one stream operation: send what it yields, wait when it says WAIT."""
        try:
            step = next(op)
            while True:
                if step is WAIT:
                    await self._wait(ex)
                else:
                    try:
                        await self._send(step)  # type: ignore[arg-type]
                    except LocalProtocolError as exc:  # the operation decides (see _emit)
                        step = op.throw(exc)
                        continue
                step = op.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            op.close()
            if ex.closed and self._exchanges.get(ex.serial) is ex:
                del self._exchanges[ex.serial]

    async def _wait(self, ex: Exchange) -> None:
        timeout = self.options.timeout
        while not ex.inbox:
            if self._error is not None:
                self._raise_error()
            ex.waker.clear()
            wait = None if timeout is None else max(0.0, self._last_rx + timeout - time.monotonic())
            try:
                await asyncio.wait_for(ex.waker.wait(), wait)
            except asyncio.TimeoutError:
                if self.engine.reading_paused:  # we are not listening: not the peer's fault
                    self._last_rx = time.monotonic()
                elif timeout is not None and time.monotonic() - self._last_rx >= timeout:
                    self._fail(
                        PeerTimeout(f"{self.name or 'peer'}: nothing received for {timeout} s")
                    )

    async def _send(self, event: Event) -> None:
        if self._error is not None:
            self._raise_error()
        async with self._write_lock:
            if self._error is not None:
                self._raise_error()
            buffers = self.engine.send_buffers(event)
            queued = sum(len(b) for b in buffers)
            self._account.add_output(queued)
            try:
                await self._channel.send_all(buffers, self.options.timeout)
            except BaseException as exc:  # a partly written frame ruins the connection
                self._fail(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                self._raise_error()
            finally:
                self._account.add_output(-queued)
                self._resume.set()

    # ------------------------------------------------------------------ client API
    def _procedure(self, program: int, version: int, procedure: int) -> Procedure:
        proc = self._registry.lookup(program, version, procedure)
        if proc is None:
            raise TransportError(
                f"procedure {program:#x}/{version}/{procedure} is not in this connection's programs"
            )
        return proc

    async def open_stream(
        self, program: int, version: int, procedure: int, args: Any = None
    ) -> Stream:
        """Call ``procedure``; for V1/V2 wait for the reply that opens its stream (an error
        reply raises RemoteFailure).  Plain calls are answered when this returns."""
        if self._error is not None:
            self._raise_error()
        proc = self._procedure(program, version, procedure)
        serial = self.engine.next_serial()
        mode = proc.stream
        kind = EngineKind.of(mode)
        ex = self._new_exchange(serial, kind, bool(mode and mode.sparse))
        call = Call(serial, program, version, procedure, args)
        try:
            await self.run(ex, client_call(ex, call))
        except BaseException:  # e.g. cancelled: later frames of this exchange are dropped
            if self._exchanges.get(serial) is ex:
                del self._exchanges[serial]
            raise
        return Stream(self, ex, call)

    async def call(self, program: int, version: int, procedure: int, args: Any = None) -> Any:
        """A call without stream: its result (an error reply raises RemoteFailure)."""
        stream = await self.open_stream(program, version, procedure, args)
        if stream.direction != "call":
            await stream.abort()
            raise TransportError(f"procedure {procedure} has a stream: use open_stream()")
        return stream.result

    # ------------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        engine = self.engine
        hint = self.options.recv_buffer
        try:
            while self._drain():
                self._account.set_input(engine.buffered)
                while self._error is None and (
                    engine.reading_paused
                    or len(self._refusals) >= self.options.max_calls
                    or not self._may_read()
                ):
                    self._resume.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._resume.wait(), PAUSE_CHECK)
                    self._last_rx = time.monotonic()  # we were not listening
                    if self._channel.peer_gone():  # §3.5: exchanges in progress end
                        self._fail(ConnectionLost(f"{self.name or 'peer'}: connection closed"))
                if self._error is not None:
                    return
                if self._holding:  # frames held back by max_client_requests: route them first
                    continue
                # receive in place: a large payload lands in its final buffer (§12.1)
                buffer = engine.get_buffer(hint)
                in_frame = engine.frame_remaining
                count = total = await self._channel.recv_into(buffer)
                # a large frame is arriving: fill the rest of its payload buffer before
                # going back to the engine (no event can come out before it is complete)
                while in_frame and count and total < len(buffer):
                    self._last_rx = time.monotonic()
                    count = await self._channel.recv_into(buffer[total:])
                    total += count
                self._last_rx = self._progress = time.monotonic()
                self._missed_pings = 0
                if total:
                    engine.buffer_updated(total)
                if not count:  # the peer closed (maybe inside the frame: §3.5)
                    engine.buffer_updated(0)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    def _may_read(self) -> bool:
        """libvirtd's limits (§8.5): a server stops reading a connection with
        ``max_client_requests`` calls unanswered or ``max_queued_output`` bytes unsent, and
        every connection holding more than a read's worth while the budget is spent."""
        if self.role is not Role.SERVER:
            return True
        requests = self._requests()
        account = self._account
        if account.budget.exhausted and account.input + account.output <= self.options.recv_buffer:
            # at rest: a small call still gets through, so the server serves the others
            return requests < self._limits.max_client_requests
        return self._limits.may_read(requests, account.output, account.budget)

    def _requests(self) -> int:
        """Calls received and not yet answered (a stream counts until its reply)."""
        return sum(1 for ex in self._exchanges.values() if not ex.accepted and not ex.closed)

    def _drain(self) -> bool:
        """Route every complete event; False once the connection is over."""
        engine = self.engine
        self._holding = False
        while self._error is None:
            if (
                self.role is Role.SERVER
                and engine.buffered
                and self._requests() >= (self._limits.max_client_requests)
            ):  # the next call waits unread (§8.5): one read's worth stays in the engine
                self._holding = True
                return True
            event = engine.next_event()
            if event is NEED_DATA:
                return True
            kind = type(event)
            if kind is KeepalivePing:
                self._pong_due = True
                if self._ponger is None or self._ponger.done():
                    self._ponger = self._spawn(self._send_pongs())
            elif kind is KeepalivePong or kind is Message:
                pass  # any input counts as a sign of life; notifications are not used
            elif kind is ConnectionClosed:
                self._fail(ConnectionLost(f"{self.name or 'peer'}: connection closed by peer"))
                return False
            elif isinstance(event, Call):
                self._incoming(event)
            elif isinstance(event, ExchangeEvent):
                ex = self._exchanges.get(event.serial)
                if ex is not None:
                    ex.inbox.append(event)
                    ex.waker.set()
                    if kind is StreamAbort and ex.abort_event is not None:
                        ex.abort_event.set()
        return False

    async def _send_pongs(self) -> None:
        """Answer PINGs (§5) without making the reader wait for the socket."""
        while self._pong_due:
            self._pong_due = False
            with contextlib.suppress(TransportError):
                await self._send(KeepalivePong())

    def _incoming(self, call: Call) -> None:
        info = self.engine.stream_info(call.serial)
        ex = self._new_exchange(
            call.serial, info.kind if info else EngineKind.CALL, bool(info and info.sparse)
        )
        stream = Stream(self, ex, call)
        if not call.known:
            self._refuse(ex, unknown_procedure(call))
        elif self._handler is None or len(self._exchanges) > self.options.max_calls:
            why = "no handler" if self._handler is None else "too many calls in progress"
            self._refuse(ex, remote_error(ERR_OPERATION_INVALID, why))
        else:
            self._spawn(self._handle(ex, stream))

    def _refuse(self, ex: Exchange, error: RemoteError) -> None:
        """Queue an error reply; one task sends them (the reader pauses if they pile up)."""
        self._refusals.append((ex, error))
        if self._refuser is None or self._refuser.done():
            self._refuser = self._spawn(self._send_refusals())

    async def _send_refusals(self) -> None:
        while self._refusals:
            ex, error = self._refusals.popleft()
            self._resume.set()
            with contextlib.suppress(TransportError):
                await self.run(ex, server_fail(ex, error))

    async def _handle(self, ex: Exchange, stream: Stream) -> None:
        assert self._handler is not None
        failure: BaseException | None = None
        value: Any = None
        try:
            value = await self._handler(stream)
        except StreamAborted:
            pass
        except ConnectionLost:
            return
        except Exception as exc:
            failure = exc
        if self._error is None and not ex.closed:
            with contextlib.suppress(TransportError):
                await self.run(ex, server_conclude(ex, failure, value))

    # ------------------------------------------------------------------ keepalive
    async def _watchdog(self) -> None:
        opts = self.options
        periods = [p for p in (opts.keepalive_interval, opts.idle_timeout, opts.timeout) if p]
        tick = min(periods) / 2
        seen = self._last_rx
        last_ping = time.monotonic()
        while self._error is None:
            await asyncio.sleep(tick)
            now = time.monotonic()
            partial = bool(self.engine.buffered or self.engine.frame_remaining)
            if (
                self.role is Role.SERVER
                and not self.engine.reading_paused
                and frame_stalled(partial, self._progress, now, opts.timeout)
            ):
                self._fail(
                    PeerTimeout(
                        f"{self.name or 'peer'}: a partial frame made no progress for "
                        f"{opts.timeout} s (spec.md §8.5)"
                    )
                )
                return
            if self.engine.reading_paused:  # we stopped listening: the peer is not silent
                seen = self._last_rx = now
                continue
            if (
                opts.idle_timeout
                and not self._exchanges
                and now - self._last_rx >= opts.idle_timeout
            ):
                self._fail(
                    PeerTimeout(f"{self.name or 'connection'}: idle for {opts.idle_timeout} s")
                )
                return
            interval = opts.keepalive_interval
            if not interval or now - last_ping < interval:
                continue
            if self._last_rx != seen:
                seen = self._last_rx
                self._missed_pings = 0
            if now - self._last_rx < interval:
                continue
            if self._missed_pings >= opts.keepalive_count:
                self._fail(
                    PeerTimeout(
                        f"{self.name or 'peer'}: no answer to {opts.keepalive_count} keepalive "
                        f"pings ({interval} s apart)"
                    )
                )
                return
            self._missed_pings += 1
            last_ping = now
            with contextlib.suppress(TransportError):
                await self._send(KeepalivePing())

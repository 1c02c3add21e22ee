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
import functools
import logging
import select
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from xdrstream.protocol import LocalProtocolError, Registry, Role
from xdrstream.protocol.events import Call, Event, KeepalivePong
from xdrstream.transport import address as addresses
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.core import PAUSE_CHECK, TLS_PIECE, DriverCore, TLSPump, queued_size
from xdrstream.transport.drivers import advance, client_tls, resolve
from xdrstream.transport.errors import ConnectionLost, PeerTimeout, StreamAborted, TransportError
from xdrstream.transport.limits import Admission, Budget
from xdrstream.transport.options import Options
from xdrstream.transport.stream import (
    WAIT,
    Exchange,
    Op,
    Stream,
    T,
    client_call,
    server_conclude,
    server_fail,
)

Handler = Callable[[Stream], Awaitable[Any]]
Buffers = list[bytes | bytearray | memoryview]


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
    """TLS (a :class:`~.core.TLSPump`) written and read on the plain socket."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        peer: str = "",
    ) -> None:
        super().__init__(sock)
        self._tls = TLSPump(context, server_side, server_hostname, peer)
        self._lock = asyncio.Lock()  # ciphertext leaves in the order it was made
        self._raw = memoryview(bytearray(256 * 1024))
        self._flusher: asyncio.Task[None] | None = None

    async def handshake(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._handshake(), timeout)
        except asyncio.TimeoutError:
            raise tlsmod.TLSError(f"TLS handshake with {self._tls.peer} timed out") from None
        except (ssl.SSLError, OSError, ConnectionLost) as exc:
            if isinstance(exc, ssl.SSLError):  # tell the peer why (the alert is queued)
                with contextlib.suppress(Exception):
                    await self._flush(1.0)
            raise self._tls.handshake_error(exc) from exc

    async def _handshake(self) -> None:
        while not self._tls.handshake():
            await self._flush(None)
            if not await self._fill():
                raise ConnectionLost("connection closed during the TLS handshake") from None
        await self._flush(None)

    async def _fill(self) -> bool:
        count = await super().recv_into(self._raw)
        self._tls.feed(self._raw[:count])
        return bool(count)

    async def _flush(self, timeout: float | None) -> None:
        async with self._lock:
            data = self._tls.take()
            if data:
                await super().send_all([data], timeout)

    def _flush_later(self) -> None:
        if self._tls.pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.ensure_future(self._flush(None))

    async def recv_into(self, view: memoryview) -> int:
        while True:
            count = self._tls.read_into(view)
            self._flush_later()  # e.g. a TLS 1.3 key update answer
            if count is not None:
                return count
            await self._fill()

    async def send_all(
        self, buffers: Iterable[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        tls = self._tls
        async with self._lock:
            for buffer in buffers:
                view = memoryview(buffer).cast("B")
                while view:
                    view = tls.encrypt(view)
                    if tls.pending >= TLS_PIECE:
                        await super().send_all([tls.take()], timeout)
            if tls.pending:
                await super().send_all([tls.take()], timeout)

    def peer_certificate(self) -> dict[str, Any] | None:
        return self._tls.peer_certificate()

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        super().close()


class AsyncConnection:
    """One endpoint of a connection driven by asyncio (see the module docstring); what
    it decides lives in its :class:`~.core.DriverCore`."""

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
        self.role = role
        self.name = name
        self._channel = channel
        self._handler = handler
        core = self._core = DriverCore(
            role, programs, self.options, name, budget, serving=handler is not None
        )
        self.engine = core.engine
        core.wake = self._wake
        core.dispatch = self._dispatch
        core.kick = self._kick
        core.aborted = self._aborted
        core.failed = self._failed
        core.equip = self._equip
        self._write_lock = asyncio.Lock()
        self._resume = asyncio.Event()
        self._closed = asyncio.Event()
        self._ponger: asyncio.Task[None] | None = None
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
        if self._core.tick_period() is not None:
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
        return self._core.error

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        return self._channel.peer_certificate()

    def _fail(self, exc: BaseException) -> None:
        self._core.fail(exc)

    def _failed(self) -> None:
        """The core ended the connection: stop the socket, wake every waiter."""
        self._channel.shutdown()
        self._resume.set()
        self._closed.set()
        for ex in self._core.exchanges.values():
            if ex.waker is not None:
                ex.waker.set()

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

    # ------------------------------------------------------------------ core hooks
    def _wake(self, ex: Exchange) -> None:
        ex.waker.set()

    def _aborted(self, ex: Exchange) -> None:
        ex.abort_event.set()

    def _kick(self) -> None:
        core = self._core
        if core.pong_due and (self._ponger is None or self._ponger.done()):
            self._ponger = self._spawn(self._send_pongs())
        if core.refusals and (self._refuser is None or self._refuser.done()):
            self._refuser = self._spawn(self._send_refusals())

    def _dispatch(self, ex: Exchange, call: Call) -> None:
        self._spawn(self._handle(ex, Stream(self, ex, call)))

    def _equip(self, ex: Exchange) -> None:
        ex.waker = asyncio.Event()
        ex.abort_event = asyncio.Event()
        ex.on_consumed = self._consumed

    def _consumed(self, serial: int, count: int) -> None:
        if self._core.consumed(serial, count):
            self._resume.set()

    # ------------------------------------------------------------------ running ops
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
            self._core.forget(ex)

    async def _wait(self, ex: Exchange) -> None:
        core = self._core
        while not ex.inbox:
            if core.error is not None:
                raise core.raised()
            ex.waker.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ex.waker.wait(), core.wait_left(time.monotonic()))

    async def _send(self, event: Event) -> None:
        core = self._core
        if core.error is not None:
            raise core.raised()
        counted = queued_size(event)
        core.queued(counted)  # waiting for the lock counts as queued output (§8.5)
        try:
            async with self._write_lock:
                buffers, counted = core.encode(event, counted)
                try:
                    await self._channel.send_all(buffers, self.options.timeout)
                except BaseException as exc:  # a partly written frame ruins the connection
                    self._fail(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    raise core.raised()  # noqa: B904 - the cause is the connection's error
        finally:
            core.queued(-counted)
            self._resume.set()

    # ------------------------------------------------------------------ client API
    async def open_stream(
        self, program: int, version: int, procedure: int, args: Any = None
    ) -> Stream:
        """Call ``procedure``; for V1/V2 wait for the reply that opens its stream (an error
        reply raises RemoteFailure).  Plain calls are answered when this returns."""
        core = self._core
        call = core.open_call(program, version, procedure, args)
        ex = core.exchanges[call.serial]
        try:
            await self.run(ex, client_call(ex, call))
        except BaseException:  # e.g. cancelled: later frames of this exchange are dropped
            core.forget(ex, closed_only=False)
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
        core = self._core
        engine = self.engine
        channel = self._channel
        hint = self.options.recv_buffer
        try:
            while core.drain():
                while core.error is None and not core.may_read():
                    self._resume.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._resume.wait(), PAUSE_CHECK)
                    core.not_listening(time.monotonic())
                    if channel.peer_gone():  # §3.5: exchanges in progress end
                        self._fail(ConnectionLost(f"{core.peer}: connection closed"))
                if core.error is not None:
                    return
                if core.holding:  # frames held back by max_client_requests: route them first
                    continue
                # receive in place: a large payload lands in its final buffer (§12.1)
                buffer = engine.get_buffer(hint)
                in_frame = engine.frame_remaining
                count = total = await channel.recv_into(buffer)
                # a large frame is arriving: fill the rest of its payload buffer before
                # going back to the engine (no event can come out before it is complete)
                while in_frame and count and total < len(buffer):
                    core.progress = time.monotonic()
                    count = await channel.recv_into(buffer[total:])
                    total += count
                core.received(total, not count, time.monotonic())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)

    async def _send_pongs(self) -> None:
        """Answer PINGs (§5) without making the reader wait for the socket."""
        core = self._core
        while core.pong_due:
            core.pong_due = False
            with contextlib.suppress(TransportError):
                await self._send(KeepalivePong())

    async def _send_refusals(self) -> None:
        core = self._core
        while (refusal := core.next_refusal()) is not None:
            ex, error = refusal
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
        if self._core.error is None and not ex.closed:
            with contextlib.suppress(TransportError):
                await self.run(ex, server_conclude(ex, failure, value))

    # ------------------------------------------------------------------ keepalive
    async def _watchdog(self) -> None:
        core = self._core
        tick = core.tick_period()
        assert tick is not None
        while core.error is None:
            await asyncio.sleep(tick)
            ping = core.tick(time.monotonic())
            if ping is not None:
                with contextlib.suppress(TransportError):
                    await self._send(ping)


_log = logging.getLogger("xdrstream.transport")
ACCEPT_RETRY = 0.1  # seconds before accepting again after a failed accept (EMFILE)


async def accept_clients(
    listener: socket.socket,
    admission: Admission,
    serve: Callable[[socket.socket, str], Awaitable[None]],
    tasks: set[asyncio.Task[None]],
) -> None:
    """Accept connections on ``listener`` for ever, each served by ``serve(sock, peer)`` in
    a task kept in ``tasks``; at ``admission``'s max_clients stop accepting and serve the
    others until one leaves, as libvirtd does (§8.5)."""
    loop = asyncio.get_running_loop()
    room = asyncio.Event()  # set when a client left

    def left(sock: socket.socket, task: asyncio.Task[None]) -> None:
        # a task cancelled before its first step (the server closing) never closed it
        sock.close()
        tasks.discard(task)
        admission.leave()
        room.set()

    while True:
        if admission.full:
            _log.warning(
                "max_clients (%d) reached: not accepting until a client leaves",
                admission.max_clients,
            )
            room.clear()
            while admission.full:
                await room.wait()
                room.clear()
        try:
            sock, peer = await loop.sock_accept(listener)
        except OSError as exc:
            _log.warning("accept failed: %s", exc)
            await asyncio.sleep(ACCEPT_RETRY)
            continue
        admission.admit()
        task = asyncio.ensure_future(serve(sock, str(peer or "unix")))
        tasks.add(task)
        task.add_done_callback(functools.partial(left, sock))

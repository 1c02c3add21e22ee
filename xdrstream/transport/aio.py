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
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from xdrstream.protocol import LocalProtocolError, Role
from xdrstream.protocol.events import Call, Event, KeepalivePong
from xdrstream.transport import address as addresses
from xdrstream.transport import channels
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.channels import Accepting, Connecting, Programs, Target
from xdrstream.transport.core import PAUSE_CHECK, TLS_PIECE, Endpoint
from xdrstream.transport.drivers import resolve
from xdrstream.transport.errors import ConnectionLost, PeerTimeout, TransportError
from xdrstream.transport.limits import Admission, Budget
from xdrstream.transport.options import Options
from xdrstream.transport.stream import (
    Exchange,
    Op,
    Steps,
    Stream,
    T,
    Wait,
    client_call,
    server_conclude,
    server_fail,
)

if TYPE_CHECKING:
    from xdrstream.transport.channels import Unpack

Handler = Callable[[Stream], Awaitable[Any]]
Buffers = list[bytes | bytearray | memoryview]


class Signal:
    """``asyncio.Event``'s ``set``/``clear`` and a ``wait(timeout)`` that needs no Task:
    the waiter resumes one loop iteration after :meth:`set` (``wait_for(event.wait(),
    timeout)`` wraps the wait in a Task, so three: the event's future, the Task, then the
    waiter), which the reader and a stream's task pay once per frame each.

    The timeouts share one timer per signal, kept across waits: a wait whose deadline is
    not before the timer's reuses it (a wait that is set in time, every frame's, leaves
    it scheduled instead of cancelling it and making the next), and a wait woken by a
    timer earlier than its own deadline waits on for the rest.  :meth:`close` cancels it
    (the signal's owner is done with it)."""

    __slots__ = ("_due", "_flag", "_timer", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # loop time at which _timer fires

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        self._wake()

    def clear(self) -> None:
        self._flag = False

    def close(self) -> None:
        """Cancel the timer (waiters still waiting wait on until set)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def add_waiter(self, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` at the next :meth:`set` (at once if set; also at this
        signal's timer, if a wait armed one); take it back with :meth:`discard`."""
        if self._flag:
            resolve(future)
        else:
            self._waiters.append(future)

    def discard(self, future: asyncio.Future[None]) -> None:
        if future in self._waiters:
            self._waiters.remove(future)

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _expire(self) -> None:
        self._timer = None
        self._wake()

    async def wait(self, timeout: float | None = None) -> bool:
        """Until set, or ``timeout`` seconds passed (None: no limit); whether it is set."""
        if self._flag:
            return True
        if timeout is not None and timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            if deadline is not None and (self._timer is None or self._due > deadline):
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(deadline, self._expire)
                self._due = deadline
            try:
                await waiter
            finally:
                self.discard(waiter)  # (still listed only if cancelled)
            if self._flag:
                return True
            if deadline is not None and loop.time() >= deadline:
                return False
            # woken by the timer of an earlier, shorter wait: on for the rest


class AsyncChannel(channels.SocketBase):
    """A plain non-blocking socket: ``recv_into`` a caller's buffer, ``send_all`` buffers
    with ``sendmsg``."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.loop = asyncio.get_running_loop()

    async def recv_into(self, view: memoryview) -> int:
        return await self.loop.sock_recv_into(self.sock, view)

    async def send_all(
        self, buffers: Iterable[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        views = channels.byte_views(buffers)
        while views := self.send_ready(views):
            await self._writable(timeout)

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


class AsyncTLSChannel(channels.TLSBase, AsyncChannel):
    """TLS written and read on the plain socket; ciphertext leaves under one lock, in the
    order it was made."""

    _lock: asyncio.Lock
    _lock_type = asyncio.Lock
    _flusher: asyncio.Task[None] | None = None

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

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        super().close()


class AsyncConnection(Endpoint[AsyncChannel]):
    """One endpoint of a connection driven by asyncio (see the module docstring); what
    it decides lives in its :class:`~.core.DriverCore`."""

    def __init__(
        self,
        channel: AsyncChannel,
        role: Role,
        programs: Programs = (),
        options: Options | None = None,
        handler: Handler | None = None,
        name: str = "",
        budget: Budget | None = None,
    ) -> None:
        super().__init__(channel, role, programs, options, name, budget, handler is not None)
        self._handler = handler
        core = self._core
        core.wake = self._wake
        core.kick = self._kick
        core.aborted = self._aborted
        self._write_lock = asyncio.Lock()
        self._resume = Signal()
        self._closed = asyncio.Event()
        self._ponger: asyncio.Task[None] | None = None
        self._refuser: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ set-up
    @classmethod
    async def connect(
        cls, target: Target, programs: Programs = (), **keywords: Unpack[Connecting]
    ) -> AsyncConnection:
        """Connect to ``unix:PATH``, ``tcp:HOST:PORT`` or ``tls:HOST:PORT`` (keywords:
        :class:`~.channels.Connecting`)."""
        address, options, setup = channels.client_setup(target, keywords)
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(
            None, addresses.connect, address, options.handshake_timeout
        )
        channel = await cls._secured(sock, setup, options)
        return cls(channel, Role.CLIENT, programs, options, name=str(address)).start()

    @staticmethod
    async def _secured(
        sock: socket.socket, setup: channels.TLSSetup | None, options: Options
    ) -> AsyncChannel:
        channel = channels.channel_for(sock, setup, options, AsyncChannel, AsyncTLSChannel)
        try:
            await channel.handshake(options.handshake_timeout)
        except BaseException:
            channel.close()
            raise
        return channel

    @classmethod
    async def accept(
        cls,
        sock: socket.socket,
        programs: Programs,
        handler: Handler,
        **keywords: Unpack[Accepting],
    ) -> AsyncConnection:
        """Serve an accepted socket: TLS handshake (if ``tls``), then start reading
        (keywords: :class:`~.channels.Accepting`)."""
        options, name, setup = channels.server_setup(keywords)
        channel = await cls._secured(sock, setup, options)
        budget = keywords.get("budget")
        return cls(channel, Role.SERVER, programs, options, handler, name, budget).start()

    def start(self) -> AsyncConnection:
        """Start reading (and the keepalive watchdog); the connection."""
        self._reader = self._spawn(self._read_loop())
        if self._core.tick_period() is not None:
            self._spawn(self._watchdog())
        return self

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ state
    def _fail(self, exc: BaseException) -> None:
        self._core.fail(exc)

    def _failed(self) -> None:
        """The core ended the connection: stop the socket, wake every waiter."""
        self._channel.shutdown()
        self._resume.set()
        self._resume.close()
        self._closed.set()
        for ex in self._core.exchanges.values():
            if ex.waker is not None:
                ex.waker.set()
                ex.waker.close()

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
        ex.waker = Signal()
        ex.abort_event = Signal()
        ex.on_consumed = self._consumed

    def _consumed(self, serial: int, count: int) -> None:
        if self._core.consumed(serial, count):
            self._resume.set()

    # ------------------------------------------------------------------ running ops
    async def run(self, ex: Exchange, op: Op[T]) -> T:
        """Run one stream operation: send what it yields, wait when it says WAIT."""
        steps, refused = Steps(op), None
        try:
            while (step := steps.advance(refused)) is not None:
                refused = None
                if isinstance(step, Wait):
                    await self.wait(ex)
                else:
                    refused = await self._send(step)
            return steps.value
        finally:
            steps.close()
            self._core.forget(ex)
            if ex.closed:
                ex.waker.close()

    async def wait(self, ex: Exchange) -> None:
        """Until an event is routed to ``ex`` (the connection's error raised instead)."""
        core = self._core
        while not ex.inbox:
            if core.error is not None:
                raise core.raised()
            ex.waker.clear()
            await ex.waker.wait(core.wait_left(time.monotonic()))

    async def _send(self, event: Event) -> LocalProtocolError | None:
        """Send ``event``; what the engine said if it refused to (nothing was sent)."""
        core = self._core
        if core.error is not None:
            raise core.raised()
        counted = core.enqueue(event)  # waiting for the lock counts as queued output (§8.5)
        try:
            async with self._write_lock:
                try:
                    buffers, counted = core.encode(event, counted)
                except LocalProtocolError as exc:
                    return exc
                try:
                    await self._channel.send_all(buffers, self.options.timeout)
                except BaseException as exc:  # a partly written frame ruins the connection
                    self._fail(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    raise core.raised()  # noqa: B904 - the cause is the connection's error
                return None
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
        self._core.plain_call(program, version, procedure)
        return (await self.open_stream(program, version, procedure, args)).result

    # ------------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        core = self._core
        channel = self._channel
        try:
            while core.drain():
                while core.error is None and not core.may_read():
                    self._resume.clear()
                    await self._resume.wait(PAUSE_CHECK)
                    core.paused(time.monotonic(), channel.peer_gone())
                if core.error is not None:
                    return
                if core.holding:  # frames held back by max_client_requests: route them first
                    continue
                # receive in place: a large payload lands in its final buffer (§12.1)
                filling = True
                while filling:
                    buffer, in_frame = core.receiving()
                    count = total = await channel.recv_into(buffer)
                    while in_frame and count and total < len(buffer):
                        core.progress = time.monotonic()
                        count = await channel.recv_into(buffer[total:])
                        total += count
                    filling = core.received(total, not count, time.monotonic())
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
        try:
            value, failure = await self._handler(stream), None
        except Exception as exc:
            value, failure = None, exc
        if self._core.error is None:
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

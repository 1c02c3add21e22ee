"""Blocking driver for the sans-I/O engine, both roles, over Unix sockets, TCP and TLS.

    conn = BlockingConnection.connect("unix:/run/x.sock", programs=[schema])
    stream = conn.open_stream(PROG, 1, PROC, args)     # a stream.BlockingStream
    conn.call(PROG, 1, PROC_PING)                       # plain call
    conn.close()

    # server role: conn = BlockingConnection.accept(sock, programs=[schema], tls=ctx)
    while (stream := conn.next_call()) is not None: ...   # or conn.serve(handler)

Threads: a reader thread receives with ``recv_into`` straight into the engine's buffer
(``Connection.get_buffer``: large payloads are received in place, the kernel's copy is the
only one) and routes events to the exchanges; it stops reading while the engine's ``reading_paused``
holds (spec.md §8.2).  A control thread answers PINGs, sends keepalive PINGs and enforces
the idle timeout, so the reader never waits for the socket's write side.  Application
threads send their own frames, one at a time under a lock, with ``socket.sendmsg`` of the
header and their payload view (partial sends loop; waiting for writability is bounded by
``Options.timeout``).  TLS runs on ``ssl.SSLObject`` over memory BIOs on the plain socket,
so reading and writing never share an OpenSSL call.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from xdrstream.protocol import LocalProtocolError, Role
from xdrstream.protocol.events import Call, Event, KeepalivePong
from xdrstream.transport import address as addresses
from xdrstream.transport import channels
from xdrstream.transport.channels import Accepting, Connecting, Programs, Target
from xdrstream.transport.core import PAUSE_CHECK, TLS_PIECE, Endpoint
from xdrstream.transport.errors import ConnectionLost, PeerTimeout, TransportError
from xdrstream.transport.limits import Budget
from xdrstream.transport.options import Options
from xdrstream.transport.stream import (
    BlockingStream,
    Exchange,
    Op,
    Steps,
    T,
    Wait,
    client_call,
    server_conclude,
    server_fail,
)

if TYPE_CHECKING:
    from xdrstream.transport.channels import Unpack

SyncHandler = Callable[[BlockingStream], Any]


def _wait_fd(sock: socket.socket, events: int, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), events)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


class SocketChannel(channels.SocketBase):
    """A plain socket in non-blocking mode, waited on with poll()."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.needs_flush = False
        self._readable = select.poll()  # the reader thread's wait, made once
        self._readable.register(sock.fileno(), select.POLLIN)

    def recv_into(self, view: memoryview) -> int:
        while True:
            try:
                return self.sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                self._readable.poll()

    def send_all(
        self, buffers: Iterable[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        views = channels.byte_views(buffers)
        while views := self.send_ready(views):
            if not _wait_fd(self.sock, select.POLLOUT, timeout):
                raise PeerTimeout(f"the peer stopped reading: no send progress for {timeout} s")

    def flush(self, timeout: float | None) -> None:
        return None

    def handshake(self, timeout: float) -> None:
        return None


class TLSChannel(channels.TLSBase, SocketChannel):
    """TLS: the reader thread decrypts, writers encrypt, each under a short lock;
    ciphertext made by the reader (rare) is flushed by the control thread."""

    _lock_type = threading.Lock

    def _fill(self, timeout: float | None) -> bool:
        while True:
            try:
                count = self.sock.recv_into(self._raw)
                break
            except (BlockingIOError, InterruptedError):
                if not _wait_fd(self.sock, select.POLLIN, timeout):
                    raise PeerTimeout(f"{self._tls.peer}: no TLS data for {timeout} s") from None
        with self._lock:
            self._tls.feed(self._raw[:count])
        return bool(count)

    def handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            while not self._tls.handshake():
                self.flush(timeout)
                if not self._fill(max(0.0, deadline - time.monotonic())):
                    raise ConnectionLost("connection closed during the TLS handshake") from None
            self.flush(timeout)
        except (ssl.SSLError, OSError, ConnectionLost) as exc:
            if isinstance(exc, ssl.SSLError):  # tell the peer why (the alert is queued)
                with contextlib.suppress(Exception):
                    self.flush(1.0)
            raise self._tls.handshake_error(exc) from exc

    def recv_into(self, view: memoryview) -> int:
        while True:
            with self._lock:
                count = self._tls.read_into(view)
                if self._tls.pending:
                    self.needs_flush = True
            if count is not None:
                return count
            self._fill(None)

    def send_all(
        self, buffers: Iterable[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        tls = self._tls
        for buffer in buffers:
            view = memoryview(buffer).cast("B")
            while view:
                with self._lock:
                    view = tls.encrypt(view)
                    data = tls.take() if tls.pending >= TLS_PIECE else b""
                if data:
                    super().send_all([data], timeout)
        self.flush(timeout)

    def flush(self, timeout: float | None) -> None:
        with self._lock:
            self.needs_flush = False
            data = self._tls.take()
        if data:
            super().send_all([data], timeout)


class BlockingConnection(Endpoint[SocketChannel]):
    """One endpoint of a connection driven by threads (see the module docstring); what
    it decides lives in its :class:`~.core.DriverCore`, guarded by one condition."""

    def __init__(
        self,
        channel: SocketChannel,
        role: Role,
        programs: Programs = (),
        options: Options | None = None,
        name: str = "",
        budget: Budget | None = None,
    ) -> None:
        super().__init__(channel, role, programs, options, name, budget)
        self._cond = threading.Condition()  # guards the core (re-entrant)
        self._write_lock = threading.Lock()  # one frame at a time, in engine order
        self._calls: deque[BlockingStream] = deque()
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"xdrstream-reader {name}", daemon=True),
            threading.Thread(target=self._control_loop, name=f"xdrstream-ctl {name}", daemon=True),
        ]
        self._handler_threads: set[threading.Thread] = set()

    # ------------------------------------------------------------------ set-up
    @classmethod
    def connect(
        cls, target: Target, programs: Programs = (), **keywords: Unpack[Connecting]
    ) -> BlockingConnection:
        """Connect to ``unix:PATH``, ``tcp:HOST:PORT`` or ``tls:HOST:PORT`` (keywords:
        :class:`~.channels.Connecting`)."""
        address, options, setup = channels.client_setup(target, keywords)
        sock = addresses.connect(address, options.handshake_timeout)
        channel = cls._secured(sock, setup, options)
        return cls(channel, Role.CLIENT, programs, options, name=str(address)).start()

    @staticmethod
    def _secured(
        sock: socket.socket, setup: channels.TLSSetup | None, options: Options
    ) -> SocketChannel:
        channel = channels.channel_for(sock, setup, options, SocketChannel, TLSChannel)
        try:
            channel.handshake(options.handshake_timeout)
        except BaseException:
            channel.close()
            raise
        return channel

    @classmethod
    def accept(
        cls, sock: socket.socket, programs: Programs, **keywords: Unpack[Accepting]
    ) -> BlockingConnection:
        """The server side of an accepted socket, TLS handshake first if ``tls``
        (keywords: :class:`~.channels.Accepting`)."""
        options, name, setup = channels.server_setup(keywords)
        channel = cls._secured(sock, setup, options)
        return cls(channel, Role.SERVER, programs, options, name, keywords.get("budget")).start()

    def start(self) -> BlockingConnection:
        """Start the reader and control threads; the connection."""
        for thread in self._threads:
            thread.start()
        return self

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self._core.fail(exc)

    def _failed(self) -> None:
        """(Under the condition.) Wake every waiter and the reader; the fd is closed by
        close()."""
        self._cond.notify_all()
        self._channel.shutdown()

    def close(self) -> None:
        """Close the connection; exchanges in progress end with ConnectionLost."""
        self._fail(ConnectionLost("connection closed locally"))
        current = threading.current_thread()
        for thread in [*self._threads, *self._handler_threads]:
            if thread is not current and thread.is_alive():
                thread.join()
        self._channel.close()

    def __enter__(self) -> BlockingConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ core hooks
    def _equip(self, ex: Exchange) -> None:
        ex.on_consumed = self._consumed

    def _dispatch(self, ex: Exchange, call: Call) -> None:
        self._calls.append(BlockingStream(self, ex, call))

    def _consumed(self, serial: int, count: int) -> None:
        with self._cond:
            if self._core.consumed(serial, count):
                self._cond.notify_all()

    # ------------------------------------------------------------------ running ops
    def run(self, ex: Exchange, op: Op[T]) -> T:
        steps, refused = Steps(op), None
        try:
            while (step := steps.advance(refused)) is not None:
                refused = None
                if isinstance(step, Wait):
                    self._wait(ex)
                else:
                    refused = self._send(step)
            return steps.value
        finally:
            steps.close()
            if ex.closed or self.role is Role.SERVER:
                with self._cond:
                    self._core.forget(ex)
                    if self.role is Role.SERVER:  # an answered call may let the reader on
                        self._cond.notify_all()

    def _wait(self, ex: Exchange) -> None:
        core = self._core
        with self._cond:
            while not ex.inbox:
                if core.error is not None:
                    raise core.raised()
                left = core.wait_left(time.monotonic())
                if left != 0.0:
                    self._cond.wait(left)

    def _send(self, event: Event) -> LocalProtocolError | None:
        """Send ``event``; what the engine said if it refused to (nothing was sent)."""
        core = self._core
        counted = 0
        if core.accounting:  # waiting for the lock counts as queued output (§8.5)
            with self._cond:
                counted = core.enqueue(event)
        try:
            with self._write_lock:
                with self._cond:
                    try:
                        buffers, counted = core.encode(event, counted)
                    except LocalProtocolError as exc:
                        return exc
                try:
                    self._channel.send_all(buffers, self.options.timeout)
                except BaseException as exc:  # a partly written frame ruins the connection
                    self._fail(exc)
                    raise core.raised()  # noqa: B904 - the cause is the connection's error
                return None
        finally:
            if counted:
                with self._cond:
                    core.queued(-counted)

    # ------------------------------------------------------------------ client API
    def open_stream(
        self, program: int, version: int, procedure: int, args: Any = None
    ) -> BlockingStream:
        """Call ``procedure``; V1/V2 wait for the reply that opens its stream."""
        core = self._core
        with self._cond:
            call = core.open_call(program, version, procedure, args)
            ex = core.exchanges[call.serial]
        try:
            self.run(ex, client_call(ex, call))
        except BaseException:
            with self._cond:
                if not ex.closed:
                    core.forget(ex, closed_only=False)
            raise
        return BlockingStream(self, ex, call)

    def call(self, program: int, version: int, procedure: int, args: Any = None) -> Any:
        """A call without stream: its result (an error reply raises RemoteFailure)."""
        with self._cond:
            self._core.plain_call(program, version, procedure)
        return self.open_stream(program, version, procedure, args).result

    # ------------------------------------------------------------------ server API
    def next_call(self, timeout: float | None = None) -> BlockingStream | None:
        """The next incoming call (server role); None when the connection is over or
        ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._calls:
                if self._core.error is not None:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._calls.popleft()

    def conclude(self, stream: BlockingStream, exc: BaseException | None, value: Any) -> None:
        """End ``stream``'s exchange after its handler (reply ``value`` to a plain call,
        error reply for an exception, confirm a client abort)."""
        ex = stream._ex
        if self._core.error is None and not ex.closed:
            with contextlib.suppress(TransportError):
                self.run(ex, server_conclude(ex, exc, value))

    def serve(self, handler: SyncHandler) -> None:
        """Run ``handler(stream)`` in a thread per incoming call until the connection ends;
        its return value answers a plain call, an exception becomes an error reply."""
        while (stream := self.next_call()) is not None:
            thread = threading.Thread(target=self._handle, args=(handler, stream), daemon=True)
            self._handler_threads.add(thread)
            thread.start()
        for thread in list(self._handler_threads):
            thread.join()

    def _handle(self, handler: SyncHandler, stream: BlockingStream) -> None:
        try:
            value, failure = handler(stream), None
        except Exception as exc:
            value, failure = None, exc
        finally:
            self._handler_threads.discard(threading.current_thread())
        self.conclude(stream, failure, value)

    # ------------------------------------------------------------------ threads
    def _read_loop(self) -> None:
        core = self._core
        channel = self._channel
        try:
            while True:
                with self._cond:
                    if not core.drain():
                        return
                    if core.routed:
                        self._cond.notify_all()
                    while core.error is None and not core.may_read():
                        self._cond.wait(PAUSE_CHECK)
                        core.paused(time.monotonic(), channel.peer_gone())
                    if core.error is not None:
                        return
                    if core.holding:  # frames held back by max_client_requests: route first
                        continue
                    # receive in place: a large payload lands in its final buffer (§12.1);
                    # only this thread touches the engine's receive side
                    buffer, in_frame = core.receiving()
                # A large frame is arriving: fill the rest of its payload buffer with
                # plain reads; nothing can be routed (and no one notified) before it is
                # complete, so the drain and the wake-ups wait until then.
                filling = True
                while filling:
                    count = total = channel.recv_into(buffer)
                    while in_frame and count and total < len(buffer):
                        core.progress = time.monotonic()
                        count = channel.recv_into(buffer[total:])
                        total += count
                    with self._cond:
                        if core.error is not None:
                            return
                        filling = core.received(total, not count, time.monotonic())
                        if filling:
                            buffer, in_frame = core.receiving()
                if channel.needs_flush:
                    with self._cond:
                        self._cond.notify_all()
        except BaseException as exc:
            self._fail(exc)

    def _control_loop(self) -> None:
        """PONGs, keepalive PINGs, idle timeout, stalled frames, TLS flushes: the sending
        the reader must not do itself (the core decides what is due)."""
        core = self._core
        tick = core.tick_period() or 1.0
        try:
            while True:
                with self._cond:
                    if core.error is not None:
                        return
                    if not (core.pong_due or core.refusals or self._channel.needs_flush):
                        self._cond.wait(tick)
                    if core.error is not None:
                        return
                    pong, core.pong_due = core.pong_due, False
                    refusals = []
                    while (refusal := core.next_refusal()) is not None:
                        refusals.append(refusal)
                    ping = core.tick(time.monotonic())
                    if core.error is not None:
                        return
                if self._channel.needs_flush:
                    with self._write_lock:
                        self._channel.flush(self.options.timeout)
                if pong:
                    self._send(KeepalivePong())
                for ex, error in refusals:
                    self.run(ex, server_fail(ex, error))
                if refusals:
                    with self._cond:
                        self._cond.notify_all()
                if ping is not None:
                    self._send(ping)
        except TransportError:
            return
        except BaseException as exc:
            self._fail(exc)

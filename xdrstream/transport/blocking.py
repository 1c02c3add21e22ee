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
from typing import Any, cast

from xdrstream.protocol import (
    NEED_DATA,
    Connection,
    Limits,
    LocalProtocolError,
    Registry,
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
)
from xdrstream.protocol.states import Kind as EngineKind
from xdrstream.transport import address as addresses
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.aio import PAUSE_CHECK, TLS_PIECE, peer_gone
from xdrstream.transport.drivers import advance, client_tls, connection_error, unknown_procedure
from xdrstream.transport.errors import (
    ERR_OPERATION_INVALID,
    ConnectionLost,
    PeerTimeout,
    StreamAborted,
    TransportError,
    remote_error,
)
from xdrstream.transport.options import Options
from xdrstream.transport.stream import (
    WAIT,
    BlockingStream,
    Exchange,
    Op,
    T,
    client_call,
    make_exchange,
    server_conclude,
    server_fail,
)

SyncHandler = Callable[[BlockingStream], Any]


def _wait_fd(sock: socket.socket, events: int, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), events)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


class SocketChannel:
    """A plain socket in non-blocking mode, waited on with poll()."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
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
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        while views:
            try:
                sent = self.sock.sendmsg(views)
            except (BlockingIOError, InterruptedError):
                if not _wait_fd(self.sock, select.POLLOUT, timeout):
                    raise PeerTimeout(
                        f"the peer stopped reading: no send progress for {timeout} s"
                    ) from None
                continue
            views = advance(views, sent)

    def flush(self, timeout: float | None) -> None:
        return None

    def handshake(self, timeout: float) -> None:
        return None

    def peer_gone(self) -> bool:
        return peer_gone(self.sock)

    def peer_certificate(self) -> dict[str, Any] | None:
        return None

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


class TLSChannel(SocketChannel):
    """TLS on ``ssl.SSLObject``: the reader thread decrypts, writers encrypt, each under
    a short lock; ciphertext made by the reader (rare) is flushed by the control thread."""

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
        self._lock = threading.Lock()
        self._raw = memoryview(bytearray(256 * 1024))
        self._peer = peer

    def _fill(self, timeout: float | None) -> bool:
        while True:
            try:
                count = self.sock.recv_into(self._raw)
                break
            except (BlockingIOError, InterruptedError):
                if not _wait_fd(self.sock, select.POLLIN, timeout):
                    raise PeerTimeout(f"{self._peer}: no TLS data for {timeout} s") from None
        with self._lock:
            if count:
                self._in.write(self._raw[:count])
            else:
                self._in.write_eof()
        return bool(count)

    def handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    self._obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self.flush(timeout)
                    if not self._fill(max(0.0, deadline - time.monotonic())):
                        raise ConnectionLost("connection closed during the TLS handshake") from None
            self.flush(timeout)
        except (ssl.SSLError, OSError, ConnectionLost) as exc:
            if isinstance(exc, ssl.SSLError):  # tell the peer why (the alert is queued)
                with contextlib.suppress(Exception):
                    self.flush(1.0)
            raise tlsmod.TLSError(
                f"TLS handshake with {self._peer} failed: {tlsmod.describe(exc)}"
            ) from exc

    def recv_into(self, view: memoryview) -> int:
        while True:
            with self._lock:
                try:
                    count: int | None = cast(int, self._obj.read(len(view), view))
                except ssl.SSLWantReadError:
                    count = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return 0
                except ssl.SSLError as exc:
                    raise tlsmod.TLSError(
                        f"TLS error with {self._peer}: {tlsmod.describe(exc)}"
                    ) from exc
                if self._out.pending:
                    self.needs_flush = True
            if count is not None:
                return count
            self._fill(None)

    def send_all(
        self, buffers: Iterable[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        for buffer in buffers:
            view = memoryview(buffer).cast("B")
            while view:
                with self._lock:
                    view = view[self._obj.write(view[:TLS_PIECE]) :]
                    data = self._out.read() if self._out.pending >= TLS_PIECE else b""
                if data:
                    super().send_all([data], timeout)
        self.flush(timeout)

    def flush(self, timeout: float | None) -> None:
        with self._lock:
            self.needs_flush = False
            data = self._out.read()
        if data:
            super().send_all([data], timeout)

    def peer_certificate(self) -> dict[str, Any] | None:
        return self._obj.getpeercert()


class BlockingConnection:
    """One endpoint of a connection driven by threads (see the module docstring)."""

    def __init__(
        self,
        channel: SocketChannel,
        role: Role,
        programs: Iterable[Any] | Registry = (),
        options: Options | None = None,
        name: str = "",
    ) -> None:
        self.options = options or Options()
        self.role = role
        self.name = name
        self._channel = channel
        self._registry = Registry.of(programs)
        self.engine = Connection(
            role, self._registry, Limits(stream_buffer=self.options.stream_buffer)
        )
        self._cond = threading.Condition()  # guards the engine and the routing state
        self._write_lock = threading.Lock()  # one frame at a time, in engine order
        self._exchanges: dict[int, Exchange] = {}
        self._calls: deque[BlockingStream] = deque()
        self._refusals: deque[tuple[Exchange, Any]] = deque()
        self._error: TransportError | None = None
        self._last_rx = time.monotonic()
        self._pong_due = False
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"xdrstream-reader {name}", daemon=True),
            threading.Thread(target=self._control_loop, name=f"xdrstream-ctl {name}", daemon=True),
        ]
        self._handler_threads: set[threading.Thread] = set()

    # ------------------------------------------------------------------ set-up
    @classmethod
    def connect(
        cls,
        target: str | addresses.Address,
        programs: Iterable[Any] | Registry = (),
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        options: Options | None = None,
    ) -> BlockingConnection:
        """Connect to ``unix:PATH``, ``tcp:HOST:PORT`` or ``tls:HOST:PORT`` (TLS also when
        ``tls`` is given)."""
        address = addresses.parse_address(target) if isinstance(target, str) else target
        options = options or Options()
        sock = addresses.connect(address, options.handshake_timeout)
        settings = client_tls(address, tls, server_hostname)
        channel: SocketChannel
        if settings is None:
            channel = SocketChannel(sock)
        else:
            context, host = settings
            channel = TLSChannel(sock, context, False, host, peer=str(address))
        try:
            channel.handshake(options.handshake_timeout)
        except BaseException:
            channel.close()
            raise
        conn = cls(channel, Role.CLIENT, programs, options, name=str(address))
        conn.start()
        return conn

    @classmethod
    def accept(
        cls,
        sock: socket.socket,
        programs: Iterable[Any] | Registry,
        *,
        tls: ssl.SSLContext | None = None,
        options: Options | None = None,
        name: str = "",
    ) -> BlockingConnection:
        """The server side of an accepted socket (TLS handshake first if ``tls``)."""
        options = options or Options()
        channel = (
            TLSChannel(sock, tls, True, peer=name or "client")
            if tls is not None
            else SocketChannel(sock)
        )
        try:
            channel.handshake(options.handshake_timeout)
        except BaseException:
            channel.close()
            raise
        conn = cls(channel, Role.SERVER, programs, options, name)
        conn.start()
        return conn

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def error(self) -> TransportError | None:
        return self._error

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        return self._channel.peer_certificate()

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is not None:
                return
            error = connection_error(exc)
            if exc is not error:
                error.__cause__ = exc
            self._error = error
            self._cond.notify_all()
        self._channel.shutdown()  # wakes the reader; the fd is closed by close()

    def _raise_error(self) -> None:
        error = self._error
        assert error is not None
        raise type(error)(*error.args) from error

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

    # ------------------------------------------------------------------ running ops
    def _new_exchange(self, serial: int, kind: EngineKind, sparse: bool) -> Exchange:
        ex = make_exchange(serial, self.role is Role.CLIENT, kind, sparse, self.options.chunk_size)
        ex.on_consumed = self._consumed
        ex.info = lambda: self._info(serial)
        self._exchanges[serial] = ex
        return ex

    def _info(self, serial: int) -> Any:
        with self._cond:
            return self.engine.stream_info(serial)

    def _consumed(self, serial: int, count: int) -> None:
        with self._cond:
            engine_ex = self.engine.exchange(serial)  # no StreamInfo per chunk
            if engine_ex is None or self._error is not None:
                return
            paused = self.engine.reading_paused
            self.engine.stream_consumed(serial, min(count, engine_ex.unconsumed))
            if paused and not self.engine.reading_paused:
                self._cond.notify_all()

    def run(self, ex: Exchange, op: Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if step is WAIT:
                    self._wait(ex)
                else:
                    try:
                        self._send(step)  # type: ignore[arg-type]
                    except LocalProtocolError as exc:  # the operation decides (see _emit)
                        step = op.throw(exc)
                        continue
                step = op.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            op.close()
            if ex.closed:
                with self._cond:
                    if self._exchanges.get(ex.serial) is ex:
                        del self._exchanges[ex.serial]

    def _wait(self, ex: Exchange) -> None:
        timeout = self.options.timeout
        with self._cond:
            while not ex.inbox:
                if self._error is not None:
                    self._raise_error()
                if timeout is None:
                    self._cond.wait()
                    continue
                if self.engine.reading_paused:  # we are not listening: not the peer's fault
                    self._last_rx = time.monotonic()
                left = self._last_rx + timeout - time.monotonic()
                if left <= 0:  # (the condition's lock is re-entrant)
                    self._fail(
                        PeerTimeout(f"{self.name or 'peer'}: nothing received for {timeout} s")
                    )
                    continue
                self._cond.wait(left)

    def _send(self, event: Event) -> None:
        with self._write_lock:
            with self._cond:
                if self._error is not None:
                    self._raise_error()
                buffers = self.engine.send_buffers(event)
            try:
                self._channel.send_all(buffers, self.options.timeout)
            except BaseException as exc:  # a partly written frame ruins the connection
                self._fail(exc)
                self._raise_error()

    # ------------------------------------------------------------------ client API
    def open_stream(
        self, program: int, version: int, procedure: int, args: Any = None
    ) -> BlockingStream:
        """Call ``procedure``; V1/V2 wait for the reply that opens its stream."""
        proc = self._registry.lookup(program, version, procedure)
        if proc is None:
            raise TransportError(
                f"procedure {program:#x}/{version}/{procedure} is not in this connection's programs"
            )
        mode = proc.stream
        kind = EngineKind.of(mode)
        with self._cond:
            if self._error is not None:
                self._raise_error()
            serial = self.engine.next_serial()
            ex = self._new_exchange(serial, kind, bool(mode and mode.sparse))
        call = Call(serial, program, version, procedure, args)
        try:
            self.run(ex, client_call(ex, call))
        except BaseException:
            with self._cond:
                if self._exchanges.get(serial) is ex and not ex.closed:
                    del self._exchanges[serial]
            raise
        return BlockingStream(self, ex, call)

    def call(self, program: int, version: int, procedure: int, args: Any = None) -> Any:
        stream = self.open_stream(program, version, procedure, args)
        if stream.direction != "call":
            stream.abort()
            raise TransportError(f"procedure {procedure} has a stream: use open_stream()")
        return stream.result

    # ------------------------------------------------------------------ server API
    def next_call(self, timeout: float | None = None) -> BlockingStream | None:
        """The next incoming call (server role); None when the connection is over or
        ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._calls:
                if self._error is not None:
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
        if self._error is None and not ex.closed:
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
        failure: BaseException | None = None
        value: Any = None
        try:
            value = handler(stream)
        except StreamAborted:
            pass
        except ConnectionLost:
            return
        except Exception as exc:
            failure = exc
        finally:
            self._handler_threads.discard(threading.current_thread())
        self.conclude(stream, failure, value)

    # ------------------------------------------------------------------ threads
    def _read_loop(self) -> None:
        engine = self.engine
        hint = self.options.recv_buffer
        try:
            while True:
                with self._cond:
                    if not self._drain():
                        return
                    while self._error is None and (
                        engine.reading_paused or len(self._refusals) >= self.options.max_calls
                    ):
                        self._cond.wait(PAUSE_CHECK)
                        self._last_rx = time.monotonic()  # we were not listening
                        if self._channel.peer_gone():  # §3.5: exchanges in progress end
                            self._fail(ConnectionLost(f"{self.name or 'peer'}: connection closed"))
                    if self._error is not None:
                        return
                    # receive in place: a large payload lands in its final buffer (§12.1);
                    # only this thread touches the engine's receive side
                    buffer = engine.get_buffer(hint)
                    in_frame = engine.frame_remaining
                count = total = self._channel.recv_into(buffer)
                # A large frame is arriving: fill the rest of its payload buffer with
                # plain reads; nothing can be routed (and no one notified) before it is
                # complete, so the lock, the drain and the wake-ups wait until then.
                while in_frame and count and total < len(buffer):
                    self._last_rx = time.monotonic()
                    count = self._channel.recv_into(buffer[total:])
                    total += count
                with self._cond:
                    if self._error is not None:
                        return
                    self._last_rx = time.monotonic()
                    if total:
                        engine.buffer_updated(total)
                    if not count:  # the peer closed (maybe inside the frame: §3.5)
                        engine.buffer_updated(0)
                if self._channel.needs_flush:
                    with self._cond:
                        self._cond.notify_all()
        except BaseException as exc:
            self._fail(exc)

    def _drain(self) -> bool:
        engine = self.engine
        routed = False
        while self._error is None:
            event = engine.next_event()
            if event is NEED_DATA:
                if routed:
                    self._cond.notify_all()
                return True
            routed = True
            kind = type(event)
            if kind is KeepalivePing:
                self._pong_due = True
            elif kind is KeepalivePong or kind is Message:
                pass
            elif kind is ConnectionClosed:
                self._error = ConnectionLost(f"{self.name or 'peer'}: connection closed by peer")
                self._cond.notify_all()
                return False
            elif isinstance(event, Call):
                self._incoming(event)
            elif isinstance(event, ExchangeEvent):
                ex = self._exchanges.get(event.serial)
                if ex is not None:
                    ex.inbox.append(event)
        return False

    def _incoming(self, call: Call) -> None:
        info = self.engine.stream_info(call.serial)
        ex = self._new_exchange(
            call.serial, info.kind if info else EngineKind.CALL, bool(info and info.sparse)
        )
        if not call.known:
            self._refusals.append((ex, unknown_procedure(call)))
        elif len(self._exchanges) > self.options.max_calls:
            why = "too many calls in progress"
            self._refusals.append((ex, remote_error(ERR_OPERATION_INVALID, why)))
        else:
            self._calls.append(BlockingStream(self, ex, call))

    def _control_loop(self) -> None:
        """PONGs, keepalive PINGs, idle timeout, TLS flushes: the sending the reader
        must not do itself."""
        opts = self.options
        periods = [p for p in (opts.keepalive_interval, opts.idle_timeout) if p]
        tick = min(periods) / 2 if periods else 1.0
        missed = 0
        seen = self._last_rx
        last_ping = time.monotonic()
        try:
            while True:
                with self._cond:
                    if self._error is not None:
                        return
                    if not (self._pong_due or self._refusals or self._channel.needs_flush):
                        self._cond.wait(tick)
                    if self._error is not None:
                        return
                    pong, self._pong_due = self._pong_due, False
                    refusals = list(self._refusals)
                    self._refusals.clear()
                    paused = self.engine.reading_paused
                    idle = not self._exchanges and not self._calls
                if self._channel.needs_flush:
                    with self._write_lock:
                        self._channel.flush(opts.timeout)
                if pong:
                    self._send(KeepalivePong())
                for ex, error in refusals:
                    self.run(ex, server_fail(ex, error))
                if refusals:
                    with self._cond:
                        self._cond.notify_all()
                now = time.monotonic()
                if paused:
                    seen = self._last_rx = now
                    continue
                if opts.idle_timeout and idle and now - self._last_rx >= opts.idle_timeout:
                    self._fail(
                        PeerTimeout(f"{self.name or 'connection'}: idle for {opts.idle_timeout} s")
                    )
                    return
                interval = opts.keepalive_interval
                if not interval or now - last_ping < interval:
                    continue
                if self._last_rx != seen:
                    seen, missed = self._last_rx, 0
                if now - self._last_rx < interval:
                    continue
                if missed >= opts.keepalive_count:
                    self._fail(
                        PeerTimeout(
                            f"{self.name or 'peer'}: no answer to {opts.keepalive_count} "
                            f"keepalive pings ({interval} s apart)"
                        )
                    )
                    return
                missed += 1
                last_ping = now
                self._send(KeepalivePing())
        except TransportError:
            return
        except BaseException as exc:
            self._fail(exc)

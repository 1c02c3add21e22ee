"""Everything a driver decides without I/O, written once for :mod:`.aio` and :mod:`.blocking`.

:class:`DriverCore` holds one connection's engine and the driver state around it: the
exchanges events are routed to, the refusals queued for sending, libvirtd's limits
(spec.md §8.5: whether to read, output queued, the shared memory budget), keepalive and
idle policy (§5), operation timeouts and the error that ended the connection.  It never
touches a socket, a lock, a thread or an event loop: the drivers call it with the time
and what they received, and do what it says (send a PING, wake an exchange, stop
reading).  :class:`TLSPump` is the TLS state of one connection on memory BIOs, which the
drivers feed with ciphertext and drain of ciphertext.
"""

from __future__ import annotations

import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar, cast

from xdrstream.protocol import NEED_DATA, Connection, Limits, Registry, RemoteError, Role
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    Event,
    ExchangeEvent,
    KeepalivePing,
    KeepalivePong,
    Message,
    StreamAbort,
    StreamData,
)
from xdrstream.protocol.framing import HEADER_SIZE, LEN_SIZE
from xdrstream.protocol.programs import Procedure
from xdrstream.protocol.states import Kind as EngineKind
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.drivers import connection_error, unknown_procedure
from xdrstream.transport.errors import (
    ERR_OPERATION_INVALID,
    ConnectionLost,
    PeerTimeout,
    TransportError,
    remote_error,
)
from xdrstream.transport.limits import Budget, frame_stalled
from xdrstream.transport.options import Options
from xdrstream.transport.stream import Exchange, make_exchange

FRAME_OVERHEAD = LEN_SIZE + HEADER_SIZE
"""Bytes of a frame besides its body: what an event waiting to be encoded counts for."""

TLS_PIECE = 256 * 1024
"""Plaintext bytes encrypted before the ciphertext is written out (bounds the TLS buffer)."""

PAUSE_CHECK = 0.25
"""Seconds between checks for a peer that hung up while reading is paused."""


def queued_size(event: Event) -> int:
    """What ``event`` counts for in the queued output before it is encoded: its frame
    overhead and its data (a reply's result is counted once encoded)."""
    if type(event) is StreamData:
        return FRAME_OVERHEAD + len(event.data)
    return FRAME_OVERHEAD


class DriverCore:
    """One connection's I/O-free driver state (see the module docstring).

        Hooks the driver sets: ``wake(ex)`` when an event was routed to ``ex``'s inbox,
        ``aborted(ex)`` when the client's abort of ``ex`` arrived (server), ``dispatch(ex,
        call)`` for an incoming call to hand to the application, ``kick()`` when a PONG or a
        refusal is due to be sent, ``failed()`` once the connection has ended (close the
        socket, wake every waiter), ``equip(ex)`` for each new exchange (the driver's wakers and
    its ``on_consumed``, which calls :meth:`consumed` under the driver's lock).
    """

    def __init__(
        self,
        role: Role,
        programs: Iterable[Any] | Registry,
        options: Options,
        name: str = "",
        budget: Budget | None = None,
        serving: bool = True,
    ) -> None:
        self.role = role
        self.options = options
        self.name = name
        self.serving = serving  # a server with someone to hand calls to
        self.registry = Registry.of(programs)
        self.engine = Connection(role, self.registry, Limits(stream_buffer=options.stream_buffer))
        # libvirtd's limits (spec.md §8.5): the server's shared budget, or this one's own
        self.limits = options.server_limits()
        self.account = (budget or Budget(options.memory_budget)).account()
        self.accounting = role is Role.SERVER  # only a server's limits read the figures
        self.exchanges: dict[int, Exchange] = {}
        self.refusals: deque[tuple[Exchange, RemoteError]] = deque()
        self.error: TransportError | None = None
        self.pong_due = False
        self.holding = False  # complete frames left in the engine by max_client_requests
        self.routed = False  # the last drain routed an event
        now = time.monotonic()
        self.last_rx = now  # last sign of the peer (or of our not listening)
        self.progress = now  # last byte received (stalled partial frames)
        self._seen = now
        self._missed = 0
        self._last_ping = now
        self.wake: Callable[[Exchange], None] = lambda ex: None
        self.dispatch: Callable[[Exchange, Call], None] = lambda ex, call: None
        self.kick: Callable[[], None] = lambda: None
        self.aborted: Callable[[Exchange], None] = lambda ex: None
        self.failed: Callable[[], None] = lambda: None
        self.equip: Callable[[Exchange], None] = lambda ex: None

    @property
    def peer(self) -> str:
        return self.name or "peer"

    # ------------------------------------------------------------------ errors
    def fail(self, exc: BaseException) -> bool:
        """Record why the connection ended (the first reason wins); True if this call
        ended it.  Buffered input leaves the budget at once."""
        if self.error is not None:
            return False
        error = connection_error(exc)
        error.__cause__ = exc if exc is not error else None
        self.error = error
        self.account.set_input(0)
        self.failed()
        return True

    def raised(self) -> TransportError:
        """A fresh copy of the connection's error to raise in an operation."""
        error = self.error
        assert error is not None
        copy = type(error)(*error.args)
        copy.__cause__ = error
        return copy

    # ------------------------------------------------------------------ exchanges
    def procedure(self, program: int, version: int, procedure: int) -> Procedure:
        proc = self.registry.lookup(program, version, procedure)
        if proc is None:
            raise TransportError(
                f"procedure {program:#x}/{version}/{procedure} is not in this connection's programs"
            )
        return proc

    def open_call(self, program: int, version: int, procedure: int, args: Any) -> Call:
        """Client: a new exchange for a call of ``procedure`` and the Call that starts it."""
        if self.error is not None:
            raise self.raised()
        mode = self.procedure(program, version, procedure).stream
        serial = self.engine.next_serial()
        self.new_exchange(serial, EngineKind.of(mode), bool(mode and mode.sparse))
        return Call(serial, program, version, procedure, args)

    def new_exchange(self, serial: int, kind: EngineKind, sparse: bool) -> Exchange:
        ex = make_exchange(serial, self.role is Role.CLIENT, kind, sparse, self.options.chunk_size)
        self.equip(ex)
        self.exchanges[serial] = ex
        return ex

    def forget(self, ex: Exchange, closed_only: bool = True) -> None:
        """Drop ``ex`` from routing once it is over (or, ``closed_only`` False, at once:
        an operation given up, its later frames are dropped)."""
        if (ex.closed or not closed_only) and self.exchanges.get(ex.serial) is ex:
            del self.exchanges[ex.serial]

    def consumed(self, serial: int, count: int) -> bool:
        """The application took ``count`` bytes of stream ``serial`` (§8.2); True if that
        lifted the engine's reading pause."""
        engine_ex = self.engine.exchange(serial)  # its own count: no StreamInfo per chunk
        if engine_ex is None or self.error is not None:
            return False
        paused = self.engine.reading_paused
        self.engine.stream_consumed(serial, min(count, engine_ex.unconsumed))
        return paused and not self.engine.reading_paused

    def plain_call(self, program: int, version: int, procedure: int) -> None:
        """Refuse, before anything is sent, a plain ``call()`` of a procedure with a stream."""
        if self.procedure(program, version, procedure).stream is not None:
            raise TransportError(f"procedure {procedure} has a stream: use open_stream()")

    def requests(self) -> int:
        """Calls received and not yet answered (a stream counts until its reply)."""
        return sum(1 for ex in self.exchanges.values() if not ex.accepted and not ex.closed)

    # ------------------------------------------------------------------ reading
    def may_read(self) -> bool:
        """Whether the driver may read now: not while a stream holds too much unconsumed
        data (§8.2), nor while refusals pile up, nor (a server) past libvirtd's limits:
        ``max_client_requests`` calls unanswered, ``max_queued_output`` bytes queued, or
        the shared budget spent while this connection holds more than a read's worth."""
        engine = self.engine
        self.account.set_input(engine.buffered)
        if engine.reading_paused or len(self.refusals) >= self.options.max_calls:
            return False
        if self.role is not Role.SERVER:
            return True
        requests = self.requests()
        account = self.account
        if account.budget.exhausted and account.input + account.output <= self.options.recv_buffer:
            # at rest: a small call still gets through, so the server serves the others
            return requests < self.limits.max_client_requests
        return self.limits.may_read(requests, account.output, account.budget)

    def paused(self, now: float, gone: bool) -> None:
        """The driver did not read for a while by choice (that is no silence of the peer);
        ``gone``: meanwhile the peer hung up, so the exchanges in progress end (§3.5)."""
        self.last_rx = now
        if gone:
            self.fail(ConnectionLost(f"{self.peer}: connection closed"))

    def receiving(self) -> tuple[memoryview, int]:
        """The buffer to receive into next and the bytes of an in-place frame still due
        (0 if none): while they are, the buffer is that frame's payload (§12.1), to fill
        with as many reads as it takes before :meth:`received`."""
        buffer = self.engine.get_buffer(self.options.recv_buffer)
        return buffer, self.engine.frame_remaining

    def received(self, total: int, eof: bool, now: float) -> bool:
        """``total`` bytes were received into the engine's buffer (``eof``: then the end).
        True if a large frame received in place is still due and the limits let it grow:
        go on filling it (no event can come out before it is complete: routing waits)."""
        self.last_rx = self.progress = now
        self._missed = 0
        engine = self.engine
        if total:
            engine.buffer_updated(total)
        if eof:  # the peer closed (maybe inside a frame: §3.5)
            engine.buffer_updated(0)
            return False
        return engine.frame_remaining > 0 and self.may_read()

    def drain(self) -> bool:
        """Route every complete event; False once the connection is over.  A server at
        ``max_client_requests`` leaves the next call unrouted in the engine (§8.5)."""
        engine = self.engine
        exchanges = self.exchanges
        self.holding = self.routed = False
        server = self.role is Role.SERVER
        # calls unanswered: only a call routed here adds one (the application, which
        # answers them, does not run meanwhile)
        requests = self.requests() if server else 0
        while self.error is None:
            if server and engine.buffered and requests >= self.limits.max_client_requests:
                self.holding = True
                return True
            event = engine.next_event()
            if event is NEED_DATA:
                return True
            self.routed = True
            kind = type(event)
            if kind is StreamData:  # the hot path first
                ex = exchanges.get(cast(StreamData, event).serial)
                if ex is not None:
                    ex.inbox.append(event)
                    self.wake(ex)
            elif kind is KeepalivePing:
                self.pong_due = True
                self.kick()
            elif kind is KeepalivePong or kind is Message:
                pass  # any input is a sign of life; notifications are not used
            elif kind is ConnectionClosed:
                self.fail(ConnectionLost(f"{self.peer}: connection closed by peer"))
                return False
            elif isinstance(event, Call):
                self._incoming(event)
                requests += 1
            elif isinstance(event, ExchangeEvent):
                ex = exchanges.get(event.serial)
                if ex is not None:
                    ex.inbox.append(event)
                    self.wake(ex)
                    if kind is StreamAbort:
                        self.aborted(ex)
        return False

    def _incoming(self, call: Call) -> None:
        engine_ex = self.engine.exchange(call.serial)
        if engine_ex is None:
            ex = self.new_exchange(call.serial, EngineKind.CALL, False)
        else:
            ex = self.new_exchange(call.serial, engine_ex.kind, engine_ex.sparse)
            ex.engine = engine_ex
        if not call.known:
            self.refuse(ex, unknown_procedure(call, self.registry))
        elif not self.serving or len(self.exchanges) > self.options.max_calls:
            why = "no handler" if not self.serving else "too many calls in progress"
            self.refuse(ex, remote_error(ERR_OPERATION_INVALID, why))
        else:
            self.dispatch(ex, call)

    def refuse(self, ex: Exchange, error: RemoteError) -> None:
        """Queue an error reply (it counts as queued output until it is sent)."""
        self.refusals.append((ex, error))
        self.account.add_output(FRAME_OVERHEAD + len(error.message or ""))
        self.kick()

    def next_refusal(self) -> tuple[Exchange, RemoteError] | None:
        if not self.refusals:
            return None
        ex, error = self.refusals.popleft()
        self.account.add_output(-(FRAME_OVERHEAD + len(error.message or "")))
        return ex, error

    # ------------------------------------------------------------------ sending
    def encode(self, event: Event, counted: int) -> tuple[list[Any], int]:
        """The buffers of ``event`` (in engine order: under the driver's write lock) and
        their size, which replaces the ``counted`` estimate in the queued output."""
        if self.error is not None:
            raise self.raised()
        buffers = self.engine.send_buffers(event)
        if type(event) is Call:  # the engine's exchange now exists: the driver's reads it
            ex = self.exchanges.get(event.serial)
            if ex is not None:
                ex.engine = self.engine.exchange(event.serial)
        if not self.accounting:
            return buffers, 0
        size = sum(len(b) for b in buffers)
        self.account.add_output(size - counted)
        return buffers, size

    def enqueue(self, event: Event) -> int:
        """``event`` waits to be encoded: what it counts for in the queued output (§8.5;
        0 where nothing is counted), to give back with :meth:`queued` once it is sent."""
        if not self.accounting:
            return 0
        counted = queued_size(event)
        self.account.add_output(counted)
        return counted

    def queued(self, nbytes: int) -> None:
        """``nbytes`` of output joined (positive) or left (negative, sent) the queue."""
        if self.accounting:
            self.account.add_output(nbytes)

    # ------------------------------------------------------------------ timers
    def wait_left(self, now: float) -> float | None:
        """Seconds an operation may still wait for its peer (None: forever).  At 0 the
        connection has failed with PeerTimeout: nothing arrived for ``timeout`` seconds."""
        timeout = self.options.timeout
        if timeout is None:
            return None
        if self.engine.reading_paused:  # we are not listening: not the peer's fault
            self.last_rx = now
        left = self.last_rx + timeout - now
        if left <= 0:
            self.fail(PeerTimeout(f"{self.peer}: nothing received for {timeout} s"))
            return 0.0
        return left

    def tick_period(self) -> float | None:
        """How often :meth:`tick` must run (None: never needed)."""
        opts = self.options
        periods = [p for p in (opts.keepalive_interval, opts.idle_timeout, opts.timeout) if p]
        return min(periods) / 2 if periods else None

    def tick(self, now: float) -> KeepalivePing | None:
        """Keepalive and idle policy (§5, §8.5): a PING to send, or None; when the peer is
        gone (stalled partial frame, idle, unanswered PINGs) the connection fails."""
        opts = self.options
        engine = self.engine
        if self.error is not None:
            return None
        partial = bool(engine.buffered or engine.frame_remaining)
        if (
            self.role is Role.SERVER
            and not engine.reading_paused
            and not self.holding
            and frame_stalled(partial, self.progress, now, opts.timeout)
        ):
            self.fail(
                PeerTimeout(
                    f"{self.peer}: a partial frame made no progress for {opts.timeout} s "
                    "(spec.md §8.5)"
                )
            )
            return None
        if engine.reading_paused:  # we stopped listening: the peer is not silent
            self._seen = self.last_rx = self.progress = now
            return None
        if opts.idle_timeout and not self.exchanges and now - self.last_rx >= opts.idle_timeout:
            self.fail(PeerTimeout(f"{self.name or 'connection'}: idle for {opts.idle_timeout} s"))
            return None
        interval = opts.keepalive_interval
        if not interval or now - self._last_ping < interval:
            return None
        if self.last_rx != self._seen:
            self._seen = self.last_rx
            self._missed = 0
        if now - self.last_rx < interval:
            return None
        if self._missed >= opts.keepalive_count:
            self.fail(
                PeerTimeout(
                    f"{self.peer}: no answer to {opts.keepalive_count} keepalive pings "
                    f"({interval} s apart)"
                )
            )
            return None
        self._missed += 1
        self._last_ping = now
        return KeepalivePing()


class Channel(Protocol):
    """What :class:`Endpoint` asks of a driver's channel (the rest is the driver's)."""

    def peer_certificate(self) -> dict[str, Any] | None: ...


C = TypeVar("C", bound=Channel)


class Endpoint(Generic[C]):
    """What both drivers' connections hold alike: their settings, channel and
    :class:`DriverCore`, whose hooks a driver's subclass implements."""

    def __init__(
        self,
        channel: C,
        role: Role,
        programs: Iterable[Any] | Registry,
        options: Options | None,
        name: str,
        budget: Budget | None,
        serving: bool = True,
    ) -> None:
        self.options = options or Options()
        self.role = role
        self.name = name
        self._channel = channel
        core = self._core = DriverCore(role, programs, self.options, name, budget, serving)
        self.engine = core.engine
        core.dispatch = self._dispatch
        core.failed = self._failed
        core.equip = self._equip

    @property
    def error(self) -> TransportError | None:
        """Why the connection ended (None while it is usable)."""
        return self._core.error

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        return self._channel.peer_certificate()

    def _dispatch(self, ex: Exchange, call: Call) -> None:
        raise NotImplementedError

    def _failed(self) -> None:
        raise NotImplementedError

    def _equip(self, ex: Exchange) -> None:
        raise NotImplementedError


class TLSPump:
    """TLS on an ``ssl.SSLObject`` over memory BIOs: the driver feeds it the ciphertext it
    receives and writes out the ciphertext it makes (no socket, no lock)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        peer: str = "",
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self.peer = peer

    def handshake(self) -> bool:
        """Advance the handshake: True when it is done, False when it needs input (write
        out :meth:`take` first).  ssl errors propagate (see :meth:`handshake_error`)."""
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def handshake_error(self, exc: BaseException) -> tlsmod.TLSError:
        return tlsmod.TLSError(f"TLS handshake with {self.peer} failed: {tlsmod.describe(exc)}")

    def feed(self, data: memoryview) -> None:
        """Ciphertext received (empty: the peer closed)."""
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    def read_into(self, view: memoryview) -> int | None:
        """Plaintext into ``view``: its size, 0 at the end, None if more input is needed."""
        try:
            return cast(int, self._obj.read(len(view), view))
        except ssl.SSLWantReadError:
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0
        except ssl.SSLError as exc:
            raise tlsmod.TLSError(f"TLS error with {self.peer}: {tlsmod.describe(exc)}") from exc

    def encrypt(self, view: memoryview) -> memoryview:
        """Encrypt up to ``TLS_PIECE`` bytes of ``view``; the rest to encrypt."""
        return view[self._obj.write(view[:TLS_PIECE]) :]

    @property
    def pending(self) -> int:
        """Ciphertext bytes made and not yet taken."""
        return self._out.pending

    def take(self) -> bytes:
        """The ciphertext made so far, to write out in order."""
        return self._out.read()

    def peer_certificate(self) -> dict[str, Any] | None:
        return self._obj.getpeercert()

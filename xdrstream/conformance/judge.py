"""Judging a client under test: a proxy that plays the server side and a set of client cases.

    with JudgingProxy(parse_address("unix:/tmp/j.sock"), parse_address("unix:/srv/libvirt-sock"))
            as proxy:
        ... run an unmodified client (virsh, libvirt-python, go-libvirt) against /tmp/j.sock ...
        sessions = proxy.wait(1)
    results = judge(sessions[0])        # one Result per client case, see CLIENT_CASES

How the server side is played: the proxy relays every frame between the client and a real
server (``upstream``: libvirtd, or ``xdrstream serve --libvirt-storage``), so the client gets
genuine answers to whatever it calls, and records each frame with its time. It adds one
frame of its own: a keepalive PING to the client right after the reply to the first
CONNECT_OPEN (for other programs: after the first reply), and it keeps the client's PONG
from the server (spec.md §5). The session's frames are then judged against spec.md by the
client cases below (ids ``C<section>/<n>``: client case n of that section); each case names
the frames it looked at (its evidence, shown in the HTML report).

Outcomes are those of the server suite: ``pass``, ``fail`` (a MUST or SHOULD the client
broke), ``skip`` (the session has nothing the case checks, e.g. no upload) and
``deviation``: the client relied on a leniency of libvirt's own decoder (libtirpc's
``xdr_bool`` and optional-data flags take any non-zero word as TRUE); our strict codec
refuses the frame, the same frame with that word read as 1 decodes. Each leniency is listed
with the frame, the field and the byte offset.

A TLS session cannot be judged (the proxy would see ciphertext): plain TCP and Unix only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdrstream.codec.errors import DecodeError
from xdrstream.conformance.catalogue import Case, Result
from xdrstream.conformance.peer import Violation
from xdrstream.conformance.relay import RelayProxy, received
from xdrstream.conformance.trace import C2S, S2C, TraceFrame
from xdrstream.protocol import Procedure, Registry, RemoteProtocolError, programs_from_schema
from xdrstream.protocol import schemas as schema_files
from xdrstream.protocol.framing import (
    KEEPALIVE_PING,
    KEEPALIVE_PONG,
    KEEPALIVE_PROGRAM,
    KEEPALIVE_VERSION,
    LEN_SIZE,
    MAX_FRAME,
    MIN_FRAME,
    Header,
    MessageStatus,
    MessageType,
    pack_frame,
    parse_header,
)
from xdrstream.transport import address as addresses

__all__ = [
    "CLIENT_CASES",
    "Deviation",
    "JudgingProxy",
    "NotApplicable",
    "Session",
    "judge",
    "registry",
]

LIBVIRT_PROGRAM = 0x20008086
CONNECT_OPEN, CONNECT_CLOSE = 1, 2
#: calls libvirtd accepts before CONNECT_OPEN (AUTH_LIST, CONNECT_SUPPORTS_FEATURE, the SASL
#: and polkit steps of authentication)
PRE_OPEN = frozenset({66, 60, 67, 68, 69, 70, 147})
PING_FRAME = pack_frame(
    Header(KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, KEEPALIVE_PING, MessageType.MESSAGE, 0,
           MessageStatus.OK)
)  # fmt: skip
#: seconds a PONG may take (spec.md §5 "promptly"; libvirt's client answers at once)
PONG_WITHIN = 5.0
#: bytes of one session the proxy keeps (a larger session is judged on its start only)
SESSION_MAX = 256 << 20
INJECTED = "injected by the judge"


class Deviation(Exception):
    """The client relied on a leniency of a known implementation (the message says which)."""


class NotApplicable(Exception):
    """The session has nothing this case checks."""


@dataclass
class Session:
    """One judged connection: its frames in the order the proxy saw them complete."""

    frames: list[TraceFrame] = field(default_factory=list)
    truncated: bool = False  # more than SESSION_MAX bytes: the rest was relayed, not kept
    done: bool = False


# ---- the proxy ---------------------------------------------------------------------------------
def check_addresses(listen: addresses.Address, upstream: addresses.Address) -> None:
    """ValueError unless both addresses carry frames in the clear (a TLS session's frames
    cannot be judged): a command checks this before it listens or connects."""
    if listen.tls or upstream.tls:
        raise ValueError("a TLS session cannot be judged: use unix: or tcp: addresses")


class JudgingProxy(RelayProxy):
    """Relays connections to ``upstream`` frame by frame, recording a :class:`Session` per
    connection (module docstring). ``ping`` injects the keepalive PING."""

    def __init__(
        self, listen: addresses.Address, upstream: addresses.Address, *, ping: bool = True
    ) -> None:
        check_addresses(listen, upstream)
        super().__init__(listen, upstream)
        self.ping = ping
        self.sessions: list[Session] = []
        self._lock = threading.Condition()

    def wait(self, count: int, timeout: float = 60.0) -> list[Session]:
        """The first ``count`` sessions once they have ended; TimeoutError otherwise."""
        with self._lock:
            ended = self._lock.wait_for(
                lambda: sum(s.done for s in self.sessions) >= count, timeout
            )
            if not ended:
                raise TimeoutError(f"fewer than {count} judged sessions ended in {timeout} s")
            return [s for s in self.sessions if s.done][:count]

    def connection(
        self, client: socket.socket, upstream: socket.socket
    ) -> Sequence[Callable[[], None]]:
        relay = _Relay(self, client, upstream)
        with self._lock:
            self.sessions.append(relay.session)
        return [relay.client_side, relay.server_side]


class _Relay:
    """The two relay threads of one connection and what they share."""

    def __init__(self, proxy: JudgingProxy, client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.session = Session()
        self.started = time.monotonic()
        self.kept = 0
        self.pings_out = 0  # injected PINGs whose PONG has not come
        self.injected = not proxy.ping
        self.calls: dict[int, int] = {}  # serial -> proc of the client's calls
        self.ends = 0
        self.client_lock = threading.Lock()  # both threads may write to the client

    def _log(self, direction: str, data: bytes, **kw: Any) -> None:
        with self.proxy._lock:
            if data and self.kept + len(data) > SESSION_MAX:
                self.session.truncated = True
                return
            self.kept += len(data)
            frame = TraceFrame(direction, data, time=time.monotonic() - self.started, **kw)
            self.session.frames.append(frame)

    def _frames(self, source: socket.socket, direction: str) -> Iterator[bytes]:
        """Complete frames from ``source``; a cut-off or impossible tail is logged partial."""
        buffer = bytearray()
        broken = False
        for data in received(source):
            buffer += data
            while not broken and len(buffer) >= LEN_SIZE:
                length = int.from_bytes(buffer[:LEN_SIZE], "big")
                if not MIN_FRAME <= length <= MAX_FRAME + LEN_SIZE:
                    broken = True  # no frame boundary after this (§3.4): relay it raw
                    break
                if len(buffer) < length:
                    break
                frame = bytes(buffer[:length])
                del buffer[:length]
                yield frame
            if broken and buffer:
                self._log(direction, bytes(buffer), partial=True)
                yield bytes(buffer)  # relayed raw: the peer judges it
                buffer.clear()
        if buffer:
            self._log(direction, bytes(buffer), partial=True)
            yield bytes(buffer)

    def _send(self, sink: socket.socket, data: bytes) -> bool:
        try:
            if sink is self.client:
                with self.client_lock:
                    sink.sendall(data)
            else:
                sink.sendall(data)
        except OSError:
            return False
        return True

    def client_side(self) -> None:
        for frame in self._frames(self.client, C2S):
            if len(frame) < MIN_FRAME or int.from_bytes(frame[:4], "big") != len(frame):
                self._send(self.upstream, frame)  # partial: logged already
                continue
            header = _header(frame)
            self._log(C2S, frame)
            if header is not None and header.type == MessageType.CALL:
                self.calls.setdefault(header.serial, header.proc)
            if _is_keepalive(header, KEEPALIVE_PONG) and self.pings_out:
                self.pings_out -= 1  # the answer to our PING: not the server's business
                continue
            if not self._send(self.upstream, frame):
                break
        self._end(C2S, self.upstream)

    def server_side(self) -> None:
        for frame in self._frames(self.upstream, S2C):
            if len(frame) >= MIN_FRAME and int.from_bytes(frame[:4], "big") == len(frame):
                self._log(S2C, frame)
            if not self._send(self.client, frame):
                break
            header = _header(frame)
            if not self.injected and header is not None and header.type == MessageType.REPLY:
                first_open = header.prog != LIBVIRT_PROGRAM or header.proc == CONNECT_OPEN
                if first_open:
                    self.injected = True
                    self.pings_out += 1
                    self._log(S2C, PING_FRAME, note=INJECTED)
                    self._send(self.client, PING_FRAME)
        self._end(S2C, self.client)

    def _end(self, direction: str, sink: socket.socket) -> None:
        self._log(direction, b"", close=True)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self.proxy._lock:
            self.ends += 1
            if self.ends == 2:
                for sock in (self.client, self.upstream):
                    with contextlib.suppress(OSError):
                        sock.close()
                self.session.done = True
                self.proxy._lock.notify_all()


def _header(frame: bytes) -> Header | None:
    if len(frame) < MIN_FRAME:
        return None
    try:
        return parse_header(frame, LEN_SIZE)
    except RemoteProtocolError:
        return None


def _is_keepalive(header: Header | None, proc: int) -> bool:
    return (
        header is not None
        and header.prog == KEEPALIVE_PROGRAM
        and header.type == MessageType.MESSAGE
        and header.proc == proc
    )


# ---- the session seen as exchanges -------------------------------------------------------------
def registry() -> Registry:
    """The programs the judge decodes: libvirt's remote program and restore.x."""
    programs = []
    for name in ("libvirt_remote", "restore"):
        programs += programs_from_schema(schema_files.load(name))
    return Registry(programs)


@dataclass
class _Wire:
    index: int  # 1-based, as the HTML report numbers frames
    frame: TraceFrame
    header: Header | None
    bad_header: str = ""

    @property
    def payload(self) -> bytes:
        return self.frame.data[MIN_FRAME:]

    @property
    def client(self) -> bool:
        return self.frame.direction == C2S


@dataclass
class _Exchange:
    serial: int
    call: _Wire
    procedure: Procedure | None
    reply: _Wire | None = None
    frames: list[_Wire] = field(default_factory=list)  # stream frames, both directions

    @property
    def direction(self) -> str | None:
        mode = self.procedure.stream if self.procedure is not None else None
        return None if mode is None else mode.direction.value

    def ended_at(self) -> int | None:
        """Index of the frame that ended the exchange for the client."""
        if self.reply is None:
            return None
        if self.direction is None or self.reply.header.status != MessageStatus.OK:  # type: ignore[union-attr]
            return self.reply.index
        for wire in self.frames:
            h = wire.header
            assert h is not None
            if (
                not wire.client
                and h.type == MessageType.STREAM
                and (
                    h.status == MessageStatus.ERROR
                    or (h.status == MessageStatus.OK and not wire.payload)
                )
            ):
                return wire.index
        return None


class _View:
    """What the cases look at: the frames, numbered, and the client's exchanges."""

    def __init__(self, session: Session, reg: Registry) -> None:
        self.session = session
        self.registry = reg
        self.wires: list[_Wire] = []
        self.exchanges: list[_Exchange] = []
        self.stray: list[_Wire] = []  # client stream frames naming no exchange
        for index, frame in enumerate(session.frames, 1):
            if frame.close:
                self.wires.append(_Wire(index, frame, None))
                continue
            header: Header | None = None
            bad = ""
            if frame.partial or len(frame.data) < MIN_FRAME:
                bad = f"a cut-off frame of {len(frame.data)} bytes"
            else:
                try:
                    header = parse_header(frame.data, LEN_SIZE)
                except RemoteProtocolError as exc:
                    bad = str(exc)
            self.wires.append(_Wire(index, frame, header, bad))
        current: dict[int, _Exchange] = {}
        for wire in self.wires:
            h = wire.header
            if h is None or h.prog == KEEPALIVE_PROGRAM:
                continue
            if wire.client and h.type == MessageType.CALL:
                ex = _Exchange(h.serial, wire, reg.lookup(h.prog, h.vers, h.proc))
                self.exchanges.append(ex)
                current[h.serial] = ex
                continue
            ex = current.get(h.serial)  # type: ignore[assignment]
            if h.type == MessageType.REPLY and ex is not None and ex.reply is None:
                ex.reply = wire
            elif h.type in (MessageType.STREAM, MessageType.STREAM_HOLE):
                if ex is None:
                    if wire.client:
                        self.stray.append(wire)
                else:
                    ex.frames.append(wire)

    @property
    def client_frames(self) -> list[_Wire]:
        return [w for w in self.wires if w.client and not w.frame.close]

    def streams(self, direction: str) -> list[_Exchange]:
        return [e for e in self.exchanges if e.direction == direction]

    @property
    def libvirt(self) -> bool:
        return any(e.call.header.prog == LIBVIRT_PROGRAM for e in self.exchanges)  # type: ignore[union-attr]


# ---- client cases ----------------------------------------------------------------------------
Check = Callable[[_View], list[int]]
_CHECKS: dict[str, Check] = {}
CLIENT_CASES: list[Case] = []


def _not_run(context: Any) -> None:
    raise NotApplicable("a judged client case: see xdrstream.conformance.judge")


def _case(
    case_id: str, title: str, requirement: str, expect: str, level: str = "MUST"
) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        CLIENT_CASES.append(
            Case(
                case_id,
                title,
                requirement,
                expect,
                _not_run,
                frozenset({"libvirt", "restore"}),
                level,
                (),
                "judge",
            )
        )
        _CHECKS[case_id] = check
        return check

    return register


def _kind(h: Header) -> str:
    try:
        return f"{MessageType(h.type).name}/{MessageStatus(h.status).name}"
    except ValueError:
        return f"type {h.type}/status {h.status}"


def _where(wire: _Wire) -> str:
    h = wire.header
    what = _kind(h) + f" serial {h.serial} proc {h.proc}" if h is not None else "frame"
    return f"frame {wire.index} ({what})"


@_case(
    "C3.4/1",
    "client: every frame has a valid length and the connection ends at a frame boundary",
    "§3.1, §3.3, §3.4, §3.5: a length word counts the whole frame, 28 .. XS_MESSAGE_MAX + 4; "
    "the bytes sent end exactly at a frame boundary",
    "no undersized, oversized or cut-off client frame",
)
def _framing(view: _View) -> list[int]:
    for wire in view.client_frames:
        if wire.frame.partial or len(wire.frame.data) < MIN_FRAME:
            length = int.from_bytes(wire.frame.data[:4].ljust(4, b"\0"), "big")
            raise Violation(
                f"§3.4/§3.5: {_where(wire)}: length word {length} with "
                f"{len(wire.frame.data)} bytes sent"
            )
    return [w.index for w in view.client_frames[:1]]


@_case(
    "C3.2/1",
    "client: headers carry known types and statuses, and only what a client may send",
    "§3.2, §4.1, §4.2, §4.8: type and status are values of §4.1/§4.2; a client sends CALL, "
    "MESSAGE, STREAM and STREAM_HOLE, never REPLY or the descriptor-passing types",
    "every client header valid for the client role",
)
def _headers(view: _View) -> list[int]:
    allowed = {MessageType.CALL, MessageType.MESSAGE, MessageType.STREAM, MessageType.STREAM_HOLE}
    for wire in view.client_frames:
        if wire.bad_header and not wire.frame.partial:
            raise Violation(f"{_where(wire)}: {wire.bad_header}")
        if wire.header is not None and wire.header.type not in allowed:
            raise Violation(f"§4.1/§4.8: {_where(wire)}: a client never sends {_kind(wire.header)}")
    return [w.index for w in view.client_frames if w.header is not None][:3]


@_case(
    "C4.3.1/1",
    "client: call serials start at 0 and go up by one",
    "§4.3.1: a client SHOULD start at 0 and increment by one for each call (libvirt does)",
    "serials 0, 1, 2, ... in the order of the calls",
    level="SHOULD",
)
def _serial_order(view: _View) -> list[int]:
    if not view.exchanges:
        raise NotApplicable("the client sent no call")
    for number, ex in enumerate(view.exchanges):
        if ex.serial != number % (1 << 32):
            raise Violation(
                f"§4.3.1: call {number + 1} ({_where(ex.call)}) has serial {ex.serial}, "
                f"expected {number}"
            )
    return [e.call.index for e in view.exchanges]


@_case(
    "C4.3.2/1",
    "client: no call reuses a serial still in use",
    "§4.3.2: a client MUST NOT send a call whose serial is the primary serial of an exchange "
    "that has not ended on its side",
    "each call's serial free when it is sent",
)
def _serial_in_use(view: _View) -> list[int]:
    if not view.exchanges:
        raise NotApplicable("the client sent no call")
    for ex in view.exchanges:
        for earlier in view.exchanges:
            if earlier is ex or earlier.serial != ex.serial or earlier.call.index > ex.call.index:
                continue
            end = earlier.ended_at()
            if end is None or end > ex.call.index:
                raise Violation(
                    f"§4.3.2: {_where(ex.call)} reuses serial {ex.serial} of the exchange "
                    f"opened by frame {earlier.call.index}, which had not ended"
                )
    return [e.call.index for e in view.exchanges]


@_case(
    "C4.3.3/1",
    "client: stream frames carry the serial and call header of an open stream",
    "§4.3.3, §4.3.4, §7.1.1: STREAM and STREAM_HOLE frames carry the primary serial, program, "
    "version and procedure of their exchange; a MESSAGE carries serial 0",
    "no stream frame naming no stream, no mismatched header, no MESSAGE with a serial",
)
def _stream_identity(view: _View) -> list[int]:
    if view.stray:
        wire = view.stray[0]
        raise Violation(f"§7.1.1: {_where(wire)} names no exchange of the client's")
    evidence = []
    for ex in view.exchanges:
        call = ex.call.header
        assert call is not None
        for wire in ex.frames:
            h = wire.header
            if not wire.client or h is None:
                continue
            evidence.append(wire.index)
            if (h.prog, h.vers, h.proc) != (call.prog, call.vers, call.proc):
                raise Violation(
                    f"§4.3.4: {_where(wire)} has prog {h.prog:#x} vers {h.vers} proc {h.proc}, "
                    f"its call (frame {ex.call.index}) {call.prog:#x}/{call.vers}/{call.proc}"
                )
            if ex.direction is None:
                raise Violation(f"§7.1.1: {_where(wire)}: procedure {call.proc} has no stream")
    for wire in view.client_frames:
        h = wire.header
        if h is not None and h.type == MessageType.MESSAGE and h.serial != 0:
            raise Violation(f"§4.3.3: {_where(wire)}: a MESSAGE carries serial 0")
    if not evidence:
        raise NotApplicable("the client sent no stream frame")
    return evidence[:3] + evidence[-1:]


def _lenient_decode(procedure: Procedure, payload: bytes) -> tuple[Any, list[str]]:
    """Decode strictly; where only a bool or optional-data word other than 0/1 stops it, read
    that word as 1 (libtirpc) and retry. Returns (value, leniencies); DecodeError if even
    that fails."""
    assert procedure.arg is not None
    data = bytearray(payload)
    leniencies: list[str] = []
    for _ in range(64):
        try:
            return procedure.arg.unpack(bytes(data)), leniencies
        except DecodeError as exc:
            reason = str(getattr(exc, "reason", exc))
            offset = getattr(exc, "offset", None)
            lenient = reason.startswith(("bool must be 0 or 1", "optional-data flag must be"))
            if not lenient or offset is None or offset + 4 > len(data):
                raise
            word = int.from_bytes(data[offset : offset + 4], "big")
            kind = "bool" if reason.startswith("bool") else "optional-data flag"
            leniencies.append(
                f"{getattr(exc, 'path', '?')} at byte {offset}: {kind} {word:#010x} taken as "
                "TRUE (libtirpc's xdr_bool: any non-zero word)"
            )
            data[offset : offset + 4] = (1).to_bytes(4, "big")
    raise DecodeError("too many lenient words", "", 0)


def _call_args(ex: _Exchange) -> Any:
    """The call's arguments as the engine gives them to a stream rule: decoded (leniently,
    as a libvirt server reads them), or the payload bytes when they do not decode."""
    if ex.procedure is None or ex.procedure.arg is None:
        return None
    try:
        return _lenient_decode(ex.procedure, ex.call.payload)[0]
    except DecodeError:
        return ex.call.payload


@_case(
    "C4.4.2/1",
    "client: call arguments decode exactly as the procedure's type",
    "§4.4.1, §4.4.2, §3.2: a CALL has status OK and its procedure's XDR-encoded arguments; a "
    "body that does not decode exactly (bool and optional flags 0 or 1, no trailing bytes, "
    "bounds, enum values, zero padding) is a protocol error",
    "every call of a procedure in the schema decodes strictly; leniencies a libvirt server "
    "accepts are a deviation of the client",
)
def _arguments(view: _View) -> list[int]:
    checked: list[int] = []
    unknown: set[int] = set()
    deviations: list[str] = []
    for ex in view.exchanges:
        h = ex.call.header
        assert h is not None
        if h.status != MessageStatus.OK:
            raise Violation(f"§4.4.1: {_where(ex.call)}: a CALL has status OK")
        if ex.procedure is None or ex.procedure.arg is None:
            if ex.procedure is None:
                unknown.add(h.proc)
            elif ex.call.payload:
                raise Violation(f"§4.4.2: {_where(ex.call)}: a void call with a payload")
            continue
        checked.append(ex.call.index)
        try:
            _value, lenient = _lenient_decode(ex.procedure, ex.call.payload)
        except DecodeError as exc:
            raise Violation(
                f"§4.4.2: {_where(ex.call)} ({ex.procedure.name}): the arguments do not decode: "
                f"{exc}"
            ) from None
        deviations += [f"{_where(ex.call)} ({ex.procedure.name}): {text}" for text in lenient]
    if not checked:
        raise NotApplicable(f"no call of a procedure in the schema (procs {sorted(unknown)})")
    if deviations:
        raise Deviation("; ".join(deviations))
    return checked


@_case(
    "C5/1",
    "client: a keepalive PING is answered with a PONG",
    "§5: an endpoint that receives a PING SHOULD answer with a PONG promptly (libvirt's "
    f"client does); the judge sends one PING after CONNECT_OPEN's reply, within {PONG_WITHIN} s",
    "a PONG (MESSAGE/OK serial 0, empty) after each PING",
    level="SHOULD",
)
def _pong(view: _View) -> list[int]:
    pings = [w for w in view.wires if not w.client and _is_keepalive(w.header, KEEPALIVE_PING)]
    if not pings:
        raise NotApplicable("no PING was sent to the client")
    pongs = [w for w in view.client_frames if _is_keepalive(w.header, KEEPALIVE_PONG)]
    evidence = []
    for ping in pings:
        answer = next((p for p in pongs if p.index > ping.index), None)
        if answer is None:
            raise Violation(f"§5: the PING of {_where(ping)} got no PONG")
        assert ping.frame.time is not None and answer.frame.time is not None
        if answer.frame.time - ping.frame.time > PONG_WITHIN:
            raise Violation(
                f"§5: the PONG to frame {ping.index} came "
                f"{answer.frame.time - ping.frame.time:.1f} s later"
            )
        pongs.remove(answer)
        evidence += [ping.index, answer.index]
    return evidence


@_case(
    "C5/2",
    "client: keepalive messages are well formed",
    "§5: keepalive is MESSAGE/OK, serial 0, empty payload, program 0x6b656570 version 1, "
    "PING 1 or PONG 2; anything else of that program is a protocol error",
    "every keepalive frame of the client well formed",
)
def _keepalive_form(view: _View) -> list[int]:
    mine = [
        w
        for w in view.client_frames
        if w.header is not None
        and w.header.prog == KEEPALIVE_PROGRAM
        and w.header.type == MessageType.MESSAGE
    ]
    if not mine:
        raise NotApplicable("the client sent no keepalive message")
    for wire in mine:
        h = wire.header
        assert h is not None
        if (h.vers, h.status, h.serial, wire.payload) != (KEEPALIVE_VERSION, 0, 0, b"") or (
            h.proc not in (KEEPALIVE_PING, KEEPALIVE_PONG)
        ):
            raise Violation(f"§5: {_where(wire)}: not a well-formed keepalive message")
    return [w.index for w in mine]


def _client_stream_frames(ex: _Exchange) -> list[_Wire]:
    return [w for w in ex.frames if w.client]


def _server_error(ex: _Exchange) -> _Wire | None:
    for wire in ex.frames:
        h = wire.header
        if not wire.client and h is not None and h.status == MessageStatus.ERROR:
            return wire
    return None


def _is_end_of_data(wire: _Wire) -> bool:
    h = wire.header
    return (
        not wire.client
        and h is not None
        and h.type == MessageType.STREAM
        and h.status == MessageStatus.CONTINUE
        and not wire.payload
    )


def _is_finish(wire: _Wire) -> bool:
    h = wire.header
    return h is not None and h.type == MessageType.STREAM and h.status == MessageStatus.OK


def _is_abort(wire: _Wire) -> bool:
    h = wire.header
    return h is not None and h.type == MessageType.STREAM and h.status == MessageStatus.ERROR


@_case(
    "C7.3.1/1",
    "client: upload data only after the successful reply",
    "§7.3.1, §9.3: the client MUST NOT send stream frames before the successful reply to the "
    "primary call, nor after an ERROR reply",
    "the first stream frame of each upload after its REPLY/OK",
)
def _upload_after_reply(view: _View) -> list[int]:
    uploads = view.streams("upload")
    if not uploads:
        raise NotApplicable("no upload in this session")
    evidence = []
    for ex in uploads:
        sent = _client_stream_frames(ex)
        if ex.reply is None or ex.reply.header.status != MessageStatus.OK:  # type: ignore[union-attr]
            if sent:
                raise Violation(f"§7.3.1: {_where(sent[0])} with no successful reply to the call")
            continue
        early = [w for w in sent if w.index < ex.reply.index]
        if early:
            raise Violation(f"§7.3.1: {_where(early[0])} before the reply (frame {ex.reply.index})")
        evidence += [ex.call.index, ex.reply.index] + [w.index for w in sent[:1]]
    return evidence


@_case(
    "C7.3.1/2",
    "client: an upload ends with one StreamFinish (or StreamAbort), then nothing more",
    "§7.1.4, §7.3.1, §9.3: the client ends the data with an empty STREAM/OK (or aborts with an "
    "empty STREAM/ERROR), sends no empty STREAM/CONTINUE and no frame after the finish",
    "data, then exactly one finish or abort, then the server's confirmation",
)
def _upload_finish(view: _View) -> list[int]:
    uploads = [e for e in view.streams("upload") if e.reply is not None
               and e.reply.header.status == MessageStatus.OK]  # type: ignore[union-attr]  # fmt: skip
    if not uploads:
        raise NotApplicable("no upload was accepted in this session")
    evidence = []
    for ex in uploads:
        sent = _client_stream_frames(ex)
        failed = _server_error(ex)
        for wire in sent:
            h = wire.header
            assert h is not None
            if (
                h.type == MessageType.STREAM
                and h.status == MessageStatus.CONTINUE
                and not (wire.payload)
            ):
                raise Violation(f"§7.3.1: {_where(wire)}: a client never sends an empty chunk")
        ends = [w for w in sent if _is_finish(w) or _is_abort(w)]
        if not ends:
            if failed is not None:
                continue  # the server ended it
            raise Violation(
                f"§7.3.1: the upload of frame {ex.call.index} was never finished nor aborted"
            )
        after = [w for w in sent if w.index > ends[0].index]
        if after:
            raise Violation(f"§9.3: {_where(after[0])} after the end ({_where(ends[0])})")
        evidence += [ex.call.index, ends[0].index]
    return evidence


@_case(
    "C7.3.2/1",
    "client: after a download's end of data the client sends StreamFinish or StreamAbort",
    "§7.3.2, §9.3: after the server's empty STREAM/CONTINUE the client MUST send StreamFinish "
    "(empty STREAM/OK) or StreamAbort; before it only an abort, never data or holes",
    "STREAM/OK after the end of data, confirmed by the server",
)
def _download_finish(view: _View) -> list[int]:
    downloads = view.streams("download")
    if not downloads:
        raise NotApplicable("no download in this session")
    evidence = []
    for ex in downloads:
        eof = next((w for w in ex.frames if _is_end_of_data(w)), None)
        for wire in _client_stream_frames(ex):
            if not (_is_finish(wire) or _is_abort(wire)):
                raise Violation(f"§9.3: {_where(wire)}: a download's client sends no data")
            if _is_finish(wire) and (eof is None or wire.index < eof.index):
                raise Violation(f"§9.3: {_where(wire)}: StreamFinish before the end of data")
        if eof is None:
            continue
        failed = _server_error(ex)
        if failed is not None and failed.index < eof.index:
            continue
        ends = [w for w in _client_stream_frames(ex) if w.index > eof.index]
        if not ends:
            raise Violation(
                f"§7.3.2: the end of data ({_where(eof)}) got neither StreamFinish nor "
                "StreamAbort: the client left the stream unfinished"
            )
        evidence += [eof.index, ends[0].index]
    if not evidence:
        raise NotApplicable("no download reached its end of data")
    return evidence


@_case(
    "C7.3.3/1",
    "client: an abort is STREAM/ERROR with an empty payload",
    "§7.3.3: the client aborts with an empty STREAM/ERROR; a client abort with a payload is a "
    "protocol error",
    "every client STREAM/ERROR empty",
)
def _abort(view: _View) -> list[int]:
    aborts = [w for ex in view.exchanges for w in _client_stream_frames(ex) if _is_abort(w)]
    if not aborts:
        raise NotApplicable("the client aborted no stream")
    for wire in aborts:
        if wire.payload:
            raise Violation(
                f"§7.3.3: {_where(wire)}: a client abort with {len(wire.payload)} bytes"
            )
    return [w.index for w in aborts]


@_case(
    "C7.1.3/1",
    "client: holes only in a sparse upload, with a valid body",
    "§7.1.3, §7.3.4: STREAM_HOLE/CONTINUE only in a stream declared @sparse, sent by the data "
    "sender, body {hyper length >= 0; unsigned flags = 0}",
    "every client hole valid",
)
def _holes(view: _View) -> list[int]:
    holes = [(ex, w) for ex in view.exchanges for w in _client_stream_frames(ex)
             if w.header is not None and w.header.type == MessageType.STREAM_HOLE]  # fmt: skip
    if not holes:
        raise NotApplicable("the client sent no hole")
    from xdrstream.protocol import bodies

    for ex, wire in holes:
        mode = ex.procedure.stream if ex.procedure is not None else None
        if mode is None or not mode.sparse or ex.direction != "upload":
            raise Violation(
                f"§7.1.3: {_where(wire)}: a hole in a stream that is not a sparse upload"
            )
        if not mode.sparse_for(_call_args(ex)):
            raise Violation(
                f"§7.1.3, §11.3: {_where(wire)}: a hole in an upload whose call "
                f"({_where(ex.call)}) did not ask for holes"
            )
        if wire.header.status != MessageStatus.CONTINUE:  # type: ignore[union-attr]
            raise Violation(f"§7.1.3: {_where(wire)}: a hole has status CONTINUE")
        try:
            length, flags = bodies.unpack_hole(wire.payload)
        except RemoteProtocolError as exc:
            raise Violation(f"§7.1.3: {_where(wire)}: {exc}") from None
        if length < 0 or flags:
            raise Violation(f"§7.1.3: {_where(wire)}: length {length}, flags {flags}")
    return [w.index for _, w in holes]


@_case(
    "C11.3/1",
    "client: libvirt's procedure sequence (authenticate, CONNECT_OPEN, calls, CONNECT_CLOSE)",
    "§11.3: libvirt's remote program answers only AUTH_LIST, CONNECT_SUPPORTS_FEATURE and the "
    "authentication steps before CONNECT_OPEN, and nothing after CONNECT_CLOSE",
    "CONNECT_OPEN before any other call; no call after CONNECT_CLOSE",
)
def _sequence(view: _View) -> list[int]:
    calls = [e for e in view.exchanges if e.call.header.prog == LIBVIRT_PROGRAM]  # type: ignore[union-attr]
    if not calls:
        raise NotApplicable("no call of libvirt's remote program")
    opened = closed = None
    for ex in calls:
        proc = ex.call.header.proc  # type: ignore[union-attr]
        if closed is not None:
            raise Violation(f"§11.3: {_where(ex.call)} after CONNECT_CLOSE (frame {closed})")
        if proc == CONNECT_OPEN:
            opened = ex.call.index
        elif proc == CONNECT_CLOSE:
            closed = ex.call.index
        elif opened is None and proc not in PRE_OPEN:
            raise Violation(f"§11.3: {_where(ex.call)} before CONNECT_OPEN")
    return [e.call.index for e in calls]


@_case(
    "C11.3/2",
    "client: the connection ends with CONNECT_CLOSE",
    "§11.3, §3.5: a libvirt client SHOULD close its connection with CONNECT_CLOSE (virsh and "
    "libvirt-python do) before ending its input",
    "the last call is CONNECT_CLOSE, answered before the client closes",
    level="SHOULD",
)
def _close(view: _View) -> list[int]:
    calls = [e for e in view.exchanges if e.call.header.prog == LIBVIRT_PROGRAM]  # type: ignore[union-attr]
    if not calls:
        raise NotApplicable("no call of libvirt's remote program")
    last = calls[-1]
    if last.call.header.proc != CONNECT_CLOSE:  # type: ignore[union-attr]
        raise Violation(f"§11.3: the last call is {_where(last.call)}, not CONNECT_CLOSE")
    return [last.call.index] + ([last.reply.index] if last.reply else [])


def judge(
    session: Session, reg: Registry | None = None, cases: Sequence[Case] | None = None
) -> list[tuple[Result, list[int]]]:
    """Each client case's result on ``session`` with the frame numbers it looked at."""
    view = _View(session, reg if reg is not None else registry())
    out = []
    for item in cases if cases is not None else CLIENT_CASES:
        check = _CHECKS[item.id]
        started = time.monotonic()
        evidence: list[int] = []
        try:
            evidence = check(view)
            outcome, detail = "pass", ""
        except NotApplicable as exc:
            outcome, detail = "skip", str(exc)
        except Deviation as exc:
            outcome, detail = "deviation", str(exc)
        except Violation as exc:
            outcome, detail = "fail", str(exc)
        if session.truncated and outcome == "pass":
            detail = f"judged on the first {SESSION_MAX} bytes of the session"
        if not evidence:
            evidence = [int(n) for n in _numbers_in(detail)]
        out.append((Result(item, outcome, detail, time.monotonic() - started), evidence))
    return out


def _numbers_in(text: str) -> list[str]:
    import re

    return re.findall(r"frame (\d+)", text)

"""Fuzzing a live server over a socket (``xdrstream fuzz --target ADDR``).

Each case is a list of client frames, a valid seed session's client side (canonical
``restore.x`` conversations and the libvirt captures, :mod:`xdrstream.fuzz.corpus`)
mutated by :class:`~xdrstream.fuzz.mutators.Mutator`. It goes over a fresh connection:
all frames are sent, the answers are read until the server falls quiet, then the write
side is shut down (end of input, spec.md §3.5) and the rest is read until the server
closes. The server must close within ``timeout`` of its last byte. Findings:

* ``crash`` -- the server process started with ``spawn`` exited, or the target no longer
  accepts connections;
* ``hang`` -- neither an answer nor a close within ``timeout``;
* ``violation`` -- our client :class:`Connection`, following the conversation (our frames,
  as our own server engine decodes them, mirrored as client sends; see :func:`judge`),
  raises RemoteProtocolError on the server's bytes;
* ``growth`` -- the spawned process's RSS or open file descriptors keep growing.

Each finding is re-run on its own (also the few cases before it: a crash can show a case
late) and minimised (frames removed while the finding persists), then saved as a trace
(:mod:`xdrstream.fuzz.trace`) that :func:`replay` runs again. A hang or violation that does
not happen again is listed in ``Summary.unconfirmed`` instead (timing on a loaded machine).
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from xdrstream.fuzz import corpus, trace
from xdrstream.fuzz.harnesses import protocol_schemas
from xdrstream.fuzz.mutators import Mutator, split_frames
from xdrstream.protocol import (
    NEED_DATA,
    Connection,
    LocalProtocolError,
    ProtocolError,
    Registry,
    RemoteProtocolError,
    Role,
    bodies,
    programs_from_schema,
)
from xdrstream.protocol.bodies import V1Op
from xdrstream.protocol.events import (
    Call,
    Event,
    ExchangeEvent,
    KeepalivePing,
    KeepalivePong,
    StreamAbort,
    StreamData,
    StreamFinish,
    StreamHole,
    StreamRead,
)
from xdrstream.protocol.framing import (
    KEEPALIVE_PING,
    KEEPALIVE_PROGRAM,
    LEN_SIZE,
    MIN_FRAME,
    MessageStatus,
    MessageType,
    parse_header,
)

__all__ = [
    "Finding",
    "LiveFuzzer",
    "Outcome",
    "Summary",
    "Target",
    "judge",
    "parse_address",
    "replay",
]

READ_CAP = 16 << 20  # answers read per case at most (a download may be long)


def parse_address(text: str) -> tuple[int, Any]:
    """``unix:PATH``, ``tcp:HOST:PORT`` or ``HOST:PORT`` -> (family, sockaddr)."""
    if text.startswith("unix:"):
        return socket.AF_UNIX, text[5:]
    rest = text[4:] if text.startswith("tcp:") else text
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {text!r}: use unix:PATH, tcp:HOST:PORT or HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


@dataclass
class Outcome:
    kind: str  # "ok" | "crash" | "hang" | "violation"
    detail: str = ""
    answers: bytes = b""


class Target:
    """Where cases go; optionally a process we start (``spawn``) and watch."""

    def __init__(self, address: str, spawn: str | None = None, timeout: float = 1.0) -> None:
        self.address = address
        self.family, self.sockaddr = parse_address(address)
        self.spawn = spawn
        self.timeout = timeout
        # Silence after which the answers are taken as complete and end of input is sent.
        self.quiet = min(0.02, timeout / 10)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.spawn is not None and (self.process is None or self.process.poll() is not None):
            if self.family == socket.AF_UNIX:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.sockaddr)
            self.process = subprocess.Popen(
                shlex.split(self.spawn), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        # A process we start may take a while to listen; a given address must answer now.
        deadline = time.monotonic() + (15 if self.spawn is not None else 0)
        while not self.reachable():
            if self.exited() is not None or time.monotonic() > deadline:
                raise ConnectionError(f"target {self.address} does not accept connections")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def exited(self) -> int | None:
        """Exit status of the spawned process, None while it runs (or if none)."""
        return None if self.process is None else self.process.poll()

    def connect(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.sockaddr)
        except OSError:
            sock.close()
            raise
        return sock

    def reachable(self) -> bool:
        try:
            self.connect().close()
        except OSError:
            return False
        return True

    def resources(self) -> tuple[int, int] | None:
        """(RSS bytes, open fds) of the spawned process (Linux /proc), None if unknown."""
        if self.process is None or self.exited() is not None:
            return None
        pid = self.process.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next(
                int(line.split()[1]) * 1024
                for line in status.splitlines()
                if line.startswith("VmRSS:")
            )
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration, ValueError):
            return None
        return rss, fds


def run_case(target: Target, frames: Sequence[bytes], settle: float = 0.0) -> Outcome:
    """Send ``frames`` on a fresh connection, read the answers until the server is quiet
    (``target.quiet``), half-close, read until the server closes (``target.timeout``).

    ``settle``: seconds to give a spawned process that may be dying (its sockets close a
    moment before it exits) before the case counts as survived; the campaign uses 0 and
    re-checks findings, replays and minimisation use a small value."""
    try:
        sock = target.connect()
    except OSError as exc:
        return _dead(target, f"cannot connect: {exc}")
    answers = bytearray()
    with sock:
        deadline = time.monotonic() + 20 * target.timeout
        with contextlib.suppress(OSError):  # the server may close early (bad input)
            for frame in frames:
                sock.sendall(frame)
        # Let the server answer before it sees end of input: at end of input it may
        # abandon exchanges in progress (spec.md §3.5).
        sock.settimeout(target.quiet)
        state = _read(sock, answers, deadline)
        if state is False:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            sock.settimeout(target.timeout)
            state = _read(sock, answers, deadline)
        closed = state is True
    if settle and target.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            target.process.wait(settle)
    if target.exited() is not None or not target.reachable():
        if target.process is not None:  # it may still be on its way out
            with contextlib.suppress(subprocess.TimeoutExpired):
                target.process.wait(1)
        return _dead(target, "", bytes(answers))
    if not closed and len(answers) < READ_CAP:
        what = "no answer" if not answers else f"no close after {len(answers)} bytes"
        return Outcome("hang", f"{what} within {target.timeout}s", bytes(answers))
    problem = judge(frames, bytes(answers), complete=closed)
    if problem is not None:
        return Outcome("violation", problem, bytes(answers))
    return Outcome("ok", "", bytes(answers))


def _read(sock: socket.socket, answers: bytearray, deadline: float) -> bool | None:
    """Read answers: True when the peer closed (or reset: it may give up on bad input),
    False after the socket's timeout of silence, None at the deadline or READ_CAP."""
    while len(answers) < READ_CAP and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            return True
        if not data:
            return True
        answers += data
    return None


def _dead(target: Target, detail: str, answers: bytes = b"") -> Outcome:
    status = target.exited()
    if status is not None:
        return Outcome("crash", f"server process exited with status {status}", answers)
    return Outcome("crash", detail or "target stopped accepting connections", answers)


_REGISTRY: Registry | None = None


def use_registry(registry: Registry | None) -> None:
    """Judge answers (and read our frames) with ``registry``'s programs, e.g. libvirt's
    whole remote program (:func:`xdrstream.fuzz.libvirt.judge_registry`); None: back to
    the built-in schemas."""
    global _REGISTRY
    _REGISTRY = registry


def _registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry(p for s in protocol_schemas() for p in programs_from_schema(s))
    return _REGISTRY


def client_event(frame: bytes) -> Event | None:
    """The client event that ``frame`` (sent by a client) carries, decoded without state;
    None if the frame is not a valid client frame for our programs."""
    if len(frame) < MIN_FRAME:
        return None
    try:
        header = parse_header(frame, LEN_SIZE)
    except ProtocolError:
        return None
    payload = memoryview(frame)[MIN_FRAME:]
    mtype, status, serial = header.type, header.status, header.serial
    try:
        if mtype is MessageType.MESSAGE and header.prog == KEEPALIVE_PROGRAM and not payload:
            return KeepalivePing() if header.proc == KEEPALIVE_PING else KeepalivePong()
        if mtype is MessageType.CALL and status is MessageStatus.OK:
            proc = _registry().lookup(header.prog, header.vers, header.proc)
            if proc is None:
                return None
            args = proc.arg.unpack(payload) if proc.arg is not None else None
            if proc.arg is None and payload:
                return None
            return Call(serial, header.prog, header.vers, header.proc, args)
        if mtype is MessageType.CALL and status is MessageStatus.CONTINUE:
            stream, op, arg = bodies.unpack_v1_call(payload)
            by_op: dict[int, Callable[[], Event]] = {
                V1Op.DATA: lambda: StreamData(stream, bytes(arg)),  # type: ignore[arg-type]
                V1Op.HOLE: lambda: StreamHole(stream, *arg),  # type: ignore[misc]
                V1Op.FINISH: lambda: StreamFinish(stream),
                V1Op.ABORT: lambda: StreamAbort(stream),
                V1Op.READ: lambda: StreamRead(stream, arg),  # type: ignore[arg-type]
            }
            return by_op[op]()
        if mtype is MessageType.STREAM_HOLE and status is MessageStatus.CONTINUE:
            return StreamHole(serial, *bodies.unpack_hole(payload))
        if mtype is MessageType.STREAM and not (status is not MessageStatus.CONTINUE and payload):
            if status is MessageStatus.CONTINUE:
                return StreamData(serial, bytes(payload)) if payload else None
            return StreamFinish(serial) if status is MessageStatus.OK else StreamAbort(serial)
    except Exception:  # the codec's DecodeError or bodies' RemoteProtocolError: invalid
        return None
    return None


def judge(sent: Sequence[bytes], answers: bytes, complete: bool = True) -> str | None:
    """Why the server's ``answers`` break the protocol given what we ``sent``, or None.

    A client engine follows the conversation: each of our frames (decoded on its own,
    :func:`client_event`) is replayed as a client send as early as the client's state
    allows (in order within its exchange), and the server's frames are fed to it in
    between. A
    RemoteProtocolError of the client is a violation. Judging stops (None) at the first of
    our frames that the client cannot send the same way: invalid, unknown procedure, or a
    V1 stream call whose serial differs from what the client would choose; and at a server
    frame refused by the state table (§9) of an exchange that still has a frame of ours
    the client could not send yet. The server had that frame from the start (all are sent
    before any answer is read) and may have answered it where the client was not allowed
    to send it: libvirtd 9.0 finishes a download at a ``StreamFinish`` that arrives before
    its end of data and confirms it with ``STREAM/OK`` (``daemonStreamEvent`` in
    remote_daemon_stream.c processes a queued finish or abort at once), which our client,
    still OPEN, refuses.
    """
    client = Connection(Role.CLIENT, _registry())
    frames, rest = split_frames(answers)
    pending = list(sent)
    try:
        for frame in frames:
            # Exchanges interleave freely (spec.md §4.7): only a blocked frame of the same
            # exchange (serial) holds a later one back.
            blocked: set[int] = set()
            for own in list(pending):
                serial = _exchange_serial(own)
                if serial in blocked:
                    continue
                mirrored = _mirror(client, own)
                if mirrored is None:
                    return None  # our own side left the protocol: nothing more to judge
                if mirrored:
                    pending.remove(own)
                else:
                    blocked.add(serial)
            try:
                client.receive_data(frame)
                while (event := client.next_event()) is not NEED_DATA:
                    if isinstance(event, StreamData):
                        client.stream_consumed(event.serial, len(event.data))
            except RemoteProtocolError as exc:
                if exc.section.startswith("§9") and _frame_serial(frame) in blocked:
                    return None  # an answer to a frame of ours that came too early
                raise
        if complete and rest:
            client.receive_data(rest)
            client.receive_data(b"")
            client.next_event()
    except RemoteProtocolError as exc:
        return f"server answer rejected by the client engine: {exc}"
    return None


def _exchange_serial(frame: bytes) -> int:
    """The exchange a client frame belongs to: the stream of a V1 stream call, else the
    header serial (keepalives: -1)."""
    event = client_event(frame)
    if not isinstance(event, ExchangeEvent):
        return -1
    return event.serial


def _frame_serial(frame: bytes) -> int:
    """The header serial of a whole frame (the fifth header word, after the length)."""
    return int.from_bytes(frame[LEN_SIZE + 16 : LEN_SIZE + 20], "big")


_STREAM_EVENTS = (StreamData, StreamHole, StreamFinish, StreamAbort, StreamRead)


def _mirror(client: Connection, frame: bytes) -> bool | None:
    """Replay our sent ``frame`` on the client engine: True if done, False if not allowed
    yet, None if it cannot be replayed at all."""
    event = client_event(frame)
    if event is None:
        return None
    if isinstance(event, Call):
        if client.stream_info(event.serial) is not None:
            return None  # serial in use: the server must reject it
        for _ in range(64):  # keep the serial counter in step (V1 stream calls use it)
            if client.next_serial() >= event.serial:
                break
    elif isinstance(event, _STREAM_EVENTS) and client.stream_info(event.serial) is None:
        return None  # a stream the client never opened: the server must reject it
    try:
        data = client.send(event)
    except LocalProtocolError:
        return False
    if data[:MIN_FRAME] != frame[:MIN_FRAME]:
        return None  # e.g. another V1 serial: the answers would not match
    return True


@dataclass
class Finding:
    kind: str
    detail: str
    frames: list[bytes]
    answers: bytes
    path: Path | None = None


@dataclass
class Summary:
    execs: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    states: set[tuple[int, int, int]] = field(default_factory=set)
    unconfirmed: list[Finding] = field(default_factory=list)  # did not reproduce

    @property
    def execs_per_second(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0


def save(finding: Finding, directory: Path, index: int, meta: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"finding-{index:03d}-{finding.kind}.jsonl"
    answers, _rest = split_frames(finding.answers)
    frames = [(Role.CLIENT, f) for f in finding.frames] + [(Role.SERVER, f) for f in answers]
    trace.dump(path, frames, {"kind": finding.kind, "detail": finding.detail, **meta})
    finding.path = path
    return path


def replay(target: Target, path: Path) -> Outcome:
    """Send the client frames of a saved trace again (the server's are not replayed)."""
    frames = [data for role, data in trace.load(path) if role is Role.CLIENT]
    return run_case(target, frames, settle=0.25)


class LiveFuzzer:
    """A campaign against one target (see the module docstring)."""

    def __init__(
        self,
        target: Target,
        *,
        seed: int = 0,
        out: Path | None = None,
        status: TextIO | None = None,
        seeds: Sequence[Sequence[bytes]] | None = None,
        minimize_runs: int = 48,
        growth_check_every: int = 200,
        pace: float = 0.0,
    ) -> None:
        self.target = target
        self.seed = seed
        self.rng = random.Random(seed)
        self.out = out
        self.status = status
        self.mutator = Mutator(list(protocol_schemas()))
        if seeds is None:
            sessions = corpus.canonical_sessions() + corpus.capture_sessions()
            seeds = [[f for role, f in s if role is Role.CLIENT] for s in sessions]
        self.seeds = [list(s) for s in seeds if s]
        self.minimize_runs = minimize_runs
        self.pace = pace  # seconds between cases (0: as fast as the target answers)
        self.growth_check_every = growth_check_every
        self.summary = Summary()
        self._signatures: set[tuple[str, str]] = set()
        self._recent: list[list[bytes]] = []  # the last cases, newest last

    def case(self) -> list[bytes]:
        frames = list(self.rng.choice(self.seeds))
        for _ in range(self.rng.choice([0, 1, 1, 2, 3])):
            frames = self.mutator.mutate_session(frames, self.rng)
        return frames

    def _record_states(self, answers: bytes) -> None:
        frames, _rest = split_frames(answers)
        for frame in frames:
            self.summary.states.add(
                (int.from_bytes(frame[12:16], "big"), frame[19], frame[27])  # proc, type, status
            )

    def run(self, duration: float, max_findings: int = 10) -> Summary:
        self.target.start()
        start = time.monotonic()
        last_status = 0.0
        baseline: tuple[int, int] | None = None
        try:
            while time.monotonic() - start < duration:
                frames = self.case()
                self._recent = [*self._recent[-3:], frames]
                outcome = run_case(self.target, frames)
                self.summary.execs += 1
                self._record_states(outcome.answers)
                if outcome.kind != "ok":
                    self._found(outcome, frames)
                    if len(self.summary.findings) >= max_findings:
                        break
                    if not self._restart():
                        break
                baseline = self._check_growth(baseline, frames)
                if len(self.summary.findings) >= max_findings:
                    break
                if self.pace:
                    time.sleep(self.pace)
                now = time.monotonic()
                if self.status is not None and now - last_status >= 1:
                    last_status = now
                    self._print_status(now - start)
        finally:
            self.summary.seconds = time.monotonic() - start
            self.target.stop()
        if self.status is not None:
            self._print_status(self.summary.seconds)
            self.status.write("\n")
        return self.summary

    def _print_status(self, elapsed: float) -> None:
        assert self.status is not None
        s = self.summary
        rate = s.execs / elapsed if elapsed else 0.0
        self.status.write(
            f"\r[{elapsed:6.1f}s] {s.execs} execs ({rate:.0f}/s)  findings: "
            f"{len(s.findings)}  states: {len(s.states)} "
        )
        self.status.flush()

    def _restart(self) -> bool:
        if self.target.spawn is not None:
            self.target.stop()
            self.target.start()
            return True
        return self.target.reachable()

    def _check_growth(
        self, baseline: tuple[int, int] | None, frames: list[bytes]
    ) -> tuple[int, int] | None:
        if self.summary.execs % self.growth_check_every:
            return baseline
        now = self.target.resources()
        if now is None:
            return baseline
        if baseline is None:
            return now
        rss, fds = now
        if rss > 2 * baseline[0] + (64 << 20) or fds > baseline[1] + 64:
            detail = f"RSS {baseline[0]} -> {rss} bytes, fds {baseline[1]} -> {fds}"
            self._found(Outcome("growth", detail), frames, minimize=False)
            return now
        return baseline

    def _check(self, frames: list[bytes]) -> Outcome:
        """Run one case on a live target and let a dying process finish dying, so that
        a crash is not blamed on the next case (the process may exit a moment after our
        connection sees the close)."""
        if self.target.spawn is not None and self.target.exited() is not None:
            self.target.stop()
            self.target.start()
        return run_case(self.target, frames, settle=0.1)

    def _reproduces(self, kind: str, frames: list[bytes]) -> bool:
        return self._check(frames).kind == kind

    def minimize(self, kind: str, frames: list[bytes]) -> list[bytes]:
        """Drop frames (halves, then single frames) while the finding persists."""
        runs = 0
        chunk = max(1, len(frames) // 2)
        while chunk >= 1 and runs < self.minimize_runs:
            i = 0
            changed = False
            while i < len(frames) and runs < self.minimize_runs:
                candidate = frames[:i] + frames[i + chunk :]
                runs += 1
                if candidate and self._reproduces(kind, candidate):
                    frames = candidate
                    changed = True
                else:
                    i += chunk
            if not changed:
                chunk //= 2
        return frames

    def _found(self, outcome: Outcome, frames: list[bytes], minimize: bool = True) -> None:
        detail = "" if outcome.kind == "growth" else outcome.detail.split(":")[0]
        signature = (outcome.kind, detail)
        if signature in self._signatures:
            return
        self._signatures.add(signature)
        confirmed = not minimize
        if minimize:
            # The culprit may be an earlier case whose effect showed late: try them too.
            for candidate in [frames, *reversed(self._recent[:-1])]:
                if self._reproduces(outcome.kind, candidate):
                    frames = self.minimize(outcome.kind, candidate)
                    final = self._check(frames)
                    if final.kind == outcome.kind:
                        outcome, confirmed = final, True
                    break
        if not confirmed:
            outcome.detail += " (not reproduced on replay)"
            if outcome.kind == "crash" and self.target.spawn is None:
                outcome.detail += (
                    "; the target is not ours to restart: any recent case may be the cause"
                )
            if outcome.kind in ("hang", "violation"):
                # Timing (a loaded machine, a slow server) without a reproducer: noted,
                # not counted; a crash is evidence on its own (the process is gone).
                self.summary.unconfirmed.append(
                    Finding(outcome.kind, outcome.detail, frames, outcome.answers)
                )
                return
        final_signature = (outcome.kind, outcome.detail.split(":")[0])
        if final_signature != signature and final_signature in self._signatures:
            return
        self._signatures.add(final_signature)
        finding = Finding(outcome.kind, outcome.detail, frames, outcome.answers)
        if self.out is not None:
            meta = {"seed": self.seed, "target": self.target.address}
            save(finding, self.out, len(self.summary.findings) + 1, meta)
        self.summary.findings.append(finding)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``2m``, ``1h``, ``1.5s``, ``20ms`` -> seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    suffix = next((u for u in units if text.endswith(u) and text[: -len(u)]), "")
    scale = units.get(suffix, 1)
    number = text[: len(text) - len(suffix)]
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"duration {text!r}: use e.g. 60s, 2m, 1h") from None
    if value <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return value


def main_campaign(
    target: str,
    duration: float,
    *,
    seed: int = 0,
    out: Path | None = None,
    spawn: str | None = None,
    timeout: float = 1.0,
    max_findings: int = 10,
    pace: float = 0.0,
    status: TextIO | None = sys.stderr,
    report: Callable[[str], None] = print,
    seeds: Sequence[Sequence[bytes]] | None = None,
) -> int:
    """Run a campaign and print its summary; 0 = no finding, 1 = findings.  ``seeds``:
    client sessions to mutate instead of the corpus (e.g. one procedure's)."""
    fuzzer = LiveFuzzer(
        Target(target, spawn, timeout), seed=seed, out=out, status=status, pace=pace, seeds=seeds
    )
    summary = fuzzer.run(duration, max_findings)
    report(
        f"{summary.execs} execs in {summary.seconds:.1f}s ({summary.execs_per_second:.0f}/s), "
        f"{len(summary.states)} distinct answers, {len(summary.findings)} findings"
    )
    for finding in summary.findings:
        where = f" -> {finding.path}" if finding.path else ""
        report(f"  {finding.kind}: {finding.detail} ({len(finding.frames)} frames){where}")
    for finding in summary.unconfirmed:
        report(f"  unconfirmed {finding.kind}: {finding.detail}")
    return 1 if summary.findings else 0

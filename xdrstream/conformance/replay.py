"""Replaying traces: against a server under test, or as a server for a client under test.

*Against a server* (:func:`replay`): the trace's client frames are sent as recorded, each
one only after the server has sent what preceded it in the trace; what the server sends
back is compared with the recorded server side, field by field, after normalising both
sides (:func:`normalise`):

* serials are renumbered by order of first appearance (so a client that counts from 100
  matches a trace that counted from 0);
* consecutive non-empty ``STREAM/CONTINUE`` frames of one exchange and direction become one
  data step compared by total length and SHA-256 (chunk boundaries carry no meaning,
  spec.md §7.1.2);
* error bodies (``REPLY/ERROR``, ``STREAM/ERROR`` with a body) are compared by code and
  domain only; every other payload exactly;
* keepalive messages are left out (their timing is free, spec.md §5).

The server may close (or reset) the connection only where the trace records its close,
that is once it has sent every frame the trace records before that close; a trace without
a server close expects the connection to stay open, watched for ``CLOSE_GRACE`` seconds
after the last recorded frame. Any other close fails the replay with "the server closed
the connection after frame N; the trace expects ..." (so a saved fuzz finding whose server
crashes does not pass).

*For a client* (:class:`TraceServer`, ``xdrstream conformance serve``): each connection's
first call selects the trace whose first client frame has the same program, procedure and
arguments; the server side of that trace is played (serials mapped to the client's), and
the client's frames are compared with the recorded client side the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from xdrstream.conformance.catalogue import Context
from xdrstream.conformance.peer import Closed, Peer, Silence, Violation, frame_bytes
from xdrstream.conformance.trace import C2S, S2C, Trace, TraceError, TraceFrame, read
from xdrstream.protocol import bodies
from xdrstream.protocol.framing import (
    KEEPALIVE_PROGRAM,
    LEN_SIZE,
    MessageStatus,
    MessageType,
    parse_header,
)
from xdrstream.transport import address as addresses

__all__ = [
    "ReplayResult",
    "Step",
    "TraceServer",
    "committed_traces",
    "normalise",
    "replay",
    "replay_file",
]


@dataclass(frozen=True)
class Step:
    """One normalised step of one side."""

    direction: str
    prog: int
    vers: int
    proc: int
    type: int
    status: int
    serial: int  # renumbered
    payload: tuple[Any, ...]

    def __str__(self) -> str:
        try:
            kind = f"{MessageType(self.type).name}/{MessageStatus(self.status).name}"
        except ValueError:
            kind = f"type {self.type}/status {self.status}"
        what = self.payload[0]
        if what == "data" and len(self.payload) == 2:
            body = "any amount of data"
        elif what == "data":
            body = f"{self.payload[1]} data bytes sha256 {self.payload[2][:12]}"
        elif what == "error":
            body = f"error code {self.payload[1]} domain {self.payload[2]}"
        elif what == "any":
            body = "any payload"
        else:
            body = f"{len(self.payload[1])} payload bytes"
        return f"{self.direction} {kind} proc {self.proc} serial#{self.serial} {body}"


def _is_data(mtype: int, status: int, payload: bytes) -> bool:
    return mtype == MessageType.STREAM and status == MessageStatus.CONTINUE and bool(payload)


_HEADER_KEYS = {"prog": "prog", "vers": "vers", "proc": "proc", "type": "type",
                "status": "status"}  # fmt: skip
ANY_SERIAL = -1
ANY_DATA: tuple[Any, ...] = ("data", "any")
#: Seconds a replay watches, after the last recorded frame, for a close the trace does not
#: record (a peer that crashes on the last frame closes a moment after it).
CLOSE_GRACE = 1.0


def normalise(frames: Sequence[tuple[str, bytes] | tuple[str, bytes, Any]]) -> list[Step]:
    """The steps of ``(direction, frame bytes[, expect])`` (see the module docstring).
    ``expect`` (a trace frame's annotation) may loosen a step: ``"serial": "any"``,
    ``"payload": "any"`` (for data: any amount), ``"payload": "sha256"`` (the default for
    data anyway)."""
    serials: dict[int, int] = {}
    steps: list[Step] = []
    data: dict[int, Any] = {}  # index in steps -> running sha256 of a data step
    for item in frames:
        direction, raw = item[0], item[1]
        expect: Any = item[2] if len(item) > 2 else None
        if len(raw) < 28:
            continue
        header = parse_header(raw, LEN_SIZE)
        if header.prog == KEEPALIVE_PROGRAM:
            continue
        if expect is not None:  # annotated header fields stand for the recorded ones
            fields = {k: int(v) for k, v in expect.items() if k in _HEADER_KEYS}
            header = header._replace(**{_HEADER_KEYS[k]: v for k, v in fields.items()})
        payload = raw[28:]
        serial = serials.setdefault(header.serial, len(serials))
        if expect is not None and expect.get("serial") == "any":
            serial = ANY_SERIAL
        last = steps[-1] if steps else None
        loose = expect is not None and expect.get("payload") == "any"
        if _is_data(header.type, header.status, payload) and (
            loose or (last is not None and last.payload == ANY_DATA and last.serial == serial)
        ):
            if not (last is not None and last.payload == ANY_DATA and last.serial == serial
                    and last.direction == direction):  # fmt: skip
                steps.append(Step(direction, *header[:4], header.status, serial, ANY_DATA))
            continue
        if _is_data(header.type, header.status, payload):
            if (
                last is not None
                and last.payload[0] == "data"
                and last.direction == direction
                and last.serial == serial
            ):
                digest = data[len(steps) - 1]
                digest.update(payload)
                steps[-1] = Step(
                    direction, *header[:4], header.status, serial,
                    ("data", last.payload[1] + len(payload), digest.hexdigest()),
                )  # fmt: skip
                continue
            digest = hashlib.sha256(payload)
            data[len(steps)] = digest
            body: tuple[Any, ...] = ("data", len(payload), digest.hexdigest())
        elif loose:
            body = ("any",)
        elif (
            header.status == MessageStatus.ERROR
            and payload
            and header.type
            in (
                MessageType.REPLY,
                MessageType.STREAM,
            )
        ):
            try:
                error = bodies.unpack_error(payload)
                body = ("error", error.code, error.domain)
            except Exception:
                body = ("exact", bytes(payload))
        else:
            body = ("exact", bytes(payload))
        steps.append(
            Step(direction, header.prog, header.vers, header.proc, int(header.type),
                 int(header.status), serial, body)
        )  # fmt: skip
    return steps


def _progress(frames: Sequence[tuple[str, bytes]], direction: str) -> tuple[int, int]:
    """(non-data frames, data bytes) one direction has sent: a monotone measure of how far a
    side got, independent of how its data was chunked."""
    count = size = 0
    for frame_direction, raw in frames:
        if frame_direction != direction or len(raw) < 28:
            continue
        header = parse_header(raw, LEN_SIZE)
        if header.prog == KEEPALIVE_PROGRAM:
            continue
        if _is_data(header.type, header.status, raw[28:]):
            size += len(raw) - 28
        else:
            count += 1
    return count, size


def _reached(have: tuple[int, int], want: tuple[int, int]) -> bool:
    return have[0] >= want[0] and have[1] >= want[1]


def _matches(want: Step, have: Step) -> bool:
    if want.serial == ANY_SERIAL:
        have = _with(have, serial=ANY_SERIAL)
    if want.payload == ANY_DATA and have.payload[0] == "data":
        have = _with(have, payload=ANY_DATA)
    if want.payload == ("any",):
        have = _with(have, payload=("any",))
    return want == have


def _with(step: Step, **changes: Any) -> Step:
    import dataclasses

    return dataclasses.replace(step, **changes)


def _payload_difference(want: Step, have: Step) -> str:
    """Where two exact payloads part (their steps otherwise print alike), else ""."""
    if want.payload[0] != "exact" or have.payload[0] != "exact":
        return ""
    a, b = want.payload[1], have.payload[1]
    if a == b:
        return ""
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    expected, got = a[at : at + 8].hex(), b[at : at + 8].hex()
    return f" (payload differs at byte {at}: expected {expected}, got {got})"


def compare(expected: list[Step], got: list[Step]) -> str | None:
    """None when equal, else the first difference."""
    for index, (want, have) in enumerate(zip(expected, got, strict=False)):
        if not _matches(want, have):
            return f"step {index + 1}: expected {want}, got {have}{_payload_difference(want, have)}"
    if len(expected) != len(got):
        if len(got) < len(expected):
            return f"step {len(got) + 1}: expected {expected[len(got)]}, got nothing"
        return f"step {len(expected) + 1}: unexpected {got[len(expected)]}"
    return None


@dataclass
class ReplayResult:
    name: str
    ok: bool
    detail: str = ""
    cases: list[str] = field(default_factory=list)
    role: str = "server"  # which side was under test
    skipped: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"trace": self.name, "ok": self.ok, "detail": self.detail, "cases": self.cases,
                "under_test": self.role, "skipped": self.skipped}  # fmt: skip


def _frame_text(frame: TraceFrame) -> str:
    side = "client->server" if frame.direction == C2S else "server->client"
    if frame.close:
        return f"{side} close"
    if frame.partial or len(frame.data) < 28:
        return f"{side} partial frame ({len(frame.data)} bytes)"
    header = parse_header(frame.data, LEN_SIZE)
    try:
        kind = f"{MessageType(header.type).name}/{MessageStatus(header.status).name}"
    except ValueError:
        kind = f"type {header.type}/status {header.status}"
    return f"{side} {kind} proc {header.proc} serial {header.serial} ({len(frame.data)} bytes)"


class _Player:
    """Plays one side of a trace over a :class:`Peer` and collects the other side."""

    def __init__(self, peer: Peer, trace: Trace, we: str) -> None:
        self.peer = peer
        self.trace = trace
        self.we = we
        self.they = S2C if we == C2S else C2S
        self.got: list[tuple[str, bytes]] = []
        self.closed = False
        self.send_failed = False
        self.position = 0  # trace frames played so far (ours sent, theirs awaited)

    def _recorded_before(self, index: int) -> tuple[int, int]:
        """How far the trace says they got before its frame ``index`` (0-based)."""
        theirs = [
            (f.direction, f.data)
            for f in self.trace.frames[:index]
            if f.direction == self.they and not f.close and not f.partial
        ]
        return _progress(theirs, self.they)

    def _close_allowed(self) -> bool:
        """They may close once they sent all the trace records before their recorded close."""
        for index, frame in enumerate(self.trace.frames):
            if frame.close and frame.direction == self.they:
                return _reached(_progress(self.got, self.they), self._recorded_before(index))
        return False

    def _unexpected_close(self) -> Violation:
        """Where they closed (the frames of both sides done by then) and what the trace
        expects instead."""
        have = _progress(self.got, self.they)
        done = 0
        for index, frame in enumerate(self.trace.frames):
            if frame.direction == self.we and index >= self.position:
                break  # ours, not sent yet
            if frame.direction == self.they and (
                frame.close or not _reached(have, self._recorded_before(index + 1))
            ):
                break  # theirs, not received
            done = index + 1
        side = "server" if self.they == S2C else "client"
        if done < len(self.trace.frames):
            expected = f"frame {done + 1} next: {_frame_text(self.trace.frames[done])}"
        else:
            expected = "the connection to stay open (it records no close)"
        return Violation(
            f"the {side} closed the connection after frame {done}; the trace expects {expected}"
        )

    def _receive_until(self, want: tuple[int, int], what: str) -> None:
        while not _reached(_progress(self.got, self.they), want):
            if self.closed:
                raise self._unexpected_close()
            try:
                frame = self.peer.frame(what=what)
            except Closed:
                self.closed = True
                continue
            self.got.append((self.they, frame_bytes(frame)))

    def _expect_open(self) -> None:
        """The trace records no close of theirs: watch a moment for one (a crash)."""
        deadline = time.monotonic() + min(CLOSE_GRACE, self.peer.timeout)
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.peer.frame(timeout=left, what="an unrecorded close")
            except Silence:
                return
            except Closed:
                raise self._unexpected_close() from None
            self.got.append((self.they, frame_bytes(frame)))

    def run(self, serial_map: Callable[[bytes], bytes] | None = None) -> None:
        played: list[tuple[str, bytes]] = []
        for index, frame in enumerate(self.trace.frames):
            self.position = index
            if frame.direction == self.they:
                if not frame.close and not frame.partial:
                    played.append((self.they, frame.data))
                continue
            want = _progress(played, self.they)
            self._receive_until(want, f"the frames before trace line {index + 2}")
            if frame.close:
                self.peer.shutdown_write()
                continue
            data = serial_map(frame.data) if serial_map is not None else frame.data
            if not self.send_failed:
                try:
                    self.peer.send_raw(data)
                except Closed:
                    if not self._close_allowed():
                        raise self._unexpected_close() from None
                    self.send_failed = True
            if not frame.partial:
                played.append((self.we, frame.data))
        self.position = len(self.trace.frames)
        self._receive_until(_progress(played, self.they), "the rest of the recorded session")
        if self.trace.extra.get("client_must_close") and self.we == S2C:
            self._expect_close()
        elif not any(f.close and f.direction == self.they for f in self.trace.frames):
            self._expect_open()
        else:
            with contextlib.suppress(Silence):  # the recorded peer closed: expect it here too
                while not self.closed:
                    try:
                        late = self.peer.frame(what="the connection to close")
                    except Closed:
                        break
                    self.got.append((self.they, frame_bytes(late)))

    def _expect_close(self) -> None:
        """The client case demands that the client closes (after nothing more)."""
        while not self.closed:
            try:
                frame = self.peer.frame(what="the client to close the connection")
            except Closed:
                return
            except Silence:
                raise Violation(
                    f"the client did not close the connection within {self.peer.timeout} s"
                ) from None
            self.got.append((self.they, frame_bytes(frame)))

    def verdict(self) -> str | None:
        expected = normalise(
            [
                (f.direction, f.data, f.expect)
                for f in self.trace.frames
                if f.direction == self.they and not f.close and not f.partial
            ]
        )
        return compare(expected, normalise(self.got))


def replay(trace: Trace, context: Context, name: str = "trace") -> ReplayResult:
    """Replay the client side of ``trace`` against the target; compare its server side."""
    if trace.extra.get("replay") is False:
        note = trace.extra.get("replay_note", "marked not replayable")
        return ReplayResult(name, True, f"skipped: {note}", trace.cases, skipped=True)
    try:
        peer = context.connect()
    except Violation as exc:
        return ReplayResult(name, False, str(exc), trace.cases)
    player = _Player(peer, trace, C2S)
    try:
        player.run()
        difference = player.verdict()
    except Violation as exc:
        so_far = player.verdict()
        difference = str(exc) + (f"; received so far differs at {so_far}" if so_far else "")
    finally:
        context.close_all()
    return ReplayResult(name, difference is None, difference or "", trace.cases)


def replay_file(path: Path, context: Context) -> ReplayResult:
    try:
        trace = read(path)
    except (OSError, TraceError) as exc:
        return ReplayResult(path.name, False, str(exc))
    return replay(trace, context, path.name)


TRACES_PACKAGE = "xdrstream.conformance"


def traces_dir() -> Path:
    return Path(str(resources.files(TRACES_PACKAGE).joinpath("traces")))


def committed_traces(program: str = "restore") -> list[Path]:
    """The committed traces whose program is ``program`` (``restore`` or ``libvirt``)."""
    wanted = "libvirt_remote" if program == "libvirt" else "restore"
    out = []
    for path in sorted(traces_dir().glob("*.jsonl")):
        with contextlib.suppress(OSError, TraceError):
            if wanted in read(path).programs:
                out.append(path)
    return out


# ---- playing the server for a client under test ---------------------------------------------
def _first_call(trace: Trace) -> bytes | None:
    for frame in trace.frames:
        if frame.direction == C2S and not frame.close and not frame.partial:
            return frame.data
    return None


def _call_key(raw: bytes) -> tuple[Any, ...]:
    header = parse_header(raw, LEN_SIZE)
    return (header.prog, header.vers, header.proc, int(header.type), raw[28:])


class TraceServer:
    """Plays the server side of traces for a client under test (module docstring)."""

    def __init__(
        self,
        address: addresses.Address,
        traces: Sequence[Path | tuple[Path, Trace]],
        timeout: float = 10.0,
    ):
        """``traces``: files, or files already read with their traces."""
        self.traces: dict[tuple[Any, ...], tuple[str, Trace]] = {}
        # trace names by the procedure of their first call, for the unknown-call message
        self._by_procedure: dict[tuple[Any, ...], list[str]] = {}
        for item in traces:
            path, trace = item if isinstance(item, tuple) else (item, read(item))
            first = _first_call(trace)
            if first is not None and trace.extra.get("client_testable", True):
                key = _call_key(first)
                self.traces.setdefault(key, (path.name, trace))
                self._by_procedure.setdefault(key[:4], []).append(path.name)
        self.timeout = timeout
        self._listen = address
        self._sock = addresses.listen(address)
        self.address = addresses.bound_address(self._sock, address)
        self.results: list[ReplayResult] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def serve(
        self, count: int | None = None, on_result: Callable[[ReplayResult], Any] | None = None
    ) -> None:
        """Accept connections (``count`` of them, or until closed); each is served in order."""
        served = 0
        while count is None or served < count:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            result = self.serve_connection(sock)
            served += 1
            if on_result is not None:
                on_result(result)

    def start(self) -> TraceServer:
        thread = threading.Thread(target=self.serve, daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def serve_connection(self, sock: socket.socket) -> ReplayResult:
        peer = Peer.from_socket(sock, timeout=self.timeout)
        try:
            try:
                first = peer.frame(what="the client's first call")
            except Closed:
                return self._record(
                    ReplayResult("(none)", False, "the client sent nothing", role="client")
                )
            raw = frame_bytes(first)
            key = _call_key(raw)
            entry = self.traces.get(key)
            if entry is None:
                header = first.header
                names = self._by_procedure.get(key[:4])
                hint = (
                    f"; traces starting with this procedure: {', '.join(names)} (a client "
                    "picks one by sending its first call's arguments exactly, e.g. its image name)"
                    if names
                    else "; no trace starts with this procedure at all"
                )
                return self._record(ReplayResult(
                    "(none)", False,
                    f"no trace starts with proc {header.proc} of program {header.prog:#x} "
                    f"and these arguments{hint}", role="client"))  # fmt: skip
            name, trace = entry
            return self._record(self._play(peer, name, trace, raw))
        finally:
            peer.close()

    def _play(self, peer: Peer, name: str, trace: Trace, first: bytes) -> ReplayResult:
        player = _Player(peer, trace, S2C)
        player.got.append((C2S, first))
        trace_serials: dict[int, int] = {}
        for frame in trace.frames:
            if frame.direction == C2S and not frame.close and len(frame.data) >= 28:
                serial = parse_header(frame.data, LEN_SIZE).serial
                trace_serials.setdefault(serial, len(trace_serials))

        def remap(data: bytes) -> bytes:
            if len(data) < 28:
                return data
            serial = parse_header(data, LEN_SIZE).serial
            index = trace_serials.get(serial)
            client_serials: list[int] = []
            for _direction, raw in player.got:
                value = parse_header(raw, LEN_SIZE).serial
                if value not in client_serials:
                    client_serials.append(value)
            if index is None or index >= len(client_serials):
                return data
            return data[:20] + client_serials[index].to_bytes(4, "big") + data[24:]

        try:
            player.run(remap)
            difference = player.verdict()
        except Violation as exc:
            so_far = player.verdict()
            difference = str(exc) + (f"; received so far differs at {so_far}" if so_far else "")
        return ReplayResult(name, difference is None, difference or "", trace.cases, "client")

    def _record(self, result: ReplayResult) -> ReplayResult:
        with self._lock:
            self.results.append(result)
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for thread in self._threads:
            thread.join(10)
        if self._listen.kind == "unix":
            with contextlib.suppress(OSError):
                Path(self._listen.path).unlink()

    def __enter__(self) -> TraceServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---- output -------------------------------------------------------------------------------------
def print_one(result: ReplayResult, console: Console) -> None:
    mark = "[green]pass[/]" if result.ok else "[bold red]fail[/]"
    cases = ", ".join(result.cases) or "-"
    console.print(f"{mark} {result.name} (cases {cases}) {result.detail}")


def print_results(results: Sequence[ReplayResult], console: Console) -> None:
    table = Table(title="trace replay")
    table.add_column("trace", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("cases / difference", overflow="fold")
    for result in results:
        mark = "[green]pass[/]" if result.ok else "[bold red]fail[/]"
        mark = "[yellow]skip[/]" if result.skipped else mark
        text = ", ".join(result.cases) or "-"
        if result.detail:
            text += f"\n{result.detail}"
        table.add_row(result.name, mark, text)
    console.print(table)
    passed = sum(r.ok for r in results)
    console.print(f"{passed} of {len(results)} traces replayed identically")


def write_json(path: str | Path, results: Sequence[ReplayResult]) -> None:
    document = {
        "results": [r.as_json() for r in results],
        "passed_cases": sorted({c for r in results if r.ok for c in r.cases}),
        "failed_cases": sorted({c for r in results if not r.ok for c in r.cases}),
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

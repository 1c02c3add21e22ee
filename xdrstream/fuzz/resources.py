"""Resource campaigns of the live fuzzer (issue 15 part 5): attacks that cost the client
almost nothing and may cost the server a lot, measured on the server's process from /proc.

* ``idle``: many connections opened and held, nothing sent;
* ``announced``: each connection sends one CALL header announcing a large ECHO argument
  (default the largest payload a frame may carry, ``MAX_PAYLOAD``: a length beyond the
  frame limit is closed at once, §3.4, and would measure nothing) and never the payload (a
  server must not allocate what is announced, spec.md §8.1, §3.6);
* ``unread``: each connection pipelines 64 KiB ECHO calls and never reads a reply.

For each the target's RSS, open descriptors and threads are read before and while the
connections are held, and after they are closed once the server has released them (so the
next attack starts from the same state: otherwise its "before" counts the previous attack's
descriptors still being torn down, and it shows a negative descriptor change); connections
the server closed itself while they were held are counted and shown. *Amplification* is
RSS growth per byte the client sent and
*per-connection cost* RSS growth per connection.  Above the bounds (defaults 64x and
64 KiB, the issue's budget is 16-32 KiB an idle connection) it is a finding with the
figures.  :func:`campaign` runs them; ``xdrstream fuzz --campaign resources`` prints them.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from xdrstream.fuzz.live import Finding, Target
from xdrstream.protocol import schemas
from xdrstream.protocol.framing import (
    MAX_PAYLOAD,
    Header,
    MessageStatus,
    MessageType,
    pack_frame,
    pack_header,
)

_RESTORE = schemas.load("restore")
PROGRAM = int(_RESTORE.constants["XS_RESTORE_PROGRAM"])
VERSION = int(_RESTORE.constants["XS_RESTORE_V1"])
ECHO = int(_RESTORE.constants["XS_PROC_ECHO"])
MAX_AMPLIFICATION = 64.0  # server bytes per client byte
MAX_PER_CONNECTION = 64 * 1024
UNREAD_CAP = 4 << 20  # bytes of unread calls sent per connection at most
RELEASE_TIMEOUT = 10.0  # seconds the server may take to release closed connections' fds
RELEASE_QUIET = 0.5  # ... and for as long as their number keeps falling at least this often


@dataclass(frozen=True)
class Usage:
    rss: int
    fds: int
    threads: int


def usage(pid: int) -> Usage:
    """RSS bytes, open descriptors and threads of ``pid`` (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) * 1024
    return Usage(rss, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"]))


@dataclass(frozen=True)
class Measure:
    attack: str
    connections: int
    sent: int  # client bytes
    before: Usage
    during: Usage
    after: Usage | None = None  # once the server released the closed connections
    closed: int = 0  # connections the server closed while they were held
    announce: int = 0

    @property
    def growth(self) -> int:
        return max(0, self.during.rss - self.before.rss)

    @property
    def amplification(self) -> float:
        return self.growth / self.sent if self.sent else 0.0

    @property
    def per_connection(self) -> float:
        return self.growth / self.connections if self.connections else 0.0

    def line(self) -> str:
        return (
            f"{self.attack}: {self.connections} connections, {self.sent} B sent, RSS "
            f"{self.growth / 2**20:+.1f} MiB ({self.per_connection / 1024:.1f} KiB each, "
            f"{self.amplification:.1f}x the bytes sent), "
            f"fds {self.during.fds - self.before.fds:+d}, "
            f"threads {self.during.threads - self.before.threads:+d}"
            + (f"; the server closed {self.closed} of them" if self.closed else "")
            + (
                f"; fds {self.after.fds - self.before.fds:+d} after closing them"
                if self.after is not None and self.after.fds != self.before.fds
                else ""
            )
        )


def _call(serial: int, payload_len: int) -> bytes:
    header = Header(PROGRAM, VERSION, ECHO, MessageType.CALL, serial, MessageStatus.OK)
    return pack_header(header, payload_len)


def _send(sock: socket.socket, attack: str, announce: int) -> int:
    if attack == "idle":
        return 0
    if attack == "announced":
        data = _call(1, announce)
        sock.sendall(data)
        return len(data)
    payload = struct.pack(">I", 65536) + bytes(65536)
    frame = pack_frame(Header(PROGRAM, VERSION, ECHO, MessageType.CALL, 1, 0), payload)
    sock.setblocking(False)
    sent, serial = 0, 1
    while sent < UNREAD_CAP:
        data = _call(serial, len(payload)) + frame[28:]
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            break
        sent += n
        if n < len(data):
            break  # the server stopped reading (or the window is full): pushed back
        serial += 1
    return sent


ATTACKS = ("idle", "announced", "unread")


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (what it sent before is read and dropped)."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 16):
            pass
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:  # reset
        return True
    return True


def _released(pid: int, fds: int, timeout: float = RELEASE_TIMEOUT) -> Usage:
    """The server's usage once its descriptors are back to ``fds``, or have stopped falling
    for ``RELEASE_QUIET`` s (a server that keeps them: shown as left over), or ``timeout``
    passed: it closes its side of a connection only after it sees ours close."""
    start = time.monotonic()
    now = usage(pid)
    low, low_at = now.fds, start
    while now.fds > fds:
        moment = time.monotonic()
        if moment - start > timeout or moment - low_at > RELEASE_QUIET:
            break
        time.sleep(0.05)
        now = usage(pid)
        if now.fds < low:
            low, low_at = now.fds, time.monotonic()
    return now


def attack(
    target: Target, pid: int, name: str, connections: int, announce: int = MAX_PAYLOAD,
    settle: float = 1.0,
) -> Measure:  # fmt: skip
    """Run one attack with ``connections`` connections held open, measure, close them and
    wait (bounded) for the server to release them."""
    before = usage(pid)
    socks: list[socket.socket] = []
    closed = 0
    try:
        sent = 0
        for _ in range(connections):
            sock = target.connect()
            socks.append(sock)
            sent += _send(sock, name, announce)
        time.sleep(settle)
        during = usage(pid)
        closed = sum(_closed_by_peer(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    after = _released(pid, before.fds)
    return Measure(name, connections, sent, before, during, after, closed, announce)


# Per-connection cost allowed by attack: a connection at rest or holding a refused header
# costs little (issue 15: 16-32 KiB); unread replies may queue up to 1 MiB of output and a
# few calls of input per connection (spec.md §8.5; issue 15: 16 floods <= 64 MiB).
PER_CONNECTION = {"idle": MAX_PER_CONNECTION, "announced": MAX_PER_CONNECTION, "unread": 4 << 20}


def findings(
    measures: list[Measure],
    max_amplification: float = MAX_AMPLIFICATION,
    max_per_connection: int | None = None,
) -> list[Finding]:
    """A finding for each measure above a bound (per connection: ``max_per_connection``
    or :data:`PER_CONNECTION`; amplification beyond that cost), its figures in the detail."""
    out = []
    for m in measures:
        over = []
        per = max_per_connection or PER_CONNECTION.get(m.attack, MAX_PER_CONNECTION)
        if m.sent and m.amplification > max_amplification and m.per_connection > per:
            over.append(f"amplification {m.amplification:.0f}x > {max_amplification:.0f}x")
        if m.per_connection > per:
            over.append(f"{m.per_connection / 1024:.0f} KiB per connection > "
                        f"{per // 1024} KiB")  # fmt: skip
        if over:
            frames = [_call(1, m.announce)] if m.attack == "announced" else []
            out.append(Finding("resources", f"{m.line()}: {'; '.join(over)}", frames, b""))
    return out


def campaign(
    target: Target, pid: int, connections: int = 100, announce: int = MAX_PAYLOAD,
    settle: float = 1.0,
) -> list[Measure]:  # fmt: skip
    """Every attack of :data:`ATTACKS` against ``target`` (process ``pid``)."""
    return [attack(target, pid, name, connections, announce, settle) for name in ATTACKS]

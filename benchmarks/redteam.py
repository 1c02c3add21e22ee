"""Red team (issue 15 part 6): the issue's attacks against a real `xdrstream serve` process
(TCP on loopback), its RSS and threads read from /proc, a legitimate client's PING latency
timed during each attack, and a verdict against the issue's "Done when" bounds.

    python benchmarks/redteam.py [--scale 0.1]     # make redteam

``--restore-only`` skips the storage-pool server (`serve --libvirt-storage`).
``--scale`` shrinks the connection counts (CI runs a small version: tests/test_redteam.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdrstream.protocol.framing import Header, pack_frame, pack_header
from xdrstream.restore.client import Client
from xdrstream.restore.server import PROC_ECHO, PROGRAM, VERSION
from xdrstream.transport.errors import RemoteFailure
from xdrstream.transport.options import Options

MiB = 1 << 20


def proc_status(pid: int) -> tuple[int, int]:
    """(RSS bytes, threads) of ``pid`` from /proc/PID/status."""
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    return rss, threads


class Server:
    def __init__(self, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xdrstream.cli", "serve", "--listen", "tcp:127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(match.group(1))
        self.address = f"tcp:127.0.0.1:{self.port}"

    def status(self) -> tuple[int, int]:
        return proc_status(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ping_latency(address: str) -> float:
    """A restore.x PING; against the storage server only the connect and its first reply
    (an unknown-procedure error) are timed."""
    start = time.monotonic()
    with (
        Client.connect(address, options=Options(timeout=30)) as client,
        contextlib.suppress(RemoteFailure),
    ):
        client.ping()
    return time.monotonic() - start


@dataclass
class Row:
    attack: str
    connections: int
    sent: int
    growth: int
    threads: int
    latency: float
    bound: str
    ok: bool

    def cells(self) -> list[str]:
        per = self.growth / self.connections if self.connections else 0
        return [
            self.attack,
            str(self.connections),
            f"{self.sent} B" if self.sent < 10240 else f"{self.sent / 1024:.0f} KiB",
            f"{self.growth / MiB:+.1f} MiB",
            f"{per / 1024:.1f} KiB",
            str(self.threads),
            f"{self.latency * 1000:.0f} ms",
            f"{'MET' if self.ok else 'MISSED'} ({self.bound})",
        ]


def connect_many(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(sock)
    return socks


def attack(
    server: Server,
    name: str,
    count: int,
    send: Callable[[socket.socket, int], int],
    bound: Callable[[int, int, int, float], tuple[bool, str]],
) -> Row:
    rss0, _ = server.status()
    socks = connect_many(server.port, count)
    try:
        sent = sum(send(sock, i) for i, sock in enumerate(socks))
        time.sleep(1.0)
        latency = ping_latency(server.address)
        rss, threads = server.status()
    finally:
        for sock in socks:
            sock.close()
    ok, text = bound(count, rss - rss0, threads, latency)
    return Row(name, count, sent, rss - rss0, threads, latency, text, ok)


def idle(_sock: socket.socket, _i: int) -> int:
    return 0


def big_header(sock: socket.socket, _i: int) -> int:
    data = pack_header(Header(PROGRAM, VERSION, PROC_ECHO, 0, 1, 0), 32 * MiB)
    sock.sendall(data)
    return len(data)


def unread_echo(sock: socket.socket, _i: int) -> int:
    payload = struct.pack(">I", 65536) + bytes(65536)
    frames = b"".join(
        pack_frame(Header(PROGRAM, VERSION, PROC_ECHO, 0, s, 0), payload) for s in range(1, 400)
    )
    sock.settimeout(0.2)
    sent = 0
    while sent < len(frames):
        try:
            sent += sock.send(frames[sent:])
        except (TimeoutError, BlockingIOError):
            break
    return sent


def within(total: int | None, per: int | None, latency: float | None = None) -> Any:
    def check(count: int, growth: int, _threads: int, lat: float) -> tuple[bool, str]:
        parts, ok = [], True
        if total is not None:
            ok &= growth <= total
            parts.append(f"<= {total // MiB} MiB")
        if per is not None:
            ok &= growth <= per * count
            parts.append(f"<= {per // 1024} KiB each")
        if latency is not None:
            ok &= lat < latency
            parts.append(f"PING < {latency} s")
        return ok, ", ".join(parts)

    return check


def run(scale: float, storage: bool = True) -> list[Row]:
    def n(count: int) -> int:
        return max(2, int(count * scale))

    rows = []
    server = Server()
    try:
        ping_latency(server.address)  # warm up
        for count in (n(100), n(1000)):  # issue 15's "Done when": 100 and 1000 headers
            bound = within(64 * MiB, None, 0.5)
            rows.append(attack(server, "32-MiB frame headers", count, big_header, bound))
        rows.append(attack(server, "idle connections", n(2000), idle, within(None, 32 * 1024)))
        goal = rows[-1].growth <= 16 * 1024 * rows[-1].connections
        rows[-1].bound += f"; goal 16 KiB each {'MET' if goal else 'MISSED'}"
        rows.append(attack(server, "unread-reply floods", 16, unread_echo, within(64 * MiB, None)))
    finally:
        server.stop()
    if not storage:
        return rows
    with tempfile.TemporaryDirectory() as pool:
        # a fresh server per attack: threads freed by one would flatter the next's growth
        for name, count, send, bound in (
            ("storage: idle connections", n(1000), idle, within(64 * MiB, None)),
            ("storage: 32-MiB headers", n(50), big_header, within(64 * MiB, None, 0.5)),
        ):
            server = Server("--libvirt-storage", pool)
            try:
                ping_latency(server.address)
                rows.append(attack(server, name, count, send, bound))
            finally:
                server.stop()
        rows[-2].ok &= rows[-2].threads <= 64
        rows[-2].bound += ", <= 64 threads"
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--restore-only", action="store_true", help="skip the storage-pool server's attacks"
    )
    args = parser.parse_args()
    rows = run(args.scale, storage=not args.restore_only)
    head = ["attack", "connections", "bytes sent", "RSS growth", "per connection", "threads"]
    head += ["PING during", "verdict"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

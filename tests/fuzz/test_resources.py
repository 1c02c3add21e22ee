"""Resource campaigns of the live fuzzer (issue 15 part 5): a deliberately buffering toy
server (it allocates every announced length) is reported with its amplification; our
server, which buffers what arrives and refuses oversized calls from their header, is not."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from xdrstream.fuzz import resources
from xdrstream.fuzz.live import Target

TOY = """
import asyncio, struct, sys

held = []

async def serve(reader, writer):
    head = await reader.readexactly(28)
    (length,) = struct.unpack(">I", head[:4])
    held.append(bytearray(b"\\x01") * (length - 28))  # the announced length, touched
    await reader.read()

async def main():
    server = await asyncio.start_unix_server(serve, sys.argv[1])
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def _start(command: list[str], ready: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert ready in line, line
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(10)


def test_buffering_toy_server_is_reported(tmp_path: Path) -> None:
    script, sock = tmp_path / "toy.py", tmp_path / "toy.sock"
    script.write_text(TOY)
    process = _start([sys.executable, str(script), str(sock)], "ready")
    try:
        target = Target(f"unix:{sock}", timeout=5)
        m = resources.attack(target, process.pid, "announced", 16, announce=4 << 20)
    finally:
        _stop(process)
    [finding] = resources.findings([m])
    assert m.growth >= 16 * (4 << 20) * 0.9  # 64 MiB for 448 bytes sent
    assert "amplification" in finding.detail and "announced: 16 connections" in finding.detail


def test_our_server_has_no_resource_finding(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    command = [sys.executable, "-m", "xdrstream.cli", "serve", "--listen", f"unix:{sock}"]
    process = _start(command, "")
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        target = Target(f"unix:{sock}", timeout=5)
        measures = resources.campaign(target, process.pid, connections=64)
        # a length beyond the frame limit is closed at once (§3.4): counted, and shown
        beyond = resources.attack(
            target, process.pid, "announced", 16, announce=resources.MAX_PAYLOAD + 1
        )
    finally:
        _stop(process)
    assert [m.attack for m in measures] == list(resources.ATTACKS)
    assert resources.findings(measures) == [], [m.line() for m in measures]
    for m in measures:  # each attack's connections, held: none closed, none left over
        assert m.closed == 0 and m.during.fds - m.before.fds == 64, m.line()
        assert m.after is not None and m.after.fds == m.before.fds, m.line()
    assert beyond.closed == 16 and "the server closed 16 of them" in beyond.line()


def test_cli_resources_campaign_reports_the_toy_server(tmp_path: Path) -> None:
    from xdrstream.cli import main

    script, sock = tmp_path / "toy.py", tmp_path / "toy.sock"
    script.write_text(TOY)
    spawn = f"{sys.executable} {script} {sock}"
    code = main([
        "fuzz", "--target", f"unix:{sock}", "--spawn", spawn, "--campaign", "resources",
        "--connections", "8",
    ])  # fmt: skip
    assert code == 1  # 8 x 32 MiB announced: the toy allocates them all

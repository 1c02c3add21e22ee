"""Stream throughput, memory and concurrency of the transport, in one run (issue 4).

    .venv/bin/python benchmarks/streams.py [--size 256M] [--rss-size 4G] [--streams 16]
                                           [--repeat 2] [--quick] [--parts 0,1,1b,2,3]

Every stream is generated in the client process and restored over a Unix socket into a
QEMU stub process, which checks it as QEMU would and computes its SHA-256; the stub's SHA-256
must equal the expected one for every stream. Client, server and stub are separate
processes. `--format real` (the default) streams a RAM-heavy stream in QEMU 7.2's real
format (`qemu_stub.iter_real_format`: a pc-i440fx-7.2 RAM section of normal pages with our
known payload, which real QEMU accepts), checked by the stub's real-format parser
(`endpoints/migration.py`); `--format synthetic` the stub's own synthetic stream.

0. The stub's parse rate: the stream written into a pipe read by the stub process (parse
   and SHA-256) against a plain pipe read (a process reading and discarding), both fed by
   this process (generation included in both), and the parser alone in-process.

1. Throughput: `--size` bytes through each variant (V1 with its pipelining window of 8
   calls) with `xdrstream serve` and `Client.restore`, against a baseline of plain Python
   moving the same bytes client socket -> server -> pipe -> reading process with no
   protocol: the client `sendall`s the same generated sections; the server `recv_into`s a
   reused 1 MiB buffer and `os.write`s it into the pipe of the same stub (same checks, same
   hashing), then sends the stub's verdict back. Throughput is measured in the client from
   connect to the server's verdict (process start-up excluded), best of `--repeat` runs,
   runs interleaved. Targets: V1 >= 60% of the baseline; V2 and V3 >= 90% with the
   real-format check (>= 80% for the synthetic stream).
1b. The CLI end to end (issue 12): `xdrstream restore IMAGE` and `xdrstream save OUT` (each a
   process, `--json`) into a fresh `xdrstream serve`, against the plain relay with its client
   a process too (restore: reads the same file with `readinto` and `sendall`s it; save: the
   relay reads the stub's save pipe into the socket, the client `recv_into`s and writes the
   file, fsyncing it once as `save` does). The CLI runs with its defaults: no client-side
   SHA-256 (README says why), as the baseline hashes nothing on the client side; V2 and V3
   also run with `--sha256` (hashed as the data moves, on a thread of its own), to show
   what the hash costs in the same run. The stub's verdict (restore) or OUT (save, after
   the timed span) is checked against the expected digest in every run. The time is the
   span each client reports: the CLI's JSON `seconds` (open of the stream to the server's
   verdict; for save, to OUT fsynced), the baseline's connect to verdict (save: to its
   fsync). The client process's whole wall time (start-up included) is printed beside it,
   and its CPU includes start-up; a line gives the CLI's start-up alone (an `xdrstream save`
   of the stub's shortest stream: interpreter, imports, schema compile, connect). Targets:
   V2 and V3 >= 0.90 of the baseline, V1 >= 0.75, both directions.
2. Memory: `--rss-size` bytes per variant with a fresh server; the peak RSS of the server
   (VmHWM in /proc/PID/status, read before it stops) and of the client process
   (getrusage ru_maxrss) must each stay under 64 MiB.
3. Concurrency: `--streams` client processes, each restoring `--size` bytes but at most
   128 MiB (or 1/`--streams` of `--concurrent-size`; `--quick`: of `--size`) with its own
   seed, started together (each connects, then waits for a common go); none may lose or mix
   data (every stub's SHA-256 matches its stream's), and the aggregate throughput (all bytes
   / first start to last end) must be >= 90% of the single-stream throughput of the same
   variant. Each stream pays fixed costs (a stub process started, a client connecting):
   small streams measure those (at 16 MiB per stream even the relay reached 0.27 of one
   stream), so the default is what issue 12 compares, 128 MiB per stream: 2 GiB per variant
   with 16 streams, about 4-8 s each at this machine's 300-550 MB/s, under a minute for the
   part. For reference the baseline runs the same way: a threaded plain relay, one stub per
   stream.

Each table also gives the CPU seconds per GiB of the client(s), the server and the stub(s)
(getrusage in the workers; /proc/PID/stat of the server, its reaped stubs as its children's
time; process start-up excluded): where the time goes, and a measure that the machine's
other load disturbs far less than throughput does. `--chunk-size` sets the data bytes per
frame the protocol clients send (default: the transport's, libvirt's 262120).

Prints a markdown table per part, the ratios, MET/MISSED per target; exits 0 either way
(1 only if a stream failed or lost data). The machine's other load shows in the numbers:
compare ratios, not absolute rates.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from xdrstream.endpoints.migration import TARGET_PAGE_SIZE
from xdrstream.endpoints.qemu_stub import (
    MIN_SIZE,
    StreamChecker,
    iter_real_format,
    iter_synthetic,
    real_format_sha256,
    start_stub_restore,
    start_stub_save,
    synthetic_sha256,
)
from xdrstream.endpoints.sink import make_pipe
from xdrstream.restore.commands import parse_size

GIB = 1 << 30
MIB = 1 << 20
VARIANTS = (1, 2, 3)
BASELINE_BUFFER = MIB
CONCURRENT_STREAM = 128 * MIB  # part 3's bytes per stream by default (issue 12's comparison)
STEP_TIMEOUT = 600.0

TARGET_RATIO = {1: 0.60, 2: 0.80, 3: 0.80}  # of the baseline's throughput
TARGET_RATIO_REAL = {1: 0.60, 2: 0.90, 3: 0.90}  # the same with the real-format check
FORMAT = ["real"]  # the stream format of this run (--format), passed on to the workers


def stream(fmt: str, size: int, seed: int) -> Iterator[memoryview]:
    """The stream of about `size` bytes (exactly, for the synthetic format)."""
    if fmt == "real":
        return iter_real_format(_ram_for(size), seed)
    return iter_synthetic(size, seed)


def stream_sha256(fmt: str, size: int, seed: int) -> str:
    if fmt == "real":
        return real_format_sha256(_ram_for(size), seed)
    return synthetic_sha256(size, seed)


def _ram_for(size: int) -> int:
    """RAM bytes whose real-format stream has about `size` bytes (8 header bytes a page)."""
    return max(1, size // (TARGET_PAGE_SIZE + 8)) * TARGET_PAGE_SIZE


TARGET_CLI = {1: 0.75, 2: 0.90, 3: 0.90}  # `xdrstream restore`/`save` vs the relay (issue 12)
SHA256_VARIANTS = (2, 3)  # also run with --sha256: the client hash's cost, same run
TARGET_RSS = 64 * MIB  # peak RSS of client and server each
TARGET_CONCURRENT = 0.90  # aggregate of N streams / single stream (issue 12)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(MIB)
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            digest.update(memoryview(buffer)[:count])
    return digest.hexdigest()


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a running process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime) / tick, (cutime + cstime) / tick


def vmhwm_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


# --- workers (child processes of the benchmark) ---------------------------------------------


def _wait_for_go() -> None:
    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")


def worker_client(args: argparse.Namespace) -> dict[str, Any]:
    """Restore one synthetic stream with the reference client."""
    from xdrstream.restore.client import Client
    from xdrstream.transport.options import Options

    options = Options() if args.chunk_size is None else Options(chunk_size=args.chunk_size)
    cpu = cpu_seconds()
    client = Client.connect(f"unix:{args.connect}", options=options)
    try:
        if args.wait_go:
            _wait_for_go()
        start = time.monotonic()
        result = client.restore(
            stream(args.format, args.size, args.seed), variant=args.variant, name=f"s{args.seed}"
        )
        end = time.monotonic()
    finally:
        client.close()
    return {
        "bytes": result.bytes,
        "start": start,
        "end": end,
        "maxrss": maxrss_bytes(),
        "cpu": cpu_seconds() - cpu,
    }


def worker_baseline_client(args: argparse.Namespace) -> dict[str, Any]:
    """Send one synthetic stream on a plain socket; wait for the server's verdict."""
    cpu = cpu_seconds()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        sock.connect(args.connect)
        if args.wait_go:
            _wait_for_go()
        start = time.monotonic()
        sent = 0
        for view in stream(args.format, args.size, args.seed):
            sock.sendall(view)
            sent += len(view)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    end = time.monotonic()
    verdict = json.loads(reply)
    if not verdict["ok"]:
        raise RuntimeError(f"baseline stream failed: {verdict['error']}")
    return {
        "bytes": sent,
        "start": start,
        "end": end,
        "maxrss": maxrss_bytes(),
        "cpu": cpu_seconds() - cpu,
    }


def worker_baseline_file_client(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI restore's baseline: send FILE on a plain socket, wait for the verdict."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    buffer = bytearray(BASELINE_BUFFER)
    view = memoryview(buffer)
    sent = 0
    with sock, open(args.file, "rb", buffering=0) as source:
        start = time.monotonic()
        sock.connect(args.connect)
        while count := source.readinto(buffer):
            sock.sendall(view[:count])
            sent += count
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    verdict = json.loads(reply)
    if not verdict["ok"]:
        raise RuntimeError(f"baseline stream failed: {verdict['error']}")
    end = time.monotonic()
    return {"bytes": sent, "seconds": end - start, "maxrss": maxrss_bytes(), "cpu": cpu_seconds()}


def worker_baseline_save_client(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI save's baseline: receive into FILE, fsynced as `xdrstream save` does."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    buffer = bytearray(BASELINE_BUFFER)
    view = memoryview(buffer)
    received = 0
    fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with sock:
            start = time.monotonic()
            sock.connect(args.connect)
            while count := sock.recv_into(buffer):
                data = view[:count]
                while data:
                    data = data[os.write(fd, data) :]
                received += count
        os.fsync(fd)
        end = time.monotonic()
    finally:
        os.close(fd)
    seconds = end - start
    return {"bytes": received, "seconds": seconds, "maxrss": maxrss_bytes(), "cpu": cpu_seconds()}


def _baseline_save_relay(conn: socket.socket, lock: threading.Lock, size: int) -> None:
    """One connection: relay a stub's save stream (pipe) into it, then close."""
    with conn:
        endpoint = start_stub_save(size, SAVE_SEED)
        buffer = bytearray(BASELINE_BUFFER)
        view = memoryview(buffer)
        with endpoint:
            while count := os.readv(endpoint.fd, [buffer]):
                conn.sendall(view[:count])
            result = endpoint.wait()
        verdict = {"ok": result.ok, "sha256": result.sha256, "error": result.error}
        with lock:
            print(json.dumps({"endpoint": verdict}), flush=True)


def _baseline_relay(conn: socket.socket, lock: threading.Lock) -> None:
    """One connection: relay it into a stub's pipe, answer with the stub's verdict."""
    with conn:
        endpoint = start_stub_restore()
        buffer = bytearray(BASELINE_BUFFER)
        view = memoryview(buffer)
        with endpoint:
            fd = endpoint.fd
            while count := conn.recv_into(buffer):
                data = view[:count]
                while data:
                    data = data[os.write(fd, data) :]
            result = endpoint.wait()
        verdict = {"ok": result.ok, "sha256": result.sha256, "error": result.error}
        with lock:
            print(json.dumps({"endpoint": verdict}), flush=True)
        conn.sendall(json.dumps(verdict).encode())


def worker_baseline_server(args: argparse.Namespace) -> None:
    """Serve `--connections` connections, a thread each, then report memory and CPU."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.listen)
    listener.listen(args.connections)
    print(json.dumps({"listening": args.listen}), flush=True)
    cpu = cpu_seconds()
    lock = threading.Lock()
    threads = []
    for _ in range(args.connections):
        conn, _ = listener.accept()
        if args.save_size:
            relay: tuple[Any, ...] = (_baseline_save_relay, (conn, lock, args.save_size))
        else:
            relay = (_baseline_relay, (conn, lock))
        thread = threading.Thread(target=relay[0], args=relay[1])
        thread.start()
        threads.append(thread)
    listener.close()
    for thread in threads:
        thread.join()
    report = {
        "done": True,
        "vmhwm": vmhwm_bytes(os.getpid()),
        "cpu": cpu_seconds() - cpu,
        "stub_cpu": cpu_seconds(resource.RUSAGE_CHILDREN),
    }
    print(json.dumps(report), flush=True)
    os.unlink(args.listen)


def run_worker(args: argparse.Namespace) -> int:
    if args.worker == "baseline-server":
        worker_baseline_server(args)
        return 0
    run = {
        "client": worker_client,
        "baseline-client": worker_baseline_client,
        "baseline-file-client": worker_baseline_file_client,
        "baseline-save-client": worker_baseline_save_client,
    }[args.worker]
    try:
        record = run(args)
    except Exception as exc:
        record = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(record), flush=True)
    return 0 if "error" not in record else 1


# --- the benchmark's side -------------------------------------------------------------------


class Child:
    """A child process whose stdout is JSON lines, read by a thread into a queue."""

    def __init__(self, command: list[str], stdin: bool = False) -> None:
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._errors: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._errors.append(line.rstrip())

    def line(self, key: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name}: no {key!r} within {timeout} s") from None
            if line is None:
                self.process.wait()
                tail = " | ".join(self._errors[-3:]) or f"exit code {self.process.returncode}"
                raise RuntimeError(f"{self.name} ended without {key!r}: {tail}")
            if key in line:
                return line

    @property
    def name(self) -> str:
        return f"pid {self.process.pid}"

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return self.process.returncode


def _me(*worker: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--worker", *worker, "--format", FORMAT[0]]


@contextlib.contextmanager
def protocol_server(work: Path) -> Iterator[tuple[Child, str]]:
    path = work / "xdrstream.sock"
    command = [sys.executable, "-m", "xdrstream.cli", "serve", "--listen", f"unix:{path}"]
    server = Child(command)
    try:
        server.line("listening")
        yield server, str(path)
    finally:
        server.stop()


@dataclass
class Run:
    label: str
    bytes: int
    seconds: float
    client_rss: int = 0
    server_rss: int = 0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    stub_cpu: float = 0.0
    ok: bool = True
    note: str = ""
    wall: float = 0.0  # of the client process, start-up included (part 1b)

    @property
    def rate(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


CLIENT_OPTIONS: list[str] = []  # --chunk-size, passed on to the protocol clients


def run_client(socket_path: str, worker: str, variant: int, size: int, seed: int) -> Run:
    command = _me(worker, "--connect", socket_path, "--size", str(size), "--seed", str(seed))
    command += ["--variant", str(variant)]
    if worker == "client":
        command += CLIENT_OPTIONS
    client = Child(command)
    try:
        record = client.line("bytes")
    finally:
        client.stop()
    label = "baseline" if worker == "baseline-client" else f"V{variant}"
    seconds = record["end"] - record["start"]
    return Run(label, record["bytes"], seconds, record["maxrss"], client_cpu=record["cpu"])


def protocol_run(work: Path, variant: int, size: int, seed: int) -> Run:
    with protocol_server(work) as (server, path):
        idle_cpu, _ = proc_cpu_seconds(server.process.pid)  # start-up: not the stream's
        run = run_client(path, "client", variant, size, seed)
        verdict = server.line("endpoint")["endpoint"]
        run.server_rss = vmhwm_bytes(server.process.pid)
        run.server_cpu, run.stub_cpu = proc_cpu_seconds(server.process.pid)
        run.server_cpu -= idle_cpu
    expected = stream_sha256(FORMAT[0], size, seed)
    if not verdict["ok"] or verdict["sha256"] != expected:
        run.ok, run.note = False, f"stub: ok={verdict['ok']} error={verdict['error']}"
    return run


def baseline_run(work: Path, size: int, seed: int) -> Run:
    path = str(work / "baseline.sock")
    server = Child(_me("baseline-server", "--listen", path))
    try:
        server.line("listening")
        run = run_client(path, "baseline-client", 0, size, seed)
        verdict = server.line("endpoint")["endpoint"]
        report = server.line("done")
    finally:
        server.stop()
    run.server_rss = report["vmhwm"]
    run.server_cpu, run.stub_cpu = report["cpu"], report["stub_cpu"]
    if verdict["sha256"] != stream_sha256(FORMAT[0], size, seed):
        run.ok, run.note = False, "baseline stub saw other bytes"
    return run


PARTS = ("0", "1", "1b", "2", "3")
SAVE_SEED = 5  # of the stub's save stream in the CLI runs
CLI = [sys.executable, "-m", "xdrstream.cli"]


def _process(command: list[str], work: Path) -> tuple[float, str, resource.struct_rusage]:
    """Wall seconds, stdout and rusage of `command` run to its end (it must succeed)."""
    with (
        tempfile.TemporaryFile("w+", dir=work) as out,
        tempfile.TemporaryFile("w+", dir=work) as err,
    ):
        start = time.monotonic()
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{command[1:4]}: exit {process.returncode}: {err.read()[-300:]}")
        return seconds, out.read(), usage


def _usage_cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def cli_run(work: Path, direction: str, variant: int, size: int, sha256: bool = False) -> Run:
    """`xdrstream restore IMAGE` (or `save OUT`) into a fresh `xdrstream serve`, with
    `--sha256` if `sha256` (the digest it prints is checked too)."""
    image, out = work / "image", work / "saved"
    with protocol_server(work) as (server, path):
        idle_cpu, _ = proc_cpu_seconds(server.process.pid)
        command = [*CLI, direction, str(image if direction == "restore" else out)]
        command += ["--connect", f"unix:{path}", "--variant", str(variant), "--json"]
        if direction == "save":
            command += ["--size", str(size), "--seed", str(SAVE_SEED)]
        if sha256:
            command.append("--sha256")
        wall, stdout, usage = _process(command, work)
        verdict = server.line("endpoint")["endpoint"]
        reported = json.loads(stdout.splitlines()[-1])
        seconds = reported["seconds"]  # with --sha256, its hashing thread's cost is in it
        label = f"V{variant} --sha256" if sha256 else f"V{variant}"
        run = Run(label, reported["bytes"], seconds, usage.ru_maxrss * 1024, wall=wall)
        run.client_cpu = _usage_cpu(usage)
        run.server_rss = vmhwm_bytes(server.process.pid)
        run.server_cpu, run.stub_cpu = proc_cpu_seconds(server.process.pid)
        run.server_cpu -= idle_cpu
    expected = (
        stream_sha256(FORMAT[0], size, 0)
        if direction == "restore"
        else synthetic_sha256(size, SAVE_SEED)
    )
    # the bytes that arrived, in every run; with --sha256 the CLI's own digest must agree
    arrived = verdict["sha256"] if direction == "restore" else file_sha256(out)
    if not verdict["ok"] or arrived != expected or (sha256 and reported["sha256"] != expected):
        run.ok, run.note = False, f"stub: ok={verdict['ok']} error={verdict['error']}"
    if direction == "save":
        out.unlink()
    return run


def baseline_cli_run(work: Path, direction: str, size: int) -> Run:
    """The plain relay of the same bytes, its client a process as the CLI is."""
    path = str(work / "baseline.sock")
    image, out = work / "image", work / "saved"
    extra = ["--save-size", str(size)] if direction == "save" else []
    server = Child(_me("baseline-server", "--listen", path, *extra))
    try:
        server.line("listening")
        if direction == "restore":
            command = _me("baseline-file-client", "--connect", path, "--file", str(image))
        else:
            command = _me("baseline-save-client", "--connect", path, "--file", str(out))
        wall, stdout, usage = _process(command, work)
        verdict = server.line("endpoint")["endpoint"]
        report = server.line("done")
    finally:
        server.stop()
    record = json.loads(stdout.splitlines()[-1])
    run = Run("baseline", record["bytes"], record["seconds"], usage.ru_maxrss * 1024, wall=wall)
    run.client_cpu = _usage_cpu(usage)
    run.server_rss = report["vmhwm"]
    run.server_cpu, run.stub_cpu = report["cpu"], report["stub_cpu"]
    if direction == "restore":
        good = verdict["sha256"] == stream_sha256(FORMAT[0], size, 0)
    else:
        good = verdict["ok"] and file_sha256(out) == synthetic_sha256(size, SAVE_SEED)
        out.unlink()
    if not good:
        run.ok, run.note = False, "baseline moved other bytes"
    return run


def cli_section(work: Path, size: int, repeat: int) -> int:
    """Part 1b: the CLI end to end, restore and save, against the plain relay."""
    with open(work / "image", "wb") as image:
        for view in stream(FORMAT[0], size, 0):
            image.write(view)
    failures = 0
    walls, cpus = [], []
    with protocol_server(work) as (server, path):
        for _ in range(3):
            command = [*CLI, "save", str(work / "tiny"), "--connect", f"unix:{path}", "--json"]
            wall, _, usage = _process([*command, "--size", str(MIN_SIZE)], work)
            server.line("endpoint")
            walls.append(wall)
            cpus.append(_usage_cpu(usage))
    (work / "tiny").unlink()
    print(
        f"CLI start-up (`xdrstream save` of {MIN_SIZE} bytes, best of 3): "
        f"wall {min(walls):.2f} s, CPU {min(cpus):.2f} s\n"
    )
    print(
        "| direction | run | MB/s | vs baseline | target | result | process wall s "
        "| CPU s/GiB: client, server, stub | peak RSS MiB: client, server |"
    )
    print("|---|---|---:|---:|---:|---|---:|---|---|")
    for direction in ("restore", "save"):
        best: dict[str, Run] = {}
        for _ in range(repeat):
            runs = [baseline_cli_run(work, direction, size)]
            runs += [cli_run(work, direction, v, size) for v in VARIANTS]
            runs += [cli_run(work, direction, v, size, sha256=True) for v in SHA256_VARIANTS]
            for run in runs:
                failures += not run.ok
                if run.label not in best or run.rate > best[run.label].rate:
                    best[run.label] = run
        base = best["baseline"]
        for label, run in best.items():
            memory = f"{mib(run.client_rss)}, {mib(run.server_rss)}"
            if label == "baseline":
                print(
                    f"| {direction} | plain relay | {run.rate:.0f} | 1.00 | | "
                    f"(reference) {run.note} | {run.wall:.2f} | {cpu_cells(run)} | {memory} |"
                )
                continue
            target = TARGET_CLI[int(label[1])]
            ratio = run.rate / base.rate if base.rate else 0.0
            variant, _, flag = label.partition(" ")  # "V2" or "V2 --sha256"
            command = f"`xdrstream {direction} {flag}`" if flag else f"`xdrstream {direction}`"
            print(
                f"| {direction} | {command} {variant} | {run.rate:.0f} | "
                f"{ratio:.2f} | >= {target:.2f} | {verdict(ratio >= target and run.ok)} "
                f"{run.note} | {run.wall:.2f} | {cpu_cells(run)} | {memory} |"
            )
    (work / "image").unlink()
    return failures


@dataclass
class Concurrent:
    variant: int
    streams: int
    bytes: int
    seconds: float
    lost: int
    errors: list[str] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    stub_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


@contextlib.contextmanager
def baseline_server(work: Path, connections: int) -> Iterator[tuple[Child, str]]:
    path = str(work / "baseline.sock")
    server = Child(_me("baseline-server", "--listen", path, "--connections", str(connections)))
    try:
        server.line("listening")
        yield server, path
    finally:
        server.stop()


def concurrent_run(work: Path, variant: int, streams: int, size: int) -> Concurrent:
    """`streams` clients at once; variant 0 is the baseline (plain sockets, threaded relay)."""
    seeds = [1000 + index for index in range(streams)]
    errors: list[str] = []
    worker = "client" if variant else "baseline-client"
    serving = protocol_server(work) if variant else baseline_server(work, streams)
    with serving as (server, path):
        clients = []
        for seed in seeds:
            command = _me(worker, "--connect", path, "--size", str(size), "--seed", str(seed))
            command += ["--variant", str(variant), "--wait-go"]
            clients.append(Child(command + (CLIENT_OPTIONS if variant else []), stdin=True))
        try:
            for client in clients:
                client.line("ready")
            server_cpu, stub_cpu = proc_cpu_seconds(server.process.pid)
            for client in clients:
                client.send("go")
            records = []
            for client in clients:
                try:
                    records.append(client.line("bytes"))
                except RuntimeError as exc:
                    errors.append(str(exc))
        finally:
            for client in clients:
                client.stop()
        verdicts = []
        for _ in range(len(records)):
            verdicts.append(server.line("endpoint", 30)["endpoint"])
        if variant:
            server_end, stub_end = proc_cpu_seconds(server.process.pid)
        else:  # the baseline server reports its own time once all relays are done
            report = server.line("done", 30)
            server_end, stub_end = server_cpu + report["cpu"], report["stub_cpu"]
            stub_cpu = 0.0
    expected = {stream_sha256(FORMAT[0], size, seed) for seed in seeds}
    seen = [v["sha256"] for v in verdicts if v["ok"]]
    lost = len(expected - set(seen)) + (len(seen) - len(set(seen)))
    total = sum(r["bytes"] for r in records)
    span = max(r["end"] for r in records) - min(r["start"] for r in records) if records else 0
    result = Concurrent(variant, streams, total, span, lost, errors)
    result.client_cpu = sum(r["cpu"] for r in records)
    result.server_cpu, result.stub_cpu = server_end - server_cpu, stub_end - stub_cpu
    return result


PLAIN_READER = "import os\nb = bytearray(1 << 20)\nwhile os.readv(0, [b]):\n    pass\n"


def _pipe_rate(command: list[str], fmt: str, size: int) -> tuple[float, str]:
    """GB/s of writing the stream into `command`'s stdin until it exits; and its stdout."""
    read_fd, write_fd = make_pipe()  # 1 MiB, as the server's pipes to the stub
    child = subprocess.Popen(command, stdin=read_fd, stdout=subprocess.PIPE)
    os.close(read_fd)
    assert child.stdout is not None
    total = 0
    start = time.monotonic()
    with open(write_fd, "wb", buffering=0) as sink:
        for view in stream(fmt, size, 7):
            sink.write(view)
            total += len(view)
    out = child.stdout.read().decode()
    child.wait()
    child.stdout.close()
    return total / (time.monotonic() - start) / 1e9, out


def parse_rates(fmt: str, size: int) -> int:
    """Print the stub's rates against a plain pipe read; 1 if the stub rejected the stream."""
    checker = StreamChecker()
    spent = 0.0
    total = 0
    for view in stream(fmt, size, 7):
        start = time.perf_counter()
        checker.feed(view)
        spent += time.perf_counter() - start
        total += len(view)
    checker.finish()
    stub = [sys.executable, "-m", "xdrstream.endpoints.qemu_stub", "incoming"]
    plain, _ = _pipe_rate([sys.executable, "-c", PLAIN_READER], fmt, size)
    rate, report = _pipe_rate(stub, fmt, size)
    ok = json.loads(report)["ok"] if report.strip() else False
    print("| reader | GB/s | vs plain pipe read |")
    print("|---|---:|---:|")
    print(f"| plain pipe read (a process discarding) | {plain:.2f} | 1.00 |")
    print(f"| stub process (--check full, SHA-256) | {rate:.2f} | {rate / plain:.2f} |")
    print(f"| parser alone, in-process (no I/O, no hash) | {total / spent / 1e9:.2f} | |")
    if not ok:
        print(f"stub rejected the stream: {report.strip()}")
    return 0 if ok else 1


# --- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def cpu_cells(run: Run | Concurrent) -> str:
    per_gib = GIB / run.bytes
    return ", ".join(
        f"{cpu * per_gib:.2f}" for cpu in (run.client_cpu, run.server_cpu, run.stub_cpu)
    )


def mib(value: int) -> str:
    return f"{value / MIB:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--size", type=parse_size, default=256 * MIB, help="bytes per run (256M)")
    parser.add_argument("--rss-size", type=parse_size, default=4 * GIB, help="memory run (4G)")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams (16)")
    parser.add_argument(
        "--concurrent-size",
        type=parse_size,
        help="bytes of all concurrent streams together (default: --streams x --size, "
        "at most 128M per stream)",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"parts to run, comma-separated (default all: {','.join(PARTS)})",
    )
    parser.add_argument("--repeat", type=int, default=2, help="throughput runs, best kept (2)")
    parser.add_argument(
        "--quick", action="store_true", help="64M, 256M for memory, 1 repeat: a smoke run"
    )
    parser.add_argument(
        "--chunk-size",
        type=parse_size,
        help="data bytes per stream frame the client sends (default: the transport's)",
    )
    parser.add_argument(
        "--format",
        choices=("real", "synthetic"),
        default="real",
        help="stream format: QEMU 7.2's real format (RAM pages) or the stub's synthetic one",
    )
    parser.add_argument(
        "--worker",
        choices=(
            "client",
            "baseline-client",
            "baseline-server",
            "baseline-file-client",
            "baseline-save-client",
        ),
    )
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--save-size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--connect", help=argparse.SUPPRESS)
    parser.add_argument("--listen", help=argparse.SUPPRESS)
    parser.add_argument("--variant", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--wait-go", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    FORMAT[0] = args.format
    if args.worker:
        return run_worker(args)
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: choose among {','.join(PARTS)}")
    if args.quick:
        args.size, args.rss_size, args.repeat = 64 * MIB, 256 * MIB, 1
    if args.concurrent_size is not None:
        per_stream = args.concurrent_size // args.streams
    elif args.quick:
        per_stream = args.size // args.streams
    else:  # what issue 12 compares: large enough that start-up is not what is measured
        per_stream = min(args.size, CONCURRENT_STREAM)
    per_stream = max(MIN_SIZE, per_stream)
    if args.chunk_size is not None:
        CLIENT_OPTIONS[:] = ["--chunk-size", str(args.chunk_size)]
        print(f"(protocol clients send {args.chunk_size} data bytes per frame)\n")

    failures = 0
    with tempfile.TemporaryDirectory(prefix="xdrstream-bench-") as name:
        work = Path(name)

        if "0" in parts:
            print(f"## 0. The stub's parse rate ({args.format} format, {args.size / GIB:g} GiB)\n")
            failures += parse_rates(args.format, args.size)

        if "1" in parts or "3" in parts:
            print(f"\n## 1. Throughput: {args.size / GIB:g} GiB over a Unix socket into the stub\n")
            best: dict[str, Run] = {}
            for attempt in range(args.repeat):
                runs = [baseline_run(work, args.size, attempt)]
                runs += [protocol_run(work, v, args.size, attempt) for v in VARIANTS]
                for run in runs:
                    failures += not run.ok
                    if run.label not in best or run.rate > best[run.label].rate:
                        best[run.label] = run
            base = best["baseline"]
            print(
                "| run | MB/s | vs baseline | target | result | CPU s/GiB: client, server, stub |"
            )
            print("|---|---:|---:|---:|---|---|")
            print(f"| baseline (plain sockets) | {base.rate:.0f} | 1.00 | | | {cpu_cells(base)} |")
            for variant in VARIANTS:
                run = best[f"V{variant}"]
                ratio = run.rate / base.rate
                target = (TARGET_RATIO_REAL if args.format == "real" else TARGET_RATIO)[variant]
                print(
                    f"| V{variant} | {run.rate:.0f} | {ratio:.2f} | >= {target:.2f} | "
                    f"{verdict(ratio >= target and run.ok)} {run.note} | {cpu_cells(run)} |"
                )

        if "1b" in parts:
            print(f"\n## 1b. The CLI end to end: {args.size / GIB:g} GiB restored and saved\n")
            failures += cli_section(work, args.size, args.repeat)

        if "2" in parts:
            print(f"\n## 2. Peak RSS while streaming {args.rss_size / GIB:g} GiB\n")
            print("| run | client MiB | server MiB | target | result |")
            print("|---|---:|---:|---:|---|")
            memory = [baseline_run(work, args.rss_size, 99)]
            memory += [protocol_run(work, v, args.rss_size, 99) for v in VARIANTS]
            for run in memory:
                failures += not run.ok
                ok = run.client_rss < TARGET_RSS and run.server_rss < TARGET_RSS
                result = "(reference)" if run.label == "baseline" else verdict(ok and run.ok)
                print(
                    f"| {run.label} | {mib(run.client_rss)} | {mib(run.server_rss)} | "
                    f"< {mib(TARGET_RSS)} | {result} {run.note} |"
                )

        if "3" in parts:
            print(
                f"\n## 3. {args.streams} concurrent streams of {per_stream / MIB:g} MiB "
                "(one server, one client process each)\n"
            )
            print(
                "| variant | aggregate MB/s | single MB/s | ratio | lost | target | result "
                "| CPU s/GiB: clients, server, stubs (single stream) |"
            )
            print("|---|---:|---:|---:|---:|---:|---|---|")
            base_many = concurrent_run(work, 0, args.streams, per_stream)
            failures += bool(base_many.lost or base_many.errors)
            print(
                f"| baseline | {base_many.rate:.0f} | {base.rate:.0f} | "
                f"{base_many.rate / base.rate:.2f} | {base_many.lost} | | (reference) | "
                f"{cpu_cells(base_many)} ({cpu_cells(base)}) |"
            )
            for variant in VARIANTS:
                result = concurrent_run(work, variant, args.streams, per_stream)
                single = best[f"V{variant}"].rate
                ratio = result.rate / single if single else 0.0
                failures += bool(result.lost or result.errors)
                ok = ratio >= TARGET_CONCURRENT and not result.lost and not result.errors
                print(
                    f"| V{variant} | {result.rate:.0f} | {single:.0f} | {ratio:.2f} | "
                    f"{result.lost} | >= {TARGET_CONCURRENT:.2f}, 0 lost | {verdict(ok)} "
                    f"{'; '.join(result.errors)[:200]} | {cpu_cells(result)} "
                    f"({cpu_cells(best[f'V{variant}'])}) |"
                )
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

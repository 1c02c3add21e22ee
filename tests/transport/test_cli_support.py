"""Helpers of the CLI, fault and demo tests: real `xdrstream` processes and leak checks.

Every process these tests start carries the environment variable `XDRSTREAM_TEST_TAG` with
a value unique to the test; children inherit it, so the stubs a server starts carry it too,
even once orphaned. `Leaks` scans /proc for them: after a test, no process with its tag may
be left, the test process has no new file descriptors and no new children (running or
zombie). This module has no tests of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import trustme

TAG_VARIABLE = "XDRSTREAM_TEST_TAG"
STUB_MODULE = b"xdrstream.endpoints.qemu_stub"
LINE_TIMEOUT = 10.0  # seconds a server gets to print an expected line


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def child_pids() -> set[int]:
    """Children of this process, running or zombie (Linux /proc)."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        # a thread that ended meanwhile has no listing
        with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{task}/children") as f:
            pids.update(int(pid) for pid in f.read().split())
    return pids


def tagged_pids(tag: str, marker: bytes = b"") -> set[int]:
    """Processes whose environment carries `tag` (and whose command line has `marker`)."""
    needle = f"{TAG_VARIABLE}={tag}".encode()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                if needle not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                command = cmdline.read()
            with open(f"/proc/{name}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != b"Z" and marker in command:
            found.add(int(name))
    return found


def stub_pids(tag: str) -> set[int]:
    return tagged_pids(tag, STUB_MODULE)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


class Leaks:
    """Snapshot at the start of a test; `check()` at its end (see the module docstring)."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex
        self.fds = open_fds()
        self.children = child_pids()

    def env(self) -> dict[str, str]:
        return {**os.environ, TAG_VARIABLE: self.tag, "COLUMNS": "200"}

    def check(self) -> None:
        wait_until(lambda: not tagged_pids(self.tag), 5.0, "every tagged process has exited")
        leaked = {fd for fd in open_fds() - self.fds if os.path.exists(f"/proc/self/fd/{fd}")}
        assert not leaked, f"file descriptors left open: {sorted(leaked)}"
        assert not child_pids() - self.children, "child processes left behind"


def xdrstream(*args: str) -> list[str]:
    return [sys.executable, "-m", "xdrstream.cli", *args]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def record(self) -> dict[str, Any]:
        """The JSON line of a successful restore or save."""
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, f"expected one JSON line, got {self.stdout!r}"
        record: dict[str, Any] = json.loads(lines[0])
        return record

    @property
    def error(self) -> str:
        """The one error line on stderr."""
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one error line, got {self.stderr!r}"
        return lines[0]


def run_cli(leaks: Leaks, *args: str, timeout: float = 20.0) -> Outcome:
    done = subprocess.run(
        xdrstream(*args),
        env=leaks.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


class Server:
    """`xdrstream serve ARGS` in a child process; its JSON lines arrive on a queue."""

    def __init__(self, leaks: Leaks, listen: str, *args: str) -> None:
        self.process = subprocess.Popen(
            xdrstream("serve", "--listen", listen, *args),
            env=leaks.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()
        self.address = ""
        try:
            self.address = self.line("listening")["listening"]
        except BaseException:
            self.stop()
            raise

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def line(self, key: str, timeout: float = LINE_TIMEOUT) -> dict[str, Any]:
        """The next line with `key` (skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the server printed no {key!r} line in {timeout} s") from None
            if line is None:
                raise AssertionError(f"the server ended before a {key!r} line: {self.stderr()}")
            if key in line:
                return line

    def endpoint(self, timeout: float = LINE_TIMEOUT) -> dict[str, Any]:
        verdict: dict[str, Any] = self.line("endpoint", timeout)["endpoint"]
        return verdict

    def no_more_lines(self) -> list[dict[str, Any]]:
        lines = []
        with contextlib.suppress(queue.Empty):
            while (line := self._lines.get_nowait()) is not None:
                lines.append(line)
        return lines

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(running)"
        return self.process.stderr.read()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the server, wait for it; its exit code. Kills it after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return self.process.returncode


@contextlib.contextmanager
def serving(leaks: Leaks, listen: str, *args: str) -> Iterator[Server]:
    server = Server(leaks, listen, *args)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client: Path  # certificate and key in one file, signed by the other CA

    def server_args(self, require_client_cert: bool = False) -> list[str]:
        args = ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]
        args += ["--tls-ca", str(self.ca)]
        return [*args, "--require-client-cert"] if require_client_cert else args

    def client_args(self) -> list[str]:
        args = ["--tls-ca", str(self.ca), "--tls-cert", str(self.client_cert)]
        return [*args, "--tls-key", str(self.client_key)]


def make_pki(root: Path) -> Pki:
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client.example")
    stranger = other.issue_cert("stranger.example")
    blobs = {
        "ca": ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
        "other_ca": other.cert_pem,
        "other_client": stranger.private_key_and_cert_chain_pem,
    }
    for name, blob in blobs.items():
        blob.write_to_path(str(root / f"{name}.pem"))
    return Pki(**{name: root / f"{name}.pem" for name in blobs})

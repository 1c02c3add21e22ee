"""Real peers for tests: a private libvirtd and a tshark capture on loopback.

The recipe follows ``shared/reference/real-peers.md``: libvirtd refuses to run as root in
session mode without the ``libvirt-qemu`` user, so it runs as uid/gid 65534 in a temporary
directory owned by that user. Everything is started by a context manager that stops it
(SIGTERM, then SIGKILL after a bound) and removes its files, so no process outlives a test.

Import from tests as ``from realpeers import ...`` (``tests`` is on pytest's pythonpath).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NOBODY = 65534
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0


def require(*programs: str) -> None:
    """Skip the calling test with a clear reason when a program is not installed."""
    missing = [name for name in programs if shutil.which(name) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def free_tcp_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, then SIGKILL: the process is reaped whatever happens."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@dataclass
class Libvirtd:
    """A running private libvirtd; ``root`` holds its socket, config, log and pool."""

    root: Path
    process: subprocess.Popen[bytes]
    tcp_port: int | None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket_path(self) -> Path:
        return self.root / "sock" / "libvirt-sock"

    @property
    def log_path(self) -> Path:
        return self.root / "libvirtd.log"

    def uri(self, driver: str = "qemu", tcp: bool = False) -> str:
        """A connection URI; ``driver`` is ``qemu`` (storage) or ``test`` (screenshots)."""
        path = "/session" if driver == "qemu" else "/default"
        if tcp:
            if self.tcp_port is None:
                raise ValueError("this libvirtd does not listen on TCP")
            return f"{driver}+tcp://127.0.0.1:{self.tcp_port}{path}"
        return f"{driver}+unix://{path}?socket={self.socket_path}"

    def virsh(
        self,
        *args: str,
        driver: str = "qemu",
        tcp: bool = False,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run virsh against this daemon; a failure raises with virsh's own message unless
        ``check`` is false."""
        command = ["virsh", "-q", "-c", self.uri(driver, tcp), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def shared_dir(self, name: str) -> Path:
        """A directory inside the daemon's tree that both libvirtd and root can write."""
        path = self.root / name
        path.mkdir(exist_ok=True)
        os.chown(path, NOBODY, NOBODY)
        return path

    def define_pool(self, name: str = "tpool") -> Path:
        """Define and start a directory pool; returns its target directory."""
        target = self.shared_dir(f"pool-{name}")
        self.virsh("pool-define-as", name, "dir", "--target", str(target))
        self.virsh("pool-start", name)
        return target


def _config(root: Path, tcp_port: int | None) -> str:
    lines = [
        f'unix_sock_dir = "{root / "sock"}"',
        'auth_unix_rw = "none"',
        'auth_unix_ro = "none"',
        "listen_tls = 0",
        f"listen_tcp = {0 if tcp_port is None else 1}",
        f'log_outputs = "3:file:{root / "libvirtd.log"}"',
    ]
    if tcp_port is not None:
        lines += ['listen_addr = "127.0.0.1"', f'tcp_port = "{tcp_port}"', 'auth_tcp = "none"']
    return "\n".join(lines) + "\n"


def _tcp_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start(root: Path, tcp_port: int | None) -> Libvirtd:
    conf = root / "libvirtd.conf"
    conf.write_text(_config(root, tcp_port))
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(root / "home"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_CACHE_HOME": str(root / "cache"),
    }
    command = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "env",
        *(f"{key}={value}" for key, value in env.items()),
        "libvirtd",
        "-f",
        str(conf),
    ]
    if tcp_port is not None:
        command.append("--listen")
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    daemon = Libvirtd(root=root, process=process, tcp_port=tcp_port, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"libvirtd exited {process.returncode} at start-up: {stderr}")
        ready = daemon.socket_path.exists()
        if ready and tcp_port is not None:
            ready = _tcp_listening(tcp_port)
        if ready:
            return daemon
        time.sleep(0.05)
    stop_process(process)
    raise RuntimeError(f"libvirtd did not create {daemon.socket_path} in {START_TIMEOUT} s")


@contextlib.contextmanager
def private_libvirtd(tcp: bool = False, attempts: int = 3) -> Iterator[Libvirtd]:
    """Start a private libvirtd (Unix socket, and TCP on a free port if asked); stop it after.

    A TCP port is chosen free just before start-up; on the rare race with another process
    start-up fails and is retried on a new port.
    """
    root = Path(tempfile.mkdtemp(prefix="xdrstream-libvirtd-"))
    try:
        for sub in ("sock", "home", "run", "config", "cache"):
            (root / sub).mkdir()
        for path in [root, *root.iterdir()]:
            os.chown(path, NOBODY, NOBODY)
        os.chmod(root, 0o755)
        daemon: Libvirtd | None = None
        for attempt in range(attempts):
            try:
                daemon = _start(root, free_tcp_port() if tcp else None)
                break
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        assert daemon is not None
        try:
            yield daemon
        finally:
            stop_process(daemon.process)
            if daemon.process.stderr is not None:
                daemon.process.stderr.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="libvirtd")
def libvirtd_fixture() -> Iterator[Libvirtd]:
    """pytest fixture: a private libvirtd listening on its Unix socket and on TCP (skips the
    test where libvirtd, virsh or setpriv is missing).  Import ``libvirtd_fixture`` into a
    test module (``# noqa: F401``) and ask for ``libvirtd``."""
    require("libvirtd", "virsh", "setpriv")
    with private_libvirtd(tcp=True) as daemon:
        yield daemon


@dataclass
class Capture:
    """A finished tshark capture file."""

    path: Path
    port: int


@contextlib.contextmanager
def tshark_capture(port: int, directory: Path, name: str = "capture.pcapng") -> Iterator[Capture]:
    """Capture TCP ``port`` on loopback into ``directory/name`` while the block runs.

    dumpcap drops privileges, so the directory is made writable by all. tshark announces
    "Capturing on" before its filter sees packets, so readiness is proven instead: UDP probes
    to a closed port (also matched by the filter) are sent until one lands in the file. The
    capture therefore starts with a few UDP datagrams. The file is complete on exit.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o1777)
    path = directory / name
    probe_port = free_udp_port()
    capture_filter = f"tcp port {port} or udp port {probe_port}"
    command = ["tshark", "-q", "-i", "lo", "-B", "128", "-f", capture_filter, "-w", str(path)]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_capturing(process, path, probe_port)
        yield Capture(path=path, port=port)
        time.sleep(0.3)  # dumpcap writes its buffer out about every 100 ms
    finally:
        stop_process(process)
        if process.stderr is not None:
            process.stderr.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_capturing(process: subprocess.Popen[bytes], path: Path, probe_port: int) -> None:
    """Block until a UDP probe shows up in the capture file."""
    deadline = time.monotonic() + START_TIMEOUT
    empty_size: int | None = None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                stderr = process.stderr.read() if process.stderr else b""
                raise RuntimeError(
                    f"tshark exited {process.returncode}: {stderr.decode(errors='replace')}"
                )
            size = path.stat().st_size if path.exists() else 0
            if size and empty_size is None:
                empty_size = size  # section header and interface blocks only
            elif empty_size is not None and size > empty_size:
                return
            sender.sendto(b"xdrstream capture probe", ("127.0.0.1", probe_port))
            time.sleep(0.05)
    raise RuntimeError(f"tshark captured no probe within {START_TIMEOUT} s")


TSHARK_FIELDS: Sequence[str] = (
    "libvirt.length",
    "libvirt.program",
    "libvirt.version",
    "libvirt.procedure",
    "libvirt.type",
    "libvirt.serial",
    "libvirt.status",
    "libvirt.stream_hole.length",
)


def tshark_fields(capture: Path, port: int, fields: Sequence[str] = TSHARK_FIELDS) -> str:
    """tshark's libvirt dissector output for ``capture``: one line per frame, tab-separated."""
    command = [
        "tshark",
        "-r",
        str(capture),
        "-o",
        "tcp.reassemble_out_of_order:TRUE",
        "-d",
        f"tcp.port=={port},libvirt",
        "-Y",
        "libvirt",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]
    for name in fields:
        command += ["-e", name]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=True
    )
    return result.stdout


# ---- comparing our decoder with tshark -----------------------------------------------------

#: One message: length, program, version, procedure, type, serial, status, hole length.
Row = tuple[int, int, int, int, int, int, int, int | None]

HOLE_TYPE = 6


def rows_from_tshark(text: str) -> list[Row]:
    """Rows from :func:`tshark_fields` output (a header line of field names is skipped).

    A packet carrying several messages has comma-separated values; its hole lengths belong
    to its messages of type 6, in order.
    """
    rows: list[Row] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("libvirt."):
            continue
        columns = line.split("\t")
        values = [[int(v, 0) for v in column.split(",") if v] for column in columns[:7]]
        holes = [int(v, 0) for v in columns[7].split(",") if v] if len(columns) > 7 else []
        count = len(values[0])
        if any(len(column) != count for column in values):
            raise ValueError(f"tshark line with uneven columns: {line!r}")
        for index in range(count):
            length, program, version, procedure, mtype, serial, status = (
                column[index] for column in values
            )
            hole = holes.pop(0) if mtype == HOLE_TYPE else None
            rows.append((length, program, version, procedure, mtype, serial, status, hole))
        if holes:
            raise ValueError(f"hole lengths left over in {line!r}")
    return rows


def rows_from_decode_json(text: str) -> list[Row]:
    """Rows from the JSON lines of ``xdrstream decode --format json``."""
    rows: list[Row] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        hole = item["body"]["length"] if item["type"] == HOLE_TYPE else None
        rows.append(
            (
                item["length"],
                item["program"],
                item["version"],
                item["procedure"],
                item["type"],
                item["serial"],
                item["status"],
                hole,
            )
        )
    return rows

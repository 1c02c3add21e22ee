"""Real QEMU as a stream endpoint, driven over QMP the way libvirt drives it.

Restore: `qemu-system-x86_64 ... -S -incoming fd:N` reads the migration stream from a pipe
whose write end the caller gets; the restore succeeds only when QMP `query-migrate` reports
`completed` and the guest waits in `prelaunch` or `paused` (it was started with -S). A stream
QEMU rejects makes QEMU 7.2 exit with status 1 and say why on stderr; that becomes the error.

Save: QEMU starts paused (-S) with a fresh 16 MiB guest; the write end of a pipe is handed
over QMP (`getfd`, the fd travelling by SCM_RIGHTS) and `migrate` with uri `fd:NAME` writes
the stream into it; the caller reads the other end to EOF. Success is `completed` again.

The QMP client is the minimum for that: greeting, `qmp_capabilities`, `execute` with optional
fds, events skipped. Every QEMU started here is quit (or killed) and reaped, and its QMP
socket directory removed, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from xdrstream.endpoints.sink import (
    EndpointError,
    EndpointResult,
    Operation,
    StreamEndpoint,
    child_pipe,
    close_fd,
    spawn,
    stderr_file,
)

QEMU_BINARY = "qemu-system-x86_64"
START_TIMEOUT = 10.0
QMP_TIMEOUT = 10.0
POLL_INTERVAL = 0.01
QUIT_TIMEOUT = 5.0
MIGRATION_FD_NAME = "xdrstream-migration"

RESTORED_RUN_STATES = ("prelaunch", "paused")
"""Where a guest started with -S waits after a complete incoming migration."""

_FINAL_MIGRATION_STATES = ("completed", "failed", "cancelled")


def find_qemu(binary: str | None = None) -> str | None:
    """The QEMU executable to use (`binary`, else qemu-system-x86_64 on PATH), or None."""
    return shutil.which(binary or QEMU_BINARY)


class QMPError(Exception):
    """A QMP command failed, or the QMP connection did."""


class QMPClient:
    """A QMP connection on a Unix socket: JSON lines in, JSON lines out."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self.events: list[dict[str, Any]] = []
        self.greeting = self._receive()
        # QEMU 7.2 started with -incoming can emit MIGRATION/setup on a fresh connection
        # before its greeting (seen in CI): keep such events, the greeting follows them
        while "event" in self.greeting and "QMP" not in self.greeting:
            self.events.append(self.greeting)
            self.greeting = self._receive()
        if "QMP" not in self.greeting:
            raise QMPError(f"not a QMP greeting: {self.greeting!r}")
        self.execute("qmp_capabilities")

    @classmethod
    def connect(
        cls, path: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
    ) -> QMPClient:
        """Connect once QEMU has created its socket; fail early if QEMU exits."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(QMP_TIMEOUT)
            try:
                sock.connect(path)
                return cls(sock)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            except BaseException:
                sock.close()
                raise
            if process.poll() is not None:
                raise QMPError(f"QEMU exited with code {process.returncode} before QMP was up")
            if time.monotonic() > deadline:
                raise QMPError(f"QEMU's QMP socket {path} did not appear within {timeout} s")
            time.sleep(POLL_INTERVAL)

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, fds: Sequence[int] = ()
    ) -> Any:
        """Run one command and return its `return` value; a QMP error raises QMPError."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        data = json.dumps(message).encode() + b"\n"
        try:
            if fds:
                sent = socket.send_fds(self._sock, [data], list(fds))
                self._sock.sendall(data[sent:])
            else:
                self._sock.sendall(data)
        except OSError as exc:
            raise QMPError(f"QMP {command}: cannot send: {exc}") from exc
        while True:
            reply = self._receive()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                error = reply["error"]
                raise QMPError(f"QMP {command}: {error.get('class')}: {error.get('desc')}")
            elif "return" in reply:
                return reply["return"]

    def _receive(self) -> dict[str, Any]:
        while (end := self._buffer.find(b"\n")) < 0:
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise QMPError(f"QMP connection failed: {exc}") from exc
            if not chunk:
                raise QMPError("QMP connection closed by QEMU")
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise QMPError(f"QMP sent something that is not JSON: {line[:200]!r}") from exc
        if not isinstance(value, dict):
            raise QMPError(f"QMP sent a JSON {type(value).__name__}, not an object")
        return value

    def close(self) -> None:
        self._sock.close()


class QemuEndpoint(StreamEndpoint):
    """A QEMU process restoring from or saving into the pipe end `fd`."""

    def __init__(
        self,
        operation: Operation,
        process: subprocess.Popen[bytes],
        fd: int,
        stderr: IO[bytes],
        qmp: QMPClient,
        workdir: str,
    ) -> None:
        super().__init__(operation, process, fd, stderr)
        self.qmp = qmp
        self._workdir = workdir
        self.setup_replies: list[Any] = []  # of the launcher's save_setup, in order

    def _verdict(self, timeout: float | None) -> EndpointResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            status = self._poll_migration(deadline)
            if status.get("status") != "completed":
                detail = status.get("error-desc") or "no reason given"
                return self._failure(f"migration {status.get('status')}: {detail}")
            run_state = self.qmp.execute("query-status")["status"]
        except QMPError as exc:
            return self._failure(f"QEMU failed: {exc}")
        if self.operation is Operation.RESTORE and run_state not in RESTORED_RUN_STATES:
            return self._failure(f"migration completed but the guest is {run_state!r}")
        code = self._quit()
        return EndpointResult(ok=True, exit_code=code)

    def _poll_migration(self, deadline: float | None) -> dict[str, Any]:
        while True:
            status: dict[str, Any] = self.qmp.execute("query-migrate")
            if status.get("status") in _FINAL_MIGRATION_STATES:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"QEMU (pid {self.process.pid}) migration still {status.get('status')!r} "
                    "at the deadline"
                )
            time.sleep(POLL_INTERVAL)

    def _failure(self, reason: str) -> EndpointResult:
        """A failed verdict; QEMU's own last words (stderr) are the best reason there is."""
        self._quit()
        stderr = " ".join(self.stderr_tail().split())
        return EndpointResult(
            ok=False,
            error=f"{reason} (stderr: {stderr})" if stderr else reason,
            exit_code=self.process.returncode,
        )

    def _quit(self) -> int:
        """Ask QEMU to quit (it may be exiting already) and reap it; kill it if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(QMPError):
                self.qmp.execute("quit")
        try:
            return self.process.wait(QUIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def _release_extra(self) -> None:
        self.qmp.close()
        shutil.rmtree(self._workdir, ignore_errors=True)


@dataclass(frozen=True)
class QemuLauncher:
    """Starts real QEMU endpoints: the binary, machine type, guest memory, extra arguments.

    `save_setup` are QMP commands (name, arguments) a save runs before `migrate`, e.g.
    `("migrate-set-capabilities", {...})` for a source with the dirty-bitmaps capability;
    restores run none (a restore from a file sets no capabilities); their replies are kept in
    the endpoint's `setup_replies` (e.g. HMP `info registers` of the guest being saved). Same
    interface as the
    stub's launcher (`sink.EndpointLauncher`).
    """

    binary: str = QEMU_BINARY
    machine: str = "pc"
    memory_mib: int = 16
    extra_args: tuple[str, ...] = field(default=())
    save_setup: tuple[tuple[str, dict[str, Any]], ...] = field(default=())

    def command(self, qmp_path: str) -> list[str]:
        binary = find_qemu(self.binary)
        if binary is None:
            raise EndpointError(f"QEMU not found: {self.binary!r} (Debian: qemu-system-x86)")
        return [
            binary,
            *("-machine", self.machine, "-m", str(self.memory_mib)),
            *("-nodefaults", "-display", "none", "-S"),
            *("-qmp", f"unix:{qmp_path},server=on,wait=off"),
            *self.extra_args,
        ]

    def restore(self) -> QemuEndpoint:
        """Start QEMU with `-incoming fd:N`; write the stream into `.fd`, then `wait()`."""
        return _start(self, Operation.RESTORE)

    def save(self) -> QemuEndpoint:
        """Start QEMU and `migrate` to a pipe; read `.fd` to EOF, then `wait()`."""
        return _start(self, Operation.SAVE)


def _start(config: QemuLauncher, operation: Operation) -> QemuEndpoint:
    """Start QEMU, connect QMP and, for a save, start the migration into the pipe."""
    workdir = tempfile.mkdtemp(prefix="xdrstream-qemu-")
    qmp_path = os.path.join(workdir, "qmp.sock")
    child_fd, parent_fd = child_pipe(operation)
    stderr = stderr_file()
    process: subprocess.Popen[bytes] | None = None
    try:
        command = config.command(qmp_path)
        if operation is Operation.RESTORE:
            command += ["-incoming", f"fd:{child_fd}"]
            pass_fds: tuple[int, ...] = (child_fd,)
        else:
            pass_fds = ()  # the save pipe goes over QMP instead, as libvirt does
        process = spawn(command, stderr, pass_fds, "QEMU")
        try:
            qmp = QMPClient.connect(qmp_path, process)
            replies: list[Any] = []
            try:
                if operation is Operation.SAVE:
                    for name, arguments in config.save_setup:
                        replies.append(qmp.execute(name, arguments))
                    qmp.execute("getfd", {"fdname": MIGRATION_FD_NAME}, fds=[child_fd])
                    qmp.execute("migrate", {"uri": f"fd:{MIGRATION_FD_NAME}"})
            except BaseException:
                qmp.close()
                raise
        except QMPError as exc:
            stderr.seek(0)
            words = " ".join(stderr.read().decode("utf-8", "replace").split())
            raise EndpointError(f"QEMU did not start: {exc} (stderr: {words})") from exc
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        close_fd(parent_fd)
        stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        close_fd(child_fd)
    endpoint = QemuEndpoint(operation, process, parent_fd, stderr, qmp, workdir)
    endpoint.setup_replies = replies
    return endpoint

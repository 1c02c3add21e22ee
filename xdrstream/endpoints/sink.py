"""Stream endpoints: the process at the far end of a restore or save (the QEMU stub or QEMU).

libvirt hands QEMU its migration stream on a pipe (`-incoming fd:N` for a restore,
`migrate fd:NAME` for a save) and relays the RPC stream into or out of that pipe. A
`StreamEndpoint` is that arrangement seen from the server: a child process, the parent's end
of the pipe (`fd`), and a verdict (`EndpointResult`) once the child is done.

Restore: write the stream into `fd` (or `write()`), then `wait()`; closing the pipe is the
end-of-stream the child needs before it can judge. Save: read `fd` (or `readinto()`) until
EOF, then `wait()`. `wait()` closes the parent's end first, so a save that stops reading
early makes the child fail with a broken pipe, which is the honest verdict. `abort()` kills
the child. Used as a context manager, an endpoint without a verdict is aborted on exit, and
every fd, temporary file and child is released on every path (kill + wait: no zombies).

Drivers may switch `fd` to non-blocking mode and poll it themselves; `write()` and
`readinto()` are blocking conveniences. A write into a restore pipe whose child has died
raises `BrokenPipeError`: call `wait()` next, the verdict says why the child stopped.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import fcntl
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Protocol, TypeVar

PIPE_SIZE = 1 << 20
"""Pipe capacity asked for (Linux `F_SETPIPE_SZ`): fewer context switches per MiB."""

STDERR_TAIL = 2000
"""How many trailing characters of a child's stderr go into an error message."""


class Operation(enum.Enum):
    """What the endpoint does with the stream (a restore is an upload procedure's data
    arriving at the server, a save a download's: protocol.Direction is the wire's view)."""

    RESTORE = "restore"  # the stream flows into the endpoint (QEMU -incoming)
    SAVE = "save"  # the stream flows out of the endpoint (QEMU migrate)


@dataclass(frozen=True)
class EndpointResult:
    """The endpoint's verdict on one stream.

    `ok` is true only when the child accepted (restore) or produced (save) the whole stream
    and exited cleanly. `bytes` and `sha256` are what the child counted, where it counts
    (the stub does; QEMU does not say, so they are None there).
    """

    ok: bool
    bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    exit_code: int | None = None


class EndpointError(Exception):
    """The endpoint could not be started or driven (not a verdict on the stream)."""


def make_pipe(capacity: int = PIPE_SIZE) -> tuple[int, int]:
    """A pipe (read, write), both close-on-exec, with a larger capacity where allowed."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, capacity)
    return read_fd, write_fd


def child_pipe(operation: Operation) -> tuple[int, int]:
    """A pipe as (the child's end, the parent's end): the child reads a restore stream
    and writes a save stream."""
    read_fd, write_fd = make_pipe()
    return (read_fd, write_fd) if operation is Operation.RESTORE else (write_fd, read_fd)


def spawn(
    command: Sequence[str], stderr: IO[bytes], pass_fds: Sequence[int], what: str
) -> subprocess.Popen[bytes]:
    """Start an endpoint's child: no stdin or stdout, stderr into ``stderr``, ``pass_fds``
    inherited (an EndpointError naming ``what`` if it cannot start)."""
    try:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise EndpointError(f"cannot start {what} {command[0]!r}: {exc}") from exc


def close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


_Endpoint = TypeVar("_Endpoint", bound="StreamEndpoint")


class StreamEndpoint(abc.ABC):
    """A child process fed by (restore) or feeding (save) the pipe end `fd`."""

    def __init__(
        self, operation: Operation, process: subprocess.Popen[bytes], fd: int, stderr: IO[bytes]
    ) -> None:
        self.operation = operation
        self.process = process
        self._fd = fd
        self._stderr = stderr
        self._result: EndpointResult | None = None
        self._abort_reason: str | None = None
        self._lock = threading.Lock()  # one verdict, even with abort() from another thread
        self._fd_lock = threading.Lock()  # `fd` is closed once, whoever closes it first

    # -- the stream ------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        """The parent's end of the pipe: writable for a restore, readable for a save."""
        if self._fd < 0:
            raise ValueError(f"{self.operation.value} stream of pid {self.process.pid} is closed")
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of `data` into a restore stream (blocking)."""
        if self.operation is not Operation.RESTORE:
            raise ValueError("write() is for restore endpoints; a save endpoint is read")
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self.fd, view) :]

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read the next bytes of a save stream into `buffer`; 0 means end of stream."""
        if self.operation is not Operation.SAVE:
            raise ValueError("readinto() is for save endpoints; a restore endpoint is written")
        return os.readv(self.fd, [buffer])

    def close_stream(self) -> None:
        """Close the parent's end: end-of-stream for a restore, 'no more reading' for a save.

        Idempotent and thread-safe: `wait()`, `abort()` and the application may race to
        call it; the descriptor is closed exactly once (a second close could hit a number
        that another thread has reused meanwhile).
        """
        with self._fd_lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            close_fd(fd)

    # -- the verdict -----------------------------------------------------------------------
    @property
    def result(self) -> EndpointResult | None:
        return self._result

    def wait(self, timeout: float | None = None) -> EndpointResult:
        """Close the stream, then wait for the verdict.

        Raises TimeoutError when the child has not finished within `timeout` seconds; the
        child is left running (call `abort()`).
        """
        with self._lock:
            if self._result is None:
                self.close_stream()
                result = self._verdict(timeout)
                if self._abort_reason is not None:  # killed by abort() meanwhile
                    result = EndpointResult(
                        ok=False, error=self._abort_reason, exit_code=self.process.returncode
                    )
                self._result = result
                self._release()
            return self._result

    def abort(self, reason: str = "aborted") -> EndpointResult:
        """Kill the child unless it has already given its verdict; release everything.

        May be called from another thread while `wait()` runs there: the child is killed
        first, which ends that wait, and both return the aborted verdict. (A thread blocked
        writing or reading `fd` sees a broken pipe or EOF once the child is gone.)
        """
        if self._result is None:
            self._abort_reason = reason
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with self._lock:
            if self._result is None:
                self.close_stream()
                self._kill()
                code = self.process.returncode
                self._result = EndpointResult(ok=False, error=reason, exit_code=code)
            self._release()
            return self._result

    def __enter__(self: _Endpoint) -> _Endpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        reason = "aborted" if exc is None else f"aborted: {type(exc).__name__}: {exc}"
        self.abort(reason)

    # -- for subclasses --------------------------------------------------------------------
    @abc.abstractmethod
    def _verdict(self, timeout: float | None) -> EndpointResult:
        """Wait (bounded by `timeout`) for the child to finish and judge the stream."""

    def _release_extra(self) -> None:  # noqa: B027 - optional hook
        """Release subclass resources (sockets, temporary directories)."""

    def _kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.process.wait()

    def _release(self) -> None:
        self.close_stream()
        self._release_extra()
        # a verdict without the child being gone would leave a zombie behind
        self._kill()
        self._stderr.close()

    def stderr_tail(self) -> str:
        """The end of the child's stderr (it goes to a temporary file: never blocks the child)."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - STDERR_TAIL))
        return self._stderr.read().decode("utf-8", "replace").strip()


def stderr_file() -> IO[bytes]:
    """An anonymous temporary file for a child's stderr."""
    return tempfile.TemporaryFile(prefix="xdrstream-endpoint-")


class EndpointLauncher(Protocol):
    """What a server needs to start endpoints: the stub and real QEMU both provide it."""

    def restore(self) -> StreamEndpoint:
        """Start an endpoint that reads a stream from its pipe (QEMU -incoming fd:N)."""
        ...

    def save(self) -> StreamEndpoint:
        """Start an endpoint that writes a stream into its pipe (QEMU migrate fd:NAME)."""
        ...

"""The reference server of the ``restore.x`` program (spec.md §11.2), on asyncio.

    server = RestoreServer("unix:/tmp/x.sock")                 # QEMU stub endpoints
    server = RestoreServer("tcp:127.0.0.1:0", tls=tls.server_context(cert, key, ca, True),
                           launcher=QemuLauncher(...))         # real QEMU
    server = RestoreServer("unix:/tmp/x.sock", images="/var/images")   # named files
    await server.start(); await server.serve_forever(); await server.close()

    with ServerThread(RestoreServer(...)) as server:            # in a background thread
        server.address                                          # where it listens

A restore (``XS_PROC_RESTORE_V1/V2/V3``, ``..._DENSE``) starts an endpoint through the
launcher (default :class:`~.qemu_stub.StubLauncher`, or :class:`~.qemu.QemuLauncher`), the
way libvirt feeds ``-incoming fd:N``, and writes the stream into its pipe as the data
arrives (the pipe's pace is the client's pace: data waiting for the pipe is counted
unconsumed, so reading stops, spec.md §8.2).  At the client's finish it closes the pipe
and waits for the endpoint's verdict: only an accepted stream is confirmed; otherwise the
stream fails with the endpoint's reason (wrong magic, truncated, crash).  A save starts an
outgoing endpoint and relays its pipe to the client; the save name ``SIZE`` or
``SIZE:SEED`` picks the stub's stream (else the launcher's default).  Abort, error or a
client that goes away kills the endpoint.  With ``images=DIR`` the server stores named
images as (sparse) files instead: holes travel as holes in both directions.

``results`` keeps the recent endpoint verdicts (:class:`~.sink.EndpointResult`);
``on_result(result)`` is called with each one as it is recorded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from xdrstream.endpoints.qemu import QemuLauncher
from xdrstream.endpoints.qemu_stub import StubLauncher
from xdrstream.endpoints.sink import (
    EndpointError,
    EndpointLauncher,
    EndpointResult,
    StreamEndpoint,
)
from xdrstream.protocol import Registry
from xdrstream.restore.program import (
    PROC_ECHO,
    PROC_GET_INFO,
    PROC_PING,
    PROC_RESTORE_DENSE,
    PROC_SAVE_DENSE,
    RESTORE_PROCS,
    SAVE_PROCS,
    schema,
)

# the program's numbers, which clients import from here too
from xdrstream.restore.program import PROGRAM as PROGRAM
from xdrstream.restore.program import VERSION as VERSION
from xdrstream.transport import address as addresses
from xdrstream.transport import sparse
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.aio import AsyncConnection, accept_clients
from xdrstream.transport.drivers import resolve
from xdrstream.transport.errors import (
    ERR_INVALID_ARG,
    ERR_NO_STORAGE_VOL,
    ERR_OPERATION_FAILED,
    ERR_OPERATION_TIMEOUT,
    ServerError,
    StreamAborted,
)
from xdrstream.transport.limits import Admission, Budget
from xdrstream.transport.options import Options
from xdrstream.transport.stream import Hole, Stream

log = logging.getLogger(__name__)
T = TypeVar("T")

_RESTORES = {*RESTORE_PROCS.values(), PROC_RESTORE_DENSE}
_SAVES = {*SAVE_PROCS.values(), PROC_SAVE_DENSE}
_NAME = re.compile(r"[A-Za-z0-9._+-]{1,255}")
_SAVE_SPEC = re.compile(r"(\d+)(?::(-?\d+))?")


class RestoreServer:
    """Serves ``restore.x`` on one listening address (see the module docstring)."""

    def __init__(
        self,
        listen: str | addresses.Address,
        *,
        tls: ssl.SSLContext | None = None,
        launcher: EndpointLauncher | None = None,
        images: str | os.PathLike[str] | None = None,
        options: Options | None = None,
        name: str = "xdrstream",
        on_result: Callable[[EndpointResult], Any] | None = None,
    ) -> None:
        self.listen_address = addresses.parse_address(listen) if isinstance(listen, str) else listen
        self.tls = tls
        self.launcher: EndpointLauncher = launcher or StubLauncher()
        self.images = Path(images) if images is not None else None
        self.options = options or Options()
        self.name = name
        self.results: collections.deque[EndpointResult] = collections.deque(maxlen=256)
        self.on_result = on_result
        self.address: addresses.Address | None = None
        self._schema = schema()
        self._registry = Registry.of([self._schema])  # built once, not per connection
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[AsyncConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restored = 0
        self._bytes = 0
        self.budget = Budget(self.options.memory_budget)  # shared by all connections (§8.5)
        self._admission = Admission(self.options.max_clients)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> addresses.Address:
        """Listen; returns the bound address (port 0 becomes the real port)."""
        sock = addresses.listen(self.listen_address)
        sock.setblocking(False)
        self._sock = sock
        self.address = addresses.bound_address(sock, self.listen_address)
        self._accepting = asyncio.ensure_future(self._accept_loop())
        return self.address

    async def serve_forever(self) -> None:
        if self._accepting is None:
            await self.start()
        assert self._accepting is not None
        with contextlib.suppress(asyncio.CancelledError):
            await self._accepting

    async def close(self) -> None:
        """Stop listening, close every connection, kill every endpoint."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if self.listen_address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(self.listen_address.path)
        for conn in list(self._connections):
            await conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept_loop(self) -> None:
        assert self._sock is not None
        await accept_clients(self._sock, self._admission, self._serve_connection, self._tasks)

    async def _serve_connection(self, sock: socket.socket, peer: str) -> None:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = await AsyncConnection.accept(
                sock,
                self._registry,
                self.handle,
                tls=self.tls,
                options=self.options,
                name=peer,
                budget=self.budget,
            )
        except Exception as exc:  # TLS refused, peer gone during the handshake
            log.info("connection from %s refused: %s", peer, exc)
            return
        self._connections.add(conn)
        try:
            await conn.wait_closed()
        finally:
            self._connections.discard(conn)
            await conn.close()

    # ------------------------------------------------------------------ procedures
    async def handle(self, stream: Stream) -> Any:
        assert stream.call is not None
        proc = stream.call.procedure
        if proc == PROC_PING:
            return None
        if proc == PROC_ECHO:
            return self._schema["xs_echo_ret"](data=bytes(stream.args.data))
        if proc == PROC_GET_INFO:
            images, stored = self._inventory()
            return self._schema["xs_info_ret"](server=self.name, images=images, bytes_stored=stored)
        if stream.args.flags != 0:
            raise ServerError(ERR_INVALID_ARG, f"flags must be 0, not {stream.args.flags}")
        if proc in _RESTORES:
            await (self._restore_file(stream) if self.images else self._restore(stream))
        elif proc in _SAVES:
            await (self._save_file(stream) if self.images else self._save(stream))
        return None

    def _inventory(self) -> tuple[int, int]:
        if self.images is None:
            return self._restored, self._bytes
        files = [p for p in self.images.iterdir() if p.is_file() and _NAME.fullmatch(p.name)]
        return len(files), sum(p.stat().st_size for p in files)

    def _ret(self, type_name: str, length: int) -> Any:
        return self._schema[type_name](length=length)

    # -- endpoints ------------------------------------------------------------------------
    @staticmethod
    async def _settle(
        call: Callable[[], T],
        on_cancel: Callable[[], Any] | None = None,
        cleanup: Callable[[T], Any] | None = None,
    ) -> T:
        """Run ``call`` in a thread and see it finish even if this task is cancelled (an
        endpoint started or judged in a thread must not be forgotten): ``on_cancel``
        hurries it, ``cleanup(result)`` undoes it, then CancelledError propagates."""
        future = asyncio.get_running_loop().run_in_executor(None, call)
        cancelled = False
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                if not cancelled and on_cancel is not None:
                    on_cancel()
                cancelled = True
        result = future.result()
        if cancelled:
            if cleanup is not None:
                cleanup(result)
            raise asyncio.CancelledError
        return result

    async def _start_endpoint(self, start: Callable[[], StreamEndpoint]) -> StreamEndpoint:
        try:
            return await self._settle(start, cleanup=lambda endpoint: endpoint.abort())
        except (EndpointError, OSError) as exc:
            raise ServerError(ERR_OPERATION_FAILED, f"cannot start the endpoint: {exc}") from exc

    async def _verdict(self, endpoint: StreamEndpoint) -> EndpointResult:
        try:
            result = await self._settle(
                lambda: endpoint.wait(self.options.timeout), on_cancel=endpoint.process.kill
            )
        except TimeoutError as exc:
            raise ServerError(ERR_OPERATION_TIMEOUT, str(exc)) from exc
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def _abort(self, endpoint: StreamEndpoint, reason: str) -> None:
        await self._settle(lambda: endpoint.abort(reason))

    async def _fd_ready(self, fd: int, write: bool, stream: Stream) -> None:
        """Wait until the pipe can move data; give up when the client aborts meanwhile
        (a stalled endpoint must not delay the abort) or after ``options.timeout``: one
        future resolved by whichever comes first (no Task: a slow endpoint makes the
        server wait here for many frames of a stream)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        (loop.add_writer if write else loop.add_reader)(fd, resolve, ready)
        forget_abort = stream.notify_abort(ready)
        timeout = self.options.timeout
        stalled: list[bool] = []

        def stall() -> None:
            stalled.append(True)
            resolve(ready)

        timer = None if timeout is None else loop.call_later(timeout, stall)
        try:
            await ready
        finally:
            (loop.remove_writer if write else loop.remove_reader)(fd)
            forget_abort()
            if timer is not None:
                timer.cancel()
        if stream.abort_requested:
            raise StreamAborted("the client aborted while the endpoint's pipe was blocked")
        if stalled:
            raise ServerError(
                ERR_OPERATION_TIMEOUT,
                f"the endpoint stalled: its pipe made no progress for {timeout} s",
            )

    async def _write_pipe(self, fd: int, data: memoryview, stream: Stream) -> None:
        while data:
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                await self._fd_ready(fd, True, stream)

    async def _read_pipe(self, fd: int, view: memoryview, stream: Stream) -> int:
        while True:
            try:
                return os.readv(fd, [view])
            except BlockingIOError:
                await self._fd_ready(fd, False, stream)

    async def _restore(self, stream: Stream) -> None:
        endpoint = await self._start_endpoint(self.launcher.restore)
        try:
            await stream.accept(self._ret("xs_restore_ret", 0))
            fd = endpoint.fd
            os.set_blocking(fd, False)
            zeros = memoryview(bytes(1 << 16))
            total = 0
            try:
                while (chunk := await stream.recv()) is not None:
                    if isinstance(chunk, Hole):
                        left = chunk.length
                        while left:
                            step = min(left, len(zeros))
                            await self._write_pipe(fd, zeros[:step], stream)
                            left -= step
                        total += chunk.length
                    else:
                        await self._write_pipe(fd, chunk, stream)
                        total += len(chunk)
            except BrokenPipeError:  # the endpoint stopped reading: its verdict says why
                result = await self._verdict(endpoint)
                raise ServerError(
                    ERR_OPERATION_FAILED, f"restore failed after {total} bytes: {result.error}"
                ) from None
            result = await self._verdict(endpoint)
            if not result.ok:
                raise ServerError(ERR_OPERATION_FAILED, f"restore failed: {result.error}")
            self._restored += 1
            self._bytes += total
            await stream.complete(self._ret("xs_restore_ret", total))
        finally:
            await self._abort(endpoint, "restore ended early")

    async def _save(self, stream: Stream) -> None:
        launcher = self.launcher
        spec = _SAVE_SPEC.fullmatch(stream.args.name)
        if spec and isinstance(launcher, StubLauncher):
            if launcher.save_from is not None:  # a recording has its own length: refuse
                raise ServerError(
                    ERR_INVALID_ARG,
                    f"save {stream.args.name!r} asks for a synthetic stream of a size "
                    "(xdrstream save --size/--seed), but this server replays a recorded "
                    "stream (serve --save-from); save without --size",
                )
            seed = int(spec.group(2)) if spec.group(2) is not None else launcher.seed
            launcher = dataclasses.replace(launcher, save_size=int(spec.group(1)), seed=seed)
        endpoint = await self._start_endpoint(launcher.save)
        try:
            await stream.accept(self._ret("xs_save_ret", 0))
            fd = endpoint.fd
            os.set_blocking(fd, False)
            view = memoryview(bytearray(self.options.chunk_size))
            total = 0
            while count := await self._read_pipe(fd, view, stream):
                await stream.send(view[:count])
                total += count
            result = await self._verdict(endpoint)
            if not result.ok:
                raise ServerError(
                    ERR_OPERATION_FAILED, f"save failed after {total} bytes: {result.error}"
                )
            await stream.end(self._ret("xs_save_ret", total))
        finally:
            await self._abort(endpoint, "save ended early")

    # -- named image files ----------------------------------------------------------------
    def _image(self, name: str) -> Path:
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise ServerError(ERR_INVALID_ARG, f"invalid image name {name!r}")
        assert self.images is not None
        return self.images / name

    async def _restore_file(self, stream: Stream) -> None:
        path = self._image(stream.args.name)
        partial = path.with_name(f".{path.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        done = False
        try:
            await stream.accept(self._ret("xs_restore_ret", 0))
            writer = sparse.SparseWriter(fd)
            try:
                while (chunk := await stream.recv()) is not None:
                    if isinstance(chunk, Hole):
                        writer.hole(chunk.length)
                    else:
                        writer.write(chunk)
                writer.finish()
                # Confirmed means stored (spec §7.1.4): the data, then the name, on disk first.
                os.fsync(fd)
                os.replace(partial, path)
                sparse.fsync_directory(path.parent)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise ServerError(
                    ERR_OPERATION_FAILED, f"cannot write image {path.name!r}: {reason}"
                ) from exc
            done = True
            await stream.complete(self._ret("xs_restore_ret", writer.position))
        finally:
            os.close(fd)
            if not done:
                with contextlib.suppress(OSError):
                    os.unlink(partial)

    async def _save_file(self, stream: Stream) -> None:
        if _SAVE_SPEC.fullmatch(stream.args.name):  # a stub's stream, not a stored image
            raise ServerError(
                ERR_INVALID_ARG,
                f"save {stream.args.name!r} asks for a synthetic stream of a size "
                "(xdrstream save --size/--seed), but this server stores named images "
                "(serve --images); save one with --name",
            )
        path = self._image(stream.args.name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ServerError(ERR_NO_STORAGE_VOL, f"no image named {path.name!r}") from None
        try:
            await stream.accept(self._ret("xs_save_ret", 0))
            buffer = bytearray(self.options.chunk_size)
            total = 0
            for item in sparse.iter_sparse(fd, buffer, sparse=stream.sparse):
                if isinstance(item, Hole):
                    await stream.send_hole(item.length)
                    total += item.length
                else:
                    await stream.send(item.view)
                    total += len(item.view)
            await stream.end(self._ret("xs_save_ret", total))
        finally:
            os.close(fd)


def build_server(
    listen: str | addresses.Address,
    *,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    require_client_cert: bool | None = None,
    qemu: str | None = None,
    images: str | os.PathLike[str] | None = None,
    options: Options | None = None,
) -> RestoreServer:
    """A server from command-line style settings: TLS when ``tls_cert`` is given (client
    certificates verified against ``tls_ca`` and, by default, required when a CA is given,
    as libvirtd does); ``qemu`` = path of a QEMU binary to use real QEMU instead of the
    stub; ``images`` = directory of named image files instead of either."""
    context = None
    if tls_cert is not None:
        if require_client_cert is None:
            require_client_cert = tls_ca is not None
        context = tlsmod.server_context(tls_cert, tls_key or tls_cert, tls_ca, require_client_cert)
    elif tls_key is not None or tls_ca is not None:
        raise tlsmod.TLSError("TLS needs a server certificate (--tls-cert)")
    launcher: EndpointLauncher | None = QemuLauncher(binary=qemu) if qemu else None
    return RestoreServer(listen, tls=context, launcher=launcher, images=images, options=options)


def run(server: RestoreServer, on_ready: Callable[[addresses.Address], Any] | None = None) -> None:
    """Serve until interrupted (KeyboardInterrupt or SIGTERM), then close everything."""

    async def main() -> None:
        address = await server.start()
        if on_ready is not None:
            on_ready(address)
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, resolve, stop)
        try:
            await stop
        finally:
            await server.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class ServerThread:
    """Runs a :class:`RestoreServer` on its own event loop in a background thread.

    ``with ServerThread(server) as s:`` starts it (``s.address``), and on exit closes
    every connection and endpoint and joins the thread.
    """

    def __init__(self, server: RestoreServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="xdrstream-server", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Future[None] | None = None

    @property
    def address(self) -> addresses.Address:
        assert self.server.address is not None
        return self.server.address

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop
        finally:
            await self.server.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            stop = self._stop
            if stop is not None:
                self.loop.call_soon_threadsafe(resolve, stop)
            self._thread.join()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

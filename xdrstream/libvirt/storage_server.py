"""A libvirt storage server on a directory of files, for unmodified ``virsh``.

    with StorageServer("unix:/tmp/x/libvirt-sock", "/srv/images", pool="images") as server:
        ...                                          # serves in a background thread

    virsh -c 'qemu+unix:///session?socket=/tmp/x/libvirt-sock' vol-upload --pool images disk.img IN

The directory is one storage pool (named after the directory unless ``pool`` is given;
UUID derived from its path), always active and persistent, never autostarted; its regular
files whose names do not start with a dot are the volumes (key and path: the file's
absolute path; type "file").  The server answers what virsh calls for ``vol-upload``,
``vol-download`` (``--sparse`` too), ``vol-list``, ``vol-info``, ``vol-path``,
``vol-dumpxml``, ``vol-create``/``vol-create-as`` (a sparse raw file of the XML's
capacity, ``allocation`` of it allocated), ``vol-delete``, ``pool-list``, ``pool-info`` and
``pool-dumpxml``, plus the connection
set-up (AUTH_LIST "none", CONNECT_SUPPORTS_FEATURE: keepalive and close callbacks,
CONNECT_OPEN/CLOSE).  Keepalive PINGs are answered by the driver.  Over TLS the server
sends libvirt's one-byte confirmation after the handshake, as virsh expects.

It runs on the project's asyncio driver (:mod:`xdrstream.transport.aio`), as the restore
server does, on one event loop in a background thread, with libvirtd's limits (spec.md
§8.5: ``max_clients``, ``max_client_requests``, the shared memory budget).  File I/O
(every write, read, fsync, stat) runs in one bounded pool of ``FILE_THREADS`` threads, so
the server's threads do not grow with its clients (issue 15 part 2: 1000 idle
connections cost no thread at all).

Volumes behave as in libvirtd's directory pools: an upload writes into the existing file
from ``offset`` without truncating it; a hole seeks and sets the file's size to the hole's
end (libvirt's fdstream does the same); a download reads ``[offset, offset + length)``
and, when sparse, sends the file's holes (SEEK_DATA/SEEK_HOLE) as STREAM_HOLE.

Errors have libvirt's shape (:func:`~xdrstream.libvirt.errors.libvirt_error`): a missing
volume is code 50 / domain 18, a missing pool 49 / 18, and a procedure that this server
does not implement is answered as libvirtd's dispatcher answers an unknown one:
VIR_ERR_RPC (39), VIR_FROM_RPC (7), "unknown procedure: N"; the connection goes on. A
call of another program (restore.x's, say) gets libvirtd's "Cannot find program N version
V", same code and domain (:func:`xdrstream.transport.drivers.unknown_procedure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import html
import logging
import os
import socket
import ssl
import stat
import threading
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from xdrstream.codec import DecodeError
from xdrstream.libvirt import protocol as protocols
from xdrstream.libvirt import remote
from xdrstream.libvirt.errors import (
    VIR_ERR_INTERNAL_ERROR,
    VIR_ERR_INVALID_ARG,
    VIR_ERR_NO_DOMAIN,
    VIR_ERR_NO_STORAGE_POOL,
    VIR_ERR_NO_STORAGE_VOL,
    VIR_ERR_OPERATION_FAILED,
    VIR_ERR_OPERATION_INVALID,
    VIR_ERR_RPC,
    VIR_ERR_STORAGE_VOL_EXIST,
    VIR_ERR_SYSTEM_ERROR,
    VIR_ERR_XML_ERROR,
    VIR_FROM_REMOTE,
    VIR_FROM_RPC,
    VIR_FROM_STORAGE,
    VIR_FROM_STREAMS,
    LibvirtError,
    libvirt_error,
)
from xdrstream.libvirt.protocol import RawBody, RemoteProtocol
from xdrstream.protocol import Procedure, Registry, Role
from xdrstream.transport import address as addresses
from xdrstream.transport import sparse
from xdrstream.transport.aio import (
    AsyncChannel,
    AsyncConnection,
    AsyncTLSChannel,
    accept_clients,
)
from xdrstream.transport.drivers import UNKNOWN_PROCEDURE, resolve
from xdrstream.transport.limits import Admission, Budget
from xdrstream.transport.options import Options
from xdrstream.transport.stream import Hole, Stream

log = logging.getLogger(__name__)

T = TypeVar("T")

VIR_FROM_QEMU = 10
# threads doing file I/O, whatever the number of clients (issue 15 part 2: <= 64 in all)
FILE_THREADS = 16
TLS_CONFIRMATION = b"\x01"  # sent after the TLS handshake, before any message (libvirt)
LIB_VERSION = 9_000_000  # the libvirt version we answer like (9.0.0)
_SUPPORTED_FEATURES = {remote.FEATURE_PROGRAM_KEEPALIVE, remote.FEATURE_REMOTE_CLOSE_CALLBACK}
# calls allowed before CONNECT_OPEN
_PRE_OPEN = ("AUTH_LIST", "CONNECT_SUPPORTS_FEATURE", "CONNECT_OPEN")
_RAW = RawBody()


class _RemoteRegistry(Registry):
    """The remote program with every procedure number "known" and every argument left as
    bytes: the handler decodes it (leniently, as libvirtd) and answers a body that does not
    decode, or a procedure the schema does not have, with libvirtd's error reply instead
    of the engine's connection-ending refusal."""

    def __init__(self, protocol: RemoteProtocol) -> None:
        super().__init__([protocol.program_definition(raw_args=True)])
        self._program = (protocol.program, protocol.version)

    def lookup(self, prog: int, vers: int, proc: int) -> Procedure | None:
        found = super().lookup(prog, vers, proc)
        if found is None and (prog, vers) == self._program:
            return Procedure(proc, "", _RAW, None)
        return found


@dataclass
class _Session:
    """Per-connection state."""

    opened: bool = False
    name: str | None = None


Handler = Callable[[_Session, Stream], Any]


def _no_vol(how: str) -> LibvirtError:
    return libvirt_error(
        VIR_ERR_NO_STORAGE_VOL, VIR_FROM_STORAGE, f"no storage vol with matching {how}"
    )


class StorageServer:
    """Serves libvirt's remote program for one directory pool (see the module docstring)."""

    def __init__(
        self,
        listen: str | addresses.Address,
        directory: str | os.PathLike[str],
        *,
        pool: str | None = None,
        tls: ssl.SSLContext | None = None,
        options: Options | None = None,
        protocol: protocols.Source | None = None,
        strict: bool = False,
    ) -> None:
        self.listen_address = addresses.parse_address(listen) if isinstance(listen, str) else listen
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise NotADirectoryError(f"libvirt storage: {self.directory} is not a directory")
        self.pool_name = pool or self.directory.name or "default"
        self.pool_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"file://{self.directory}").bytes
        if tls is not None:
            # libvirt clients poll once and read the confirmation byte as the first record
            # after the handshake; a TLS 1.3 session ticket arriving first makes that read
            # fail with EAGAIN ("Unable to read TLS confirmation"), so issue none.
            tls.num_tickets = 0
        self.tls = tls
        self.options = options or Options()
        self.address: addresses.Address | None = None
        # arguments decode as libvirtd decodes them (libtirpc-lenient) unless ``strict``
        self.protocol = protocols.load(protocol, lenient=not strict)
        self._registry = _RemoteRegistry(self.protocol)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Future[None] | None = None
        self._files: ThreadPoolExecutor | None = None
        self._connections: set[AsyncConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.budget = Budget(self.options.memory_budget)  # shared by all connections (§8.5)
        self._admission = Admission(self.options.max_clients)
        handlers: dict[str, Handler] = {
            "AUTH_LIST": self._auth_list,
            "CONNECT_SUPPORTS_FEATURE": self._supports_feature,
            "CONNECT_OPEN": self._connect_open,
            "CONNECT_CLOSE": self._void,
            "CONNECT_REGISTER_CLOSE_CALLBACK": self._void,
            "CONNECT_UNREGISTER_CLOSE_CALLBACK": self._void,
            "CONNECT_GET_TYPE": self._value("CONNECT_GET_TYPE", type="xdrstream"),
            "CONNECT_GET_VERSION": self._value("CONNECT_GET_VERSION", hv_ver=LIB_VERSION),
            "CONNECT_GET_LIB_VERSION": self._value("CONNECT_GET_LIB_VERSION", lib_ver=LIB_VERSION),
            "CONNECT_GET_URI": self._get_uri,
            "CONNECT_LIST_ALL_STORAGE_POOLS": self._list_pools,
            "STORAGE_POOL_LOOKUP_BY_NAME": self._pool_by_name,
            "STORAGE_POOL_LOOKUP_BY_VOLUME": self._pool_by_volume,
            "STORAGE_POOL_GET_INFO": self._pool_info,
            "STORAGE_POOL_GET_XML_DESC": self._pool_xml,
            "STORAGE_POOL_GET_AUTOSTART": self._pool_flag(
                "STORAGE_POOL_GET_AUTOSTART", "autostart", 0
            ),
            "STORAGE_POOL_IS_ACTIVE": self._pool_flag("STORAGE_POOL_IS_ACTIVE", "active", 1),
            "STORAGE_POOL_IS_PERSISTENT": self._pool_flag(
                "STORAGE_POOL_IS_PERSISTENT", "persistent", 1
            ),
            "STORAGE_POOL_LIST_ALL_VOLUMES": self._list_volumes,
            "STORAGE_VOL_LOOKUP_BY_NAME": self._vol_by_name,
            "STORAGE_VOL_LOOKUP_BY_KEY": self._vol_by_key,
            "STORAGE_VOL_LOOKUP_BY_PATH": self._vol_by_path,
            "STORAGE_VOL_GET_INFO": self._vol_info,
            "STORAGE_VOL_GET_XML_DESC": self._vol_xml,
            "STORAGE_VOL_GET_PATH": self._vol_path,
            "STORAGE_VOL_CREATE_XML": self._vol_create,
            "STORAGE_VOL_DELETE": self._vol_delete,
            "STORAGE_VOL_UPLOAD": self._upload,
            "STORAGE_VOL_DOWNLOAD": self._download,
            "DOMAIN_LOOKUP_BY_NAME": self._no_domain,
            "DOMAIN_SCREENSHOT": self._no_domain,
        }
        # numbers from the schema (issue 10); every one of these is in the built-in subset
        self._handlers = {self.protocol.number(name): h for name, h in handlers.items()}
        self._pre_open = {self.protocol.number(name) for name in _PRE_OPEN}
        self._streaming = {
            self.protocol.number(name) for name in ("STORAGE_VOL_UPLOAD", "STORAGE_VOL_DOWNLOAD")
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> addresses.Address:
        """Listen and serve on an event loop in a background thread; returns the bound
        address (port 0 becomes the real port)."""
        sock = addresses.listen(self.listen_address)
        sock.setblocking(False)
        self._sock = sock
        self.address = addresses.bound_address(sock, self.listen_address)
        self._files = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="xdrstream-libvirt-io")
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._loop, ready), name="xdrstream-libvirt", daemon=True
        )
        self._thread.start()
        ready.wait()
        return self.address

    def close(self) -> None:
        """Stop listening, close every connection (streams in progress end) and wait for
        their file I/O."""
        if self._thread is not None:
            assert self._loop is not None
            if self._stop is not None:
                self._loop.call_soon_threadsafe(resolve, self._stop)
            self._thread.join()
            self._thread = None
            self._loop.close()
            self._loop = None
        if self._files is not None:
            self._files.shutdown(wait=True)
            self._files = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if self.listen_address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(self.listen_address.path)

    def __enter__(self) -> StorageServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        accepting = asyncio.ensure_future(self._accept_loop())
        ready.set()
        try:
            await self._stop
        finally:
            accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await accepting
            for conn in list(self._connections):
                await conn.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept_loop(self) -> None:
        assert self._sock is not None
        await accept_clients(self._sock, self._admission, self._serve_connection, self._tasks)

    async def _serve_connection(self, sock: socket.socket, peer: str) -> None:
        """The server side of ``sock``: TLS handshake and libvirt's confirmation byte
        first when serving TLS, then the connection until it ends."""
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        options = self.options
        channel = (
            AsyncTLSChannel(sock, self.tls, True, peer=peer)
            if self.tls is not None
            else AsyncChannel(sock)
        )
        try:
            await channel.handshake(options.handshake_timeout)
            if self.tls is not None:  # libvirt's confirmation: the client's certificate is OK
                await channel.send_all([TLS_CONFIRMATION], options.timeout)
        except Exception as exc:  # TLS refused, peer gone during the handshake
            log.info("connection from %s refused: %s", peer, exc)
            channel.close()
            return
        conn = AsyncConnection(
            channel,
            Role.SERVER,
            self._registry,
            options,
            functools.partial(self.handle, _Session()),
            peer,
            self.budget,
        )
        conn.start()
        self._connections.add(conn)
        try:
            await conn.wait_closed()
        finally:
            self._connections.discard(conn)
            await conn.close()

    async def _io(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the file-I/O pool; seen to its end even if this task is
        cancelled meanwhile (the caller closes the descriptor it uses afterwards)."""
        future = asyncio.get_running_loop().run_in_executor(self._files, function, *args)
        cancelled = False
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return future.result()

    # ------------------------------------------------------------------ dispatch
    async def handle(self, session: _Session, stream: Stream) -> Any:
        call = stream.call
        assert call is not None
        proc = call.procedure
        handler = self._handlers.get(proc)
        if handler is None:  # as libvirtd's dispatcher answers (virnetserverprogram.c)
            raise libvirt_error(VIR_ERR_RPC, VIR_FROM_RPC, f"{UNKNOWN_PROCEDURE} {proc}")
        if not session.opened and proc not in self._pre_open:
            raise libvirt_error(VIR_ERR_INTERNAL_ERROR, VIR_FROM_REMOTE, "connection not open")
        stream.call = dataclasses.replace(call, args=self.decode_args(proc, call.args))
        if proc in self._streaming:
            return await handler(session, stream)
        # the others look at files (stat, scandir, statvfs): in the pool too
        return await self._io(handler, session, stream)

    def decode_args(self, proc: int, payload: bytes) -> Any:
        """The arguments of a call, decoded as libvirtd decodes them: leniently (unless
        the server is ``strict``) and, for a ``void`` procedure, ignoring the payload
        (libvirt's ``xdr_void``).  A body that does not decode gets libvirtd's answer
        (virnetmessage.c): VIR_ERR_RPC, VIR_FROM_RPC, "Unable to decode message payload";
        the connection goes on (spec.md §4.4)."""
        codec = self.protocol.codec(self.protocol.procedure(proc).arg_type)
        if codec is None:
            return None
        try:
            return codec.unpack(payload)
        except DecodeError as exc:
            log.info("procedure %d: arguments do not decode: %s", proc, exc)
            raise libvirt_error(
                VIR_ERR_RPC, VIR_FROM_RPC, "Unable to decode message payload"
            ) from None

    @staticmethod
    def _void(session: _Session, stream: Stream) -> None:
        return None

    def _value(self, procedure: str, **fields: Any) -> Handler:
        value = self.protocol.result(procedure, **fields)

        def answer(session: _Session, stream: Stream) -> Any:
            return value

        return answer

    def _result(self, stream: Stream, **fields: Any) -> Any:
        """The result of the call ``stream`` answers, built from ``fields``."""
        assert stream.call is not None
        return self.protocol.result(stream.call.procedure, **fields)

    def _auth_list(self, session: _Session, stream: Stream) -> Any:
        return self._result(stream, types=[remote.AUTH_NONE])

    def _supports_feature(self, session: _Session, stream: Stream) -> Any:
        return self._result(stream, supported=int(stream.args.feature in _SUPPORTED_FEATURES))

    def _connect_open(self, session: _Session, stream: Stream) -> None:
        session.opened = True
        session.name = stream.args.name

    def _get_uri(self, session: _Session, stream: Stream) -> Any:
        return self._result(stream, uri=session.name or "qemu:///session")

    @staticmethod
    def _no_domain(session: _Session, stream: Stream) -> None:
        raise libvirt_error(VIR_ERR_NO_DOMAIN, VIR_FROM_QEMU, "this server has no domains")

    # ------------------------------------------------------------------ pools
    def _pool(self) -> dict[str, Any]:
        return {"name": self.pool_name, "uuid": self.pool_uuid}

    def _check_pool(self, pool: Any) -> None:
        if pool.name != self.pool_name or bytes(pool.uuid) != self.pool_uuid:
            raise libvirt_error(
                VIR_ERR_NO_STORAGE_POOL,
                VIR_FROM_STORAGE,
                f"no storage pool with matching uuid '{uuid.UUID(bytes=bytes(pool.uuid))}' "
                f"({pool.name})",
            )

    def _list_pools(self, session: _Session, stream: Stream) -> Any:
        flags = stream.args.flags
        # our pool: active, persistent, not autostarted; each flag pair filters
        wanted = all(
            not flags & (yes | no) or flags & yes
            for yes, no in (
                (remote.LIST_ACTIVE, remote.LIST_INACTIVE),
                (remote.LIST_PERSISTENT, remote.LIST_TRANSIENT),
                (remote.LIST_NO_AUTOSTART, remote.LIST_AUTOSTART),
            )
        )
        pools = [self._pool()] if wanted else []
        return self._result(stream, pools=pools if stream.args.need_results else [], ret=len(pools))

    def _pool_by_name(self, session: _Session, stream: Stream) -> Any:
        if stream.args.name != self.pool_name:
            raise libvirt_error(
                VIR_ERR_NO_STORAGE_POOL,
                VIR_FROM_STORAGE,
                f"no storage pool with matching name '{stream.args.name}'",
            )
        return self._result(stream, pool=self._pool())

    def _pool_by_volume(self, session: _Session, stream: Stream) -> Any:
        self._volume_path(stream.args.vol)
        return self._result(stream, pool=self._pool())

    def _pool_flag(self, procedure: str, field: str, value: int) -> Handler:
        result = self.protocol.result(procedure, **{field: value})

        def answer(session: _Session, stream: Stream) -> Any:
            self._check_pool(stream.args.pool)
            return result

        return answer

    def _fs_numbers(self) -> tuple[int, int, int]:
        st = os.statvfs(self.directory)
        capacity = st.f_blocks * st.f_frsize
        return capacity, capacity - st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize

    def _pool_info(self, session: _Session, stream: Stream) -> Any:
        self._check_pool(stream.args.pool)
        capacity, allocation, available = self._fs_numbers()
        return self._result(
            stream,
            state=remote.POOL_RUNNING,
            capacity=capacity,
            allocation=allocation,
            available=available,
        )

    def _pool_xml(self, session: _Session, stream: Stream) -> Any:
        self._check_pool(stream.args.pool)
        capacity, allocation, available = self._fs_numbers()
        xml = (
            "<pool type='dir'>\n"
            f"  <name>{html.escape(self.pool_name)}</name>\n"
            f"  <uuid>{uuid.UUID(bytes=self.pool_uuid)}</uuid>\n"
            f"  <capacity unit='bytes'>{capacity}</capacity>\n"
            f"  <allocation unit='bytes'>{allocation}</allocation>\n"
            f"  <available unit='bytes'>{available}</available>\n"
            "  <source>\n  </source>\n"
            f"  <target>\n    <path>{html.escape(str(self.directory))}</path>\n  </target>\n"
            "</pool>\n"
        )
        return self._result(stream, xml=xml)

    # ------------------------------------------------------------------ volumes
    def _volume_names(self) -> list[str]:
        names = []
        for entry in os.scandir(self.directory):
            if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
                names.append(entry.name)
        return sorted(names)

    def _vol(self, name: str) -> dict[str, Any]:
        return {"pool": self.pool_name, "name": name, "key": str(self.directory / name)}

    def _file(self, name: str, how: str) -> Path:
        """The volume file ``name``; a missing one raises libvirt's "no storage vol"."""
        if not name or name.startswith(".") or "/" in name or "\0" in name:
            raise _no_vol(how)
        path = self.directory / name
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            raise _no_vol(how) from None
        if not stat.S_ISREG(mode):
            raise _no_vol(how)
        return path

    def _volume_path(self, vol: Any) -> Path:
        if vol.pool != self.pool_name:
            raise _no_vol(f"name '{vol.name}'")
        return self._file(vol.name, f"name '{vol.name}'")

    def _by_path(self, text: str, how: str) -> Any:
        path = Path(text)
        if path.parent != self.directory:
            raise _no_vol(how)
        return self._vol(self._file(path.name, how).name)

    def _list_volumes(self, session: _Session, stream: Stream) -> Any:
        self._check_pool(stream.args.pool)
        vols = [self._vol(name) for name in self._volume_names()]
        return self._result(stream, vols=vols if stream.args.need_results else [], ret=len(vols))

    def _vol_by_name(self, session: _Session, stream: Stream) -> Any:
        self._check_pool(stream.args.pool)
        name = stream.args.name
        self._file(name, f"name '{name}'")
        return self._result(stream, vol=self._vol(name))

    def _vol_by_key(self, session: _Session, stream: Stream) -> Any:
        key = stream.args.key
        return self._result(stream, vol=self._by_path(key, f"key {key}"))

    def _vol_by_path(self, session: _Session, stream: Stream) -> Any:
        text = stream.args.path
        vol = self._by_path(text, f"path '{text}'")
        return self._result(stream, vol=vol)

    def _vol_info(self, session: _Session, stream: Stream) -> Any:
        st = os.stat(self._volume_path(stream.args.vol))
        return self._result(
            stream, type=remote.VOL_FILE, capacity=st.st_size, allocation=st.st_blocks * 512
        )

    def _vol_path(self, session: _Session, stream: Stream) -> Any:
        return self._result(stream, name=str(self._volume_path(stream.args.vol)))

    def _vol_xml(self, session: _Session, stream: Stream) -> Any:
        path = self._volume_path(stream.args.vol)
        st = os.stat(path)
        xml = (
            "<volume type='file'>\n"
            f"  <name>{html.escape(path.name)}</name>\n"
            f"  <key>{html.escape(str(path))}</key>\n"
            f"  <capacity unit='bytes'>{st.st_size}</capacity>\n"
            f"  <allocation unit='bytes'>{st.st_blocks * 512}</allocation>\n"
            f"  <target>\n    <path>{html.escape(str(path))}</path>\n"
            "    <format type='raw'/>\n  </target>\n"
            "</volume>\n"
        )
        return self._result(stream, xml=xml)

    def _vol_create(self, session: _Session, stream: Stream) -> Any:
        """A new raw volume from its XML, as libvirt's directory pool makes one: a sparse
        file of ``capacity`` bytes with ``allocation`` of them allocated, file and
        directory entry synced before the answer (as an upload, spec.md §7.1.4)."""
        args = stream.args
        self._check_pool(args.pool)
        if args.flags:
            raise libvirt_error(
                VIR_ERR_INVALID_ARG, VIR_FROM_STORAGE, f"unsupported flags ({args.flags:#x})"
            )
        name, capacity, allocation = _parse_volume(args.xml)
        if name.startswith(".") or "/" in name or "\0" in name:
            # libvirt refuses '/' (storage_util.c); we also keep dot files out of the pool
            raise libvirt_error(
                VIR_ERR_OPERATION_INVALID,
                VIR_FROM_STORAGE,
                f"volume name '{name}' cannot contain '/' or start with '.'",
            )
        path = self.directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileExistsError:
            raise libvirt_error(VIR_ERR_STORAGE_VOL_EXIST, VIR_FROM_STORAGE, name) from None
        except OSError as exc:
            raise libvirt_error(
                VIR_ERR_SYSTEM_ERROR, VIR_FROM_STORAGE, f"cannot create {path}: {exc.strerror}"
            ) from exc
        done = False
        try:
            os.ftruncate(fd, capacity)
            if allocation:
                os.posix_fallocate(fd, 0, min(allocation, capacity))
            os.fsync(fd)
            _fsync_directory(self.directory)
            done = True
        except OSError as exc:
            raise libvirt_error(
                VIR_ERR_SYSTEM_ERROR, VIR_FROM_STORAGE, f"cannot create {path}: {exc.strerror}"
            ) from exc
        finally:
            os.close(fd)
            if not done:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return self._result(stream, vol=self._vol(name))

    def _vol_delete(self, session: _Session, stream: Stream) -> None:
        """Remove the volume's file; the directory synced before the answer."""
        args = stream.args
        if args.flags:
            raise libvirt_error(
                VIR_ERR_INVALID_ARG, VIR_FROM_STORAGE, f"unsupported flags ({args.flags:#x})"
            )
        path = self._volume_path(args.vol)
        try:
            os.unlink(path)
            _fsync_directory(self.directory)
        except OSError as exc:
            raise libvirt_error(
                VIR_ERR_SYSTEM_ERROR,
                VIR_FROM_STORAGE,
                f"cannot unlink file '{path}': {exc.strerror}",
            ) from exc

    @staticmethod
    def _transfer_flags(args: Any) -> bool:
        if args.flags & ~remote.SPARSE_STREAM:
            raise libvirt_error(
                VIR_ERR_INVALID_ARG, VIR_FROM_STORAGE, f"unsupported flags ({args.flags:#x})"
            )
        return bool(args.flags & remote.SPARSE_STREAM)

    async def _upload(self, session: _Session, stream: Stream) -> None:
        """Write the stream into the volume from ``offset``, each chunk in the file-I/O
        pool (the event loop never waits for the disk)."""
        args = stream.args
        self._transfer_flags(args)  # unsupported flags refused; holes: the engine (§11.3)
        path = await self._io(self._volume_path, args.vol)
        fd = await self._io(_open_at, path, os.O_WRONLY, args.offset)
        try:
            await stream.accept(None)
            left = args.length or None  # bytes the upload may still write (None: no limit)
            while (chunk := await stream.recv()) is not None:
                size = chunk.length if isinstance(chunk, Hole) else len(chunk)
                if left is not None and size > left:
                    raise libvirt_error(
                        VIR_ERR_SYSTEM_ERROR,
                        VIR_FROM_STREAMS,
                        f"cannot write to stream: more than the {args.length} bytes asked for",
                    )
                if isinstance(chunk, Hole):  # only in a sparse call: the engine refuses others
                    await self._io(_skip_hole, fd, chunk.length)
                else:
                    await self._io(_write_all, fd, chunk)
                if left is not None:
                    left -= size
            # acknowledged means on disk (spec.md §7.1.4); the volume existed already, so
            # no directory entry changed and only the file needs syncing
            await self._io(os.fsync, fd)
            await stream.complete(None)
        except OSError as exc:
            raise libvirt_error(
                VIR_ERR_SYSTEM_ERROR, VIR_FROM_STREAMS, f"cannot write {path}: {exc.strerror}"
            ) from exc
        finally:
            os.close(fd)

    async def _download(self, session: _Session, stream: Stream) -> None:
        args = stream.args
        is_sparse = self._transfer_flags(args)
        path = await self._io(self._volume_path, args.vol)
        fd = await self._io(_open_at, path, os.O_RDONLY, 0)
        try:
            size = (await self._io(os.fstat, fd)).st_size
            if args.offset > size:
                raise libvirt_error(
                    VIR_ERR_INVALID_ARG,
                    VIR_FROM_STORAGE,
                    f"offset {args.offset} is beyond the volume's {size} bytes",
                )
            end = min(size, args.offset + args.length) if args.length else size
            await stream.accept(None)
            buffer = memoryview(bytearray(self.options.chunk_size))
            extents = await self._io(_extents, fd, args.offset, end, is_sparse)
            for kind, start, stop in extents:
                if kind == "hole":
                    await stream.send_hole(stop - start)
                    continue
                while start < stop:
                    part = buffer[: min(len(buffer), stop - start)]
                    count = await self._io(os.preadv, fd, [part], start)
                    if count == 0:
                        raise libvirt_error(
                            VIR_ERR_OPERATION_FAILED,
                            VIR_FROM_STREAMS,
                            f"{path} shrank while being read (no data at {start})",
                        )
                    await stream.send(buffer[:count])
                    start += count
            await stream.end(None)
        except OSError as exc:
            raise libvirt_error(
                VIR_ERR_SYSTEM_ERROR, VIR_FROM_STREAMS, f"cannot read {path}: {exc.strerror}"
            ) from exc
        finally:
            os.close(fd)


# libvirt's scaled units (virScaleInteger): case-insensitive; plain bytes when none
_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1}
for _power, _letter in enumerate("kmgtpe", 1):
    _UNITS[_letter] = _UNITS[f"{_letter}ib"] = 1024**_power
    _UNITS[f"{_letter}b"] = 1000**_power


def _parse_volume(text: str) -> tuple[str, int, int]:
    """Name, capacity and allocation (capacity when absent, as libvirt) of a volume XML;
    what libvirt would refuse raises its XML error."""

    def refuse(why: str) -> LibvirtError:
        return libvirt_error(VIR_ERR_XML_ERROR, VIR_FROM_STORAGE, why)

    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise refuse(f"the volume XML does not parse: {exc}") from None
    if root.tag != "volume":
        raise refuse(f"unexpected root element <{root.tag}>, expecting <volume>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise refuse("missing volume name element")

    def scaled(tag: str) -> int | None:
        element = root.find(tag)
        if element is None:
            return None
        unit = element.get("unit", "").lower()
        if unit not in _UNITS:
            raise refuse(f"unknown suffix '{element.get('unit')}' in {tag}")
        number = (element.text or "").strip()
        if not number.isdigit():
            raise refuse(f"invalid {tag} value '{number}'")
        value = int(number) * _UNITS[unit]
        if value >= 1 << 64:
            raise refuse(f"{tag} {value} is too large")
        return value

    capacity = scaled("capacity")
    if capacity is None:
        raise refuse("missing capacity element")
    allocation = scaled("allocation")
    return name, capacity, capacity if allocation is None else allocation


def _fsync_directory(directory: Path) -> None:
    """Make a new or removed name in ``directory`` durable (the entry lives there)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_at(path: Path, flags: int, offset: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _skip_hole(fd: int, length: int) -> None:
    # as libvirt's fdstream: seek over the hole, the size ends there
    os.ftruncate(fd, os.lseek(fd, length, os.SEEK_CUR))


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _extents(fd: int, start: int, end: int, holes: bool) -> list[tuple[str, int, int]]:
    """The file's data and holes within [start, end) (all data when not ``holes``)."""
    if not holes:
        return [("data", start, end)] if end > start else []
    out: list[tuple[str, int, int]] = []
    for extent in sparse.iter_extents(fd, end):
        lo, hi = max(extent.offset, start), min(extent.offset + extent.length, end)
        if lo < hi:
            out.append((extent.kind, lo, hi))
    return out

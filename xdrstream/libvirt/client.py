"""A small client for libvirt's remote program: storage volumes and screenshots.

    from xdrstream.libvirt import LibvirtClient
    with LibvirtClient.open("qemu+unix:///session?socket=/run/x/libvirt-sock") as client:
        pool = client.lookup_pool("default")
        vol = client.lookup_volume(pool, "disk.img")
        client.upload(vol, "disk.img", sparse=True)       # holes travel as STREAM_HOLE
        client.download(vol, "copy.img", sparse=True)     # holes recreated as holes
    with LibvirtClient.open("test+unix:///default?socket=...") as client:
        mime = client.screenshot("test", "shot.png")

URIs: ``DRIVER+unix:///PATH?socket=SOCKET``, ``DRIVER+tcp://HOST[:PORT]/PATH``,
``DRIVER+tls://HOST[:PORT]/PATH`` (``tls=`` gives the client context; after the handshake
the client waits for libvirt's one-byte certificate confirmation), and the short forms of
:mod:`xdrstream.transport.address`.  The connection runs on the project's blocking
driver (:class:`~xdrstream.transport.blocking.BlockingConnection`), which answers the
daemon's keepalive PINGs and sends its own after ``keepalive`` seconds of silence.

Opening follows virsh's sequence: AUTH_LIST (only "none" is supported), the keepalive
feature check, CONNECT_OPEN, the event/close-callback feature checks and, when supported,
CONNECT_REGISTER_CLOSE_CALLBACK; :meth:`close` unregisters it and sends CONNECT_CLOSE.

Every failed call raises :class:`~xdrstream.libvirt.errors.LibvirtError` with libvirt's
``code``, ``domain`` and ``message`` (a missing volume: code 50, domain 18).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from xdrstream.libvirt import protocol as protocols
from xdrstream.libvirt import remote
from xdrstream.libvirt.errors import (
    VIR_ERR_NO_SUPPORT,
    VIR_ERR_OPERATION_FAILED,
    VIR_ERR_RPC,
    VIR_FROM_REMOTE,
    VIR_FROM_RPC,
    VIR_FROM_STREAMS,
    LibvirtError,
    libvirt_error,
)
from xdrstream.libvirt.protocol import RemoteProtocol
from xdrstream.protocol import Registry, Role
from xdrstream.transport import address as addresses
from xdrstream.transport import sparse as sparsemod
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.blocking import BlockingConnection, SocketChannel, TLSChannel
from xdrstream.transport.errors import RemoteFailure
from xdrstream.transport.options import Options
from xdrstream.transport.stream import BlockingStream, Hole

READ_BUFFER = 1 << 20
DEFAULT_KEEPALIVE = 5.0  # seconds, libvirt's client default
DEFAULT_KEEPALIVE_COUNT = 5


@dataclass(frozen=True)
class Transfer:
    """What an upload or download moved: ``data`` bytes, ``holes`` bytes as holes, the
    SHA-256 of the whole content (holes as zeros; None unless ``checksum=True`` was asked:
    hashing costs about as much as the transfer itself) and wall ``seconds``."""

    data: int
    holes: int
    sha256: str | None
    seconds: float

    @property
    def total(self) -> int:
        return self.data + self.holes


class _Digest:
    """Byte counts and, if asked, the SHA-256 of data and holes (holes hashed as zeros)."""

    def __init__(self, checksum: bool) -> None:
        self.hash = hashlib.sha256() if checksum else None
        self.data = 0
        self.holes = 0

    def add(self, view: memoryview) -> None:
        if self.hash is not None:
            self.hash.update(view)
        self.data += len(view)

    def hole(self, length: int) -> None:
        self.holes += length
        if self.hash is not None:
            for view in sparsemod.zeros(length):
                self.hash.update(view)

    def result(self, started: float) -> Transfer:
        digest = None if self.hash is None else self.hash.hexdigest()
        return Transfer(self.data, self.holes, digest, time.monotonic() - started)


class LibvirtClient:
    """An open connection to a libvirt daemon (see the module docstring)."""

    def __init__(
        self, conn: BlockingConnection, name: str | None, protocol: RemoteProtocol | None = None
    ) -> None:
        self.conn = conn
        self.name = name
        self.protocol = protocol or protocols.builtin(lenient=True)
        self.schema = self.protocol.schema
        self.keepalive_supported = False
        self._close_callback = False
        self._opened = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        uri: str | addresses.Address,
        *,
        name: str | None = None,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        keepalive: float | None = DEFAULT_KEEPALIVE,
        keepalive_count: int = DEFAULT_KEEPALIVE_COUNT,
        timeout: float | None = 60.0,
        protocol: protocols.Source | None = None,
        strict: bool = False,
    ) -> LibvirtClient:
        """Connect to ``uri`` and open the driver it names (``name`` overrides the
        CONNECT_OPEN name).  ``keepalive`` = None sends no PINGs of our own.
        ``protocol``: the remote program to speak (:func:`xdrstream.libvirt.protocol.load`:
        a libvirt source tree, ``.x`` files or a loaded one; default the built-in subset).
        Replies are decoded as libvirt's own client decodes them (the codec's lenient
        mode) unless ``strict``."""
        remote_protocol = protocols.load(protocol, lenient=not strict)
        address = addresses.parse_address(uri) if isinstance(uri, str) else uri
        options = Options(
            timeout=timeout, keepalive_interval=keepalive, keepalive_count=keepalive_count
        )
        channel = _channel(address, tls, server_hostname, options.handshake_timeout)
        registry = Registry(remote_protocol.programs())  # with qemu/lxc when loaded
        conn = BlockingConnection(channel, Role.CLIENT, registry, options, str(address))
        conn.start()
        client = cls(
            conn, name if name is not None else remote.connect_name(address), remote_protocol
        )
        try:
            client._handshake()
        except BaseException:
            conn.close()
            raise
        return client

    def _handshake(self) -> None:
        auth = self.call("AUTH_LIST")
        if remote.AUTH_NONE not in auth.types:
            raise libvirt_error(
                VIR_ERR_NO_SUPPORT,
                VIR_FROM_REMOTE,
                f"the daemon requires authentication {list(auth.types)}; only 'none' is supported",
            )
        self.keepalive_supported = self.supports_feature(remote.FEATURE_PROGRAM_KEEPALIVE)
        self.call("CONNECT_OPEN", name=self.name, flags=0)
        self._opened = True
        self.supports_feature(remote.FEATURE_REMOTE_EVENT_CALLBACK)
        if self.supports_feature(remote.FEATURE_REMOTE_CLOSE_CALLBACK):
            self.call("CONNECT_REGISTER_CLOSE_CALLBACK")
            self._close_callback = True

    def close(self) -> None:
        """CONNECT_CLOSE (after unregistering the close callback), then close the socket.
        A connection that is already broken is just closed."""
        try:
            if self._opened and self.conn.error is None:
                if self._close_callback:
                    self.call("CONNECT_UNREGISTER_CLOSE_CALLBACK")
                self.call("CONNECT_CLOSE")
        finally:
            self._opened = False
            self.conn.close()

    def __enter__(self) -> LibvirtClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls
    def call(self, procedure: str | int, args: Any = None, /, **fields: Any) -> Any:
        """Call ``procedure`` (a name such as ``"DOMAIN_GET_INFO"`` -- libvirt's
        ``REMOTE_PROC_`` name, prefix optional -- or a number) and return its result (the
        generated ``..._ret`` value, None for void).  The arguments are ``args`` (the
        generated ``..._args`` value, or a mapping) or keyword fields::

            dom = client.call("DOMAIN_LOOKUP_BY_NAME", name="test").dom
            info = client.call("DOMAIN_GET_INFO", dom=dom)

        A procedure with a data stream is opened with :meth:`open_stream` instead.  With
        libvirt's source tree loaded, the qemu and lxc programs' procedures are called by
        their full names (``"QEMU_PROC_DOMAIN_MONITOR_COMMAND"``)."""
        program, proc = self.protocol.resolve(procedure)
        if proc.stream is not None:
            raise TypeError(f"{proc.name} has a data stream: use open_stream()")
        value = program.args(proc.number, args, **fields)
        try:
            return self.conn.call(program.program, program.version, proc.number, value)
        except RemoteFailure as failure:
            raise LibvirtError.from_failure(failure) from None

    def open_stream(
        self, procedure: str | int, args: Any = None, /, **fields: Any
    ) -> BlockingStream:
        """Call a procedure that has a data stream (``DOMAIN_SCREENSHOT``,
        ``STORAGE_VOL_UPLOAD``...; arguments as for :meth:`call`); the stream once the
        daemon's reply has come (its result in ``stream.result``)."""
        program, proc = self.protocol.resolve(procedure)
        value = program.args(proc.number, args, **fields)
        try:
            return self.conn.open_stream(program.program, program.version, proc.number, value)
        except RemoteFailure as failure:
            raise LibvirtError.from_failure(failure) from None

    def supports_feature(self, feature: int) -> bool:
        return bool(self.call("CONNECT_SUPPORTS_FEATURE", feature=feature).supported)

    def uri(self) -> str:
        return str(self.call("CONNECT_GET_URI").uri)

    # ------------------------------------------------------------------ storage
    def list_pools(self, flags: int = 0) -> list[Any]:
        return list(self.call("CONNECT_LIST_ALL_STORAGE_POOLS", need_results=1, flags=flags).pools)

    def lookup_pool(self, name: str) -> Any:
        """The pool named ``name`` (a ``vir_pool``: name and UUID)."""
        return self.call("STORAGE_POOL_LOOKUP_BY_NAME", name=name).pool

    def pool_info(self, pool: Any) -> Any:
        """State, capacity, allocation and available bytes of ``pool``."""
        return self.call("STORAGE_POOL_GET_INFO", pool=pool)

    def list_volumes(self, pool: Any) -> list[Any]:
        args = {"pool": pool, "need_results": 1, "flags": 0}
        return list(self.call("STORAGE_POOL_LIST_ALL_VOLUMES", args).vols)

    def lookup_volume(self, pool: Any, name: str) -> Any:
        """The volume ``name`` of ``pool`` (a ``vir_vol``: pool name, name and key)."""
        if isinstance(pool, str):
            pool = self.lookup_pool(pool)
        return self.call("STORAGE_VOL_LOOKUP_BY_NAME", pool=pool, name=name).vol

    def volume_info(self, vol: Any) -> Any:
        """Type, capacity and allocation of ``vol``."""
        return self.call("STORAGE_VOL_GET_INFO", vol=vol)

    def volume_path(self, vol: Any) -> str:
        return str(self.call("STORAGE_VOL_GET_PATH", vol=vol).name)

    @staticmethod
    def _transfer_args(vol: Any, offset: int, length: int, sparse: bool) -> dict[str, Any]:
        flags = remote.SPARSE_STREAM if sparse else 0
        return {"vol": vol, "offset": offset, "length": length, "flags": flags}

    def upload(
        self,
        vol: Any,
        source: str | os.PathLike[str],
        *,
        sparse: bool = False,
        offset: int = 0,
        length: int = 0,
        checksum: bool = False,
    ) -> Transfer:
        """Upload the file ``source`` into ``vol`` from ``offset`` (``length`` 0: all of
        it).  With ``sparse`` the file's holes (SEEK_DATA/SEEK_HOLE) go as STREAM_HOLE and
        the daemon recreates them; without, holes are read and sent as zeros.
        ``checksum``: also compute the SHA-256 of what was sent."""
        started = time.monotonic()
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            stream = self.open_stream(
                "STORAGE_VOL_UPLOAD", self._transfer_args(vol, offset, length, sparse)
            )
            digest = _Digest(checksum)
            try:
                for item in sparsemod.iter_sparse(fd, bytearray(READ_BUFFER), sparse=sparse):
                    if isinstance(item, Hole):
                        stream.send_hole(item.length)
                        digest.hole(item.length)
                    else:
                        stream.send(item.view)
                        digest.add(item.view)
                stream.finish()
            except RemoteFailure as failure:
                raise LibvirtError.from_failure(failure) from None
            except BaseException:
                _abort_quietly(stream)
                raise
            return digest.result(started)
        finally:
            os.close(fd)

    def download(
        self,
        vol: Any,
        dest: str | os.PathLike[str],
        *,
        sparse: bool = False,
        offset: int = 0,
        length: int = 0,
        checksum: bool = False,
    ) -> Transfer:
        """Download ``vol`` (from ``offset``, ``length`` 0: to its end) into the file
        ``dest`` (created or truncated).  With ``sparse`` the daemon sends holes, which are
        recreated as holes (seek, and the final size set with ftruncate).
        ``checksum``: also compute the SHA-256 of what arrived.  ``dest`` is synced to
        stable storage (fsync) before this returns (spec.md §7.1.4)."""
        started = time.monotonic()
        stream = self.open_stream(
            "STORAGE_VOL_DOWNLOAD", self._transfer_args(vol, offset, length, sparse)
        )
        digest = _Digest(checksum)
        ok = False
        try:
            created = not os.path.lexists(dest)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except BaseException:
            _abort_quietly(stream)
            raise
        try:
            writer = sparsemod.SparseWriter(fd, writeback=sparsemod.WRITEBACK)  # fsynced below
            for chunk in _chunks(stream):
                if isinstance(chunk, Hole):
                    writer.hole(chunk.length)
                    digest.hole(chunk.length)
                else:
                    writer.write(chunk)
                    digest.add(chunk)
            writer.finish()
            os.fsync(fd)  # success means on disk (spec.md §7.1.4), its name too
            if created:
                sparsemod.fsync_directory(os.path.dirname(os.path.abspath(dest)))
            ok = True
        finally:
            os.close(fd)
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(dest)
        return digest.result(started)

    # ------------------------------------------------------------------ domains
    def lookup_domain(self, name: str) -> Any:
        return self.call("DOMAIN_LOOKUP_BY_NAME", name=name).dom

    def screenshot(self, domain: Any, dest: str | os.PathLike[str], screen: int = 0) -> str:
        """Save a screenshot of ``domain`` (a name or a ``vir_domain``) into ``dest``;
        returns its MIME type (the test driver gives image/png)."""
        if isinstance(domain, str):
            domain = self.lookup_domain(domain)
        stream = self.open_stream("DOMAIN_SCREENSHOT", dom=domain, screen=screen, flags=0)
        mime = stream.result.mime
        ok = False
        try:
            with open(dest, "wb") as out:
                for chunk in _chunks(stream):
                    if isinstance(chunk, Hole):  # the procedure is not @sparse: cannot happen
                        raise libvirt_error(
                            VIR_ERR_OPERATION_FAILED, VIR_FROM_STREAMS, "hole in a screenshot"
                        )
                    out.write(chunk)
            ok = True
        finally:
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(dest)
        return str(mime) if mime is not None else ""


def _channel(
    address: addresses.Address,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
    timeout: float,
) -> SocketChannel:
    """A connected channel; over TLS, handshake and then libvirt's confirmation byte."""
    sock = addresses.connect(address, timeout)
    if tls is None and not address.tls:
        return SocketChannel(sock)
    context = tls or tlsmod.client_context()
    host = server_hostname or (address.host if address.kind == "tcp" else "localhost")
    channel = TLSChannel(sock, context, False, host, peer=str(address))
    try:
        channel.handshake(timeout)
        _tls_confirmation(channel, str(address), timeout)
    except BaseException:
        channel.close()
        raise
    return channel


def _tls_confirmation(channel: TLSChannel, peer: str, timeout: float) -> None:
    """After the TLS handshake a libvirt server checks the client's certificate and sends
    one byte, 1 for success, before any RPC message (libvirt's virnetclient.c)."""
    byte = memoryview(bytearray(1))
    timer = threading.Timer(timeout, channel.shutdown)  # a silent server: recv sees EOF
    timer.start()
    try:
        count = channel.recv_into(byte)
        what = "closed the connection" if count == 0 else f"sent {bytes(byte).hex()}"
    except tlsmod.TLSError as exc:  # e.g. the server's alert about our certificate
        count, what = 0, str(exc)
    finally:
        timer.cancel()
    if count != 1 or byte[0] != 1:
        raise libvirt_error(
            VIR_ERR_RPC,
            VIR_FROM_RPC,
            f"server verification (of our certificate or IP address) failed: {peer} {what}",
        )


def _chunks(stream: BlockingStream) -> Iterator[memoryview | Hole]:
    """A download's chunks; the daemon's stream error becomes a LibvirtError, and leaving
    early aborts the stream."""
    done = False
    try:
        while True:
            try:
                chunk = stream.recv()
            except RemoteFailure as failure:
                done = True
                raise LibvirtError.from_failure(failure) from None
            if chunk is None:
                done = True
                return
            yield chunk
    finally:
        if not done:
            _abort_quietly(stream)


def _abort_quietly(stream: BlockingStream) -> None:
    with contextlib.suppress(Exception):
        stream.abort()

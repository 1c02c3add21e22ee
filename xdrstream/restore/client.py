"""The reference client of ``restore.x``: blocking :class:`Client` and :class:`AsyncClient`.

    from xdrstream.restore.client import Client
    with Client.connect("unix:/tmp/x.sock") as client:          # or tcp:/tls: addresses
        client.ping()
        result = client.restore("guest.img", variant=2)          # path, file or iterable
        result = client.save("out.img", variant=3, name="67108864:7")
        print(result.bytes, result.holes, result.seconds, result.length)

    async with await AsyncClient.connect("tcp:127.0.0.1:4000", tls=ctx) as client:
        await client.restore(source, variant=1)
        stream = await client.open_restore(variant=2, name="x")  # a stream.Stream
        await stream.send(buf); await stream.finish()

``restore(source, variant=1|2|3, name=..., sparse=True, progress=None)`` uploads ``source``:
a path, a binary file object, or any iterable of bytes-like objects (and
:class:`~.stream.Hole`).  From a regular file, holes are found with SEEK_DATA/SEEK_HOLE
and sent as holes (spec.md §7.1.3) unless ``sparse=False``; data is read into one reused
buffer.  ``save(dest, variant=..., name=...)`` downloads into a path or a binary file object
(holes are recreated as holes in regular files, written as zeros elsewhere) or calls
``dest(chunk)`` for each chunk when ``dest`` is callable (a path is removed again if the
save fails).  ``digest`` (e.g. ``hashlib.sha256()``, anything with ``update``) is fed the
content as it moves, holes as zeros: what ``restore`` sent, what ``save`` wrote, without
reading the file again.  Both return a
:class:`TransferResult`; a server failure raises :class:`~.errors.RemoteFailure` (its
``code`` and ``message`` are the server's), a lost connection
:class:`~.errors.ConnectionLost`; an exception while reading the source or writing the
destination aborts the stream and propagates.  ``progress(done_bytes)`` is called after each
chunk, in the caller's thread.

``Client(conn)`` wraps a :class:`~.blocking.BlockingConnection`; ``open_restore``/``open_save``
return the raw stream for event-driven use; ``call(proc, args)`` makes any call of the
program.
"""

from __future__ import annotations

import contextlib
import os
import queue
import ssl
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

from xdrstream.protocol.framing import LEGACY_STREAM_PAYLOAD
from xdrstream.restore.program import (
    PROC_ECHO,
    PROC_GET_INFO,
    PROC_PING,
    PROGRAM,
    RESTORE_PROCS,
    SAVE_PROCS,
    VERSION,
    schema,
)
from xdrstream.transport import address as addresses
from xdrstream.transport import sparse as sparsemod
from xdrstream.transport.blocking import BlockingConnection
from xdrstream.transport.options import Options
from xdrstream.transport.stream import BlockingStream, Hole, Stream, iter_items

if TYPE_CHECKING:  # the blocking Client runs without asyncio (start-up of the CLI)
    from xdrstream.transport.aio import AsyncConnection

Source = str | os.PathLike[str] | BinaryIO | IO[bytes] | Iterable[Any]
Dest = str | os.PathLike[str] | BinaryIO | IO[bytes] | Callable[[memoryview], Any]
Progress = Callable[[int], Any]


class Digest(Protocol):
    """What ``digest=`` takes: a :mod:`hashlib` object, or anything with ``update``."""

    def update(self, data: memoryview, /) -> None: ...


# Four whole frames of the default chunk size, so a read never leaves a runt frame behind.
READ_BUFFER = 4 * LEGACY_STREAM_PAYLOAD


@dataclass(frozen=True)
class TransferResult:
    """What a restore or save moved: ``bytes`` of data, ``holes`` bytes sent/received as
    holes, ``length`` as the server's reply reports it, wall ``seconds``."""

    bytes: int
    holes: int
    length: int
    seconds: float
    variant: int

    @property
    def total(self) -> int:
        return self.bytes + self.holes


def _procedure(table: dict[int, int], variant: int) -> int:
    if variant not in table:
        raise ValueError(f"variant must be 1, 2 or 3, not {variant!r}")
    return table[variant]


# --------------------------------------------------------------------------- sources
def _iter_fd(fd: int, sparse: bool) -> Iterator[memoryview | Hole]:
    buffer = bytearray(READ_BUFFER)
    for item in sparsemod.iter_sparse(fd, buffer, sparse=sparse):
        yield item if isinstance(item, Hole) else item.view


def _file_fd(obj: object, method: str) -> int:
    """The descriptor under a file object that has ``method`` ("read" or "write"), or -1
    if it has none; what the object buffered for writing is flushed first, since we then
    read or write the descriptor itself."""
    fileno = getattr(obj, "fileno", None)
    if fileno is None or not hasattr(obj, method):
        return -1
    try:
        fd = int(fileno())
    except (OSError, ValueError):
        return -1
    flush = getattr(obj, "flush", None)
    if fd >= 0 and callable(flush) and getattr(obj, "writable", lambda: method == "write")():
        flush()
    return fd


def iter_source(source: Source, sparse: bool = True) -> Iterator[memoryview | Hole]:
    """``source`` as data views (valid until the next item) and holes."""
    if isinstance(source, (str, os.PathLike)):
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield from _iter_fd(fd, sparse)
        finally:
            os.close(fd)
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source):
            yield memoryview(source)
        return
    fd = _file_fd(source, "read")
    if fd >= 0:
        yield from _iter_fd(fd, sparse)
        return
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        view = memoryview(bytearray(READ_BUFFER))
        while count := readinto(view):
            yield view[:count]
        return
    items: Iterable[Any] = source
    yield from iter_items(items)


def _length(result: Any) -> int:
    return int(getattr(result, "length", 0) or 0)


# --------------------------------------------------------------------------- shared, I/O-free
_T = TypeVar("_T", bound="_Tally")


def _feed(digest: Digest, item: memoryview | Hole) -> None:
    if not isinstance(item, Hole):
        digest.update(item)
        return
    for view in sparsemod.zeros(item.length):
        digest.update(view)


class _Digester:
    """Feeds a transfer's items to its digest, on a thread of its own when ``threaded``:
    :meth:`start` hands the item over, the caller sends or writes it meanwhile (hashlib and
    the system call both release the GIL, so the two run on two cores), and :meth:`wait`
    returns once the item is hashed, before its buffer may be reused.  At most one item is
    in flight.  Without a digest both are no-ops; unthreaded (asyncio), ``start`` hashes."""

    def __init__(self, digest: Digest | None, threaded: bool) -> None:
        self.digest = digest
        self._thread: threading.Thread | None = None
        self._pending = False
        self._error: BaseException | None = None
        if digest is not None and threaded:
            self._todo: queue.SimpleQueue[memoryview | Hole | None] = queue.SimpleQueue()
            self._done: queue.SimpleQueue[None] = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._run, args=(digest,), name="xdrstream-sha256", daemon=True
            )
            self._thread.start()

    def _run(self, digest: Digest) -> None:
        while (item := self._todo.get()) is not None:
            if self._error is None:
                try:
                    _feed(digest, item)
                except BaseException as exc:  # reported by wait(), in the caller's thread
                    self._error = exc
            self._done.put(None)

    def start(self, item: memoryview | Hole) -> None:
        if self.digest is None:
            return
        if self._thread is None:
            _feed(self.digest, item)
            return
        self._todo.put(item)
        self._pending = True

    def wait(self) -> None:
        if self._pending:
            self._done.get()
            self._pending = False
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = None


class _Tally:
    """One transfer's clock and counts (bytes of data, bytes of holes), its
    :class:`_Digester`, the progress calls and the :class:`TransferResult`: what
    :class:`Client` and :class:`AsyncClient` share.  ``with`` it, the digester's thread
    ends on the way out."""

    def __init__(
        self, variant: int, progress: Progress | None, digest: Digest | None, threaded: bool
    ) -> None:
        self.started = time.monotonic()
        self.variant = variant
        self.progress = progress
        self.digester = _Digester(digest, threaded)
        self.moved = self.holes = 0  # bytes of data, of holes

    def count(self, item: memoryview | Hole) -> None:
        """Count one item that was sent or written; report the progress."""
        if isinstance(item, Hole):
            self.holes += item.length
        else:
            self.moved += len(item)
        if self.progress is not None:
            self.progress(self.moved + self.holes)

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.digester.close()

    def result(self, reply: Any) -> TransferResult:
        elapsed = time.monotonic() - self.started
        return TransferResult(self.moved, self.holes, _length(reply), elapsed, self.variant)


class _Sink(_Tally):
    """Where a save goes (a sparse file, a file object or a callable) and its
    :class:`_Tally`: ``with`` it, the destination is closed on the way out, kept (written,
    synced) on success and removed on failure."""

    def __init__(
        self,
        dest: Dest,
        variant: int,
        progress: Progress | None,
        digest: Digest | None,
        threaded: bool,
    ) -> None:
        super().__init__(variant, progress, digest, threaded)
        self._close_fd = -1
        self._path: str | os.PathLike[str] | None = None
        self._writer: sparsemod.SparseWriter | None = None
        self._write: Callable[[memoryview], Any] | None = None
        if isinstance(dest, (str, os.PathLike)):
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            self._close_fd = fd
            self._path = dest
            # fsynced at the end (close): have the kernel write it out as it comes
            self._writer = sparsemod.SparseWriter(fd, writeback=sparsemod.WRITEBACK)
            return
        fd = _file_fd(dest, "write")
        if fd >= 0:
            self._writer = sparsemod.SparseWriter(fd)
            return
        if hasattr(dest, "write"):
            self._write = dest.write
        elif callable(dest):
            self._write = dest
        else:
            raise TypeError(
                f"cannot save into {type(dest).__name__}: need a path, file or callable"
            )

    def data(self, view: memoryview) -> None:
        if self._writer is not None:
            self._writer.write(view)
        else:
            assert self._write is not None
            self._write(view)

    def take(self, chunk: memoryview | Hole) -> None:
        """Write one received chunk (hashing it meanwhile), count it, report the progress."""
        self.digester.start(chunk)
        if isinstance(chunk, Hole):
            self.hole(chunk.length)
        else:
            self.data(chunk)
        self.digester.wait()
        self.count(chunk)

    def hole(self, length: int) -> None:
        if self._writer is not None:
            self._writer.hole(length)
            return
        for view in sparsemod.zeros(length):
            self.data(view)

    def close(self, ok: bool) -> None:
        try:
            if ok and self._writer is not None:
                self._writer.finish()
                if self._path is not None:  # a file we made: success means on disk (§7.1.4)
                    os.fsync(self._close_fd)
                    sparsemod.fsync_directory(os.path.dirname(os.path.abspath(self._path)))
        except BaseException:
            ok = False
            raise
        finally:
            if self._close_fd >= 0:
                os.close(self._close_fd)
                self._close_fd = -1
            if not ok and self._path is not None:  # no half-saved file left behind
                with contextlib.suppress(OSError):
                    os.unlink(self._path)

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            super().__exit__(kind, *rest)
        finally:
            self.close(kind is None)


class _AbortOnError:
    """``with``/``async with`` around a stream's use: an exception aborts the stream (if
    still open) and propagates; the abort's own failure is dropped, since the first error
    matters and the connection may be gone."""

    def __init__(self, stream: BlockingStream | Stream) -> None:
        self.stream = stream

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None and not self.stream.closed:
            assert isinstance(self.stream, BlockingStream)
            with contextlib.suppress(Exception):
                self.stream.abort()

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None and not self.stream.closed:
            assert isinstance(self.stream, Stream)
            with contextlib.suppress(Exception):
                await self.stream.abort()


class _Calls:
    """The calls of the program, built once for both clients: each returns the procedure
    number and its argument (or raises ValueError for an unknown variant)."""

    def __init__(self) -> None:
        self.schema = schema()

    def _echo(self, data: bytes) -> tuple[int, Any]:
        return PROC_ECHO, self.schema["xs_echo_args"](data=data)

    def _restore(self, variant: int, name: str, size_hint: int) -> tuple[int, Any]:
        args = self.schema["xs_restore_args"](name=name, size_hint=size_hint, flags=0)
        return _procedure(RESTORE_PROCS, variant), args

    def _save(self, variant: int, name: str) -> tuple[int, Any]:
        return _procedure(SAVE_PROCS, variant), self.schema["xs_save_args"](name=name, flags=0)


# --------------------------------------------------------------------------- blocking
class Client(_Calls):
    """Blocking client of the ``restore.x`` program (see the module docstring)."""

    def __init__(self, conn: BlockingConnection) -> None:
        super().__init__()
        self.conn = conn

    @classmethod
    def connect(
        cls,
        target: str | addresses.Address,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        options: Options | None = None,
    ) -> Client:
        conn = BlockingConnection.connect(
            target, [schema()], tls=tls, server_hostname=server_hostname, options=options
        )
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, procedure: int, args: Any = None) -> Any:
        return self.conn.call(PROGRAM, VERSION, procedure, args)

    def ping(self) -> None:
        self.call(PROC_PING)

    def echo(self, data: bytes) -> bytes:
        return bytes(self.call(*self._echo(data)).data)

    def info(self) -> Any:
        return self.call(PROC_GET_INFO)

    def open_restore(
        self, variant: int = 2, name: str = "image", size_hint: int = 0
    ) -> BlockingStream:
        return self.conn.open_stream(PROGRAM, VERSION, *self._restore(variant, name, size_hint))

    def open_save(self, variant: int = 2, name: str = "image") -> BlockingStream:
        return self.conn.open_stream(PROGRAM, VERSION, *self._save(variant, name))

    def restore(
        self,
        source: Source,
        variant: int = 2,
        *,
        name: str = "image",
        size_hint: int = 0,
        sparse: bool = True,
        progress: Progress | None = None,
        digest: Digest | None = None,
    ) -> TransferResult:
        with _Tally(variant, progress, digest, threaded=True) as tally:
            stream = self.open_restore(variant, name, size_hint)
            with _AbortOnError(stream):
                for item in iter_source(source, sparse):
                    tally.digester.start(item)  # hashed while it is sent
                    if isinstance(item, Hole):
                        stream.send_hole(item.length)
                    else:
                        stream.send(item)
                    tally.digester.wait()  # before iter_source reuses the buffer
                    tally.count(item)
                return tally.result(stream.finish())

    def save(
        self,
        dest: Dest,
        variant: int = 2,
        *,
        name: str = "image",
        progress: Progress | None = None,
        digest: Digest | None = None,
    ) -> TransferResult:
        with _Sink(dest, variant, progress, digest, threaded=True) as sink:
            stream = self.open_save(variant, name)
            with _AbortOnError(stream):
                for chunk in stream:
                    sink.take(chunk)
        return sink.result(stream.result)


# --------------------------------------------------------------------------- asyncio
class AsyncClient(_Calls):
    """asyncio client of the ``restore.x`` program (same methods as :class:`Client`)."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    @classmethod
    async def connect(
        cls,
        target: str | addresses.Address,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        options: Options | None = None,
    ) -> AsyncClient:
        from xdrstream.transport.aio import AsyncConnection

        conn = await AsyncConnection.connect(
            target, [schema()], tls=tls, server_hostname=server_hostname, options=options
        )
        return cls(conn)

    async def close(self) -> None:
        await self.conn.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def call(self, procedure: int, args: Any = None) -> Any:
        return await self.conn.call(PROGRAM, VERSION, procedure, args)

    async def ping(self) -> None:
        await self.call(PROC_PING)

    async def echo(self, data: bytes) -> bytes:
        return bytes((await self.call(*self._echo(data))).data)

    async def info(self) -> Any:
        return await self.call(PROC_GET_INFO)

    async def open_restore(
        self, variant: int = 2, name: str = "image", size_hint: int = 0
    ) -> Stream:
        call = self._restore(variant, name, size_hint)
        return await self.conn.open_stream(PROGRAM, VERSION, *call)

    async def open_save(self, variant: int = 2, name: str = "image") -> Stream:
        return await self.conn.open_stream(PROGRAM, VERSION, *self._save(variant, name))

    async def restore(
        self,
        source: Source | AsyncIterable[Any],
        variant: int = 2,
        *,
        name: str = "image",
        size_hint: int = 0,
        sparse: bool = True,
        progress: Progress | None = None,
        digest: Digest | None = None,
    ) -> TransferResult:
        """As :meth:`Client.restore`; ``source`` may also be an async iterable.  Reading a
        local file happens on the event loop (page-cache reads are short)."""
        stream = await self.open_restore(variant, name, size_hint)
        # hashes on the loop
        with _Tally(variant, progress, digest, threaded=False) as tally:
            async with _AbortOnError(stream):
                async for item in _aiter_source(source, sparse):
                    tally.digester.start(item)
                    if isinstance(item, Hole):
                        await stream.send_hole(item.length)
                    else:
                        await stream.send(item)
                    tally.count(item)
                return tally.result(await stream.finish())

    async def save(
        self,
        dest: Dest,
        variant: int = 2,
        *,
        name: str = "image",
        progress: Progress | None = None,
        digest: Digest | None = None,
    ) -> TransferResult:
        with _Sink(dest, variant, progress, digest, threaded=False) as sink:
            stream = await self.open_save(variant, name)
            async with _AbortOnError(stream):
                async for chunk in stream:
                    sink.take(chunk)
        return sink.result(stream.result)


def _aiter_source(
    source: Source | AsyncIterable[Any], sparse: bool
) -> AsyncIterator[memoryview | Hole]:
    if isinstance(source, AsyncIterable):
        return _aiter_items(source)
    return _AsyncWrap(iter_source(source, sparse))


async def _aiter_items(items: AsyncIterable[Any]) -> AsyncIterator[memoryview | Hole]:
    async for item in items:
        if isinstance(item, Hole):
            yield item
        elif len(item):
            yield memoryview(item)


class _AsyncWrap:
    """A sync iterator as an async one, without an async generator's per-item cost."""

    def __init__(self, items: Iterator[memoryview | Hole]) -> None:
        self._items = items

    def __aiter__(self) -> _AsyncWrap:
        return self

    async def __anext__(self) -> memoryview | Hole:
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None

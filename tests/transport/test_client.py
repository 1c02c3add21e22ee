"""Reference client against the reference server with QEMU stub endpoints (real sockets,
real stub processes): every variant x {unix, tcp, tls} x both directions, with the
blocking and the asyncio client.  Restores are verified by the stub's SHA-256 report,
saves by the SHA-256 of the saved file."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from xdrstream.endpoints import qemu_stub
from xdrstream.restore.client import AsyncClient, Client
from xdrstream.restore.server import RestoreServer, ServerThread
from xdrstream.transport.errors import RemoteFailure
from xdrstream.transport.sparse import supports_holes
from xdrstream.transport.stream import Hole
from xdrstream.transport.tls import client_context, server_context

SIZE = 3 << 20
SEED = 11
VARIANTS = [1, 2, 3]


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    server.private_key_pem.write_to_path(str(root / "key.pem"))
    return Pki(root / "ca.pem", root / "cert.pem", root / "key.pem")


@dataclass
class Running:
    thread: ServerThread
    client_tls: ssl.SSLContext | None

    @property
    def address(self) -> str:
        return str(self.thread.address)

    @property
    def server(self) -> RestoreServer:
        return self.thread.server


@pytest.fixture(scope="module", params=["unix", "tcp", "tls"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[Running]:
    transport = request.param
    if transport == "unix":
        listen, tls = f"unix:{tmp_path_factory.mktemp('sock')}/xs.sock", None
    else:
        listen = "tcp:127.0.0.1:0"
        tls = server_context(pki.cert, pki.key) if transport == "tls" else None
    with ServerThread(RestoreServer(listen, tls=tls)) as thread:
        yield Running(thread, client_context(pki.ca) if tls is not None else None)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("img") / "guest.img"
    return path, qemu_stub.write_synthetic(path, SIZE, SEED)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("variant", VARIANTS)
def test_blocking_restore_and_save(
    running: Running, image: tuple[Path, str], tmp_path: Path, variant: int
) -> None:
    path, digest = image
    out = tmp_path / "saved.img"
    done: list[int] = []
    with Client.connect(running.address, tls=running.client_tls) as client:
        restored = client.restore(path, variant=variant, progress=done.append)
        verdict = running.server.results[-1]
        saved = client.save(out, variant=variant, name=f"{SIZE}:{SEED}")
    assert restored.bytes == SIZE and done[-1] == SIZE
    assert verdict.ok and verdict.bytes == SIZE and verdict.sha256 == digest
    assert saved.bytes == SIZE and sha256_file(out) == digest
    if variant == 3:  # the reply comes after the data and reports it
        assert restored.length == SIZE and saved.length == SIZE


@pytest.mark.parametrize("variant", VARIANTS)
def test_async_restore_and_save(
    running: Running, image: tuple[Path, str], tmp_path: Path, variant: int
) -> None:
    path, digest = image
    out = tmp_path / "saved.img"

    async def main() -> None:
        client = await AsyncClient.connect(running.address, tls=running.client_tls)
        async with client:
            await client.restore(path, variant=variant)
            assert running.server.results[-1].sha256 == digest
            result = await client.save(out, variant=variant, name=f"{SIZE}:{SEED}")
            assert result.bytes == SIZE

    asyncio.run(main())
    assert sha256_file(out) == digest


@pytest.mark.parametrize("variant", VARIANTS)
def test_async_stream_objects(running: Running, variant: int) -> None:
    """The event-driven API: send/finish on an upload, recv/async-for on a download."""
    data = qemu_stub.synthetic_bytes(qemu_stub.MIN_SIZE + 700_000, 5)

    async def main() -> tuple[int, bytes]:
        client = await AsyncClient.connect(running.address, tls=running.client_tls)
        async with client:
            up = await client.open_restore(variant, name="streamed")
            assert up.direction == "upload" and up.sparse
            view = memoryview(data)
            for start in range(0, len(view), 100_000):  # the application's own chunking
                await up.send(view[start : start + 100_000])
            await up.finish()
            assert up.closed
            down = await client.open_save(variant, name=f"{len(data)}:5")
            first = await down.recv()
            assert isinstance(first, memoryview) and not isinstance(first, Hole)
            received = bytearray(first)
            async for chunk in down:
                assert isinstance(chunk, memoryview)
                received += chunk
            assert await down.recv() is None and down.closed
            return running.server.results[-2].bytes or 0, bytes(received)

    restored, saved = asyncio.run(main())
    assert restored == len(data)
    assert saved == data


@pytest.mark.parametrize("variant", VARIANTS)
def test_blocking_restore_from_iterable_and_file_object(
    running: Running, image: tuple[Path, str], variant: int
) -> None:
    path, digest = image
    data = path.read_bytes()
    with Client.connect(running.address, tls=running.client_tls) as client:
        client.restore((data[i : i + 65_000] for i in range(0, len(data), 65_000)), variant)
        assert running.server.results[-1].sha256 == digest
        with open(path, "rb") as source:
            client.restore(source, variant)
        assert running.server.results[-1].sha256 == digest


@pytest.mark.parametrize("variant", VARIANTS)
def test_rejected_stream_raises_with_the_stub_message(running: Running, variant: int) -> None:
    garbage = b"NOTQEMU!" + bytes(500_000)
    with Client.connect(running.address, tls=running.client_tls) as client:
        with pytest.raises(RemoteFailure) as info:
            client.restore([garbage], variant=variant)
        assert "bad magic" in info.value.message
        assert info.value.code == 9  # VIR_ERR_OPERATION_FAILED
        client.ping()  # the connection survives a failed stream
    assert not running.server.results[-1].ok


def test_plain_calls(running: Running) -> None:
    with Client.connect(running.address, tls=running.client_tls) as client:
        client.ping()
        assert client.echo(b"\x00abc" * 1000) == b"\x00abc" * 1000
        assert client.info().server == "xdrstream"


class Boom(Exception):
    """The caller's own failure, which must come back out of the client unchanged."""


def failing_source(data: bytes) -> Iterator[bytes]:
    yield data[:200_000]
    raise Boom("the source broke")


def fail_after_first_chunk(done: int) -> None:
    raise Boom(f"the destination broke after {done} bytes")


def recording(client: Client | AsyncClient, streams: list[Any]) -> None:
    """Keep every stream the client opens, to look at its state afterwards."""
    for opener in ("open_restore", "open_save"):
        open_stream = getattr(client, opener)
        if isinstance(client, Client):

            def record(*args: Any, _open: Any = open_stream) -> Any:
                streams.append(_open(*args))
                return streams[-1]
        else:

            async def record(*args: Any, _open: Any = open_stream) -> Any:
                streams.append(await _open(*args))
                return streams[-1]

        setattr(client, opener, record)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_failure_on_our_side_aborts_the_stream_in_both_clients(
    running: Running, image: tuple[Path, str], tmp_path: Path, variant: int
) -> None:
    """A source or destination failure aborts the stream (it is closed, not left open) and
    propagates; a save into a path leaves no file behind; the connection serves on."""
    data = image[0].read_bytes()
    out = tmp_path / "saved.img"
    name = f"{SIZE}:{SEED}"
    streams: list[Any] = []
    with Client.connect(running.address, tls=running.client_tls) as client:
        recording(client, streams)
        with pytest.raises(Boom):
            client.restore(failing_source(data), variant)
        with pytest.raises(Boom):
            client.save(out, variant, name=name, progress=fail_after_first_chunk)
        assert not out.exists()
        client.ping()
        assert len(streams) == 2 and all(s.closed for s in streams)

    async def main() -> None:
        client = await AsyncClient.connect(running.address, tls=running.client_tls)
        async with client:
            recording(client, streams)
            with pytest.raises(Boom):
                await client.restore(failing_source(data), variant)
            with pytest.raises(Boom):
                await client.save(out, variant, name=name, progress=fail_after_first_chunk)
            assert not out.exists()
            await client.ping()
            assert len(streams) == 4 and all(s.closed for s in streams)

    asyncio.run(main())


@pytest.mark.parametrize("variant", VARIANTS)
def test_async_restore_from_an_async_iterable(
    running: Running, image: tuple[Path, str], variant: int
) -> None:
    path, digest = image
    data = path.read_bytes()
    done: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 65_000):
            yield data[start : start + 65_000]
            yield b""  # an empty item is skipped, not sent as an empty chunk

    async def main() -> int:
        client = await AsyncClient.connect(running.address, tls=running.client_tls)
        async with client:
            result = await client.restore(chunks(), variant, progress=done.append)
            return result.bytes

    assert asyncio.run(main()) == SIZE and done[-1] == SIZE
    verdict = running.server.results[-1]
    assert verdict.ok and verdict.sha256 == digest


class BrokenDigest:
    """A digest that fails on its second update: the failure must surface in the caller."""

    def __init__(self) -> None:
        self.updates = 0

    def update(self, data: memoryview) -> None:
        self.updates += 1
        if self.updates > 1:
            raise Boom("the digest broke")


@pytest.mark.parametrize("variant", VARIANTS)
def test_digest_is_of_what_moved_holes_as_zeros(tmp_path: Path, variant: int) -> None:
    """`digest=` gets the content as it moves (issue 12: `xdrstream save` no longer reads
    OUT again): a sparse image with a middle and a trailing hole, restored into and saved
    from named files (holes travel as holes), both clients; a failing digest aborts the
    transfer and a save leaves no file."""
    if not supports_holes(str(tmp_path)):
        pytest.skip(f"the filesystem of {tmp_path} does not report holes (SEEK_DATA)")
    images, out = tmp_path / "images", tmp_path / "saved.img"
    images.mkdir()
    source = tmp_path / "holey.img"
    with open(source, "wb") as file:
        file.write(b"a" * 300_000)
        file.seek(2 << 20)
        file.write(b"b" * 70_000)
        file.truncate(4 << 20)
    expected = sha256_file(source)
    with ServerThread(RestoreServer(f"unix:{tmp_path}/xs.sock", images=images)) as thread:
        address = str(thread.address)
        with Client.connect(address) as client:
            sent, written = hashlib.sha256(), hashlib.sha256()
            restored = client.restore(source, variant, name="holey", digest=sent)
            saved = client.save(out, variant, name="holey", digest=written)
            with pytest.raises(Boom):
                client.restore(source, variant, name="other", digest=BrokenDigest())
            with pytest.raises(Boom):
                client.save(tmp_path / "lost.img", variant, name="holey", digest=BrokenDigest())
            client.ping()

        async def main() -> tuple[str, str]:
            sent, written = hashlib.sha256(), hashlib.sha256()
            async with await AsyncClient.connect(address) as client:
                await client.restore(source, variant, name="holey2", digest=sent)
                await client.save(tmp_path / "saved2.img", variant, name="holey2", digest=written)
            return sent.hexdigest(), written.hexdigest()

        async_digests = asyncio.run(main())
    assert restored.holes > 0 and saved.holes > 0  # holes travelled as holes
    assert sent.hexdigest() == written.hexdigest() == sha256_file(out) == expected
    assert async_digests == (expected, expected)
    assert not (tmp_path / "lost.img").exists()

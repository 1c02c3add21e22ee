"""Reference client against the reference server with QEMU stub endpoints (real sockets,
real stub processes): every variant, both directions, blocking and asyncio clients."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdrstream.transport import qemu_stub
from xdrstream.transport.client import AsyncClient, Client
from xdrstream.transport.server import RestoreServer, ServerThread

SIZE = 3 << 20
SEED = 11


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("img") / "guest.img"
    return path, qemu_stub.write_synthetic(path, SIZE, SEED)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(RestoreServer(f"unix:{tmp_path}/xs.sock")) as running:
        yield running


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_blocking_restore_reaches_the_stub_intact(
    server: ServerThread, image: tuple[Path, str], variant: int
) -> None:
    path, digest = image
    with Client.connect(server.address) as client:
        result = client.restore(path, variant=variant)
    assert result.bytes == SIZE
    verdict = server.server.results[-1]
    assert verdict.ok and verdict.bytes == SIZE and verdict.sha256 == digest


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_blocking_save_matches_the_stub_stream(
    server: ServerThread, tmp_path: Path, variant: int
) -> None:
    out = tmp_path / "saved.img"
    with Client.connect(server.address) as client:
        result = client.save(out, variant=variant, name=f"{SIZE}:{SEED}")
    assert result.bytes == SIZE
    assert sha256_file(out) == qemu_stub.synthetic_sha256(SIZE, SEED)


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_async_restore_and_save(
    server: ServerThread, image: tuple[Path, str], tmp_path: Path, variant: int
) -> None:
    path, digest = image
    out = tmp_path / "saved.img"

    async def main() -> None:
        client = await AsyncClient.connect(server.address)
        async with client:
            await client.restore(path, variant=variant)
            await client.save(out, variant=variant, name=f"{SIZE}:{SEED}")

    asyncio.run(main())
    assert server.server.results[-2].sha256 == digest
    assert sha256_file(out) == digest
    assert os.path.getsize(out) == SIZE

"""The storage-pool server on the asyncio core keeps libvirtd's limits (spec.md §8.5) and
a bounded thread count (issue 15 part 2)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from libvirt_helpers import MiB, make_random_file, sha256

from xdrstream.libvirt import LibvirtClient
from xdrstream.libvirt.storage_server import FILE_THREADS, StorageServer
from xdrstream.transport.options import Options

pytestmark = pytest.mark.timeout(60)


def test_max_clients_stops_accepting_and_serves_the_others(tmp_path: Path) -> None:
    sock = tmp_path / "sock"
    (tmp_path / "images").mkdir()
    with StorageServer(f"unix:{sock}", tmp_path / "images", options=Options(max_clients=2)):
        uri = f"qemu+unix:///session?socket={sock}"
        clients = [LibvirtClient.open(uri, timeout=5) for _ in range(2)]
        try:
            done = threading.Event()

            def third() -> None:
                with LibvirtClient.open(uri, timeout=10) as client:
                    client.list_pools()
                done.set()

            thread = threading.Thread(target=third, daemon=True)
            thread.start()
            assert not done.wait(0.6), "a third client was served beyond max_clients"
            for client in clients:  # the admitted ones are still served
                assert [p.name for p in client.list_pools()] == ["images"]
            clients.pop().close()
            assert done.wait(5), "the waiting client was not accepted once one left"
            thread.join(5)
        finally:
            for client in clients:
                client.close()


def test_many_clients_uploading_use_a_bounded_pool(tmp_path: Path) -> None:
    pool = tmp_path / "images"
    pool.mkdir()
    source = tmp_path / "in"
    make_random_file(source, 1 * MiB + 3)
    count = FILE_THREADS + 8
    for i in range(count):
        (pool / f"v{i}").touch()
    sock = tmp_path / "sock"
    with StorageServer(f"unix:{sock}", pool):
        uri = f"qemu+unix:///session?socket={sock}"
        errors: list[BaseException] = []
        clients = [LibvirtClient.open(uri, timeout=30) for _ in range(count)]
        try:

            def upload(i: int) -> None:
                try:
                    clients[i].upload(clients[i].lookup_volume("images", f"v{i}"), source)
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=upload, args=(i,)) for i in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            # counted while every client is still connected: the loop and the file-I/O
            # pool (whose threads stay once made), none per connection
            server = [t for t in threading.enumerate() if t.name.startswith("xdrstream-libvirt")]
            assert 1 < len(server) <= FILE_THREADS + 1, [t.name for t in server]
        finally:
            for client in clients:
                client.close()
    assert not errors, errors
    assert all(sha256(pool / f"v{i}") == sha256(source) for i in range(count))

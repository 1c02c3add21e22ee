"""The reference server: errors, aborts, disconnects, concurrency, sparse images, mutual
TLS and resource leaks (child processes of this process, where the server runs; file
descriptors in a process of their own: server_leak_scenario.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from test_cli_support import child_pids

from xdrstream.endpoints import qemu_stub
from xdrstream.protocol import Procedure, Program, programs_from_schema
from xdrstream.restore.client import AsyncClient, Client
from xdrstream.restore.server import PROGRAM, VERSION, RestoreServer, ServerThread, schema
from xdrstream.transport import sparse
from xdrstream.transport.aio import AsyncConnection
from xdrstream.transport.blocking import BlockingConnection
from xdrstream.transport.errors import ConnectionLost, RemoteFailure
from xdrstream.transport.options import Options
from xdrstream.transport.tls import client_context, server_context

VARIANTS = [1, 2, 3]


def describe(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                words = cmdline.read().split(b"\0")
            out.append(f"{pid}: {b' '.join(words).decode()}")
        except OSError:
            out.append(f"{pid}: gone")
    return out


def wait_until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(predicate())  # type: ignore[operator]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(RestoreServer(f"unix:{tmp_path}/xs.sock")) as running:
        yield running


@pytest.mark.parametrize("variant", VARIANTS)
def test_abort_kills_the_stub(server: ServerThread, variant: int) -> None:
    before = child_pids()
    with Client.connect(server.address) as client:
        stream = client.open_restore(variant)
        stream.send(qemu_stub.synthetic_bytes(qemu_stub.MIN_SIZE + 300_000, 1)[:200_000])
        assert wait_until(lambda: child_pids() - before)  # the stub is running
        stream.abort()
        assert stream.closed
        # the server kills the stub before it confirms the abort
        assert child_pids() <= before
        assert not server.server.results  # killed, never asked for a verdict
        client.ping()


@pytest.mark.parametrize("variant", VARIANTS)
def test_client_disconnect_kills_the_stub(server: ServerThread, variant: int) -> None:
    before = child_pids()
    client = Client.connect(server.address)
    stream = client.open_restore(variant)
    stream.send(b"QEVM" + bytes(100_000))
    assert wait_until(lambda: child_pids() - before)
    client.close()  # mid-stream
    assert wait_until(lambda: child_pids() <= before)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_abort_kills_the_stub(server: ServerThread, variant: int) -> None:
    before = child_pids()
    with Client.connect(server.address) as client:
        stream = client.open_save(variant, name=str(64 << 20))
        first = stream.recv()
        assert isinstance(first, memoryview) and len(first) > 0
        stream.abort()
        assert child_pids() <= before
        client.ping()


def test_unknown_procedure_gets_an_error_reply(server: ServerThread) -> None:
    known = next(p for p in programs_from_schema(schema()) if p.number == PROGRAM)
    extended = Program(PROGRAM, VERSION, {**known.procedures, 99: Procedure(99, "NOPE")})
    with BlockingConnection.connect(server.address, [extended]) as conn:
        with pytest.raises(RemoteFailure) as info:
            conn.call(PROGRAM, VERSION, 99)
        # libvirtd's answer (virnetserverprogram.c): VIR_ERR_RPC, VIR_FROM_RPC
        assert (info.value.code, info.value.error.domain) == (39, 7)
        assert info.value.message == "unknown procedure: 99"
        conn.call(PROGRAM, VERSION, 1)  # and the connection goes on

    async def main() -> None:
        async with await AsyncConnection.connect(server.address, [extended]) as conn:
            with pytest.raises(RemoteFailure, match="unknown procedure: 99"):
                await conn.call(PROGRAM, VERSION, 99)
            await conn.call(PROGRAM, VERSION, 1)

    asyncio.run(main())


@dataclass
class Endpoint:
    thread: ServerThread
    tls: ssl.SSLContext | None


@pytest.fixture(params=["unix", "tls"])
def either(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Endpoint]:
    """A stub server over a Unix socket, or over TCP with TLS."""
    if request.param == "unix":
        with ServerThread(RestoreServer(f"unix:{tmp_path}/xs.sock")) as running:
            yield Endpoint(running, None)
        return
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    context = server_context(tmp_path / "server.pem", tmp_path / "server.pem")
    with ServerThread(RestoreServer("tcp:127.0.0.1:0", tls=context)) as running:
        yield Endpoint(running, client_context(tmp_path / "ca.pem"))


def test_concurrent_streams_on_one_connection_never_mix(either: Endpoint, tmp_path: Path) -> None:
    """Uploads and downloads of every variant at once on one asyncio connection: each
    stream's bytes arrive whole and only where they belong."""
    sizes = {v: qemu_stub.MIN_SIZE + v * 1_300_001 for v in VARIANTS}

    async def main(address: str, tmp: Path) -> None:
        client = await AsyncClient.connect(address, tls=either.tls)
        async with client:

            async def upload(variant: int, seed: int) -> None:
                data = qemu_stub.synthetic_bytes(sizes[variant], seed)
                stream = await client.open_restore(variant, name=f"u{seed}")
                view = memoryview(data)
                for start in range(0, len(view), 70_001):
                    await stream.send(view[start : start + 70_001])
                await stream.finish()

            async def download(variant: int, seed: int) -> None:
                out = tmp / f"d{variant}-{seed}"
                result = await client.save(out, variant, name=f"{sizes[variant]}:{seed}")
                assert result.bytes == sizes[variant]
                digest = hashlib.sha256(out.read_bytes()).hexdigest()
                assert digest == qemu_stub.synthetic_sha256(sizes[variant], seed)

            jobs = [upload(v, 100 + v) for v in VARIANTS] + [upload(v, 200 + v) for v in VARIANTS]
            jobs += [download(v, 300 + v) for v in VARIANTS]
            await asyncio.gather(*jobs)

    asyncio.run(main(str(either.thread.address), tmp_path))
    verdicts = [r for r in either.thread.server.results if r.ok and r.sha256]
    expected = {
        qemu_stub.synthetic_sha256(sizes[v], seed) for v in VARIANTS for seed in (100 + v, 200 + v)
    }
    assert expected <= {r.sha256 for r in verdicts}
    assert len(verdicts) == 9  # 6 restores + 3 saves, each judged once


def test_many_blocking_clients_and_threads_at_once(either: Endpoint, tmp_path: Path) -> None:
    """Several clients, several threads per connection, restores and saves mixed."""
    size = qemu_stub.MIN_SIZE + 1_000_003
    errors: list[BaseException] = []
    digests: list[str] = []
    lock = threading.Lock()

    def work(client: Client, index: int) -> None:
        try:
            variant = 1 + index % 3
            data = qemu_stub.synthetic_bytes(size, index)
            client.restore([data], variant=variant, name=f"c{index}")
            out = tmp_path / f"save{index}"
            client.save(out, variant=variant, name=f"{size}:{index}")
            with lock:
                digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
        except BaseException as exc:
            errors.append(exc)

    clients = [Client.connect(either.thread.address, tls=either.tls) for _ in range(3)]
    try:
        threads = [threading.Thread(target=work, args=(clients[i % 3], i)) for i in range(9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)  # generous: the machine may be shared and loaded
        assert not [t for t in threads if t.is_alive()], "transfers hung"
    finally:
        for client in clients:
            client.close()
    assert not errors, errors
    assert sorted(digests) == sorted(qemu_stub.synthetic_sha256(size, i) for i in range(9))
    restored = {r.sha256 for r in either.thread.server.results if r.ok}
    assert {qemu_stub.synthetic_sha256(size, i) for i in range(9)} <= restored


@pytest.mark.parametrize("variant", VARIANTS)
def test_sparse_round_trip_keeps_holes(tmp_path: Path, variant: int) -> None:
    if not sparse.supports_holes(str(tmp_path)):
        pytest.skip(f"{tmp_path} does not keep holes (no SEEK_DATA support)")
    images = tmp_path / "images"
    images.mkdir()
    source = tmp_path / "sparse.img"
    mib = 1 << 20
    with open(source, "wb") as out:
        out.write(os.urandom(mib))  # data, hole, data, trailing hole
        out.seek(5 * mib)
        out.write(os.urandom(mib // 2))
        out.truncate(9 * mib)
    copy = tmp_path / "copy.img"
    server = RestoreServer(f"unix:{tmp_path}/xs.sock", images=images)
    with ServerThread(server) as running, Client.connect(running.address) as client:
        sent = client.restore(source, variant=variant, name="disk")
        got = client.save(copy, variant=variant, name="disk")
        assert client.info().images == 1
        with pytest.raises(RemoteFailure, match="no image named"):
            client.save(tmp_path / "x", variant=variant, name="missing")
    assert sent.holes == 4 * mib + 3 * mib + mib // 2 and sent.bytes == mib + mib // 2
    assert got.holes == sent.holes and got.bytes == sent.bytes
    stored = images / "disk"
    for path in (stored, copy):
        assert path.read_bytes() == source.read_bytes()
        fd = os.open(path, os.O_RDONLY)
        try:
            extents = list(sparse.iter_extents(fd))
        finally:
            os.close(fd)
        assert [e.kind for e in extents] == ["data", "hole", "data", "hole"]
        assert os.stat(path).st_blocks * 512 < 3 * mib


def test_mutual_tls_refuses_clients_without_a_valid_certificate(tmp_path: Path) -> None:
    ca, stranger_ca = trustme.CA(), trustme.CA()
    files = {
        "ca": ca.cert_pem,
        "server": ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem,
        "client": ca.issue_cert("client.example").private_key_and_cert_chain_pem,
        "stranger": stranger_ca.issue_cert("client.example").private_key_and_cert_chain_pem,
    }
    for name, blob in files.items():
        blob.write_to_path(str(tmp_path / f"{name}.pem"))
    server = tmp_path / "server.pem"  # key and certificate in one file
    context = server_context(server, server, tmp_path / "ca.pem", require_client_cert=True)
    with ServerThread(RestoreServer("tcp:127.0.0.1:0", tls=context)) as running:
        address = str(running.address)
        good = client_context(tmp_path / "ca.pem", tmp_path / "client.pem")
        with Client.connect(address, tls=good) as client:
            client.ping()
            client.restore([qemu_stub.synthetic_bytes(qemu_stub.MIN_SIZE, 2)], variant=2)
        refusals = {None: "certificate required", tmp_path / "stranger.pem": "unknown ca"}
        for certificate, reason in refusals.items():
            bad = client_context(tmp_path / "ca.pem", certificate)
            with pytest.raises(ConnectionLost) as info, Client.connect(address, tls=bad) as client:
                client.ping()
            assert "TLS error" in str(info.value) and reason in str(info.value)


SCENARIO = Path(__file__).with_name("server_leak_scenario.py")


def leaks_of_scenario(directory: Path, *options: str) -> dict[str, object]:
    """What server_leak_scenario.py (a fresh process) left open: {"fds": .., "children": ..}."""
    done = subprocess.run(
        [sys.executable, str(SCENARIO), str(directory), *options],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_nothing_leaks(tmp_path: Path) -> None:
    """fds and child processes before == after a server with finished, failed, aborted and
    disconnected streams (in a process of their own: see server_leak_scenario.py)."""
    assert leaks_of_scenario(tmp_path) == {"fds": {}, "children": []}


def test_the_leak_check_sees_a_leak(tmp_path: Path) -> None:
    """The same scenario leaving one pipe open on purpose: both its ends are reported."""
    leaks = leaks_of_scenario(tmp_path, "--plant-leak")
    targets = list(leaks["fds"].values())  # type: ignore[attr-defined]
    assert len(targets) == 2 and all(t.startswith("pipe:[") for t in targets), leaks
    assert leaks["children"] == []


def test_server_close_kills_endpoints_in_progress(tmp_path: Path) -> None:
    kids = child_pids()
    running = ServerThread(RestoreServer(f"unix:{tmp_path}/xs.sock")).start()
    client = Client.connect(running.address, options=Options(timeout=10))
    stream = client.open_restore(2)
    stream.send(b"QEVM" + bytes(50_000))
    assert wait_until(lambda: child_pids() - kids)
    running.stop()
    assert child_pids() <= kids
    with pytest.raises(ConnectionLost):
        for _ in range(100):
            stream.send(bytes(100_000))
        stream.finish()
    client.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_abort_is_prompt_even_when_the_stub_stalls(tmp_path: Path, variant: int) -> None:
    """The stub stops reading (a 60 s stall): the server's pipe is full, yet the client's
    abort kills the stub at once instead of waiting for the pipe."""
    launcher = qemu_stub.StubLauncher(faults=qemu_stub.Faults(stall=60, stall_after=0))
    kids = child_pids()
    server = RestoreServer(f"unix:{tmp_path}/xs.sock", launcher=launcher)
    with ServerThread(server) as running, Client.connect(running.address) as client:
        stream = client.open_restore(variant)
        stream.send(bytes((1 << 20) + 300_000))  # more than the pipe holds; V1: < window
        assert wait_until(lambda: child_pids() - kids)
        started = time.monotonic()
        stream.abort()
        assert time.monotonic() - started < 30  # not the stall's 60 s
        assert child_pids() <= kids
        client.ping()


@pytest.mark.parametrize("variant", VARIANTS)
def test_disconnect_is_noticed_while_reading_is_paused(tmp_path: Path, variant: int) -> None:
    """The stub stalls, so the server stops reading the client (§8.2); a client that goes
    away meanwhile is still noticed and the stub killed (§3.5)."""
    launcher = qemu_stub.StubLauncher(faults=qemu_stub.Faults(stall=60, stall_after=0))
    kids = child_pids()
    server = RestoreServer(
        f"unix:{tmp_path}/xs.sock", launcher=launcher, options=Options(stream_buffer=1 << 20)
    )
    with ServerThread(server) as running:
        client = Client.connect(running.address)
        stream = client.open_restore(variant)

        def flood() -> None:
            with contextlib.suppress(ConnectionLost):
                for _ in range(64):
                    stream.send(bytes(1 << 20))

        sender = threading.Thread(target=flood)
        sender.start()
        assert wait_until(lambda: child_pids() - kids)
        time.sleep(0.5)  # the pipe and the server's stream buffer fill up
        assert sender.is_alive()  # held back, not buffered without bound
        client.close()
        sender.join(10)
        assert wait_until(lambda: child_pids() <= kids), describe(child_pids() - kids)

"""Our client against our storage server (no real peers needed): Unix, TCP and TLS."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from libvirt_helpers import KiB, MiB, layout, make_file, make_random_file, sha256
from realpeers import stop_process

from xdrstream.cli import main
from xdrstream.libvirt import LibvirtClient, LibvirtError, remote
from xdrstream.libvirt.errors import VIR_ERR_RPC, VIR_FROM_RPC
from xdrstream.libvirt.storage_server import StorageServer
from xdrstream.transport import tls

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    directory = tmp_path / "store"
    directory.mkdir()
    return directory


@pytest.fixture(params=["unix", "tcp", "tls"])
def uri(request: pytest.FixtureRequest, pool: Path, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    kind = request.param
    context = None
    client_options: dict = {}
    if kind == "tls":
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        context = tls.server_context(tmp_path / "server.pem", tmp_path / "server.pem")
        client_options["tls"] = tls.client_context(tmp_path / "ca.pem")
    listen = f"unix:{tmp_path / 'sock'}" if kind == "unix" else "tcp:127.0.0.1:0"
    with StorageServer(listen, pool, pool="store", tls=context) as running:
        if kind == "unix":
            yield f"qemu+unix:///session?socket={tmp_path / 'sock'}", client_options
        else:
            yield f"qemu+{kind}://127.0.0.1:{running.address.port}/session", client_options


def test_sparse_round_trip(uri: tuple[str, dict], pool: Path, tmp_path: Path) -> None:
    address, options = uri
    source = tmp_path / "source.bin"
    make_file(source, 3 * MiB, [(64 * KiB, 64 * KiB), (2 * MiB, 5000)])
    (pool / "disk.img").touch()
    with LibvirtClient.open(address, **options) as client:
        assert client.uri() == "qemu:///session"
        assert client.keepalive_supported
        vol = client.lookup_volume("store", "disk.img")
        sent = client.upload(vol, source, sparse=True, checksum=True)
        got = client.download(vol, tmp_path / "out.bin", sparse=True, checksum=True)
        info = client.volume_info(vol)
    assert sent.sha256 == got.sha256 == sha256(source) == sha256(pool / "disk.img")
    assert got.holes == sent.holes
    assert (info.type, info.capacity) == (remote.VOL_FILE, 3 * MiB)
    if layout(source)[0][0] == "hole":  # the filesystem keeps holes
        assert sent.holes > 0
        assert layout(pool / "disk.img") == layout(source) == layout(tmp_path / "out.bin")


@contextlib.contextmanager
def _client(pool: Path, tmp_path: Path) -> Iterator[LibvirtClient]:
    """Our server on a Unix socket and our client opened on it (short URI form)."""
    sock = tmp_path / "s"
    with (
        StorageServer(f"unix:{sock}", pool),
        LibvirtClient.open(f"unix:{sock}") as client,
    ):
        yield client


def test_dense_upload_writes_in_place_like_libvirt(pool: Path, tmp_path: Path) -> None:
    """An upload overwrites from its offset and keeps the rest of the file (libvirt's dir
    pools open the volume without truncating it)."""
    volume = pool / "disk.img"
    volume.write_bytes(b"A" * 10000)
    source = tmp_path / "patch.bin"
    source.write_bytes(b"B" * 100)
    out = tmp_path / "range.bin"
    with _client(pool, tmp_path) as client:
        vol = client.lookup_volume(client.lookup_pool("store"), "disk.img")
        client.upload(vol, source, offset=500)
        ranged = client.download(vol, out, offset=400, length=300)
        assert ranged.sha256 is None  # not asked for
    assert volume.read_bytes() == b"A" * 500 + b"B" * 100 + b"A" * 9400
    assert out.read_bytes() == b"A" * 100 + b"B" * 100 + b"A" * 100


def test_errors_have_libvirts_codes_and_domains(pool: Path, tmp_path: Path) -> None:
    make_random_file(pool / "v.img", 10)
    with _client(pool, tmp_path) as client:
        with pytest.raises(LibvirtError) as missing_pool:
            client.lookup_pool("other")
        with pytest.raises(LibvirtError) as missing_vol:
            client.lookup_volume("store", "nope")
        with pytest.raises(LibvirtError) as escaping:
            client.lookup_volume("store", "../etc")
        with pytest.raises(LibvirtError) as no_domain:
            client.screenshot("dom", tmp_path / "x.png")
        vol = client.lookup_volume("store", "v.img")
        with pytest.raises(LibvirtError) as too_long:
            client.upload(vol, pool / "v.img", length=5)
        assert client.volume_info(vol).capacity == 10  # the connection goes on
    assert (missing_pool.value.code, missing_pool.value.domain) == (49, 18)
    assert (missing_vol.value.code, missing_vol.value.domain) == (50, 18)
    assert missing_vol.value.message == (
        "Storage volume not found: no storage vol with matching name 'nope'"
    )
    assert missing_vol.value.error.str1 == "Storage volume not found: %s"
    assert (escaping.value.code, escaping.value.domain) == (50, 18)
    assert no_domain.value.code == 42
    assert (too_long.value.code, too_long.value.domain) == (38, 38)  # system error, streams
    assert (pool / "v.img").stat().st_size == 10


def test_calls_before_connect_open_are_refused(pool: Path, tmp_path: Path) -> None:
    from xdrstream.transport.blocking import BlockingConnection
    from xdrstream.transport.errors import RemoteFailure

    with StorageServer(f"unix:{tmp_path / 's'}", pool):
        conn = BlockingConnection.connect(f"unix:{tmp_path / 's'}", [remote.schema()])
        with conn, pytest.raises(RemoteFailure) as caught:
            conn.call(
                remote.PROGRAM,
                remote.VERSION,
                remote.CONNECT_LIST_ALL_STORAGE_POOLS,
                remote.schema()["vir_list_all_pools_args"](need_results=1, flags=0),
            )
    assert caught.value.error.message == "internal error: connection not open"


def test_unknown_procedures_get_libvirts_rpc_error(pool: Path, tmp_path: Path) -> None:
    from xdrstream.protocol import Procedure, Program, programs_from_schema
    from xdrstream.transport.blocking import BlockingConnection
    from xdrstream.transport.errors import RemoteFailure

    base = programs_from_schema(remote.schema())[0]
    program = Program(base.number, base.version, {**base.procedures, 6: Procedure(6)})
    with StorageServer(f"unix:{tmp_path / 's'}", pool):
        conn = BlockingConnection.connect(f"unix:{tmp_path / 's'}", [program])
        with conn:
            with pytest.raises(RemoteFailure) as caught:
                conn.call(remote.PROGRAM, remote.VERSION, 6)
            assert conn.call(remote.PROGRAM, remote.VERSION, remote.AUTH_LIST).types == [0]
    error = caught.value.error
    assert (error.code, error.domain, error.message) == (
        VIR_ERR_RPC,
        VIR_FROM_RPC,
        "unknown procedure: 6",
    )


SERVE = [sys.executable, "-m", "xdrstream.cli", "serve"]


def test_serve_libvirt_storage_refuses_a_missing_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SERVE, "--libvirt-storage", str(tmp_path / "nope"), "--listen", f"unix:{tmp_path / 's'}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert f"xdrstream serve: error: {tmp_path / 'nope'}: no such directory" in result.stderr
    assert not (tmp_path / "s").exists()


def test_serve_libvirt_storage_names_the_pool(pool: Path, tmp_path: Path) -> None:
    """``--pool NAME`` (what ``libvirt-serve`` had): clients find the volumes under NAME."""
    make_random_file(pool / "v.img", 5000)
    sock = tmp_path / "s"
    process = subprocess.Popen(
        [*SERVE, "--libvirt-storage", str(pool), "--pool", "named", "--listen", f"unix:{sock}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line == {"listening": f"unix:{sock}", "pool": "named", "directory": str(pool)}
        with LibvirtClient.open(f"unix:{sock}") as client:
            with pytest.raises(LibvirtError):
                client.lookup_volume("store", "v.img")  # the directory's name is not used
            vol = client.lookup_volume("named", "v.img")
            client.download(vol, tmp_path / "out.bin")
        assert sha256(tmp_path / "out.bin") == sha256(pool / "v.img")
    finally:
        stop_process(process)  # type: ignore[arg-type]
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    assert process.returncode == 0
    assert not sock.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["libvirt-serve", "DIR"], "invalid choice: 'libvirt-serve'"),  # one command: serve
        (["serve", "--pool", "p"], "--pool needs --libvirt-storage"),
        (["serve", "--libvirt-storage", "DIR", "--images", "DIR"], "not allowed with"),
    ],
)
def test_serve_libvirt_storage_usage_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path) if item == "DIR" else item for item in argv]
    try:
        code = main([*argv, "--listen", f"unix:{tmp_path / 's'}"])
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_download_that_fails_leaves_no_file(pool: Path, tmp_path: Path) -> None:
    make_random_file(pool / "v.img", 100)
    out = tmp_path / "out.bin"
    with _client(pool, tmp_path) as client:
        vol = client.lookup_volume("store", "v.img")
        with pytest.raises(LibvirtError) as caught:
            client.download(vol, out, offset=1000)  # beyond the end: the server refuses
    assert caught.value.code == 8
    assert not out.exists()

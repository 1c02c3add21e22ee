"""`xdrstream decode` on real virsh <-> libvirtd sessions, checked against Wireshark.

The committed captures (tests/fixtures/libvirt/, see its README) come with the field output
of tshark's libvirt dissector; decoding them must agree field by field, message by message,
in the same order.  Where tshark is installed the dissector is run again on each capture,
and a live session (private libvirtd, real virsh, tshark capture) is checked the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from realpeers import (
    Libvirtd,
    libvirtd_fixture,  # noqa: F401 -- the libvirtd fixture
    private_libvirtd,
    require,
    rows_from_decode_json,
    rows_from_tshark,
    tshark_capture,
    tshark_fields,
)

from xdrstream.capture.pcap import FlowDirection, reassemble_capture
from xdrstream.cli import main
from xdrstream.protocol import schemas
from xdrstream.protocol.framing import FrameDecoder
from xdrstream.protocol.programs import programs_from_schema

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "libvirt"
MANIFEST = json.loads((FIXTURES / "captures.json").read_text())
CAPTURES = [entry["capture"].removesuffix(".pcapng") for entry in MANIFEST]
PORTS = {entry["capture"].removesuffix(".pcapng"): entry["port"] for entry in MANIFEST}

# Procedures every virsh session calls first and last (learnt from the captures).
OPENING = [
    "AUTH_LIST",
    "CONNECT_SUPPORTS_FEATURE",
    "CONNECT_OPEN",
    "CONNECT_SUPPORTS_FEATURE",
    "CONNECT_SUPPORTS_FEATURE",
    "CONNECT_REGISTER_CLOSE_CALLBACK",
]
CLOSING = ["CONNECT_UNREGISTER_CLOSE_CALLBACK", "CONNECT_CLOSE"]
VOLUME_LOOKUP = [
    "STORAGE_POOL_LOOKUP_BY_NAME",
    "STORAGE_POOL_IS_ACTIVE",
    "STORAGE_VOL_LOOKUP_BY_NAME",
    "STORAGE_POOL_LOOKUP_BY_VOLUME",
]
CALLS = {
    "vol-upload": [*VOLUME_LOOKUP, "STORAGE_VOL_UPLOAD"],
    "vol-download": [*VOLUME_LOOKUP, "STORAGE_VOL_DOWNLOAD"],
    "vol-upload-sparse": [*VOLUME_LOOKUP, "STORAGE_VOL_UPLOAD"],
    "vol-download-sparse": [*VOLUME_LOOKUP, "STORAGE_VOL_DOWNLOAD"],
    "screenshot": ["DOMAIN_LOOKUP_BY_NAME", "DOMAIN_SCREENSHOT"],
    "pool-list": [
        "CONNECT_LIST_ALL_STORAGE_POOLS",
        "STORAGE_POOL_GET_AUTOSTART",
        "STORAGE_POOL_IS_PERSISTENT",
        "STORAGE_POOL_GET_INFO",
    ],
    "vol-list": [
        "STORAGE_POOL_LOOKUP_BY_NAME",
        "STORAGE_POOL_LIST_ALL_VOLUMES",
        "STORAGE_VOL_GET_PATH",
        "STORAGE_VOL_GET_INFO",
        "STORAGE_VOL_GET_PATH",
        "STORAGE_VOL_GET_INFO",
    ],
    "pool-info": [
        "STORAGE_POOL_LOOKUP_BY_NAME",
        "STORAGE_POOL_GET_INFO",
        "STORAGE_POOL_IS_PERSISTENT",
        "STORAGE_POOL_GET_AUTOSTART",
    ],
    "vol-info": [*VOLUME_LOOKUP, "STORAGE_VOL_GET_INFO"],
    "vol-info-missing": [
        "STORAGE_POOL_LOOKUP_BY_NAME",
        "STORAGE_POOL_IS_ACTIVE",
        "STORAGE_VOL_LOOKUP_BY_NAME",
        "STORAGE_VOL_LOOKUP_BY_KEY",
        "STORAGE_VOL_LOOKUP_BY_PATH",
    ],
    "keepalive": [
        "CONNECT_LIST_ALL_STORAGE_POOLS",
        "STORAGE_POOL_GET_AUTOSTART",
        "STORAGE_POOL_GET_INFO",
        "STORAGE_POOL_IS_ACTIVE",
    ],
}

MIB = 1024 * 1024


def decode_json(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    status = main(["decode", "--format", "json", *extra, str(path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == ""
    return captured.out


def messages(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in decode_json(path, capsys).splitlines()]


def test_manifest_covers_every_capture() -> None:
    on_disk = sorted(p.name.removesuffix(".pcapng") for p in FIXTURES.glob("*.pcapng"))
    assert on_disk == sorted(CAPTURES)
    assert sorted(CALLS) == sorted(CAPTURES)


@pytest.mark.parametrize("name", CAPTURES)
def test_decode_agrees_with_committed_tshark_fields(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = rows_from_decode_json(decode_json(FIXTURES / f"{name}.pcapng", capsys))
    theirs = rows_from_tshark((FIXTURES / f"{name}.fields.tsv").read_text())
    assert len(theirs) > 20
    assert ours == theirs


@pytest.mark.parametrize("name", CAPTURES)
def test_virsh_calls_the_documented_procedures(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = messages(FIXTURES / f"{name}.pcapng", capsys)
    calls = [m for m in found if m["type"] == 0]
    assert [m["procedure_name"] for m in calls] == [*OPENING, *CALLS[name], *CLOSING]
    assert [m["serial"] for m in calls] == list(range(len(calls)))
    assert all(m["direction"] == "client->server" for m in calls)
    assert all(m["destination"].endswith(f":{PORTS[name]}") for m in calls)
    replies = [m for m in found if m["type"] == 1]
    assert sorted(m["serial"] for m in replies) == list(range(len(calls)))
    assert not any("body_error" in m for m in found)
    features = [m["body"]["feature"] for m in calls if m["procedure"] == 60]
    assert features == [10, 14, 15]  # keepalive, event callbacks, close callback


def stream_messages(found: list[dict[str, Any]], procedure: int) -> list[dict[str, Any]]:
    return [m for m in found if m["procedure"] == procedure and m["type"] in (3, 6)]


def test_upload_stream_carries_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    found = messages(FIXTURES / "vol-upload.pcapng", capsys)
    call = next(m for m in found if m["procedure"] == 208 and m["type"] == 0)
    assert call["body"]["vol"]["name"] == "vol1"
    assert (call["body"]["offset"], call["body"]["length"], call["body"]["flags"]) == (0, 0, 0)
    stream = stream_messages(found, 208)
    data = [m for m in stream if m["status_name"] == "CONTINUE"]
    assert all(m["direction"] == "client->server" for m in data)
    assert sum(m["body"]["data_bytes"] for m in data) == MIB
    assert {m["payload_size"] for m in data[:-1]} == {262120}
    # client finishes with STREAM/OK, the server confirms with STREAM/OK
    tail = [(m["direction"], m["status_name"]) for m in stream[len(data) :]]
    assert tail == [("client->server", "OK"), ("server->client", "OK")]


def test_download_stream_ends_with_an_empty_continue(capsys: pytest.CaptureFixture[str]) -> None:
    found = messages(FIXTURES / "vol-download.pcapng", capsys)
    stream = stream_messages(found, 209)
    data = [m for m in stream if m["status_name"] == "CONTINUE"]
    assert all(m["direction"] == "server->client" for m in data)
    assert sum(m["payload_size"] for m in data) == MIB
    assert data[-1]["payload_size"] == 0
    # libvirtd reads 256 KiB from the volume and sends it as 262120 + 24 bytes
    assert Counter(m["payload_size"] for m in data[:-1]) == Counter({262120: 4, 24: 4})
    tail = [(m["direction"], m["status_name"]) for m in stream[len(data) :]]
    assert tail == [("client->server", "OK"), ("server->client", "OK")]


@pytest.mark.parametrize(
    ("name", "procedure", "direction"),
    [("vol-upload-sparse", 208, "client->server"), ("vol-download-sparse", 209, "server->client")],
)
def test_sparse_streams_carry_holes(
    name: str, procedure: int, direction: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = messages(FIXTURES / f"{name}.pcapng", capsys)
    call = next(m for m in found if m["procedure"] == procedure and m["type"] == 0)
    assert call["body"]["flags"] == 1  # VIR_STORAGE_VOL_{UP,DOWN}LOAD_SPARSE_STREAM
    layout = [
        ("hole", m["body"]["length"]) if m["type"] == 6 else ("data", m["payload_size"])
        for m in stream_messages(found, procedure)
        if m["status_name"] == "CONTINUE" and m["direction"] == direction
    ]
    kib = 1024
    expected = [("data", 96 * kib), ("hole", MIB - 96 * kib), ("data", 40 * kib)]
    expected.append(("hole", MIB - 40 * kib))
    if procedure == 209:
        expected.append(("data", 0))
    assert layout == expected
    holes = [m for m in found if m["type"] == 6]
    assert all(m["body"]["flags"] == 0 and m["payload_size"] == 12 for m in holes)


def test_screenshot_is_one_png_message(capsys: pytest.CaptureFixture[str]) -> None:
    found = messages(FIXTURES / "screenshot.pcapng", capsys)
    reply = next(m for m in found if m["procedure"] == 211 and m["type"] == 1)
    assert reply["body"] == {"mime": "image/png"}
    data = [m for m in stream_messages(found, 211) if m["status_name"] == "CONTINUE"]
    assert len(data) == 2 and data[1]["payload_size"] == 0
    # stream data is not XDR-padded: the frame length is exactly 28 + payload
    assert data[0]["length"] == 28 + data[0]["payload_size"]
    assert data[0]["payload_size"] % 4 != 0


def test_missing_volume_gives_libvirt_errors(capsys: pytest.CaptureFixture[str]) -> None:
    found = messages(FIXTURES / "vol-info-missing.pcapng", capsys)
    errors = [m for m in found if m["type"] == 1 and m["status_name"] == "ERROR"]
    assert [m["procedure"] for m in errors] == [95, 96, 97]
    for m in errors:
        body = m["body"]
        assert (body["code"], body["domain"], body["level"]) == (50, 18, 2)
        assert "nosuch" in body["message"]


def test_keepalive_ping_pong(capsys: pytest.CaptureFixture[str]) -> None:
    found = messages(FIXTURES / "keepalive.pcapng", capsys)
    keepalive = [m for m in found if m["program"] == 0x6B656570]
    assert len(keepalive) >= 2
    pairs = list(zip(keepalive[::2], keepalive[1::2], strict=True))
    for ping, pong in pairs:
        assert (ping["procedure_name"], ping["direction"]) == (
            "XS_KEEPALIVE_PING",
            "client->server",
        )
        assert (pong["procedure_name"], pong["direction"]) == (
            "XS_KEEPALIVE_PONG",
            "server->client",
        )
        for m in (ping, pong):
            assert (m["type_name"], m["status_name"], m["serial"], m["payload_size"]) == (
                "MESSAGE",
                "OK",
                0,
                0,
            )


@pytest.mark.real_peers
@pytest.mark.parametrize("name", CAPTURES)
def test_tshark_still_reads_the_committed_captures(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require("tshark")
    path = FIXTURES / f"{name}.pcapng"
    theirs = rows_from_tshark(tshark_fields(path, PORTS[name]))
    assert theirs == rows_from_tshark((FIXTURES / f"{name}.fields.tsv").read_text())
    assert rows_from_decode_json(decode_json(path, capsys)) == theirs


@pytest.mark.real_peers
@pytest.mark.timeout(120)
def test_live_virsh_session_agrees_with_tshark(tmp_path: Path) -> None:
    """Capture real virsh uploads, downloads (plain and sparse) and a screenshot against a
    private libvirtd over TCP; our decoder must agree with tshark on every message."""
    require("libvirtd", "virsh", "tshark", "setpriv")
    with private_libvirtd(tcp=True) as daemon:
        assert daemon.tcp_port is not None
        data = daemon.shared_dir("data")
        dense, sparse = data / "dense.bin", data / "sparse.bin"
        dense.write_bytes(bytes(range(256)) * 2048 + b"tail")  # 512 KiB + 4
        with sparse.open("wb") as out:
            out.truncate(MIB)
            out.write(b"x" * 4096)
            out.seek(512 * 1024)
            out.write(b"y" * 8192)
        daemon.define_pool("tpool")
        daemon.virsh("vol-create-as", "tpool", "vol1", "1M", "--format", "raw")
        daemon.virsh("vol-create-as", "tpool", "svol", "1M", "--allocation", "0")
        with tshark_capture(daemon.tcp_port, tmp_path / "cap") as capture:
            daemon.virsh("vol-upload", "--pool", "tpool", "vol1", str(dense), tcp=True)
            daemon.virsh("vol-download", "--pool", "tpool", "vol1", str(data / "d.out"), tcp=True)
            daemon.virsh("vol-upload", "--sparse", "--pool", "tpool", "svol", str(sparse), tcp=True)
            daemon.virsh(
                "vol-download", "--sparse", "--pool", "tpool", "svol", str(data / "s.out"), tcp=True
            )
            daemon.virsh("screenshot", "test", str(data / "shot.png"), driver="test", tcp=True)
        assert (data / "d.out").read_bytes()[: dense.stat().st_size] == dense.read_bytes()
        assert (data / "s.out").read_bytes() == sparse.read_bytes()
        theirs = rows_from_tshark(tshark_fields(capture.path, capture.port))
    result = subprocess.run(
        [sys.executable, "-m", "xdrstream.cli", "decode", "--format", "json", str(capture.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ours = rows_from_decode_json(result.stdout)
    assert ours == theirs
    procedures = Counter(row[3] for row in ours if row[4] == 0)
    assert procedures[208] == 2 and procedures[209] == 2 and procedures[211] == 1
    assert procedures[2] == 5  # five connections, each closed
    assert any(row[7] is not None for row in ours)  # holes were compared too


@pytest.mark.real_peers
def test_private_libvirtd_starts_and_leaves_nothing_behind(libvirtd: Libvirtd) -> None:
    assert libvirtd.process.poll() is None
    assert libvirtd.socket_path.is_socket()
    assert libvirtd.virsh("uri").stdout.startswith("qemu+unix:///session?socket=")
    assert "qemu+tcp://127.0.0.1:" in libvirtd.virsh("uri", tcp=True).stdout
    root, process = libvirtd.root, libvirtd.process
    # the fixture's own teardown is checked by a second daemon run by hand
    with private_libvirtd() as second:
        assert second.tcp_port is None and second.root != root
        second_process, second_root = second.process, second.root
    assert second_process.returncode is not None  # reaped, not left running
    assert not second_root.exists()
    assert process.poll() is None  # the fixture's daemon is still up


def real_bodies() -> list[tuple[str, int, int, int, bytes]]:
    """(capture, procedure, type, program, payload) of every CALL, REPLY/OK and MESSAGE
    that real virsh and libvirtd exchanged in the committed captures."""
    found = []
    for name in CAPTURES:
        for flow in reassemble_capture((FIXTURES / f"{name}.pcapng").read_bytes()).flows:
            for direction in FlowDirection:
                decoder = FrameDecoder()
                decoder.feed(flow.stream(direction).data)
                while (frame := decoder.next_frame()) is not None:
                    h = frame.header
                    if h.type in (0, 1, 2) and h.status == 0:
                        found.append((name, h.proc, h.type, h.prog, bytes(frame.payload)))
    return found


def test_schema_reencodes_every_real_body_byte_for_byte() -> None:
    """libvirt_remote.x has libvirt's layouts: each body libvirt sent decodes without a
    byte left over and encodes back to the same bytes."""
    procedures = {
        (program.number, number): procedure
        for name in ("libvirt_remote", "message")
        for program in programs_from_schema(schemas.load(name))
        for number, procedure in program.procedures.items()
    }
    checked: Counter[str] = Counter()
    for name, proc, mtype, prog, payload in real_bodies():
        procedure = procedures[(prog, proc)]
        codec = procedure.result if mtype == 1 else procedure.arg
        if codec is None:
            assert payload == b"", (name, procedure.name)
            continue
        assert codec.pack(codec.unpack(payload)) == payload, (name, procedure.name)
        checked[procedure.name] += 1
    assert len(checked) >= 20  # argument or result bodies of 20 different procedures


@pytest.mark.real_peers
def test_rpcgen_compiles_the_schema(tmp_path: Path) -> None:
    require("rpcgen", "gcc", "pkg-config")
    source = tmp_path / "libvirt_remote.x"
    source.write_text(schemas.source("libvirt_remote"))
    flags = subprocess.run(
        ["pkg-config", "--cflags", "libtirpc"], capture_output=True, text=True, check=True
    ).stdout.split()
    for command in (
        ["rpcgen", "-h", "-o", "libvirt_remote.h", "libvirt_remote.x"],
        ["rpcgen", "-c", "-o", "libvirt_remote_xdr.c", "libvirt_remote.x"],
        ["gcc", "-c", *flags, "libvirt_remote_xdr.c"],
    ):
        result = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
    header = (tmp_path / "libvirt_remote.h").read_text()
    assert "#define STORAGE_VOL_UPLOAD 208" in header
    assert "#define REMOTE_PROGRAM 0x20008086" in header

"""Wireshark's libvirt dissector agrees with our decoder on our client <-> our server traffic.

Two sources: a live tshark capture on TCP loopback, and a pcapng written by
``protocol/pcap.py`` from the byte streams a recording relay saw (our trace export).  In
both, every message's length, program, version, procedure, type, serial, status and hole
length must be what ``xdrstream decode`` says, in the same order.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from libvirt_helpers import KiB, MiB, make_file, make_random_file
from realpeers import (
    Row,
    require,
    rows_from_decode_json,
    rows_from_tshark,
    stop_process,
    tshark_capture,
    tshark_fields,
)

from xdrstream.capture.pcap import (
    Endpoint,
    FlowChunk,
    FlowDirection,
    SyntheticConnection,
    write_pcapng,
)
from xdrstream.libvirt import LibvirtClient, LibvirtError, remote
from xdrstream.libvirt.storage_server import StorageServer

pytestmark = [pytest.mark.real_peers, pytest.mark.timeout(90)]

KEEPALIVE = 0x6B656570


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    make_file(directory / "sparse.img", 2 * MiB, [(0, 64 * KiB), (MiB, 100 * KiB)])
    make_random_file(directory / "dense.img", MiB + 99)
    (directory / "target.img").touch()
    return directory


@pytest.fixture
def server(pool: Path) -> Iterator[StorageServer]:
    with StorageServer("tcp:127.0.0.1:0", pool) as running:
        yield running


def _session(port: int, pool: Path, work: Path) -> None:
    _session_over(f"qemu+tcp://127.0.0.1:{port}/session", pool, work)


def _session_over(uri: str, pool: Path, work: Path) -> None:
    """One client session touching every message type: calls, an error reply, sparse and
    dense streams both ways, a stream error, keepalive while idle, clean close."""
    with LibvirtClient.open(uri, keepalive=0.3, keepalive_count=5) as client:
        images = client.lookup_pool("images")
        assert [v.name for v in client.list_volumes(images)] == [
            "dense.img",
            "sparse.img",
            "target.img",
        ]
        with pytest.raises(LibvirtError):
            client.lookup_volume(images, "nosuch")
        target = client.lookup_volume(images, "target.img")
        client.upload(target, pool / "sparse.img", sparse=True)
        client.download(client.lookup_volume(images, "sparse.img"), work / "s.out", sparse=True)
        client.download(client.lookup_volume(images, "dense.img"), work / "d.out")
        with pytest.raises(LibvirtError):  # more data than asked for: STREAM/ERROR
            client.upload(target, pool / "dense.img", length=1000)
        time.sleep(1.0)  # idle: our keepalive PINGs, the server's PONGs


def _decode_rows(capture: Path, port: int) -> list[Row]:
    command = [sys.executable, "-m", "xdrstream.cli", "decode", "--format", "json"]
    result = subprocess.run(
        [*command, "--port", str(port), str(capture)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return rows_from_decode_json(result.stdout)


def _check_session_rows(rows: list[Row]) -> None:
    """The session's messages are all there (so the comparison covered them)."""
    kinds = Counter((row[3], row[4], row[6]) for row in rows if row[1] == remote.PROGRAM)
    assert kinds[(remote.STORAGE_VOL_UPLOAD, 0, 0)] == 2  # two upload calls
    assert kinds[(remote.STORAGE_VOL_DOWNLOAD, 0, 0)] == 2
    assert kinds[(remote.STORAGE_VOL_LOOKUP_BY_NAME, 1, 1)] == 1  # the error reply
    assert kinds[(remote.STORAGE_VOL_UPLOAD, 3, 1)] == 1  # the stream error
    assert kinds[(remote.STORAGE_VOL_UPLOAD, 6, 2)] >= 2  # holes up ...
    assert kinds[(remote.STORAGE_VOL_DOWNLOAD, 6, 2)] >= 2  # ... and down
    assert all(row[7] is not None and row[7] > 0 for row in rows if row[4] == 6)
    assert rows[-1][3] == remote.CONNECT_CLOSE and rows[-1][4] == 1
    keepalive = Counter(row[3] for row in rows if row[1] == KEEPALIVE)
    assert keepalive[1] >= 1 and keepalive[2] == keepalive[1]


def test_tshark_agrees_with_our_decoder_on_a_live_capture(
    server: StorageServer, pool: Path, tmp_path: Path
) -> None:
    require("tshark")
    port = server.address.port
    with tshark_capture(port, tmp_path / "cap") as capture:
        _session(port, pool, tmp_path)
    theirs = rows_from_tshark(tshark_fields(capture.path, port))
    ours = _decode_rows(capture.path, port)
    assert ours == theirs
    _check_session_rows(ours)


class RecordingRelay:
    """A TCP relay to ``target`` that records every chunk each side sent, in order."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.chunks: list[FlowChunk] = []
        self.client_port = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._run, daemon=True)
        self._accept.start()

    def _run(self) -> None:
        self.listener.settimeout(20)
        client, peer = self.listener.accept()
        self.client_port = peer[1]
        upstream = socket.create_connection(self.target)
        pumps = [
            (client, upstream, FlowDirection.CLIENT_TO_SERVER),
            (upstream, client, FlowDirection.SERVER_TO_CLIENT),
        ]
        for source, sink, direction in pumps:
            thread = threading.Thread(target=self._pump, args=(source, sink, direction))
            thread.start()
            self._threads.append(thread)
        for thread in self._threads:
            thread.join()
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: FlowDirection) -> None:
        source.settimeout(30)
        while data := source.recv(1 << 20):
            with self._lock:  # record and forward together: the order is the wire's
                self.chunks.append(FlowChunk(direction, data))
                sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._accept.join(30)
        self.listener.close()


def test_tshark_agrees_with_our_decoder_on_our_trace_export(
    server: StorageServer, pool: Path, tmp_path: Path
) -> None:
    require("tshark")
    relay = RecordingRelay(("127.0.0.1", server.address.port))
    try:
        _session(relay.port, pool, tmp_path)
    finally:
        relay.close()
    port = 16509  # any port: the export names it
    export = tmp_path / "export.pcapng"
    connection = SyntheticConnection(
        Endpoint("127.0.0.1", relay.client_port), Endpoint("127.0.0.1", port), relay.chunks
    )
    export.write_bytes(write_pcapng([connection]))
    theirs = rows_from_tshark(tshark_fields(export, port))
    ours = _decode_rows(export, port)
    assert ours == theirs
    _check_session_rows(ours)


def test_tshark_agrees_with_our_decoder_on_a_recorded_trace_export(
    server: StorageServer, pool: Path, tmp_path: Path
) -> None:
    """The conformance tools: `xdrstream trace record` relays and records the session,
    `xdrstream trace export --pcapng` writes the capture that tshark reads."""
    require("tshark")
    cli = [sys.executable, "-m", "xdrstream.cli", "trace"]
    trace = tmp_path / "session.jsonl"
    listen = tmp_path / "recorder.sock"
    upstream = f"tcp:127.0.0.1:{server.address.port}"
    record = [*cli, "record", "--listen", f"unix:{listen}", "--upstream", upstream]
    recorder = subprocess.Popen(
        [*record, "-o", str(trace), "--sessions", "1", "--program", "libvirt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert recorder.stdout is not None
        assert "listening" in recorder.stdout.readline()
        _session_over(f"qemu+unix:///session?socket={listen}", pool, tmp_path)
        recorder.wait(30)
    finally:
        stop_process(recorder)  # type: ignore[arg-type]
        for pipe in (recorder.stdout, recorder.stderr):
            if pipe is not None:
                pipe.close()
    assert recorder.returncode == 0
    port = 16509
    export = tmp_path / "export.pcapng"
    result = subprocess.run(
        [*cli, "export", "--pcapng", str(export), "--port", str(port), str(trace)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    theirs = rows_from_tshark(tshark_fields(export, port))
    ours = _decode_rows(export, port)
    assert ours == theirs
    _check_session_rows(ours)

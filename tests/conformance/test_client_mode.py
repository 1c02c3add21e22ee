"""Client-testing mode and the recording proxy: ``conformance serve`` plays the committed
traces' server sides to a client under test; ``trace record`` relays sessions byte for byte."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from xdrstream.conformance import make_traces, recorder, replay
from xdrstream.conformance.trace import C2S, S2C
from xdrstream.endpoints.qemu_stub import synthetic_bytes
from xdrstream.restore.client import Client
from xdrstream.transport import address as addresses
from xdrstream.transport.errors import TransportError
from xdrstream.transport.options import Options

OPTIONS = Options(chunk_size=16384, timeout=10)


def _restore(address: addresses.Address, variant: int, items: list) -> None:
    with Client.connect(address, options=OPTIONS) as client:
        client.restore(items, variant, name=f"trace-v{variant}")


def _save(address: addresses.Address, variant: int) -> bytes:
    out = bytearray()
    with Client.connect(address, options=OPTIONS) as client:
        client.save(lambda chunk: out.extend(chunk), variant, name=f"{make_traces.SIZE}:7")
    return bytes(out)


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_reference_client_passes_the_trace_server(variant: int, short_dir: Path) -> None:
    address = addresses.parse_address(f"unix:{short_dir / f'serve{variant}.sock'}")
    with replay.TraceServer(address, replay.committed_traces("restore"), timeout=5) as server:
        server.start()
        _restore(server.address, variant, make_traces.image_items())
        data = _save(server.address, variant)
        server.close()
    assert data == synthetic_bytes(make_traces.SIZE, 7)
    assert [(r.name, r.ok, r.detail) for r in server.results] == [
        (f"v{variant}-upload.jsonl", True, ""),
        (f"v{variant}-download.jsonl", True, ""),
    ]
    assert {c for r in server.results for c in r.cases} == {
        {1: "7.2.2/1", 2: "7.3.1/1", 3: "7.4.1/1"}[variant],
        {1: "7.2.3/1", 2: "7.3.2/1", 3: "7.4.2/1"}[variant],
    }


def test_trace_server_catches_a_client_that_sends_other_data(short_dir: Path) -> None:
    address = addresses.parse_address(f"unix:{short_dir / 'serve-bad.sock'}")
    items = make_traces.image_items()
    damaged = bytearray(items[0])  # type: ignore[arg-type]
    damaged[5000] ^= 0xFF
    with replay.TraceServer(address, replay.committed_traces("restore"), timeout=2) as server:
        server.start()
        # the recorded server side is played whatever the data; the verdict compares it
        _restore(server.address, 2, [bytes(damaged), *items[1:]])
        server.close()
    [result] = server.results
    assert not result.ok and result.role == "client"
    assert "data bytes sha256" in result.detail


def test_trace_server_reports_an_unknown_first_call(short_dir: Path) -> None:
    address = addresses.parse_address(f"unix:{short_dir / 'serve-none.sock'}")
    with replay.TraceServer(address, replay.committed_traces("restore"), timeout=2) as server:
        server.start()
        with pytest.raises(TransportError), Client.connect(server.address, options=OPTIONS) as c:
            c.echo(b"no trace starts with an echo")
        server.close()
    [result] = server.results
    assert not result.ok and "no trace starts with proc 2" in result.detail
    assert "no trace starts with this procedure at all" in result.detail


def test_trace_server_names_the_traces_of_a_known_procedure(short_dir: Path) -> None:
    # a save under a name no trace recorded: the report says which traces the client could pick
    address = addresses.parse_address(f"unix:{short_dir / 'serve-name.sock'}")
    with replay.TraceServer(address, replay.committed_traces("restore"), timeout=2) as server:
        server.start()
        with pytest.raises(TransportError), Client.connect(server.address, options=OPTIONS) as c:
            c.save(lambda chunk: None, 2, name="no-such-trace")
        server.close()
    [result] = server.results
    assert not result.ok and "traces starting with this procedure: " in result.detail
    assert "client-3-4-5.jsonl" in result.detail and "v2-download.jsonl" in result.detail


def test_recording_proxy_relays_byte_for_byte(
    reference_server: addresses.Address, short_dir: Path
) -> None:
    listen = addresses.parse_address(f"unix:{short_dir / 'rec.sock'}")
    sent = synthetic_bytes(make_traces.SIZE, 7)
    with recorder.RecordingProxy(listen, reference_server) as proxy:
        _restore(proxy.address, 2, [sent])
        received = _save(proxy.address, 3)
        sessions = proxy.wait(2, timeout=20)
    assert received == sent
    trace = recorder.to_trace(sessions)
    assert sum(f.close for f in trace.frames) == 4  # both sides of both sessions
    for frame in trace.frames:
        assert frame.close or int.from_bytes(frame.data[:4], "big") == len(frame.data)
    wire = {
        d: b"".join(c for s in sessions for _, _, dd, c in s.chunks if dd == d) for d in (C2S, S2C)
    }
    assert trace.stream_bytes(C2S) == wire[C2S] and trace.stream_bytes(S2C) == wire[S2C]
    assert sent in b"".join(f.data[28:] for f in trace.side(C2S))


def test_recording_proxy_keeps_a_frame_cut_off_by_the_close(
    reference_server: addresses.Address, short_dir: Path
) -> None:
    listen = addresses.parse_address(f"unix:{short_dir / 'rec2.sock'}")
    ping = bytes.fromhex("0000001c584452530000000100000001000000000000000500000000")
    with recorder.RecordingProxy(listen, reference_server) as proxy:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(proxy.address.path)
            sock.sendall(ping + ping[:10])
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            while sock.recv(4096):
                pass
        trace = recorder.to_trace(proxy.wait(1, timeout=10))
    lines = [(f.direction, f.close, f.partial, f.data) for f in trace.frames]
    assert (C2S, False, False, ping) in lines
    assert (C2S, False, True, ping[:10]) in lines
    assert lines.index((C2S, False, True, ping[:10])) < lines.index((C2S, True, False, b""))


def test_record_command_writes_a_trace(
    reference_server: addresses.Address, short_dir: Path, tmp_path: Path
) -> None:
    from xdrstream.cli import main
    from xdrstream.conformance.trace import read

    out = tmp_path / "rec.jsonl"
    listen = short_dir / "rec3.sock"
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(
            main(
                [
                    "trace",
                    "record",
                    "--listen",
                    f"unix:{listen}",
                    "--upstream",
                    str(reference_server),
                    "-o",
                    str(out),
                    "--cases",
                    "4.4.1/1",
                    "--description",
                    "a ping",
                ]
            )
        ),
    )
    thread.start()
    for _ in range(200):
        if listen.exists():
            break
        threading.Event().wait(0.02)
    with Client.connect(f"unix:{listen}", options=OPTIONS) as client:
        client.ping()
    thread.join(20)
    assert codes == [0]
    trace = read(out)
    assert trace.cases == ["4.4.1/1"] and trace.description == "a ping"
    assert [f.direction for f in trace.frames if not f.close] == [C2S, S2C]


CLIENT_CASES = ["4.4.3/1", "4.4.3/2", "3.4/5", "7.3.3/7"]


@pytest.mark.parametrize("case_id", CLIENT_CASES)
def test_reference_client_passes_the_client_cases(case_id: str, short_dir: Path) -> None:
    name = make_traces.client_case_name(case_id)
    address = addresses.parse_address(f"unix:{short_dir / (name + '.sock')}")
    with replay.TraceServer(address, replay.committed_traces("restore"), timeout=3) as server:
        server.start()
        # the misbehaving server fails the save
        with pytest.raises(TransportError), Client.connect(server.address, options=OPTIONS) as c:
            c.save(lambda chunk: None, 2, name=name)
        server.close()
    [result] = server.results
    assert (result.ok, result.detail, result.cases) == (True, "", [case_id])


def test_a_client_that_does_not_close_fails_the_client_case(short_dir: Path) -> None:
    from xdrstream.conformance.cases import SAVE_PROC, pack_args, raw, save_args

    name = make_traces.client_case_name("4.4.3/1")
    address = addresses.parse_address(f"unix:{short_dir / 'lazy.sock'}")
    call = raw(SAVE_PROC[2], 0, 0, 0, pack_args(SAVE_PROC[2], save_args(name)))
    with replay.TraceServer(address, replay.committed_traces("restore"), timeout=0.5) as server:
        server.start()
        with socket.socket(socket.AF_UNIX) as sock:  # ignores the bad reply, stays connected
            sock.connect(str(server.address.path))
            sock.sendall(call)
            for _ in range(100):
                if server.results:
                    break
                threading.Event().wait(0.05)
        server.close()
    [result] = server.results
    assert not result.ok and "did not close" in result.detail

"""Committed traces: well-formed, decodable, covering every variant, direction and error
path; regenerated identically by make_traces; replayed identically by the reference server;
exported to pcapng that our decoder (and tshark's libvirt dissector) read back."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from broken_servers import BrokenServer, Fault

from xdrstream.capture.decode import DecodedMessage, Decoder, StreamFailure
from xdrstream.conformance import ladder, make_traces, replay
from xdrstream.conformance.catalogue import CATALOGUE, Context, all_cases
from xdrstream.conformance.trace import (
    C2S,
    S2C,
    Trace,
    TraceError,
    TraceFrame,
    dumps,
    from_frames,
    loads,
    read,
)
from xdrstream.fuzz.corpus import canonical_sessions
from xdrstream.protocol import Role
from xdrstream.protocol.framing import Header, MessageStatus, MessageType, pack_frame
from xdrstream.transport import address as addresses

TRACES = sorted(replay.traces_dir().glob("*.jsonl"))
#: Recorded by tests/conformance/make_libvirt_traces.py (needs a libvirtd), not make_traces.
RECORDED_FROM_LIBVIRTD = ("libvirt-vol-upload", "libvirt-vol-download")
REPO = Path(__file__).resolve().parents[2]


def test_traces_are_committed_for_every_variant_direction_and_error_path() -> None:
    names = {p.stem for p in TRACES}
    for variant in (1, 2, 3):
        assert {f"v{variant}-upload", f"v{variant}-download"} <= names
    for _case, name in make_traces.CASE_TRACES:
        assert name in names
    assert {
        "libvirt-screenshot",
        "libvirt-vol-upload-sparse",
        "libvirt-vol-download-sparse",
        *RECORDED_FROM_LIBVIRTD,
    } <= names


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_committed_trace_is_well_formed_and_decodes(path: Path) -> None:
    trace = read(path)
    all_cases()
    assert trace.description and trace.cases
    assert all(case_id in CATALOGUE for case_id in trace.cases), trace.cases
    assert set(trace.programs) <= {"restore", "libvirt_remote"}
    for frame, message in zip(trace.frames, ladder.decode_frames(trace), strict=True):
        if frame.close:
            assert message is None
        elif frame.partial:
            assert isinstance(message, StreamFailure)
        else:
            assert isinstance(message, DecodedMessage), (path.name, message)
            assert message.length == len(frame.data)
            assert message.body_error is None, (path.name, message.body_error)
    text = ladder.render(trace)
    assert text.count("──────▶") == len(trace.side(C2S)) + sum(
        f.close for f in trace.frames if f.direction == C2S
    )
    assert text.count("◀──────") == len(trace.side(S2C)) + sum(
        f.close for f in trace.frames if f.direction == S2C
    )


def test_make_traces_regenerates_the_committed_traces(tmp_path: Path) -> None:
    written = make_traces.generate(tmp_path, REPO / "tests" / "fixtures" / "libvirt")
    recorded = {f"{name}.jsonl" for name in RECORDED_FROM_LIBVIRTD}
    assert {p.name for p in written} == {p.name for p in TRACES} - recorded
    for path in written:
        new, old = read(path), read(replay.traces_dir() / path.name)
        assert (new.cases, new.variant, new.direction) == (old.cases, old.variant, old.direction)
        if str(old.extra.get("source", "")).startswith("tests/fixtures/"):
            assert new.frames == old.frames, path.name  # captures: frames and closes in order
        if old.extra.get("replay") is False or any(f.expect for f in old.frames):
            continue  # timing decides the chunks (V1 READ answers, data in flight at an abort)
        for side in (C2S, S2C):  # the two sides interleave by timing; each side's steps must not
            old_steps = replay.normalise([(side, f.data) for f in old.side(side)])
            new_steps = replay.normalise([(side, f.data) for f in new.side(side)])
            assert replay.compare(old_steps, new_steps) is None, (path.name, side)


def test_reference_server_replays_every_committed_trace(
    reference_server: addresses.Address,
) -> None:
    context = Context(reference_server, timeout=5.0)
    results = [replay.replay_file(p, context) for p in replay.committed_traces("restore")]
    assert len(results) >= 20
    assert [(r.name, r.detail) for r in results if not r.ok] == []
    skipped = {r.name for r in results if r.skipped}
    assert {n for n in skipped if not n.startswith("client-")} == {
        "v1-download.jsonl",  # timing: see their replay_note
        "v1-upload-client-abort.jsonl",
    }


def test_replay_catches_a_server_that_loses_a_chunk(
    reference_server: addresses.Address, short_dir: Path
) -> None:
    path = replay.traces_dir() / "v2-download.jsonl"
    with BrokenServer(Fault.LOSES_CHUNK, reference_server, short_dir / "lose.sock") as broken:
        result = replay.replay_file(path, Context(broken.address, timeout=1.0))
    assert not result.ok
    assert "data bytes" in result.detail


def test_replay_fails_a_server_that_closes_where_the_trace_does_not(short_dir: Path) -> None:
    """The server answers the first of two calls, then closes: the trace records no close."""
    session = canonical_sessions()[2]  # echo: one call, one reply
    (call,) = [frame for role, frame in session if role is Role.CLIENT]
    (answer,) = [frame for role, frame in session if role is Role.SERVER]
    path = short_dir / "closer.sock"
    listener = addresses.listen(addresses.parse_address(f"unix:{path}"))

    def answer_once_then_close() -> None:
        sock, _ = listener.accept()
        with sock:
            received = b""
            while len(received) < len(call):
                received += sock.recv(65536)
            sock.sendall(answer)

    server = threading.Thread(target=answer_once_then_close, daemon=True)
    server.start()
    trace = from_frames([(Role.CLIENT, call), (Role.SERVER, answer)] * 2)
    try:
        result = replay.replay(trace, Context(addresses.parse_address(f"unix:{path}"), timeout=2))
    finally:
        server.join(10)
        listener.close()
        path.unlink()
    assert not result.ok
    # Where exactly depends on whether the second call was still sent before the close.
    assert re.match(
        r"the server closed the connection after frame (2|3); the trace expects frame (3|4) "
        r"next: (client->server CALL/OK|server->client REPLY/OK) proc 2 serial \d+ \(\d+ bytes\)",
        result.detail,
    ), result.detail


def test_normalise_renumbers_serials_and_merges_data() -> None:
    from xdrstream.conformance.cases import raw

    def session(base: int, cut: int) -> list[tuple[str, bytes]]:
        data = bytes(range(200)) * 10
        return [
            (C2S, raw(7, 0, base, 0, b"\0\0\0\1x\0\0\0\0\0\0\0")),
            (S2C, raw(7, 1, base, 0, bytes(8))),
            (S2C, raw(7, 3, base, 2, data[:cut])),
            (S2C, raw(7, 3, base, 2, data[cut:])),
            (S2C, raw(7, 3, base, 2)),
        ]

    assert replay.normalise(session(0, 100)) == replay.normalise(session(77, 1500))
    shorter = [*session(0, 100)[:-2], session(0, 100)[-1]]
    assert replay.compare(replay.normalise(session(0, 100)), replay.normalise(shorter))


# ---- the format ----------------------------------------------------------------------------
def test_format_round_trip_and_annotations() -> None:
    trace = Trace(
        [
            TraceFrame(C2S, bytes(28), time=0.5, note="call"),
            TraceFrame(S2C, bytes(range(100)) + bytes(28), expect={"serial": "any"}),
            TraceFrame(C2S, b"\0\0", partial=True),
            TraceFrame(S2C, close=True, time=1.0),
        ],
        variant="v2",
        direction="upload",
        description="d",
        cases=["7.3.1/1"],
        extra={"source": "test"},
    )
    text = dumps(trace)
    assert '"hex"' in text and '"b64"' in text
    again = loads(text)
    assert again == trace


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: empty trace"),
        ('{"xdrstream_trace": 2}\n', "format version 2 is not supported"),
        ('{"foo": 1}\n', "needs 'xdrstream_trace'"),
        ('{"xdrstream_trace": 1}\n{"dir": "up", "hex": ""}\n', "line 2: 'dir'"),
        ('{"xdrstream_trace": 1}\n\n{"dir": "c2s", "hex": "zz"}\n', "line 3: bad frame bytes"),
        ('{"xdrstream_trace": 1}\n{"dir": "c2s"}\n', "line 2: a frame needs"),
        ('{"xdrstream_trace": 1}\n{"dir": "c2s", "hex": "", "expect": {"x": 1}}', "line 2"),
        ('{"xdrstream_trace": 1}\nnot json\n', "line 2: not JSON"),
    ],
)
def test_format_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        loads(text)


def test_from_frames_is_the_fuzzers_simple_form() -> None:
    frame = bytes.fromhex("0000001c") + bytes(24)
    trace = from_frames([(Role.CLIENT, frame), (Role.SERVER, b"\0\0\0")], description="x")
    assert trace.pairs() == [(Role.CLIENT, frame), (Role.SERVER, b"\0\0\0")]
    assert [f.partial for f in trace.frames] == [False, True]
    assert loads(dumps(trace)).pairs() == trace.pairs()


# ---- pcapng export -------------------------------------------------------------------------
def _export_rows(path: Path, port: int) -> list[tuple[int, ...]]:
    trace = read(path)
    capture = ladder.to_pcapng(trace, port)
    messages = [m for m in Decoder.with_schemas().decode(capture, port)]
    assert all(isinstance(m, DecodedMessage) for m in messages), messages
    return [
        (m.length, *m.header[:6])  # type: ignore[union-attr]
        for m in messages
    ]


def _trace_rows(path: Path) -> list[tuple[int, ...]]:
    from xdrstream.protocol.framing import LEN_SIZE, parse_header

    trace = read(path)
    return [
        (len(f.data), *parse_header(f.data, LEN_SIZE)[:6])
        for f in trace.frames
        if not f.close and not f.partial
    ]


@pytest.mark.parametrize("name", ["v2-upload", "v1-download", "libvirt-vol-upload-sparse"])
def test_pcapng_export_decodes_back_to_the_trace(name: str) -> None:
    path = replay.traces_dir() / f"{name}.jsonl"
    assert sorted(_export_rows(path, 16509)) == sorted(_trace_rows(path))


@pytest.mark.real_peers
@pytest.mark.parametrize("name", ["v2-upload", "v3-download", "libvirt-vol-download-sparse"])
def test_tshark_libvirt_dissector_reads_the_export(name: str, tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("not installed: tshark")
    from realpeers import rows_from_tshark, tshark_fields

    path = replay.traces_dir() / f"{name}.jsonl"
    out = tmp_path / f"{name}.pcapng"
    from xdrstream.cli import main

    assert main(["trace", "export", "--pcapng", str(out), "--port", "16600", str(path)]) == 0
    rows = rows_from_tshark(tshark_fields(out, 16600))
    want = [r for r in _trace_rows(path)]
    got = [r[:7] for r in rows]
    assert sorted(got) == sorted(want)
    assert len(got) == len(want)
    assert (
        subprocess.run(["tshark", "-r", str(out)], capture_output=True, check=False).returncode == 0
    )


def test_expect_annotations_loosen_or_override_the_comparison() -> None:
    from xdrstream.conformance.cases import raw

    recorded = raw(7, 3, 5, 2, b"abc")
    got = replay.normalise([(S2C, raw(7, 3, 9, 2, b"abcdef"))])
    exact = replay.normalise([(S2C, recorded)])
    assert replay.compare(exact, got)  # other data
    loose = replay.normalise([(S2C, recorded, {"payload": "any", "serial": "any"})])
    assert replay.compare(loose, got) is None
    other_proc = replay.normalise([(S2C, recorded, {"proc": 8, "payload": "any"})])
    assert "proc 8" in (replay.compare(other_proc, got) or "")


def test_a_payload_difference_says_where() -> None:
    """Two replies alike but for their bytes (a UUID) print alike: the difference says where."""
    frame = pack_frame(Header(0x20008086, 1, 84, MessageType.REPLY, 6, MessageStatus.OK),
                       bytes(16) + bytes.fromhex("3d5fb1ac3cf54e29") + bytes(8))  # fmt: skip
    other = frame[:44] + bytes.fromhex("804b12b09b6f4db8") + frame[52:]
    difference = replay.compare(replay.normalise([(S2C, frame)]), replay.normalise([(S2C, other)]))
    assert difference is not None and difference.endswith(
        "(payload differs at byte 16: expected 3d5fb1ac3cf54e29, got 804b12b09b6f4db8)"
    )

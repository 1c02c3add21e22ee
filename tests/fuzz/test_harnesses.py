"""The harness functions (xdrstream.fuzz.harnesses) driven by hypothesis with valid and
mutated inputs, their seed corpora, and short atheris campaigns of fuzz/*_fuzzer.py."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fuzz_paths import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdrstream.codec import load_schema
from xdrstream.conformance.trace import read
from xdrstream.fuzz import corpus, harnesses, trace
from xdrstream.fuzz.corpus import TRACES
from xdrstream.fuzz.harnesses import (
    HARNESSES,
    InvariantError,
    check_memory,
    decode_one,
    decode_targets,
    frames_one,
    session_one,
    session_records,
)
from xdrstream.fuzz.mutators import Mutator
from xdrstream.fuzz.strategies import sessions, strategy_for
from xdrstream.protocol import Role

RESTORE, LIBVIRT = harnesses.protocol_schemas()
MUTATOR = Mutator([RESTORE, LIBVIRT])
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_decode_targets_cover_every_type_of_every_shipped_schema() -> None:
    files = harnesses.schema_files()
    assert {p.name for p in files} == {
        "message.x",
        "restore.x",
        "libvirt_remote.x",
        "everything.x",
        "rich.x",
    }
    expected = {(str(p), n) for p in files for n in load_schema(p).model.types}
    got = [(t.schema.filename, t.name) for t in decode_targets()]
    assert len(got) == len(set(got)) and {(str(Path(f)), n) for f, n in got} == expected


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_every_seed_runs_clean(name: str) -> None:
    seeds = corpus.seed_inputs(name)
    assert seeds
    for data in seeds:
        HARNESSES[name](data)
    if name == "session":
        # Valid conversations (the conformance traces also hold invalid ones on purpose):
        # neither engine reports an error.
        for session in corpus.canonical_sessions() + corpus.capture_sessions():
            session_one(session_records(corpus.deliveries(session)), strict=True)


def test_seeds_include_libvirt_captures_and_every_stream_kind() -> None:
    captured = corpus.capture_sessions()
    assert len(captured) >= 10
    procs = {int.from_bytes(f[12:16], "big") for s in captured for _r, f in s}
    assert {208, 209, 211} <= procs  # volume upload/download, screenshot streams
    canonical = corpus.canonical_sessions()
    restore_procs = {int.from_bytes(f[12:16], "big") for s in canonical for _r, f in s}
    assert set(range(1, 12)) <= restore_procs


def test_trace_round_trip(tmp_path: Path) -> None:
    frames = [(Role.CLIENT, b"\x00\x01"), (Role.SERVER, b"\xff")]
    path = tmp_path / "t.jsonl"
    trace.dump(path, frames, {"kind": "crash"})
    assert trace.load(path) == frames
    assert trace.load_meta(path) == {"kind": "crash"}
    # The conformance format: its reader accepts our file, ours accepts its traces.
    assert read(path).pairs() == frames and read(path).extra["fuzz"] == {"kind": "crash"}
    for committed in sorted(TRACES.glob("*.jsonl")):
        assert trace.load(committed) == read(committed).pairs()
    (tmp_path / "bad.jsonl").write_text('{"xdrstream_trace": 1}\n{"dir": "up", "hex": "00"}\n')
    with pytest.raises(ValueError, match="line 2"):
        trace.load(tmp_path / "bad.jsonl")


@FUZZ
@given(index=st.integers(0, 2**16 - 1), data=st.data())
def test_decode_harness_on_valid_and_mutated_encodings(index: int, data: Any) -> None:
    targets = decode_targets()
    target = targets[index % len(targets)]
    codec = target.schema.codec(target.name)
    encoded = codec.pack(data.draw(strategy_for(codec)))
    prefix = index.to_bytes(2, "big")
    decode_one(prefix + encoded)  # valid: accepted, re-encodes identically
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    buf = bytearray(encoded)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 1 and len(buf) >= 4:
            i = rng.randrange(0, len(buf) - 3) & ~3
            buf[i : i + 4] = rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF]).to_bytes(4, "big")
        elif op == 2 and buf:
            del buf[rng.randrange(len(buf)) :]
        else:
            buf[0:0] = rng.randbytes(4)
    decode_one(prefix + bytes(buf))


@FUZZ
@given(st.binary(max_size=300))
def test_all_harnesses_on_random_bytes(data: bytes) -> None:
    for harness in HARNESSES.values():
        harness(data)


@FUZZ
@given(
    session=sessions(RESTORE, max_steps=30), seed=st.integers(0, 2**32), rounds=st.integers(1, 4)
)
def test_protocol_harnesses_on_mutated_sessions(session: Any, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    deliveries = [(s.role, s.data) for s in session.steps if s.action == "deliver"]
    session_one(session_records(deliveries), strict=True)  # the valid session is accepted
    frames_one(bytes([rng.randrange(256)]) + session.to_server)
    wire = MUTATOR.mutate_stream(session.to_server, rng, rounds)
    frames_one(bytes([rng.randrange(256)]) + wire)
    for _ in range(rounds):
        if not deliveries:
            break
        i = rng.randrange(len(deliveries))
        receiver, frame = deliveries[i]
        choice = rng.random()
        if choice < 0.6:
            deliveries[i] = (receiver, MUTATOR.mutate_frame(frame, rng))
        elif choice < 0.8:
            deliveries.insert(rng.randrange(len(deliveries) + 1), deliveries[i])
        else:
            del deliveries[i]
    session_one(session_records(deliveries))


def test_memory_check_reports_growth() -> None:
    hoard: list[bytes] = []

    def greedy(data: bytes) -> None:
        hoard.append(bytes(1 << 20))

    with pytest.raises(InvariantError, match="memory peak"):
        check_memory(greedy, b"x", slack=1 << 16)
    seeds = corpus.seed_inputs("session")
    peak = max(check_memory(session_one, data) for data in seeds)
    assert peak > 0


def _load_entry(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(
        f"{name}_fuzzer", ROOT / "fuzz" / f"{name}_fuzzer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_entry_points_import_without_atheris(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "atheris", None)  # import atheris -> ImportError
    module = _load_entry(name)
    with pytest.raises(ImportError):
        module.run(name)


def _atheris_missing() -> bool:
    return importlib.util.find_spec("atheris") is None


@pytest.mark.skipif(_atheris_missing(), reason="atheris (extra 'fuzz') is not installed")
@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_short_atheris_campaign_exits_cleanly(name: str, tmp_path: Path) -> None:
    corpus_dir = tmp_path / "corpus"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "fuzz" / f"{name}_fuzzer.py"),
            "-atheris_runs=1000",
            "-seed=1",
            str(corpus_dir),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 1000" in proc.stderr
    assert len(list(corpus_dir.iterdir())) >= len(corpus.seed_inputs(name)) // 2
    assert not list(tmp_path.glob("crash-*"))

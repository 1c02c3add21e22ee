"""benchmarks/codec_realtypes.py (issue 13): its hand-written xdrlib3 baselines and compiled
construct definitions are right, i.e. build the very bytes our codecs build for the same real
libvirt and NFSv4 values and decode them to the same values; and a tiny run of the whole
benchmark (50 iterations per timing) prints its table with a MET/MISSED verdict per type.
Correctness of the baselines only: timing is the benchmark's business, not a test's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import codec_realtypes

pytestmark = pytest.mark.real_peers


def test_baselines_agree_byte_for_byte_with_ours() -> None:
    cases, _ = codec_realtypes.libvirt_cases()
    cases += codec_realtypes.nfs_cases()
    assert len(cases) == 9
    for case in cases:
        wire = codec_realtypes.check(case)  # asserts ours == xdrlib3 (== construct) bytes
        assert case.x3_pack(case.value) == wire
        assert case.x3_unpack(wire) == case.value
        # The baseline really reads what it is given: a different value's bytes differ.
        assert case.x3_unpack(wire) != case.codec.unpack(case.codec.pack(tweak(case)))


def tweak(case: codec_realtypes.Case) -> object:
    """The case's value with its first integer or bytes field changed."""
    import dataclasses

    value = case.value
    for field in dataclasses.fields(value):
        old = getattr(value, field.name)
        if isinstance(old, bool):
            continue
        if isinstance(old, int):
            return dataclasses.replace(value, **{field.name: type(old)(old ^ 1)})
        if isinstance(old, bytes):
            return dataclasses.replace(value, **{field.name: old + b"x"})
        if isinstance(old, list) and old:
            return dataclasses.replace(value, **{field.name: old[:-1]})
    raise AssertionError(f"nothing to tweak in {case.label}")


def test_a_tiny_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert codec_realtypes.main(["--iterations", "50"]) == 0
    out = capsys.readouterr().out
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| ") and ("MET" in line or "MISSED" in line)
    ]
    assert len(rows) == 9, out
    assert "COMPOUND4res" in out and "remote_domain_get_job_stats_ret" in out
    assert "Targets (" in out
    for line in ("compile of libvirt's", "import of the module", "loading the built-in schemas"):
        assert any(line in row and ("MET" in row or "MISSED" in row) for row in out.splitlines())
    assert "compile of libvirt's remote_protocol.x: " in out
    # shenaniganfs (issue 13's other generator): every file named, with its verdict, and
    # the header it compiles timed against ours
    assert "src/rpc/virnetprotocol.x: compiles" in out, out
    for name in ("src/remote/remote_protocol.x: ", "nfs4/nfs4.x: "):
        assert name in out, out
    lines = out.splitlines()
    table = lines.index("| value | shenaniganfs pack µs | unpack µs | ours vs it pack | unpack |")
    row = lines[table + 2].strip("| ").split(" | ")
    assert row[0] == "libvirt message header" and all(c.endswith("x") for c in row[3:5]), out

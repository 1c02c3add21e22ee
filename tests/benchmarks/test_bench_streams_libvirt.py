"""benchmarks/streams.py, protocol.py and libvirt.py (issue 12) run at a tiny size and print
a MET or MISSED verdict for every target issue 12 names.  The figures are the benchmarks'
business, not a test's: only that each target is measured and judged is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, *args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def verdicts(out: str, pattern: str) -> list[str]:
    """The MET/MISSED word of each line matching ``pattern``."""
    found = []
    for line in out.splitlines():
        if re.search(pattern, line):
            word = re.search(r"\b(MET|MISSED)\b", line)
            assert word, f"no verdict on: {line}"
            found.append(word.group(1))
    return found


@pytest.mark.slow
def test_streams_prints_a_verdict_for_every_issue_12_target() -> None:
    out = run(
        "streams.py",
        *("--size", "4M", "--rss-size", "4M", "--streams", "2", "--repeat", "1"),
    )
    # 1b: the CLI end to end, V1..V3 each way
    for direction in ("restore", "save"):
        assert len(verdicts(out, rf"^\| {direction} \| `xdrstream {direction}` V[123] ")) == 3
    assert re.search(r"^\| restore \| plain relay \|", out, re.M)
    # 2: peak RSS of each variant, 3: concurrent streams, with CPU s/GiB beside the baseline's
    assert len(verdicts(out, r"^\| V[123] \| [\d.]+ \| [\d.]+ \| < 64\.0 \|")) == 3
    assert len(verdicts(out, r"^\| V[123] \| \d+ \| \d+ \| [\d.]+ \| 0 \| >= 0\.90")) == 3
    assert re.search(r"^\| baseline \| \d+ \| \d+ \| [\d.]+ \| 0 \| \| \(reference\)", out, re.M)


def test_protocol_prints_the_engine_verdict() -> None:
    out = run("protocol.py", "--size", "1M", "--calls", "50", "--runs", "1")
    assert len(verdicts(out, r"engine V[23], 256 KiB socket reads >= 0\.8")) == 2


@pytest.mark.slow
@pytest.mark.real_peers
def test_libvirt_prints_the_client_verdicts() -> None:
    from realpeers import require

    require("libvirtd", "virsh")
    out = run("libvirt.py", "--size", "4M", "--repeat", "1")
    assert verdicts(out, r"our client upload >= 1\.2x virsh") in (["MET"], ["MISSED"])
    assert verdicts(out, r"our client download >= virsh") in (["MET"], ["MISSED"])
    assert "WRONG DATA" not in out

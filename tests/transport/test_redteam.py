"""The red team's small version (issue 15 part 6): each attack against a real server
process, the restore server and the storage-pool server (`serve --libvirt-storage`), stays
within the issue's bounds (benchmarks/redteam.py --scale 0.1)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

REDTEAM = Path(__file__).resolve().parents[2] / "benchmarks" / "redteam.py"


def test_redteam_small_meets_the_bounds() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = min(hard, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    try:
        run = subprocess.run(
            [sys.executable, str(REDTEAM), "--scale", "0.1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "MiB" in line]
    assert len(rows) == 6, run.stdout + run.stderr  # 100 and 1000 headers, scaled
    assert sum(row.startswith("| storage: ") for row in rows) == 2, run.stdout
    assert run.returncode == 0 and all("MET" in row for row in rows), run.stdout + run.stderr

"""The CLI's start-up: this checkout against a baseline commit, paired, in the same run.

    .venv/bin/python benchmarks/startup.py [--baseline REV] [--rounds 10]

The baseline commit's ``xdrstream`` package is extracted (``git archive``) into a temporary
directory; each round then runs every probe once with the baseline and once with this
checkout, interleaved (``PYTHONPATH`` picks the tree), so both see the same machine load.
Both trees are byte-compiled first (``compileall``), as an installed package is: without
``.pyc`` files (``PYTHONDONTWRITEBYTECODE``) every start compiles each module's source,
which is not what users run.
Probes: the in-process import time of ``xdrstream.restore.commands`` (what a restore, save
or serve pays before it parses its arguments), and the wall time of whole processes:
``xdrstream save --help``, ``xdrstream --version`` and ``xdrstream -h``. Prints best and
median of the rounds, the ratio baseline/ours of the bests, the load average, and the
targets (issue 12's CPU columns include start-up) as MET or MISSED. Always exits 0.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = "from xdrstream.cli import main; import sys; sys.exit(main())"
IMPORT = (
    "import time; t = time.perf_counter(); import xdrstream.restore.commands; "
    "print(time.perf_counter() - t)"
)
PROBES: dict[str, list[str]] = {
    "import xdrstream.restore.commands": ["-c", IMPORT],
    "xdrstream save --help": ["-c", CLI, "save", "--help"],
    "xdrstream --version": ["-c", CLI, "--version"],
    "xdrstream -h": ["-c", CLI, "-h"],
}
TARGETS = {"import xdrstream.restore.commands": 0.080, "xdrstream save --help": 0.120}


def extract(rev: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "xdrstream"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into)


def probe(tree: Path, argv: list[str], in_process: bool) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} in {tree} failed: {done.stderr}")
    return float(done.stdout.split()[-1]) if in_process else wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="db2b1e5", help="git revision (default db2b1e5)")
    parser.add_argument("--rounds", type=int, default=10, help="paired rounds (default 10)")
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        extract(args.baseline, base)
        trees = {"baseline": base, "ours": ROOT}
        for tree in trees.values():
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", str(tree / "xdrstream")], check=True
            )
        for name, argv in PROBES.items():  # warm the page cache and .pyc files
            for tree in trees.values():
                probe(tree, argv, name.startswith("import"))
        for _ in range(args.rounds):
            for name, argv in PROBES.items():
                for label, tree in trees.items():
                    seconds = probe(tree, argv, name.startswith("import"))
                    results.setdefault((name, label), []).append(seconds)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"Python {sys.version.split()[0]}; baseline {args.baseline}; {args.rounds} rounds")
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}\n")
    print("| probe | baseline best ms | ours best ms | baseline median | ours median | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    verdicts = []
    for name in PROBES:
        base_runs, ours_runs = results[(name, "baseline")], results[(name, "ours")]
        ratio = min(base_runs) / min(ours_runs)
        print(
            f"| {name} | {min(base_runs) * 1e3:.1f} | {min(ours_runs) * 1e3:.1f} "
            f"| {statistics.median(base_runs) * 1e3:.1f} "
            f"| {statistics.median(ours_runs) * 1e3:.1f} | {ratio:.2f}x |"
        )
        if name in TARGETS:
            met = min(ours_runs) < TARGETS[name]
            verdicts.append(
                f"  {'MET   ' if met else 'MISSED'} {name} < {TARGETS[name] * 1e3:.0f} ms: "
                f"{min(ours_runs) * 1e3:.1f} ms"
            )
    print("\nTargets (best of the rounds):")
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

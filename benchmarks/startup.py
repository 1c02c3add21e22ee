"""The CLI's start-up: this checkout against a baseline commit, paired, in the same run.

    .venv/bin/python benchmarks/startup.py [--baseline REV] [--rounds 10]

The baseline commit's ``xdrstream`` package is extracted (``git archive``) into a temporary
directory; each round then runs every probe once with the baseline and once with this
checkout, interleaved (``PYTHONPATH`` picks the tree), so both see the same machine load.
Both trees are byte-compiled first (``compileall``), as an installed package is: without
``.pyc`` files (``PYTHONDONTWRITEBYTECODE``) every start compiles each module's source,
which is not what users run. ``--no-pyc`` measures that case instead (both trees'
``__pycache__`` removed, nothing written: how a checkout with ``PYTHONDONTWRITEBYTECODE=1``
runs).
Probes: the in-process import time of ``xdrstream.restore.commands`` (what a restore, save
or serve pays before it parses its arguments), and the wall time of whole processes:
``xdrstream save --help``, ``xdrstream --version``, ``xdrstream -h``, and a whole
``xdrstream save --json`` of the stub's smallest stream from one ``xdrstream serve`` of this
checkout (wall and CPU of the client process: what part 1b of streams.py's start-up line
shows). Prints best and
median of the rounds, the ratio baseline/ours of the bests, the load average, and the
targets (issue 12's CPU columns include start-up) as MET or MISSED. Always exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from xdrstream.endpoints.qemu_stub import MIN_SIZE

ROOT = Path(__file__).resolve().parent.parent
CLI = "from xdrstream.cli import main; import sys; sys.exit(main())"
IMPORT = (
    "import time; t = time.perf_counter(); import xdrstream.restore.commands; "
    "t = time.perf_counter() - t; import os, sys, xdrstream; "
    "assert xdrstream.__file__.startswith(os.environ['PYTHONPATH']), xdrstream.__file__; "
    "print(t)"
)
SAVE = "xdrstream save (tiny, --json)"
PROBES: dict[str, list[str]] = {
    "import xdrstream.restore.commands": ["-c", IMPORT],
    "xdrstream save --help": ["-c", CLI, "save", "--help"],
    "xdrstream --version": ["-c", CLI, "--version"],
    "xdrstream -h": ["-c", CLI, "-h"],
    # {out} and {sock}: a save of the stub's smallest stream from one server (ours, started
    # once): the client's whole process, start-up included, as part 1b of streams.py runs it
    SAVE: ["-c", CLI, "save", "{out}", "--connect", "unix:{sock}", "--json", "--size", "{size}"],
}
EXTRA_ENV: dict[str, str] = {}
TARGETS = {"import xdrstream.restore.commands": 0.080, "xdrstream save --help": 0.120}


def extract(rev: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "xdrstream"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into)


def probe(tree: Path, argv: list[str], in_process: bool) -> tuple[float, float]:
    """(seconds, CPU seconds) of one run: the import's own clock, else the process's wall."""
    env = dict(os.environ, PYTHONPATH=str(tree), **EXTRA_ENV)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(  # cwd: `-c` puts the working directory first on sys.path
        [sys.executable, *argv], env=env, cwd=tree, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"{argv} in {tree} failed: {done.stderr}")
    return (float(done.stdout.split()[-1]) if in_process else wall), cpu


@contextlib.contextmanager
def server(work: Path) -> Iterator[Path]:
    """``xdrstream serve`` of this checkout on a Unix socket in `work`."""
    sock, log = work / "serve.sock", work / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-c", CLI, "serve", "--listen", f"unix:{sock}"]
    with open(log, "w") as out:
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while "listening" not in log.read_text():
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {log.read_text()}")
            time.sleep(0.05)
        yield sock
    finally:
        child.terminate()
        child.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="db2b1e5", help="git revision (default db2b1e5)")
    parser.add_argument("--rounds", type=int, default=10, help="paired rounds (default 10)")
    parser.add_argument(
        "--no-pyc", action="store_true", help="without .pyc files of xdrstream (see above)"
    )
    args = parser.parse_args()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "baseline"
        extract(args.baseline, base)
        trees = {"baseline": base, "ours": ROOT}
        for tree in trees.values():
            if args.no_pyc:
                for cache in (tree / "xdrstream").rglob("__pycache__"):
                    shutil.rmtree(cache)
                EXTRA_ENV["PYTHONDONTWRITEBYTECODE"] = "1"
            else:
                compile_all = [sys.executable, "-m", "compileall", "-q", str(tree / "xdrstream")]
                subprocess.run(compile_all, check=True)
        with server(work) as sock:
            fill = {"out": str(work / "saved"), "sock": str(sock), "size": str(MIN_SIZE)}
            probes = {n: [a.format(**fill) for a in argv] for n, argv in PROBES.items()}
            for name, argv in probes.items():  # warm the page cache
                for tree in trees.values():
                    probe(tree, argv, name.startswith("import"))
            for _ in range(args.rounds):
                for name, argv in probes.items():
                    for label, tree in trees.items():
                        measured = probe(tree, argv, name.startswith("import"))
                        results.setdefault((name, label), []).append(measured)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    pyc = "no .pyc" if args.no_pyc else "byte-compiled"
    print(f"Python {sys.version.split()[0]}; baseline {args.baseline}; {args.rounds} rounds; {pyc}")
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}\n")
    print(
        "| probe | baseline best ms | ours best ms | baseline median | ours median | ratio "
        "| CPU ms best: baseline, ours |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    for name in PROBES:
        base_runs = [s for s, _ in results[(name, "baseline")]]
        ours_runs = [s for s, _ in results[(name, "ours")]]
        cpus = [min(c for _, c in results[(name, label)]) * 1e3 for label in trees]
        ratio = min(base_runs) / min(ours_runs)
        cpu = "-" if name.startswith("import") else f"{cpus[0]:.0f}, {cpus[1]:.0f}"
        print(
            f"| {name} | {min(base_runs) * 1e3:.1f} | {min(ours_runs) * 1e3:.1f} "
            f"| {statistics.median(base_runs) * 1e3:.1f} "
            f"| {statistics.median(ours_runs) * 1e3:.1f} | {ratio:.2f}x | {cpu} |"
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

"""Fuzzing throughput: execs/s of each harness, in one run.

    .venv/bin/python benchmarks/fuzz.py [--quick]

For each harness of xdrstream.fuzz.harnesses (decode, frames, session):

  - in-process: the one-input function on its seed corpus mutated by the structure-aware
    mutator (xdrstream.fuzz.mutators), timed alone (mutation time excluded);
  - atheris: ``python fuzz/X_fuzzer.py -max_total_time=T -seed=1`` in a subprocess, libFuzzer's
    ``stat::number_of_executed_units`` / T (coverage instrumentation and mutators included),
    skipped when atheris is not installed; the ratio says what instrumentation costs;

and the live fuzzer (``xdrstream fuzz``) for a few seconds against the reference server
(``xdrstream serve`` on a Unix socket): one fresh connection per case.

Prints a markdown table; exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xdrstream.fuzz import corpus, harnesses
from xdrstream.fuzz.live import LiveFuzzer, Target
from xdrstream.fuzz.mutators import Mutator

ROOT = Path(__file__).resolve().parent.parent


def mutated_inputs(name: str, count: int, rng: random.Random) -> list[bytes]:
    seeds = corpus.seed_inputs(name)
    mutator = Mutator(list(harnesses.protocol_schemas()))
    out = []
    for _ in range(count):
        data = rng.choice(seeds)
        if name == "decode":
            buf = bytearray(data)
            if len(buf) > 2:
                buf[rng.randrange(2, len(buf))] ^= 1 << rng.randrange(8)
            out.append(bytes(buf))
        else:
            out.append(data[:1] + mutator.mutate_stream(data[1:], rng, rng.randint(1, 3)))
    return out


def in_process(name: str, count: int) -> float:
    inputs = mutated_inputs(name, count, random.Random(1))
    harness = harnesses.HARNESSES[name]
    start = time.perf_counter()
    for data in inputs:
        harness(data)
    return count / (time.perf_counter() - start)


def atheris_rate(name: str, seconds: int) -> float | None:
    if importlib.util.find_spec("atheris") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "fuzz" / f"{name}_fuzzer.py"),
                f"-max_total_time={seconds}",
                "-seed=1",
                "-print_final_stats=1",
                str(Path(tmp) / "corpus"),
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=600,
        )
    match = re.search(r"stat::number_of_executed_units:\s+(\d+)", proc.stderr)
    return int(match.group(1)) / seconds if match and proc.returncode == 0 else None


def live_rate(seconds: float) -> float | None:
    server = shutil.which("xdrstream") or str(Path(sys.executable).parent / "xdrstream")
    directory = Path(tempfile.mkdtemp(prefix="xsbench", dir="/tmp"))
    try:
        address = f"unix:{directory / 'ref.sock'}"
        fuzzer = LiveFuzzer(Target(address, f"{server} serve --listen {address}", 1.0), seed=1)
        summary = fuzzer.run(seconds)
        return summary.execs_per_second
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer executions")
    args = parser.parse_args()
    count = 500 if args.quick else 5000
    seconds = 3 if args.quick else 10
    harnesses.prepare()
    print("| harness | in-process execs/s | atheris execs/s | atheris / in-process |")
    print("|---|---:|---:|---:|")
    for name in harnesses.HARNESSES:
        direct = in_process(name, count)
        fuzzed = atheris_rate(name, seconds)
        cell = "n/a (no atheris)" if fuzzed is None else f"{fuzzed:,.0f}"
        ratio = "" if fuzzed is None else f"{fuzzed / direct:.2f}"
        print(f"| {name} | {direct:,.0f} | {cell} | {ratio} |")
    rate = live_rate(3 if args.quick else 10)
    print(f"| live vs reference server | {rate:,.0f} | | |" if rate else "| live | failed | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""atheris harness: every type of every shipped schema; the first two bytes choose the type.

    python fuzz/decode_fuzzer.py [-atheris_runs=N] [-seed=S] [corpus_dir]

The per-input logic is :func:`xdrstream.fuzz.harnesses.decode_one`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _entry import run

if __name__ == "__main__":
    run("decode")

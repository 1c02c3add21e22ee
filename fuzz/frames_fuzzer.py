#!/usr/bin/env python3
"""atheris harness: FrameDecoder and a server Connection fed the input in reads.

    python fuzz/frames_fuzzer.py [-atheris_runs=N] [-seed=S] [corpus_dir]

The per-input logic is :func:`xdrstream.fuzz.harnesses.frames_one`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _entry import run

if __name__ == "__main__":
    run("frames")

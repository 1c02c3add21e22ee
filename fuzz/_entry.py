"""Shared start-up of the atheris entry points (OSS-Fuzz Python layout).

Each ``X_fuzzer.py`` is runnable as ``python fuzz/X_fuzzer.py [libFuzzer flags] [corpus_dir]``.
atheris is imported only in :func:`run`, so the modules import without it. A corpus
directory that is empty (or missing) is first filled with the seeds of
:mod:`xdrstream.fuzz.corpus`. Every 64th input also runs under tracemalloc to check that
memory stays linear in the input (:func:`xdrstream.fuzz.harnesses.check_memory`).
"""

from __future__ import annotations

import gc
import os
import sys
import types
from pathlib import Path
from typing import Any

MEMORY_CHECK_EVERY = 64
# Peak memory allowed per input byte (plus a constant): see harnesses.check_memory.
MEMORY_FACTOR = int(os.environ.get("XDRSTREAM_FUZZ_MEMORY_FACTOR", "16"))


def _seed_corpus(name: str, argv: list[str], corpus: Any) -> None:
    dirs = [Path(a) for a in argv[1:] if not a.startswith("-")]
    if not dirs:
        return
    target = dirs[0]
    if not target.exists() or not any(target.iterdir()):
        corpus.write_corpus(name, target)


def _instrument_generated(atheris: Any) -> None:
    """Generated codecs are compiled with exec(), so instrument_imports misses them;
    instrument_all() would take ~40 s, so find just their functions."""
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__code__.co_filename.startswith(
            "<xdrstream generated"
        ):
            atheris.instrument_func(obj)


def run(name: str, argv: list[str] | None = None) -> None:
    import atheris

    argv = list(sys.argv if argv is None else argv)
    # Instrument before anything imports xdrstream (seeding the corpus would).
    with atheris.instrument_imports(include=["xdrstream"]):
        from xdrstream.fuzz import corpus, harnesses
    _seed_corpus(name, argv, corpus)
    harness = harnesses.HARNESSES[name]
    harnesses.prepare()
    _instrument_generated(atheris)
    count = 0

    def test_one_input(data: bytes) -> None:
        nonlocal count
        count += 1
        if count % MEMORY_CHECK_EVERY == 0:
            harnesses.check_memory(harness, data, factor=MEMORY_FACTOR)
        else:
            harness(data)

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()

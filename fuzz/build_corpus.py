#!/usr/bin/env python3
"""Write the seed corpora of the harnesses: OUT/decode, OUT/frames, OUT/session, and with
``--zip`` OSS-Fuzz's ``X_fuzzer_seed_corpus.zip`` files next to them.

    python fuzz/build_corpus.py OUT [--zip]
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

from xdrstream.fuzz import corpus
from xdrstream.fuzz.harnesses import HARNESSES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--zip", action="store_true", help="also write X_fuzzer_seed_corpus.zip")
    args = parser.parse_args()
    for name in HARNESSES:
        directory = args.out / name
        count = corpus.write_corpus(name, directory)
        print(f"{name}: {count} seeds in {directory}")
        if args.zip:
            with zipfile.ZipFile(args.out / f"{name}_fuzzer_seed_corpus.zip", "w") as archive:
                for path in sorted(directory.iterdir()):
                    archive.write(path, path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

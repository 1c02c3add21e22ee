#!/bin/bash -eu
# Build every atheris harness fuzz/*_fuzzer.py the OSS-Fuzz Python way (compile_python_fuzzer
# bundles it with PyInstaller), with its seed corpus (fuzz/build_corpus.py --zip) beside it.
# tests/fuzz/test_clusterfuzzlite.py checks that every harness is listed here.
pip3 install .
python3 fuzz/build_corpus.py "$WORK/corpus" --zip
for fuzzer in decode_fuzzer frames_fuzzer session_fuzzer; do
  compile_python_fuzzer "fuzz/$fuzzer.py" --add-data fuzz/_entry.py:.
  cp "$WORK/corpus/${fuzzer}_seed_corpus.zip" "$OUT/"
done

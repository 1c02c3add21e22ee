"""ClusterFuzzLite / OSS-Fuzz layout (issue 15 part 7): .clusterfuzzlite/build.sh builds
every fuzz/*_fuzzer.py harness, and each runs as that build runs it (a standalone script,
libFuzzer flags, a seed corpus directory)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESSES = sorted(p.stem for p in (ROOT / "fuzz").glob("*_fuzzer.py"))


def test_build_sh_builds_every_harness() -> None:
    build = (ROOT / ".clusterfuzzlite" / "build.sh").read_text()
    listed = re.search(r"for fuzzer in ([\w ]+); do", build)
    assert listed is not None and "compile_python_fuzzer" in build
    assert sorted(listed.group(1).split()) == HARNESSES and len(HARNESSES) == 3
    assert (ROOT / ".clusterfuzzlite" / "project.yaml").read_text().strip() == "language: python"
    dockerfile = (ROOT / ".clusterfuzzlite" / "Dockerfile").read_text()
    assert "FROM gcr.io/oss-fuzz-base/base-builder-python" in dockerfile


@pytest.fixture(scope="module")
def seed_corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """build_corpus.py's output, as build.sh ships it: a directory and a zip per harness."""
    pytest.importorskip("atheris", reason="atheris is not installed (pip install '.[fuzz]')")
    out = tmp_path_factory.mktemp("corpora")
    built = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "build_corpus.py"), str(out), "--zip"],
        capture_output=True, text=True, timeout=120, env=os.environ,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return out


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_runs_standalone_on_its_seed_corpus(name: str, seed_corpora: Path) -> None:
    short = name.removesuffix("_fuzzer")
    assert (seed_corpora / f"{name}_seed_corpus.zip").stat().st_size > 0
    seeds = seed_corpora / short
    assert any(seeds.iterdir())
    # every seed, then some mutations of them: the run OSS-Fuzz starts with
    runs = len(list(seeds.iterdir())) + 300
    run = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / f"{name}.py"), f"-runs={runs}", str(seeds)],
        capture_output=True, text=True, timeout=600, env=os.environ,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(rf"Done {runs} runs", run.stderr), run.stderr[-3000:]

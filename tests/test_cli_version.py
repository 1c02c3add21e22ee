"""`xdrstream --version` (issue 15 part 8): the installed package's version, from the real CLI."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import xdrstream


def test_version_flag_prints_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xdrstream.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"xdrstream {xdrstream.__version__}"
    assert xdrstream.__version__ == version("xdrstream")  # one version, pyproject's

"""Settings for the whole suite."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_CACHE_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # The codec's compile cache ($XDG_CACHE_HOME/xdrstream/codec) of this run, shared by
    # its subprocesses: a run neither reads what earlier runs left nor evicts the user's.
    _CACHE_HOME.append(tempfile.mkdtemp(prefix="xdrstream-test-cache-"))
    os.environ["XDG_CACHE_HOME"] = _CACHE_HOME[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _CACHE_HOME:
        shutil.rmtree(path, ignore_errors=True)

"""The differential against real QEMU prints its agreement rate in the terminal summary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_cli_support import Leaks

DIFFERENTIAL = pytest.StashKey[list[str]]()


@pytest.fixture
def leaks() -> Iterator[Leaks]:
    """No process or descriptor a test started outlives it (test_cli_support.Leaks)."""
    leaks = Leaks()
    yield leaks
    leaks.check()


@pytest.fixture(scope="session")
def differential_report(request: pytest.FixtureRequest) -> list[str]:
    """Lines for the terminal summary (test_qemu_differential.py fills them)."""
    return request.config.stash.setdefault(DIFFERENTIAL, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(DIFFERENTIAL, [])
    if lines:
        terminalreporter.section("QEMU stub vs real QEMU 7.2")
        for line in lines:
            terminalreporter.write_line(line)

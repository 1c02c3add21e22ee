"""Fixtures of the conformance tests: a reference server and a runner of the catalogue."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from judged_clients import JUDGED_CLIENTS

from xdrstream.restore.server import RestoreServer, ServerThread
from xdrstream.transport import address as addresses


@pytest.fixture(scope="session")
def short_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (their paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="xs-cf-") as name:
        yield Path(name)


@pytest.fixture(scope="session")
def reference_server(short_dir: Path) -> Iterator[addresses.Address]:
    """The reference server (QEMU stub endpoints) on a Unix socket, for the whole session."""
    with ServerThread(RestoreServer(f"unix:{short_dir / 'ref.sock'}")) as server:
        yield server.address


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The judged clients' table (issue 16 part 5), so CI output shows it."""
    table = config.stash.get(JUDGED_CLIENTS, None)
    if not table:
        return
    terminalreporter.section("clients judged by xdrstream.conformance.judge")
    terminalreporter.write_line(f"{'client':<38} cases  pass  fail  skip  deviation")
    for client, counts in table.items():
        terminalreporter.write_line(
            f"{client:<38} {sum(counts.values()):>5} {counts.get('pass', 0):>5} "
            f"{counts.get('fail', 0):>5} {counts.get('skip', 0):>5} "
            f"{counts.get('deviation', 0):>10}"
        )

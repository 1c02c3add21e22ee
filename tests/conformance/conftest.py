"""Fixtures of the conformance tests: a reference server and a runner of the catalogue."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from xdrstream.conformance.catalogue import Context, Result, all_cases, run_case, select
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


def run_catalogue(
    address: addresses.Address,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    timeout: float = 5.0,
    strict: bool = True,
    program: str = "restore",
) -> dict[str, Result]:
    context = Context(address, program=program, timeout=timeout)
    servers = [c for c in select(all_cases(), include, exclude) if c.role == "server"]
    return {item.id: run_case(item, context, strict) for item in servers}


def failed(results: dict[str, Result]) -> set[str]:
    return {case_id for case_id, r in results.items() if r.outcome in ("fail", "error")}

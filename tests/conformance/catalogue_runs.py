"""Running the server catalogue from tests, in a module of its own: test modules import it by
this unique name (``from conftest import`` can reach another directory's conftest)."""

from __future__ import annotations

from collections.abc import Sequence

from xdrstream.conformance.catalogue import Context, Result, all_cases, run_case, select
from xdrstream.transport import address as addresses


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

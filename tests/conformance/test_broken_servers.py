"""The suite can fail: each deliberately broken server is caught by exactly the cases its bug
breaks, and the reference server passes the whole catalogue (SHOULD cases included)."""

from __future__ import annotations

from pathlib import Path

import pytest
from broken_servers import BrokenServer, Fault
from catalogue_runs import failed, run_catalogue

from xdrstream.transport import address as addresses

#: Which cases each bug must fail -- and no other case may fail.
EXPECTED: dict[Fault, set[str]] = {
    # every V3 upload that expects the reply after the data; 7.4.3/1 and 10.2/1 expect an
    # ERROR reply and get the early OK first
    Fault.V3_EARLY_REPLY: {"7.4.1/1", "7.4.1/2", "7.4.3/1", "7.4.3/4", "10.2/1", "10.3/1"},
    Fault.SERIAL_IN_USE: {"4.3.2/1"},
    # V2 aborts are never confirmed; a V3 upload abort never gets its reply (a V3 download
    # just completes, which §7.4.3 allows)
    Fault.IGNORES_ABORT: {"7.3.3/1", "7.3.3/2", "7.3.3/3", "7.3.3/4", "7.4.3/2"},
    Fault.ACCEPTS_OVERSIZED: {"3.4/2", "3.4/3"},
    # every case that checks a V2/V3 download's bytes
    Fault.LOSES_CHUNK: {"4.7/2", "5/3", "7.1.2/2", "7.3.2/1", "7.4.2/1", "8.2/1", "10.3/1"},
    Fault.NO_DRAINING: {"7.3.3/5", "7.4.3/1", "10.2/1"},
    Fault.ANSWERS_BAD_TYPE: {"3.2/1", "10.1/1", "10.1/2"},
    Fault.ECHO_WRONG_SERIAL: {"4.4.1/1"},
}


#: Slow cases (large transfers, deliberate pauses): run against a broken server only where
#: its bug is expected to show; the reference-server test runs them all.
COSTLY = frozenset({"8.2/1", "7.4.1/2", "5/3", "3.3/1", "10.3/1", "4.6/1"})


def test_reference_server_passes_everything(reference_server: addresses.Address) -> None:
    results = run_catalogue(reference_server)
    bad = failed(results)
    assert bad == set(), {k: results[k].detail for k in bad}
    outcomes = {r.outcome for r in results.values()}
    assert outcomes <= {"pass", "skip"}
    skipped = {k for k, r in results.items() if r.outcome == "skip"}
    # skips: the libvirt-only cases, and the TLS case on a Unix socket
    assert all("libvirt" in results[k].detail or "TLS" in results[k].detail for k in skipped), {
        k: results[k].detail for k in skipped
    }
    assert len(results) - len(skipped) >= 60


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
def test_broken_server_is_caught_by_its_cases(
    fault: Fault, reference_server: addresses.Address, short_dir: Path
) -> None:
    with BrokenServer(fault, reference_server, short_dir / f"{fault.value}.sock") as broken:
        results = run_catalogue(
            broken.address, exclude=sorted(COSTLY - EXPECTED[fault]), timeout=2.0
        )
    caught = failed(results)
    details = {k: results[k].detail for k in caught}
    assert caught == EXPECTED[fault], details
    assert all(results[k].outcome == "fail" for k in caught), details  # no crash of a case

"""The suite against a second server: the README-only embedder (issue 16 part 8). Its
expected outcome per case is asserted: it fails exactly what it lacks (downloads, V1, an
endpoint that refuses a cut stream), and no case fails it for its timing -- answering the
CALL or the first finish that came in the same read as the offending frame."""

from __future__ import annotations

from pathlib import Path

from readme_embedder import readme_server

from xdrstream.conformance.catalogue import Context, all_cases, run_case
from xdrstream.transport import address as addresses

#: What the embedder lacks, case by case: no downloads (4.7/2 .. 8.2/1), no V1 (7.2.*), no
#: endpoint (a cut stream is confirmed: 7.3.1/5, 7.4.3/4; nothing rejects junk: 7.3.3/5).
EXPECTED_FAIL = {
    "4.7/2", "5/3", "7.1.2/2", "7.3.2/1", "7.3.3/3", "7.4.2/1", "7.4.3/3", "8.2/1", "10.3/1",
    "7.2.1/1", "7.2.1/2", "7.2.2/1", "7.2.3/1", "7.2.4/1", "7.2.5/1", "7.2.5/2",
    "7.3.1/5", "7.4.3/4", "7.3.3/5",
}  # fmt: skip
#: Cases that once failed it for answering a valid frame sent before the offending one.
TIMING = {"7.3.1/2", "7.3.1/3", "7.3.1/4"}


def test_readme_embedder_outcomes(short_dir: Path) -> None:
    with readme_server(short_dir / "readme.sock") as target:
        context = Context(addresses.parse_address(target), timeout=2.0)
        servers = [c for c in all_cases() if c.role == "server"]
        results = {c.id: run_case(c, context, strict=True) for c in servers}
    outcomes = {k: r.outcome for k, r in results.items()}
    failed = {k for k, o in outcomes.items() if o in ("fail", "error")}
    assert failed == EXPECTED_FAIL, {k: results[k].detail for k in failed ^ EXPECTED_FAIL}
    assert all(outcomes[k] == "pass" for k in TIMING), {k: results[k].detail for k in TIMING}
    skipped = {k for k, o in outcomes.items() if o == "skip"}
    assert all("libvirt" in results[k].detail or "TLS" in results[k].detail for k in skipped)
    assert len(outcomes) - len(skipped) - len(failed) >= 45  # the rest passes

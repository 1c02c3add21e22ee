"""README's two server columns (issue 16 part 6): its table lists exactly the catalogue's
server cases for libvirt's program, and `conformance columns` makes such a table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xdrstream.cli import main
from xdrstream.conformance import report
from xdrstream.conformance.catalogue import all_cases

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_table() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    begin, end = text.index(report.COLUMNS_BEGIN), text.index(report.COLUMNS_END)
    rows = {}
    for line in text[begin:end].splitlines()[3:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_readme_table_matches_the_catalogue() -> None:
    """Regenerate the table (README says how) when this fails after cases were added."""
    rows = _readme_table()
    expected = [c.id for c in all_cases() if c.role == "server" and "libvirt" in c.programs]
    assert list(rows) == expected
    for case_id, cells in rows.items():
        assert len(cells) == 2 and all(c in ("pass", "fail", "skip", "deviation") for c in cells)
        if cells[0] != cells[1]:  # a difference is a documented deviation or explained skip
            assert "deviation" in cells or "skip" in cells, case_id
            assert case_id in README.read_text(encoding="utf-8").split(report.COLUMNS_BEGIN)[0]


def test_columns_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [c for c in all_cases() if "libvirt" in c.programs][:2]
    docs = []
    for label, outcome in (("a", "pass"), ("b", "skip")):
        results = [{"id": c.id, "programs": sorted(c.programs), "outcome": outcome} for c in cases]
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({"results": results}))
        docs.append(f"{label}={path}")
    assert main(["conformance", "columns", *docs]) == 0
    table = capsys.readouterr().out
    assert re.search(rf"\| {re.escape(cases[1].id)} \| pass \| skip \|", table)
    assert table.startswith(report.COLUMNS_BEGIN)

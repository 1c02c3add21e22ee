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
from xdrstream.libvirt.storage_server import StorageServer

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


def test_our_servers_column_is_what_a_strict_run_gives(tmp_path: Path) -> None:
    """README's `xdrstream serve --libvirt-storage` column, re-measured: a `--strict` run of
    the libvirt cases against our storage server (its own volumes in pool ``images``)."""
    images = tmp_path / "images"
    images.mkdir()
    out = tmp_path / "ours.json"
    with StorageServer(f"unix:{tmp_path / 's.sock'}", images):
        main(
            ["conformance", "run", "--target", f"unix:{tmp_path / 's.sock'}", "--program",
             "libvirt", "--libvirt-pool", "images", "--strict", "--json", str(out)]
        )  # fmt: skip
    measured = {r["id"]: r["outcome"] for r in json.loads(out.read_text())["results"]}
    readme = {case_id: cells[1] for case_id, cells in _readme_table().items()}
    assert {k: measured.get(k) for k in readme} == readme
    assert sorted(images.iterdir()) == []  # the run removed the volumes it made


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


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"results": [\n  {"id": "3.1/1",,}]}', "{path}:2:18: not JSON: Expecting property"),
        (b'{"summary": {}}', "{path}: not a `conformance run --json` report: no 'results' list"),
        (b'{"results": [{"id": "3.1/1"}]}', "results[0] lacks 'outcome', 'programs'"),
        (b"\x89PNG\r\n", "{path}: byte 0 is not UTF-8"),
    ],
)
def test_columns_of_a_file_that_is_no_report_is_exit_1_naming_file_and_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(content)
    assert main(["conformance", "columns", f"ours={path}"]) == 1  # content (cli.EXIT_STATUS)
    err = capsys.readouterr().err
    assert expected.format(path=path) in err and len(err.splitlines()) == 1, err


def test_columns_of_a_missing_file_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["conformance", "columns", f"ours={tmp_path / 'none.json'}"]) == 2
    assert f"cannot read {tmp_path / 'none.json'}: No such file or directory" in (
        capsys.readouterr().err
    )

"""The catalogue covers spec.md: every section with a MUST has at least one case; ids,
descriptions and selection follow the conventions."""

from __future__ import annotations

import re
from pathlib import Path

from xdrstream.conformance.catalogue import all_cases, select

SPEC = Path(__file__).resolve().parents[2] / "spec.md"


def musts_by_section(text: str) -> dict[str, list[str]]:
    """Section number -> the lines with MUST in it. A section is a heading (``### 3.4.``)
    or a numbered paragraph (``4.3.2. ...``); the conventions paragraph is left out."""
    section: str | None = None
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        heading = re.match(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", line)
        if heading:
            section = heading.group(1)
            continue
        paragraph = re.match(r"^(\d+\.\d+(?:\.\d+)*)\. ", line)
        if paragraph:
            section = paragraph.group(1)
        if section is not None and re.search(r"\bMUST\b", line):
            out.setdefault(section, []).append(line.strip())
    return out


def test_spec_sections_with_must_found() -> None:
    musts = musts_by_section(SPEC.read_text(encoding="utf-8"))
    # a sanity check of the extractor against sections known to hold MUSTs
    assert {"3.4", "4.3.2", "7.3.1", "7.4.1", "10.1", "10.2"} <= set(musts)


def test_every_must_has_a_case() -> None:
    musts = musts_by_section(SPEC.read_text(encoding="utf-8"))
    sections = {c.section for c in all_cases()}
    uncovered = {section: lines[0] for section, lines in musts.items() if section not in sections}
    assert uncovered == {}


def test_case_ids_descriptions_and_levels() -> None:
    cases = all_cases()
    assert len(cases) >= 60
    spec = SPEC.read_text(encoding="utf-8")
    for item in cases:
        assert re.fullmatch(r"\d+(\.\d+)*/\d+", item.id), item.id
        top = item.section.split(".")[0]
        assert re.search(rf"^## {top}\. ", spec, re.M), f"{item.id}: no section {top}"
        assert item.title and "\n" not in item.title, item.id
        assert item.requirement.startswith("§"), item.id
        assert item.expect, item.id
        assert item.level in ("MUST", "SHOULD"), item.id
        assert item.programs <= {"restore", "libvirt"}, item.id
    assert len({c.id for c in cases}) == len(cases)


def test_positive_cases_for_every_variant_and_direction() -> None:
    ids = {c.id for c in all_cases()}
    assert {"7.2.2/1", "7.2.3/1", "7.3.1/1", "7.3.2/1", "7.4.1/1", "7.4.2/1"} <= ids


def test_negative_cases_of_the_issue_exist() -> None:
    titles = " | ".join(c.title for c in all_cases())
    for words in (
        "before the primary reply",
        "wrong serial",
        "after StreamFinish",
        "StreamFinish twice",
        "after a client abort",
        "oversized",
        "undersized",
        "truncated",
        "unknown program",
        "unknown procedure",
        "unknown message type",
        "unknown status",
        "not declared @sparse",
        "interleaved streams",
        "keepalive during a long download",
        "stops reading",
    ):
        assert words in titles, words


def test_select_by_glob_and_section() -> None:
    cases = all_cases()
    assert {c.id for c in select(cases, ["7.3.1"])} == {c.id for c in cases if c.section == "7.3.1"}
    four = select(cases, ["4.*"])
    assert four and all(c.id.startswith("4.") for c in four)
    assert "4.4.2/4" not in {c.id for c in select(cases, ["4.*"], ["4.4.2/4"])}
    assert select(cases, ["99.*"]) == []


def test_deviation_is_a_fourth_outcome_recognised_from_the_target() -> None:
    """A case that fails against the implementation it lists as deviating is outcome
    ``deviation`` (with implementation, version, §), fails against any other target, and a
    deviation fails the run unless allowed (issue 16 part 4)."""
    from xdrstream.conformance.catalogue import (
        Case,
        Context,
        Deviation,
        Implementation,
        exit_status,
        run_case,
    )
    from xdrstream.conformance.peer import Violation
    from xdrstream.transport import address as addresses

    def breaks(ctx: Context) -> None:
        raise Violation("§3.2: ignored")

    item = Case(
        "3.2/9", "t", "r", "e", breaks, deviations=(Deviation("libvirtd", "ignores it", "9.0.0"),)
    )
    context = Context(addresses.parse_address("unix:/nonexistent"))
    assert run_case(item, context).outcome == "fail"
    context.implementation = Implementation("xdrstream", "9.0.0")
    assert run_case(item, context).outcome == "fail"
    context.implementation = Implementation("libvirtd", "9.0.0")
    result = run_case(item, context)
    assert result.outcome == "deviation"
    assert result.deviation_info() == {
        "id": "3.2/9",
        "section": "§3.2",
        "implementation": "libvirtd",
        "version": "9.0.0",
        "behaviour": "ignores it",
    }
    assert exit_status([result]) == 1
    assert exit_status([result], ["3.2/*"]) == 0

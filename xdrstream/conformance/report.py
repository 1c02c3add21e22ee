"""Reports of a conformance run: a terminal table (rich), JUnit XML and JSON.

JSON layout (``--json FILE``)::

    {"tool": "xdrstream conformance", "target": "unix:/tmp/s", "program": "restore",
     "strict": false, "summary": {"pass": 60, "fail": 1, "skip": 3, "error": 0},
     "results": [{"id": "7.3.1/2", "section": "7.3.1", "title": "...", "requirement": "...",
                  "expect": "...", "level": "MUST", "outcome": "fail",
                  "detail": "...", "seconds": 0.012}, ...]}

JUnit (``--junit FILE``): one ``<testsuite>`` per spec section (``§7.3.1``), one
``<testcase classname="§7.3.1" name="7.3.1/2 ...">`` per case with ``<failure>``,
``<error>`` or ``<skipped>`` carrying the detail.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from xdrstream.conformance.catalogue import Case, Result

OUTCOMES = ("pass", "fail", "skip", "error")
_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow", "error": "bold magenta"}


def summary(results: Sequence[Result]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {name: counts.get(name, 0) for name in OUTCOMES}


def exit_code(results: Sequence[Result]) -> int:
    """1 when any case failed or errored, else 0."""
    return 1 if any(r.outcome in ("fail", "error") for r in results) else 0


def print_table(results: Sequence[Result], console: Console, title: str) -> None:
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("case", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("description / reason", overflow="fold")
    for result in results:
        outcome = result.outcome
        text = result.case.title
        if result.detail:
            text += f"\n[dim]{result.detail}[/dim]" if outcome != "fail" else f"\n{result.detail}"
        table.add_row(result.case.id, f"[{_STYLE[outcome]}]{outcome}[/]", text)
    console.print(table)
    counts = summary(results)
    console.print(
        ", ".join(f"[{_STYLE[k]}]{v} {k}[/]" for k, v in counts.items() if v) or "no cases"
    )


def print_catalogue(cases: Sequence[Case], console: Console) -> None:
    table = Table(title=f"conformance catalogue: {len(cases)} cases", expand=False)
    table.add_column("case", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("programs", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("description / requirement / expected behaviour", overflow="fold")
    for item in cases:
        table.add_row(
            item.id,
            item.role,
            ",".join(sorted(item.programs)),
            item.level,
            f"{item.title}\n[dim]{item.requirement}\nexpect: {item.expect}[/dim]",
        )
    console.print(table)


def result_json(result: Result) -> dict[str, Any]:
    item = result.case
    return {
        "id": item.id,
        "section": item.section,
        "title": item.title,
        "requirement": item.requirement,
        "expect": item.expect,
        "level": item.level,
        "programs": sorted(item.programs),
        "outcome": result.outcome,
        "detail": result.detail,
        "seconds": round(result.seconds, 4),
    }


def write_json(
    path: str | Path, results: Sequence[Result], *, target: str, program: str, strict: bool
) -> None:
    document = {
        "tool": "xdrstream conformance",
        "target": target,
        "program": program,
        "strict": strict,
        "summary": summary(results),
        "results": [result_json(r) for r in results],
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def junit_xml(results: Sequence[Result], name: str = "xdrstream conformance") -> str:
    root = ET.Element("testsuites", name=name)
    by_section: dict[str, list[Result]] = {}
    for result in results:
        by_section.setdefault(result.case.section, []).append(result)
    for section, items in by_section.items():
        counts = summary(items)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"§{section}",
            tests=str(len(items)),
            failures=str(counts["fail"]),
            errors=str(counts["error"]),
            skipped=str(counts["skip"]),
            time=f"{sum(r.seconds for r in items):.3f}",
        )
        for result in items:
            testcase = ET.SubElement(
                suite,
                "testcase",
                classname=f"§{section}",
                name=f"{result.case.id} {result.case.title}",
                time=f"{result.seconds:.3f}",
            )
            if result.outcome == "fail":
                ET.SubElement(testcase, "failure", message=result.detail).text = (
                    f"requirement: {result.case.requirement}\nexpected: {result.case.expect}\n"
                    f"{result.detail}"
                )
            elif result.outcome == "error":
                ET.SubElement(testcase, "error", message=result.detail).text = result.detail
            elif result.outcome == "skip":
                ET.SubElement(testcase, "skipped", message=result.detail)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, results: Sequence[Result]) -> None:
    Path(path).write_text(junit_xml(results), encoding="utf-8")

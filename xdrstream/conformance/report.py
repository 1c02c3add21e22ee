"""Reports of a conformance run: a terminal table (rich), JUnit XML and JSON.

JSON layout (``--json FILE``)::

    {"tool": "xdrstream conformance", "target": "unix:/tmp/s", "program": "restore",
     "strict": false, "implementation": {"name": "libvirtd", "version": "9.0.0"},
     "summary": {"pass": 60, "fail": 1, "skip": 3, "deviation": 3, "error": 0},
     "deviations": [{"id": "3.2/1", "section": "§3.2", "implementation": "libvirtd",
                     "version": "9.0.0", "behaviour": "..."}, ...],
     "results": [{"id": "7.3.1/2", "section": "7.3.1", "title": "...", "requirement": "...",
                  "expect": "...", "level": "MUST", "outcome": "fail",
                  "detail": "...", "seconds": 0.012, "deviation": null}, ...]}

JUnit (``--junit FILE``): one ``<testsuite>`` per spec section (``§7.3.1``), one
``<testcase classname="§7.3.1" name="7.3.1/2 ...">`` per case with ``<failure>``,
``<error>`` or ``<skipped>`` carrying the detail; a deviation is a ``<failure
type="deviation">`` naming implementation, version and spec § (JUnit has no fourth outcome;
the suite's ``deviations`` attribute counts them apart).
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

from xdrstream.conformance.catalogue import OUTCOMES, Case, Implementation, Result

_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "skip": "yellow",
    "deviation": "bold cyan",
    "error": "bold magenta",
}


def summary(results: Sequence[Result]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {name: counts.get(name, 0) for name in OUTCOMES}


def exit_code(results: Sequence[Result], allowed: Sequence[str] = ()) -> int:
    """catalogue.exit_status: fail/error, or a deviation not ``allowed``, is 1."""
    from xdrstream.conformance.catalogue import exit_status

    return exit_status(results, allowed)


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
        "deviation": result.deviation_info(),
    }


def write_json(
    path: str | Path,
    results: Sequence[Result],
    *,
    target: str,
    program: str,
    strict: bool,
    implementation: Implementation | None = None,
) -> None:
    document = {
        "tool": "xdrstream conformance",
        "target": target,
        "program": program,
        "strict": strict,
        "implementation": (
            {"name": implementation.name, "version": implementation.version}
            if implementation
            else None
        ),
        "summary": summary(results),
        "deviations": [d for d in (r.deviation_info() for r in results) if d],
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
            deviations=str(counts["deviation"]),
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
            elif result.outcome == "deviation" and (info := result.deviation_info()):
                ET.SubElement(testcase, "failure", type="deviation", message=result.detail).text = (
                    f"deviation of {info['implementation']} {info['version']} from "
                    f"{info['section']}: {info['behaviour']}\n{result.detail}"
                )
            elif result.outcome == "error":
                ET.SubElement(testcase, "error", message=result.detail).text = result.detail
            elif result.outcome == "skip":
                ET.SubElement(testcase, "skipped", message=result.detail)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, results: Sequence[Result]) -> None:
    Path(path).write_text(junit_xml(results), encoding="utf-8")

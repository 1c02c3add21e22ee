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


class ReportError(ValueError):
    """A file that is not a ``conformance run --json`` report (the message names the file
    and where in it)."""


def read_json(path: str | Path) -> dict[str, Any]:
    """A ``write_json`` document, checked as far as readers rely on it. Raises OSError
    (unreadable file) or ReportError (not UTF-8, not JSON, or not that layout)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: byte {exc.start} is not UTF-8: not a JSON report") from None
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg} (byte {exc.pos})"
        ) from None
    where = "the top level is not an object"
    if isinstance(document, dict):
        results = document.get("results")
        where = "no 'results' list"
        if isinstance(results, list):
            where = ""
            wants = {"id": str, "outcome": str, "programs": list}
            for number, item in enumerate(results):
                fields = item if isinstance(item, dict) else {}
                bad = [k for k, kind in wants.items() if not isinstance(fields.get(k), kind)]
                if bad:
                    where = f"results[{number}] lacks {', '.join(repr(k) for k in bad)}"
                    break
    if where:
        raise ReportError(f"{path}: not a `conformance run --json` report: {where}")
    return document  # type: ignore[no-any-return]


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


# ---- HTML (``--html FILE``) --------------------------------------------------------------------
_HTML_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "skip": "#9a6700", "error": "#8250df",
                 "deviation": "#bc4c00"}  # fmt: skip
_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}.o{font-weight:bold;color:#fff;
padding:1px 6px;border-radius:3px}.case{border:1px solid #d0d7de;margin:1em 0;padding:.5em 1em}
code,.hex{font:12px monospace}.hex{word-break:break-all;color:#57606a}"""


def _spec_headings() -> dict[str, str]:
    """Section number -> GitHub's anchor of its heading in spec.md (empty where spec.md is
    not beside the package, e.g. an installed wheel)."""
    import re

    path = Path(__file__).resolve().parents[2] / "spec.md"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"#+ (\d+(?:\.\d+)*)\.? ", line)
            if match:
                text = re.sub(r"[^\w\- ]", "", line.lstrip("# ").lower())
                out[match.group(1)] = text.replace(" ", "-")
    return out


_HEADINGS: dict[str, str] | None = None


def _spec_anchor(section: str) -> str:
    """A link to spec.md's heading of ``section`` (or of its nearest parent)."""
    global _HEADINGS
    if _HEADINGS is None:
        _HEADINGS = _spec_headings()
    parts = section.split(".")
    while parts:
        anchor = _HEADINGS.get(".".join(parts))
        if anchor:
            return f"spec.md#{anchor}"
        parts.pop()
    return "spec.md"


_REGISTRY: Any = None


def _registry() -> Any:
    """The programs whose bodies the report decodes: restore.x and libvirt's remote
    program (the built-in subset, the procedures the cases call)."""
    global _REGISTRY
    if _REGISTRY is None:
        from xdrstream.protocol import Registry, programs_from_schema, schemas

        _REGISTRY = Registry(
            p
            for name in ("restore", "libvirt_remote")
            for p in programs_from_schema(schemas.load(name))
        )
    return _REGISTRY


_TEXT_MAX = 120
_ITEMS_MAX = 8


def field_text(value: Any, depth: int = 0) -> str:
    """A decoded value as ``name=value`` text (structs by their slots, bytes as hex, long
    strings and lists cut with their size)."""
    import enum as enum_module

    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, enum_module.Enum):
        return value.name
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return repr(value if len(value) <= _TEXT_MAX else value[:_TEXT_MAX] + "...") + (
            f" ({len(value)} chars)" if len(value) > _TEXT_MAX else ""
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return data.hex() if len(data) <= 32 else f"{data[:32].hex()}... ({len(data)} bytes)"
    if depth > 4:
        return "..."
    if isinstance(value, (list, tuple)):
        items = [field_text(v, depth + 1) for v in value[:_ITEMS_MAX]]
        more = f", ... {len(value)} items" if len(value) > _ITEMS_MAX else ""
        return "[" + ", ".join(items) + more + "]"
    names: list[str] = []
    for klass in reversed(type(value).__mro__):
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [n for n in slots if n != "__weakref__"]
    if names:
        inner = ", ".join(
            f"{n.lstrip('_')}={field_text(getattr(value, n), depth + 1)}" for n in names
        )
        return f"{type(value).__name__}({inner})"
    return repr(value)


def describe_frame(data: bytes) -> tuple[str, str]:
    """A frame's decoded header and body, as text (what the HTML report's rows show):
    the body of a CALL by its procedure's argument type, of a REPLY by its result type,
    an error body's fields, a hole's length, a data chunk's size."""
    from xdrstream.protocol import bodies
    from xdrstream.protocol.framing import (
        KEEPALIVE_PROGRAM,
        LEN_SIZE,
        MIN_FRAME,
        MessageStatus,
        MessageType,
        parse_header,
    )

    if len(data) < MIN_FRAME:
        return f"cut-off frame, {len(data)} bytes", ""
    length = int.from_bytes(data[:4], "big")
    try:
        h = parse_header(data, LEN_SIZE)
    except Exception as exc:  # a header the case sent or judged invalid: show it as it is
        return f"invalid header: {exc}", ""
    kind = f"{getattr(h.type, 'name', h.type)}/{getattr(h.status, 'name', h.status)}"
    header = (f"{kind} prog {h.prog:#x} vers {h.vers} proc {h.proc} serial {h.serial} "
              f"length {length}")  # fmt: skip
    payload = data[MIN_FRAME:]
    if length != len(data):
        return header, f"{len(payload)} payload bytes (of {length - MIN_FRAME})"
    try:
        if h.prog == KEEPALIVE_PROGRAM:
            return header, {1: "PING", 2: "PONG"}.get(h.proc, "keepalive")
        if h.type == MessageType.STREAM_HOLE:
            return header, "hole length={} flags={}".format(*bodies.unpack_hole(payload))
        if h.type == MessageType.STREAM:
            return header, f"{len(payload)} data bytes" if payload else "no data"
        if h.status == MessageStatus.ERROR:
            return header, field_text(bodies.unpack_error(payload))
        proc = _registry().lookup(h.prog, h.vers, h.proc)
        if proc is None:
            return header, f"{len(payload)} bytes (procedure not known to the report)"
        header = f"{header} ({proc.name})" if proc.name else header
        codec = proc.arg if h.type == MessageType.CALL else proc.result
        if codec is None:
            return header, "void" if not payload else f"{len(payload)} bytes (void expected)"
        return header, field_text(codec.unpack(payload))
    except Exception as exc:  # the body a case sent on purpose, or the target's bad one
        return header, f"{len(payload)} bytes, undecodable: {exc}"


def frame_rows(frames: Sequence[Any], numbers: Sequence[int] | None = None) -> str:
    """Table rows of trace frames (direction, time, decoded header and body fields, hex)."""
    import html

    rows = []
    for number, frame in enumerate(frames, 1):
        if numbers is not None and number not in numbers:
            continue
        arrow = "C &rarr; S" if frame.direction == "c2s" else "C &larr; S"
        when = "" if frame.time is None else f"{frame.time:.4f}"
        if frame.close:
            fields, body = "close (end of input)", ""
        else:
            fields, body = describe_frame(bytes(frame.data))
        note = f" ({html.escape(frame.note)})" if getattr(frame, "note", None) else ""
        hexed = frame.data[:64].hex() + ("&hellip;" if len(frame.data) > 64 else "")
        rows.append(
            f'<tr class="frame"><td>{number}</td><td>{arrow}</td><td>{when}</td>'
            f'<td class="header">{html.escape(fields)}{note}</td>'
            f'<td class="body">{html.escape(body)}</td><td class="hex">{hexed}</td></tr>'
        )
    return "".join(rows)


def html_report(
    results: Sequence[Result],
    *,
    title: str,
    frames: Sequence[Any] = (),
    evidence: Sequence[Sequence[int]] | None = None,
    dropped: Sequence[int] | None = None,
) -> str:
    """A self-contained HTML report (inline CSS, no external assets), after the Autobahn
    testsuite's: a summary per spec section, then each case with its requirement,
    expectation, outcome, time, detail and the frames it looked at (``frames`` of a judged
    session, ``evidence[i]`` the frame numbers of ``results[i]``; ``dropped[i]`` the frames
    its recording exchanged beyond its bound and does not show)."""
    import html

    outcomes = OUTCOMES
    by_section: dict[str, list[Result]] = {}
    for result in results:
        by_section.setdefault(result.case.section.lstrip("C"), []).append(result)
    head = "".join(f"<th>{o}</th>" for o in outcomes)
    summary_rows = []
    for section, items in by_section.items():
        counts = Counter(r.outcome for r in items)
        cells = "".join(f"<td>{counts.get(o, 0)}</td>" for o in outcomes)
        summary_rows.append(
            f'<tr><td><a href="{_spec_anchor(section)}">§{section}</a></td>'
            f"<td>{len(items)}</td>{cells}</tr>"
        )
    blocks = []
    for index, result in enumerate(results):
        item = result.case
        colour = _HTML_COLOURS.get(result.outcome, "#57606a")
        section = item.section.lstrip("C")
        numbers = evidence[index] if evidence is not None and index < len(evidence) else []
        table = ""
        if frames and numbers:
            table = (
                "<table><tr><th>#</th><th>dir</th><th>t (s)</th><th>header</th>"
                f"<th>body</th><th>hex</th></tr>{frame_rows(frames, numbers)}</table>"
            )
        lost = dropped[index] if dropped is not None and index < len(dropped) else 0
        if lost:
            table += (
                f'<p class="dropped">{lost} more frame{"s" if lost != 1 else ""} exchanged, '
                f"not shown (a case's recording keeps its first {len(numbers)})</p>"
            )
        blocks.append(
            f'<div class="case" id="{html.escape(item.id)}"><h3>{html.escape(item.id)} '
            f'<span class="o" style="background:{colour}">{result.outcome}</span> '
            f"{html.escape(item.title)}</h3>"
            f'<p>level {item.level}, spec <a href="{_spec_anchor(section)}">§{section}</a>, '
            f"{result.seconds * 1000:.1f} ms</p>"
            f"<p><b>requirement</b>: {html.escape(item.requirement)}</p>"
            f"<p><b>expected</b>: {html.escape(item.expect)}</p>"
            + (f"<p><b>detail</b>: {html.escape(result.detail)}</p>" if result.detail else "")
            + table
            + "</div>"
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<h2>Summary per spec section</h2><table><tr><th>section</th><th>cases</th>{head}</tr>"
        + "".join(summary_rows)
        + "</table><h2>Cases</h2>"
        + "".join(blocks)
        + "</body></html>\n"
    )


def write_html(path: str | Path, results: Sequence[Result], title: str, **kw: Any) -> None:
    Path(path).write_text(html_report(results, title=title, **kw), encoding="utf-8")


# ---- two servers side by side (README) ----------------------------------------------------------
COLUMNS_BEGIN = "<!-- server-columns: begin (xdrstream conformance columns) -->"
COLUMNS_END = "<!-- server-columns: end -->"


def server_columns(
    documents: Sequence[tuple[str, dict[str, Any]]], program: str = "libvirt"
) -> str:
    """A Markdown table of ``conformance run --json`` documents side by side (one column per
    ``(label, document)``), one row per case of ``program``, between the README markers."""
    by_label = [(label, {r["id"]: r for r in doc["results"]}) for label, doc in documents]
    ids = [r["id"] for r in documents[0][1]["results"] if program in r["programs"]]
    head = "| case | " + " | ".join(label for label, _ in by_label) + " |"
    rule = "|---" * (len(by_label) + 1) + "|"
    rows = []
    for case_id in ids:
        cells = []
        for _, results in by_label:
            found = results.get(case_id)
            cells.append("-" if found is None else found["outcome"])
        rows.append(f"| {case_id} | " + " | ".join(cells) + " |")
    return "\n".join([COLUMNS_BEGIN, head, rule, *rows, COLUMNS_END])

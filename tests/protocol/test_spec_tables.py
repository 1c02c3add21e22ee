"""spec.md §9 and the engine's tables (xdrstream/protocol/_state.py) are the same data."""

from __future__ import annotations

import re
from pathlib import Path

from xdrstream.protocol._state import SECTIONS, TABLES, Role

SPEC = Path(__file__).resolve().parents[2] / "spec.md"
MARKER = re.compile(r"^<!-- state-table: (client|server) (.+?) -->$")
ROW = re.compile(r"^\| (\w+) \| `([<>]\w+)` \| (\w+) \| (\w+) \|$")


def parse_spec_tables(text: str) -> dict[tuple[Role, str], dict[tuple[str, str], tuple[str, str]]]:
    tables: dict[tuple[Role, str], dict[tuple[str, str], tuple[str, str]]] = {}
    current: dict[tuple[str, str], tuple[str, str]] | None = None
    for line in text.splitlines():
        marker = MARKER.match(line)
        if marker:
            current = tables.setdefault((Role(marker.group(1)), marker.group(2)), {})
            continue
        row = ROW.match(line)
        if row and current is not None:
            state, message, nxt, action = row.groups()
            assert (state, message) not in current, f"duplicate row {state} {message}"
            current[(state, message)] = (nxt, action)
        elif current is not None and line.startswith("#"):
            current = None
    return tables


def test_spec_tables_equal_code_tables() -> None:
    spec_tables = parse_spec_tables(SPEC.read_text(encoding="utf-8"))
    assert set(spec_tables) == set(TABLES)
    for key, table in TABLES.items():
        assert spec_tables[key] == table, f"spec.md table {key} differs from _state.py"


def test_spec_sections_named_by_the_code_exist() -> None:
    text = SPEC.read_text(encoding="utf-8")
    for section in set(SECTIONS.values()):
        assert f"### {section[1:]}. " in text, section


def test_tables_are_well_formed() -> None:
    actions = {"send", "deliver", "drop", "hold"}
    for (role, kind), table in TABLES.items():
        states = {s for s, _ in table} | {n for n, _ in table.values()}
        assert "IDLE" in states and "CLOSED" in states
        for (state, message), (_nxt, action) in table.items():
            assert action in actions
            assert (action == "send") == message.startswith(">"), (role, kind, state, message)
            assert state != "CLOSED"
        # every state but CLOSED has a way forward, and CLOSED is reachable from IDLE
        reach = {"IDLE"}
        frontier = ["IDLE"]
        while frontier:
            s = frontier.pop()
            for (state, _m), (nxt, _a) in table.items():
                if state == s and nxt not in reach:
                    reach.add(nxt)
                    frontier.append(nxt)
        assert reach == states, (role, kind, states - reach)
        assert "CLOSED" in reach


def test_every_section_the_code_cites_exists_in_spec() -> None:
    text = SPEC.read_text(encoding="utf-8")
    numbered = set(re.findall(r"^#+ (\d+(?:\.\d+)*)\. ", text, re.M))
    numbered |= set(re.findall(r"^(\d+(?:\.\d+)+)\. ", text, re.M))  # numbered paragraphs
    package = Path(__file__).resolve().parents[2] / "xdrstream" / "protocol"
    cited: set[str] = set()
    for source in package.glob("*.py"):
        if source.name in {"decode.py", "pcap.py", "commands.py"}:
            continue  # helper-4's modules cite their own sections
        cited |= set(re.findall(r"§(\d+(?:\.\d+)*)", source.read_text(encoding="utf-8")))
    assert len(cited) > 15
    missing = sorted(c for c in cited if c not in numbered)
    assert not missing, f"spec.md has no section {missing}"

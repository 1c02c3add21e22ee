"""Tables the real-schema tests fill as they run; conftest.py prints them at the end of the
pytest run (``pytest_terminal_summary``), so they appear in ``make test``'s output."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Table:
    title: str
    columns: tuple[str, ...]
    rows: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> cells, in order
    totals: list[str] = field(default_factory=list)

    def render(self) -> list[str]:
        cells = [self.columns, *self.rows.values()]
        widths = [max(len(row[k]) for row in cells) for k in range(len(self.columns))]

        def line(row: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

        out = [line(self.columns), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows.values()]
        return out + self.totals


_tables: dict[str, Table] = {}


def table(title: str, columns: tuple[str, ...]) -> Table:
    """The table named ``title`` (created empty on first use)."""
    if title not in _tables:
        _tables[title] = Table(title, columns)
    return _tables[title]


def tables() -> list[Table]:
    return [t for t in _tables.values() if t.rows or t.totals]

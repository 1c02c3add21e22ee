"""Prints the real-schema tables (compile table, libvirt's rpcgen demo cases, differential
counts) after the run, without ``-s``: they are part of what ``make test`` reports."""

from __future__ import annotations

import pytest
import realschemas_report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for table in realschemas_report.tables():
        terminalreporter.write_sep("=", table.title)
        for line in table.render():
            terminalreporter.write_line(line)

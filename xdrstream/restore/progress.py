"""Progress of one transfer: a rich progress bar on a terminal, nothing otherwise.

`Meter` counts bytes as they pass (`advance(n)`), from any thread: rich's `Progress` keeps
the counters under its own lock and redraws from its refresh thread, so a driver thread
that calls `advance` per chunk never waits for the terminal. Without a terminal the meter
only counts; the caller prints one machine-readable line at the end. rich is imported
only for a terminal (start-up: a run with ``--json`` or a pipe never loads it).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class Meter:
    """Bytes moved by one transfer, and the time it took; shown on `console` if given.

    Use as a context manager: the clock starts on entry, `seconds` stops on exit.
    `total` is the expected size (None when unknown: the bar then shows activity only).
    """

    def __init__(self, description: str, total: int | None, console: Console | None) -> None:
        self.description = description
        self.total = total
        self.bytes = 0
        self._lock = threading.Lock()
        self._started = 0.0
        self._stopped: float | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if console is not None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                refresh_per_second=8,
            )

    def __enter__(self) -> Meter:
        self._started = time.perf_counter()
        if self._progress is not None:
            self._task = self._progress.add_task(self.description, total=self.total)
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopped = time.perf_counter()
        if self._progress is not None:
            if exc is None and self._task is not None:
                # an unknown total is known now: show a full bar, not a pulsing one
                self._progress.update(self._task, total=self.bytes, completed=self.bytes)
            self._progress.stop()

    def advance(self, count: int) -> None:
        with self._lock:
            self.bytes += count
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, count)

    @property
    def seconds(self) -> float:
        end = time.perf_counter() if self._stopped is None else self._stopped
        return end - self._started


def terminal_console() -> Console | None:
    """A console on stdout when stdout is a terminal, else None (no progress output)."""
    if "TTY_COMPATIBLE" not in os.environ and "FORCE_COLOR" not in os.environ:
        # what rich decides without its overrides (a file that is no tty is no terminal),
        # decided without importing rich
        isatty = getattr(sys.stdout, "isatty", None)
        try:
            if isatty is None or not isatty():
                return None
        except ValueError:  # closed
            return None
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else None

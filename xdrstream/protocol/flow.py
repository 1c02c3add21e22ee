"""Flow-control accounting (spec.md §8.2) as a pure policy, in the manner of h2's
``WindowManager``: it holds numbers and answers questions, it never reads or writes.

Each stream counts the bytes delivered to the application and not yet reported consumed;
a stream whose count reaches ``limit`` asks the driver to stop reading the transport.
The policy keeps the number of such streams, so ``paused`` costs nothing per chunk.
"""

from __future__ import annotations

from typing import Protocol

from xdrstream.protocol.errors import LocalProtocolError


class Counted(Protocol):
    """What the policy counts on: one stream's delivered, unconsumed bytes."""

    serial: int
    unconsumed: int


class FlowControl:
    """Per-stream unconsumed bytes against one ``limit`` (None: no accounting)."""

    __slots__ = ("_paused", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._paused = 0  # streams at or above the limit

    @property
    def paused(self) -> bool:
        """Some stream holds ``limit`` or more unconsumed bytes: stop reading (§8.2)."""
        return self._paused > 0

    def delivered(self, stream: Counted, nbytes: int) -> None:
        """``nbytes`` of ``stream``'s data went to the application."""
        limit = self.limit  # (once per chunk: _add inlined)
        if limit is not None and nbytes:
            before = stream.unconsumed >= limit
            stream.unconsumed += nbytes
            if not before and stream.unconsumed >= limit:
                self._paused += 1

    def consumed(self, stream: Counted, nbytes: int) -> None:
        """The application reports ``nbytes`` of ``stream`` consumed."""
        if nbytes < 0 or nbytes > stream.unconsumed:
            raise LocalProtocolError(
                f"stream {stream.serial}: consumed {nbytes} of {stream.unconsumed} "
                "unconsumed bytes",
                section="§8.2",
            )
        self._add(stream, -nbytes)

    def release(self, stream: Counted) -> None:
        """``stream`` ended: what it still counted no longer holds the reader back."""
        self._add(stream, -stream.unconsumed)

    def _add(self, stream: Counted, delta: int) -> None:
        limit = self.limit
        if limit is None or delta == 0:
            return
        before = stream.unconsumed >= limit
        stream.unconsumed += delta
        self._paused += int(stream.unconsumed >= limit) - int(before)

"""libvirtd's server limits as I/O-free decisions (spec.md §8.5; issue 15 part 3).

The drivers ask these objects whether to accept, whether to read, and whether a partial
frame has stalled; they never touch a socket.  Defaults are libvirtd's
(``max_clients`` 5000, ``max_client_requests`` 5, keepalive every 5 s, 5 missed).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CLIENTS = 5000
MAX_CLIENT_REQUESTS = 5
MAX_QUEUED_OUTPUT = 1 << 20
MEMORY_BUDGET = 256 << 20
KEEPALIVE_INTERVAL = 5.0
KEEPALIVE_COUNT = 5


@dataclass(frozen=True)
class Limits:
    """The bounds one server enforces (see :class:`~.options.Options` for each)."""

    max_clients: int = MAX_CLIENTS
    max_client_requests: int = MAX_CLIENT_REQUESTS
    max_queued_output: int = MAX_QUEUED_OUTPUT
    memory_budget: int = MEMORY_BUDGET

    def may_read(self, requests: int, queued_output: int, budget: Budget) -> bool:
        """Whether a connection with ``requests`` calls unanswered and ``queued_output``
        reply bytes unsent may read more: not at ``max_client_requests`` (more calls wait
        unread in the kernel: TCP pushes back), not above ``max_queued_output``, not while
        the server's ``budget`` is spent."""
        return (
            requests < self.max_client_requests
            and queued_output <= self.max_queued_output
            and not budget.exhausted
        )


class Budget:
    """Bytes of buffered input and queued output of all connections of one server."""

    def __init__(self, limit: int = MEMORY_BUDGET) -> None:
        if limit <= 0:
            raise ValueError(f"memory budget must be positive, not {limit}")
        self.limit = limit
        self.used = 0

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    def account(self) -> Account:
        return Account(self)


class Account:
    """One connection's share of a :class:`Budget`: ``set_input``/``add_output`` move the
    connection's figures, the budget follows; ``close()`` gives everything back."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.input = 0
        self.output = 0

    def set_input(self, nbytes: int) -> None:
        self.budget.used += nbytes - self.input
        self.input = nbytes

    def add_output(self, nbytes: int) -> None:
        """Queue (positive) or finish sending (negative) ``nbytes`` of output."""
        self.budget.used += nbytes
        self.output += nbytes

    def close(self) -> None:
        self.budget.used -= self.input + self.output
        self.input = self.output = 0


class Admission:
    """Counts clients against ``max_clients``: beyond it the server stops accepting."""

    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self.max_clients = max_clients
        self.clients = 0

    @property
    def full(self) -> bool:
        return self.clients >= self.max_clients

    def admit(self) -> bool:
        if self.full:
            return False
        self.clients += 1
        return True

    def leave(self) -> None:
        self.clients = max(0, self.clients - 1)


def frame_stalled(partial: bool, last_progress: float, now: float, timeout: float | None) -> bool:
    """Whether a partial frame (``partial``: bytes of an unfinished frame held) received no
    byte for ``timeout`` seconds: the connection is closed (a held frame costs memory)."""
    return partial and timeout is not None and now - last_progress >= timeout

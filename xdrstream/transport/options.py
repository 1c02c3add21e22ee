"""Settings shared by the blocking and asyncio drivers."""

from __future__ import annotations

from dataclasses import dataclass

from xdrstream.protocol.framing import LEGACY_STREAM_PAYLOAD, STREAM_BUFFER
from xdrstream.transport import limits as lim

UNIX_SEND_BUFFER = 1024 * 1024
"""``Options.unix_send_buffer`` by default: four frames of 256 KiB in flight per direction."""


@dataclass(frozen=True)
class Options:
    """Timeouts, keepalive and buffer sizes of one connection.

    ``timeout``: seconds a send may make no progress (the peer stopped reading) and an
    operation may wait for its peer while nothing at all arrives on the connection;
    then :class:`~.errors.PeerTimeout` and the connection is closed.  None: wait forever.
    ``keepalive_interval``/``keepalive_count`` (spec.md §5): after ``interval`` seconds
    without input send a PING; after ``count`` unanswered PINGs the peer is dead.  PINGs
    from the peer are always answered.  ``idle_timeout``: close a connection that has no
    exchange in progress and received nothing for that long (servers).
    ``chunk_size``: data bytes per stream frame sent; ``recv_buffer``: bytes asked for
    per read (the engine's ``get_buffer`` hint: large payloads are received in place);
    ``stream_buffer``: per-stream received bytes not yet taken by the application above
    which reading stops (spec.md §8.2; default two frames of 262120 data bytes);
    ``max_calls``: exchanges one connection may have in progress (server: more are
    refused with an error reply).  ``unix_send_buffer``: the ``SO_SNDBUF`` of a Unix
    socket, both ends (a Unix stream socket's bytes in flight are bounded by the sender's
    send buffer alone, by default 208 KiB on Linux: less than one 256 KiB frame, so the
    receiver wakes two or three times per frame); 0 keeps the system's default.  TCP is
    left to the kernel's autotuning.
    Server limits, libvirtd's defaults (spec.md §8.5, :mod:`~.limits`): ``max_clients``
    connections (beyond: stop accepting); ``max_client_requests`` calls unanswered per
    connection (beyond: stop reading it); ``max_queued_output`` reply bytes unsent per
    connection (beyond: stop reading it); ``memory_budget`` bytes of buffered input and
    queued output of all connections (beyond: reading pauses everywhere).  Keepalive is on
    by default as in libvirtd (every 5 s, 5 missed).
    """

    timeout: float | None = 60.0
    keepalive_interval: float | None = lim.KEEPALIVE_INTERVAL
    keepalive_count: int = lim.KEEPALIVE_COUNT
    idle_timeout: float | None = None
    chunk_size: int = LEGACY_STREAM_PAYLOAD
    recv_buffer: int = 16 * 1024  # small: a large payload's bulk then arrives in place
    stream_buffer: int = STREAM_BUFFER
    max_calls: int = 256
    unix_send_buffer: int = UNIX_SEND_BUFFER
    handshake_timeout: float = 10.0
    max_clients: int = lim.MAX_CLIENTS
    max_client_requests: int = lim.MAX_CLIENT_REQUESTS
    max_queued_output: int = lim.MAX_QUEUED_OUTPUT
    memory_budget: int = lim.MEMORY_BUDGET

    def server_limits(self) -> lim.Limits:
        return lim.Limits(
            self.max_clients, self.max_client_requests, self.max_queued_output, self.memory_budget
        )

"""Settings shared by the blocking and asyncio drivers."""

from __future__ import annotations

from dataclasses import dataclass

from xdrstream.protocol.framing import LEGACY_STREAM_PAYLOAD


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
    which reading stops (spec.md §8.2);
    ``max_calls``: exchanges one connection may have in progress (server: more are
    refused with an error reply).
    """

    timeout: float | None = 60.0
    keepalive_interval: float | None = None
    keepalive_count: int = 5
    idle_timeout: float | None = None
    chunk_size: int = LEGACY_STREAM_PAYLOAD
    recv_buffer: int = 16 * 1024  # small: a large payload's bulk then arrives in place
    stream_buffer: int = 4 << 20
    max_calls: int = 256
    handshake_timeout: float = 10.0

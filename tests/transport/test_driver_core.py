"""The drivers' I/O-free policy (transport/core.py, issue 12) with no socket, and the
blocking driver enforcing libvirtd's limits (spec.md §8.5, issue 15) like asyncio's."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from xdrstream.protocol import Role
from xdrstream.protocol.events import Call, KeepalivePing, StreamData
from xdrstream.protocol.framing import Header, pack_frame
from xdrstream.restore.server import PROC_PING, PROGRAM, VERSION, schema
from xdrstream.transport.blocking import BlockingConnection, SocketChannel
from xdrstream.transport.core import FRAME_OVERHEAD, DriverCore, queued_size
from xdrstream.transport.errors import PeerTimeout
from xdrstream.transport.options import Options

CALL = 0


def pings(*serials: int) -> bytes:
    return b"".join(
        pack_frame(Header(PROGRAM, VERSION, PROC_PING, CALL, serial, 0)) for serial in serials
    )


def server_core(**options: Any) -> tuple[DriverCore, list[Call]]:
    core = DriverCore(Role.SERVER, [schema()], Options(**options))
    calls: list[Call] = []
    core.dispatch = lambda ex, call: calls.append(call)
    return core, calls


def test_max_client_requests_holds_the_next_call_unrouted() -> None:
    core, calls = server_core(max_client_requests=2)
    core.engine.receive_data(pings(1, 2, 3))
    assert core.drain() and core.holding
    assert [c.serial for c in calls] == [1, 2]
    assert not core.may_read()
    core.exchanges[1].closed = True  # answered
    assert core.drain() and [c.serial for c in calls] == [1, 2, 3]


def test_queued_output_stops_reading_past_the_bound() -> None:
    core, _ = server_core(max_queued_output=1000)
    assert core.may_read()
    data = StreamData(1, bytes(1000))
    core.queued(queued_size(data))  # a frame waiting for the write lock counts
    assert queued_size(data) == FRAME_OVERHEAD + 1000 and not core.may_read()
    core.queued(-queued_size(data))
    assert core.may_read() and core.account.output == 0


def test_keepalive_pings_then_fails_after_count_missed() -> None:
    core = DriverCore(Role.CLIENT, [], Options(keepalive_interval=1.0, keepalive_count=2))
    now = core.last_rx
    assert core.tick(now + 0.5) is None
    assert isinstance(core.tick(now + 1.0), KeepalivePing)
    assert isinstance(core.tick(now + 2.0), KeepalivePing)
    assert core.tick(now + 3.0) is None
    assert isinstance(core.error, PeerTimeout) and "2 keepalive pings" in str(core.error)


def test_stalled_partial_frame_fails_a_server() -> None:
    core, _ = server_core(timeout=1.0, keepalive_interval=None)
    core.engine.receive_data(pings(1)[:10])
    assert core.drain()
    core.tick(core.progress + 0.5)
    assert core.error is None
    core.tick(core.progress + 1.0)
    assert isinstance(core.error, PeerTimeout) and "§8.5" in str(core.error)


def test_wait_left_times_out_operations() -> None:
    core = DriverCore(Role.CLIENT, [], Options(timeout=2.0))
    assert core.wait_left(core.last_rx + 0.5) == 1.5
    assert core.wait_left(core.last_rx + 2.0) == 0.0
    assert isinstance(core.error, PeerTimeout)


def test_blocking_server_leaves_calls_beyond_max_client_requests_unread() -> None:
    """Driven past the bound on the blocking driver: 12 PINGs sent at once, handlers
    held; only max_client_requests are handed out until one is answered."""
    pair = socket.socketpair()
    conn = BlockingConnection(
        SocketChannel(pair[1]), Role.SERVER, [schema()], Options(max_client_requests=3)
    )
    conn.start()
    try:
        pair[0].sendall(pings(*range(1, 13)))
        streams = []
        deadline = time.monotonic() + 5
        while len(streams) < 3 and time.monotonic() < deadline:
            stream = conn.next_call(timeout=0.2)
            if stream is not None:
                streams.append(stream)
        assert len(streams) == 3
        assert conn.next_call(timeout=0.6) is None, "a call beyond max_client_requests"
        done = threading.Thread(target=streams[0].accept)
        done.start()
        done.join(5)
        assert conn.next_call(timeout=5) is not None  # one answered: the next is read
    finally:
        conn.close()
        pair[0].close()

"""libvirtd's limits (spec.md §8.5, issue 15 part 3): the I/O-free decisions, then each
limit driven past against the real restore server on loopback while another client is
still served."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from xdrstream.protocol.framing import Header, pack_frame, pack_header
from xdrstream.restore.client import Client
from xdrstream.restore.server import (
    PROC_ECHO,
    PROC_PING,
    PROGRAM,
    VERSION,
    RestoreServer,
    ServerThread,
)
from xdrstream.transport.limits import Admission, Budget, Limits, frame_stalled
from xdrstream.transport.options import Options

CALL = 0


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# ---------------------------------------------------------------- I/O-free decisions
def test_defaults_are_libvirtds() -> None:
    opts = Options()
    assert (opts.max_clients, opts.max_client_requests) == (5000, 5)
    assert (opts.keepalive_interval, opts.keepalive_count) == (5.0, 5)
    assert opts.max_queued_output == 1 << 20 and opts.memory_budget == 256 << 20
    assert opts.server_limits() == Limits()


def test_may_read_stops_at_each_limit() -> None:
    limits = Limits(max_client_requests=2, max_queued_output=100, memory_budget=1000)
    budget = Budget(1000)
    assert limits.may_read(1, 100, budget)
    assert not limits.may_read(2, 0, budget)
    assert not limits.may_read(0, 101, budget)
    account = budget.account()
    account.set_input(1000)
    assert budget.exhausted and not limits.may_read(0, 0, budget)
    account.set_input(10)
    assert budget.used == 10 and limits.may_read(0, 0, budget)


def test_budget_accounts_follow_connections() -> None:
    budget = Budget(100)
    a, b = budget.account(), budget.account()
    a.set_input(30)
    b.add_output(50)
    assert budget.used == 80 and not budget.exhausted
    a.add_output(20)
    assert budget.exhausted
    b.add_output(-50)
    a.close()
    assert budget.used == 0 and not budget.exhausted
    with pytest.raises(ValueError, match="positive"):
        Budget(0)


def test_admission_and_stalled_frames() -> None:
    admission = Admission(2)
    assert admission.admit() and admission.admit() and not admission.admit()
    assert admission.full
    admission.leave()
    assert not admission.full and admission.admit()
    assert frame_stalled(True, 0.0, 5.0, 5.0)
    assert not frame_stalled(True, 0.0, 4.9, 5.0)
    assert not frame_stalled(False, 0.0, 99.0, 5.0)
    assert not frame_stalled(True, 0.0, 99.0, None)


# ---------------------------------------------------------------- against the server
@pytest.fixture
def serve() -> Iterator[Any]:
    threads: list[ServerThread] = []

    def start(server: RestoreServer) -> ServerThread:
        thread = ServerThread(server).start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        thread.stop()


def raw(address: Any, rcvbuf: int | None = None) -> socket.socket:
    """A plain TCP connection; `rcvbuf` caps its receive buffer (set before connecting, so
    the kernel's autotuning, up to tcp_rmem's 32 MiB here, cannot absorb a whole flood)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect((address.host, address.port))
    return sock


def _sysctl_max(name: str) -> int:
    """The largest buffer TCP autotuning gives (the third field of net.ipv4.NAME)."""
    try:
        with open(f"/proc/sys/net/ipv4/{name}") as file:
            return int(file.read().split()[2])
    except (OSError, IndexError, ValueError):
        return 32 << 20


def ping_time(address: Any) -> float:
    start = time.monotonic()
    with Client.connect(str(address), options=Options(timeout=5)) as client:
        client.ping()
    return time.monotonic() - start


def test_max_clients_stops_accepting_and_serves_the_others(serve: Any) -> None:
    server = serve(RestoreServer("tcp:127.0.0.1:0", options=Options(max_clients=3)))
    clients = [Client.connect(str(server.address), options=Options(timeout=5)) for _ in range(3)]
    try:
        for client in clients:
            client.ping()
        done = threading.Event()

        def fourth() -> None:
            with Client.connect(str(server.address), options=Options(timeout=10)) as c:
                c.ping()
            done.set()

        thread = threading.Thread(target=fourth, daemon=True)
        thread.start()
        assert not done.wait(0.6), "a fourth client was served beyond max_clients"
        for client in clients:  # the admitted ones are still served
            client.ping()
        clients.pop().close()
        assert done.wait(5), "the waiting client was not accepted once one left"
        thread.join(5)
    finally:
        for client in clients:
            client.close()


class GatedServer(RestoreServer):
    """PING waits for a gate: calls stay in progress."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.started = 0

    async def handle(self, stream: Any) -> Any:
        if stream.call.procedure == PROC_PING and stream.call.serial >= 1000:
            self.started += 1
            await self.gate.wait()
            return None
        return await super().handle(stream)


def test_max_client_requests_leaves_more_calls_unread(serve: Any) -> None:
    server_obj = GatedServer("tcp:127.0.0.1:0", options=Options(max_client_requests=5))
    server = serve(server_obj)
    sock = raw(server.address)
    try:
        frames = b"".join(
            pack_frame(Header(PROGRAM, VERSION, PROC_PING, CALL, 1000 + i, 0)) for i in range(20)
        )
        sock.sendall(frames)
        assert wait_until(lambda: server_obj.started >= 5, 5)
        time.sleep(0.3)
        assert server_obj.started == 5, "calls beyond max_client_requests were dispatched"
        assert ping_time(server.address) < 0.5  # another client is served meanwhile
        server.loop.call_soon_threadsafe(server_obj.gate.set)
        got = b""
        while len(got) < 20 * 28:
            chunk = sock.recv(65536)
            assert chunk
            got += chunk
        assert server_obj.started == 20
    finally:
        sock.close()


def test_unread_replies_stop_reading_and_stay_bounded(serve: Any) -> None:
    opts = Options(max_client_requests=64, max_queued_output=256 << 10, memory_budget=64 << 20)
    server = serve(RestoreServer("tcp:127.0.0.1:0", options=opts))
    payload = struct.pack(">I", 65536) + bytes(65536)
    frame_len = len(pack_frame(Header(PROGRAM, VERSION, PROC_ECHO, CALL, 1, 0), payload))
    # more than the kernel can hold once the server stops reading: its receive buffer
    # autotunes up to tcp_rmem's maximum (32 MiB here) and the flooder's send buffer to
    # tcp_wmem's, so a smaller flood could all be "sent" to a server that stopped
    kernel = _sysctl_max("tcp_rmem") + _sysctl_max("tcp_wmem")
    count = (kernel + (8 << 20)) // frame_len
    frames = b"".join(
        pack_frame(Header(PROGRAM, VERSION, PROC_ECHO, CALL, serial, 0), payload)
        for serial in range(1, count + 1)
    )
    # replies the kernel would take whole never queue in the server: cap what a flooder holds
    socks = [raw(server.address, rcvbuf=256 << 10) for _ in range(4)]
    try:
        for sock in socks:
            sock.settimeout(0.2)
            sent = 0
            while sent < len(frames):  # until TCP pushes back
                try:
                    sent += sock.send(frames[sent:])
                except (TimeoutError, BlockingIOError):
                    break
            assert 1 << 20 < sent < len(frames)  # the server read for a while, then stopped
        time.sleep(0.3)
        used = server.server.budget.used
        # each flooder: at most one reply frame being sent and one frame being read
        assert used <= 4 * (256 << 10) + 4 * 2 * frame_len, used
        assert ping_time(server.address) < 0.5
    finally:
        for sock in socks:
            sock.close()
    assert wait_until(lambda: server.server.budget.used == 0, 5)


UNKNOWN_PROC = 999


def test_memory_budget_pauses_reading_and_stalled_frames_close(serve: Any) -> None:
    opts = Options(memory_budget=1 << 20, timeout=1.0)
    server = serve(RestoreServer("tcp:127.0.0.1:0", options=opts))
    # a procedure the server does not know has no argument bound (§3.6): its 16 MiB
    # argument is buffered as it arrives, so only the budget (§8.5) stops the reading
    big = pack_header(Header(PROGRAM, VERSION, UNKNOWN_PROC, CALL, 1, 0), 16 << 20)
    socks = [raw(server.address) for _ in range(6)]
    try:
        for sock in socks:
            sock.sendall(big)
            sock.settimeout(0.05)
            with_deadline = time.monotonic() + 0.5
            chunk = bytes(64 << 10)
            while time.monotonic() < with_deadline:
                try:
                    sock.send(chunk)
                except (TimeoutError, BlockingIOError):
                    break
        used = server.server.budget.used
        assert used < 4 << 20, used  # 6 x 16 MiB announced, reading paused near 1 MiB
        assert ping_time(server.address) < 0.5  # a client at rest still gets through
        # no progress for --timeout: the partial frames' connections are closed
        assert wait_until(lambda: server.server.budget.used == 0, 6)
        for sock in socks:
            sock.settimeout(5)
            assert_closed(sock)
    finally:
        for sock in socks:
            sock.close()


def assert_closed(sock: socket.socket) -> None:
    """The server closed ``sock``: EOF, or a reset (it closed with our data unread)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass

"""The drivers' I/O-free policy (transport/core.py, issue 12) with no socket, and the
blocking driver enforcing libvirtd's limits (spec.md §8.5, issue 15) like asyncio's."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import pytest

from xdrstream.protocol import LocalProtocolError, Role
from xdrstream.protocol.bodies import V1_WINDOW
from xdrstream.protocol.events import (
    Call,
    ErrorReply,
    KeepalivePing,
    Reply,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamFinish,
    StreamRead,
)
from xdrstream.protocol.framing import Header, pack_frame, pack_header
from xdrstream.protocol.states import Kind as EngineKind
from xdrstream.restore.server import PROC_PING, PROGRAM, RESTORE_PROCS, SAVE_PROCS, VERSION, schema
from xdrstream.transport.blocking import BlockingConnection, SocketChannel
from xdrstream.transport.channels import client_setup, server_setup
from xdrstream.transport.core import FRAME_OVERHEAD, DriverCore, queued_size
from xdrstream.transport.errors import ConnectionLost, PeerTimeout, StreamAborted, TransportError
from xdrstream.transport.options import Options
from xdrstream.transport.stream import (
    WAIT,
    Op,
    Steps,
    Wait,
    client_call,
    client_recv,
    make_exchange,
    server_conclude,
    server_recv,
    server_take_data,
    server_takes_data,
)

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


# --- the policy both drivers shared before issue 12 moved it here (no socket) ---------
def test_paused_reader_is_no_silence_and_a_hang_up_ends_the_connection() -> None:
    core = DriverCore(Role.CLIENT, [], Options(timeout=2.0))
    later = core.last_rx + 5.0
    core.paused(later, gone=False)  # we were not listening: the peer is not timed out
    assert core.error is None and core.wait_left(later) == 2.0
    core.paused(later, gone=True)
    assert isinstance(core.error, ConnectionLost) and "connection closed" in str(core.error)


def test_plain_call_of_a_stream_procedure_is_refused_before_sending() -> None:
    core = DriverCore(Role.CLIENT, [schema()], Options())
    core.plain_call(PROGRAM, VERSION, PROC_PING)  # no stream: fine
    with pytest.raises(TransportError, match="has a stream: use open_stream"):
        core.plain_call(PROGRAM, VERSION, RESTORE_PROCS[2])
    assert not core.exchanges  # nothing was opened, so nothing goes on the wire


def test_enqueue_counts_only_where_limits_read_the_figures() -> None:
    client = DriverCore(Role.CLIENT, [], Options())
    assert client.enqueue(StreamData(1, bytes(100))) == 0 and client.account.output == 0
    core, _ = server_core()
    counted = core.enqueue(StreamData(1, bytes(100)))
    assert counted == FRAME_OVERHEAD + 100 == core.account.output
    core.queued(-counted)
    assert core.account.output == 0


def _op(log: list[object]) -> Op[str]:
    try:
        yield KeepalivePing()
    except LocalProtocolError as exc:
        log.append(exc)
    yield WAIT
    return "done"


def test_steps_give_sends_waits_then_the_result_and_pass_refusals_back() -> None:
    log: list[object] = []
    steps = Steps(_op(log))
    assert isinstance(steps.advance(), KeepalivePing)
    refusal = LocalProtocolError("refused", section="4.1")
    assert isinstance(steps.advance(refusal), Wait) and log == [refusal]
    assert steps.advance() is None and steps.value == "done"


def test_connect_and_accept_keywords_are_checked_and_set_up_tls() -> None:
    address, options, setup = client_setup("unix:/run/x.sock", {})
    assert address.kind == "unix" and options == Options() and setup is None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _, _, setup = client_setup("tcp:example.org:16514", {"tls": context})
    assert setup is not None and setup.server_hostname == "example.org"
    assert not setup.server_side
    with pytest.raises(TypeError, match="connect\\(\\) got unexpected keyword arguments: timeout"):
        client_setup("unix:/x", {"timeout": 3.0})  # type: ignore[typeddict-unknown-key]
    options, name, setup = server_setup({"tls": context, "options": Options(timeout=1.0)})
    assert options.timeout == 1.0 and name == ""
    assert setup is not None and setup.server_side and setup.peer == "client"
    with pytest.raises(TypeError, match="accept\\(\\) got unexpected keyword arguments: handler"):
        server_setup({"handler": None})  # type: ignore[typeddict-unknown-key]


def _concluded(exc: BaseException | None, *, aborted: bool = False) -> list[object]:
    ex = make_exchange(7, False, EngineKind.CALL, False, 1024)
    ex.aborted = aborted
    return list(server_conclude(ex, exc, "value"))


def test_server_conclude_sorts_out_what_a_handler_raised() -> None:
    (reply,) = _concluded(None)
    assert isinstance(reply, Reply) and reply.result == "value"
    assert _concluded(ConnectionLost("gone")) == []  # nothing left to answer on
    (failure,) = _concluded(ValueError("boom"))
    assert isinstance(failure, ErrorReply) and "ValueError: boom" in str(failure.error.message)
    (confirm,) = _concluded(StreamAborted("aborted"), aborted=True)
    assert isinstance(confirm, StreamConfirm)


def _deliver(src: DriverCore, dst: DriverCore, event: Any) -> None:
    buffers, _ = src.encode(event, 0)
    dst.engine.receive_data(b"".join(bytes(b) for b in buffers))
    assert dst.drain()


def test_v1_download_keeps_its_reads_within_the_engines_window() -> None:
    """The driver's exchange counts no V1 calls of its own: the READs it sends stop at
    the window the engine counts (§7.2.4), answers not yet taken included."""
    client = DriverCore(Role.CLIENT, [schema()], Options())
    server, _ = server_core()
    s = schema()
    call = client.open_call(PROGRAM, VERSION, SAVE_PROCS[1], s["xs_save_args"](name="x", flags=0))
    ex = client.exchanges[call.serial]
    opening = client_call(ex, call)
    _deliver(client, server, next(opening))
    assert isinstance(opening.send(None), Wait)
    _deliver(server, client, Reply(call.serial, s["xs_save_ret"](length=0)))
    with pytest.raises(StopIteration):
        opening.send(None)
    op = client_recv(ex)
    reads = []
    step = next(op)
    while isinstance(step, StreamRead):
        reads.append(step)
        _deliver(client, server, step)
        step = op.send(None)
    assert isinstance(step, Wait) and len(reads) == V1_WINDOW
    assert ex.engine is not None and ex.engine.window == 0
    server_ex = server.exchanges[call.serial]
    assert server_ex.engine is not None and server_ex.engine.read_max == reads[0].max_bytes
    _deliver(server, client, StreamData(call.serial, b"abc"))  # answers one READ
    assert ex.engine.window == 1 and len(ex.inbox) == 1
    with pytest.raises(StopIteration) as done:
        op.send(None)
    assert bytes(done.value.value) == b"abc"
    # two more answers wait untaken: with them, the outstanding READs fill the window
    _deliver(server, client, StreamData(call.serial, b"d"))
    _deliver(server, client, StreamData(call.serial, b"e"))
    assert ex.engine.window == 3 and len(ex.inbox) == 2
    op = client_recv(ex)
    read = next(op)
    assert isinstance(read, StreamRead)
    _deliver(client, server, read)
    with pytest.raises(StopIteration) as done:
        op.send(None)  # no second READ: with the answers waiting, the window is full
    assert bytes(done.value.value) == b"d" and ex.engine.window == 2


def test_received_goes_on_filling_a_frame_in_place_while_the_limits_allow() -> None:
    """After the read that starts a large frame, the driver fills it without routing in
    between (nothing can come out before it is complete), but not past the budget (§8.5)."""
    core, _ = server_core(memory_budget=64 << 10)
    unknown = PROC_PING + 1000  # no argument bound: its payload is received in place
    head = pack_header(Header(PROGRAM, VERSION, unknown, CALL, 1, 0), 1 << 20)
    buffer, due = core.receiving()
    assert due == 0  # at a frame boundary: no frame in place yet
    buffer[: len(head)] = head
    first = len(buffer)
    assert core.received(first, False, time.monotonic())
    buffer, due = core.receiving()
    assert due == (1 << 20) - (first - len(head))  # the rest of its payload, in place
    while core.received(len(buffer), False, time.monotonic()):
        buffer, due = core.receiving()
    # it stopped with the frame still due, once the budget was spent
    assert core.engine.frame_remaining and core.account.budget.exhausted
    assert core.engine.buffered < 2 * (64 << 10) and not core.may_read()


def test_server_take_data_returns_what_server_recv_would_and_declines_the_rest() -> None:
    """The driver's per-frame shortcut (no operation run for an upload's data) has
    server_recv's effects where it applies (consumed counted, V1 ACK due), and leaves
    everything else (not accepted, end of data, an ACK to send, an abort) to it."""
    consumed: list[tuple[int, int]] = []

    def upload(kind: EngineKind) -> Any:
        ex = make_exchange(5, False, kind, False, 1024)
        ex.on_consumed = lambda serial, n: consumed.append((serial, n))
        return ex

    ex = upload(EngineKind.V2_UPLOAD)
    ex.inbox.append(StreamData(5, b"abc"))
    assert not server_takes_data(ex) and server_take_data(ex) is None  # not accepted yet
    ex.accepted = True
    assert server_takes_data(ex)
    data = server_take_data(ex)
    assert data is not None and bytes(data) == b"abc" and consumed == [(5, 3)]
    assert not ex.ack_due and server_take_data(ex) is None  # nothing routed
    ex.inbox.append(StreamFinish(5))
    assert server_take_data(ex) is None and len(ex.inbox) == 1  # the operation's to handle
    steps = Steps(server_recv(ex))
    assert steps.advance() is None and steps.value is None and ex.eof
    assert not server_takes_data(ex)

    v1 = upload(EngineKind.V1_UPLOAD)
    v1.accepted = True
    v1.inbox.extend([StreamData(5, b"x"), StreamData(5, b"y")])
    first = server_take_data(v1)
    assert first is not None and bytes(first) == b"x" and v1.ack_due
    assert not server_takes_data(v1) and server_take_data(v1) is None  # the ACK goes first
    steps = Steps(server_recv(v1))
    ack = steps.advance()
    assert isinstance(ack, StreamAck) and steps.advance() is None
    assert steps.value is not None and bytes(steps.value) == b"y"

    aborted = upload(EngineKind.V2_UPLOAD)
    aborted.accepted = aborted.aborted = True
    aborted.inbox.append(StreamData(5, b"z"))
    assert server_take_data(aborted) is None
    download = make_exchange(6, False, EngineKind.V2_DOWNLOAD, False, 1024)
    download.accepted = True
    download.inbox.append(StreamData(6, b"z"))
    assert not server_takes_data(download) and server_take_data(download) is None

"""Engine behaviour beyond the tables: splitting, end of input, limits, V1 guards, draining,
zero-copy sends, flow-control numbers, unknown procedures, and hostile input."""

from __future__ import annotations

import itertools
import select
import socket
import struct
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import (
    ERR,
    PROCS,
    PROG,
    RESTORE,
    VERS,
    S,
    T,
    call_args,
    call_result,
    deliver,
    drain,
    error_body,
    pair,
    raw,
)

from xdrstream.protocol import (
    NEED_DATA,
    Connection,
    Limits,
    LocalProtocolError,
    RemoteProtocolError,
    Role,
)
from xdrstream.protocol import _bodies as bodies
from xdrstream.protocol._bodies import V1_WINDOW, V1Op
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    ErrorReply,
    KeepalivePing,
    KeepalivePong,
    Message,
    Reply,
    StreamAbort,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamError,
    StreamFinish,
    StreamHole,
    StreamRead,
)
from xdrstream.protocol.framing import MAX_FRAME, MIN_FRAME, FrameDecoder, Header, pack_frame


def open_stream(kind: str, client: Connection, server: Connection) -> int:
    serial = client.next_serial()
    proc = PROCS[kind]
    [call] = deliver(server, client.send(Call(serial, PROG, VERS, proc, call_args(proc))))
    assert isinstance(call, Call) and call.known
    if not kind.startswith("v3"):
        [reply] = deliver(client, server.send(Reply(serial, call_result(proc))))
        assert isinstance(reply, Reply)
    return serial


Splitter = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def run_session(split: Splitter = whole) -> tuple[bytes, bytes, list[object], list[object]]:
    """A session covering every variant, each send delivered to the peer in the pieces
    ``split`` makes: (client->server bytes, server->client bytes, events the client got,
    events the server got).  Data views are turned into bytes for comparison."""
    client, server = pair()
    c2s = bytearray()
    s2c = bytearray()
    got: dict[str, list[object]] = {"c": [], "s": []}

    def move(src: Connection, dst: Connection, pipe: bytearray, side: str, ev: object) -> None:
        data = src.send(ev)  # type: ignore[arg-type]
        pipe.extend(data)
        for piece in split(data):
            dst.receive_data(piece)
            for event in drain(dst):
                if isinstance(event, StreamData):
                    dst.stream_consumed(event.serial, len(event.data))
                    event = StreamData(event.serial, bytes(event.data))
                got[side].append(event)

    def c(event: object) -> None:
        move(client, server, c2s, "s", event)

    def s(event: object) -> None:
        move(server, client, s2c, "c", event)

    for kind in ("v1 upload", "v2 upload", "v3 upload"):
        serial = client.next_serial()
        c(Call(serial, PROG, VERS, PROCS[kind], call_args(PROCS[kind])))
        if kind != "v3 upload":
            s(Reply(serial, call_result(PROCS[kind])))
        c(StreamData(serial, b"abcde"))
        c(StreamHole(serial, 4096))
        if kind == "v1 upload":
            s(StreamAck(serial))
            s(StreamAck(serial))
        c(StreamFinish(serial))
        s(Reply(serial, call_result(PROCS[kind])) if kind == "v3 upload" else StreamConfirm(serial))
    for kind in ("v1 download", "v2 download", "v3 download"):
        serial = client.next_serial()
        c(Call(serial, PROG, VERS, PROCS[kind], call_args(PROCS[kind])))
        if kind != "v3 download":
            s(Reply(serial, call_result(PROCS[kind])))
        if kind == "v1 download":
            c(StreamRead(serial, 10))
            c(StreamRead(serial, 10))
            c(StreamRead(serial, 10))
        s(StreamData(serial, b"0123456789"))
        s(StreamHole(serial, 77))
        s(StreamEnd(serial))
        if kind == "v3 download":
            s(Reply(serial, call_result(PROCS[kind])))
        else:
            c(StreamFinish(serial))
            s(StreamConfirm(serial))
    c(KeepalivePing())
    s(KeepalivePong())
    s(Message(0x1234, 1, 7, b"note"))
    serial = client.next_serial()
    c(Call(serial, PROG, VERS, 2, call_args(2)))
    s(ErrorReply(serial, ERR))
    return bytes(c2s), bytes(s2c), got["c"], got["s"]


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    reference = run_session()
    assert len(reference[2]) > 15 and len(reference[3]) > 15
    assert run_session(bytewise) == reference


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_split_of_a_session_gives_the_same_events(data: st.DataObject) -> None:
    def split(chunk: bytes) -> list[bytes]:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(chunk)), max_size=4)))
        bounds = [0, *cuts, len(chunk)]
        return [chunk[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    assert run_session(split) == run_session()


def test_end_of_input() -> None:
    client, server = pair()
    frame = client.send(Call(client.next_serial(), PROG, VERS, 1, None))
    server.receive_data(frame[:-1])
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=r"§3\.5"):
        server.next_event()
    with pytest.raises(RemoteProtocolError):  # the connection stays broken
        server.next_event()
    _, server = pair()
    server.receive_data(frame)
    server.receive_data(b"")
    assert isinstance(server.next_event(), Call)
    assert isinstance(server.next_event(), ConnectionClosed)
    assert isinstance(server.next_event(), ConnectionClosed)
    with pytest.raises(LocalProtocolError, match=r"§12\.1"):
        server.receive_data(b"more")


def test_receive_buffer_limit() -> None:
    _, server = pair(limits=Limits(max_frame=1024, max_receive_buffer=2048))
    server.receive_data(bytes(2000))
    with pytest.raises(LocalProtocolError, match=r"§8\.1"):
        server.receive_data(bytes(100))


def test_oversized_frame_is_refused_at_its_length_word() -> None:
    _, server = pair(limits=Limits(max_frame=4096))
    server.receive_data(struct.pack(">I", 4096 + 5))
    with pytest.raises(RemoteProtocolError, match=r"§3\.4") as info:
        server.next_event()
    assert info.value.offset == 0


def test_send_buffers_pass_the_payload_through_uncopied() -> None:
    client, server = pair()
    serial = open_stream("v2 upload", client, server)
    payload = memoryview(bytearray(b"x" * 1000))
    buffers = client.send_buffers(StreamData(serial, payload))
    assert any(b is payload for b in buffers)
    assert b"".join(buffers) == client.send(StreamData(serial, payload))
    serial1 = open_stream("v1 upload", client, server)
    odd = memoryview(b"y" * 1001)
    buffers = client.send_buffers(StreamData(serial1, odd))
    assert any(b is odd for b in buffers)
    [event] = deliver(server, b"".join(buffers))
    assert isinstance(event, StreamData) and bytes(event.data) == bytes(odd)


@pytest.mark.parametrize("kind", ["v2 upload", "v3 upload", "v1 upload"])
def test_stream_data_of_wide_items_is_sent_as_its_bytes(kind: str) -> None:
    # a memoryview of 4-byte items: len() counts items, the frame must carry every byte
    import array

    client, server = pair()
    serial = open_stream(kind, client, server)
    words = memoryview(array.array("I", range(1000)))
    buffers = client.send_buffers(StreamData(serial, words))
    wire = b"".join(buffers)
    assert struct.unpack_from(">I", wire)[0] == len(wire) >= MIN_FRAME + 4000
    [event] = deliver(server, wire)
    assert isinstance(event, StreamData) and bytes(event.data) == words.tobytes()


@pytest.mark.parametrize("kind", ["v2 upload", "v3 upload"])
def test_data_frames_of_changing_sizes_each_carry_their_own_length(kind: str) -> None:
    # the sender reuses the last data frame's 28 header bytes while the size stays the same
    client, server = pair()
    serial = open_stream(kind, client, server)
    sizes = [5, 5, 7, 5, 5, 1, 7]
    wire = b"".join(client.send(StreamData(serial, bytes([n]) * n)) for n in sizes)
    events = deliver(server, wire)
    assert [bytes(e.data) for e in events if isinstance(e, StreamData)] == [
        bytes([n]) * n for n in sizes
    ]


def test_reused_data_headers_through_a_socket_with_partial_sends() -> None:
    """Two streams on one connection, chunk sizes equal, then different, then equal again,
    sent with send_buffers through a socket whose small send buffer forces partial sends:
    every frame read back names its own stream, length and bytes (a reused header of the
    wrong stream or size would shift or mislabel the frames after it)."""
    client, server = pair()
    serials = [open_stream("v2 upload", client, server), open_stream("v3 upload", client, server)]
    sizes = [4096, 4096, 4096, 1000, 1000, 4096, 4096, 7, 4096]
    sent = [
        (serial, bytes([(index * 2 + number) % 251]) * size)
        for index, size in enumerate(sizes)
        for number, serial in enumerate(serials)
    ]
    writer, reader = socket.socketpair()
    received = bytearray()
    with writer, reader:
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer.setblocking(False)

        def read_all() -> None:
            while chunk := reader.recv(1500):  # small reads: the writer stays blocked
                received.extend(chunk)

        thread = threading.Thread(target=read_all)
        thread.start()
        partial = 0
        for serial, data in sent:
            views = [memoryview(b).cast("B") for b in client.send_buffers(StreamData(serial, data))]
            while views:
                try:
                    done = writer.sendmsg(views)
                except BlockingIOError:
                    select.select([], [writer], [], 5)
                    continue
                partial += done < sum(v.nbytes for v in views)
                while views and done >= views[0].nbytes:
                    done -= views.pop(0).nbytes
                if views:
                    views[0] = views[0][done:]
        writer.shutdown(socket.SHUT_WR)
        thread.join(10)
    assert partial > 0  # the sends were cut, as intended
    decoder = FrameDecoder()
    decoder.feed(bytes(received))
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append((frame.header.serial, frame.header.type, bytes(frame.payload)))
    assert decoder.buffered == 0
    assert frames == [(serial, T.STREAM, data) for serial, data in sent]
    events = deliver(server, bytes(received))
    assert [(e.serial, bytes(e.data)) for e in events if isinstance(e, StreamData)] == sent


def test_received_data_is_a_view_of_the_received_bytes() -> None:
    client, server = pair()
    serial = open_stream("v2 upload", client, server)
    frame = client.send(StreamData(serial, b"z" * 5000))
    server.receive_data(frame)
    event = server.next_event()
    assert isinstance(event, StreamData)
    assert isinstance(event.data, memoryview) and event.data.obj is frame


def test_v2_data_size_limits() -> None:
    client, server = pair(limits=Limits(max_frame=1024))
    serial = open_stream("v2 upload", client, server)
    with pytest.raises(LocalProtocolError, match=r"§7\.1\.2"):
        client.send(StreamData(serial, b""))
    with pytest.raises(LocalProtocolError, match=r"§7\.1\.2"):
        client.send(StreamData(serial, bytes(1001)))
    assert len(client.send(StreamData(serial, bytes(1000)))) == 1028


def test_holes_need_a_sparse_procedure() -> None:
    client, server = pair()
    serial = client.next_serial()
    deliver(server, client.send(Call(serial, PROG, VERS, 10, call_args(10))))
    deliver(client, server.send(Reply(serial, call_result(10))))
    with pytest.raises(LocalProtocolError, match=r"§7\.1\.3"):
        client.send(StreamHole(serial, 5))
    hole = raw(T.STREAM_HOLE, S.CONTINUE, serial, bodies.pack_hole(5, 0), proc=10)
    with pytest.raises(RemoteProtocolError, match=r"§7\.1\.3"):
        deliver(server, hole)


def test_v1_window() -> None:
    client, server = pair()
    serial = open_stream("v1 upload", client, server)
    for _ in range(V1_WINDOW):
        deliver(server, client.send(StreamData(serial, b"a")))
    info = client.stream_info(serial)
    assert info is not None and info.window == 0 and info.outstanding == V1_WINDOW
    with pytest.raises(LocalProtocolError, match=r"§7\.2\.4"):
        client.send(StreamData(serial, b"a"))
    # a peer that ignores the window is caught by the server
    body = bodies.v1_data_prefix(serial, 1) + b"a\0\0\0"
    with pytest.raises(RemoteProtocolError, match=r"§7\.2\.4"):
        deliver(server, raw(T.CALL, S.CONTINUE, 999, body, proc=PROCS["v1 upload"]))
    # the abort is always allowed and cancels the outstanding calls
    client2, server2 = pair()
    serial2 = open_stream("v1 upload", client2, server2)
    for _ in range(V1_WINDOW):
        deliver(server2, client2.send(StreamData(serial2, b"a")))
    assert deliver(server2, client2.send(StreamAbort(serial2))) == [StreamAbort(serial2)]
    assert deliver(client2, server2.send(StreamConfirm(serial2))) == [StreamConfirm(serial2)]
    assert client2.stream_info(serial2) is None and server2.stream_info(serial2) is None


def test_v1_replies_come_in_order() -> None:
    client, server = pair()
    serial = open_stream("v1 upload", client, server)
    deliver(server, client.send(StreamData(serial, b"a")))
    deliver(server, client.send(StreamData(serial, b"b")))
    second_chunk_serial = serial + 2
    with pytest.raises(RemoteProtocolError, match=r"§7\.2\.1"):
        deliver(client, raw(T.REPLY, S.OK, second_chunk_serial, b"", proc=PROCS["v1 upload"]))


def test_v1_read_reply_bounded_by_max_bytes() -> None:
    client, server = pair()
    serial = open_stream("v1 download", client, server)
    deliver(server, client.send(StreamRead(serial, 4)))
    with pytest.raises(LocalProtocolError, match=r"§7\.1\.2"):
        server.send(StreamData(serial, b"12345"))
    payload = bodies.v1_chunk_data_prefix(5) + b"12345\0\0\0"
    with pytest.raises(RemoteProtocolError, match=r"§7\.2\.3"):
        deliver(client, raw(T.REPLY, S.OK, serial + 1, payload, proc=PROCS["v1 download"]))


def test_v1_end_cancels_later_reads() -> None:
    client, server = pair()
    serial = open_stream("v1 download", client, server)
    for _ in range(3):
        deliver(server, client.send(StreamRead(serial, 100)))
    assert deliver(client, server.send(StreamEnd(serial))) == [StreamEnd(serial)]
    assert client.stream_info(serial).outstanding == 0  # type: ignore[union-attr]
    assert server.stream_info(serial).outstanding == 0  # type: ignore[union-attr]
    # a READ that crossed the end of data is dropped by the server
    late = bodies.pack_v1_call(serial, V1Op.READ, 100)
    assert deliver(server, raw(T.CALL, S.CONTINUE, 50, late, proc=PROCS["v1 download"])) == []
    assert deliver(server, client.send(StreamFinish(serial))) == [StreamFinish(serial)]
    assert deliver(client, server.send(StreamConfirm(serial))) == [StreamConfirm(serial)]


def test_server_error_then_late_data_is_dropped_until_forgotten() -> None:
    client, server = pair(limits=Limits(max_draining=2))
    serials = [open_stream("v2 upload", client, server) for _ in range(3)]
    late = [client.send(StreamData(s, b"late")) for s in serials]
    for s in serials:
        server.send(StreamError(s, ERR))
    # the two most recent failed streams are remembered: their late data is dropped
    assert deliver(server, late[1] + late[2]) == []
    # the oldest was forgotten (max_draining=2): its late data is now an error
    with pytest.raises(RemoteProtocolError, match=r"§7\.1\.1"):
        deliver(server, late[0])


def test_draining_serial_can_be_reused_by_a_new_call() -> None:
    client, server = pair()
    serial = open_stream("v3 upload", client, server)
    assert deliver(client, server.send(ErrorReply(serial, ERR))) == [ErrorReply(serial, ERR)]
    assert server.stream_info(serial).state == "DRAINING"  # type: ignore[union-attr]
    assert client.next_serial() != serial  # the counter moves on, but reuse is legal
    [call] = deliver(server, client.send(Call(serial, PROG, VERS, 1, None)))
    assert isinstance(call, Call) and server.stream_info(serial).kind == "call"  # type: ignore[union-attr]


def test_unknown_procedure_is_answered_with_an_error() -> None:
    _, server = pair()
    frame = pack_frame(Header(0x99, 1, 5, T.CALL, 7, S.OK), b"\0\0\0\1")
    [call] = deliver(server, frame)
    assert call == Call(7, 0x99, 1, 5, b"\0\0\0\1", known=False)
    with pytest.raises(LocalProtocolError, match=r"§4\.4"):
        server.send(Reply(7, None))
    assert server.send(ErrorReply(7, ERR)) == pack_frame(
        Header(0x99, 1, 5, T.REPLY, 7, S.ERROR), error_body()
    )


def unknown_v3_upload(limits: Limits | None = None) -> tuple[Connection, Connection, int]:
    """A client that knows XS_PROC_RESTORE_V3 and a server that knows no procedure: the
    client's call and first data are in flight before the server can answer (§7.4.1)."""
    client = Connection(Role.CLIENT, [RESTORE])
    server = Connection(Role.SERVER, [], limits)
    serial = client.next_serial()
    call = client.send(Call(serial, PROG, VERS, 8, call_args(8)))
    data = client.send(StreamData(serial, b"early")) + client.send(StreamHole(serial, 5))
    [got] = deliver(server, call + data)  # the stream frames are dropped (§10.2)
    assert isinstance(got, Call) and not got.known
    assert server.stream_info(serial).kind == "unknown call"  # type: ignore[union-attr]
    return client, server, serial


def test_unknown_v3_upload_late_frames_are_dropped_and_finish_ends_draining() -> None:
    client, server, serial = unknown_v3_upload()
    late = client.send(StreamData(serial, b"more")) + client.send(StreamFinish(serial))
    reply = server.send(ErrorReply(serial, ERR))
    assert server.stream_info(serial).state == "DRAINING"  # type: ignore[union-attr]
    assert deliver(server, late[: len(late) - 28]) == []  # data after the reply: dropped
    assert server.stream_info(serial).state == "DRAINING"  # type: ignore[union-attr]
    assert deliver(server, late[len(late) - 28 :]) == []  # the finish ends DRAINING
    assert server.stream_info(serial) is None
    assert deliver(client, reply) == [ErrorReply(serial, ERR)]
    # the connection goes on: the next call is received and answered
    [call] = deliver(server, client.send(Call(client.next_serial(), PROG, VERS, 1, None)))
    assert isinstance(call, Call) and call.serial == serial + 1
    assert deliver(client, server.send(ErrorReply(call.serial, ERR))) == [
        ErrorReply(call.serial, ERR)
    ]


def test_unknown_v3_upload_abort_ends_draining_and_bound_is_kept() -> None:
    client, server, serial = unknown_v3_upload(Limits(max_draining=1))
    abort = client.send(StreamAbort(serial))
    server.send(ErrorReply(serial, ERR))
    assert deliver(server, abort) == []
    assert server.stream_info(serial) is None
    # DRAINING serials of unknown calls are bounded like the others (max_draining=1)
    first = unknown_call_frame(10)
    second = unknown_call_frame(11)
    deliver(server, first + second)
    server.send(ErrorReply(10, ERR))
    server.send(ErrorReply(11, ERR))
    assert deliver(server, raw(T.STREAM, S.CONTINUE, 11, b"late", 8)) == []
    with pytest.raises(RemoteProtocolError, match=r"§7\.1\.1"):
        deliver(server, raw(T.STREAM, S.CONTINUE, 10, b"late", 8))


def unknown_call_frame(serial: int) -> bytes:
    return raw(T.CALL, S.OK, serial, bytes(RESTORE["xs_restore_args"].pack(call_args(8))), 8)


@pytest.mark.parametrize(
    ("frame", "section"),
    [
        (raw(T.STREAM, S.CONTINUE, 7, b"", 8), "§9.1"),  # end of data: only servers send it
        (raw(T.STREAM, S.CONTINUE, 7, b"x", 9), "§7.1.1"),  # another procedure
        (raw(T.STREAM, S.ERROR, 7, b"x", 8), "§7.4"),  # an abort has no body
        (raw(T.STREAM_HOLE, S.CONTINUE, 7, b"\0\0", 8), "§7.1.3"),  # truncated hole
        (raw(T.STREAM_HOLE, S.OK, 7, bodies.pack_hole(5, 0), 8), "§7.1.3"),
    ],
)
def test_unknown_call_other_stream_frames_stay_protocol_errors(frame: bytes, section: str) -> None:
    server = Connection(Role.SERVER, [])
    deliver(server, unknown_call_frame(7))
    with pytest.raises(RemoteProtocolError, match=section.replace(".", r"\.")):
        deliver(server, frame)


def test_known_plain_call_is_not_draining_after_its_error_reply() -> None:
    client, server = pair()
    serial = client.next_serial()
    deliver(server, client.send(Call(serial, PROG, VERS, 2, call_args(2))))
    server.send(ErrorReply(serial, ERR))
    assert server.stream_info(serial) is None  # a declared procedure has no stream to drain
    with pytest.raises(RemoteProtocolError, match=r"§7\.1\.1"):
        deliver(server, raw(T.STREAM, S.CONTINUE, serial, b"x", 2))


@pytest.mark.parametrize(
    ("frame", "section"),
    [
        (raw(T.CALL, S.ERROR, 1, b""), "§4.4"),
        (raw(T.REPLY, S.OK, 1, b""), "§4.1"),
        (raw(T.CALL_WITH_FDS, S.OK, 1, b""), "§4.8"),
        (raw(T.MESSAGE, S.OK, 3, b""), "§4.6"),
        (pack_frame(Header(0x6B656570, 1, 3, T.MESSAGE, 0, S.OK)), "§5"),
        (pack_frame(Header(0x6B656570, 1, 1, T.MESSAGE, 0, S.OK), b"\0\0\0\0"), "§5"),
        (raw(T.STREAM, S.CONTINUE, 1, b"x"), "§7.1.1"),
        (raw(T.CALL, S.OK, 1, b"\0\0\0\5abc"), "§4.4"),
    ],
)
def test_bad_frames_at_a_server(frame: bytes, section: str) -> None:
    _, server = pair()
    with pytest.raises(RemoteProtocolError, match=section.replace(".", r"\.")):
        deliver(server, frame)


def test_call_serial_in_use_and_reply_mismatch() -> None:
    client, server = pair()
    serial = client.next_serial()
    frame = client.send(Call(serial, PROG, VERS, 1, None))
    deliver(server, frame)
    with pytest.raises(RemoteProtocolError, match=r"§4\.3"):
        deliver(server, frame)
    with pytest.raises(LocalProtocolError, match=r"§4\.3"):
        client.send(Call(serial, PROG, VERS, 1, None))
    wrong_proc = pack_frame(Header(PROG, VERS, 3, T.REPLY, serial, S.OK))
    with pytest.raises(RemoteProtocolError, match=r"§4\.4"):
        deliver(client, wrong_proc)


def test_keepalive_and_messages() -> None:
    client, server = pair()
    assert deliver(server, client.send(KeepalivePing())) == [KeepalivePing()]
    assert deliver(client, server.send(KeepalivePong())) == [KeepalivePong()]
    assert client.send(KeepalivePing()) == struct.pack(">7I", 28, 0x6B656570, 1, 1, 2, 0, 0)
    msg = Message(PROG, VERS, 2, call_args(2))  # known procedure: body uses its arg codec
    assert deliver(client, server.send(msg)) == [msg]


def test_misuse_is_local() -> None:
    client, server = pair()
    with pytest.raises(LocalProtocolError, match=r"§4\.4"):
        server.send(Call(0, PROG, VERS, 1, None))
    with pytest.raises(LocalProtocolError, match=r"§4\.4"):
        client.send(Call(0, PROG, VERS, 99, None))
    with pytest.raises(LocalProtocolError, match=r"§4\.4"):
        client.send(Call(0, PROG, VERS, 2, "not echo args"))
    with pytest.raises(LocalProtocolError, match=r"§3\.2"):
        client.send(Call(2**32, PROG, VERS, 1, None))
    with pytest.raises(LocalProtocolError, match=r"§4\.3"):
        server.send(Reply(5, None))
    with pytest.raises(LocalProtocolError, match=r"§4\.3"):
        server.next_serial()
    with pytest.raises(LocalProtocolError, match=r"§12\.1"):
        client.send(ConnectionClosed())
    serial = open_stream("v2 upload", client, server)
    with pytest.raises(LocalProtocolError, match=r"§4\.5"):
        server.send(StreamError(serial, ERR.__class__(code=2**31)))


def test_flow_control_numbers() -> None:
    client, server = pair(limits=Limits(stream_buffer=100))
    serial = open_stream("v2 download", client, server)
    deliver(client, server.send(StreamData(serial, bytes(60))))
    assert not client.reading_paused
    deliver(client, server.send(StreamData(serial, bytes(60))))
    assert client.reading_paused
    assert client.stream_info(serial).unconsumed == 120  # type: ignore[union-attr]
    client.stream_consumed(serial, 30)
    assert not client.reading_paused
    with pytest.raises(LocalProtocolError, match=r"§8\.2"):
        client.stream_consumed(serial, 91)
    deliver(client, server.send(StreamData(serial, bytes(20))))
    assert client.reading_paused
    # the stream ending releases its count
    assert deliver(client, server.send(StreamError(serial, ERR))) == [StreamError(serial, ERR)]
    assert not client.reading_paused


# ---- hostile input: only the documented errors ----------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([Role.CLIENT, Role.SERVER]))
def test_random_bytes_give_events_or_remote_errors(blob: bytes, role: Role) -> None:
    conn = Connection(role, [RESTORE], Limits(max_frame=4096))
    try:
        conn.receive_data(blob)
        for _ in range(100):
            if conn.next_event() is NEED_DATA:
                break
    except RemoteProtocolError as exc:
        assert str(exc).startswith("§")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_sessions_give_events_or_remote_errors(data: st.DataObject) -> None:
    """A live session whose frames get bytes changed on the way: the receiving engine
    either copes or raises RemoteProtocolError citing a section, nothing else."""
    budget = [data.draw(st.integers(1, 3))]

    def mutate(chunk: bytes) -> list[bytes]:
        if budget[0] and data.draw(st.integers(0, 9)) == 0:
            budget[0] -= 1
            blob = bytearray(chunk)
            pos = data.draw(st.integers(0, len(blob) - 1))
            blob[pos] = data.draw(st.integers(0, 255))
            return [bytes(blob)]
        return [chunk]

    try:
        run_session(mutate)
    except RemoteProtocolError as exc:
        assert str(exc).startswith("§")
    except AssertionError:
        raise
    except LocalProtocolError as exc:
        # the sender may be asked to answer an event that the mutation changed (e.g. a
        # V1 READ's max_bytes): a local refusal names its section too
        assert str(exc).startswith("§")


def test_max_frame_constant_is_libvirts() -> None:
    assert MAX_FRAME == 33554432


def test_receive_into_gives_large_payloads_in_place() -> None:
    client, server = pair()
    serial = open_stream("v2 upload", client, server)
    payload = bytes(range(256)) * 1200  # 300 KiB, one frame
    wire = client.send(StreamData(serial, payload)) + client.send(StreamFinish(serial))
    events = []
    pos = 0
    buffers = []
    while pos < len(wire):
        buf = server.get_buffer(65536)
        n = min(len(buf), 65536, len(wire) - pos)
        buf[:n] = wire[pos : pos + n]
        buffers.append(buf.obj)
        server.buffer_updated(n)
        pos += n
        events += drain(server)
    data, finish = events
    assert isinstance(data, StreamData) and bytes(data.data) == payload
    assert isinstance(data.data, memoryview) and any(data.data.obj is b for b in buffers)
    assert finish == StreamFinish(serial)
    server.buffer_updated(0)  # the peer closed
    assert isinstance(server.next_event(), ConnectionClosed)
    with pytest.raises(LocalProtocolError, match=r"§12\.1"):
        server.get_buffer()


def test_consuming_data_of_a_stream_that_ended_is_fine() -> None:
    client, server = pair(limits=Limits(stream_buffer=10))
    serial = open_stream("v2 upload", client, server)
    deliver(server, client.send(StreamData(serial, bytes(50))))
    assert server.reading_paused
    server.send(StreamError(serial, ERR))  # the server ends it before consuming the data
    assert not server.reading_paused
    server.stream_consumed(serial, 50)  # the application catches up: no error
    assert server.stream_info(serial).state == "DRAINING"  # type: ignore[union-attr]


def _partial_echo(server: Connection, sent: int) -> None:
    """Feed ``server`` the header and ``sent`` payload bytes of a 1 MiB stream data frame
    (STREAM/CONTINUE: only the frame limit bounds it), in place."""
    head = struct.pack(">7I", MIN_FRAME + (1 << 20), PROG, VERS, 6, 3, 1, 2)
    view = server.get_buffer(len(head))
    view[: len(head)] = head
    server.buffer_updated(len(head))
    while sent:
        view = server.get_buffer(sent)
        n = min(len(view), sent)
        view[:n] = bytes(n)
        server.buffer_updated(n)
        sent -= n


def test_connection_end_releases_the_decoders_memory() -> None:
    # issue 15 part 1: the engine gives a partial frame's buffers back when the
    # connection ends (§3.5), inside a frame or at a frame boundary
    _, server = pair()
    _partial_echo(server, 300_000)
    assert server.next_event() is NEED_DATA
    assert server.buffered == MIN_FRAME + 300_000
    server.buffer_updated(0)  # EOF inside the frame
    with pytest.raises(RemoteProtocolError, match=r"§3\.5: connection closed inside a frame"):
        server.next_event()
    assert server.buffered == 0  # released, not held until the object is collected
    client, server = pair()
    server.receive_data(client.send(Call(client.next_serial(), PROG, VERS, 1, None)))
    server.receive_data(b"")
    assert isinstance(server.next_event(), Call)
    assert isinstance(server.next_event(), ConnectionClosed)
    assert isinstance(server.next_event(), ConnectionClosed)  # still, once released


def test_protocol_error_releases_the_decoders_memory() -> None:
    _, server = pair()
    _partial_echo(server, 100_000)
    assert server.next_event() is NEED_DATA
    server.buffer_updated(0)
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    with pytest.raises(RemoteProtocolError, match="closed inside a frame"):
        server.next_event()  # the same error again, not the decoder's "released"
    assert server.buffered == 0


def _call_head(proc: int, payload: int, serial: int = 1) -> bytes:
    return struct.pack(">7I", MIN_FRAME + payload, PROG, VERS, proc, 0, serial, 0)


def test_procedure_bounds_come_from_the_schema() -> None:
    from xdrstream.protocol import programs_from_schema

    [program] = programs_from_schema(RESTORE)
    bounds = {p.name: p.arg_max for p in program.procedures.values()}
    assert bounds["XS_PROC_PING"] == 0  # void
    assert bounds["XS_PROC_ECHO"] == 4 + 65536  # opaque data<XS_ECHO_MAX>


@pytest.mark.parametrize("in_place", [False, True])
def test_oversized_call_is_refused_from_its_header(in_place: bool) -> None:
    # §3.6: a PING (void) announcing 1 MiB is refused at its 28-byte header; its payload
    # is discarded as it arrives, never buffered; libvirt's error reply; the connection goes on
    client, server = pair()
    chunks = [_call_head(1, 1 << 20)] + [bytes(65536)] * 16
    for chunk in chunks:
        if in_place:
            view = server.get_buffer(len(chunk))
            view[: len(chunk)] = chunk
            server.buffer_updated(len(chunk))
        else:
            server.receive_data(chunk)
        assert server.buffered <= MIN_FRAME  # the header only, never the payload
        event = server.next_event()
        if event is not NEED_DATA:
            break
    assert chunk is chunks[-1]
    assert isinstance(event, Call) and not event.known and event.refusal is not None
    assert (event.refusal.code, event.refusal.domain) == (39, 7)
    assert event.refusal.message == "Unable to decode message payload"
    reply = client.receive_data(server.send(ErrorReply(event.serial, event.refusal)))
    assert reply is None
    # the connection goes on: the next call is served
    ping = client.send(Call(client.next_serial(), PROG, VERS, 1, None))
    server.receive_data(ping)
    assert isinstance(server.next_event(), Call)


def test_echo_at_its_bound_is_accepted_one_more_byte_refused() -> None:
    _, server = pair()
    at_bound = struct.pack(">I", 65536) + bytes(65536)
    server.receive_data(_call_head(2, len(at_bound)) + at_bound)
    event = server.next_event()
    assert isinstance(event, Call) and event.known and len(event.args.data) == 65536
    server.receive_data(_call_head(2, len(at_bound) + 1, serial=2))
    assert server.next_event() is NEED_DATA  # refused here, from the header
    assert server.buffered == MIN_FRAME
    server.receive_data(at_bound + b"x")
    assert server.buffered == MIN_FRAME  # discarded, not kept
    event = server.next_event()
    assert isinstance(event, Call) and event.refusal is not None and event.serial == 2


def test_libvirt_procedures_are_bounded_for_a_server_decoding_its_own_arguments() -> None:
    # the storage-pool server registers raw arguments; the bound still comes from the schema
    from xdrstream.libvirt import protocol as remote

    program = remote.load().program_definition(raw_args=True)
    server = Connection(Role.SERVER, [program])
    auth_list = remote.load().number("AUTH_LIST")
    server.receive_data(
        struct.pack(">7I", MIN_FRAME + (1 << 20), program.number, 1, auth_list, 0, 3, 0)
    )
    assert server.next_event() is NEED_DATA and server.buffered == MIN_FRAME
    server.receive_data(bytes(1 << 20))
    event = server.next_event()
    assert isinstance(event, Call) and event.refusal is not None and server.buffered == 0

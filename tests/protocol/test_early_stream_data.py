"""libvirtd's race (spec.md §7.3.2): V2 download frames sent before the primary reply.

A client accepts them, holds them and delivers them, in order, right after the reply;
an ERROR reply discards them; uploads and other kinds still refuse them; the held data is
bounded.
"""

from __future__ import annotations

from typing import Any

import pytest
from protocol_helpers import (
    ERR,
    PROCS,
    S,
    T,
    call_args,
    call_result,
    deliver,
    error_body,
    pair,
    raw,
)

from xdrstream.protocol import Connection, Limits, RemoteProtocolError
from xdrstream.protocol.events import (
    Call,
    ErrorReply,
    Reply,
    StreamData,
    StreamEnd,
    StreamError,
)


def _called(kind: str, **kwargs: Any) -> tuple[Connection, Connection, int]:
    client, server = pair(**kwargs)
    proc = PROCS[kind]
    serial = client.next_serial()
    events = deliver(server, client.send(Call(serial, 0x58445253, 1, proc, call_args(proc))))
    assert [type(e) for e in events] == [Call]
    return client, server, serial


def test_data_and_end_before_the_reply_follow_the_reply_in_order() -> None:
    client, server, serial = _called("v2 download")
    proc = PROCS["v2 download"]
    reply = server.send(Reply(serial, call_result(proc)))
    frames = [
        server.send(StreamData(serial, b"first")),
        server.send(StreamData(serial, b"second")),
        server.send(StreamEnd(serial)),
    ]
    assert deliver(client, b"".join(frames)) == []  # held: nothing before the reply
    assert client.stream_info(serial).state == "CALLING"
    events = deliver(client, reply)
    assert [type(e) for e in events] == [Reply, StreamData, StreamData, StreamEnd]
    assert [bytes(e.data) for e in events if isinstance(e, StreamData)] == [b"first", b"second"]
    info = client.stream_info(serial)
    assert info.state == "EOF"
    assert info.unconsumed == len(b"firstsecond")  # counted once delivered (§8.2)


def test_stream_error_before_the_reply_closes_after_it() -> None:
    client, _server, serial = _called("v2 download")
    proc = PROCS["v2 download"]
    early = raw(T.STREAM, S.ERROR, serial, error_body(), proc)
    assert deliver(client, early) == []
    events = deliver(client, raw(T.REPLY, S.OK, serial, b"\0" * 8, proc))
    assert [type(e) for e in events] == [Reply, StreamError]
    assert client.stream_info(serial) is None  # CLOSED


def test_an_error_reply_discards_what_came_early() -> None:
    client, _server, serial = _called("v2 download")
    proc = PROCS["v2 download"]
    deliver(client, raw(T.STREAM, S.CONTINUE, serial, b"early", proc))
    events = deliver(client, raw(T.REPLY, S.ERROR, serial, error_body(), proc))
    assert [type(e) for e in events] == [ErrorReply]
    assert events[0].error == ERR
    assert client.stream_info(serial) is None


@pytest.mark.parametrize("kind", ["v2 upload", "call", "v1 download"])
def test_other_kinds_still_refuse_data_before_the_reply(kind: str) -> None:
    client, _server, serial = _called(kind)
    with pytest.raises(RemoteProtocolError):
        deliver(client, raw(T.STREAM, S.CONTINUE, serial, b"early", PROCS[kind]))


def test_data_after_an_error_reply_is_refused() -> None:
    client, _server, serial = _called("v2 download")
    proc = PROCS["v2 download"]
    deliver(client, raw(T.REPLY, S.ERROR, serial, error_body(), proc))
    with pytest.raises(RemoteProtocolError):
        deliver(client, raw(T.STREAM, S.CONTINUE, serial, b"late", proc))


def test_data_after_a_held_end_is_refused_once_applied() -> None:
    client, _server, serial = _called("v2 download")
    proc = PROCS["v2 download"]
    early = raw(T.STREAM, S.CONTINUE, serial, b"", proc) + raw(
        T.STREAM, S.CONTINUE, serial, b"after end", proc
    )
    deliver(client, early)
    with pytest.raises(RemoteProtocolError, match="StreamData is not allowed in state EOF"):
        deliver(client, raw(T.REPLY, S.OK, serial, b"\0" * 8, proc))


def test_held_data_is_bounded_by_max_held() -> None:
    client, _server, serial = _called("v2 download", limits=Limits(max_held=10))
    proc = PROCS["v2 download"]
    deliver(client, raw(T.STREAM, S.CONTINUE, serial, b"x" * 10, proc))
    with pytest.raises(RemoteProtocolError, match="before the reply"):
        deliver(client, raw(T.STREAM, S.CONTINUE, serial, b"y", proc))


def test_libvirtds_race_of_sixteen_chunks_is_held_past_the_stream_buffer() -> None:
    """The default per-stream limit is two chunks; libvirtd's race (§7.3.2) may send more
    before its reply, and they cannot wait in the socket: 16 are held, then applied; a 17th
    is past max_held (4 MiB)."""
    proc = PROCS["v2 download"]
    chunk = bytes(262120)
    assert 16 * len(chunk) > 2 * (Limits().stream_buffer or 0)
    client, _server, serial = _called("v2 download")
    early = b"".join(raw(T.STREAM, S.CONTINUE, serial, chunk, proc) for _ in range(16))
    assert deliver(client, early) == []
    events = deliver(client, raw(T.REPLY, S.OK, serial, b"\0" * 8, proc))
    assert [type(e) for e in events] == [Reply] + [StreamData] * 16
    assert sum(len(e.data) for e in events if isinstance(e, StreamData)) == 16 * len(chunk)
    client, _server, serial = _called("v2 download")
    with pytest.raises(RemoteProtocolError, match="before the reply"):
        deliver(client, b"".join(raw(T.STREAM, S.CONTINUE, serial, chunk, proc) for _ in range(17)))

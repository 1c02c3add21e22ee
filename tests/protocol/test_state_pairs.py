"""Every (state, message) pair of every table of spec.md §9 (h2-style).

For each role and kind, scripted exchanges are run on a real client/server pair; every prefix
of a script leaves the tested side in some state.  From there each event the role can send or
receive is tried: a send through the engine, a receipt as a raw frame built here from the
wire encodings of spec.md §7/§12.2 (so invalid peer behaviour can be produced).

* a pair in the table must work on at least one path and end in the table's next state;
* a pair not in the table must raise (LocalProtocolError for a send, RemoteProtocolError
  for a receipt) on every path where it can be expressed at all.  Some pairs cannot be put
  on the wire: a V1 reply's meaning comes from the call it answers (§7.2.1), so, e.g., a
  StreamConfirm needs an outstanding FINISH or ABORT call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
from protocol_helpers import (
    ERR,
    PROCS,
    PROG,
    VERS,
    S,
    T,
    call_args,
    call_result,
    deliver,
    error_body,
    pair,
    raw,
)

from xdrstream.protocol import Connection, LocalProtocolError, RemoteProtocolError, Role
from xdrstream.protocol import _bodies as bodies
from xdrstream.protocol._bodies import V1Op
from xdrstream.protocol._state import RECEIVES, SENDS, TABLES
from xdrstream.protocol.events import (
    Call,
    ErrorReply,
    Event,
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

C, SV = "C", "S"
SCRIPTS: dict[str, list[list[tuple[str, str]]]] = {
    "call": [[(C, "Call"), (SV, "Reply")], [(C, "Call"), (SV, "ErrorReply")]],
    "v1 upload": [
        [
            (C, "Call"),
            (SV, "Reply"),
            (C, "StreamData"),
            (C, "StreamHole"),
            (C, "StreamFinish"),
            (SV, "StreamAck"),
            (SV, "StreamAck"),
            (SV, "StreamConfirm"),
        ],
        [(C, "Call"), (SV, "Reply"), (C, "StreamFinish"), (SV, "StreamError")],
        [(C, "Call"), (SV, "Reply"), (C, "StreamHole"), (C, "StreamAbort"), (SV, "StreamConfirm")],
        [(C, "Call"), (SV, "Reply"), (C, "StreamAbort"), (SV, "StreamError")],
        [(C, "Call"), (SV, "Reply"), (C, "StreamData"), (SV, "StreamError")],
        [(C, "Call"), (SV, "ErrorReply")],
    ],
    "v1 download": [
        [
            (C, "Call"),
            (SV, "Reply"),
            (C, "StreamRead"),
            (C, "StreamRead"),
            (SV, "StreamData"),
            (SV, "StreamHole"),
            (C, "StreamRead"),
            (SV, "StreamEnd"),
            (C, "StreamFinish"),
            (SV, "StreamConfirm"),
        ],
        [(C, "Call"), (SV, "Reply"), (C, "StreamRead"), (C, "StreamAbort"), (SV, "StreamConfirm")],
        [(C, "Call"), (SV, "Reply"), (C, "StreamRead"), (SV, "StreamError")],
        [
            (C, "Call"),
            (SV, "Reply"),
            (C, "StreamRead"),
            (SV, "StreamEnd"),
            (C, "StreamAbort"),
            (SV, "StreamError"),
        ],
        [
            (C, "Call"),
            (SV, "Reply"),
            (C, "StreamRead"),
            (SV, "StreamEnd"),
            (C, "StreamFinish"),
            (SV, "StreamError"),
        ],
        [(C, "Call"), (SV, "ErrorReply")],
    ],
    "v2 upload": [
        [
            (C, "Call"),
            (SV, "Reply"),
            (C, "StreamData"),
            (C, "StreamHole"),
            (C, "StreamFinish"),
            (SV, "StreamConfirm"),
        ],
        [(C, "Call"), (SV, "Reply"), (C, "StreamAbort"), (SV, "StreamError")],
        [(C, "Call"), (SV, "Reply"), (C, "StreamFinish"), (SV, "StreamError")],
        [(C, "Call"), (SV, "Reply"), (C, "StreamAbort"), (SV, "StreamConfirm")],
        [(C, "Call"), (SV, "Reply"), (SV, "StreamError")],
        [(C, "Call"), (SV, "ErrorReply")],
    ],
    "v2 download": [
        [
            (C, "Call"),
            (SV, "Reply"),
            (SV, "StreamData"),
            (SV, "StreamHole"),
            (SV, "StreamEnd"),
            (C, "StreamFinish"),
            (SV, "StreamConfirm"),
        ],
        [(C, "Call"), (SV, "Reply"), (C, "StreamAbort"), (SV, "StreamConfirm")],
        [(C, "Call"), (SV, "Reply"), (SV, "StreamEnd"), (C, "StreamAbort"), (SV, "StreamError")],
        [(C, "Call"), (SV, "Reply"), (SV, "StreamEnd"), (C, "StreamFinish"), (SV, "StreamError")],
        [(C, "Call"), (SV, "Reply"), (SV, "StreamError")],
        [(C, "Call"), (SV, "Reply"), (SV, "StreamEnd"), (SV, "StreamError")],
        [(C, "Call"), (SV, "ErrorReply")],
    ],
    "v3 upload": [
        [(C, "Call"), (C, "StreamData"), (C, "StreamHole"), (C, "StreamFinish"), (SV, "Reply")],
        [(C, "Call"), (C, "StreamFinish"), (SV, "ErrorReply")],
        [(C, "Call"), (C, "StreamAbort"), (SV, "ErrorReply")],
        [(C, "Call"), (C, "StreamAbort"), (SV, "Reply")],
        [(C, "Call"), (SV, "ErrorReply")],
    ],
    "v3 download": [
        [(C, "Call"), (SV, "StreamData"), (SV, "StreamHole"), (SV, "StreamEnd"), (SV, "Reply")],
        [(C, "Call"), (SV, "StreamEnd"), (SV, "ErrorReply")],
        [(C, "Call"), (C, "StreamAbort"), (SV, "ErrorReply")],
        [(C, "Call"), (C, "StreamAbort"), (SV, "Reply")],
        [(C, "Call"), (SV, "ErrorReply")],
    ],
}
PRIMARY = 0


def make_event(name: str, proc: int) -> Event:
    return {
        "Call": lambda: Call(PRIMARY, PROG, VERS, proc, call_args(proc)),
        "Reply": lambda: Reply(PRIMARY, call_result(proc)),
        "ErrorReply": lambda: ErrorReply(PRIMARY, ERR),
        "StreamData": lambda: StreamData(PRIMARY, b"xyz"),
        "StreamHole": lambda: StreamHole(PRIMARY, 5),
        "StreamEnd": lambda: StreamEnd(PRIMARY),
        "StreamFinish": lambda: StreamFinish(PRIMARY),
        "StreamAbort": lambda: StreamAbort(PRIMARY),
        "StreamError": lambda: StreamError(PRIMARY, ERR),
        "StreamConfirm": lambda: StreamConfirm(PRIMARY),
        "StreamRead": lambda: StreamRead(PRIMARY, 100),
        "StreamAck": lambda: StreamAck(PRIMARY),
    }[name]()


def state_of(conn: Connection, started: bool) -> str:
    info = conn.stream_info(PRIMARY)
    if info is None:
        return "CLOSED" if started else "IDLE"
    return info.state


def run_prefix(kind: str, steps: list[tuple[str, str]]) -> tuple[Connection, Connection]:
    client, server = pair()
    proc = PROCS[kind]
    for actor, name in steps:
        src, dst = (client, server) if actor == C else (server, client)
        deliver(dst, src.send(make_event(name, proc)))
    return client, server


def pending(conn: Connection) -> list[tuple[int, int, int]]:
    ex = conn._exchanges.get(PRIMARY)
    return list(ex.pending) if ex is not None else []


def peer_frame(kind: str, receiver: Role, name: str, conn: Connection) -> bytes | None:
    """The frame a peer would send for event ``name``; None if not expressible here."""
    proc = PROCS[kind]
    variant = kind.split()[0]
    ex = conn._exchanges.get(PRIMARY)
    if name == "Call":
        args = bodies_or_codec_args(proc)
        return raw(T.CALL, S.OK, PRIMARY, args, proc)
    if name == "Reply":
        return raw(T.REPLY, S.OK, PRIMARY, packed_result(proc), proc)
    if name == "ErrorReply":
        return raw(T.REPLY, S.ERROR, PRIMARY, error_body(), proc)
    if variant != "v1":
        encodings = {
            "StreamData": (T.STREAM, S.CONTINUE, b"xyz"),
            "StreamHole": (T.STREAM_HOLE, S.CONTINUE, bodies.pack_hole(5, 0)),
            "StreamEnd": (T.STREAM, S.CONTINUE, b""),
            "StreamFinish": (T.STREAM, S.OK, b""),
            "StreamConfirm": (T.STREAM, S.OK, b""),
            "StreamAbort": (T.STREAM, S.ERROR, b""),
            "StreamError": (T.STREAM, S.ERROR, error_body()),
        }
        # STREAM/OK means Confirm at a client and Finish at a server: the other reading
        # cannot be put on the wire.
        if (receiver is Role.CLIENT and name == "StreamFinish") or (
            receiver is Role.SERVER and name == "StreamConfirm"
        ):
            return None
        if name == "StreamRead":  # a V1 READ call naming a non-V1 exchange
            body = bodies.pack_v1_call(PRIMARY, V1Op.READ, 100)
            return raw(T.CALL, S.CONTINUE, 1000, body, proc)
        if name == "StreamAck":  # a V1 acknowledgement of a call that does not exist
            return raw(T.REPLY, S.OK, 1000, b"", proc)
        mtype, status, payload = encodings[name]
        return raw(mtype, status, PRIMARY, payload, proc)
    if receiver is Role.SERVER:
        ops = {
            "StreamData": bodies.v1_data_prefix(PRIMARY, 3) + b"xyz\0",
            "StreamHole": bodies.pack_v1_call(PRIMARY, V1Op.HOLE, (5, 0)),
            "StreamFinish": bodies.pack_v1_call(PRIMARY, V1Op.FINISH),
            "StreamAbort": bodies.pack_v1_call(PRIMARY, V1Op.ABORT),
            "StreamRead": bodies.pack_v1_call(PRIMARY, V1Op.READ, 100),
        }
        if name in ops:
            return raw(T.CALL, S.CONTINUE, 1000, ops[name], proc)
        if name == "StreamEnd":
            return raw(T.STREAM, S.CONTINUE, PRIMARY, b"", proc)
        return raw(T.STREAM, S.OK, PRIMARY, b"", proc)  # V1 has no STREAM frames
    # V1, client: a reply to its oldest outstanding stream call (§7.2.1), or to serial 1000
    # when none is outstanding.  An empty OK reply means Ack or Confirm depending on that
    # call, so the other meaning cannot be expressed.
    calls = pending(conn) if ex is not None else []
    head_serial, head_op, _max = calls[0] if calls else (1000, -1, 0)
    target = head_serial
    if name == "StreamError":
        return raw(T.REPLY, S.ERROR, target, error_body(), proc)
    if name in ("StreamAck", "StreamConfirm"):
        if name == "StreamAck" and head_op in (V1Op.FINISH, V1Op.ABORT):
            return None
        if name == "StreamConfirm":
            if calls and calls[-1][1] == V1Op.ABORT:
                target = calls[-1][0]
            elif head_op in (V1Op.DATA, V1Op.HOLE):
                return None
        return raw(T.REPLY, S.OK, target, b"", proc)
    if name in ("StreamData", "StreamHole", "StreamEnd"):
        payload = {
            "StreamData": bodies.v1_chunk_data_prefix(3) + b"xyz\0",
            "StreamHole": bodies.pack_v1_chunk(V1Op.HOLE, (5, 0)),
            "StreamEnd": bodies.pack_v1_chunk(V1Op.FINISH),
        }[name]
        return raw(T.REPLY, S.OK, target, payload, proc)
    return None


def bodies_or_codec_args(proc: int) -> bytes:
    from protocol_helpers import RESTORE

    arg = call_args(proc)
    name = {2: "xs_echo_args"}.get(proc, "xs_restore_args" if proc in (4, 6, 8) else "xs_save_args")
    return bytes(RESTORE[name].pack(arg))


def packed_result(proc: int) -> bytes:
    from protocol_helpers import RESTORE

    name = {2: "xs_echo_ret"}.get(proc, "xs_restore_ret" if proc in (4, 6, 8) else "xs_save_ret")
    return bytes(RESTORE[name].pack(call_result(proc)))


@dataclass
class Outcome:
    ok: bool
    state: str
    error: Exception | None


def attempt(kind: str, role: Role, steps: list[tuple[str, str]], message: str) -> Outcome | None:
    client, server = run_prefix(kind, steps)
    tested = client if role is Role.CLIENT else server
    name = message[1:]
    try:
        if message.startswith(">"):
            tested.send(make_event(name, PROCS[kind]))
        else:
            frame = peer_frame(kind, role, name, tested)
            if frame is None:
                return None
            deliver(tested, frame)
    except (LocalProtocolError, RemoteProtocolError) as exc:
        want = LocalProtocolError if message.startswith(">") else RemoteProtocolError
        assert isinstance(exc, want), exc
        return Outcome(False, state_of(tested, bool(steps)), exc)
    started = bool(steps) or name == "Call"
    return Outcome(True, state_of(tested, started), None)


@functools.cache
def paths_by_state(kind: str, role: Role) -> dict[str, list[list[tuple[str, str]]]]:
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for script in SCRIPTS[kind]:
        for n in range(len(script) + 1):
            prefix = script[:n]
            client, server = run_prefix(kind, prefix)
            tested = client if role is Role.CLIENT else server
            state = state_of(tested, bool(prefix))
            if prefix not in out.setdefault(state, []):
                out[state].append(prefix)
    return out


# The server's "unknown call" table (a procedure it does not know) needs a client that
# knows the procedure: tests/protocol/test_connection.py covers it with raw frames.
SCRIPTED = {key: table for key, table in TABLES.items() if key[1] in SCRIPTS}


def all_pairs() -> list[tuple[Role, str, str, str]]:
    cases = []
    for (role, kind), table in SCRIPTED.items():
        states = sorted({s for s, _ in table} | {n for n, _ in table.values()})
        messages = [">" + e for e in SENDS[role]] + ["<" + e for e in RECEIVES[role]]
        if role is Role.CLIENT:
            messages.append(">Call")
        else:
            messages.append("<Call")
        for state in states:
            for message in dict.fromkeys(messages):
                cases.append((role, kind, state, message))
    return cases


def test_scripts_reach_every_state() -> None:
    assert set(TABLES) - set(SCRIPTED) == {(Role.SERVER, "unknown call")}
    for (role, kind), table in SCRIPTED.items():
        states = {s for s, _ in table} | {n for n, _ in table.values()}
        assert set(paths_by_state(kind, role)) == states, (role, kind)


@pytest.mark.parametrize(
    ("role", "kind", "state", "message"),
    all_pairs(),
    ids=lambda v: v.value if isinstance(v, Role) else str(v).replace(" ", "-"),
)
def test_state_message_pair(role: Role, kind: str, state: str, message: str) -> None:
    table = TABLES[(role, kind)]
    expected = table.get((state, message))
    outcomes: list[Outcome] = []
    for path in paths_by_state(kind, role)[state]:
        outcome = attempt(kind, role, path, message)
        if outcome is not None:
            outcomes.append(outcome)
    new_call = message[1:] == "Call" and state in ("CLOSED", "DRAINING")
    if expected is None and not new_call:
        # invalid everywhere it can be expressed
        for outcome in outcomes:
            assert not outcome.ok, f"{message} in {state} was accepted"
            assert outcome.state == state or isinstance(outcome.error, RemoteProtocolError)
    elif new_call:
        # a closed (or draining) serial is free again: the call starts a new exchange (§4.3.2)
        assert outcomes and all(o.ok for o in outcomes)
        first = "CALLING" if role is Role.CLIENT else "CALLED"
        assert all(o.state in (first, "OPEN") for o in outcomes)
    else:
        nxt, _action = expected
        good = [o for o in outcomes if o.ok]
        assert good, f"{message} in {state} never succeeded: {[str(o.error) for o in outcomes]}"
        assert all(o.state == nxt for o in good), [o.state for o in good]


def test_local_errors_leave_state_unchanged() -> None:
    client, server = run_prefix("v2 upload", [(C, "Call"), (SV, "Reply")])
    before = client.stream_info(PRIMARY)
    with pytest.raises(LocalProtocolError, match=r"§9\.3"):
        client.send(StreamRead(PRIMARY, 10))
    with pytest.raises(LocalProtocolError, match=r"§9\.3"):
        server.send(StreamData(PRIMARY, b"x"))
    assert client.stream_info(PRIMARY) == before
    deliver(server, client.send(StreamData(PRIMARY, b"still fine")))

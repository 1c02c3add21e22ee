"""Hypothesis stateful test: a client and a server Connection wired together (spec.md §7, §9).

Random interleavings of calls, streams of every variant in both directions, holes, aborts,
server errors, keepalives and notifications; the two byte pipes are delivered in random
pieces.  Properties: no endpoint ever reports a protocol error against a correct peer; stream
data arrives intact, in order, and complete when the stream ends normally; when no bytes are
in flight, both endpoints agree on the state of every exchange.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from protocol_helpers import DENSE, ERR, PROCS, PROG, VERS, call_args, call_result, pair

from xdrstream.protocol import NEED_DATA, Connection, Limits
from xdrstream.protocol._bodies import V1_WINDOW, V1Op
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    ErrorReply,
    Event,
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

KINDS = [*PROCS, "dense upload", "dense download"]
# Steps that keep a stream going are listed several times so that runs reach deep states;
# abort/error steps end streams early and stay rarer.
WEIGHT = {"data": 4, "read": 4, "ack": 4, "reply": 3, "hole": 2, "confirm": 2, "end": 2}


# Mostly small chunks; now and then one large enough for receive-in-place (>= 64 KiB due).
CHUNKS = st.binary(min_size=1, max_size=40) | st.integers(65536, 140000).map(
    lambda n: bytes([n % 251]) * n
)


def weighted(actions: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [a for a in actions for _ in range(WEIGHT.get(a[0], 1))]


PROC_OF = {**PROCS, "dense upload": DENSE["upload"], "dense download": DENSE["download"]}
KIND_OF_PROC = {
    p: ("v2 " + k.split()[1] if k.startswith("dense") else k) for k, p in PROC_OF.items()
}

# Pairs of (client state, server state) possible when no bytes are in flight.
QUIET = {
    ("CALLING", "CALLED"),
    ("OPEN", "OPEN"),
    ("EOF", "EOF"),
    ("FINISHING", "FINISHING"),
    ("ABORTING", "ABORTED"),
    ("ABORTING", "EOF"),  # V3 download: abort crossed the end of data; the reply follows
    ("CLOSED", "CLOSED"),
    ("CLOSED", "DRAINING"),
}


def head_op(conn: Connection, serial: int) -> int | None:
    ex = conn._exchanges.get(serial)
    return ex.pending[0][1] if ex is not None and ex.pending else None


def record(label: str) -> None:
    event(label)  # hypothesis statistics: which steps the runs exercised


class Pair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client, self.server = pair(limits=Limits(stream_buffer=1 << 16))
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.kind: dict[int, str] = {}
        self.sent: dict[int, list[Any]] = {}  # data sender's items: bytes or ("hole", n)
        self.recv: dict[int, list[Any]] = {}
        self.complete: set[int] = set()  # streams whose data ended normally
        self.pings = {"c": 0, "s": 0}
        self.pings_seen = {"c": 0, "s": 0}
        self.messages = 0
        self.messages_seen = 0

    # ---------------------------------------------------------------- helpers
    def upload(self, serial: int) -> bool:
        return self.kind[serial].endswith("upload")

    def receive(self, conn: Connection, data: bytes, side: str, into: bool = False) -> None:
        if into:  # receive in place, as recv_into / BufferedProtocol drivers do
            view = memoryview(data)
            while view:
                buf = conn.get_buffer(len(view))
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                conn.buffer_updated(n)
                view = view[n:]
        else:
            conn.receive_data(data)
        while (event := conn.next_event()) is not NEED_DATA:
            self.check(event, side)

    def check(self, event: Event, side: str) -> None:
        kind = self.kind.get(getattr(event, "serial", -1), "")
        record(f"{side} got {type(event).__name__} {kind}".rstrip())
        if isinstance(event, KeepalivePing):
            self.pings_seen[side] += 1
        elif isinstance(event, KeepalivePong):
            raise AssertionError("no pong was sent")
        elif isinstance(event, Message):
            assert event.body == b"note"
            self.messages_seen += 1
        elif isinstance(event, ConnectionClosed):
            raise AssertionError("nobody closed")
        elif isinstance(event, StreamData):
            got = self.recv.setdefault(event.serial, [])
            got.append(bytes(event.data))
            self.assert_prefix(event.serial)
            conn = self.client if side == "c" else self.server
            conn.stream_consumed(event.serial, len(event.data))
        elif isinstance(event, StreamHole):
            self.recv.setdefault(event.serial, []).append(("hole", event.length))
            self.assert_prefix(event.serial)
        elif isinstance(event, StreamEnd) or (
            isinstance(event, StreamFinish) and self.upload(event.serial)
        ):
            assert self.recv.get(event.serial, []) == self.sent.get(event.serial, [])
            self.complete.add(event.serial)
        elif isinstance(event, Call):
            assert side == "s" and event.args == call_args(event.procedure)
        elif isinstance(event, Reply):
            assert event.result == call_result(self.proc(event.serial))
        elif isinstance(event, (ErrorReply, StreamError)):
            assert event.error == ERR

    def proc(self, serial: int) -> int:
        return PROC_OF[self.kind[serial]]

    def assert_prefix(self, serial: int) -> None:
        got = self.recv[serial]
        assert got == self.sent.get(serial, [])[: len(got)]

    def send(self, side: str, event: Event) -> None:
        conn, pipe = (self.client, self.c2s) if side == "c" else (self.server, self.s2c)
        for buf in conn.send_buffers(event):
            pipe += buf
        if isinstance(event, (StreamData, StreamHole)):
            item = bytes(event.data) if isinstance(event, StreamData) else ("hole", event.length)
            self.sent.setdefault(event.serial, []).append(item)

    def client_actions(self) -> list[tuple[str, int]]:
        actions = []
        for serial, ex in list(self.client._exchanges.items()):
            kind = self.kind[serial]
            variant = kind.split()[0]
            info = self.client.stream_info(serial)
            assert info is not None
            room = variant != "v1" or info.outstanding < V1_WINDOW
            sparse = info.sparse
            state = ex.state
            if state == "OPEN" and self.upload(serial):
                if room:
                    actions += [("data", serial), ("finish", serial)]
                    if sparse:
                        actions.append(("hole", serial))
                actions.append(("abort", serial))
            elif state == "OPEN":
                actions.append(("abort", serial))
                if variant == "v1" and room:
                    actions.append(("read", serial))
            elif state == "EOF" and variant != "v3":
                actions += [("finish", serial), ("abort", serial)]
        return actions

    def server_actions(self) -> list[tuple[str, int]]:
        actions = []
        for serial, ex in list(self.server._exchanges.items()):
            kind = self.kind[serial]
            variant = kind.split()[0]
            state = ex.state
            head = head_op(self.server, serial)
            if state == "CALLED":
                actions += [("reply", serial), ("error_reply", serial)]
            elif variant == "v3":
                if state == "OPEN":
                    actions.append(("error_reply", serial))
                    if not self.upload(serial):
                        actions += [("data", serial), ("hole", serial), ("end", serial)]
                elif state in ("FINISHING", "ABORTED", "EOF"):
                    actions += [("reply", serial), ("error_reply", serial)]
            elif variant == "v2":
                if state == "OPEN":
                    actions.append(("error", serial))
                    if not self.upload(serial):
                        actions += [("data", serial), ("end", serial)]
                        if ex.mode is not None and ex.mode.sparse:
                            actions.append(("hole", serial))
                elif state in ("FINISHING", "ABORTED"):
                    actions += [("confirm", serial), ("error", serial)]
                elif state == "EOF":
                    actions.append(("error", serial))
            elif head is not None:  # V1: answer the oldest outstanding stream call
                actions.append(("error", serial))
                if head in (V1Op.DATA, V1Op.HOLE):
                    actions.append(("ack", serial))
                elif head in (V1Op.FINISH, V1Op.ABORT):
                    actions.append(("confirm", serial))
                elif head == V1Op.READ and state == "OPEN":
                    actions += [("data", serial), ("hole", serial), ("end", serial)]
        return actions

    # ---------------------------------------------------------------- rules
    @rule(kind=st.sampled_from(KINDS))
    def call(self, kind: str) -> None:
        serial = self.client.next_serial()
        proc = PROC_OF[kind]
        self.kind[serial] = KIND_OF_PROC[proc]
        self.sent.pop(serial, None)
        self.recv.pop(serial, None)
        self.complete.discard(serial)
        self.send("c", Call(serial, PROG, VERS, proc, call_args(proc)))

    @rule(data=st.data())
    def client_step(self, data: st.DataObject) -> None:
        actions = self.client_actions()
        if not actions:
            return
        what, serial = data.draw(st.sampled_from(weighted(actions)))
        if what == "data":
            self.send("c", StreamData(serial, data.draw(CHUNKS)))
        elif what == "hole":
            self.send("c", StreamHole(serial, data.draw(st.integers(0, 1 << 40))))
        elif what == "finish":
            self.send("c", StreamFinish(serial))
        elif what == "abort":
            self.send("c", StreamAbort(serial))
        elif what == "read":
            self.send("c", StreamRead(serial, data.draw(st.integers(1, 64))))

    @rule(data=st.data())
    def server_step(self, data: st.DataObject) -> None:
        actions = self.server_actions()
        if not actions:
            return
        what, serial = data.draw(st.sampled_from(weighted(actions)))
        if what == "reply":
            self.send("s", Reply(serial, call_result(self.proc(serial))))
        elif what == "error_reply":
            self.send("s", ErrorReply(serial, ERR))
        elif what == "error":
            self.send("s", StreamError(serial, ERR))
        elif what == "confirm":
            self.send("s", StreamConfirm(serial))
        elif what == "ack":
            self.send("s", StreamAck(serial))
        elif what == "end":
            self.send("s", StreamEnd(serial))
        elif what == "hole":
            self.send("s", StreamHole(serial, data.draw(st.integers(0, 1 << 40))))
        elif what == "data":
            info = self.server.stream_info(serial)
            assert info is not None
            limit = info.read_max or 40
            self.send("s", StreamData(serial, data.draw(st.binary(min_size=1, max_size=limit))))

    @rule(side=st.sampled_from(["c", "s"]))
    def ping(self, side: str) -> None:
        self.pings[side] += 1
        self.send(side, KeepalivePing())

    @rule()
    def notify(self) -> None:
        self.messages += 1
        self.send("s", Message(0x1234, 1, 7, b"note"))

    @precondition(lambda self: bool(self.c2s))
    @rule(data=st.data())
    def deliver_to_server(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, len(self.c2s)))
        chunk = bytes(self.c2s[:n])
        del self.c2s[:n]
        self.receive(self.server, chunk, "s", data.draw(st.booleans()))

    @precondition(lambda self: bool(self.s2c))
    @rule(data=st.data())
    def deliver_to_client(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, len(self.s2c)))
        chunk = bytes(self.s2c[:n])
        del self.s2c[:n]
        self.receive(self.client, chunk, "c", data.draw(st.booleans()))

    @rule(data=st.data())
    def flush(self, data: st.DataObject) -> None:
        """Deliver everything in flight, both ways, in random pieces (until quiet)."""
        for _ in range(4):
            for pipe, conn, side in ((self.c2s, self.server, "s"), (self.s2c, self.client, "c")):
                while pipe:
                    n = data.draw(st.integers(1, len(pipe)))
                    chunk = bytes(pipe[:n])
                    del pipe[:n]
                    self.receive(conn, chunk, side)

    @rule(data=st.data())
    def both_step(self, data: st.DataObject) -> None:
        """A client step and a server step, then everything delivered: drives progress."""
        self.client_step(data)
        self.server_step(data)
        self.flush(data)

    # ---------------------------------------------------------------- invariants
    @invariant()
    def quiet_endpoints_agree(self) -> None:
        if self.c2s or self.s2c:
            return
        assert self.pings_seen == {"c": self.pings["s"], "s": self.pings["c"]}
        assert self.messages_seen == self.messages
        for serial in self.kind:
            c = self.client.stream_info(serial)
            s = self.server.stream_info(serial)
            pair_state = (c.state if c else "CLOSED", s.state if s else "CLOSED")
            if self.kind[serial].startswith("v3") and pair_state == ("OPEN", "IDLE"):
                continue
            assert pair_state in QUIET, (serial, self.kind[serial], pair_state)
            if c and s and c.state == s.state:
                # V1: both count the same unanswered stream calls (after an abort the
                # client still lists the calls the server cancelled, §7.2.5)
                assert c.outstanding == s.outstanding

    @invariant()
    def buffers_are_bounded(self) -> None:
        # nothing but the frames in flight is buffered (the largest chunk is 140000 bytes)
        assert self.client.buffered <= len(self.s2c) + 28 + 140000
        assert self.server.buffered <= len(self.c2s) + 28 + 140000
        assert not self.client.reading_paused


TestPair = Pair.TestCase
TestPair.settings = settings(
    max_examples=300,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

"""Exchanges: one call and its stream, and the table of those a connection knows.

An :class:`Exchange` (spec.md §2.3) is identified by its primary call's serial and walks
its kind's state table (:mod:`._state`, spec.md §9): :meth:`Exchange.step` applies a
message and returns the action.  :class:`Exchanges` owns every exchange of one
connection: the V1 stream-call serials that point at them (§7.2), the bounded memory of
``DRAINING`` serials whose late frames are dropped (§10.2) and the side effects of an
exchange ending (its outstanding V1 calls and its flow-control count are released).
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from collections.abc import ItemsView
from typing import Any, NamedTuple

from xdrstream.protocol._bodies import V1_WINDOW, V1Op
from xdrstream.protocol._state import TABLES, Action, Kind, Role, State, Table
from xdrstream.protocol._wire import remote
from xdrstream.protocol.errors import LocalProtocolError
from xdrstream.protocol.events import ExchangeEvent, StreamData
from xdrstream.protocol.flow import FlowControl
from xdrstream.protocol.framing import Frame, MessageStatus, MessageType
from xdrstream.protocol.programs import Procedure, StreamMode, Variant

_HEADER = struct.Struct(">IIiiIi")  # the six header words (§3.2)
_STREAM = int(MessageType.STREAM)
_CONTINUE = int(MessageStatus.CONTINUE)
_U32 = 0xFFFFFFFF


class V1Call(NamedTuple):
    """An outstanding V1 stream call (§7.2.1): its own serial, op and READ size."""

    serial: int
    op: int
    max_bytes: int


class Exchange:
    """One call (and its stream, if any) as the engine sees it."""

    __slots__ = (
        "data_frame",
        "data_head",
        "data_size",
        "held",
        "held_bytes",
        "kind",
        "known",
        "mode",
        "pending",
        "procedure",
        "receives_data",
        "sends_data",
        "serial",
        "sparse",
        "state",
        "table",
        "unconsumed",
        "words",
    )

    def __init__(
        self,
        serial: int,
        words: tuple[int, int, int],
        procedure: Procedure | None,
        role: Role,
        known: bool = True,
        args: Any = None,
    ) -> None:
        self.serial = serial
        self.words = words  # the primary call's (prog, vers, proc)
        self.procedure = procedure
        self.known = known
        self.mode: StreamMode | None = procedure.stream if procedure is not None else None
        self.kind = Kind.of(self.mode, known)
        # holes allowed: decided per call, from its arguments (§7.1.3)
        self.sparse = self.mode is not None and self.mode.sparse_for(args)
        self.table: Table = TABLES[(role, self.kind)]
        self.state = State.IDLE
        # Fast data path (V2/V3): whether the current state lets data in / out and stay in
        # that state (the table's row, precomputed at each state change), and the 24
        # header bytes of this stream's STREAM/CONTINUE frames.
        self.receives_data = False
        self.sends_data = False
        self.data_head = b""
        # the length word + header of the last data frame sent, and its payload size: a
        # stream's chunks are mostly of one size, so most frames reuse these 28 bytes
        self.data_frame = b""
        self.data_size = -1  # (none yet: no size matches)
        self.pending: deque[V1Call] = deque()  # V1: outstanding stream calls, oldest first
        self.unconsumed = 0  # bytes delivered, not yet reported consumed (§8.2)
        # stream events received before the reply (action "hold", §7.3.2), with their frames
        self.held: list[tuple[ExchangeEvent, Frame]] = []
        self.held_bytes = 0

    # ------------------------------------------------------------------ facts
    @property
    def variant(self) -> Variant | None:
        return None if self.mode is None else self.mode.variant

    @property
    def v1(self) -> bool:
        return self.mode is not None and self.mode.variant is Variant.V1

    @property
    def window(self) -> int:
        """V1: stream calls the client may still send (0 for other variants)."""
        return max(0, V1_WINDOW - len(self.pending)) if self.v1 else 0

    @property
    def read_max(self) -> int:
        """V1 download, server: max_bytes of the oldest outstanding READ (0 if none)."""
        if self.v1 and self.pending and self.pending[0].op == V1Op.READ:
            return self.pending[0].max_bytes
        return 0

    def allows(self, message: str) -> bool:
        return (self.state, message) in self.table

    def refusal(self, message: str) -> str:
        return f"{message} is not allowed in state {self.state} of a {self.kind} exchange"

    def check_send(self, message: str) -> None:
        """LocalProtocolError unless this role may send ``message`` now."""
        if (self.state, message) not in self.table:
            raise LocalProtocolError(self.refusal(message), section=self.kind.section)

    def __repr__(self) -> str:
        return f"<Exchange {self.serial} {self.kind} {self.state}>"


class Exchanges:
    """The exchanges of one connection, by primary serial, and what their ends release."""

    def __init__(self, role: Role, flow: FlowControl, max_draining: int, max_held: int) -> None:
        self.role = role
        self.flow = flow
        self.max_draining = max_draining
        self.max_held = max_held  # bytes of stream data one exchange may hold (§7.3.2)
        self.by_serial: dict[int, Exchange] = {}
        self.v1_calls: dict[int, Exchange] = {}  # V1 stream-call serial -> exchange
        self._draining: OrderedDict[int, None] = OrderedDict()
        self._next_serial = 0

    def get(self, serial: int) -> Exchange | None:
        return self.by_serial.get(serial)

    def items(self) -> ItemsView[int, Exchange]:
        return self.by_serial.items()

    def __len__(self) -> int:
        return len(self.by_serial)

    def in_use(self, serial: int) -> bool:
        return serial in self.by_serial or serial in self.v1_calls

    def add(self, ex: Exchange) -> None:
        self.by_serial[ex.serial] = ex

    def next_serial(self) -> int:
        """A serial for the next call (§4.3): increments by one, skipping serials in use."""
        for _ in range(len(self.by_serial) + len(self.v1_calls) + 1):
            serial = self._next_serial
            self._next_serial = (serial + 1) & _U32
            if not self.in_use(serial):
                return serial
        raise AssertionError("unreachable: more serials in use than tried")

    def free_draining(self, serial: int, keep: Exchange | None = None) -> bool:
        """Forget a DRAINING exchange whose serial the peer reuses (§4.3.2): True if
        ``serial`` was one (and is not ``keep``)."""
        old = self.by_serial.get(serial)
        if old is not None and old.state is State.DRAINING and old is not keep:
            self.set_state(old, State.CLOSED)
            return True
        return False

    def for_stream(self, frame: Frame, serial: int, section: str) -> Exchange:
        """The exchange a received stream frame (or V1 stream call) belongs to."""
        ex = self.by_serial.get(serial)
        if ex is None:
            raise remote(frame, f"no open stream with serial {serial}", section)
        h = frame.header
        if (ex.mode is None and ex.known) or (h.prog, h.vers, h.proc) != ex.words:
            raise remote(frame, f"does not match the procedure of stream {serial}", "§7.1.1")
        return ex

    # ------------------------------------------------------------------ transitions
    def sent(self, ex: Exchange, message: str) -> None:
        """This role sent ``message`` (checked with :meth:`Exchange.check_send`)."""
        transition = ex.table.get((ex.state, message))
        if transition is None:
            raise LocalProtocolError(ex.refusal(message), section=ex.kind.section)
        self.set_state(ex, transition.next)

    def received(self, ex: Exchange, message: str, frame: Frame) -> Action:
        """The peer sent ``message`` in ``frame``: the table's action (a pair missing from
        the table is the peer's error)."""
        transition = ex.table.get((ex.state, message))
        if transition is None:
            raise remote(frame, ex.refusal(message), ex.kind.section)
        self.set_state(ex, transition.next)
        return transition.action

    def deliver(self, ex: Exchange, event: ExchangeEvent, frame: Frame) -> ExchangeEvent | None:
        """``event`` received: apply it; the event to deliver, or None if dropped."""
        action = self.received(ex, "<" + type(event).__name__, frame)
        if action is Action.DROP:
            return None
        if action is Action.HOLD:
            if type(event) is StreamData:
                ex.held_bytes += len(event.data)
                if ex.held_bytes > self.max_held:
                    raise remote(
                        frame,
                        f"more than {self.max_held} bytes of stream data before the reply",
                        "§7.3.2",
                    )
            ex.held.append((event, frame))
            return None
        if type(event) is StreamData and ex.state is not State.CLOSED:
            self.flow.delivered(ex, len(event.data))
        return event

    def set_state(self, ex: Exchange, state: State) -> None:
        if ex.state is not state and ex.mode is not None and ex.mode.variant is not Variant.V1:
            table = ex.table
            ex.receives_data = table.get((state, "<StreamData")) == (state, Action.DELIVER)
            ex.sends_data = table.get((state, ">StreamData")) == (state, Action.SEND)
            if ex.sends_data and not ex.data_head:
                prog, vers, proc = ex.words
                ex.data_head = _HEADER.pack(prog, vers, proc, _STREAM, ex.serial, _CONTINUE)
        ex.state = state
        if state is State.CLOSED or state is State.DRAINING:
            self.cancel_pending(ex)
            self.flow.release(ex)
            ex.held.clear()  # the call failed: what came early is discarded (§7.3.2)
        if state is State.CLOSED:
            self.by_serial.pop(ex.serial, None)
            self._draining.pop(ex.serial, None)
        elif state is State.DRAINING:
            self._draining[ex.serial] = None
            while len(self._draining) > self.max_draining:
                old, _ = self._draining.popitem(last=False)
                self.by_serial.pop(old, None)

    def take_held(self, ex: Exchange) -> list[tuple[ExchangeEvent, Frame]]:
        """The events ``ex`` held before its reply, oldest first, to be applied now."""
        held, ex.held, ex.held_bytes = ex.held, [], 0
        return held

    # ------------------------------------------------------------------ V1 calls
    def add_pending(self, ex: Exchange, call: V1Call) -> None:
        ex.pending.append(call)
        self.v1_calls[call.serial] = ex

    def answer_oldest(self, ex: Exchange) -> V1Call:
        """The oldest outstanding V1 call of ``ex``, now answered."""
        call = ex.pending.popleft()
        self.v1_calls.pop(call.serial, None)
        return call

    def cancel_pending(self, ex: Exchange) -> None:
        """Outstanding V1 calls get no answer any more (§7.2.3, §7.2.5)."""
        for call in ex.pending:
            self.v1_calls.pop(call.serial, None)
        ex.pending.clear()

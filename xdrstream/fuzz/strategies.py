"""Hypothesis strategies derived from compiled schemas: valid values, frames and sessions.

Values::

    from xdrstream.fuzz.strategies import strategy_for, register
    strategy_for(schema["xs_restore_args"])      # a generated class ...
    strategy_for(schema.codec("name_t"))         # ... or any Codec (typedefs, built-ins)
    strategy_for("xs_restore_args", schema)      # ... or a type name and its schema
    register("xs_restore_args", my_strategy)     # override a type (class, codec or name)

Every value packs with the type's codec and round-trips: integers within their range,
enum members, every union arm (``default`` too, with a discriminant no ``case`` names),
strings of valid UTF-8 within their byte bound (without U+0000 unless ``Budget(nul=True)``:
C peers cut strings there), opaque data and arrays within their bounds.
A :class:`Budget` keeps values small: recursion through recursive structs/unions stops at
``depth`` (then the smallest encoding is built: ``None``, empty arrays, the cheapest arm),
collections hold at most ``items`` elements, strings/opaque at most ``bytes`` bytes (fixed
sizes are always honoured; big fixed sizes repeat a short drawn pattern).

Protocol (spec.md §4, §7, §9)::

    sessions(schema, ...)   # whole client/server conversations: Session objects
    frames(schema, ...)     # single CALL frames a fresh server Connection accepts

A session is produced by a random walk over two real :class:`Connection` objects joined by
two in-flight queues: at each step the walk either lets one side send an event allowed in
its exchange's state (the tables of spec.md §9: calls with drawn arguments, replies and
error replies, stream data, holes, end, finish, abort, read, ack, confirm, keepalives) or
delivers the oldest in-flight frame of one direction. Since deliveries lag behind sends,
the sessions include the late frames of §10.2 (data after a stream error, answers after an
abort). Every frame is then accepted by the receiving engine; the generator asserts it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from xdrstream.codec import Schema
from xdrstream.codec import model as m
from xdrstream.fuzz.values import discriminant_value, minimal_value
from xdrstream.protocol import NEED_DATA, Connection, LocalProtocolError, Role
from xdrstream.protocol.bodies import V1_CHUNK_MAX
from xdrstream.protocol.events import (
    Call,
    ErrorReply,
    Event,
    KeepalivePing,
    KeepalivePong,
    RemoteError,
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
from xdrstream.protocol.states import TABLES, Kind, State

__all__ = [
    "Budget",
    "Session",
    "Step",
    "frames",
    "minimal_value",
    "register",
    "remote_errors",
    "replay",
    "sessions",
    "strategy_for",
    "unregister",
]

_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class Budget:
    """Size limits of generated values (fixed sizes from the schema always win)."""

    depth: int = 3  # levels of recursion through recursive structs/unions
    items: int = 4  # elements of a variable-length array
    bytes: int = 32  # bytes of a variable-length opaque or string
    fixed_pattern: int = 64  # fixed opaque/arrays above this repeat a drawn pattern
    nul: bool = False  # strings may hold U+0000 (C peers cut a string there: off by default)


DEFAULT_BUDGET = Budget()
_NO_NUL = "\x00"

# -- overrides -------------------------------------------------------------------------------

_overrides: dict[Hashable, st.SearchStrategy[Any]] = {}
_generation = itertools.count()
_current_generation = next(_generation)


def _override_key(type_or_name: Any) -> Hashable:
    if isinstance(type_or_name, str):
        return type_or_name
    schema, name = _owner(type_or_name)
    return (id(schema), name)


def register(type_or_name: Any, strategy: st.SearchStrategy[Any]) -> None:
    """Use ``strategy`` for a type wherever it occurs (also inside other types).

    ``type_or_name``: a generated class or a Codec (that schema only), or a type name
    (``"xs_restore_args"``, a typedef, an inline ``"outer.field"``, or a built-in scalar such
    as ``"int"``) applying to every schema. A typedef's override applies where the typedef
    name is used, not to its base type (``typedef int small_t``: ``"small_t"`` leaves ``int``
    alone); a built-in's reaches the typedefs of it that have none of their own. A typedef
    naming a struct/union/enum shares that type's class, and so its override.
    """
    global _current_generation
    _overrides[_override_key(type_or_name)] = strategy
    _current_generation = next(_generation)


def unregister(type_or_name: Any) -> None:
    """Drop an override set with :func:`register` (no error if there is none)."""
    global _current_generation
    _overrides.pop(_override_key(type_or_name), None)
    _current_generation = next(_generation)


# -- resolving what the caller passed --------------------------------------------------------


def _owner(cls_or_codec: Any) -> tuple[Schema, str]:
    """Schema and ``.x`` name of a generated class or a :class:`Codec`."""
    schema = getattr(cls_or_codec, "__xdr_schema__", None)
    name = getattr(cls_or_codec, "__xdr_name__", None)
    if not isinstance(schema, Schema) or not isinstance(name, str):
        raise TypeError(f"{cls_or_codec!r} is not a type compiled by xdrstream.codec")
    return schema, name


def _resolve(schema_type: Any, schema: Schema | None) -> tuple[Schema, str]:
    if isinstance(schema_type, str):
        if schema is None:
            raise TypeError("a type name needs its schema: strategy_for(name, schema)")
        schema.xtype(schema_type)  # KeyError for unknown names
        return schema, schema_type
    return _owner(schema_type)


class _Builder:
    """Strategies for the model types of one schema, memoised per (type, depth)."""

    def __init__(self, schema: Schema, budget: Budget) -> None:
        self.schema = schema
        self.budget = budget
        self.classes = schema.interpreter().classes
        self.memo: dict[tuple[int, int], st.SearchStrategy[Any]] = {}
        self.overrides: dict[int, st.SearchStrategy[Any]] = {}
        model = schema.model
        # Most general first: a built-in scalar's name reaches its typedefs too (each has
        # its own object), then a type name, then an override for this schema's type.
        scalars = [t for t in m.all_types(model) if isinstance(t, (m.Prim, m.Bool))]
        for key, strategy in _overrides.items():
            if isinstance(key, str) and key not in model.types:
                for t in scalars:
                    if t.xname == key:
                        self.overrides[id(t)] = strategy
                if key in m.PRIMS:
                    self.overrides[id(m.PRIMS[key])] = strategy
        for key, strategy in _overrides.items():
            if isinstance(key, str) and key in model.types:
                self.overrides[id(model.types[key])] = strategy
        for key, strategy in _overrides.items():
            if isinstance(key, tuple) and key[0] == id(schema):
                self.overrides[id(schema.xtype(key[1]))] = strategy

    def of(self, t: m.XType, depth: int = 0) -> st.SearchStrategy[Any]:
        override = self.overrides.get(id(t))
        if override is not None:
            return override
        if isinstance(t, (m.Struct, m.Union_)) and t.recursive:
            depth += 1
        key = (id(t), min(depth, self.budget.depth + 1))
        cached = self.memo.get(key)
        if cached is None:
            # Deferred: recursive types refer to their own (memoised) strategy.
            cached = st.deferred(lambda: self.build(t, depth))
            self.memo[key] = cached
        return cached

    def build(self, t: m.XType, depth: int) -> st.SearchStrategy[Any]:
        b = self.budget
        exhausted = depth > b.depth
        if isinstance(t, m.Prim):
            if t.kind == "float":
                return st.floats(width=32, allow_nan=False)
            if t.kind == "double":
                return st.floats(allow_nan=False)
            return st.integers(t.lo, t.hi)
        if isinstance(t, m.Bool):
            return st.booleans()
        if isinstance(t, m.Enum):
            return st.sampled_from(list(self.classes[id(t)]))
        if isinstance(t, m.String):
            limit = min(t.size, b.bytes)
            alphabet = st.characters(exclude_categories=["Cs"], exclude_characters=_NO_NUL)
            text = st.text(max_size=limit) if b.nul else st.text(alphabet, max_size=limit)
            return text.map(lambda s: _truncate_utf8(s, limit))
        if isinstance(t, m.Opaque):
            if not t.fixed:
                return st.binary(max_size=min(t.size, b.bytes))
            if t.size <= b.fixed_pattern:
                return st.binary(min_size=t.size, max_size=t.size)
            n = t.size
            return st.binary(min_size=1, max_size=8).map(lambda p: (p * (n // len(p) + 1))[:n])
        if isinstance(t, m.Optional):
            if exhausted and self.recursive(t.element):
                return st.none()
            return st.none() | self.of(t.element, depth)
        if isinstance(t, m.Array):
            element = self.of(t.element, depth)
            if t.fixed:
                n = t.size
                if n <= b.fixed_pattern:
                    return st.lists(element, min_size=n, max_size=n)
                return st.lists(element, min_size=1, max_size=4).map(
                    lambda p: (p * (n // len(p) + 1))[:n]
                )
            if exhausted and self.recursive(t.element):
                return st.just([])
            return st.lists(element, max_size=min(t.size, b.items))
        if isinstance(t, m.Struct):
            if exhausted:
                return st.just(minimal_value(self.schema, t))
            cls = self.classes[id(t)]
            fields = [self.of(f.type, depth) for f in t.fields]
            return st.tuples(*fields).map(lambda values: cls(*values))
        return self.union(t, depth, exhausted)

    def recursive(self, t: m.XType) -> bool:
        return isinstance(t, (m.Struct, m.Union_)) and t.recursive

    def discriminant(self, t: m.Union_, n: int) -> Any:
        return discriminant_value(self.classes, t, n)

    def union(self, t: m.Union_, depth: int, exhausted: bool) -> st.SearchStrategy[Any]:
        if exhausted:
            return st.just(minimal_value(self.schema, t))
        cls = self.classes[id(t)]
        options: list[st.SearchStrategy[Any]] = []
        for arm in t.arms:
            discs = st.sampled_from(arm.labels).map(lambda n: self.discriminant(t, n))
            value = st.none() if arm.type is None else self.of(arm.type, depth)
            options.append(st.tuples(discs, value).map(lambda dv: cls(*dv)))
        others = _default_labels(t)
        if t.default is not None and others is not None:
            value = st.none() if t.default.type is None else self.of(t.default.type, depth)
            discs = others.map(lambda n: self.discriminant(t, n))
            options.append(st.tuples(discs, value).map(lambda dv: cls(*dv)))
        return st.one_of(options)


def _default_labels(t: m.Union_) -> st.SearchStrategy[int] | None:
    """Discriminant values that select the default arm (None if there are none)."""
    labels = {n for arm in t.arms for n in arm.labels}
    dtype = t.discriminant_type
    if isinstance(dtype, m.Enum):
        others = sorted(n for n in set(dtype.members.values()) if n not in labels)
        return st.sampled_from(others) if others else None
    if isinstance(dtype, m.Bool):
        rest = [n for n in (0, 1) if n not in labels]
        return st.sampled_from(rest) if rest else None
    assert isinstance(dtype, m.Prim)
    lo, hi = dtype.lo, dtype.hi
    return st.integers(lo, hi).filter(lambda n: n not in labels)


def _truncate_utf8(text: str, limit: int) -> str:
    """Longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


_builders: dict[tuple[int, Budget], tuple[int, Schema, _Builder]] = {}


def _builder(schema: Schema, budget: Budget) -> _Builder:
    key = (id(schema), budget)
    entry = _builders.get(key)
    if entry is None or entry[0] != _current_generation or entry[1] is not schema:
        entry = (_current_generation, schema, _Builder(schema, budget))
        _builders[key] = entry
    return entry[2]


def strategy_for(
    schema_type: Any, schema: Schema | None = None, *, budget: Budget = DEFAULT_BUDGET
) -> st.SearchStrategy[Any]:
    """Valid values of a compiled type: a generated class, a :class:`Codec`, or a type name
    together with its ``schema``. Overrides from :func:`register` apply."""
    owner, name = _resolve(schema_type, schema)
    return _builder(owner, budget).of(owner.xtype(name))


# -- protocol: error bodies, frames, sessions ------------------------------------------------


def remote_errors(budget: Budget = DEFAULT_BUDGET) -> st.SearchStrategy[RemoteError]:
    """Error bodies of spec.md §4.5 (every optional part present or not)."""
    ints = st.integers(*_INT32)
    text = st.text(max_size=budget.bytes)
    opt = st.none() | text
    uuid = st.binary(min_size=16, max_size=16)
    return st.builds(
        RemoteError,
        code=ints,
        domain=ints,
        message=opt,
        level=st.sampled_from([1, 2]) | ints,
        str1=opt,
        str2=opt,
        str3=opt,
        int1=ints,
        int2=ints,
        dom=st.none() | st.tuples(text, uuid, ints),
        net=st.none() | st.tuples(text, uuid),
    )


@dataclass(frozen=True)
class Step:
    """One step of a session: ``role`` sends ``event`` as ``data`` (``action == "send"``),
    or ``data`` (one earlier frame) arrives at ``role`` (``action == "deliver"``)."""

    action: str  # "send" | "deliver"
    role: Role
    data: bytes
    event: Event | None = None


@dataclass(frozen=True)
class Session:
    """A valid conversation. ``steps`` in the order they happened; every sent frame is
    delivered by the end."""

    steps: tuple[Step, ...]

    def sent(self, role: Role) -> list[bytes]:
        """The frames ``role`` sent, in order (what its peer reads from the wire)."""
        return [s.data for s in self.steps if s.action == "send" and s.role is role]

    def wire(self, role: Role) -> bytes:
        """All bytes ``role`` sent, concatenated."""
        return b"".join(self.sent(role))

    @property
    def to_server(self) -> bytes:
        return self.wire(Role.CLIENT)

    @property
    def to_client(self) -> bytes:
        return self.wire(Role.SERVER)


@dataclass
class _Proc:
    program: int
    version: int
    number: int
    schema: Schema
    arg: str | None
    result: str | None


def _procedures(schemas: Sequence[Schema], exclude: Iterable[int] = ()) -> list[_Proc]:
    skip = set(exclude)
    out: list[_Proc] = []
    for schema in schemas:
        for prog in schema.programs.values():
            if prog.number in skip:
                continue
            for vnum, vers in prog.versions.items():
                for pnum, proc in vers.procedures.items():
                    out.append(
                        _Proc(prog.number, vnum, pnum, schema, proc.arg_type, proc.result_type)
                    )
    return out


def _body(schema: Schema, name: str | None, budget: Budget) -> st.SearchStrategy[Any]:
    if name is None:
        return st.none()
    return strategy_for(schema.codec(name), budget=budget)


_KEEPALIVE_PROGRAM = 0x6B656570


def frames(
    *schemas: Schema, budget: Budget = DEFAULT_BUDGET
) -> st.SearchStrategy[tuple[Call, bytes]]:
    """A CALL of any procedure of ``schemas`` with valid arguments: ``(event, frame)``.
    A fresh server :class:`Connection` registered with the same schemas accepts the frame
    and returns the event."""
    procs = _procedures(schemas, exclude=[_KEEPALIVE_PROGRAM])
    if not procs:
        raise ValueError("the schemas declare no procedures")

    @st.composite
    def build(draw: st.DrawFn) -> tuple[Call, bytes]:
        proc = draw(st.sampled_from(procs))
        serial = draw(st.integers(0, 2**32 - 1))
        args = draw(_body(proc.schema, proc.arg, budget))
        client = Connection(Role.CLIENT, list(schemas))
        event = Call(serial, proc.program, proc.version, proc.number, args)
        return event, client.send(event)

    return build()


@dataclass
class _Sim:
    """The random walk of :func:`sessions`."""

    draw: st.DrawFn
    schemas: Sequence[Schema]
    procs: list[_Proc]
    budget: Budget
    client: Connection
    server: Connection
    steps: list[Step] = field(default_factory=list)
    in_flight: dict[Role, deque[bytes]] = field(default_factory=dict)
    client_serials: list[int] = field(default_factory=list)
    server_serials: list[int] = field(default_factory=list)
    calls: dict[int, _Proc] = field(default_factory=dict)

    def conn(self, role: Role) -> Connection:
        return self.client if role is Role.CLIENT else self.server

    def send(self, role: Role, event: Event) -> bool:
        try:
            data = self.conn(role).send(event)
        except LocalProtocolError:
            return False  # a guard of §7 (window, reply order...): the state is unchanged
        self.steps.append(Step("send", role, data, event))
        self.in_flight[role].append(data)
        return True

    def deliver(self, sender: Role) -> None:
        data = self.in_flight[sender].popleft()
        receiver = Role.SERVER if sender is Role.CLIENT else Role.CLIENT
        conn = self.conn(receiver)
        self.steps.append(Step("deliver", receiver, data))
        conn.receive_data(data)
        while True:
            event = conn.next_event()  # a RemoteProtocolError here is a bug in the engine
            if event is NEED_DATA:
                return
            if receiver is Role.SERVER and isinstance(event, Call):
                self.server_serials.append(event.serial)

    def live(self, role: Role) -> list[tuple[int, State, Kind, bool, int]]:
        """(serial, state, kind, sparse, read_max) of the exchanges ``role`` knows."""
        serials = self.client_serials if role is Role.CLIENT else self.server_serials
        out = []
        for serial in list(serials):
            info = self.conn(role).stream_info(serial)
            if info is None:
                serials.remove(serial)
                continue
            out.append((serial, info.state, info.kind, info.sparse, info.read_max))
        return out

    def data(self, limit: int) -> bytes:
        return self.draw(st.binary(min_size=1, max_size=max(1, min(limit, self.budget.bytes))))

    def hole(self, serial: int) -> StreamHole:
        return StreamHole(serial, self.draw(st.integers(0, 2**63 - 1)))

    def event_for(self, role: Role, name: str, serial: int, read_max: int) -> Event | None:
        proc = self.calls.get(serial)
        if name == "Reply":
            if proc is None:
                return None
            return Reply(serial, self.draw(_body(proc.schema, proc.result, self.budget)))
        if name == "ErrorReply":
            return ErrorReply(serial, self.draw(remote_errors(self.budget)))
        if name == "StreamError":
            return StreamError(serial, self.draw(remote_errors(self.budget)))
        if name == "StreamData":
            limit = read_max if role is Role.SERVER and read_max else V1_CHUNK_MAX
            return StreamData(serial, self.data(limit))
        if name == "StreamHole":
            return self.hole(serial)
        if name == "StreamRead":
            return StreamRead(serial, self.draw(st.integers(1, V1_CHUNK_MAX)))
        simple: dict[str, Callable[[int], Event]] = {
            "StreamEnd": StreamEnd,
            "StreamFinish": StreamFinish,
            "StreamAbort": StreamAbort,
            "StreamConfirm": StreamConfirm,
            "StreamAck": StreamAck,
        }
        return simple[name](serial)

    def options(self, calls_left: int) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = []
        for role in (Role.CLIENT, Role.SERVER):
            if self.in_flight[role]:
                opts.append(("deliver", role))
            for serial, state, kind, sparse, read_max in self.live(role):
                for s, message in TABLES[(role, kind)]:
                    if s != state or not message.startswith(">") or message == ">Call":
                        continue
                    if message == ">StreamHole" and not sparse:
                        continue
                    opts.append(("event", (role, message[1:], serial, read_max)))
        if calls_left > 0:
            opts.append(("call", None))
        opts.append(("keepalive", None))
        return opts

    def step(self, calls_left: int) -> bool:
        """One action; returns True if it was a new call."""
        kind, arg = self.draw(st.sampled_from(self.options(calls_left)))
        if kind == "deliver":
            self.deliver(arg)
        elif kind == "event":
            role, name, serial, read_max = arg
            event = self.event_for(role, name, serial, read_max)
            if event is not None:
                self.send(role, event)
        elif kind == "keepalive":
            role = self.draw(st.sampled_from([Role.CLIENT, Role.SERVER]))
            ping: bool = self.draw(st.booleans())
            self.send(role, KeepalivePing() if ping else KeepalivePong())
        else:
            proc = self.draw(st.sampled_from(self.procs))
            serial = self.client.next_serial()
            args = self.draw(_body(proc.schema, proc.arg, self.budget))
            if self.send(Role.CLIENT, Call(serial, proc.program, proc.version, proc.number, args)):
                self.client_serials.append(serial)
                self.calls[serial] = proc
                return True
        return False


def sessions(
    *schemas: Schema,
    max_steps: int = 30,
    max_calls: int = 4,
    budget: Budget = DEFAULT_BUDGET,
    procedures: Iterable[tuple[int, int, int]] | None = None,
) -> st.SearchStrategy[Session]:
    """Valid conversations over the programs of ``schemas`` (see the module docstring).

    ``procedures`` limits the calls to these ``(program, version, procedure)`` triples.
    """
    procs = _procedures(schemas, exclude=[_KEEPALIVE_PROGRAM])
    if procedures is not None:
        wanted = set(procedures)
        procs = [p for p in procs if (p.program, p.version, p.number) in wanted]
    if not procs:
        raise ValueError("no procedures to call")

    @st.composite
    def build(draw: st.DrawFn) -> Session:
        sim = _Sim(
            draw,
            schemas,
            procs,
            budget,
            Connection(Role.CLIENT, list(schemas)),
            Connection(Role.SERVER, list(schemas)),
        )
        sim.in_flight = {Role.CLIENT: deque(), Role.SERVER: deque()}
        calls_left = max_calls
        for _ in range(draw(st.integers(1, max_steps))):
            if sim.step(calls_left):
                calls_left -= 1
        for role in (Role.CLIENT, Role.SERVER):
            while sim.in_flight[role]:
                sim.deliver(role)
        return Session(tuple(sim.steps))

    return build()


def replay(session: Session, role: Role, schemas: Sequence[Schema]) -> list[Event]:
    """Play ``role``'s side of ``session`` on a fresh :class:`Connection`: its sends must
    give the recorded bytes and every delivered frame must be accepted. Returns the events
    received. Raises :class:`AssertionError` on a mismatch, or the engine's ProtocolError."""
    conn = Connection(role, list(schemas))
    received: list[Event] = []
    for step in session.steps:
        if step.role is not role:
            continue
        if step.action == "send":
            assert step.event is not None
            if isinstance(step.event, Call):
                # The recorded serial came from next_serial(); keep the counter in step
                # since V1 stream calls take their serials from it too.
                for _ in range(1 << 16):
                    if conn.next_serial() == step.event.serial:
                        break
            data = conn.send(step.event)
            assert data == step.data, f"{step.event!r} encoded differently on replay"
            continue
        conn.receive_data(step.data)
        while (event := conn.next_event()) is not NEED_DATA:
            received.append(event)
    assert conn.buffered == 0
    return received

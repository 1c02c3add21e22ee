"""xdrstream.fuzz.strategies: valid values of every type of every shipped schema, overrides,
single frames and whole sessions that real engines accept (issue 6)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from fuzz_paths import SCHEMA_FILES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdrstream.codec import Schema, compile_schema, load_schema
from xdrstream.codec import model as m
from xdrstream.fuzz import strategies
from xdrstream.fuzz.strategies import (
    Budget,
    frames,
    minimal_value,
    register,
    replay,
    sessions,
    strategy_for,
    unregister,
)
from xdrstream.protocol import NEED_DATA, Connection, Role, schemas
from xdrstream.protocol.events import Call, ConnectionClosed, StreamData, StreamHole

QUICK = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RESTORE = schemas.load("restore")
LIBVIRT = load_schema(schemas.path("libvirt_remote"))


def _nan_free(value: Any) -> bool:
    return not (isinstance(value, float) and math.isnan(value))


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: Path(p).name)
@QUICK
@given(data=st.data())
def test_every_value_of_every_type_packs_and_round_trips(path: Path, data: Any) -> None:
    schema = load_schema(path)
    assert set(schema.model.types) == set(schema)
    for name in sorted(schema.model.types):
        codec = schema.codec(name)
        value = data.draw(strategy_for(codec), label=name)
        encoded = codec.pack(value)
        assert len(encoded) % 4 == 0
        assert codec.unpack(encoded) == value, name
        # The same through the generated class (structs, unions, enums) and by name.
        assert schema[name].pack(value) == encoded
        assert strategy_for(schema[name]) is strategy_for(name, schema)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: Path(p).name)
def test_minimal_values_encode_at_the_model_minimum(path: Path) -> None:
    schema = load_schema(path)
    for name, t in schema.model.types.items():
        encoded = schema.codec(name).pack(minimal_value(schema, t))
        assert len(encoded) == schema.model.min_size[id(t)], name


BOUNDS = compile_schema(
    """
    enum e { A = -7, B = 3, C = 1000 };
    struct node { int v; node *next; };
    struct tree { string label<3>; tree kids<2>; };
    union u switch (e d) { case A: int i; case B: void; default: opaque rest<2>; };
    union w switch (int k) { case 1: hyper h; default: void; };
    union nb switch (bool flag) { case TRUE: string s<1>; default: void; };
    struct big { opaque pad[100000]; int many[5000]; };
    struct s { string text<5>; opaque blob<3>; int items<2>; unsigned hyper uh; };
    struct holder { e color; s inner; };
    """,
    "bounds.x",
)


def _depth(node: Any) -> int:
    n = 0
    while node is not None:
        n, node = n + 1, node.next
    return n


@QUICK
@given(
    node=strategy_for("node", BOUNDS),
    tree=strategy_for("tree", BOUNDS),
    u=strategy_for("u", BOUNDS),
    w=strategy_for("w", BOUNDS),
    nb=strategy_for("nb", BOUNDS),
    s=strategy_for("s", BOUNDS),
)
def test_values_respect_bounds_arms_and_the_recursion_budget(
    node: Any, tree: Any, u: Any, w: Any, nb: Any, s: Any
) -> None:
    budget = strategies.DEFAULT_BUDGET
    assert _depth(node) <= budget.depth + 1
    assert len(s.text.encode()) <= 5 and len(s.blob) <= 3 and len(s.items) <= 2
    assert 0 <= s.uh < 2**64
    assert int(u.d) in (-7, 3, 1000)
    if int(u.d) == 1000:
        assert isinstance(u.value, bytes) and len(u.value) <= 2
    if w.k != 1:
        assert w.value is None
    assert len(tree.label.encode()) <= 3
    for cls_name, value in [("node", node), ("tree", tree), ("u", u), ("w", w), ("nb", nb)]:
        assert BOUNDS[cls_name].unpack(BOUNDS[cls_name].pack(value)) == value


def test_every_union_arm_including_default_is_generated() -> None:
    seen_u: set[int] = set()
    seen_w: set[bool] = set()

    @settings(max_examples=200, deadline=None)
    @given(strategy_for("u", BOUNDS), strategy_for("w", BOUNDS))
    def collect(u: Any, w: Any) -> None:
        seen_u.add(int(u.d))
        seen_w.add(w.k == 1)

    collect()
    assert seen_u == {-7, 3, 1000}
    assert seen_w == {True, False}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy_for("big", BOUNDS))
def test_big_fixed_sizes_are_honoured(big: Any) -> None:
    assert len(big.pad) == 100000 and len(big.many) == 5000
    assert BOUNDS["big"].unpack(BOUNDS["big"].pack(big)) == big


def test_budget_changes_sizes() -> None:
    tiny = Budget(depth=0, items=0, bytes=0)

    @settings(max_examples=30, deadline=None)
    @given(strategy_for("s", BOUNDS, budget=tiny), strategy_for("node", BOUNDS, budget=tiny))
    def check(s: Any, node: Any) -> None:
        assert s.text == "" and s.blob == b"" and s.items == []
        assert _depth(node) <= 1

    check()


def test_registered_overrides_apply_inside_other_types() -> None:
    register("e", st.just(BOUNDS["e"].C))
    register(BOUNDS.codec("s"), st.just(BOUNDS["s"](text="x", blob=b"", items=[], uh=7)))
    try:

        @settings(max_examples=20, deadline=None)
        @given(strategy_for("holder", BOUNDS))
        def check(holder: Any) -> None:
            assert holder.color is BOUNDS["e"].C
            assert holder.inner.uh == 7

        check()
        register("int", st.just(42))

        @settings(max_examples=10, deadline=None)
        @given(strategy_for("node", BOUNDS))
        def ints(node: Any) -> None:
            assert node.v == 42

        ints()
    finally:
        for key in ("e", BOUNDS.codec("s"), "int"):
            unregister(key)

    @settings(max_examples=50, deadline=None)
    @given(strategy_for("u", BOUNDS))
    def back(u: Any) -> None:
        seen.add(int(u.d))

    seen: set[int] = set()
    back()
    assert len(seen) > 1


def test_unknown_inputs_are_refused() -> None:
    with pytest.raises(TypeError):
        strategy_for(int)
    with pytest.raises(TypeError):
        strategy_for("s")
    with pytest.raises(KeyError):
        strategy_for("nope", BOUNDS)


@QUICK
@given(frames(RESTORE, LIBVIRT))
def test_single_call_frames_are_accepted_by_a_fresh_server(item: tuple[Call, bytes]) -> None:
    event, frame = item
    server = Connection(Role.SERVER, [RESTORE, LIBVIRT])
    server.receive_data(frame)
    assert server.next_event() == event
    assert server.next_event() is NEED_DATA


def _program_schemas() -> list[Schema]:
    return [RESTORE, LIBVIRT]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sessions(RESTORE, max_steps=40))
def test_sessions_are_accepted_by_server_and_client_connections(session: Any) -> None:
    for role in (Role.SERVER, Role.CLIENT):
        replay(session, role, [RESTORE])
    # Fed only the client's bytes, in arbitrary pieces, a server that sends what the
    # session says still reaches the end of input cleanly.
    server = Connection(Role.SERVER, [RESTORE])
    events = replay(session, Role.SERVER, [RESTORE])
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    assert all(not isinstance(e, ConnectionClosed) for e in events)


def test_sessions_cover_every_stream_variant_and_late_frames() -> None:
    kinds: set[str] = set()
    data_and_holes: set[type] = set()
    late = 0

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(sessions(RESTORE, max_steps=40))
    def collect(session: Any) -> None:
        nonlocal late
        server = Connection(Role.SERVER, [RESTORE])
        for step in session.steps:
            if step.role is not Role.SERVER:
                continue
            if step.action == "send":
                server.send(step.event)
                continue
            server.receive_data(step.data)
            got = []
            while (event := server.next_event()) is not NEED_DATA:
                got.append(event)
                if isinstance(event, Call):
                    info = server.stream_info(event.serial)
                    if info is not None:
                        kinds.add(info.kind)
                if isinstance(event, (StreamData, StreamHole)):
                    data_and_holes.add(type(event))
            late += not got

    collect()
    assert {"call", "v1 upload", "v1 download", "v2 upload", "v2 download"} <= kinds
    assert {"v3 upload", "v3 download"} <= kinds
    assert data_and_holes == {StreamData, StreamHole}
    assert late > 0  # frames dropped in DRAINING (§10.2) were generated


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(sessions(LIBVIRT, max_steps=25))
def test_libvirt_sessions_are_accepted(session: Any) -> None:
    replay(session, Role.SERVER, [LIBVIRT])
    replay(session, Role.CLIENT, [LIBVIRT])


def test_model_types_used() -> None:
    # strategies work on the codec's resolved model: every kind of model node occurs in
    # the shipped schemas, so the round-trip test above exercises each branch.
    kinds = set()
    for path in SCHEMA_FILES:
        for t in m.all_types(load_schema(path).model):
            kinds.add(type(t).__name__)
    assert kinds == {
        "Prim",
        "Bool",
        "Enum",
        "Opaque",
        "String",
        "Array",
        "Optional",
        "Struct",
        "Union_",
    }

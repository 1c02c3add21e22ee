"""Bugs of xdrstream.fuzz.strategies found on the way (issue 10): a typedef's override must
not change its base type everywhere; strings hold no U+0000 unless asked."""

from __future__ import annotations

from typing import Any

from hypothesis import find, given, settings
from hypothesis import strategies as st

from xdrstream.codec import compile_schema
from xdrstream.fuzz.strategies import Budget, register, strategy_for, unregister

SCHEMA = compile_schema(
    """
    typedef int small_t;
    typedef small_t tiny_t;
    typedef bool flag_t;
    struct pair { small_t s; int i; tiny_t t; flag_t f; bool b; };
    struct texts { string a<>; string b<8>; string list<4>; };
    """,
    "fuzzvalues.x",
)


def test_typedef_override_leaves_its_base_type_alone() -> None:
    register("small_t", st.just(7))
    register("flag_t", st.just(True))
    try:

        @settings(max_examples=60, deadline=None)
        @given(strategy_for("pair", SCHEMA))
        def check(pair: Any) -> None:
            assert pair.s == 7
            assert pair.f is True
            seen_i.add(pair.i)
            seen_t.add(pair.t)
            seen_b.add(pair.b)

        seen_i: set[int] = set()
        seen_t: set[int] = set()
        seen_b: set[bool] = set()
        check()
        assert seen_i != {7} and seen_t != {7}  # int and tiny_t keep their own values
        assert seen_b == {False, True}
    finally:
        unregister("small_t")
        unregister("flag_t")


def test_builtin_override_still_reaches_typedefs_without_their_own() -> None:
    register("int", st.just(3))
    register("tiny_t", st.just(5))
    try:

        @settings(max_examples=20, deadline=None)
        @given(strategy_for("pair", SCHEMA))
        def check(pair: Any) -> None:
            assert (pair.s, pair.i, pair.t) == (3, 3, 5)

        check()
    finally:
        unregister("int")
        unregister("tiny_t")


def test_strings_have_no_nul_unless_asked() -> None:
    nul = "\x00"

    @settings(max_examples=300, deadline=None)
    @given(strategy_for("texts", SCHEMA))
    def check(value: Any) -> None:
        assert nul not in value.a + value.b + value.list

    check()
    # asked for, a NUL comes: searched for (derandomized, so a run cannot miss it by chance;
    # find raises NoSuchExample if none of the examples has one)
    value = find(
        strategy_for("texts", SCHEMA, budget=Budget(nul=True)),
        lambda value: nul in value.a + value.b + value.list,
        settings=settings(max_examples=2000, deadline=None, derandomize=True, database=None),
    )
    assert nul in value.a + value.b + value.list

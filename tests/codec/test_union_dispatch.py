"""Unions with many arms dispatch by bisection in the generated code (codegen.switch): every
label still reaches its own arm, both ways, and every other discriminant reaches the default
arm or is refused with the exact error, as the interpreter (the reference) says."""

from __future__ import annotations

import struct

import pytest

from xdrstream.codec import DecodeError, EncodeError, compile_schema

# Labels out of order, negative ones, runs of one arm (7..9, -2/-1), a one-label arm
# between two runs of another (20, 22 around 21), gaps; with and without a default.
ARMS = """
    case 7: case 8: case 9: int run;
    case -5: hyper neg;
    case -2: case -1: void;
    case 0: unsigned int zero;
    case 3: string s<4>;
    case 20: case 22: double around;
    case 21: bool between;
    case 100: opaque o[2];
    case 40: float f;
    case 41: int forty_one;
    case 1000000: unsigned hyper big;
"""
SCHEMA = f"""
union with_default switch (int k) {{ {ARMS} default: int other; }};
union no_default switch (int k) {{ {ARMS} }};
struct many {{ with_default items<10>; }};
"""
VALUES = {
    7: 1, 8: -2, 9: 3, -5: -(1 << 40), -2: None, -1: None, 0: 7, 3: "abc",
    20: 0.5, 22: -1.25, 21: True, 100: b"xy", 40: 2.5, 41: 41, 1000000: 1 << 60,
}  # fmt: skip
OTHERS = [-6, -4, -3, 1, 2, 4, 6, 10, 19, 23, 39, 42, 99, 101, 999999, 1000001, 2**31 - 1]


@pytest.fixture(scope="module")
def schema():  # type: ignore[no-untyped-def]
    return compile_schema(SCHEMA, filename="dispatch.x")


def test_the_generated_code_bisects(schema) -> None:  # type: ignore[no-untyped-def]
    assert "not in _L" in schema.source and " < " in schema.source


@pytest.mark.parametrize("name", ["with_default", "no_default"])
def test_every_label_reaches_its_arm(schema, name: str) -> None:  # type: ignore[no-untyped-def]
    U = schema[name]
    interp = schema.interpreter()
    xtype = schema.xtype(name)
    for label, value in VALUES.items():
        u = U(label, value)
        data = U.pack(u)
        reference = bytearray()
        interp.encode(xtype, u, name, reference)
        assert data == bytes(reference), label
        assert struct.unpack_from(">i", data)[0] == label
        assert U.unpack(data) == u
        assert interp.decode(xtype, data, 0, name) == (u, len(data))


def test_other_discriminants_take_the_default_or_are_refused(schema) -> None:  # type: ignore[no-untyped-def]
    D, N = schema["with_default"], schema["no_default"]
    for k in OTHERS:
        data = D.pack(D(k, k & 0xFFFF))
        assert data == struct.pack(">ii", k, k & 0xFFFF)
        assert D.unpack(data) == D(k, k & 0xFFFF)
        with pytest.raises(EncodeError, match=r"no arm|discriminant"):
            N.pack(N(k, 1))
        with pytest.raises(DecodeError) as err:
            N.unpack(data)
        assert err.value.offset == 0 and err.value.path.startswith("no_default")


def test_an_array_of_them_round_trips(schema) -> None:  # type: ignore[no-untyped-def]
    M, D = schema["many"], schema["with_default"]
    value = M(items=[D(k, v) for k, v in list(VALUES.items())[:9]] + [D(5, 5)])
    assert M.unpack(M.pack(value)) == value

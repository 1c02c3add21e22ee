"""Any bytes fed to any decoder either decode or raise DecodeError (issue 2, untrusted input).

Runs over every type of schemas/everything.x: random bytes, mutated valid encodings, and
round trips of valid values (drawn with :func:`xdrstream.fuzz.strategies.strategy_for`).
The generated decoder is also checked against the schema's interpreter (an independent,
straightforward implementation of the same rules): both must accept the same inputs, and
accepted values must re-encode to the same bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdrstream.codec import DecodeError, Schema, load_schema
from xdrstream.fuzz.strategies import strategy_for

SCHEMA = load_schema(Path(__file__).parent / "schemas" / "everything.x")
NAMES = sorted(SCHEMA)
COMMON = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decode_or_reject(schema: Schema, name: str, data: bytes) -> None:
    """The property: DecodeError or a value that re-encodes, agreeing with the interpreter."""
    codec = schema.codec(name)
    try:
        value = codec.unpack(data)
    except DecodeError as exc:
        assert exc.path.startswith(name)
        assert exc.offset is not None and 0 <= exc.offset <= len(data)
        accepted = False
    else:
        accepted = True
    interp = schema.interpreter()
    try:
        oracle, end = interp.decode(schema.xtype(name), data, 0, name)
    except DecodeError:
        oracle_accepts = False
    else:
        oracle_accepts = end == len(data)
    assert accepted == oracle_accepts, f"generated code and interpreter disagree on {data.hex()}"
    if accepted:
        again = codec.pack(value)
        assert again == codec.pack(oracle)
        # XDR encodings are canonical; only float NaN payloads may change (float32 sNaN).
        if not _has_float(schema, name):
            assert again == data
        # Zero-copy decoding accepts the same input and gives the same value's encoding.
        assert codec.pack(codec.unpack(data, zero_copy=True)) == again


def _has_float(schema: Schema, name: str) -> bool:
    from xdrstream.codec import model as m

    seen: set[int] = set()
    stack = [schema.xtype(name)]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if isinstance(t, m.Prim) and t.kind in ("float", "double"):
            return True
        stack.extend(m.children(t))
    return False


@pytest.mark.parametrize("name", NAMES)
@COMMON
@given(data=st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(name: str, data: bytes) -> None:
    decode_or_reject(SCHEMA, name, data)


@pytest.mark.parametrize("name", NAMES)
@COMMON
@given(data=st.binary(max_size=40).map(lambda b: b + bytes(-len(b) % 4)))
def test_random_word_aligned_bytes(name: str, data: bytes) -> None:
    # Word-aligned random input reaches deeper than arbitrary lengths (padding is right).
    decode_or_reject(SCHEMA, name, data)


_LENGTHS = st.sampled_from([0, 1, 2, 3, 4, 5, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE])


def _mutate(draw: Any, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "word", "delete"]))
    buf = bytearray(data)
    if kind == "flip" and buf:
        i = draw(st.integers(0, len(buf) * 8 - 1))
        buf[i // 8] ^= 1 << (i % 8)
    elif kind == "truncate" and buf:
        del buf[draw(st.integers(0, len(buf) - 1)) :]
    elif kind == "insert":
        i = draw(st.integers(0, len(buf)))
        buf[i:i] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "delete" and buf:
        i = draw(st.integers(0, len(buf) - 1))
        del buf[i : i + draw(st.integers(1, 8))]
    elif kind == "word" and len(buf) >= 4:
        # Replace an aligned word (often a length, count, flag or discriminant).
        i = draw(st.integers(0, len(buf) // 4 - 1)) * 4
        word = draw(st.one_of(_LENGTHS, st.integers(0, 0xFFFFFFFF)))
        buf[i : i + 4] = struct.pack(">I", word)
    return bytes(buf)


@pytest.mark.parametrize("name", NAMES)
@COMMON
@given(data=st.data())
def test_mutated_valid_encodings(name: str, data: st.DataObject) -> None:
    value = data.draw(strategy_for(name, SCHEMA), label="value")
    encoded = SCHEMA.codec(name).pack(value)
    mutated = _mutate(data.draw, encoded)
    decode_or_reject(SCHEMA, name, mutated)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_values_round_trip(name: str, data: st.DataObject) -> None:
    value = data.draw(strategy_for(name, SCHEMA), label="value")
    codec = SCHEMA.codec(name)
    encoded = codec.pack(value)
    assert len(encoded) % 4 == 0
    assert codec.unpack(encoded) == value
    # The interpreter agrees on the bytes, and unpack_from works at an offset.
    oracle = bytearray()
    SCHEMA.interpreter().encode(SCHEMA.xtype(name), value, name, oracle)
    assert bytes(oracle) == encoded
    assert codec.unpack_from(b"\xaa" * 3 + encoded + b"\xbb", 3) == (value, 3 + len(encoded))

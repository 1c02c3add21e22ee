"""Fixed opaque data of whole words (UUIDs, NFSv4 stateids) is part of its struct's fixed
run in the generated code (``Ns`` to pack, ``Nx`` and a slice to unpack): values, accepted
bytes-likes, zero-copy slices, and errors are those of any opaque."""

from __future__ import annotations

import struct

import pytest

from xdrstream.codec import DecodeError, EncodeError, compile_schema

SCHEMA = """
struct stateid { unsigned int seqid; opaque other[12]; };
struct read { stateid sid; unsigned hyper offset; unsigned int count; };
struct uuid_only { opaque uuid[16]; };
struct odd { int a; opaque three[3]; int b; };
"""


@pytest.fixture(scope="module")
def schema():  # type: ignore[no-untyped-def]
    return compile_schema(SCHEMA, filename="fused.x")


def test_one_struct_call_for_the_run(schema) -> None:  # type: ignore[no-untyped-def]
    assert "'>I12xQI'" in schema.source and "'>I12sQI'" in schema.source


def test_values_and_bytes_likes(schema) -> None:  # type: ignore[no-untyped-def]
    R, S, U = schema["read"], schema["stateid"], schema["uuid_only"]
    other = bytes(range(12))
    value = R(sid=S(seqid=7, other=other), offset=1 << 40, count=4096)
    data = R.pack(value)
    assert data == struct.pack(">I12sQI", 7, other, 1 << 40, 4096)
    for like in (bytearray(other), memoryview(other)):
        assert R.pack(R(sid=S(seqid=7, other=like), offset=1 << 40, count=4096)) == data
    assert R.unpack(data) == value and type(R.unpack(data).sid.other) is bytes
    view = R.unpack(data, zero_copy=True).sid.other
    assert isinstance(view, memoryview) and view.obj is not None and bytes(view) == other
    assert U.unpack(U.pack(U(uuid=b"u" * 16))) == U(uuid=b"u" * 16)
    assert U.unpack_from(b"xx" + b"u" * 16, 2) == (U(uuid=b"u" * 16), 18)
    Odd = schema["odd"]  # not whole words: padding still checked, as before
    assert Odd.unpack(Odd.pack(Odd(a=1, three=b"abc", b=2))) == Odd(a=1, three=b"abc", b=2)
    with pytest.raises(DecodeError, match="padding"):
        Odd.unpack(struct.pack(">i3sBi", 1, b"abc", 1, 2))


def test_errors_name_the_field(schema) -> None:  # type: ignore[no-untyped-def]
    R, S, U = schema["read"], schema["stateid"], schema["uuid_only"]
    for bad in (b"short", b"x" * 13, "text", None):
        with pytest.raises(EncodeError) as err:
            R.pack(R(sid=S(seqid=1, other=bad), offset=0, count=0))
        assert err.value.path == "read.sid.other"
    data = R.pack(R(sid=S(seqid=1, other=bytes(12)), offset=0, count=0))
    for cut in (3, 10, 16, len(data) - 1):
        with pytest.raises(DecodeError) as derr:
            R.unpack(data[:cut])
        assert derr.value.offset is not None and derr.value.offset <= cut
    with pytest.raises(DecodeError) as uerr:
        U.unpack(b"u" * 15)
    assert uerr.value.path == "uuid_only.uuid" and uerr.value.offset == 0

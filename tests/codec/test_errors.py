"""DecodeError and EncodeError: every rejected case names the type path and byte offset."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from xdrstream.codec import (
    CodecError,
    DecodeError,
    EncodeError,
    Schema,
    compile_schema,
)

TEXT = """
enum status { OK = 0, FAIL = 1 };
struct item { string name<4>; opaque tag[3]; bool flag; };
struct body { item items<5>; status st; item *extra; };
struct msg { unsigned int id; body body; };
union reply switch (status status) { case OK: int v; };
union byint switch (int k) { case 1: void; };
typedef item many<>;
typedef opaque blob<8>;
struct floats { float f; double d; hyper h; };
"""


@pytest.fixture(scope="module")
def schema() -> Schema:
    return compile_schema(TEXT, filename="errors.x")


def be(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


def item_bytes(name: bytes = b"ab", tag: bytes = b"xyz\0", flag: int = 1) -> bytes:
    padded = name + bytes(-len(name) % 4)
    return be("I", len(name)) + padded + tag + be("I", flag)


def msg_bytes(items: list[bytes] | None = None, st: int = 0, extra: int = 0) -> bytes:
    items = [item_bytes() for _ in range(4)] if items is None else items
    return be("II", 99, len(items)) + b"".join(items) + be("iI", st, extra)


def decode_error(schema: Schema, name: str, data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        schema[name].unpack(data)
    return info.value


def test_valid_message_layout(schema: Schema) -> None:
    # The offsets used below: items[i] starts at 8 + 16 * i, st at 72, extra at 76.
    value = schema["msg"].unpack(msg_bytes())
    assert value.id == 99 and len(value.body.items) == 4 and value.body.extra is None


@pytest.mark.parametrize(
    ("data", "path", "offset", "reason"),
    [
        (
            msg_bytes()[:74],
            "msg.body.st",
            72,
            "truncated: enum status needs 4 bytes, 2 remain",
        ),
        (msg_bytes() + b"\0\0\0\0", "msg", 80, "4 trailing bytes"),
        (
            msg_bytes([item_bytes()] * 3 + [item_bytes(b"\xff\xfe")]),
            "msg.body.items[3].name",
            60,
            "invalid UTF-8",
        ),
        (
            msg_bytes([item_bytes()] * 3 + [be("I", 5) + b"abcde\0\0\0" + b"xyz\0" + be("I", 1)]),
            "msg.body.items[3].name",
            56,
            "length 5 exceeds the bound 4",
        ),
        (
            msg_bytes([item_bytes()] * 3 + [be("I", 2) + b"ab\0\x01" + b"xyz\0" + be("I", 1)]),
            "msg.body.items[3].name",
            62,
            "non-zero padding",
        ),
        (
            msg_bytes([item_bytes(), item_bytes(tag=b"xyz\x07")]),
            "msg.body.items[1].tag",
            8 + 16 + 11,
            "non-zero padding",
        ),
        (
            msg_bytes([item_bytes(), item_bytes(flag=2)]),
            "msg.body.items[1].flag",
            36,
            "bool must be 0 or 1, not 2",
        ),
        (msg_bytes(st=7), "msg.body.st", 72, "7 is not a member of enum status"),
        (msg_bytes(extra=2), "msg.body.extra", 76, "optional-data flag must be 0 or 1, not 2"),
        (
            msg_bytes(extra=1),
            "msg.body.extra.name",
            80,
            "truncated: length needs 4 bytes, 0 remain",
        ),
        (
            msg_bytes([item_bytes()] * 6),
            "msg.body.items",
            4,
            "array length 6 exceeds the bound 5",
        ),
        (b"", "msg.id", 0, "truncated: unsigned int needs 4 bytes, 0 remain"),
    ],
)
def test_decode_errors_in_a_nested_message(
    schema: Schema, data: bytes, path: str, offset: int, reason: str
) -> None:
    err = decode_error(schema, "msg", data)
    assert (err.path, err.offset) == (path, offset)
    assert reason in err.reason
    assert str(err).startswith(f"{path} at byte offset {offset}: ")
    assert isinstance(err, ValueError) and isinstance(err, CodecError)


def test_union_discriminant_without_arm(schema: Schema) -> None:
    err = decode_error(schema, "reply", be("i", 1))
    assert (err.path, err.offset) == ("reply.status", 0)
    assert "discriminant 1 selects no arm of union reply" in err.reason
    err = decode_error(schema, "byint", be("i", 2))
    assert (err.path, err.offset) == ("byint.k", 0)
    err = decode_error(schema, "reply", be("i", 5))
    assert "5 is not a member of enum status" in err.reason


def test_lengths_are_checked_against_remaining_bytes_before_allocating(schema: Schema) -> None:
    err = decode_error(schema, "many", be("I", 0xFFFFFFFF))
    assert (err.path, err.offset) == ("many", 0)
    assert "truncated: 4294967295 elements need at least" in err.reason
    err = decode_error(schema, "blob", be("I", 0xFFFFFFFF))
    assert "length 4294967295 exceeds the bound 8" in err.reason
    err = decode_error(schema, "item", be("I", 4) + b"ab")
    assert (err.path, err.offset) == ("item.name", 4)
    assert "truncated: 4 bytes of data and 0 of padding need 4 bytes, 2 remain" in err.reason


def test_unpack_from_offsets(schema: Schema) -> None:
    data = b"\xee" * 6 + item_bytes(flag=3)
    with pytest.raises(DecodeError) as info:
        schema["item"].unpack_from(data, 6)
    assert (info.value.path, info.value.offset) == ("item.flag", 6 + 12)
    with pytest.raises(DecodeError) as info:
        schema["item"].unpack_from(data, len(data) + 1)
    assert "offset outside the buffer" in info.value.reason
    with pytest.raises(DecodeError):
        schema["item"].unpack_from(data, -1)


def test_zero_copy_errors_are_the_same(schema: Schema) -> None:
    data = msg_bytes(st=7)
    with pytest.raises(DecodeError) as info:
        schema["msg"].unpack(bytearray(data), zero_copy=True)
    assert (info.value.path, info.value.offset) == ("msg.body.st", 72)


def good_msg(schema: Schema, **changes: Any) -> Any:
    Item, Body, Msg, St = schema["item"], schema["body"], schema["msg"], schema["status"]
    items = [Item(name="ab", tag=b"xyz", flag=True) for _ in range(4)]
    body = Body(items=items, st=St.OK, extra=None)
    msg = Msg(id=1, body=body)
    for path, value in changes.items():
        target = msg
        parts = path.split("__")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        setattr(target, parts[-1], value)
    return msg


@pytest.mark.parametrize(
    ("changes", "path", "reason"),
    [
        ({"id": -1}, "msg.id", "-1 is outside the range of unsigned int (0..4294967295)"),
        ({"id": 2**32}, "msg.id", "4294967296 is outside the range of unsigned int"),
        ({"id": "1"}, "msg.id", "unsigned int needs an int, not str"),
        ({"id": 1.0}, "msg.id", "unsigned int needs an int, not float"),
        ({"body__items__2__name": "abcde"}, "msg.body.items[2].name", "length 5 exceeds"),
        ({"body__items__2__name": b"ab"}, "msg.body.items[2].name", "needs a str, not bytes"),
        ({"body__items__0__name": "\ud800"}, "msg.body.items[0].name", "not encodable as UTF-8"),
        ({"body__items__1__tag": b"ab"}, "msg.body.items[1].tag", "exactly 3 bytes, not 2"),
        ({"body__items__1__tag": "abc"}, "msg.body.items[1].tag", "opaque needs bytes, not str"),
        ({"body__items__3__flag": 2}, "msg.body.items[3].flag", "bool needs True or False"),
        ({"body__items__3__flag": None}, "msg.body.items[3].flag", "bool needs True or False"),
        ({"body__st": 5}, "msg.body.st", "5 is not a member of enum status"),
        ({"body__st": "OK"}, "msg.body.st", "enum status needs a member, not str"),
        ({"body__items": "abc"}, "msg.body.items", "needs a list or tuple, not str"),
        ({"body__items": [None] * 6}, "msg.body.items", "6 elements exceed the bound 5"),
        ({"body__items": [None]}, "msg.body.items[0]", "struct item needs attribute 'name'"),
        ({"body__extra": 5}, "msg.body.extra", "struct item needs attribute 'name'"),
        ({"body": None}, "msg.body", "struct body needs attribute 'items'"),
    ],
)
def test_encode_errors_name_the_path(
    schema: Schema, changes: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(EncodeError) as info:
        schema["msg"].pack(good_msg(schema, **changes))
    err = info.value
    assert (err.path, err.offset) == (path, None)
    assert reason in err.reason, err.reason
    assert str(err) == f"{path}: {err.reason}"
    assert isinstance(err, ValueError) and isinstance(err, CodecError)


def test_encode_errors_for_unions_and_numbers(schema: Schema) -> None:
    R, St, F = schema["reply"], schema["status"], schema["floats"]
    with pytest.raises(EncodeError) as info:
        R.pack(R(status=St.FAIL))
    assert info.value.path == "reply.status"
    assert "selects no arm of union reply" in info.value.reason
    with pytest.raises(EncodeError) as info:
        R.pack(R(status=St.OK, value="x"))
    assert info.value.path == "reply.v" and "int needs an int, not str" in info.value.reason
    with pytest.raises(EncodeError) as info:
        F.pack(F(f=1e300, d=0.0, h=0))
    assert info.value.path == "floats.f" and "does not fit in a float" in info.value.reason
    with pytest.raises(EncodeError) as info:
        F.pack(F(f=0.0, d="x", h=0))
    assert info.value.path == "floats.d" and "double needs a float, not str" in info.value.reason
    with pytest.raises(EncodeError) as info:
        F.pack(F(f=0.0, d=0.0, h=2**63))
    assert info.value.path == "floats.h" and "outside the range of hyper" in info.value.reason
    with pytest.raises(EncodeError) as info:
        schema.codec("int").pack(None)
    assert info.value.path == "int" and "int needs an int, not NoneType" in info.value.reason


def test_values_whose_attributes_raise_give_encode_errors(schema: Schema) -> None:
    class Hostile:
        @property
        def name(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(EncodeError) as info:
        schema["item"].pack(Hostile())
    assert info.value.path == "item" and "RuntimeError: boom" in info.value.reason


def test_non_byte_inputs_are_type_errors_not_silent_decodes(schema: Schema) -> None:
    with pytest.raises(TypeError):
        schema["msg"].unpack(80)  # bytes(80) would be 80 zero bytes: refuse
    with pytest.raises(TypeError):
        schema["msg"].unpack("text")

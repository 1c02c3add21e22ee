"""Differential test against C (issue 2, "Correctness against independent
implementations"): rich.x compiled by rpcgen, linked with libtirpc into the driver of
tests/codec/c/driver.c, built in the test's temp dir (tests/rpcgen_oracle.py). One driver
process handles a whole batch of values (length-prefixed records over stdin/stdout).

Checked both ways, on many values:
- our encoding of a value -> libtirpc decodes it with xdr_T, consuming every byte, and
  re-encodes the very same bytes;
- values libtirpc fills and encodes itself (seeded) -> we decode each, and our re-encoding
  is the very same bytes;
- a few fixed values, field by field, as the C program prints them;
- where libtirpc is lenient (bool 2, undeclared enum values, non-zero padding, trailing
  bytes, ...) it accepts what we reject with DecodeError.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import RICH_TYPES, RICH_X, RichStrategies, make_union, rich_schema, union_parts
from rpcgen_oracle import CDriver, build_rich_driver, skip_without_c_toolchain

from xdrstream.codec import DecodeError

pytestmark = pytest.mark.real_peers

# Types the driver can fill with pseudo-random values (all but the bare enums).
C_FILLED_TYPES = tuple(t for t in RICH_TYPES if t not in ("rs_msg_type", "rs_msg_status"))


@pytest.fixture(scope="module")
def c_driver(tmp_path_factory: pytest.TempPathFactory) -> CDriver:
    skip_without_c_toolchain()
    return build_rich_driver(tmp_path_factory.mktemp("rpcgen"), RICH_X)


@pytest.fixture(scope="module")
def schema() -> Any:
    return rich_schema()


@pytest.fixture(scope="module")
def c_safe_strategies(schema: Any) -> RichStrategies:
    # libtirpc's strings are NUL-terminated: a NUL inside would be cut on re-encoding.
    return RichStrategies(schema, c_safe=True)


# ---- our bytes -> C ---------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_libtirpc_decodes_our_encodings_and_reencodes_them_identically(
    schema: Any, c_driver: CDriver, c_safe_strategies: RichStrategies, data: st.DataObject
) -> None:
    batch: list[tuple[str, bytes]] = []
    for name in C_FILLED_TYPES:
        values = data.draw(st.lists(c_safe_strategies.by_type[name], min_size=1, max_size=3))
        batch += [(name, schema[name].pack(v)) for v in values]

    for (name, ours), (status, consumed, theirs) in zip(
        batch, c_driver.roundtrip(batch), strict=True
    ):
        assert status == 0, f"libtirpc rejected our {name}: {ours.hex()}"
        assert consumed == len(ours), f"libtirpc read {consumed} of {len(ours)} bytes ({name})"
        assert theirs == ours, name


# ---- C bytes -> us ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 20261126])
def test_we_decode_libtirpc_encodings_and_reencode_them_identically(
    schema: Any, c_driver: CDriver, seed: int
) -> None:
    records = c_driver.generate(seed, 40)
    assert {name for name, _ in records} == set(C_FILLED_TYPES)
    for name, theirs in records:
        value = schema[name].unpack(theirs)
        assert schema[name].pack(value) == theirs, name
        viewed = schema[name].unpack(theirs, zero_copy=True)
        assert viewed == value
        assert schema[name].pack(viewed) == theirs, name
        # unpack_from agrees on where the value ends, also with bytes after it.
        assert schema[name].unpack_from(theirs + b"\0" * 8, 0) == (value, len(theirs))


# ---- fixed values, field by field -------------------------------------------------------------


def fixed_everything(schema: Any) -> list[Any]:
    s, k = schema, schema.constants
    color, point, node = s["rs_color"], s["rs_point"], s["rs_node"]
    linked = node(
        value=-7, tag="tête", next=node(value=0, tag="", next=node(value=3, tag="z", next=None))
    )
    return [
        s["rs_everything"](
            i=-(2**31),
            u=2**32 - 1,
            bare=0x80000000,
            h=-(2**63),
            uh=2**64 - 1,
            flag=True,
            f=-1.5,
            d=2.0**-1074,
            color=color.RS_INFRARED,
            temp=k["RS_MIN_TEMP"],
            fixed_blob=b"\x01\x02\x03\x04\x05",
            var_blob=bytes(range(256)) * 4,
            any_blob=b"",
            name="x" * k["RS_MAX_NAME"],
            anything="€uro 😀",
            uuid=bytes.fromhex("00112233445566778899aabbccddeeff"),
            alias="é",
            big=0x0102030405060708,
            corners=[point(x=1, y=-1), point(x=2**31 - 1, y=-(2**31))],
            path=[point(x=n, y=-n) for n in range(k["RS_MAX_POINTS"])],
            counts=[5, -5, 0],
            palette=[color.RS_ULTRAVIOLET, color.RS_RED, color.RS_BLUE],
            hypers=[1, -1],
            names=["a", "bb"],
            maybe_point=point(x=9, y=8),
            maybe_limits=None,
            by_int=make_union(s["rs_by_int"], -3, "sixteen-bytes-ok"),
            by_unsigned=make_union(s["rs_by_unsigned"], 0xFFFFFFFF),
            by_enum=make_union(s["rs_by_enum"], color.RS_GREEN, "g"),
            by_bool=make_union(s["rs_by_bool"], False),
            choices=[make_union(s["rs_by_int"], 0), make_union(s["rs_by_int"], 99, 2**64 - 1)],
            list=linked,
        ),
        s["rs_everything"](
            i=0,
            u=0,
            bare=1,
            h=2**63 - 1,
            uh=0,
            flag=False,
            f=float("inf"),
            d=-0.0,
            color=color.RS_RED,
            temp=0,
            fixed_blob=b"\0" * 5,
            var_blob=b"",
            any_blob=b"\xff" * 3,
            name="",
            anything="",
            uuid=b"\xff" * 16,
            alias="",
            big=0,
            corners=[point(x=0, y=0), point(x=0, y=0)],
            path=[],
            counts=[],
            palette=[color.RS_RED] * 3,
            hypers=[],
            names=[],
            maybe_point=None,
            maybe_limits=s["rs_limits"](lo=-1, hi=1, ratio=0.25, precise=1e300),
            by_int=make_union(s["rs_by_int"], 2, -2),
            by_unsigned=make_union(s["rs_by_unsigned"], 0x10, b"\x00\xff"),
            by_enum=make_union(s["rs_by_enum"], color.RS_BLUE),
            by_bool=make_union(
                s["rs_by_bool"], True, s["rs_limits"](lo=0, hi=0, ratio=0.0, precise=0.0)
            ),
            choices=[],
            list=None,
        ),
    ]


def expected_everything_fields(v: Any) -> dict[str, str]:
    """What driver.c prints for value v (the formats of describe_everything)."""

    def union_disc(u: Any) -> int:
        return union_parts(u)[0]

    def pairs(pts: list[Any]) -> str:
        return ";".join(f"{p.x},{p.y}" for p in pts)

    nodes, n = [], v.list
    while n is not None:
        nodes.append(f"{n.value}:{n.tag}")
        n = n.next
    return {
        "i": str(v.i),
        "u": str(v.u),
        "bare": str(v.bare),
        "h": str(v.h),
        "uh": str(v.uh),
        "flag": str(int(v.flag)),
        "color": str(int(v.color)),
        "temp": str(v.temp),
        "fixed_blob": bytes(v.fixed_blob).hex(),
        "var_blob": bytes(v.var_blob).hex(),
        "name": v.name,
        "alias": v.alias,
        "big": str(v.big),
        "uuid": bytes(v.uuid).hex(),
        "corners": pairs(v.corners),
        "path_len": str(len(v.path)),
        "counts": ",".join(map(str, v.counts)),
        "maybe_point": "null" if v.maybe_point is None else pairs([v.maybe_point]),
        "by_int.code": str(union_disc(v.by_int)),
        "by_enum.color": str(union_disc(v.by_enum)),
        "by_bool.present": str(union_disc(v.by_bool)),
        "list": ",".join(nodes),
    }


def test_libtirpc_reads_fixed_values_field_by_field(schema: Any, c_driver: CDriver) -> None:
    values = fixed_everything(schema)
    described = c_driver.describe(
        [("rs_everything", schema["rs_everything"].pack(v)) for v in values]
    )
    for value, fields in zip(values, described, strict=True):
        floats = {key: fields.pop(key) for key in ("f", "d")}
        assert fields == expected_everything_fields(value)
        # %a is exact; compare the bit patterns so -0.0 and 0.0 differ.
        assert struct.pack(">f", float.fromhex(floats["f"])) == struct.pack(">f", value.f)
        assert struct.pack(">d", float.fromhex(floats["d"])) == struct.pack(">d", value.d)


def test_libtirpc_reads_a_libvirt_shaped_message_field_by_field(
    schema: Any, c_driver: CDriver
) -> None:
    s = schema
    message = s["rs_message"](
        header=s["rs_header"](
            prog=0x20008086,
            vers=1,
            proc=209,
            type=s["rs_msg_type"].RS_MSG_STREAM,
            serial=12,
            status=s["rs_msg_status"].RS_STATUS_CONTINUE,
        ),
        body=s["rs_body"](
            name="vol1",
            capacity=50 * 2**20,
            allocation=2**40 + 1,
            flags=3,
            cpus=list(range(16)),
            domain=s["rs_domain_ref"](name="dom", uuid=b"u" * 16, id=-1),
        ),
    )
    [fields] = c_driver.describe([("rs_message", s["rs_message"].pack(message))])
    assert fields == {
        "header.prog": str(0x20008086),
        "header.vers": "1",
        "header.proc": "209",
        "header.type": "3",
        "header.serial": "12",
        "header.status": "2",
        "body.name": "vol1",
        "body.capacity": str(50 * 2**20),
        "body.allocation": str(2**40 + 1),
        "body.flags": "3",
        "body.cpus_len": "16",
        "body.domain.name": "dom",
        "body.domain.id": "-1",
    }


# ---- where libtirpc is lenient and we are strict ----------------------------------------------


def word(n: int) -> bytes:
    return struct.pack(">I", n & 0xFFFFFFFF)


def everything_with_flag_word(schema: Any, flag_word: int) -> bytes:
    """An encoding of a fixed rs_everything whose bool `flag` word is replaced."""
    value = fixed_everything(schema)[1]
    data = bytearray(schema["rs_everything"].pack(value))
    flag_offset = 4 + 4 + 4 + 8 + 8  # i, u, bare, h, uh
    assert data[flag_offset : flag_offset + 4] == word(0)
    data[flag_offset : flag_offset + 4] = word(flag_word)
    return bytes(data)


# case -> (type, bytes or a function of the schema giving them, DecodeError path, offset)
LENIENT_CASES: dict[str, tuple[str, Any, str, int]] = {
    "bool 2": (
        "rs_everything",
        lambda s: everything_with_flag_word(s, 2),
        "rs_everything.flag",
        28,
    ),
    "undeclared enum value": ("rs_color", word(7), "rs_color", 0),
    "non-zero padding": ("rs_chunk", word(1) + b"\x01\xff\x00\x00", "rs_chunk.data", 5),
    "trailing bytes": ("rs_point", word(1) + word(2) + word(3), "rs_point", 8),
    "optional-data flag 2": (
        "rs_list",
        word(2) + word(5) + word(1) + b"a\0\0\0" + word(0),
        "rs_list",
        0,
    ),
    "invalid UTF-8": ("rs_name", word(2) + b"\xff\xfe\0\0", "rs_name", 4),
}

BOTH_REJECT_CASES: dict[str, tuple[str, Any, str, int]] = {
    "string above its bound": ("rs_name", word(65) + b"a" * 68, "rs_name", 0),
    "union discriminant with no arm": ("rs_by_unsigned", word(5), "rs_by_unsigned.kind", 0),
    "enum discriminant with no arm": ("rs_by_enum", word(0x7FFFFFFF), "rs_by_enum.color", 0),
    "truncated": ("rs_header", b"\0" * 23, "rs_header.status", 20),
    "length beyond the input": ("rs_chunk", word(0x7FFFFFF0) + b"\0" * 8, "rs_chunk.data", 4),
}


def case_bytes(schema: Any, spec: Any) -> bytes:
    return spec(schema) if callable(spec) else spec


@pytest.mark.parametrize("case", list(LENIENT_CASES))
def test_libtirpc_accepts_what_we_reject(schema: Any, c_driver: CDriver, case: str) -> None:
    type_name, spec, path, offset = LENIENT_CASES[case]
    data = case_bytes(schema, spec)

    [(status, consumed, _reencoded)] = c_driver.roundtrip([(type_name, data)])
    assert status == 0, "libtirpc became strict here: the case no longer shows a difference"

    with pytest.raises(DecodeError) as excinfo:
        schema[type_name].unpack(data)
    assert (excinfo.value.path, excinfo.value.offset) == (path, offset)
    if case == "trailing bytes":
        assert consumed == offset  # both see the value end at the same byte


@pytest.mark.parametrize("case", list(BOTH_REJECT_CASES))
def test_libtirpc_and_we_both_reject(schema: Any, c_driver: CDriver, case: str) -> None:
    type_name, spec, path, offset = BOTH_REJECT_CASES[case]
    data = case_bytes(schema, spec)

    [(status, _consumed, _reencoded)] = c_driver.roundtrip([(type_name, data)])
    assert status == 1

    with pytest.raises(DecodeError) as excinfo:
        schema[type_name].unpack(data)
    assert (excinfo.value.path, excinfo.value.offset) == (path, offset)

"""Differential test against xdrlib3 (issue 2, "Correctness against independent
implementations"): for generated values of every rich.x type, our `pack` gives the bytes of
a hand-driven `xdrlib3.Packer`, and `xdrlib3.Unpacker` reads our bytes back as the value.

The xdrlib3 side below is written field by field from rich.x, independently of the
compiler: a wrong field order, padding, sign or length prefix in either shows up as a
byte difference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import xdrlib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import RICH_TYPES, RichStrategies, make_union, rich_schema, union_parts

Pack = Callable[[xdrlib3.Packer, Any], None]
Unpack = Callable[[xdrlib3.Unpacker], Any]


class XdrlibMirror:
    """rich.x spelled out with xdrlib3's Packer/Unpacker calls, type by type."""

    def __init__(self, schema: Any) -> None:
        self.s = schema
        self.const = schema.constants
        self.pack: dict[str, Pack] = {}
        self.unpack: dict[str, Unpack] = {}
        for name in RICH_TYPES:
            self.pack[name] = getattr(self, f"pack_{name}")
            self.unpack[name] = getattr(self, f"unpack_{name}")

    # -- building blocks ----------------------------------------------------------------------

    @staticmethod
    def pack_str(p: xdrlib3.Packer, value: str) -> None:
        p.pack_string(value.encode())

    @staticmethod
    def unpack_str(u: xdrlib3.Unpacker, max_bytes: int | None) -> str:
        raw = u.unpack_string()
        assert max_bytes is None or len(raw) <= max_bytes
        return bytes(raw).decode()

    def unpack_enum(self, u: xdrlib3.Unpacker, type_name: str) -> Any:
        return self.s[type_name](u.unpack_enum())

    @staticmethod
    def pack_optional(p: xdrlib3.Packer, value: Any, pack: Callable[[Any], None]) -> None:
        p.pack_bool(value is not None)
        if value is not None:
            pack(value)

    @staticmethod
    def unpack_optional(u: xdrlib3.Unpacker, unpack: Callable[[], Any]) -> Any:
        flag = u.unpack_uint()
        assert flag in (0, 1)
        return unpack() if flag else None

    # -- typedefs and enums ---------------------------------------------------------------------

    def pack_rs_color(self, p: xdrlib3.Packer, v: Any) -> None:
        p.pack_enum(v)

    def unpack_rs_color(self, u: xdrlib3.Unpacker) -> Any:
        return self.unpack_enum(u, "rs_color")

    pack_rs_msg_type = pack_rs_msg_status = pack_rs_color

    def unpack_rs_msg_type(self, u: xdrlib3.Unpacker) -> Any:
        return self.unpack_enum(u, "rs_msg_type")

    def unpack_rs_msg_status(self, u: xdrlib3.Unpacker) -> Any:
        return self.unpack_enum(u, "rs_msg_status")

    def pack_rs_u64(self, p: xdrlib3.Packer, v: int) -> None:
        p.pack_uhyper(v)

    def unpack_rs_u64(self, u: xdrlib3.Unpacker) -> int:
        return u.unpack_uhyper()

    def pack_rs_uuid(self, p: xdrlib3.Packer, v: bytes) -> None:
        p.pack_fopaque(self.const["RS_UUID_LEN"], v)

    def unpack_rs_uuid(self, u: xdrlib3.Unpacker) -> bytes:
        return bytes(u.unpack_fopaque(self.const["RS_UUID_LEN"]))

    def pack_rs_name(self, p: xdrlib3.Packer, v: str) -> None:
        self.pack_str(p, v)

    def unpack_rs_name(self, u: xdrlib3.Unpacker) -> str:
        return self.unpack_str(u, self.const["RS_MAX_NAME"])

    def pack_rs_temp(self, p: xdrlib3.Packer, v: int) -> None:
        p.pack_int(v)

    def unpack_rs_temp(self, u: xdrlib3.Unpacker) -> int:
        return u.unpack_int()

    # -- structs --------------------------------------------------------------------------------

    def pack_rs_point(self, p: xdrlib3.Packer, v: Any) -> None:
        p.pack_int(v.x)
        p.pack_int(v.y)

    def unpack_rs_point(self, u: xdrlib3.Unpacker) -> Any:
        return self.s["rs_point"](x=u.unpack_int(), y=u.unpack_int())

    def pack_rs_limits(self, p: xdrlib3.Packer, v: Any) -> None:
        p.pack_hyper(v.lo)
        p.pack_uhyper(v.hi)
        p.pack_float(v.ratio)
        p.pack_double(v.precise)

    def unpack_rs_limits(self, u: xdrlib3.Unpacker) -> Any:
        return self.s["rs_limits"](
            lo=u.unpack_hyper(),
            hi=u.unpack_uhyper(),
            ratio=u.unpack_float(),
            precise=u.unpack_double(),
        )

    # rs_node's `next` chain is XDR's linked-list encoding, which xdrlib3 knows as
    # pack_list/unpack_list: (1, item)* 0.
    def _pack_node_fields(self, p: xdrlib3.Packer, v: Any) -> None:
        p.pack_int(v.value)
        self.pack_str(p, v.tag)

    def pack_rs_list(self, p: xdrlib3.Packer, v: Any) -> None:
        nodes = []
        while v is not None:
            nodes.append(v)
            v = v.next
        p.pack_list(nodes, lambda node: self._pack_node_fields(p, node))

    def unpack_rs_list(self, u: xdrlib3.Unpacker) -> Any:
        items = u.unpack_list(lambda: (u.unpack_int(), self.unpack_rs_name(u)))
        head = None
        for value, tag in reversed(items):
            head = self.s["rs_node"](value=value, tag=tag, next=head)
        return head

    def pack_rs_node(self, p: xdrlib3.Packer, v: Any) -> None:
        self._pack_node_fields(p, v)
        self.pack_rs_list(p, v.next)

    def unpack_rs_node(self, u: xdrlib3.Unpacker) -> Any:
        value, tag = u.unpack_int(), self.unpack_rs_name(u)
        return self.s["rs_node"](value=value, tag=tag, next=self.unpack_rs_list(u))

    def pack_rs_header(self, p: xdrlib3.Packer, v: Any) -> None:
        p.pack_uint(v.prog)
        p.pack_uint(v.vers)
        p.pack_int(v.proc)
        p.pack_enum(v.type)
        p.pack_uint(v.serial)
        p.pack_enum(v.status)

    def unpack_rs_header(self, u: xdrlib3.Unpacker) -> Any:
        return self.s["rs_header"](
            prog=u.unpack_uint(),
            vers=u.unpack_uint(),
            proc=u.unpack_int(),
            type=self.unpack_enum(u, "rs_msg_type"),
            serial=u.unpack_uint(),
            status=self.unpack_enum(u, "rs_msg_status"),
        )

    def pack_rs_domain_ref(self, p: xdrlib3.Packer, v: Any) -> None:
        self.pack_str(p, v.name)
        p.pack_fopaque(self.const["RS_UUID_LEN"], v.uuid)
        p.pack_int(v.id)

    def unpack_rs_domain_ref(self, u: xdrlib3.Unpacker) -> Any:
        return self.s["rs_domain_ref"](
            name=self.unpack_str(u, self.const["RS_STRING_MAX"]),
            uuid=bytes(u.unpack_fopaque(self.const["RS_UUID_LEN"])),
            id=u.unpack_int(),
        )

    def pack_rs_body(self, p: xdrlib3.Packer, v: Any) -> None:
        self.pack_str(p, v.name)
        p.pack_uhyper(v.capacity)
        p.pack_uhyper(v.allocation)
        p.pack_uint(v.flags)
        p.pack_array(v.cpus, p.pack_int)
        self.pack_optional(p, v.domain, lambda d: self.pack_rs_domain_ref(p, d))

    def unpack_rs_body(self, u: xdrlib3.Unpacker) -> Any:
        return self.s["rs_body"](
            name=self.unpack_str(u, self.const["RS_STRING_MAX"]),
            capacity=u.unpack_uhyper(),
            allocation=u.unpack_uhyper(),
            flags=u.unpack_uint(),
            cpus=u.unpack_array(u.unpack_int),
            domain=self.unpack_optional(u, lambda: self.unpack_rs_domain_ref(u)),
        )

    def pack_rs_message(self, p: xdrlib3.Packer, v: Any) -> None:
        self.pack_rs_header(p, v.header)
        self.pack_rs_body(p, v.body)

    def unpack_rs_message(self, u: xdrlib3.Unpacker) -> Any:
        header = self.unpack_rs_header(u)
        return self.s["rs_message"](header=header, body=self.unpack_rs_body(u))

    def pack_rs_chunk(self, p: xdrlib3.Packer, v: Any) -> None:
        p.pack_opaque(v.data)

    def unpack_rs_chunk(self, u: xdrlib3.Unpacker) -> Any:
        return self.s["rs_chunk"](data=bytes(u.unpack_opaque()))

    # -- unions ---------------------------------------------------------------------------------

    def pack_rs_by_int(self, p: xdrlib3.Packer, v: Any) -> None:
        code, arm = union_parts(v)
        p.pack_int(code)
        if code in (1, 2):
            p.pack_int(arm)
        elif code == -3:
            self.pack_str(p, arm)
        elif code != 0:
            p.pack_uhyper(arm)

    def unpack_rs_by_int(self, u: xdrlib3.Unpacker) -> Any:
        code = u.unpack_int()
        arm: Any = None
        if code in (1, 2):
            arm = u.unpack_int()
        elif code == -3:
            arm = self.unpack_str(u, 16)
        elif code != 0:
            arm = u.unpack_uhyper()
        return make_union(self.s["rs_by_int"], code, arm)

    def pack_rs_by_unsigned(self, p: xdrlib3.Packer, v: Any) -> None:
        kind, arm = union_parts(v)
        p.pack_uint(kind)
        if kind == 0:
            self.pack_rs_point(p, arm)
        elif kind == 0x10:
            p.pack_opaque(arm)
        elif kind == self.const["RS_MAX_POINTS"]:
            p.pack_farray(2, arm, lambda pt: self.pack_rs_point(p, pt))
        else:
            assert kind == 0xFFFFFFFF

    def unpack_rs_by_unsigned(self, u: xdrlib3.Unpacker) -> Any:
        kind = u.unpack_uint()
        arm: Any = None
        if kind == 0:
            arm = self.unpack_rs_point(u)
        elif kind == 0x10:
            arm = bytes(u.unpack_opaque())
            assert len(arm) <= 8
        elif kind == self.const["RS_MAX_POINTS"]:
            arm = u.unpack_farray(2, lambda: self.unpack_rs_point(u))
        else:
            assert kind == 0xFFFFFFFF
        return make_union(self.s["rs_by_unsigned"], kind, arm)

    def pack_rs_by_enum(self, p: xdrlib3.Packer, v: Any) -> None:
        color, arm = union_parts(v)
        p.pack_enum(color)
        if color in (self.const["RS_RED"], self.const["RS_GREEN"]):
            self.pack_str(p, arm)
        elif color == self.const["RS_INFRARED"]:
            p.pack_double(arm)

    def unpack_rs_by_enum(self, u: xdrlib3.Unpacker) -> Any:
        color = self.unpack_enum(u, "rs_color")
        arm: Any = None
        if color in (self.const["RS_RED"], self.const["RS_GREEN"]):
            arm = self.unpack_rs_name(u)
        elif color == self.const["RS_INFRARED"]:
            arm = u.unpack_double()
        return make_union(self.s["rs_by_enum"], color, arm)

    def pack_rs_by_bool(self, p: xdrlib3.Packer, v: Any) -> None:
        present, arm = union_parts(v)
        p.pack_bool(present)
        if present:
            self.pack_rs_limits(p, arm)

    def unpack_rs_by_bool(self, u: xdrlib3.Unpacker) -> Any:
        present = u.unpack_bool()
        arm = self.unpack_rs_limits(u) if present else None
        return make_union(self.s["rs_by_bool"], present, arm)

    # -- everything -----------------------------------------------------------------------------

    def pack_rs_everything(self, p: xdrlib3.Packer, v: Any) -> None:
        c = self.const
        p.pack_int(v.i)
        p.pack_uint(v.u)
        p.pack_uint(v.bare)
        p.pack_hyper(v.h)
        p.pack_uhyper(v.uh)
        p.pack_bool(v.flag)
        p.pack_float(v.f)
        p.pack_double(v.d)
        p.pack_enum(v.color)
        p.pack_int(v.temp)
        p.pack_fopaque(5, v.fixed_blob)
        p.pack_opaque(v.var_blob)
        p.pack_opaque(v.any_blob)
        self.pack_str(p, v.name)
        self.pack_str(p, v.anything)
        p.pack_fopaque(c["RS_UUID_LEN"], v.uuid)
        self.pack_str(p, v.alias)
        p.pack_uhyper(v.big)
        p.pack_farray(2, v.corners, lambda pt: self.pack_rs_point(p, pt))
        p.pack_array(v.path, lambda pt: self.pack_rs_point(p, pt))
        p.pack_array(v.counts, p.pack_int)
        p.pack_farray(3, v.palette, p.pack_enum)
        p.pack_array(v.hypers, p.pack_hyper)
        p.pack_array(v.names, lambda n: self.pack_str(p, n))
        self.pack_optional(p, v.maybe_point, lambda pt: self.pack_rs_point(p, pt))
        self.pack_optional(p, v.maybe_limits, lambda lim: self.pack_rs_limits(p, lim))
        self.pack_rs_by_int(p, v.by_int)
        self.pack_rs_by_unsigned(p, v.by_unsigned)
        self.pack_rs_by_enum(p, v.by_enum)
        self.pack_rs_by_bool(p, v.by_bool)
        p.pack_array(v.choices, lambda ch: self.pack_rs_by_int(p, ch))
        self.pack_rs_list(p, v.list)

    def unpack_rs_everything(self, u: xdrlib3.Unpacker) -> Any:
        c = self.const
        # Keyword arguments are evaluated in order, which is the wire order.
        return self.s["rs_everything"](
            i=u.unpack_int(),
            u=u.unpack_uint(),
            bare=u.unpack_uint(),
            h=u.unpack_hyper(),
            uh=u.unpack_uhyper(),
            flag=u.unpack_bool(),
            f=u.unpack_float(),
            d=u.unpack_double(),
            color=self.unpack_enum(u, "rs_color"),
            temp=u.unpack_int(),
            fixed_blob=bytes(u.unpack_fopaque(5)),
            var_blob=bytes(u.unpack_opaque()),
            any_blob=bytes(u.unpack_opaque()),
            name=self.unpack_str(u, c["RS_MAX_NAME"]),
            anything=self.unpack_str(u, None),
            uuid=bytes(u.unpack_fopaque(c["RS_UUID_LEN"])),
            alias=self.unpack_rs_name(u),
            big=u.unpack_uhyper(),
            corners=u.unpack_farray(2, lambda: self.unpack_rs_point(u)),
            path=u.unpack_array(lambda: self.unpack_rs_point(u)),
            counts=u.unpack_array(u.unpack_int),
            palette=u.unpack_farray(3, lambda: self.unpack_enum(u, "rs_color")),
            hypers=u.unpack_array(u.unpack_hyper),
            names=u.unpack_array(lambda: self.unpack_rs_name(u)),
            maybe_point=self.unpack_optional(u, lambda: self.unpack_rs_point(u)),
            maybe_limits=self.unpack_optional(u, lambda: self.unpack_rs_limits(u)),
            by_int=self.unpack_rs_by_int(u),
            by_unsigned=self.unpack_rs_by_unsigned(u),
            by_enum=self.unpack_rs_by_enum(u),
            by_bool=self.unpack_rs_by_bool(u),
            choices=u.unpack_array(lambda: self.unpack_rs_by_int(u)),
            list=self.unpack_rs_list(u),
        )


@pytest.fixture(scope="module")
def schema() -> Any:
    return rich_schema()


@pytest.fixture(scope="module")
def mirror(schema: Any) -> XdrlibMirror:
    return XdrlibMirror(schema)


@pytest.fixture(scope="module")
def strategies(schema: Any) -> RichStrategies:
    return RichStrategies(schema)


def xdrlib3_bytes(mirror: XdrlibMirror, type_name: str, value: Any) -> bytes:
    packer = xdrlib3.Packer()
    mirror.pack[type_name](packer, value)
    return packer.get_buffer()


def xdrlib3_value(mirror: XdrlibMirror, type_name: str, data: bytes) -> Any:
    unpacker = xdrlib3.Unpacker(data)
    value = mirror.unpack[type_name](unpacker)
    unpacker.done()  # the whole buffer was one value
    return value


@pytest.mark.parametrize("type_name", RICH_TYPES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pack_matches_xdrlib3_and_xdrlib3_reads_ours(
    schema: Any,
    mirror: XdrlibMirror,
    strategies: RichStrategies,
    type_name: str,
    data: st.DataObject,
) -> None:
    codec = schema[type_name]
    value = data.draw(strategies.by_type[type_name], label=type_name)

    ours = codec.pack(value)

    assert ours == xdrlib3_bytes(mirror, type_name, value)
    assert xdrlib3_value(mirror, type_name, ours) == value
    assert codec.unpack(ours) == value
    assert codec.unpack(ours, zero_copy=True) == value  # opaque as memoryview slices


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_everything_stream_of_values_decodes_in_sequence(
    schema: Any, mirror: XdrlibMirror, strategies: RichStrategies, data: st.DataObject
) -> None:
    """Several values back to back in one xdrlib3 buffer: unpack_from's end offsets line
    up with xdrlib3's positions, so no value over- or under-reads its neighbour."""
    names = data.draw(st.lists(st.sampled_from(RICH_TYPES), min_size=1, max_size=6))
    values = [data.draw(strategies.by_type[n], label=n) for n in names]
    packer = xdrlib3.Packer()
    for name, value in zip(names, values, strict=True):
        mirror.pack[name](packer, value)
    buf = packer.get_buffer()

    offset = 0
    unpacker = xdrlib3.Unpacker(buf)
    for name, value in zip(names, values, strict=True):
        decoded, offset = schema[name].unpack_from(buf, offset)
        mirror.unpack[name](unpacker)
        assert decoded == value
        assert offset == unpacker.get_position()
    assert offset == len(buf)

"""Differential test against construct (issue 2, "Correctness against independent
implementations"): rich.x written as declarative construct definitions, independently of
the compiler. For generated values our bytes equal construct's `build`, and construct's
`parse` of our bytes is the same value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import construct as c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import RICH_TYPES, RichStrategies, make_union, rich_schema, union_parts


class DataclassAdapter(c.Adapter):  # type: ignore[misc]
    """A construct Struct seen as one of the generated dataclasses."""

    def __init__(self, cls: Any, subcon: c.Construct) -> None:
        super().__init__(subcon)
        self.cls = cls
        self.names = [f.name for f in dataclasses.fields(cls)]

    def _decode(self, obj: Any, context: Any, path: str) -> Any:
        return self.cls(**{name: obj[name] for name in self.names})

    def _encode(self, obj: Any, context: Any, path: str) -> Any:
        return {name: getattr(obj, name) for name in self.names}


class EnumAdapter(c.Adapter):  # type: ignore[misc]
    def __init__(self, cls: Any) -> None:
        super().__init__(c.Int32sb)
        self.cls = cls

    def _decode(self, obj: int, context: Any, path: str) -> Any:
        return self.cls(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        return int(obj)


class XdrOptional(c.Adapter):  # type: ignore[misc]
    """XDR optional-data: a 0/1 flag word, then the value when the flag is 1."""

    def __init__(self, subcon: c.Construct) -> None:
        super().__init__(
            c.Struct("present" / c.Int32ub, "value" / c.If(c.this.present == 1, subcon))
        )

    def _decode(self, obj: Any, context: Any, path: str) -> Any:
        assert obj.present in (0, 1)
        return obj.value if obj.present else None

    def _encode(self, obj: Any, context: Any, path: str) -> Any:
        return {"present": int(obj is not None), "value": obj}


class UnionAdapter(c.Adapter):  # type: ignore[misc]
    """An XDR union: the discriminant, then the arm that Switch picks from it."""

    def __init__(
        self, cls: Any, discriminant: c.Construct, arms: dict[Any, c.Construct], default: Any
    ) -> None:
        super().__init__(
            c.Struct("disc" / discriminant, "arm" / c.Switch(c.this.disc, arms, default))
        )
        self.cls = cls

    def _decode(self, obj: Any, context: Any, path: str) -> Any:
        return make_union(self.cls, obj.disc, obj.arm)

    def _encode(self, obj: Any, context: Any, path: str) -> Any:
        disc, arm = union_parts(obj)
        return {"disc": disc, "arm": arm}


XdrBool = c.ExprAdapter(c.Int32ub, lambda obj, ctx: bool(obj), lambda obj, ctx: int(obj))


def xdr_string(max_bytes: int | None = None) -> c.Construct:
    del max_bytes  # construct does not check the bound; the values respect it
    return c.Aligned(4, c.PascalString(c.Int32ub, "utf8"))


def fixed_opaque(size: int) -> c.Construct:
    return c.Aligned(4, c.Bytes(size))


VarOpaque = c.Aligned(4, c.Prefixed(c.Int32ub, c.GreedyBytes))


def rich_constructs(schema: Any) -> dict[str, c.Construct]:
    """rich.x in construct, type by type."""
    s, k = schema, schema.constants
    color = EnumAdapter(s["rs_color"])
    name = xdr_string(k["RS_MAX_NAME"])
    uuid = fixed_opaque(k["RS_UUID_LEN"])
    point = DataclassAdapter(s["rs_point"], c.Struct("x" / c.Int32sb, "y" / c.Int32sb))
    limits = DataclassAdapter(
        s["rs_limits"],
        c.Struct("lo" / c.Int64sb, "hi" / c.Int64ub, "ratio" / c.Float32b, "precise" / c.Float64b),
    )
    by_int = UnionAdapter(
        s["rs_by_int"],
        c.Int32sb,
        {0: c.Pass, 1: c.Int32sb, 2: c.Int32sb, -3: xdr_string(16)},
        default=c.Int64ub,
    )
    by_unsigned = UnionAdapter(
        s["rs_by_unsigned"],
        c.Int32ub,
        {0: point, 0x10: VarOpaque, k["RS_MAX_POINTS"]: c.Array(2, point), 0xFFFFFFFF: c.Pass},
        default=c.Error,
    )
    by_enum = UnionAdapter(
        s["rs_by_enum"],
        color,
        {
            k["RS_RED"]: name,
            k["RS_GREEN"]: name,
            k["RS_BLUE"]: c.Pass,
            k["RS_INFRARED"]: c.Float64b,
        },
        default=c.Error,
    )
    by_bool = UnionAdapter(s["rs_by_bool"], XdrBool, {True: limits, False: c.Pass}, c.Error)
    node = DataclassAdapter(
        s["rs_node"],
        c.Struct(
            "value" / c.Int32sb,
            "tag" / name,
            "next" / XdrOptional(c.LazyBound(lambda: node)),
        ),
    )
    rs_list = XdrOptional(node)
    everything = DataclassAdapter(
        s["rs_everything"],
        c.Struct(
            "i" / c.Int32sb,
            "u" / c.Int32ub,
            "bare" / c.Int32ub,
            "h" / c.Int64sb,
            "uh" / c.Int64ub,
            "flag" / XdrBool,
            "f" / c.Float32b,
            "d" / c.Float64b,
            "color" / color,
            "temp" / c.Int32sb,
            "fixed_blob" / fixed_opaque(5),
            "var_blob" / VarOpaque,
            "any_blob" / VarOpaque,
            "name" / name,
            "anything" / xdr_string(),
            "uuid" / uuid,
            "alias" / name,
            "big" / c.Int64ub,
            "corners" / c.Array(2, point),
            "path" / c.PrefixedArray(c.Int32ub, point),
            "counts" / c.PrefixedArray(c.Int32ub, c.Int32sb),
            "palette" / c.Array(3, color),
            "hypers" / c.PrefixedArray(c.Int32ub, c.Int64sb),
            "names" / c.PrefixedArray(c.Int32ub, name),
            "maybe_point" / XdrOptional(point),
            "maybe_limits" / XdrOptional(limits),
            "by_int" / by_int,
            "by_unsigned" / by_unsigned,
            "by_enum" / by_enum,
            "by_bool" / by_bool,
            "choices" / c.PrefixedArray(c.Int32ub, by_int),
            "list" / rs_list,
        ),
    )
    header = DataclassAdapter(
        s["rs_header"],
        c.Struct(
            "prog" / c.Int32ub,
            "vers" / c.Int32ub,
            "proc" / c.Int32sb,
            "type" / EnumAdapter(s["rs_msg_type"]),
            "serial" / c.Int32ub,
            "status" / EnumAdapter(s["rs_msg_status"]),
        ),
    )
    domain_ref = DataclassAdapter(
        s["rs_domain_ref"],
        c.Struct("name" / xdr_string(k["RS_STRING_MAX"]), "uuid" / uuid, "id" / c.Int32sb),
    )
    body = DataclassAdapter(
        s["rs_body"],
        c.Struct(
            "name" / xdr_string(k["RS_STRING_MAX"]),
            "capacity" / c.Int64ub,
            "allocation" / c.Int64ub,
            "flags" / c.Int32ub,
            "cpus" / c.PrefixedArray(c.Int32ub, c.Int32sb),
            "domain" / XdrOptional(domain_ref),
        ),
    )
    return {
        "rs_color": color,
        "rs_u64": c.Int64ub,
        "rs_uuid": uuid,
        "rs_name": name,
        "rs_temp": c.Int32sb,
        "rs_point": point,
        "rs_limits": limits,
        "rs_by_int": by_int,
        "rs_by_unsigned": by_unsigned,
        "rs_by_enum": by_enum,
        "rs_by_bool": by_bool,
        "rs_node": node,
        "rs_list": rs_list,
        "rs_everything": everything,
        "rs_msg_type": EnumAdapter(s["rs_msg_type"]),
        "rs_msg_status": EnumAdapter(s["rs_msg_status"]),
        "rs_header": header,
        "rs_domain_ref": domain_ref,
        "rs_body": body,
        "rs_message": DataclassAdapter(s["rs_message"], c.Struct("header" / header, "body" / body)),
        "rs_chunk": DataclassAdapter(s["rs_chunk"], c.Struct("data" / VarOpaque)),
    }


@pytest.fixture(scope="module")
def schema() -> Any:
    return rich_schema()


@pytest.fixture(scope="module")
def constructs(schema: Any) -> dict[str, c.Construct]:
    # Terminated: construct must consume exactly our bytes, as our unpack does.
    return {
        name: c.FocusedSeq("value", "value" / con, c.Terminated)
        for name, con in rich_constructs(schema).items()
    }


@pytest.fixture(scope="module")
def strategies(schema: Any) -> RichStrategies:
    return RichStrategies(schema)


@pytest.mark.parametrize("type_name", RICH_TYPES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pack_matches_construct_build_and_construct_parses_ours(
    schema: Any,
    constructs: dict[str, c.Construct],
    strategies: RichStrategies,
    type_name: str,
    data: st.DataObject,
) -> None:
    value = data.draw(strategies.by_type[type_name], label=type_name)

    ours = schema[type_name].pack(value)

    assert ours == constructs[type_name].build(value)
    assert constructs[type_name].parse(ours) == value


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_construct_built_bytes_decode_to_the_same_value(
    schema: Any, constructs: dict[str, c.Construct], strategies: RichStrategies, data: st.DataObject
) -> None:
    """The other direction: bytes construct builds are read by our unpack as the value."""
    type_name = data.draw(st.sampled_from(RICH_TYPES))
    value = data.draw(strategies.by_type[type_name], label=type_name)

    assert schema[type_name].unpack(constructs[type_name].build(value)) == value

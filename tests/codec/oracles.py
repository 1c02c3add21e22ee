"""Shared helpers of the differential tests: the rich.x schema and hand-written hypothesis
strategies for its types (issue 2, "Correctness against independent implementations").

Values are the codec's own Python values (dataclasses, IntEnums, union dataclasses), so every
oracle (xdrlib3, construct, libtirpc) is checked against exactly what users handle. The
only place that knows the generated union class's shape is `make_union`/`union_parts`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from xdrstream.codec import load_schema

RICH_X = Path(__file__).parent / "schemas" / "rich.x"

# Bounds for the unbounded `<>` types: generated values stay small so tests stay fast.
UNBOUNDED_CAP = 300

I32 = (-(2**31), 2**31 - 1)
U32 = (0, 2**32 - 1)
I64 = (-(2**63), 2**63 - 1)
U64 = (0, 2**64 - 1)


@functools.cache
def rich_schema() -> Any:
    return load_schema(RICH_X)


# ---- the generated union class: the one place that knows its shape -------------------------


def _discriminant_name(cls: Any) -> str:
    # Generated union classes are dataclasses of two fields: the discriminant (named after
    # its .x declaration) and `value`, the arm's value.
    return next(f.name for f in dataclasses.fields(cls) if f.name != "value")


def make_union(cls: Any, discriminant: int, arm: Any = None) -> Any:
    """A value of union class `cls` with the given discriminant and arm value."""
    return cls(**{_discriminant_name(cls): discriminant, "value": arm})


def union_parts(value: Any) -> tuple[int, Any]:
    """(discriminant as int, arm value) of a union value; the arm value is None when void."""
    return int(getattr(value, _discriminant_name(type(value)))), value.value


# ---- strategies ------------------------------------------------------------------------------


def ints(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    lo, hi = bounds
    return st.one_of(st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 2]), st.integers(lo, hi))


def xdr_strings(max_bytes: int, *, c_safe: bool) -> st.SearchStrategy[str]:
    """str whose UTF-8 encoding fits `max_bytes` (the XDR bound counts bytes, not chars).

    C strings end at NUL, so `c_safe` leaves NUL out for values that libtirpc re-encodes.
    """
    chars = st.characters(codec="utf-8", exclude_characters="\x00" if c_safe else "")
    return st.text(chars, max_size=max_bytes).map(
        lambda s: s.encode()[:max_bytes].decode("utf-8", "ignore")
    )


class RichStrategies:
    """Hypothesis strategies for the rich.x types, written by hand, type by type."""

    def __init__(self, schema: Any, *, c_safe: bool = False) -> None:
        self.schema = schema
        self.c_safe = c_safe
        const = schema.constants
        self.max_name = const["RS_MAX_NAME"]
        s = schema
        self.i32, self.u32, self.i64, self.u64 = ints(I32), ints(U32), ints(I64), ints(U64)
        self.f32 = st.floats(width=32, allow_nan=False)
        self.f64 = st.floats(allow_nan=False)
        self.color = st.sampled_from(list(s["rs_color"]))
        self.name = self.string(self.max_name)
        self.point = st.builds(s["rs_point"], x=self.i32, y=self.i32)
        self.limits = st.builds(
            s["rs_limits"], lo=self.i64, hi=self.u64, ratio=self.f32, precise=self.f64
        )
        self.by_int = self._by_int()
        self.by_unsigned = self._by_unsigned()
        self.by_enum = self._by_enum()
        self.by_bool = st.one_of(
            st.builds(make_union, st.just(s["rs_by_bool"]), st.just(True), self.limits),
            st.builds(make_union, st.just(s["rs_by_bool"]), st.just(False)),
        )
        self.list = self._list()
        self.node = st.builds(s["rs_node"], value=self.i32, tag=self.name, next=self.list)
        self.everything = self._everything()
        self.header = st.builds(
            s["rs_header"],
            prog=self.u32,
            vers=self.u32,
            proc=self.i32,
            type=st.sampled_from(list(s["rs_msg_type"])),
            serial=self.u32,
            status=st.sampled_from(list(s["rs_msg_status"])),
        )
        self.domain_ref = st.builds(
            s["rs_domain_ref"],
            name=self.string(const["RS_STRING_MAX"]),
            uuid=self.fixed_opaque(const["RS_UUID_LEN"]),
            id=self.i32,
        )
        self.body = st.builds(
            s["rs_body"],
            name=self.string(const["RS_STRING_MAX"]),
            capacity=self.u64,
            allocation=self.u64,
            flags=self.u32,
            cpus=st.lists(self.i32, max_size=const["RS_NUM_CPUS"]),
            domain=st.none() | self.domain_ref,
        )
        self.message = st.builds(s["rs_message"], header=self.header, body=self.body)
        self.chunk = st.builds(s["rs_chunk"], data=self.opaque(UNBOUNDED_CAP))
        self.by_type: dict[str, st.SearchStrategy[Any]] = {
            "rs_color": self.color,
            "rs_u64": self.u64,
            "rs_uuid": self.fixed_opaque(const["RS_UUID_LEN"]),
            "rs_name": self.name,
            "rs_temp": self.i32,
            "rs_point": self.point,
            "rs_limits": self.limits,
            "rs_by_int": self.by_int,
            "rs_by_unsigned": self.by_unsigned,
            "rs_by_enum": self.by_enum,
            "rs_by_bool": self.by_bool,
            "rs_node": self.node,
            "rs_list": self.list,
            "rs_everything": self.everything,
            "rs_msg_type": st.sampled_from(list(s["rs_msg_type"])),
            "rs_msg_status": st.sampled_from(list(s["rs_msg_status"])),
            "rs_header": self.header,
            "rs_domain_ref": self.domain_ref,
            "rs_body": self.body,
            "rs_message": self.message,
            "rs_chunk": self.chunk,
        }

    def string(self, max_bytes: int) -> st.SearchStrategy[str]:
        return xdr_strings(max_bytes, c_safe=self.c_safe)

    @staticmethod
    def opaque(max_size: int) -> st.SearchStrategy[bytes]:
        return st.binary(max_size=max_size)

    @staticmethod
    def fixed_opaque(size: int) -> st.SearchStrategy[bytes]:
        return st.binary(min_size=size, max_size=size)

    def _by_int(self) -> st.SearchStrategy[Any]:
        cls = self.schema["rs_by_int"]

        def arm(code: st.SearchStrategy[int], value: st.SearchStrategy[Any]) -> Any:
            return st.builds(make_union, st.just(cls), code, value)

        return st.one_of(
            st.builds(make_union, st.just(cls), st.just(0)),
            arm(st.sampled_from([1, 2]), self.i32),
            arm(st.just(-3), self.string(16)),
            arm(self.i32.filter(lambda c: c not in (0, 1, 2, -3)), self.u64),
        )

    def _by_unsigned(self) -> st.SearchStrategy[Any]:
        cls = self.schema["rs_by_unsigned"]
        return st.one_of(
            st.builds(make_union, st.just(cls), st.just(0), self.point),
            st.builds(make_union, st.just(cls), st.just(0x10), self.opaque(8)),
            st.builds(
                make_union,
                st.just(cls),
                st.just(self.schema.constants["RS_MAX_POINTS"]),
                st.lists(self.point, min_size=2, max_size=2),
            ),
            st.builds(make_union, st.just(cls), st.just(0xFFFFFFFF)),
        )

    def _by_enum(self) -> st.SearchStrategy[Any]:
        cls, color = self.schema["rs_by_enum"], self.schema["rs_color"]
        return st.one_of(
            st.builds(
                make_union, st.just(cls), st.sampled_from([color.RS_RED, color.RS_GREEN]), self.name
            ),
            st.builds(make_union, st.just(cls), st.just(color.RS_BLUE)),
            st.builds(make_union, st.just(cls), st.just(color.RS_INFRARED), self.f64),
        )

    def _list(self) -> st.SearchStrategy[Any]:
        """rs_list: None or a chain of rs_node, built from a Python list of (value, tag)."""
        node = self.schema["rs_node"]

        def chain(items: list[tuple[int, str]]) -> Any:
            head = None
            for value, tag in reversed(items):
                head = node(value=value, tag=tag, next=head)
            return head

        return st.lists(st.tuples(self.i32, self.name), max_size=5).map(chain)

    def _everything(self) -> st.SearchStrategy[Any]:
        s, const = self.schema, self.schema.constants
        return st.builds(
            s["rs_everything"],
            i=self.i32,
            u=self.u32,
            bare=self.u32,
            h=self.i64,
            uh=self.u64,
            flag=st.booleans(),
            f=self.f32,
            d=self.f64,
            color=self.color,
            temp=self.i32,
            fixed_blob=self.fixed_opaque(5),
            var_blob=self.opaque(const["RS_MAX_BLOB"]),
            any_blob=self.opaque(UNBOUNDED_CAP),
            name=self.name,
            anything=self.string(UNBOUNDED_CAP),
            uuid=self.fixed_opaque(const["RS_UUID_LEN"]),
            alias=self.name,
            big=self.u64,
            corners=st.lists(self.point, min_size=2, max_size=2),
            path=st.lists(self.point, max_size=const["RS_MAX_POINTS"]),
            counts=st.lists(self.i32, max_size=40),
            palette=st.lists(self.color, min_size=3, max_size=3),
            hypers=st.lists(self.i64, max_size=4),
            names=st.lists(self.name, max_size=4),
            maybe_point=st.none() | self.point,
            maybe_limits=st.none() | self.limits,
            by_int=self.by_int,
            by_unsigned=self.by_unsigned,
            by_enum=self.by_enum,
            by_bool=self.by_bool,
            choices=st.lists(self.by_int, max_size=3),
            list=self.list,
        )


# Every type of rich.x that the differential tests exercise, with its strategy's name.
RICH_TYPES: tuple[str, ...] = (
    "rs_color",
    "rs_u64",
    "rs_uuid",
    "rs_name",
    "rs_temp",
    "rs_point",
    "rs_limits",
    "rs_by_int",
    "rs_by_unsigned",
    "rs_by_enum",
    "rs_by_bool",
    "rs_node",
    "rs_list",
    "rs_everything",
    "rs_msg_type",
    "rs_msg_status",
    "rs_header",
    "rs_domain_ref",
    "rs_body",
    "rs_message",
    "rs_chunk",
)

"""Hypothesis strategies for valid values of any type of a compiled schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from xdrstream.codec import Schema
from xdrstream.codec import model as m

SCHEMAS = Path(__file__).parent / "schemas"
EVERYTHING = SCHEMAS / "everything.x"

# Keep generated values small: recursion depth and collection sizes.
_MAX_NEST = 3
_MAX_ITEMS = 4


def value_strategy(schema: Schema, t: m.XType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Valid Python values of the model type ``t`` of ``schema``."""
    if isinstance(t, m.Prim):
        if t.kind == "float":
            return st.floats(width=32, allow_nan=False)
        if t.kind == "double":
            return st.floats(allow_nan=False)
        return st.integers(t.lo, t.hi)
    if isinstance(t, m.Bool):
        return st.booleans()
    if isinstance(t, m.Enum):
        cls = schema[t.name]
        return st.sampled_from(list(cls))
    if isinstance(t, m.String):
        # Size in characters; the encoded size is checked by filtering.
        return st.text(max_size=min(t.size, 12)).filter(lambda s: len(s.encode()) <= t.size)
    if isinstance(t, m.Opaque):
        if t.fixed:
            return st.binary(min_size=t.size, max_size=t.size)
        return st.binary(max_size=min(t.size, 24))
    if isinstance(t, m.Optional):
        if depth >= _MAX_NEST:
            return st.none()
        return st.one_of(st.none(), value_strategy(schema, t.element, depth + 1))
    if isinstance(t, m.Array):
        if t.fixed:
            elem = value_strategy(schema, t.element, depth + 1)
            return st.lists(elem, min_size=t.size, max_size=t.size)
        if depth >= _MAX_NEST:
            return st.just([])
        limit = min(t.size, _MAX_ITEMS)
        return st.lists(value_strategy(schema, t.element, depth + 1), max_size=limit)
    if isinstance(t, m.Struct):
        cls = schema[t.name]
        fields = {f.py: value_strategy(schema, f.type, depth + 1) for f in t.fields}
        return st.builds(cls, **fields)
    assert isinstance(t, m.Union_)
    cls = schema[t.name]
    dtype = t.discriminant_type
    assert dtype is not None
    options: list[st.SearchStrategy[Any]] = []

    def discriminant(n: int) -> Any:
        if isinstance(dtype, m.Enum):
            return schema[dtype.name](n)
        if isinstance(dtype, m.Bool):
            return bool(n)
        return n

    for arm in t.arms:
        arm_value = st.none() if arm.type is None else value_strategy(schema, arm.type, depth + 1)
        options.append(
            st.builds(
                lambda d, v: cls(d, v), st.sampled_from(arm.labels).map(discriminant), arm_value
            )
        )
    if t.default is not None:
        labels = {n for arm in t.arms for n in arm.labels}
        if isinstance(dtype, m.Enum):
            others = [n for n in dtype.members.values() if n not in labels]
            disc = st.sampled_from(others) if others else st.nothing()
        else:
            assert isinstance(dtype, m.Prim)
            disc = st.integers(dtype.lo, dtype.hi).filter(lambda n: n not in labels)
        default_value = (
            st.none()
            if t.default.type is None
            else value_strategy(schema, t.default.type, depth + 1)
        )
        options.append(st.builds(lambda d, v: cls(d, v), disc.map(discriminant), default_value))
    return st.one_of(options)


def strategy_for(schema: Schema, name: str) -> st.SearchStrategy[Any]:
    return value_strategy(schema, schema.xtype(name))

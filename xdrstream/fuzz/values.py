"""Plain (hypothesis-free) value helpers on the codec's type model."""

from __future__ import annotations

import itertools
import random
from typing import Any

from xdrstream.codec import Schema
from xdrstream.codec import model as m

__all__ = ["discriminant_value", "minimal_value", "random_value"]


def discriminant_value(classes: Any, t: m.Union_, n: int) -> Any:
    """The Python value of discriminant ``n`` (enum member, bool or int)."""
    dtype = t.discriminant_type
    if isinstance(dtype, m.Enum):
        return classes[id(dtype)](n)
    if isinstance(dtype, m.Bool):
        return bool(n)
    return n


def minimal_value(schema: Schema, t: m.XType) -> Any:
    """A value of ``t`` with the smallest encoding (``Model.min_size``): what recursion
    falls back to when the budget is spent."""
    classes = schema.interpreter().classes
    sizes = schema.model.min_size

    def size(x: m.XType | None) -> float:
        return 0 if x is None else sizes.get(id(x), 0)

    def build(x: m.XType, guard: int) -> Any:
        if guard > 10_000:
            raise RecursionError(f"no finite minimal value for {m.type_label(t)}")
        if isinstance(x, m.Prim):
            return 0.0 if x.kind in ("float", "double") else max(x.lo, 0)
        if isinstance(x, m.Bool):
            return False
        if isinstance(x, m.Enum):
            cls = classes[id(x)]
            return cls(min(x.members.values(), key=abs))
        if isinstance(x, m.String):
            return ""
        if isinstance(x, m.Opaque):
            return bytes(x.size) if x.fixed else b""
        if isinstance(x, m.Optional):
            return None
        if isinstance(x, m.Array):
            return [build(x.element, guard + 1) for _ in range(x.size)] if x.fixed else []
        if isinstance(x, m.Struct):
            return classes[id(x)](*(build(f.type, guard + 1) for f in x.fields))
        arms: list[tuple[m.Arm, int]] = [(a, a.labels[0]) for a in x.arms]
        if x.default is not None:
            others = _default_discriminant(x)
            if others is not None:
                arms.append((x.default, others))
        arm, label = min(arms, key=lambda pair: size(pair[0].type))
        disc = discriminant_value(classes, x, label)
        return classes[id(x)](disc, None if arm.type is None else build(arm.type, guard + 1))

    return build(t, 0)


def _default_discriminant(t: m.Union_) -> int | None:
    labels = {n for arm in t.arms for n in arm.labels}
    dtype = t.discriminant_type
    if isinstance(dtype, m.Enum):
        return next((n for n in dtype.members.values() if n not in labels), None)
    if isinstance(dtype, m.Bool):
        return next((n for n in (0, 1) if n not in labels), None)
    assert isinstance(dtype, m.Prim)
    return next(n for n in itertools.count(0) if n not in labels)


def random_value(
    schema: Schema, t: m.XType, rng: random.Random, depth: int = 3, items: int = 4, size: int = 32
) -> Any:
    """A valid value of ``t`` drawn with ``rng`` (no hypothesis needed): the same rules as
    :func:`xdrstream.fuzz.strategies.strategy_for` with a plain random walk; recursion
    beyond ``depth`` falls back to :func:`minimal_value`."""
    classes = schema.interpreter().classes

    def draw(x: m.XType, level: int) -> Any:
        if isinstance(x, (m.Struct, m.Union_)) and x.recursive:
            level += 1
            if level > depth:
                return minimal_value(schema, x)
        if isinstance(x, m.Prim):
            if x.kind in ("float", "double"):
                return float(rng.choice([0.0, -1.5, 1e10, rng.random()]))
            return (
                rng.choice([x.lo, x.hi, 0, 1, rng.randint(x.lo, x.hi)]) if x.lo < 0 or x.hi else 0
            )
        if isinstance(x, m.Bool):
            return rng.random() < 0.5
        if isinstance(x, m.Enum):
            return classes[id(x)](rng.choice(list(x.members.values())))
        if isinstance(x, m.String):
            n = rng.randint(0, min(x.size, size))
            text = "".join(rng.choice("abcxyz09 _-é€") for _ in range(n))
            raw = text.encode()[: min(x.size, size)]
            return raw.decode("utf-8", errors="ignore")
        if isinstance(x, m.Opaque):
            return rng.randbytes(x.size if x.fixed else rng.randint(0, min(x.size, size)))
        if isinstance(x, m.Optional):
            return None if rng.random() < 0.4 else draw(x.element, level)
        if isinstance(x, m.Array):
            n = x.size if x.fixed else rng.randint(0, min(x.size, items))
            return [draw(x.element, level) for _ in range(n)]
        if isinstance(x, m.Struct):
            return classes[id(x)](*(draw(f.type, level) for f in x.fields))
        choices: list[tuple[m.Arm, int]] = [(a, rng.choice(a.labels)) for a in x.arms]
        if x.default is not None:
            other = _default_discriminant(x)
            if other is not None:
                choices.append((x.default, other))
        arm, label = rng.choice(choices)
        value = None if arm.type is None else draw(arm.type, level)
        return classes[id(x)](discriminant_value(classes, x, label), value)

    return draw(t, 0)

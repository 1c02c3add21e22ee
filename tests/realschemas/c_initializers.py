"""Reads libvirt's rpcgen test program (``scripts/rpcgen/tests/test_demo.c``) into cases:
the C value each test builds, the golden file it compares with, whether libvirt expects
the encoding to fail; and turns each C value into the Python value of our codec, guided by
the compiled ``demo.x`` schema (the C initializer alone does not say a type).

The C subset is what ``test_demo.c`` uses: designated and positional brace initializers,
compound literals ``(T[]) {...}``, casts, ``&local`` pointers to earlier locals, ``NULL``,
integer/float/char/string literals, enum constants and object-like ``#define`` macros.
Conversion follows C: missing members and elements are zero, integers wrap into their
type's range (``unsigned hyper suh = -87539319``), a ``float`` is rounded to single
precision, a variable array ``{.X_len = n, .X_val = (T[]) {...}}`` has n elements (those
given, then zeros, as reading past the literal would give in C only by chance; libvirt's
cases that do so expect failure on length alone).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from xdrstream.codec import Schema
from xdrstream.codec import model as m

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<float>\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)
      | (?P<int>0[xX][0-9a-fA-F]+|\d+)[uUlL]*
      | (?P<char>'(?:\\.|[^'])')
      | (?P<string>"(?:\\.|[^"])*")
      | (?P<name>[A-Za-z_]\w*)
      | (?P<punct>[{}()\[\],.=&*;-])
    )""",
    re.X,
)


@dataclass(frozen=True)
class Ref:
    """``&name``: a pointer to an earlier local."""

    name: str


@dataclass(frozen=True)
class Name:
    """An identifier that is not a macro: an enum constant, NULL, true/false."""

    name: str


@dataclass(frozen=True)
class Brace:
    """``{...}``: (designator or None, value) items."""

    items: tuple[tuple[str | None, Any], ...]


def tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot read C at {text[pos : pos + 30]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Reader:
    def __init__(self, toks: list[tuple[str, str]], macros: dict[str, list[tuple[str, str]]]):
        self.toks, self.pos, self.macros = toks, 0, macros

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        k = self.pos + ahead
        return self.toks[k] if k < len(self.toks) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ValueError(f"expected {value!r}, found {tok[1]!r}")
        self.pos += 1
        return tok

    def cast_ahead(self) -> bool:
        """``(Type)``, ``(Type *)``, ``(Type[])``: a cast or compound literal's type."""
        if self.peek()[1] != "(" or self.peek(1)[0] != "name":
            return False
        k = 2
        while self.peek(k)[1] in ("*", "[", "]"):
            k += 1
        return self.peek(k)[1] == ")"

    def value(self) -> Any:
        kind, text = self.peek()
        if self.cast_ahead():
            while self.take()[1] != ")":
                pass
            return self.value()
        if text == "{":
            return self.brace()
        if text == "&":
            self.take()
            return Ref(self.take()[1])
        if text == "-":
            self.take()
            return -self.value()
        if text == "(":
            self.take()
            inner = self.value()
            self.take(")")
            return inner
        self.take()
        if kind == "int":
            return (
                int(text, 16)
                if text[:2].lower() == "0x"
                else int(text, 8 if text[0] == "0" and len(text) > 1 else 10)
            )
        if kind == "float":
            return float(text)
        if kind == "char":
            return ord(bytes(text[1:-1], "ascii").decode("unicode_escape"))
        if kind == "string":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "name":
            if text in self.macros:
                return _Reader(self.macros[text], self.macros).value()
            return None if text == "NULL" else Name(text)
        raise ValueError(f"unexpected {text!r}")

    def brace(self) -> Brace:
        self.take("{")
        items: list[tuple[str | None, Any]] = []
        while self.peek()[1] != "}":
            designator = None
            if self.peek()[1] == ".":
                self.take()
                designator = self.take()[1]
                self.take("=")
            items.append((designator, self.value()))
            if self.peek()[1] == ",":
                self.take()
        self.take("}")
        return Brace(tuple(items))


def read_value(text: str, macros: dict[str, list[tuple[str, str]]]) -> Any:
    return _Reader(tokens(text), macros).value()


@dataclass(frozen=True)
class Case:
    test: str  # the C function, test_struct_all_types
    type_name: str  # the .x type of xdr_T
    golden: str  # test_demo_<golden>.bin
    fail: bool  # libvirt expects the encoding to fail
    value: Any  # the C value, as read (Brace, int, Ref, ...)
    locals: dict[str, Any]  # earlier locals, for Ref


_FUNCTION = re.compile(r"static void (test_\w+)\(void\)\s*\{(.*?)\n\}", re.S)
_CALL = re.compile(
    r'test_xdr\(\(xdrproc_t\)\s*xdr_(\w+),\s*&?(\w+),\s*&?\w+,\s*"(\w+)",\s*(true|false)\)'
)
_LOCAL = re.compile(r"^\s*(?:g_auto\(\w+\)|[A-Za-z_]\w*\s*\**)\s*(\w+)\s*=\s*(.*?);\s*$", re.S)


def _macros(source: str) -> dict[str, list[tuple[str, str]]]:
    found = {}
    for name, body in re.findall(r"^#define (\w+) (.+)$", source, re.M):
        try:
            found[name] = tokens(body)
        except ValueError:
            continue
    return found


def _statements(body: str) -> list[str]:
    """The body's statements: split at ';' outside braces and parentheses."""
    out, depth, start = [], 0, 0
    for k, ch in enumerate(body):
        depth += ch in "({"
        depth -= ch in ")}"
        if ch == ";" and depth == 0:
            out.append(body[start : k + 1])
            start = k + 1
    return out


def read_cases(source: str) -> list[Case]:
    """Every test function of test_demo.c that calls test_xdr, in file order."""
    macros = _macros(source)
    cases = []
    for function, body in _FUNCTION.findall(source):
        call = _CALL.search(body)
        if call is None:
            continue
        type_name, orig, golden, fail = call.groups()
        locals_: dict[str, Any] = {}
        for statement in _statements(body):
            local = _LOCAL.match(statement)
            if local is not None and not statement.lstrip().startswith("g_auto"):
                locals_[local.group(1)] = read_value(local.group(2), macros)
        cases.append(Case(function, type_name, golden, fail == "true", locals_[orig], locals_))
    return cases


# ---- C value -> Python value, by the schema's type ------------------------------------------


class Converter:
    """Builds our Python value of a C value; notes undeclared enum values it had to use."""

    def __init__(self, schema: Schema, locals_: dict[str, Any]):
        self.schema, self.locals = schema, locals_
        self.undeclared_enums = 0

    def number(self, node: Any) -> Any:
        if isinstance(node, Name):
            if node.name in ("true", "TRUE"):
                return 1
            if node.name in ("false", "FALSE"):
                return 0
            return self.schema.constants[node.name]
        return node

    def items(self, node: Any) -> tuple[tuple[str | None, Any], ...]:
        if isinstance(node, Brace):
            return node.items
        raise ValueError(f"expected a brace initializer, found {node!r}")

    def variable(self, node: Any, element: Any) -> list[Any]:
        """``{.X_len = n, .X_val = ...}`` -> n elements (zero: none)."""
        if not isinstance(node, Brace):
            return []
        fields = dict(node.items)
        (length,) = (v for k, v in fields.items() if k and k.endswith("_len"))
        given = [v for k, v in fields.items() if k and k.endswith("_val")]
        values = list(self.items(given[0]) if given else ())
        out = [element(v) for _, v in values[:length]]
        return out + [element(0) for _ in range(length - len(out))]

    def convert(self, t: m.XType, node: Any) -> Any:
        if isinstance(node, Ref):
            node = self.locals[node.name]
        if isinstance(t, m.Prim):
            n = self.number(node)
            if t.kind == "float":
                return struct.unpack(">f", struct.pack(">f", float(n)))[0]
            if t.kind == "double":
                return float(n)
            span = t.hi - t.lo + 1
            return (int(n) - t.lo) % span + t.lo  # C's conversion into the type's range
        if isinstance(t, m.Bool):
            return bool(self.number(node))
        if isinstance(t, m.Enum):
            n = self.number(node)
            if n not in t.members.values():
                self.undeclared_enums += 1
            return n
        if isinstance(t, m.String):
            return node if isinstance(node, str) else ""
        if isinstance(t, m.Opaque):
            if t.fixed:
                data = bytes(self.number(v) & 0xFF for _, v in self.items(node)) if node else b""
                return data + bytes(t.size - len(data))
            return bytes(b & 0xFF for b in self.variable(node, self.number))
        if isinstance(t, m.Array):
            if t.fixed:
                given = [self.convert(t.element, v) for _, v in self.items(node)] if node else []
                return given + [self.zero(t.element) for _ in range(t.size - len(given))]
            return self.variable(node, lambda v: self.convert(t.element, v))
        if isinstance(t, m.Optional):
            return None if node is None else self.convert(t.element, node)
        if isinstance(t, m.Struct):
            given = dict(self.items(node)) if node else {}
            return self.schema[t.name](
                **{
                    f.py: self.convert(f.type, given[f.name])
                    if f.name in given
                    else self.zero(f.type)
                    for f in t.fields
                }
            )
        if isinstance(t, m.Union_):
            given = dict(self.items(node)) if node else {}
            assert t.discriminant_type is not None
            disc = self.convert(t.discriminant_type, given.get(t.discriminant, 0))
            arm = next((a for a in t.arms if disc in a.labels), t.default)
            arm_values = dict(self.items(given[f"{t.name}_u"])) if f"{t.name}_u" in given else {}
            if arm is None or arm.type is None:
                value = None
            elif arm.name in arm_values:
                value = self.convert(arm.type, arm_values[arm.name])
            else:
                value = self.zero(arm.type)
            return self.schema[t.name](disc, value)
        raise TypeError(f"no conversion for {t!r}")

    def zero(self, t: m.XType) -> Any:
        """C's zero-initialized value of a type."""
        return self.convert(t, None if isinstance(t, m.Optional) else _ZERO)


_ZERO = 0

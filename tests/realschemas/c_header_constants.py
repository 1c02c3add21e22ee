"""Integer constants of C headers: ``#define NAME VALUE`` and enum members.

Real ``.x`` files take some constants from their project's C headers (libvirt's
``VIR_UUID_BUFLEN`` from ``libvirt-host.h``, GlusterFS's ``GF_DATA_TYPE_*`` from an enum in
``glusterfs-fops.h``); rpcgen leaves them to the C compiler, we need them as ``-D``
constants. This reads them from the headers themselves, as a C compiler would see them on
Linux, with two simplifications that the tests' headers allow:

- conditionals (``#ifdef``) are not evaluated: the first definition of a name wins (the
  projects list their Linux branch first, e.g. GlusterFS ``compat.h``'s ``UNIX_PATH_MAX``);
- a value must be an integer expression of literals, already-read names, parentheses and
  C's arithmetic/bitwise operators; other macros (function-like, strings, types) are skipped.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable
from pathlib import Path

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+(.+)$", re.M)
_ENUM = re.compile(r"\benum\b\s*\w*\s*\{(.*?)\}", re.S)
_INT = re.compile(r"\b(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)[uUlL]*\b")
_DIRECTIVE = re.compile(r"^[ \t]*#.*$", re.M)

_BINARY: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
}
_UNARY: dict[type, Callable[[int], int]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}


def evaluate(expression: str, known: dict[str, int]) -> int | None:
    """The value of a C integer constant expression, or None if it is not one."""
    text = _INT.sub(lambda m: str(int(m.group(1), 0 if m.group(1)[:2].lower() == "0x" else 8)
                                  if m.group(1).startswith("0") else int(m.group(1))),
                    expression.strip())  # fmt: skip
    text = text.replace("/", "//")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in known:
            return known[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](value(node.operand))
        raise ValueError(ast.dump(node))

    try:
        return value(tree.body)
    except (ValueError, ZeroDivisionError):
        return None


def header_constants(headers: Iterable[Path]) -> dict[str, int]:
    """Every integer ``#define`` and enum member of ``headers`` (read in order)."""
    known: dict[str, int] = {}
    for header in headers:
        text = _COMMENT.sub(" ", header.read_text(encoding="utf-8", errors="replace"))
        text = re.sub(r"\\\n", " ", text)  # continued lines
        for name, expression in _DEFINE.findall(text):
            if name not in known and (number := evaluate(expression, known)) is not None:
                known[name] = number
        for body in _ENUM.findall(_DIRECTIVE.sub("", text)):
            following = 0
            for member in body.split(","):
                name, _, expression = member.partition("=")
                name = name.strip()
                if not re.fullmatch(r"[A-Za-z_]\w*", name):
                    continue
                number = evaluate(expression, known) if expression else following
                if number is None:
                    break  # a member we cannot value: the following ones are unknown too
                known.setdefault(name, number)
                following = number + 1
    return known


def referenced(constants: dict[str, int], x_text: str) -> dict[str, int]:
    """Those of ``constants`` that the ``.x`` text names and does not define itself."""
    words = set(re.findall(r"[A-Za-z_]\w*", _COMMENT.sub(" ", x_text)))
    own = set(re.findall(r"\b([A-Za-z_]\w*)\s*=", x_text))
    own |= set(re.findall(r"#\s*define\s+([A-Za-z_]\w*)", x_text))
    return {name: v for name, v in constants.items() if name in words and name not in own}

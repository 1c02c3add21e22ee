"""Integer constants of C text: ``#define NAME EXPR`` and enum members (pure, no I/O).

Real ``.x`` files take some constants from their project's C headers (libvirt's
``VIR_UUID_BUFLEN``, GlusterFS's ``GF_DATA_TYPE_*`` enum); rpcgen leaves them to the C
compiler, the codec takes them as ``-D`` constants (``constants=``).  :func:`c_constants`
reads them from the headers' text as a C compiler on Linux would see them, with two
simplifications real headers allow:

- conditionals (``#ifdef``) are not evaluated: the first definition of a name that has a
  value wins (projects list their Linux branch first, e.g. GlusterFS ``compat.h``'s
  ``UNIX_PATH_MAX``); preprocessor lines inside an enum body are dropped;
- a value must be an integer expression of literals (decimal, octal, hex, with ``u``/``l``
  suffixes), names with a value (defined before or after), parentheses and C's arithmetic
  and bitwise operators; anything else (strings, casts, function-like macros) is left out.

:func:`passed_through_constants` reads the ``%#define`` lines of a ``.x`` file, which rpcgen
copies into the C header it writes (rpcsvc ``nlm_prot.x``'s ``LM_MAXSTRLEN``).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+([^\n]+)$", re.M)
_ENUM = re.compile(r"\benum\b\s*\w*\s*\{([^{}]*)\}", re.S)
_INT = re.compile(r"\b(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)[uUlL]*\b")
_OPS: dict[type, Callable[..., int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.floordiv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}


def _literal(match: re.Match[str]) -> str:
    digits = match.group(1)
    base = 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") else 10
    return str(int(digits, base))


def evaluate(expression: str, known: Mapping[str, int]) -> int | None:
    """The value of a C integer constant expression, or None if it is not one."""
    try:
        tree = ast.parse(_INT.sub(_literal, expression.strip()), mode="eval")
    except SyntaxError:
        return None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in known:
            return known[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.operand))
        raise ValueError(node)

    try:
        return value(tree.body)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def c_constants(texts: Iterable[str]) -> dict[str, int]:
    """Every integer ``#define`` and enum member of the C ``texts`` (headers, in order)."""
    pending: list[tuple[str, str]] = []
    for text in texts:
        text = re.sub(r"\\\n", " ", _COMMENT.sub(" ", text))  # and continued lines
        pending += _DEFINE.findall(text)
        for body in _ENUM.findall(text):
            body = "\n".join(line for line in body.splitlines() if not line.strip().startswith("#"))
            previous: str | None = None
            for item in body.split(","):
                name, _, expression = (part.strip() for part in item.partition("="))
                if not name:
                    continue
                if not name.isidentifier():
                    break
                if not expression:
                    expression = "0" if previous is None else f"({previous}) + 1"
                pending.append((name, expression))
                previous = name
    values: dict[str, int] = {}
    progress = True
    while pending and progress:  # a name may be used before it is defined
        progress = False
        rest = []
        for name, expression in pending:
            if name in values:
                continue
            value = evaluate(expression, values)
            if value is None:
                rest.append((name, expression))
            else:
                values[name] = value
                progress = True
        pending = rest
    return values


def passed_through_constants(x_text: str) -> dict[str, int]:
    """The integer ``%#define`` lines of a ``.x`` file (rpcgen copies them to its C header)."""
    return c_constants(
        ["\n".join(line[1:] for line in x_text.splitlines() if line.startswith("%"))]
    )

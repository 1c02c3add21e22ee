"""The C preprocessor pass that rpcgen makes before it reads a ``.x`` file.

rpcgen runs every input through ``cpp``, defining one of ``RPC_HDR``, ``RPC_XDR``,
``RPC_CLNT``, ``RPC_SVC``, ``RPC_TBL``, ``RPC_SERVER``, ``RPC_CLIENT`` for the output it writes
(glibc/libtirpc rpcgen, rpc_main.c). The types, and so the wire format, are what the header
(``RPC_HDR``) declares and the XDR routines (``RPC_XDR``) encode: we define those two, plus the
user's ``-D`` names; ``#include "x.x"`` is searched in the including file's directory, then in
the ``-I`` directories.

We use pcpp (pure Python, on PyPI) rather than the system ``cpp`` so that a daemon embedding
the codec needs no compiler toolchain; it keeps comments (procedure annotations live in them)
and writes ``#line`` markers, which the lexer follows so errors name the original file and line.
Only text that has a line starting with ``#`` is preprocessed: the rest is read as is.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xdrstream.codec.errors import SchemaError

RPCGEN_DEFINES: dict[str, int | str] = {"RPC_HDR": 1, "RPC_XDR": 1}

_DIRECTIVE = re.compile(r"^[ \t]*#", re.MULTILINE)


def needs_preprocessing(text: str) -> bool:
    """Whether ``text`` has preprocessor lines (``#define``, ``#ifdef``, ``#include``...)."""
    return _DIRECTIVE.search(text) is not None


def macro_text(value: int | str) -> str:
    """How a constant is written as a macro body (strings as C string literals)."""
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return str(value)


def preprocess(
    text: str,
    filename: str,
    defines: Mapping[str, int | str] | None = None,
    include: Iterable[str | Path] = (),
) -> str:
    """``text`` after the C preprocessor, with rpcgen's defines and ``defines``
    (SchemaError naming file:line for a preprocessor error, e.g. a missing include)."""
    try:
        from pcpp import Preprocessor  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - pcpp is a dependency
        raise SchemaError(
            f"this file has preprocessor lines and pcpp is not installed ({exc})", filename, 1, 1
        ) from None

    errors: list[tuple[str, int, str]] = []

    class _Cpp(Preprocessor):  # type: ignore[misc]
        def on_error(self, file: str, line: int, msg: str) -> None:
            errors.append((file, line, msg))
            self.return_code += 1

        def on_include_not_found(
            self, is_malformed: bool, is_system_include: bool, curdir: str, includepath: str
        ) -> Any:
            where = self.lastdirective
            errors.append(
                (
                    where.source,
                    where.lineno,
                    f"#include {includepath!r} not found (searched {curdir!r} and the -I "
                    "directories)",
                )
            )
            self.return_code += 1
            return super().on_include_not_found(
                is_malformed, is_system_include, curdir, includepath
            )

        def on_comment(self, tok: Any) -> bool:
            return True  # keep comments: procedure annotations are in them

    cpp = _Cpp()
    cpp.line_directive = "#line"
    for name, value in {**RPCGEN_DEFINES, **(defines or {})}.items():
        cpp.define(f"{name} {macro_text(value)}")
    parent = Path(filename).parent
    cpp.add_path(str(parent) if str(parent) else ".")
    for directory in include:
        cpp.add_path(str(directory))
    cpp.rewrite_paths = []  # name files as given, not relative to the working directory
    cpp.parse(text, filename)
    out = io.StringIO()
    cpp.write(out)
    if errors:
        file, line, msg = errors[0]
        raise SchemaError(f"preprocessor: {msg}", file, line, 1)
    return out.getvalue()

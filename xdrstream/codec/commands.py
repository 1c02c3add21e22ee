"""``xdrstream compile``: write the generated codec module for ``.x`` files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xdrstream.cli import file_error
from xdrstream.codec import DEFAULT_MAX_DEPTH, generate_source
from xdrstream.codec.errors import SchemaError
from xdrstream.codec.lexer import tokenize


def parse_define(text: str) -> tuple[str, int | str]:
    """``NAME[=VALUE]`` as rpcgen's ``-D`` takes it: no value is 1; VALUE is a C integer
    (``16``, ``0x10``, ``-1``) or a C string (``'"abc"'``). ValueError otherwise."""
    name, eq, value = text.partition("=")
    if not name.isidentifier():
        raise ValueError(f"-D {text}: {name!r} is not a name")
    if not eq:
        return name, 1
    try:
        tokens = tokenize(value.strip(), f"-D {name}")
    except SchemaError:
        tokens = []
    if len(tokens) == 2 and tokens[0].kind == "number":
        return name, tokens[0].value
    if len(tokens) == 2 and tokens[0].kind == "string":
        return name, tokens[0].text
    raise ValueError(f'-D {text}: the value must be an integer or a "string"')


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compile",
        help="compile XDR .x schemas into a Python module",
        description=(
            "Compile RFC 4506 .x files (rpcgen's dialect; several files make one schema, in "
            "order) into a standalone Python module; `import mod; mod.SCHEMA['type'].pack(...)`. "
            "Files with preprocessor lines go through a C preprocessor (pcpp) first, with "
            "RPC_HDR and RPC_XDR defined as rpcgen does. The module needs xdrstream installed."
        ),
    )
    parser.add_argument("schema", type=Path, nargs="+", help="the .x file(s)")
    parser.add_argument(
        "-o", "--output", type=Path, help="module file to write (default: standard output)"
    )
    parser.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help='a constant (an integer or a "string") for the schema and its preprocessor',
    )
    parser.add_argument(
        "-I",
        dest="include",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a directory the preprocessor searches for #include files",
    )
    parser.add_argument(
        "--rpc-constants",
        action="store_true",
        help="provide libtirpc's <rpc/*.h> constants (AUTH_SYS, RPCSEC_GSS, ...)",
    )
    parser.add_argument(
        "--no-strict-enums",
        dest="strict_enums",
        action="store_false",
        help="decode enum values outside the declared members as plain ints",
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="libtirpc-compatible decoding (any non-zero bool/optional flag is TRUE, ...; "
        "see xdrstream.codec's documentation)",
    )
    parser.add_argument(
        "--max-depth",
        type=int,
        default=DEFAULT_MAX_DEPTH,
        help=f"nesting limit for recursive types (default {DEFAULT_MAX_DEPTH})",
    )
    parser.set_defaults(func=run_compile)


def run_compile(args: argparse.Namespace) -> int:
    if args.max_depth < 1:
        print("xdrstream compile: --max-depth must be at least 1", file=sys.stderr)
        return 2
    try:
        constants = dict(parse_define(d) for d in args.defines)
    except ValueError as exc:
        print(f"xdrstream compile: {exc}", file=sys.stderr)
        return 2
    sources: list[tuple[str, str]] = []
    for path in args.schema:
        try:
            sources.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:  # a local file: exit 2, the rule of every command (cli.py)
            print(f"xdrstream compile: {file_error(exc, path)}", file=sys.stderr)
            return 2
        except UnicodeDecodeError as exc:  # read, but its content fails: exit 1, as decode
            print(f"xdrstream compile: {path}: not UTF-8 text (byte {exc.start})", file=sys.stderr)
            return 1
    try:
        source = generate_source(
            sources,
            max_depth=args.max_depth,
            constants=constants,
            include=args.include,
            rpc_constants=args.rpc_constants,
            strict_enums=args.strict_enums,
            lenient=args.lenient,
        )
    except SchemaError as exc:
        print(f"xdrstream compile: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(source)
        return 0
    try:
        args.output.write_text(source, encoding="utf-8")
    except OSError as exc:
        print(f"xdrstream compile: {file_error(exc, args.output, 'write')}", file=sys.stderr)
        return 2
    return 0

"""``xdrstream compile``: write the generated codec module for a ``.x`` file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xdrstream.codec import DEFAULT_MAX_DEPTH, generate_source
from xdrstream.codec.errors import SchemaError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "compile",
        help="compile an XDR .x schema into a Python module",
        description=(
            "Compile an RFC 4506 .x file into a standalone Python module; "
            "`import mod; mod.SCHEMA['type'].pack(...)`. It needs xdrstream installed."
        ),
    )
    parser.add_argument("schema", type=Path, help="the .x file")
    parser.add_argument(
        "-o", "--output", type=Path, help="module file to write (default: standard output)"
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
        text = args.schema.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"xdrstream compile: cannot read {args.schema}: {exc}", file=sys.stderr)
        return 1
    try:
        source = generate_source(text, str(args.schema), args.max_depth)
    except SchemaError as exc:
        print(f"xdrstream compile: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(source)
        return 0
    try:
        args.output.write_text(source, encoding="utf-8")
    except OSError as exc:
        print(f"xdrstream compile: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    return 0

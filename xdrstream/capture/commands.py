"""``xdrstream decode``: describe the messages of a byte stream or packet capture."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from xdrstream.cli import file_error
from xdrstream.codec.commands import parse_define
from xdrstream.codec.errors import SchemaError

if TYPE_CHECKING:  # start-up: `decode -h` needs neither the decoder nor the engine
    from xdrstream.capture.decode import DecodedMessage, Decoder

_TEXT_LIMIT = 160  # longest string shown in text output; JSON shows everything


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="describe the messages of a raw frame stream or a pcap/pcapng capture",
        description=(
            "Print each message of FILE: a raw byte stream of frames (one direction of a "
            "connection) or a pcap/pcapng capture, whose TCP connections are reassembled by "
            "sequence number. Bodies are decoded with the built-in schemas (message.x, "
            "restore.x, libvirt_remote.x) and any --schema files. Exit status 1 when the "
            "input cannot be decoded to the end (the error names the byte offset)."
        ),
    )
    parser.add_argument(
        "file", type=Path, metavar="FILE", help="byte stream or capture ('-': stdin)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--schema",
        type=Path,
        action="append",
        default=[],
        metavar="X",
        help="an extra .x schema with programs to decode (repeatable)",
    )
    parser.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a constant for the --schema files, as `xdrstream compile -D` (e.g. from a C header)",
    )
    parser.add_argument(
        "--libvirt-schemas",
        type=Path,
        metavar="DIR",
        help="libvirt's own .x files for its remote program: a libvirt source tree (C "
        "constants read from its include/libvirt headers) or its src/remote directory",
    )
    parser.add_argument(
        "--port",
        type=_port,
        help="captures: only connections with this TCP port, taken as the server's port",
    )
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return port


def run(args: argparse.Namespace) -> int:
    from xdrstream.capture.decode import Decoder

    try:
        constants = dict(parse_define(d) for d in args.defines)
    except ValueError as exc:  # an option, not a schema: usage (exit 2), as compile's -D
        print(f"xdrstream decode: {exc}", file=sys.stderr)
        return 2
    try:
        data = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    except OSError as exc:
        print(f"xdrstream decode: {file_error(exc, args.file)}", file=sys.stderr)
        return 2
    try:
        programs = []
        if args.libvirt_schemas is not None:
            # the CLI composes layers: libvirt's program knowledge lives in xdrstream.libvirt
            from xdrstream.libvirt import protocol as libvirt_protocol

            programs.append(libvirt_protocol.load(args.libvirt_schemas).program_definition())
        decoder = Decoder.with_schemas(extra=args.schema, programs=programs, constants=constants)
    except OSError as exc:  # a schema file, or a --libvirt-schemas tree that is none
        text = file_error(exc) if exc.filename else str(exc)
        print(f"xdrstream decode: {text}", file=sys.stderr)
        return 2
    except (SchemaError, ValueError) as exc:
        # content that fails is exit 1, as compile's (cli.EXIT_STATUS)
        print(f"xdrstream decode: bad schema: {exc}", file=sys.stderr)
        return 1
    return print_messages(decoder, data, args.format, args.port, sys.stdout, sys.stderr)


def print_messages(
    decoder: Decoder, data: bytes, fmt: str, port: int | None, out: TextIO, err: TextIO
) -> int:
    """Print every message; failures go to ``err``.  Returns the exit status."""
    from xdrstream.capture.decode import StreamFailure
    from xdrstream.capture.pcap import CaptureError

    status = 0
    try:
        for item in decoder.decode(data, port):
            if isinstance(item, StreamFailure):
                print(f"xdrstream decode: error: {item}", file=err)
                status = 1
                continue
            if fmt == "json":
                print(json.dumps(item.as_json(), separators=(",", ":")), file=out)
            else:
                print(_text(item), file=out)
            if item.body_error is not None:
                status = 1
    except CaptureError as exc:
        print(f"xdrstream decode: error: {exc}", file=err)
        return 1
    return status


def _text(message: DecodedMessage) -> str:
    from xdrstream.protocol.framing import MessageStatus, MessageType

    header = message.header
    where = f"@{message.offset}"
    if message.direction is not None:
        where = f"{message.direction.value} {message.source} -> {message.destination} {where}"
        if message.packet is not None:
            where += f" pkt {message.packet}"
    program = message.program_name or f"0x{header.prog:08x}"
    procedure = message.procedure_name or "?"
    line = (
        f"{where} len={message.length} {program} v{header.vers} {procedure}({header.proc}) "
        f"{MessageType(header.type).name} {MessageStatus(header.status).name} "
        f"serial={header.serial} "
        f"payload={message.payload_size}"
    )
    if message.body is not None:
        line += f"\n    {_short(message.body)}"
    if message.body_error is not None:
        line += f"\n    body error: {message.body_error}"
    return line


def _short(value: Any) -> str:
    """Compact one-line JSON with long strings cut for reading."""

    def cut(item: Any) -> Any:
        if isinstance(item, str) and len(item) > _TEXT_LIMIT:
            return item[:_TEXT_LIMIT] + f"...({len(item)} chars)"
        if isinstance(item, dict):
            return {key: cut(sub) for key, sub in item.items()}
        if isinstance(item, list):
            return [cut(sub) for sub in item]
        return item

    return json.dumps(cut(value), separators=(", ", ": "))

"""The `xdrstream` command.

Each layer contributes its subcommands through a module with
``register(subparsers) -> None``; every subcommand sets ``func(args) -> int`` as its
handler. The list below is the single place that wires them in.

Every command follows one exit status rule (``EXIT_STATUS``, shown by ``xdrstream -h``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from xdrstream import __version__

# Each command and the module that registers it: a run imports only its own command's
# module (a restore need not import the conformance suite); `-h` imports them all.
COMMANDS: dict[str, str] = {
    "compile": "xdrstream.codec.commands",
    "decode": "xdrstream.capture.commands",
    "serve": "xdrstream.restore.commands",
    "restore": "xdrstream.restore.commands",
    "save": "xdrstream.restore.commands",
    "fuzz": "xdrstream.fuzz.commands",
    "conformance": "xdrstream.conformance.commands",
    "trace": "xdrstream.conformance.commands",
}

EXIT_STATUS = """exit status, every command:
  0    done
  1    the work failed on its input or peer: a schema that does not compile, bytes that
       do not decode, a transfer the server failed, a conformance failure, a finding
  2    usage, or a local file that cannot be read or written
  3    could not connect or listen (refused, no such socket, TLS failure)
  4    the peer stalled longer than --timeout
  130  interrupted
"""


def file_error(exc: OSError, path: object = None, verb: str = "read") -> str:
    """``cannot VERB FILE: reason`` for a local file a command cannot use (exit 2): the file
    the error names (else ``path``) and its reason once, without the errno's repr."""
    return f"cannot {verb} {exc.filename or path}: {exc.strerror or exc}"


# argparse types for values checked as the command line is read (exit 2 before any work)
def positive_int(text: str) -> int:
    value = nonnegative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `command` only that command's part of it."""
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return _parser(modules)


class _WholeHelp(argparse.Action):
    """``xdrstream -h``: the whole command line's help, its commands' modules imported only
    now (``--version`` and a usage error need none of them)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        build_parser().print_help()
        parser.exit()


def _parser(modules: list[str], *, whole_help: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdrstream",
        description="libvirt's XDR RPC protocol with data streams: codec, engine, tools.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=not whole_help,
    )
    if whole_help:
        parser.add_argument(
            "-h", "--help", action=_WholeHelp, help="show this help message and exit"
        )
    parser.add_argument("--version", action="version", version=f"xdrstream {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the first word that is not an option names the command (the top level has no
    # option taking a value)
    command = next((word for word in argv if not word.startswith("-")), None)
    # without a command (`--version`, `-h`, a usage error) no command module is imported
    # unless `-h` asks for the whole help
    parser = _parser([], whole_help=True) if command is None else build_parser(command)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("xdrstream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())

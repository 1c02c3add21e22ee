"""``xdrstream serve``, ``xdrstream restore`` and ``xdrstream save``.

    xdrstream serve --listen unix:/tmp/x.sock                    # QEMU stub endpoints
    xdrstream serve --listen tcp:127.0.0.1:4000 --tls-cert C --tls-key K [--tls-ca CA
                    [--require-client-cert]] [--qemu qemu-system-x86_64 | --images DIR]
    xdrstream serve --libvirt-storage /srv/images [--pool NAME] --listen unix:/tmp/libvirt-sock
    xdrstream restore guest.img --connect unix:/tmp/x.sock --variant 2
    xdrstream save out.img --connect tls:127.0.0.1:4000 --tls-ca CA --variant 3 --size 64M

Output: on a terminal, a progress bar (bytes, rate, ETA) and a summary line; otherwise one
JSON line per command, e.g. for ``restore``/``save``::

    {"direction": "restore", "variant": 2, "bytes": 67108864, "data_bytes": ..,
     "hole_bytes": .., "seconds": 0.41, "mb_per_s": 163.2, "sha256": "..", ...}

``sha256`` is null unless ``--sha256`` is given: then the digest of the image's content,
holes included, of what ``restore`` sent and of what ``save`` wrote to OUT, hashed as it
moves on a thread of its own (off by default: 0.6-1.0 CPU s/GiB that the server and the
endpoint need on a small machine; README gives the figures). A failed save removes OUT: no
partial image is left.
``serve`` prints ``{"listening": "unix:/tmp/x.sock"}``, then one ``{"endpoint": {...}}``
line per endpoint verdict (ok, bytes, sha256, error, exit code of the stub or QEMU) -- on a
terminal, the same as text. SIGINT or SIGTERM stop it cleanly: every connection is closed,
every endpoint killed, the Unix socket file removed.

``serve --libvirt-storage DIR`` answers libvirt's remote program instead, for a directory
pool (:class:`xdrstream.libvirt.storage_server.StorageServer`): unmodified virsh can then
vol-upload, vol-download (also --sparse), vol-list, vol-info, pool-list and pool-info, e.g.
``virsh -c 'qemu+unix:///session?socket=PATH' vol-list --pool NAME``. It prints
``{"listening": ..., "pool": NAME, "directory": DIR}``.

Errors are one line on stderr, ``xdrstream COMMAND: error: ...``, with these exit codes:

    1  the transfer failed: the server's error (e.g. the stub rejected the stream), the
       connection was lost, a protocol error
    2  usage, or a local file that cannot be read or written (images, TLS certificates)
    3  could not connect: refused, no such socket, TLS handshake or verification failure
    4  the peer stalled longer than --timeout
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import signal
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from xdrstream.cli import file_error, nonnegative_int, positive_int, positive_seconds
from xdrstream.restore.progress import Meter, terminal_console
from xdrstream.transport import address as addresses
from xdrstream.transport import limits as lim

# Start-up: `-h`, a usage error and a run's argument parsing import only the above; the
# engine, the event loop, TLS and rich are imported by the code that uses them.
if TYPE_CHECKING:
    import ssl

    from xdrstream.endpoints.sink import EndpointLauncher, EndpointResult
    from xdrstream.transport.options import Options

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_TIMEOUT = 4

EXIT_CODES = """exit codes:
  0  done: the endpoint accepted (restore) or produced (save) the whole stream
  1  the transfer failed: server error (e.g. stream rejected), connection lost, protocol error
  2  usage, or a local file that cannot be read or written (images, TLS certificates)
  3  could not connect: refused, no such socket, TLS handshake or verification failure
  4  the peer stalled longer than --timeout
"""

DEFAULT_VARIANT = 2
DEFAULT_SAVE_SIZE = 64 << 20
_IMAGE_NAME = re.compile(r"[A-Za-z0-9._+-]{1,255}")  # what the reference server accepts
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b?)", re.IGNORECASE)
_UNITS = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}


class CommandError(Exception):
    """A failure to report as one line with this exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- argument types -------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``67108864``, ``64M``, ``64MiB``, ``1G``: binary units (``k``/``M``/``G``/``T``)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 1048576, 64M, 1GiB)")
    return int(match.group(1)) << _UNITS[match.group(2).lower()]


def _address(text: str) -> addresses.Address:
    try:
        return addresses.parse_address(text)
    except addresses.AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name(text: str) -> str:
    """An image name within restore.x's bound (XS_NAME_MAX), checked before connecting."""
    from xdrstream.protocol import schemas

    limit = int(schemas.load("restore").constants["XS_NAME_MAX"])
    if not 0 < len(text.encode()) <= limit:
        raise argparse.ArgumentTypeError(f"an image name has 1 to {limit} bytes, not {len(text)}")
    return text


# --- registration ---------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    _register_serve(subparsers)
    _register_transfer(subparsers, "restore")
    _register_transfer(subparsers, "save")


def _tls_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS (implied by a tls: address or --tls-ca)")
    group.add_argument("--tls-ca", metavar="FILE", help="CA that signed the server certificate")
    group.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    group.add_argument("--tls-key", metavar="FILE", help="client key (mutual TLS)")
    group.add_argument(
        "--tls-hostname", metavar="NAME", help="name the server certificate must carry"
    )


def _register_transfer(subparsers: Any, command: str) -> None:
    restore = command == "restore"
    parser = subparsers.add_parser(
        command,
        help=(
            "upload an image into the server's QEMU (or stub)"
            if restore
            else "download an image the server's QEMU (or stub) saves"
        ),
        description=(
            "Restore: stream FILE to the server, which feeds it to a QEMU stand-in (or QEMU) "
            "like `-incoming fd:N`; succeeds only when the endpoint accepted the whole stream."
            if restore
            else "Save: stream the server's QEMU stand-in (or QEMU) migration output into OUT."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE" if restore else "OUT", help="image file")
    parser.add_argument(
        "--connect",
        "-c",
        type=_address,
        required=True,
        metavar="ADDR",
        help=f"server address: {addresses.FORMS}",
    )
    parser.add_argument(
        "--variant",
        type=int,
        choices=(1, 2, 3),
        default=DEFAULT_VARIANT,
        help="stream variant: 1 call per chunk, 2 libvirt's (default), 3 data before reply",
    )
    parser.add_argument(
        "--name",
        type=_name,
        help=(
            "image name (default: the file's name)"
            if restore
            else "image name (default: SIZE:SEED of --size/--seed, else the server's default)"
        ),
    )
    if restore:
        parser.add_argument(
            "--dense", action="store_true", help="send holes as zeros (default: sparse)"
        )
    else:
        parser.add_argument(
            "--size",
            type=parse_size,
            help="length of the stub's synthetic stream (the server's default otherwise)",
        )
        parser.add_argument(
            "--seed", type=int, help="seed of the synthetic stream (with --size; default 0)"
        )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="give up when the server makes no progress for this long (default 60)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the JSON line even on a terminal, no bar"
    )
    parser.add_argument(
        "--sha256",
        action=argparse.BooleanOptionalAction,
        default=False,
        help=(
            f"print the SHA-256 of what was {'sent' if restore else 'written'}, hashed on a "
            'thread of its own as it goes (about 0.6-1 CPU s/GiB; default off: "sha256": null)'
        ),
    )
    _tls_client_options(parser)
    parser.set_defaults(func=run_restore if restore else run_save)


def _register_serve(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve restore.x (QEMU stub or QEMU), or a directory as a libvirt storage pool",
        description=(
            "Listen and serve the restore.x program. Each restore starts a QEMU stand-in "
            "process (the stub; real QEMU with --qemu) and streams the data into its pipe, as "
            "libvirt feeds `-incoming fd:N`; each save streams such a process's output. "
            "With --libvirt-storage DIR, answer libvirt's remote program instead for one "
            "directory pool whose files are the volumes: unmodified virsh can vol-upload, "
            "vol-download (also --sparse), vol-list, vol-info, pool-list and pool-info, e.g. "
            "virsh -c 'qemu+unix:///session?socket=PATH' vol-list --pool NAME; other "
            "procedures get libvirt's 'unknown procedure' error. "
            "Prints where it listens; SIGINT/SIGTERM stop it cleanly."
        ),
    )
    parser.add_argument(
        "--listen",
        "-l",
        type=_address,
        required=True,
        metavar="ADDR",
        help="unix:PATH, tcp:HOST:PORT (port 0: any free port), tls:HOST:PORT or a libvirt URI",
    )
    tls = parser.add_argument_group("TLS (with --tls-cert and --tls-key)")
    tls.add_argument("--tls-cert", metavar="FILE", help="server certificate")
    tls.add_argument("--tls-key", metavar="FILE", help="server key")
    tls.add_argument("--tls-ca", metavar="FILE", help="CA that client certificates must chain to")
    tls.add_argument(
        "--require-client-cert",
        action="store_true",
        help="mutual TLS: refuse clients without a valid certificate (needs --tls-ca)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--qemu",
        metavar="PATH",
        help="run real QEMU (e.g. qemu-system-x86_64) instead of the stub",
    )
    where.add_argument(
        "--images", metavar="DIR", type=Path, help="store named images as files in DIR instead"
    )
    where.add_argument(  # libvirt's remote program instead of restore.x (xdrstream.libvirt)
        "--libvirt-storage",
        metavar="DIR",
        type=Path,
        help="serve DIR as a libvirt storage pool for virsh instead of restore.x",
    )
    parser.add_argument(
        "--pool",
        dest="libvirt_pool",
        metavar="NAME",
        help="with --libvirt-storage: the pool's name (default: DIR's name)",
    )
    parser.add_argument(
        "--save-size",
        type=parse_size,
        help="length of the stub's stream for saves without a SIZE[:SEED] name (default 64M)",
    )
    parser.add_argument("--seed", type=int, help="seed of the stub's save stream (default 0)")
    parser.add_argument(
        "--save-from",
        metavar="FILE",
        help="the stub's saves replay this recorded stream, e.g. a real QEMU save "
        "(not with --save-size/--seed, --qemu, --images or --libvirt-storage)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="fail a stream whose client or endpoint makes no progress this long (default 60)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="close connections idle (no exchange, no input) this long (default: never)",
    )
    parser.add_argument(
        "--keepalive",
        type=positive_seconds,
        default=lim.KEEPALIVE_INTERVAL,
        metavar="SECONDS",
        help="ping a silent client after this long; 5 missed pings close it (default 5, "
        "as libvirtd)",
    )
    limits = parser.add_argument_group("limits (libvirtd's, spec.md §8.5)")
    limits.add_argument(
        "--max-clients",
        type=positive_int,
        default=lim.MAX_CLIENTS,
        metavar="N",
        help=f"stop accepting beyond N connections (default {lim.MAX_CLIENTS})",
    )
    limits.add_argument(
        "--max-client-requests",
        type=positive_int,
        default=lim.MAX_CLIENT_REQUESTS,
        metavar="N",
        help=f"stop reading a client with N calls unanswered (default {lim.MAX_CLIENT_REQUESTS})",
    )
    limits.add_argument(
        "--max-queued-output",
        type=parse_size,
        default=lim.MAX_QUEUED_OUTPUT,
        metavar="SIZE",
        help="stop reading a client with this many reply bytes unsent (default 1M)",
    )
    limits.add_argument(
        "--memory-budget",
        type=parse_size,
        default=lim.MEMORY_BUDGET,
        metavar="SIZE",
        help="buffered input and queued output of all clients above which reading pauses "
        "(default 256M)",
    )
    faults = parser.add_argument_group(
        "stub fault injection (for tests; see python -m xdrstream.endpoints.qemu_stub -h)",
        "The stub's options, --save-size and --seed included, are refused with --qemu, "
        "--images and --libvirt-storage, which run no stub.",
    )
    # defaults are None (applied in _launcher) so that a given option is told from an absent one
    faults.add_argument("--stub-check", choices=("full", "header"), help="(default full)")
    faults.add_argument("--stub-fail-after", type=nonnegative_int, metavar="N")
    faults.add_argument("--stub-close-early", type=nonnegative_int, metavar="N")
    faults.add_argument("--stub-stall", type=positive_seconds, metavar="SECONDS")
    faults.add_argument("--stub-stall-after", type=nonnegative_int, metavar="N", help="(default 0)")
    faults.add_argument("--stub-exit-code", type=int, metavar="C")
    parser.set_defaults(func=run_serve)


# --- errors ---------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def classify(exc: BaseException) -> CommandError:
    """The message and exit code of a failure of a client command."""
    # imported here: the errors module pulls in the whole driver stack
    import ssl

    from xdrstream.protocol import ProtocolError
    from xdrstream.transport import tls as tlsmod
    from xdrstream.transport.errors import ConnectionLost, PeerTimeout, RemoteFailure

    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, addresses.ConnectError):
        return CommandError(f"cannot connect: {exc}", EXIT_CONNECT)
    if isinstance(exc, tlsmod.TLSError):
        return CommandError(f"TLS failure: {exc}", EXIT_CONNECT)
    if isinstance(exc, ssl.SSLError):
        return CommandError(f"TLS failure: {tlsmod.describe(exc)}", EXIT_CONNECT)
    if isinstance(exc, RemoteFailure):
        return CommandError(f"server error: {exc.message or f'code {exc.code}'}", EXIT_FAILED)
    if isinstance(exc, PeerTimeout):
        return CommandError(f"timed out: {exc}", EXIT_TIMEOUT)
    if isinstance(exc, ConnectionLost):
        cause = _tls_cause(exc)
        if cause is not None:
            return classify(cause)
        text = str(exc)
        if text.startswith("TLS "):  # the driver's TLS failures after the handshake
            return CommandError(f"TLS failure: {text}", EXIT_CONNECT)
        prefix = "" if text.startswith("connection lost") else "connection lost: "
        return CommandError(f"{prefix}{text}", EXIT_FAILED)
    if isinstance(exc, ProtocolError):
        return CommandError(f"protocol error: {exc}", EXIT_FAILED)
    if isinstance(exc, OSError) and exc.filename is not None:
        return CommandError(f"{exc.filename}: {exc.strerror or exc}", EXIT_USAGE)
    return CommandError(f"{type(exc).__name__}: {exc}", EXIT_FAILED)


def _tls_cause(exc: BaseException) -> BaseException | None:
    import ssl

    from xdrstream.transport import tls as tlsmod

    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, tlsmod.TLSError | ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _refused_program(exc: BaseException, args: argparse.Namespace) -> CommandError | None:
    """libvirtd's (and our servers') answer to a call of a program they do not serve
    (§4.4.2, "Cannot find program N version V"): say that restore.x is what was refused,
    and what the server answers instead when one probe call finds out."""
    from xdrstream.restore.program import PROGRAM, VERSION
    from xdrstream.transport.drivers import UNKNOWN_PROGRAM
    from xdrstream.transport.errors import ERR_RPC, RemoteFailure

    if not isinstance(exc, RemoteFailure) or exc.code != ERR_RPC:
        return None
    if not exc.message.startswith(UNKNOWN_PROGRAM):
        return None
    text = (
        f"{args.connect} does not serve restore.x (program {PROGRAM:#x} = {PROGRAM} version "
        f"{VERSION}): it answered '{exc.message}'"
    )
    if _answers_libvirt(args):
        text += (
            "; it answers libvirt's remote program (a libvirt daemon, or `xdrstream serve "
            "--libvirt-storage`): use virsh there, e.g. vol-upload"
        )
    return CommandError(text, EXIT_FAILED)


def _answers_libvirt(args: argparse.Namespace) -> bool:
    """Whether the server answers libvirt's AUTH_LIST (callable before any CONNECT_OPEN)."""
    from xdrstream.libvirt import remote
    from xdrstream.protocol import programs_from_schema, schemas
    from xdrstream.transport.blocking import BlockingConnection
    from xdrstream.transport.options import Options

    try:
        programs = programs_from_schema(schemas.load("libvirt_remote"))
        with BlockingConnection.connect(
            args.connect,
            programs,
            tls=_client_tls(args),
            server_hostname=args.tls_hostname,
            options=Options(timeout=min(args.timeout, 5.0)),
        ) as conn:
            conn.call(remote.PROGRAM, remote.VERSION, remote.AUTH_LIST)
    except Exception:  # a hint only: any failure means "not known"
        return False
    return True


def _fail(command: str, error: CommandError) -> int:
    print(f"xdrstream {command}: error: {_one_line(str(error))}", file=sys.stderr)
    return error.code


# --- restore and save -----------------------------------------------------------------------


def _client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    from xdrstream.transport import tls as tlsmod

    wanted = args.connect.tls or any((args.tls_ca, args.tls_cert, args.tls_key))
    if not wanted:
        return None
    try:
        return tlsmod.client_context(args.tls_ca, args.tls_cert, args.tls_key)
    except tlsmod.TLSError as exc:  # a local file that cannot be used: exit 2, as serve's
        raise CommandError(str(exc), EXIT_USAGE) from None


def _connect(args: argparse.Namespace) -> Any:
    from xdrstream.restore.client import Client
    from xdrstream.transport.options import Options

    tls = _client_tls(args)
    options = Options(timeout=args.timeout)
    return Client.connect(args.connect, tls=tls, server_hostname=args.tls_hostname, options=options)


def _default_name(path: str) -> str:
    base = os.path.basename(path)
    return base if _IMAGE_NAME.fullmatch(base) and base not in (".", "..") else "image"


def _report(
    direction: str,
    args: argparse.Namespace,
    result: Any,
    sha256: str | None,
    out: TextIO,
    as_json: bool,
) -> None:
    total = result.bytes + result.holes
    seconds = result.seconds
    rate = total / seconds / 1e6 if seconds > 0 else 0.0
    if as_json:
        record = {
            "direction": direction,
            "variant": args.variant,
            "file": args.file,
            "address": str(args.connect),
            "bytes": total,
            "data_bytes": result.bytes,
            "hole_bytes": result.holes,
            "server_length": result.length,
            "seconds": round(seconds, 6),
            "mb_per_s": round(rate, 3),
            "sha256": sha256,
        }
        import json

        print(json.dumps(record), file=out, flush=True)
        return
    verb = "restored" if direction == "restore" else "saved"
    holes = f", {result.holes} in holes" if result.holes else ""
    digest = f", sha256 {sha256}" if sha256 is not None else ""
    print(
        f"{verb} {args.file}: {total} bytes{holes} via V{args.variant} in {seconds:.2f} s "
        f"({rate:.1f} MB/s){digest}",
        file=out,
        flush=True,
    )


def _digest(args: argparse.Namespace) -> Any:
    """--sha256's running digest, else None."""
    if not args.sha256:
        return None
    import hashlib

    return hashlib.sha256()


def run_restore(args: argparse.Namespace) -> int:
    try:
        info = os.stat(args.file)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory")
        # open now: a missing or unreadable FILE is a local error, before any connection
        os.close(os.open(args.file, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        return _fail("restore", CommandError(file_error(exc, args.file), 2))
    size = info.st_size
    console = None if args.json else terminal_console()
    digest = _digest(args)
    name = args.name or _default_name(args.file)
    try:
        with _connect(args) as client, Meter(f"restore V{args.variant}", size, console) as meter:
            result = client.restore(
                args.file,
                variant=args.variant,
                name=name,
                size_hint=size,
                sparse=not args.dense,
                progress=lambda done: meter.advance(done - meter.bytes),
                digest=digest,
            )
    except Exception as exc:
        return _fail("restore", _refused_program(exc, args) or classify(exc))
    sha256 = digest.hexdigest() if digest is not None else None
    _report("restore", args, result, sha256, sys.stdout, console is None)
    return EXIT_OK


def run_save(args: argparse.Namespace) -> int:
    out_dir = os.path.dirname(os.path.abspath(args.file))
    if not os.path.isdir(out_dir):
        return _fail("save", CommandError(f"cannot write {args.file}: no such directory", 2))
    if os.path.isdir(args.file):
        return _fail("save", CommandError(f"cannot write {args.file}: Is a directory", 2))
    # --size/--seed travel as the name SIZE:SEED (the server's rule): none may be lost
    if args.name is not None and (args.size is not None or args.seed is not None):
        return _fail("save", CommandError("--name and --size/--seed: give one or the other", 2))
    if args.seed is not None and args.size is None:
        return _fail("save", CommandError("--seed needs --size", 2))
    if args.name is not None:
        name = args.name
    elif args.size is not None:
        name = f"{args.size}:{args.seed or 0}"
    else:
        name = "image"
    console = None if args.json else terminal_console()
    digest = _digest(args)
    try:
        client = _connect(args)
    except Exception as exc:
        return _fail("save", classify(exc))
    try:
        with client, Meter(f"save V{args.variant}", args.size, console) as meter:
            result = client.save(
                args.file,
                variant=args.variant,
                name=name,
                progress=lambda done: meter.advance(done - meter.bytes),
                digest=digest,  # what the sink writes, as it writes it: no second read
            )
    except Exception as exc:
        # OUT was truncated when the save began: leave no partial image behind
        with contextlib.suppress(OSError):
            if os.path.isfile(args.file):
                os.unlink(args.file)
        return _fail("save", _refused_program(exc, args) or classify(exc))
    sha256 = digest.hexdigest() if digest is not None else None
    _report("save", args, result, sha256, sys.stdout, console is None)
    return EXIT_OK


# --- serve ----------------------------------------------------------------------------------


def _launcher(args: argparse.Namespace) -> EndpointLauncher:
    if args.qemu is not None:
        from xdrstream.endpoints.qemu import QemuLauncher, find_qemu

        if find_qemu(args.qemu) is None:
            raise CommandError(f"--qemu {args.qemu}: no such executable", EXIT_USAGE)
        return QemuLauncher(binary=args.qemu)
    from xdrstream.endpoints.qemu_stub import Faults, StubLauncher

    faults = Faults(
        fail_after=args.stub_fail_after,
        close_early=args.stub_close_early,
        stall=args.stub_stall,
        stall_after=args.stub_stall_after or 0,
        exit_code=args.stub_exit_code,
    )
    return StubLauncher(
        check=args.stub_check or "full",
        save_size=DEFAULT_SAVE_SIZE if args.save_size is None else args.save_size,
        seed=args.seed or 0,
        faults=faults,
        save_from=args.save_from,
    )


def _server_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    from xdrstream.transport import tls as tlsmod

    if args.tls_cert is None and args.tls_key is None:
        if args.listen.tls:
            raise CommandError("a tls: address needs --tls-cert and --tls-key", EXIT_USAGE)
        if args.tls_ca is not None or args.require_client_cert:
            raise CommandError("--tls-ca/--require-client-cert need --tls-cert", EXIT_USAGE)
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise CommandError("TLS needs both --tls-cert and --tls-key", EXIT_USAGE)
    try:
        return tlsmod.server_context(
            args.tls_cert, args.tls_key, args.tls_ca, args.require_client_cert
        )
    except tlsmod.TLSError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _shown_address(address: addresses.Address, tls: ssl.SSLContext | None) -> addresses.Address:
    """The address to print: ``tls:HOST:PORT`` for a TCP listener with TLS."""
    if tls is not None and address.kind == "tcp":
        return addresses.Address("tcp", host=address.host, port=address.port, tls=True)
    return address


def _emit(record: dict[str, Any], text: str) -> None:
    """One line of ``serve``'s output: JSON unless stdout is a terminal."""
    import json

    print(json.dumps(record) if not sys.stdout.isatty() else text, flush=True)


def _serve_libvirt_storage(
    args: argparse.Namespace, tls: ssl.SSLContext | None, options: Options
) -> int:
    """``serve --libvirt-storage DIR``: the storage server until SIGINT/SIGTERM."""
    import threading

    from xdrstream.libvirt.storage_server import StorageServer

    directory: Path = args.libvirt_storage
    if not directory.is_dir():
        return _fail("serve", CommandError(f"{directory}: no such directory", EXIT_USAGE))
    server = StorageServer(args.listen, directory, pool=args.libvirt_pool, tls=tls, options=options)
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            address = _shown_address(server.start(), tls)
        except OSError as exc:  # ListenError: one line naming the address
            return _fail("serve", CommandError(str(exc), EXIT_CONNECT))
        try:
            _emit(
                {"listening": str(address), "pool": server.pool_name, "directory": str(directory)},
                f"listening on {address}: pool {server.pool_name!r} = {server.directory}",
            )
            while not stop.wait(0.5):
                pass
        finally:
            server.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


def _check_save_stream(args: argparse.Namespace) -> None:
    """The stub's save stream options, checked before listening: none may be ignored."""
    from xdrstream.endpoints.qemu_stub import MIN_SIZE

    if args.save_from is not None:
        other = [
            option
            for option, value in (
                ("--save-size", args.save_size),
                ("--seed", args.seed),
                ("--qemu", args.qemu),
                ("--images", args.images),
                ("--libvirt-storage", args.libvirt_storage),
            )
            if value is not None
        ]
        if other:
            raise CommandError(f"--save-from and {', '.join(other)}: not together", EXIT_USAGE)
        if not os.path.isfile(args.save_from):
            raise CommandError(f"--save-from {args.save_from}: no such file", EXIT_USAGE)
    if args.save_size is not None and args.save_size < MIN_SIZE:
        raise CommandError(
            f"--save-size {args.save_size}: a synthetic stream has at least {MIN_SIZE} bytes",
            EXIT_USAGE,
        )


_STUB_OPTIONS = (
    "save_size",
    "seed",
    "stub_check",
    "stub_fail_after",
    "stub_close_early",
    "stub_stall",
    "stub_stall_after",
    "stub_exit_code",
)


def _check_stub_options(args: argparse.Namespace) -> None:
    """The stub's options with a mode that runs no stub (--qemu, --images,
    --libvirt-storage) would be ignored: refuse them instead, naming both; so would
    --stub-stall-after without --stub-stall."""
    mode = next(
        (
            f"--{name.replace('_', '-')}"
            for name in ("qemu", "images", "libvirt_storage")
            if getattr(args, name) is not None
        ),
        None,
    )
    if mode is None:
        if args.stub_stall_after is not None and args.stub_stall is None:
            raise CommandError("--stub-stall-after needs --stub-stall", EXIT_USAGE)
        return
    given = [
        f"--{name.replace('_', '-')}" for name in _STUB_OPTIONS if getattr(args, name) is not None
    ]
    if given:
        raise CommandError(
            f"{mode} and {', '.join(given)}: not together ({mode} runs no stub)", EXIT_USAGE
        )


def run_serve(args: argparse.Namespace) -> int:
    import asyncio

    from xdrstream.restore.server import RestoreServer
    from xdrstream.transport.options import Options

    def verdict(result: EndpointResult) -> None:
        record = {
            "ok": result.ok,
            "bytes": result.bytes,
            "sha256": result.sha256,
            "error": result.error,
            "exit_code": result.exit_code,
        }
        state = "accepted" if result.ok else f"FAILED ({result.error})"
        _emit({"endpoint": record}, f"endpoint {state}: {result.bytes} bytes, {result.sha256}")

    try:
        tls = _server_tls(args)
        if args.libvirt_pool is not None and args.libvirt_storage is None:
            raise CommandError("--pool needs --libvirt-storage", EXIT_USAGE)
        if args.images is not None and not args.images.is_dir():
            raise CommandError(f"--images {args.images}: no such directory", EXIT_USAGE)
        _check_save_stream(args)
        _check_stub_options(args)
        options = Options(
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
            keepalive_interval=args.keepalive,
            max_clients=args.max_clients,
            max_client_requests=args.max_client_requests,
            max_queued_output=args.max_queued_output,
            memory_budget=args.memory_budget,
        )
    except CommandError as exc:
        return _fail("serve", exc)
    if args.libvirt_storage is not None:
        return _serve_libvirt_storage(args, tls, options)
    try:
        server = RestoreServer(
            args.listen,
            tls=tls,
            launcher=_launcher(args),
            images=args.images,
            options=options,
            on_result=verdict,
        )
    except CommandError as exc:
        return _fail("serve", exc)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            address = await server.start()
        except OSError as exc:  # ListenError: one line naming the address
            return _fail("serve", CommandError(str(exc), EXIT_CONNECT))
        address = _shown_address(address, tls)
        _emit({"listening": str(address)}, f"listening on {address}")
        serving = asyncio.ensure_future(server.serve_forever())
        try:
            await stop.wait()
        finally:
            serving.cancel()
            await server.close()
            await asyncio.gather(serving, return_exceptions=True)
        return EXIT_OK

    return asyncio.run(main())

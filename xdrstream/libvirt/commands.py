"""``xdrstream libvirt-serve``: serve a directory of files as a libvirt storage pool.

    xdrstream libvirt-serve /srv/images --listen unix:/tmp/x/libvirt-sock
    virsh -c 'qemu+unix:///session?socket=/tmp/x/libvirt-sock' vol-list --pool images

``xdrstream serve --libvirt-storage DIR --listen ADDR`` runs the same server
(:func:`run_storage_server` takes the namespace of either command).  Prints where it
listens (a JSON line when stdout is not a terminal); SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from xdrstream.transport import address as addresses
from xdrstream.transport import tls as tlsmod

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONNECT = 3


def _address(text: str) -> addresses.Address:
    try:
        return addresses.parse_address(text)
    except addresses.AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "libvirt-serve",
        help="serve a directory of files as a libvirt storage pool (for virsh vol-upload...)",
        description=(
            "Answer libvirt's remote program on ADDR for one directory pool: its files are "
            "the volumes. Unmodified virsh can then vol-upload, vol-download (also --sparse), "
            "vol-list, vol-info, pool-list and pool-info against it, e.g. "
            "virsh -c 'qemu+unix:///session?socket=PATH' vol-list --pool NAME. Other "
            "procedures get libvirt's 'unknown procedure' error. SIGINT/SIGTERM stop it."
        ),
    )
    parser.add_argument("libvirt_storage", type=Path, metavar="DIR", help="the pool's directory")
    parser.add_argument(
        "--listen",
        "-l",
        type=_address,
        required=True,
        metavar="ADDR",
        help="unix:PATH, tcp:HOST:PORT (port 0: any free port), tls:HOST:PORT or a libvirt URI",
    )
    parser.add_argument(
        "--pool", dest="libvirt_pool", metavar="NAME", help="pool name (default: DIR's name)"
    )
    tls = parser.add_argument_group("TLS (with --tls-cert and --tls-key)")
    tls.add_argument("--tls-cert", metavar="FILE", help="server certificate")
    tls.add_argument("--tls-key", metavar="FILE", help="server key")
    tls.add_argument("--tls-ca", metavar="FILE", help="CA that client certificates must chain to")
    tls.add_argument(
        "--require-client-cert", action="store_true", help="refuse clients without a certificate"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="fail a stream whose client makes no progress this long (default 60)",
    )
    parser.set_defaults(func=run_storage_server)


def _fail(message: str, code: int) -> int:
    print(f"xdrstream libvirt-serve: {message}", file=sys.stderr)
    return code


def run_storage_server(args: argparse.Namespace) -> int:
    """Serve ``args.libvirt_storage`` on ``args.listen`` until SIGINT/SIGTERM."""
    from xdrstream.libvirt.storage_server import StorageServer
    from xdrstream.transport.options import Options

    directory: Path = args.libvirt_storage
    if not directory.is_dir():
        return _fail(f"{directory}: no such directory", EXIT_USAGE)
    cert, key = args.tls_cert, args.tls_key
    if (cert is None) != (key is None):
        return _fail("TLS needs both --tls-cert and --tls-key", EXIT_USAGE)
    if args.listen.tls and cert is None:
        return _fail("a tls: address needs --tls-cert and --tls-key", EXIT_USAGE)
    try:
        context = (
            tlsmod.server_context(cert, key, args.tls_ca, args.require_client_cert)
            if cert is not None
            else None
        )
    except tlsmod.TLSError as exc:
        return _fail(str(exc), EXIT_USAGE)
    options = Options(
        timeout=args.timeout,
        idle_timeout=getattr(args, "idle_timeout", None),
        keepalive_interval=getattr(args, "keepalive", None),
    )
    server = StorageServer(
        args.listen,
        directory,
        pool=getattr(args, "libvirt_pool", None),
        tls=context,
        options=options,
    )
    as_json = not sys.stdout.isatty()
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            address = server.start()
        except OSError as exc:  # ListenError: one line naming the address
            return _fail(str(exc), EXIT_CONNECT)
        try:
            where = str(address) if context is None else f"tls:{str(address).partition(':')[2]}"
            record = {"listening": where, "pool": server.pool_name, "directory": str(directory)}
            text = f"listening on {where}: pool {server.pool_name!r} = {server.directory}"
            print(json.dumps(record) if as_json else text, flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            server.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK

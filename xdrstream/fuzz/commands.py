"""``xdrstream fuzz``: fuzz a live server over a socket (:mod:`xdrstream.fuzz.live`)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdrstream.cli import file_error

if TYPE_CHECKING:  # start-up: `fuzz -h` needs no fuzzer
    from xdrstream.fuzz import live


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fuzz",
        help="fuzz a live server with mutated frames and sessions",
        description=(
            "Send mutated restore.x/libvirt sessions to a server, one fresh connection per "
            "case, and report crashes, hangs, protocol violations in its answers and "
            "resource growth. Each finding is minimised and saved as a JSON Lines trace. "
            "Exit status: 0 no finding, 1 findings (or a --replay or --libvirt-schemas file "
            "whose content fails), 2 bad arguments or a file that cannot be read, 3 "
            "unreachable target."
        ),
    )
    parser.add_argument("--target", required=True, help="unix:PATH, tcp:HOST:PORT or HOST:PORT")
    parser.add_argument("--duration", default="60s", help="how long (e.g. 60s, 5m; default 60s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, help="directory for findings (trace files)")
    parser.add_argument(
        "--spawn", metavar="CMD", help="start the server with this command (and restart it)"
    )
    parser.add_argument(
        "--timeout", default="1s", help="time the server may stay silent (default 1s)"
    )
    parser.add_argument(
        "--pace", default="0s", help="pause between cases (e.g. 20ms; default none)"
    )
    parser.add_argument(
        "--max-findings", type=int, default=10, help="stop after this many (default 10)"
    )
    parser.add_argument(
        "--procedure",
        metavar="NAME",
        help="libvirt target: fuzz this remote-program procedure (e.g. DOMAIN_GET_INFO) "
        "with arguments generated from its .x type",
    )
    parser.add_argument(
        "--libvirt-schemas",
        type=Path,
        metavar="DIR",
        help="with --procedure: libvirt's own .x files (a source tree or its src/remote); "
        "default the built-in subset",
    )
    parser.add_argument(
        "--uri", default="test:///default", help="with --procedure: the CONNECT_OPEN name"
    )
    parser.add_argument(
        "--replay", type=Path, metavar="TRACE", help="send a saved finding again instead"
    )
    parser.add_argument(
        "--campaign",
        choices=("cases", "resources"),
        default="cases",
        help="cases: mutated sessions (default); resources: many connections held open, "
        "frames announced and never completed, replies never read, measuring the server's "
        "RSS, descriptors and threads (needs --spawn or --pid)",
    )
    parser.add_argument("--pid", type=int, help="with --campaign resources: the server's pid")
    parser.add_argument(
        "--connections", type=int, default=100, help="connections per resource attack (100)"
    )
    parser.set_defaults(func=run_fuzz)


class _Usage(Exception):
    """An option that cannot be used (exit 2)."""


def _check_options(args: argparse.Namespace) -> None:
    """Raise _Usage for options that cannot work together, before anything is started."""
    if args.max_findings < 1:
        raise _Usage("--max-findings must be at least 1")
    if args.connections < 1:
        raise _Usage("--connections must be at least 1")
    if args.spawn is not None:
        try:
            command = shlex.split(args.spawn)
        except ValueError as exc:  # e.g. No closing quotation
            raise _Usage(f"--spawn {args.spawn!r}: {exc}") from None
        if not command:
            raise _Usage("--spawn needs a command")
        if shutil.which(command[0]) is None:
            raise _Usage(f"--spawn: {command[0]!r} is no program that can be run")
    if args.campaign != "resources":
        if args.pid is not None:
            raise _Usage("--pid goes with --campaign resources")
        return
    if args.replay is not None:
        raise _Usage("--replay sends a saved case: not with --campaign resources")
    if args.pid is None and args.spawn is None:
        raise _Usage("--campaign resources needs --spawn or --pid")
    if args.pid is not None and (args.pid < 1 or not Path(f"/proc/{args.pid}").is_dir()):
        raise _Usage(f"--pid {args.pid}: no such process")


def _duration(option: str, text: str) -> float:
    from xdrstream.fuzz import live

    try:
        return live.parse_duration(text)
    except ValueError as exc:
        raise _Usage(f"{option}: {exc}") from None


def run_fuzz(args: argparse.Namespace) -> int:
    from xdrstream.fuzz import live

    # Options first (exit 2), then the input files (unreadable: 2; bad content: 1), all
    # before a connection is made or a process started.
    try:
        duration = _duration("--duration", args.duration)
        timeout = _duration("--timeout", args.timeout)
        pace = 0.0 if args.pace in ("0", "0s") else _duration("--pace", args.pace)
        target = live.Target(args.target, args.spawn, timeout)
        _check_options(args)
    except (ValueError, _Usage) as exc:
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 2
    try:
        seeds = None
        if args.procedure is not None:
            from xdrstream.fuzz import libvirt as fuzzing
            from xdrstream.libvirt import protocol

            remote = protocol.load(args.libvirt_schemas, lenient=True)
            seeds = fuzzing.procedure_seeds(remote, args.procedure, uri=args.uri, seed=args.seed)
            live.use_registry(fuzzing.judge_registry(remote))  # the whole program's replies
        if args.replay is not None:  # a bad file is said now, not as a traceback later
            from xdrstream.fuzz import trace

            trace.load(args.replay)
    except OSError as exc:  # a file, or a --libvirt-schemas directory that is no tree
        print(f"xdrstream fuzz: {file_error(exc) if exc.filename else exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # --procedure names none of the program's procedures
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # content that fails (TraceError, SchemaError): exit 1
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 1
    if args.campaign == "resources":
        return _resources(target, args.pid, args.connections)
    try:
        if args.replay is not None:
            target.start()
            try:
                outcome = live.replay(target, args.replay)
            finally:
                target.stop()
            print(f"{outcome.kind}: {outcome.detail}" if outcome.detail else outcome.kind)
            return 0 if outcome.kind == "ok" else 1
        return live.main_campaign(
            args.target,
            duration,
            seed=args.seed,
            out=args.out,
            spawn=args.spawn,
            timeout=timeout,
            max_findings=args.max_findings,
            pace=pace,
            status=sys.stderr if sys.stderr.isatty() else None,
            seeds=seeds,
        )
    except ConnectionError as exc:  # could not connect: exit 3, as every command (cli.py)
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 2


def _resources(target: live.Target, pid: int | None, connections: int) -> int:
    from xdrstream.fuzz import resources

    try:
        target.start()
        try:
            if pid is None:  # checked before the start: --spawn was given
                assert target.process is not None
                pid = target.process.pid
            measures = resources.campaign(target, pid, connections)
        finally:
            target.stop()
    except ConnectionError as exc:  # could not connect: exit 3, as every command (cli.py)
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # e.g. no /proc/PID of --pid
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 2
    for measure in measures:
        print(measure.line())
    found = resources.findings(measures)
    for finding in found:
        print(f"finding ({finding.kind}): {finding.detail}")
    print(f"{len(found)} resource finding(s)")
    return 1 if found else 0

"""``xdrstream fuzz``: fuzz a live server over a socket (:mod:`xdrstream.fuzz.live`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
            "Exit status: 0 no finding, 1 findings, 2 bad arguments, 3 unreachable target."
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


def run_fuzz(args: argparse.Namespace) -> int:
    from xdrstream.fuzz import live

    try:
        duration = live.parse_duration(args.duration)
        timeout = live.parse_duration(args.timeout)
        pace = 0.0 if args.pace in ("0", "0s") else live.parse_duration(args.pace)
        target = live.Target(args.target, args.spawn, timeout)
        seeds = None
        if args.procedure is not None:
            from xdrstream.fuzz import libvirt as fuzzing
            from xdrstream.libvirt import protocol

            remote = protocol.load(args.libvirt_schemas, lenient=True)
            seeds = fuzzing.procedure_seeds(remote, args.procedure, uri=args.uri, seed=args.seed)
            live.use_registry(fuzzing.judge_registry(remote))  # the whole program's replies
        if args.replay is not None:  # a bad file is a usage error now, not a traceback later
            from xdrstream.fuzz import trace

            trace.load(args.replay)
    except OSError as exc:
        text = f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else str(exc)
        print(f"xdrstream fuzz: {text}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as exc:  # TraceError is a ValueError: names the file
        print(f"xdrstream fuzz: {exc}", file=sys.stderr)
        return 2
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
            if pid is None and target.process is not None:
                pid = target.process.pid
            if pid is None:
                message = "--campaign resources needs --spawn or --pid"
                print(f"xdrstream fuzz: {message}", file=sys.stderr)
                return 2
            if not Path(f"/proc/{pid}").is_dir():
                print(f"xdrstream fuzz: --pid {pid}: no such process", file=sys.stderr)
                return 2
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

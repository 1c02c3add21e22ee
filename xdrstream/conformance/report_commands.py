"""``xdrstream conformance exactness`` and ``xdrstream conformance judge`` (issue 16 parts 2, 5, 7).

    xdrstream conformance exactness --connect unix:SOCK --libvirt-schemas TREE
        [--uri test:///default --uri qemu:///session] [--json FILE] [--verbose]
    xdrstream conformance columns "libvirtd 9.0=lv.json" "ours=ours.json"   # README table
    xdrstream conformance judge --listen unix:/tmp/j.sock --upstream unix:SOCK
        [--count 1] [--html FILE] [--json FILE] [--junit FILE] [-- CLIENT COMMAND ...]

``exactness`` (:mod:`xdrstream.conformance.exactness`) prints ``N procedures checked of M in
the protocol`` and every mismatch; exit status 1 when a reply did not decode exactly.
``judge`` (:mod:`xdrstream.conformance.judge`) plays the server side to a client under
test (relaying to ``--upstream``) and judges each session's frames; given a command, it
runs it and judges the sessions it opened, else it waits for ``--count`` sessions.  Exit
status as ``conformance run``: 1 when a case failed or showed a deviation not allowed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from xdrstream.cli import file_error, positive_int, positive_seconds

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT, EXIT_STALLED = 0, 1, 2, 3, 4


def register(sub: Any) -> None:
    """Add the subcommands to ``xdrstream conformance``'s subparsers."""
    exact = sub.add_parser(
        "exactness",
        help="call every safe procedure of libvirt's remote program; each reply must decode "
        "exactly per libvirt's .x",
        description="Call every procedure of libvirt's remote program that only reads (its "
        "@acl), on each --uri, and decode each reply strictly per libvirt's own .x files; "
        "print how many were checked and every mismatch.",
        epilog="exit status: 0 no mismatch; 1 a reply did not decode exactly, or .x files "
        "that do not compile; 2 bad usage or .x files that cannot be read; 3 the server "
        "cannot be reached.",
    )
    exact.add_argument(
        "--connect", required=True, metavar="ADDR", help="unix:PATH or tcp:HOST:PORT"
    )
    exact.add_argument(
        "--libvirt-schemas",
        type=Path,
        metavar="DIR",
        help="libvirt's own .x files: a libvirt source tree or its src/remote directory "
        "(default: the built-in subset)",
    )
    exact.add_argument(
        "--uri",
        action="append",
        default=[],
        help="driver URI to open (repeatable, outcomes merged; default test:///default)",
    )
    exact.add_argument(
        "--timeout",
        type=positive_seconds,
        default=30.0,
        help="seconds to wait for each reply (default 30)",
    )
    exact.add_argument("--json", metavar="FILE", help="write every procedure's outcome as JSON")
    exact.add_argument("--verbose", action="store_true", help="print every procedure's outcome")
    exact.set_defaults(func=cmd_exactness)

    judge = sub.add_parser(
        "judge",
        help="play the server side to a client under test and judge its frames",
        description="Listen on --listen and relay each connection to --upstream, judging the "
        "client's frames against the catalogue's client cases; with a command after --, run "
        "it and judge the sessions it opened, else wait for --count sessions.",
        epilog="exit status: 0 every case passed or skipped; 1 a case failed, a deviation was "
        "not allowed, or the client opened no session; 2 bad usage (a tls: address: a TLS "
        "session cannot be judged); 3 cannot listen, or the upstream cannot be reached; 4 the "
        "sessions did not end in --timeout.",
    )
    judge.add_argument(
        "--listen", required=True, metavar="ADDR", help="address the client under test connects to"
    )
    judge.add_argument(
        "--upstream", required=True, metavar="ADDR", help="the real server the calls go to"
    )
    judge.add_argument(
        "--count", type=positive_int, default=1, help="sessions to wait for (no command)"
    )
    judge.add_argument(
        "--timeout",
        type=positive_seconds,
        default=60.0,
        help="seconds the client command or the sessions may take (default 60)",
    )
    judge.add_argument(
        "--allow-deviation",
        action="append",
        default=[],
        metavar="CASE-ID",
        help="a known deviation of this case (glob) does not fail the run; repeatable",
    )
    judge.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    judge.add_argument("--json", metavar="FILE", help="write a JSON report")
    judge.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    judge.add_argument("command", nargs=argparse.REMAINDER, help="-- CLIENT COMMAND to run")
    judge.set_defaults(func=cmd_judge)

    columns = sub.add_parser(
        "columns",
        help="print `conformance run --json` reports side by side (README's table)",
        description="Print a Markdown table of `conformance run --json` reports, one column "
        "per LABEL=FILE, one row per libvirt case of the first report.",
        epilog="exit status: 0 printed; 1 a file that is not such a report; 2 bad usage or a "
        "report that cannot be read.",
    )
    columns.add_argument(
        "reports",
        nargs="+",
        metavar="LABEL=FILE",
        help="a column label and the `conformance run --json` report it shows",
    )
    columns.set_defaults(func=cmd_columns)


def _fail(message: str, code: int) -> int:
    print(f"xdrstream conformance: error: {message}", file=sys.stderr)
    return code


def cmd_exactness(args: argparse.Namespace) -> int:
    from xdrstream.conformance import exactness
    from xdrstream.conformance.peer import unreachable
    from xdrstream.libvirt import protocol as protocols
    from xdrstream.transport import address as addresses
    from xdrstream.transport.errors import TransportError

    try:
        remote = protocols.load(args.libvirt_schemas)
    except OSError as exc:  # a file, or a directory that is no libvirt tree
        return _fail(f"cannot load the remote program: {exc}", EXIT_USAGE)
    except ValueError as exc:  # .x files that do not compile: their content (exit 1)
        return _fail(f"cannot load the remote program: {exc}", EXIT_FAILED)
    reports = []
    for uri in args.uri or ["test:///default"]:
        try:
            reports.append(exactness.check(remote, args.connect, uri=uri, timeout=args.timeout))
        except addresses.AddressError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except (OSError, TransportError) as exc:
            return _fail(f"{unreachable(args.connect, exc)} ({uri})", EXIT_CONNECT)
    for item in reports:
        if len(reports) > 1:
            print(f"{item.uri}: {item.summary_line()}")
    merged = exactness.merge(reports)
    exactness.print_report(merged, verbose=args.verbose)
    if args.json:
        merged.write_json(args.json)
    return EXIT_FAILED if merged.count("mismatch") else EXIT_OK


def cmd_judge(args: argparse.Namespace) -> int:
    from rich.console import Console

    from xdrstream.conformance import report
    from xdrstream.conformance.judge import JudgingProxy, check_addresses, judge
    from xdrstream.conformance.relay import check_upstream
    from xdrstream.transport import address as addresses

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:  # the addresses are checked before anything listens or connects
        listen = addresses.parse_address(args.listen)
        upstream = addresses.parse_address(args.upstream)
        check_addresses(listen, upstream)
    except (addresses.AddressError, ValueError) as exc:  # ValueError: a TLS address
        return _fail(str(exc), EXIT_USAGE)
    try:
        check_upstream(upstream)
        proxy = JudgingProxy(listen, upstream)
    except OSError as exc:  # ConnectError, ListenError: one line naming the address
        return _fail(str(exc), EXIT_CONNECT)
    console = Console(highlight=False)
    with proxy:
        if command:
            try:
                completed = subprocess.run(command, timeout=args.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return _fail(f"the client command: {exc}", EXIT_USAGE)
            console.print(f"client exited with status {completed.returncode}")
            count = len(proxy.sessions)
            if not count:  # nothing judged is no pass
                return _fail(f"the client made no connection to {proxy.address}", EXIT_FAILED)
        else:
            count = args.count
        try:
            sessions = proxy.wait(count, timeout=args.timeout)
        except TimeoutError as exc:  # the client stalled: exit 4 (cli.EXIT_STATUS)
            return _fail(str(exc), EXIT_STALLED)
    results = []
    frames: list[Any] = []
    evidence: list[list[int]] = []
    for number, session in enumerate(sessions, 1):
        judged = judge(session)
        report.print_table([r for r, _ in judged], console, f"judged session {number}")
        offset = len(frames)
        frames += session.frames
        for result, seen in judged:
            results.append(result)
            evidence.append([offset + n for n in seen])
    title = f"xdrstream conformance judge: client via {args.listen}"
    if args.html:
        report.write_html(args.html, results, title, frames=frames, evidence=evidence)
    if args.junit:
        report.write_junit(args.junit, results)
    if args.json:
        report.write_json(args.json, results, target=args.listen, program="libvirt", strict=False)
    return report.exit_code(results, args.allow_deviation)


def cmd_columns(args: argparse.Namespace) -> int:
    from xdrstream.conformance import report

    documents = []
    for item in args.reports:
        label, sep, path = item.partition("=")
        if not sep:
            return _fail(f"{item!r}: give LABEL=FILE", EXIT_USAGE)
        try:
            documents.append((label, report.read_json(path)))
        except OSError as exc:
            return _fail(file_error(exc, path), EXIT_USAGE)
        except report.ReportError as exc:  # read, but not a report: its content (exit 1)
            return _fail(str(exc), EXIT_FAILED)
    print(report.server_columns(documents))
    return EXIT_OK

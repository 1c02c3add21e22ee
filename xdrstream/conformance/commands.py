"""``xdrstream conformance ...`` and ``xdrstream trace ...``.

    xdrstream conformance run --target unix:/tmp/s [--cases '4.*'] [--exclude 8.2/1]
                              [--strict] [--junit out.xml] [--json out.json] [--timeout 5]
                              [--program auto|restore|libvirt] [--tls-ca CA ...]
                              [--allow-deviation CASE-ID ...]
    xdrstream conformance run --list                 # the catalogue, nothing is run
    xdrstream conformance replay --target ADDR [TRACE ...]   # committed traces by default
    xdrstream conformance serve --listen ADDR [TRACE ...]    # test a client: it starts
        # a restore/save like the trace's first call (e.g. `xdrstream save --variant 2
        # --name 200000:7`, or `--name client-4-4-3-1` for client case 4.4.3/1)
    xdrstream trace show FILE                        # ladder diagram
    xdrstream trace export --pcapng OUT FILE         # for Wireshark's libvirt dissector
    xdrstream trace record --listen ADDR --upstream ADDR -o FILE [--cases ...]

Exit codes: 0 all cases passed (or were skipped, or showed a deviation allowed with
``--allow-deviation``), 1 a case failed or showed a deviation not allowed (or a trace file
is not a trace), 2 usage or unreadable input, 3 the target cannot be reached. A deviation
is a MUST that the target's implementation (asked of the target itself) is known to break:
outcome ``deviation``, counted apart from failures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdrstream.cli import file_error, nonnegative_int, positive_int, positive_seconds
from xdrstream.transport import address as addresses

# Start-up: `xdrstream -h` and `conformance -h` import neither the catalogue nor rich; each
# command imports what it runs.
if TYPE_CHECKING:
    import ssl

    from xdrstream.conformance.catalogue import Context

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3


def register(subparsers: Any) -> None:
    conformance = subparsers.add_parser(
        "conformance",
        help="test a server (or client) implementation against spec.md",
        description="Run the case catalogue against a server, replay recorded traces, or "
        "play the server side of traces for a client under test.",
    )
    sub = conformance.add_subparsers(dest="conformance_command", metavar="ACTION", required=True)
    run = sub.add_parser(
        "run",
        help="run the case catalogue against a server",
        description="Run the catalogue's server cases (spec.md's MUSTs; with --strict its "
        "SHOULDs too) against the server at --target, print a table of outcomes (pass, fail, "
        "skip with its reason, deviation: a MUST a known implementation breaks, recognised "
        "from the target) and write JUnit, JSON or HTML reports. Against libvirt's program "
        "the run makes its own pool, volumes and domain on the target and removes them.",
        epilog="exit status: 0 every case passed or skipped (deviations allowed by "
        "--allow-deviation included); 1 a case failed, or showed a deviation not allowed; 2 "
        "bad usage (a bad address or TLS file, no --target, no case matching --cases/"
        "--exclude); 3 the target cannot be reached (or, with --program auto, answers "
        "neither program).",
    )
    _target_options(run, required=False)
    run.add_argument("--list", action="store_true", help="print the catalogue and exit")
    run.add_argument(
        "--cases",
        action="append",
        default=[],
        metavar="GLOB",
        help="only cases matching (e.g. '4.*', '7.3.1', '7.3.1/2'); repeatable",
    )
    run.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out matching cases; repeatable",
    )
    run.add_argument("--strict", action="store_true", help="also run SHOULD-level cases")
    run.add_argument(
        "--allow-deviation",
        action="append",
        default=[],
        metavar="CASE-ID",
        help="a known deviation of this case (glob) does not fail the run; repeatable",
    )
    run.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    run.add_argument("--json", metavar="FILE", help="write a JSON report")
    run.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    run.set_defaults(func=cmd_run)

    replay = sub.add_parser(
        "replay",
        help="replay traces' client sides against a server",
        description="Send each trace's client frames to the server at --target and compare "
        "what it answers with the recorded server side (serials renumbered, data compared "
        "by length and SHA-256, error bodies by code and domain). Traces marked not "
        "replayable are skipped with their reason.",
        epilog="exit status: 0 every trace replayed identically or was skipped; 1 a trace "
        "differed, or a file is not a trace; 2 bad usage or a trace file that cannot be read; "
        "3 the target cannot be reached.",
    )
    _target_options(replay, required=True)
    replay.add_argument(
        "traces",
        nargs="*",
        metavar="TRACE",
        help="trace files (default: the committed traces for the program)",
    )
    replay.set_defaults(func=cmd_replay)

    serve = sub.add_parser(
        "serve",
        help="play traces' server sides for a client under test",
        description="Listen on --listen; each connection's first call picks the trace whose "
        "first call it is (same procedure and arguments), whose server side is played while "
        "the client's frames are compared with the recorded ones.",
        epilog="exit status: 0 every client session matched its trace; 1 one did not, or a "
        "file is not a trace; 2 bad usage or a trace file that cannot be read; 3 cannot "
        "listen.",
    )
    serve.add_argument(
        "--listen", required=True, metavar="ADDR", help="unix:PATH or tcp:HOST:PORT to listen on"
    )
    serve.add_argument(
        "--count",
        type=nonnegative_int,
        default=0,
        help="stop after this many connections (0: until interrupted)",
    )
    serve.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds to wait for each frame the client should send (default 10)",
    )
    serve.add_argument("--json", metavar="FILE", help="write the per-trace results as JSON")
    serve.add_argument(
        "traces",
        nargs="*",
        metavar="TRACE",
        help="trace files (default: the committed restore.x traces)",
    )
    serve.set_defaults(func=cmd_serve)
    from xdrstream.conformance import report_commands

    report_commands.register(sub)  # exactness, judge

    trace = subparsers.add_parser(
        "trace", help="show, export or record conformance traces (JSON Lines)"
    )
    tsub = trace.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    show = tsub.add_parser(
        "show",
        help="print a trace as a decoded ladder diagram",
        description="Print a trace as a ladder diagram, each frame's header and body decoded.",
    )
    show.add_argument("file", metavar="FILE", help="trace file (.jsonl)")
    show.set_defaults(func=cmd_show)
    export = tsub.add_parser(
        "export",
        help="write a trace as a pcapng capture",
        description="Write a trace as a pcapng capture of one TCP connection, for Wireshark's "
        "libvirt dissector (tshark -d tcp.port==PORT,libvirt).",
    )
    export.add_argument("--pcapng", required=True, metavar="OUT", help="pcapng file to write")
    export.add_argument(
        "--port", type=int, default=16509, help="server TCP port in the capture (default 16509)"
    )
    export.add_argument("file", metavar="FILE", help="trace file (.jsonl)")
    export.set_defaults(func=cmd_export)
    record = tsub.add_parser(
        "record",
        help="relay one session byte for byte and record it",
        description="Listen on --listen, relay each connection byte for byte to --upstream and "
        "write the sessions as a trace once --sessions of them have ended.",
        epilog="exit status: 0 written; 2 bad usage (a tls: address: the bytes relayed would "
        "be no frames); 3 cannot listen, or the upstream cannot be reached.",
    )
    record.add_argument(
        "--listen", required=True, metavar="ADDR", help="address the client under test connects to"
    )
    record.add_argument(
        "--upstream", required=True, metavar="ADDR", help="the real server the bytes are relayed to"
    )
    record.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="trace file to write (.jsonl)"
    )
    record.add_argument(
        "--sessions",
        type=positive_int,
        default=1,
        help="connections to relay before writing the trace",
    )
    record.add_argument("--description", default="", help="the trace header's description")

    record.add_argument("--cases", default="", help="comma-separated case ids covered")
    record.add_argument(
        "--program",
        default="restore",
        choices=["restore", "libvirt"],
        help="program whose schemas describe the frames (default restore)",
    )
    record.set_defaults(func=cmd_record)


def _target_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--target",
        required=required,
        metavar="ADDR",
        help="unix:PATH, tcp:HOST:PORT or tls:HOST:PORT",
    )
    parser.add_argument(
        "--program",
        default="auto",
        choices=["auto", "restore", "libvirt"],
        help="program the target serves (auto: ask it)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5.0,
        help="seconds to wait for each expected answer",
    )
    parser.add_argument(
        "--tls-ca", metavar="FILE", help="CA that signed the server certificate (implies TLS)"
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", metavar="FILE", help="client key (mutual TLS)")
    parser.add_argument(
        "--libvirt-uri",
        default="qemu:///session",
        help="URI the libvirt volume cases open (default qemu:///session)",
    )
    parser.add_argument(
        "--libvirt-domain-uri",
        default="test:///default",
        help="URI the screenshot cases open (default test:///default)",
    )
    parser.add_argument(
        "--libvirt-domain", default="test", help="domain the screenshot cases use (default test)"
    )
    parser.add_argument(
        "--libvirt-pool",
        help="make the volume cases' volumes in this pool (default: a pool of the run's own)",
    )
    parser.add_argument(
        "--libvirt-volume", help="a volume the dense cases may overwrite if none can be made"
    )
    parser.add_argument(
        "--libvirt-fixture-dir",
        default="/tmp",
        metavar="DIR",
        help="where on the target's host the run's own pool gets its new directory",
    )


def _fail(message: str, code: int, command: str = "conformance") -> int:
    print(f"xdrstream {command}: error: {message}", file=sys.stderr)
    return code


def _reach(context: Context, args: argparse.Namespace) -> int | None:
    """The target's program (``--program auto``) and one connection to it: an unreachable
    target is exit 3 before anything runs, not every case's or trace's failure."""
    from xdrstream.conformance.peer import Violation, unreachable

    try:
        context.program = detect_program(context) if args.program == "auto" else args.program
    except OSError as exc:  # ssl.SSLError and ConnectError are OSErrors
        return _fail(unreachable(args.target, exc), EXIT_CONNECT)
    except Violation as exc:
        return _fail(f"{args.target}: {exc}; choose --program", EXIT_CONNECT)
    try:
        context.open_peer().close()
    except Violation as exc:
        return _fail(str(exc), EXIT_CONNECT)
    return None


def _read_traces(paths: list[Path]) -> list[tuple[Path, Any]]:
    """Every trace file read up front, naming the one that fails before anything ran (not
    a failed row after the others): one that cannot be read is exit 2, one that is not a
    trace exit 1 (its content, cli.EXIT_STATUS). Raises _InputError."""
    from xdrstream.conformance.trace import TraceError, read

    out = []
    for path in paths:
        try:
            out.append((path, read(path)))
        except OSError as exc:
            raise _InputError(file_error(exc, path), EXIT_USAGE) from None
        except TraceError as exc:
            raise _InputError(str(exc), EXIT_FAILED) from None
    return out


class _InputError(Exception):
    """A local input that cannot be used; the message names it, ``code`` is the exit."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def context_from_args(args: argparse.Namespace) -> Context:
    """A :class:`Context` from the target options (raises AddressError / TLSError)."""
    from xdrstream.conformance.catalogue import Context, LibvirtSettings
    from xdrstream.transport import tls as tlsmod

    address = addresses.parse_address(args.target)
    tls: ssl.SSLContext | None = None
    if address.tls or args.tls_ca or args.tls_cert:
        tls = tlsmod.client_context(args.tls_ca, args.tls_cert, args.tls_key)
    return Context(
        address=address,
        tls=tls,
        timeout=args.timeout,
        libvirt=LibvirtSettings(
            uri=args.libvirt_uri,
            domain_uri=args.libvirt_domain_uri,
            domain=args.libvirt_domain,
            pool=args.libvirt_pool,
            volume=args.libvirt_volume,
            fixture_dir=getattr(args, "libvirt_fixture_dir", "/tmp"),
        ),
    )


def detect_program(context: Context) -> str:
    """``restore`` if the target answers restore.x's PING, else ``libvirt`` if it answers
    libvirt's AUTH_LIST. Raises Violation when it answers neither."""
    from xdrstream.conformance.cases import LIBVIRT_PROG, LV_AUTH_LIST, PING, raw
    from xdrstream.conformance.peer import Closed, Peer, Violation
    from xdrstream.protocol.framing import MessageStatus, MessageType

    for program, probe in (
        ("restore", raw(PING, MessageType.CALL, 0)),
        ("libvirt", raw(LV_AUTH_LIST, MessageType.CALL, 0, prog=LIBVIRT_PROG)),
    ):
        try:
            peer = Peer(
                context.address,
                [],
                tls=context.tls,
                timeout=context.timeout,
                tls_confirmation=program == "libvirt",
            )
        except Violation:
            continue
        try:
            peer.send_raw(probe)
            frame = peer.frame(what="the answer to a probe call")
            if frame.header.type == MessageType.REPLY and frame.header.status == MessageStatus.OK:
                return program
        except (Closed, Violation):
            pass
        finally:
            peer.close()
    raise Violation("the target answers neither restore.x's PING nor libvirt's AUTH_LIST")


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from xdrstream.conformance import report
    from xdrstream.conformance.catalogue import all_cases, exit_status, prepared, run_case, select
    from xdrstream.transport import tls as tlsmod

    console = Console(stderr=False, highlight=False)
    cases = select(all_cases(), args.cases, args.exclude)
    if args.list:
        report.print_catalogue(cases, console)
        return EXIT_OK
    if not args.target:
        return _fail("--target is required (or use --list)", EXIT_USAGE)
    cases = [c for c in cases if c.role == "server"]  # client cases: `conformance serve`
    if not cases:
        return _fail("no case matches --cases/--exclude", EXIT_USAGE)
    try:
        context = context_from_args(args)
    except (addresses.AddressError, tlsmod.TLSError, OSError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    if (failed := _reach(context, args)) is not None:
        return failed
    from xdrstream.conformance.cases import identify

    context.implementation = identify(context)
    from xdrstream.conformance.peer import recording

    results = []
    frames: list[Any] = []  # every case's frames, for the HTML report
    evidence: list[list[int]] = []
    dropped: list[int] = []  # per case: frames beyond its recording's bound
    with prepared(context) as fixtures:
        if fixtures is not None:
            made = "; ".join(fixtures.made) or "nothing"
            problems = [p for p in (fixtures.pool_problem, fixtures.domain_problem) if p]
            console.print(f"fixtures made on the target: {made}")
            for problem in problems:
                console.print(f"fixture not made: {problem}")
        for item in cases:
            with recording() as record:
                result = run_case(item, context, args.strict)
            results.append(result)
            evidence.append(list(range(len(frames) + 1, len(frames) + len(record.frames) + 1)))
            frames += record.frames
            dropped.append(record.dropped)
    who = f", {context.implementation}" if context.implementation else ""
    report.print_table(
        results, console, f"xdrstream conformance: {args.target} ({context.program}{who})"
    )
    if args.junit:
        report.write_junit(args.junit, results)
    if args.html:
        report.write_html(
            args.html,
            results,
            f"xdrstream conformance: {args.target} ({context.program}{who})",
            frames=frames,
            evidence=evidence,
            dropped=dropped,
        )
    if args.json:
        report.write_json(
            args.json,
            results,
            target=args.target,
            program=context.program,
            strict=args.strict,
            implementation=context.implementation,
        )
    return exit_status(results, args.allow_deviation)


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.console import Console

    from xdrstream.conformance import replay
    from xdrstream.transport import tls as tlsmod

    console = Console(highlight=False)
    try:
        context = context_from_args(args)
        given = _read_traces([Path(p) for p in args.traces])
    except _InputError as exc:
        return _fail(str(exc), exc.code)
    except (addresses.AddressError, tlsmod.TLSError, OSError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    if (failed := _reach(context, args)) is not None:
        return failed
    if not given:
        given = _read_traces(replay.committed_traces(context.program))
    results = [replay.replay(trace, context, path.name) for path, trace in given]
    replay.print_results(results, console)
    return EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from rich.console import Console

    from xdrstream.conformance import replay

    console = Console(highlight=False)
    paths = [Path(p) for p in args.traces] or replay.committed_traces("restore")
    try:
        address = addresses.parse_address(args.listen)
        given = _read_traces(paths)
        server = replay.TraceServer(address, given, timeout=args.timeout)
    except _InputError as exc:
        return _fail(str(exc), exc.code)
    except addresses.AddressError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # ListenError: one line naming the address
        return _fail(str(exc), EXIT_CONNECT)
    playable = len(server.traces)  # traces a client can start: the others are server cases
    console.print(
        f"conformance server listening on {server.address} "
        f"({playable} of {len(paths)} traces playable for a client)"
    )
    try:
        server.serve(count=args.count or None, on_result=lambda r: replay.print_one(r, console))
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    if args.json:
        replay.write_json(args.json, server.results)
    return EXIT_FAILED if any(not r.ok for r in server.results) else EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from xdrstream.conformance import ladder

    try:
        [(_, trace)] = _read_traces([Path(args.file)])
    except _InputError as exc:
        return _fail(str(exc), exc.code, "trace")
    sys.stdout.write(ladder.render(trace))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from xdrstream.conformance import ladder

    try:
        [(_, trace)] = _read_traces([Path(args.file)])
        Path(args.pcapng).write_bytes(ladder.to_pcapng(trace, args.port))
    except _InputError as exc:
        return _fail(str(exc), exc.code, "trace")
    except OSError as exc:
        return _fail(file_error(exc, args.pcapng, "write"), EXIT_USAGE, "trace")
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE, "trace")
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    from xdrstream.conformance import recorder
    from xdrstream.conformance.relay import check_upstream
    from xdrstream.conformance.trace import write

    try:
        listen = addresses.parse_address(args.listen)
        upstream = addresses.parse_address(args.upstream)
    except addresses.AddressError as exc:
        return _fail(str(exc), EXIT_USAGE, "trace")
    if listen.tls or upstream.tls:  # before anything listens or connects
        message = "a TLS session cannot be recorded (its frames are encrypted): use unix: or tcp:"
        return _fail(message, EXIT_USAGE, "trace")
    try:
        check_upstream(upstream)
        proxy = recorder.RecordingProxy(listen, upstream)
    except OSError as exc:  # ConnectError, ListenError: one line naming the address
        return _fail(str(exc), EXIT_CONNECT, "trace")
    print(f"recording proxy listening on {proxy.address}, upstream {upstream}", flush=True)
    try:
        sessions = proxy.record(args.sessions)
    except KeyboardInterrupt:
        sessions = proxy.sessions
    finally:
        proxy.close()
    program = "libvirt_remote" if args.program == "libvirt" else "restore"
    trace = recorder.to_trace(
        sessions,
        programs=[program],
        description=args.description,
        cases=[c for c in args.cases.split(",") if c],
    )
    write(args.output, trace)
    print(f"wrote {args.output}: {len(trace.frames)} frames", flush=True)
    return EXIT_OK

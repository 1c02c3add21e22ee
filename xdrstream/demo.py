"""``make demo``: the codec, then restores and saves through every stream variant.

    python -m xdrstream.demo [--synthetic] [--size 64M] [--seed 7]   (XDRSTREAM_DEMO_SIZE: --size)

1. The codec: compiles ``restore.x`` from the package, encodes a value, decodes it back,
   and shows the frame the engine makes of a call carrying it, decoded again.
2. The streams: where QEMU is installed, saves a fresh real guest (pc-i440fx-7.2, 16 MiB,
   TCG: about 0.1 s) into a temporary file, and ``xdrstream serve`` replays it for saves
   (``--save-from``); otherwise, or with ``--synthetic`` or a size, writes the synthetic QEMU
   migration stream (QEVM v3) of ``--size`` bytes. It says which. It starts ``xdrstream
   serve`` with the QEMU stub (which checks the stream as QEMU would) on a temporary Unix
   socket, then runs ``xdrstream restore`` of that file and ``xdrstream save`` of the stub's
   stream once per variant (V1, V2, V3), each as a separate process. Checks: every command exits 0;
   a restore's SHA-256 as sent equals the file's and the stub's own (it hashes what it
   reads); a save's output file has the SHA-256 of the stream the stub generated, and the
   stub says it wrote that stream whole. Prints a table of the transfers.

Everything started is stopped and every temporary file removed; the exit status is 1 when
any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.panel import Panel
from rich.pretty import Pretty
from rich.table import Table

from xdrstream.capture.decode import Decoder
from xdrstream.codec import compile_schema
from xdrstream.endpoints.qemu import QemuLauncher, find_qemu
from xdrstream.endpoints.qemu_stub import synthetic_sha256, write_synthetic
from xdrstream.endpoints.sink import EndpointError
from xdrstream.protocol import Connection, Role, programs_from_schema, schemas
from xdrstream.protocol.events import Call
from xdrstream.restore.commands import parse_size

DEFAULT_SIZE = 64 << 20
SIZE_VARIABLE = "XDRSTREAM_DEMO_SIZE"
STEP_TIMEOUT = 60.0  # seconds any one command may take before the demo gives up on it
VARIANTS = (1, 2, 3)


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


# --- part 1: the codec ----------------------------------------------------------------------


def _hex_words(data: bytes) -> str:
    words = [data[i : i + 4].hex() for i in range(0, len(data), 4)]
    return "\n".join(" ".join(words[i : i + 8]) for i in range(0, len(words), 8))


def show_codec(console: Console) -> list[Check]:
    console.rule("[bold]1. The XDR codec")
    path = schemas.path("restore")
    schema = compile_schema(path.read_text(encoding="utf-8"), filename=path.name)
    program = schema.programs["XS_RESTORE_PROGRAM"]
    version = program.versions[1]
    console.print(
        f"Compiled [cyan]{path.name}[/] from the package: program {program.name} "
        f"0x{program.number:08x} version {version.number}, {len(version.procedures)} "
        "procedures (a stream is declared by the @stream/@sparse comment above each one):"
    )
    procedures = Table(show_edge=False)
    for column in ("#", "procedure", "argument -> result", "stream"):
        procedures.add_column(column)
    for number, proc in sorted(version.procedures.items()):
        stream = proc.annotations.get("stream", "")
        if stream and "sparse" in proc.annotations:
            stream += ", sparse"
        signature = f"{proc.arg_type or 'void'} -> {proc.result_type or 'void'}"
        procedures.add_row(str(number), proc.name, signature, stream)
    console.print(procedures)

    args_type = schema["xs_restore_args"]
    value = args_type(name="guest-01", size_hint=64 << 20, flags=0)
    data = args_type.pack(value)
    back = args_type.unpack(data)
    console.print("\nA value of [cyan]xs_restore_args[/] (a generated dataclass):")
    console.print(Pretty(value))
    console.print(f"encodes to {len(data)} bytes of XDR (big-endian 4-byte words):")
    console.print(Panel(_hex_words(data), expand=False))
    console.print("and decodes back to:")
    console.print(Pretty(back))
    checks = [Check("codec round trip of xs_restore_args", back == value)]

    programs = programs_from_schema(schema)
    client = Connection(Role.CLIENT, programs=programs)
    procedure = int(schema.constants["XS_PROC_RESTORE_V2"])
    frame = client.send(Call(client.next_serial(), program.number, 1, procedure, value))
    decoded = list(Decoder(programs).decode_stream(frame))
    console.print(
        f"\nThe engine's frame for a call of XS_PROC_RESTORE_V2 with it ({len(frame)} bytes: "
        "length word, 24-byte header, body):"
    )
    console.print(Panel(_hex_words(frame), expand=False))
    message = decoded[0] if len(decoded) == 1 else None
    if message is not None and hasattr(message, "as_json"):
        fields = message.as_json()
        shown = ["length", "program_name", "version", "procedure_name", "type_name"]
        shown += ["serial", "status_name", "body"]
        console.print("`xdrstream decode` reads it back as:")
        console.print(Pretty({key: fields[key] for key in shown}))
    body_ok = message is not None and getattr(message, "body", None) == {
        "name": "guest-01",
        "size_hint": 64 << 20,
        "flags": 0,
    }
    checks.append(Check("frame decodes to the same call", body_ok))
    return checks


# --- part 2: the streams --------------------------------------------------------------------


@dataclass
class Transfer:
    variant: int
    direction: str
    bytes: int = 0
    seconds: float = 0.0
    checksum_ok: bool = False
    error: str = ""


class DemoServer:
    """``xdrstream serve`` in a child process; its JSON lines arrive on a queue."""

    def __init__(self, socket_path: Path, size: int, seed: int, extra: list[str]) -> None:
        command = [sys.executable, "-m", "xdrstream.cli", "serve"]
        command += ["--listen", f"unix:{socket_path}"]
        if "--save-from" not in extra:  # a recorded stream has its own size and content
            command += ["--save-size", str(size), "--seed", str(seed)]
        command += extra
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))
        self.lines.put(None)  # end of output: the server is gone

    def next_line(self, key: str) -> dict[str, Any]:
        """The next line with ``key``; RuntimeError if the server stops or says nothing."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the server printed no {key!r} line in time") from None
            if line is None:
                raise RuntimeError(f"the server exited: {self.stderr_tail()}")
            if key in line:
                value: dict[str, Any] = line[key] if isinstance(line[key], dict) else line
                return value

    def drain(self, wait: float = 0.5) -> None:
        """Forget the lines printed so far (and within ``wait`` seconds)."""
        with contextlib.suppress(queue.Empty):
            while (line := self.lines.get(timeout=wait)) is not None:
                pass
            self.lines.put(line)  # keep the end-of-output marker for next_line

    def stderr_tail(self) -> str:
        try:
            self.process.wait(5)  # its output ended: it is exiting
        except subprocess.TimeoutExpired:
            return "(still running)"
        if self.process.stderr is None:
            return f"exit code {self.process.returncode}"
        return self.process.stderr.read()[-500:].strip() or f"exit code {self.process.returncode}"

    def stop(self) -> int:
        """SIGTERM (a clean shutdown), SIGKILL if that takes too long; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return self.process.returncode


def _cli(arguments: list[str]) -> tuple[dict[str, Any] | None, str]:
    """Run ``xdrstream ARGUMENTS --json``: (its JSON line or None, its error line)."""
    command = [sys.executable, "-m", "xdrstream.cli", *arguments, "--json"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {STEP_TIMEOUT:.0f} s"
    if done.returncode != 0:
        error = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return None, f"exit {done.returncode}: {error[0]}"
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"unreadable output: {done.stdout[-200:]!r}"
    return result, ""


REAL_GUEST = ("pc-i440fx-7.2", 16)  # machine type, MiB: a save of ~0.35 MB in ~0.1 s


def real_save(path: Path) -> str | None:
    """Save a fresh real QEMU guest into `path`: its SHA-256, or None without QEMU."""
    if find_qemu() is None:
        return None
    digest = hashlib.sha256()
    launcher = QemuLauncher(machine=REAL_GUEST[0], memory_mib=REAL_GUEST[1])
    try:
        with launcher.save() as endpoint, open(path, "wb") as out:
            buffer = bytearray(1 << 16)
            while count := endpoint.readinto(buffer):
                out.write(buffer[:count])
                digest.update(buffer[:count])
            result = endpoint.wait(timeout=STEP_TIMEOUT)
    except EndpointError:
        return None
    return digest.hexdigest() if result.ok else None


def run_transfers(
    console: Console,
    work: Path,
    size: int,
    seed: int,
    server_extra: list[str],
    real: bool = False,
) -> tuple[list[Transfer], list[Check]]:
    console.rule("[bold]2. Restore and save through each stream variant")
    image = work / "guest.qevm"
    made = real_save(image) if real else None
    if made is not None:
        expected = made
        size = image.stat().st_size
        server_extra = ["--save-from", str(image), *server_extra]
        console.print(
            f"Image: a real QEMU 7.2 save of a {REAL_GUEST[0]} guest with {REAL_GUEST[1]} MiB, "
            f"made just now by {find_qemu()}: {size} bytes, sha256 {expected[:16]}...; the "
            "stub checks it as QEMU would and replays it for the saves"
        )
    else:
        expected = write_synthetic(image, size, seed)
        why = "as asked" if not real else "QEMU is not installed"
        console.print(
            f"Image ({why}): a synthetic QEMU migration stream (QEVM v3) of {size} bytes, "
            f"sha256 {expected[:16]}..., in {image}"
        )
        assert expected == synthetic_sha256(size, seed)
    socket_path = work / "demo.sock"
    server = DemoServer(socket_path, size, seed, server_extra)
    transfers: list[Transfer] = []
    checks: list[Check] = []
    try:
        address = server.next_line("listening")["listening"]
        console.print(f"Server: xdrstream serve (QEMU stub endpoints), listening on {address}")
        for variant in VARIANTS:
            for direction in ("restore", "save"):
                transfers.append(
                    _transfer(server, address, work, image, expected, variant, direction, size)
                )
                last = transfers[-1]
                console.print(
                    f"  V{variant} {direction:7s} "
                    + ("[green]ok[/]" if last.checksum_ok else f"[red]FAILED[/] {last.error}")
                )
    except RuntimeError as exc:
        checks.append(Check("server", False, str(exc)))
    finally:
        code = server.stop()
    checks.append(Check("server stops cleanly on SIGTERM", code == 0, f"exit code {code}"))
    checks.append(Check("server removed its socket", not socket_path.exists()))
    for item in transfers:
        checks.append(Check(f"V{item.variant} {item.direction}", item.checksum_ok, item.error))
    return transfers, checks


def _transfer(
    server: DemoServer,
    address: str,
    work: Path,
    image: Path,
    expected: str,
    variant: int,
    direction: str,
    size: int,
) -> Transfer:
    transfer = Transfer(variant, direction)
    common = ["--connect", address, "--variant", str(variant), "--sha256"]  # checked below
    if direction == "restore":
        result, error = _cli(["restore", str(image), *common])
    else:
        out = work / f"saved-v{variant}.qevm"
        result, error = _cli(["save", str(out), *common])
    if result is None:
        transfer.error = error
        server.drain()  # a failed transfer may or may not have reached an endpoint
        return transfer
    transfer.bytes = int(result["bytes"])
    transfer.seconds = float(result["seconds"])
    verdict = server.next_line("endpoint")
    problems = []
    if transfer.bytes != size:
        problems.append(f"moved {transfer.bytes} bytes, not {size}")
    if result["sha256"] != expected:
        problems.append(f"{direction} sha256 {result['sha256'][:16]}... is not the image's")
    if not verdict.get("ok") or verdict.get("sha256") != expected:
        problems.append(f"the stub says: ok={verdict.get('ok')}, error={verdict.get('error')}")
    if direction == "save":
        with contextlib.suppress(OSError):
            os.unlink(work / f"saved-v{variant}.qevm")
    transfer.checksum_ok = not problems
    transfer.error = "; ".join(problems)
    return transfer


def transfers_table(transfers: list[Transfer]) -> Table:
    table = Table(title="Transfers over a Unix socket, QEMU stub endpoints")
    for column in ("variant", "direction", "bytes", "seconds", "MB/s"):
        table.add_column(column, justify="right" if column != "direction" else "left")
    table.add_column("checksum OK")
    for item in transfers:
        rate = item.bytes / item.seconds / 1e6 if item.seconds > 0 else 0.0
        table.add_row(
            f"V{item.variant}",
            item.direction,
            str(item.bytes),
            f"{item.seconds:.3f}",
            f"{rate:.1f}",
            "[green]yes[/]" if item.checksum_ok else "[red]NO[/]",
        )
    return table


# --- main -----------------------------------------------------------------------------------


def _default_size() -> int:
    text = os.environ.get(SIZE_VARIABLE)
    return DEFAULT_SIZE if not text else parse_size(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xdrstream.demo", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help=f"image size (default: ${SIZE_VARIABLE} or 64M)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic image")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use the synthetic image even where QEMU is installed (so does --size)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `xdrstream serve` (e.g. --server-arg=--stub-exit-code=5)",
    )
    return parser


@contextlib.contextmanager
def _work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="xdrstream-demo-") as name:
        yield Path(name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # a size asks for the synthetic image (the only one with a size); else a real save
    real = args.size is None and not os.environ.get(SIZE_VARIABLE) and not args.synthetic
    size = args.size if args.size is not None else _default_size()
    console = Console()
    started = time.monotonic()
    checks = show_codec(console)
    with _work_dir() as work:
        transfers, stream_checks = run_transfers(
            console, work, size, args.seed, args.server_arg, real
        )
    checks += stream_checks
    console.print()
    console.print(transfers_table(transfers))
    failed = [check for check in checks if not check.ok]
    for check in failed:
        console.print(f"[red]FAILED[/] {check.what}: {check.detail}")
    verdict = "[red]FAILED[/]" if failed else "[green]all checks passed[/]"
    console.print(
        f"{len(checks) - len(failed)}/{len(checks)} checks passed in "
        f"{time.monotonic() - started:.1f} s: {verdict}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

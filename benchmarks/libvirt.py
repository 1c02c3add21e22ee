"""Volume upload/download throughput against real libvirt, in one run (issue 7).

    .venv/bin/python benchmarks/libvirt.py [--size 256M] [--repeat 5] [--profile]

One private libvirtd (tests/realpeers.py: uid 65534, session mode, Unix socket) with a
directory pool holding a raw volume of `--size` bytes, one random source file of that size,
and our storage server (`xdrstream serve --libvirt-storage`, a separate process) on another Unix
socket with a volume file of the same size. Runs are interleaved, median of `--repeat` (5):

1. Client: `virsh vol-upload` / `vol-download` (a process: its wall time) against
   `LibvirtClient.upload` / `download` in this process (connect, AUTH_LIST ... CONNECT_CLOSE
   included), both against libvirtd. Targets (issue 12): download >= 1.0x virsh, upload
   >= 1.2x virsh.
2. Server: the same `virsh vol-upload` into libvirtd and into our server.
   Target: our server >= 1.5x libvirtd.  For scale, the same upload into our server with
   the file writes turned off (a sink: it parses every frame and drops the data) shows
   how fast virsh itself can send; no server can beat that.

Each timed transfer starts after `sync` (no earlier transfer's dirty pages to write back).
Every transfer's result is checked (SHA-256 of the volume file or the downloaded file
equals the source's). `--profile` runs cProfile over one upload through our server (in the
server process) and one client upload and download, and prints the top functions.
Exits 0 either way (1 if a transfer was wrong). On a shared machine compare the ratios,
not the absolute rates.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from realpeers import NOBODY, Libvirtd, private_libvirtd, stop_process  # noqa: E402

from xdrstream.libvirt import LibvirtClient  # noqa: E402
from xdrstream.restore.commands import parse_size  # noqa: E402

MiB = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def make_source(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            step = min(left, 16 * MiB)
            out.write(os.urandom(step))
            left -= step


def virsh(uri: str, *args: str) -> None:
    result = subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {result.stderr.strip()}")


def timed(action: Callable[[], object]) -> float:
    """Wall time of ``action``, started with no dirty pages pending: every transfer writes
    ~1 GiB into the page cache, and without the sync a later transfer would pay for the
    writeback of an earlier one (the kernel throttles writers above its dirty limits)."""
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def serve_as_sink(directory: str, sock: str) -> None:
    """Our storage server with uploads dropped instead of written (the `--sink` bound)."""
    from xdrstream.libvirt import storage_server

    storage_server._write_all = lambda fd, data: None  # only for this measurement
    server = storage_server.StorageServer(f"unix:{sock}", directory, pool="bench")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        print("listening (sink)", flush=True)
        while not stop.wait(0.5):
            pass


@contextlib.contextmanager
def our_server(
    directory: Path, sock: Path, profile: Path | None, sink: bool = False
) -> Iterator[None]:
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    if sink:
        command += [__file__, "--serve-sink", str(directory), str(sock)]
    else:
        command += ["-m", "xdrstream.cli", "serve", "--libvirt-storage", str(directory)]
        command += ["--listen", f"unix:{sock}", "--pool", "bench"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"our server did not start: {line}{process.stderr.read()}")  # type: ignore[union-attr]
        yield
    finally:
        process.send_signal(signal.SIGINT)  # cProfile writes its file on a clean exit
        try:
            process.wait(30)
        finally:
            stop_process(process)  # type: ignore[arg-type]
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()


class Bench:
    def __init__(self, daemon: Libvirtd, work: Path, size: int) -> None:
        self.daemon = daemon
        self.work = work
        self.size = size
        self.source = work / "source.bin"
        self.expected = ""
        self.libvirt_volume = daemon.root / "pool-tpool" / "bench"
        self.ours_dir = work / "ours"
        self.ours_sock = work / "ours.sock"
        self.sink_dir = work / "sink"
        self.sink_sock = work / "sink.sock"
        self.failures: list[str] = []

    @property
    def libvirt_uri(self) -> str:
        return self.daemon.uri()

    @property
    def ours_uri(self) -> str:
        return f"qemu+unix:///session?socket={self.ours_sock}"

    def prepare(self) -> None:
        make_source(self.source, self.size)
        self.expected = sha256(self.source)
        self.daemon.define_pool("tpool")
        virsh(
            self.libvirt_uri, "vol-create-as", "tpool", "bench", str(self.size), "--format", "raw"
        )
        for directory in (self.ours_dir, self.sink_dir):
            directory.mkdir()
            with open(directory / "bench", "wb") as out:
                out.truncate(self.size)

    def check(self, what: str, path: Path) -> None:
        if sha256(path) != self.expected:
            self.failures.append(f"{what}: {path} differs from the source")
        path_is_output = path.parent == self.work
        if path_is_output:
            path.unlink()

    # the measured actions
    def virsh_upload(self, uri: str, volume: Path, what: str) -> float:
        seconds = timed(
            lambda: virsh(uri, "vol-upload", "--pool", self.pool(uri), "bench", str(self.source))
        )
        self.check(what, volume)
        return seconds

    def pool(self, uri: str) -> str:
        return "tpool" if uri == self.libvirt_uri else "bench"

    def virsh_upload_to_sink(self) -> float:
        uri = f"qemu+unix:///session?socket={self.sink_sock}"
        return timed(lambda: virsh(uri, "vol-upload", "--pool", "bench", "bench", str(self.source)))

    def virsh_download(self) -> float:
        out = self.work / "virsh.out"
        seconds = timed(
            lambda: virsh(self.libvirt_uri, "vol-download", "--pool", "tpool", "bench", str(out))
        )
        self.check("virsh vol-download", out)
        return seconds

    def client_upload(self) -> float:
        def run() -> None:
            with LibvirtClient.open(self.libvirt_uri) as client:
                client.upload(client.lookup_volume("tpool", "bench"), self.source)

        seconds = timed(run)
        self.check("client upload", self.libvirt_volume)
        return seconds

    def client_download(self) -> float:
        out = self.work / "client.out"

        def run() -> None:
            with LibvirtClient.open(self.libvirt_uri) as client:
                client.download(client.lookup_volume("tpool", "bench"), out)

        seconds = timed(run)
        self.check("client download", out)
        return seconds


def rate(size: int, seconds: float) -> float:
    return size / seconds / MiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=256 * MiB, help="bytes (256M)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement, median")
    parser.add_argument("--profile", action="store_true", help="cProfile our client and server")
    parser.add_argument("--serve-sink", nargs=2, metavar=("DIR", "SOCK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        serve_as_sink(*args.serve_sink)
        return 0
    size = args.size
    with private_libvirtd() as daemon:
        work = Path(tempfile.mkdtemp(prefix="xdrstream-bench-libvirt-", dir=daemon.root))
        os.chown(work, NOBODY, NOBODY)
        bench = Bench(daemon, work, size)
        bench.prepare()
        profile = work / "server.prof" if args.profile else None
        times: dict[str, list[float]] = {}

        def record(name: str, seconds: float) -> None:
            times.setdefault(name, []).append(seconds)

        with (
            our_server(bench.ours_dir, bench.ours_sock, profile),
            our_server(bench.sink_dir, bench.sink_sock, None, sink=True),
        ):
            for _ in range(args.repeat):
                record(
                    "virsh upload -> libvirtd",
                    bench.virsh_upload(
                        bench.libvirt_uri, bench.libvirt_volume, "virsh -> libvirtd"
                    ),
                )
                record("our client upload -> libvirtd", bench.client_upload())
                record(
                    "virsh upload -> our server",
                    bench.virsh_upload(bench.ours_uri, bench.ours_dir / "bench", "virsh -> ours"),
                )
                record("virsh upload -> sink (bound)", bench.virsh_upload_to_sink())
                record("virsh download <- libvirtd", bench.virsh_download())
                record("our client download <- libvirtd", bench.client_download())
        if args.profile:
            profile_client(bench)
        best = {name: statistics.median(seconds) for name, seconds in times.items()}
        print_report(size, args.repeat, best, bench.failures)
        if profile is not None and profile.exists():
            print_profile(profile, "our server (virsh uploads into it)")
    return 1 if bench.failures else 0


def profile_client(bench: Bench) -> None:
    """cProfile one upload and one download of our client (transfers only, no checks)."""
    import cProfile

    out = bench.work / "profiled.out"
    profiler = cProfile.Profile()
    with LibvirtClient.open(bench.libvirt_uri) as client:
        vol = client.lookup_volume("tpool", "bench")
        profiler.enable()
        client.upload(vol, bench.source)
        client.download(vol, out)
        profiler.disable()
    out.unlink()
    path = bench.work / "client.prof"
    profiler.dump_stats(str(path))
    print_profile(path, "our client (one upload and one download, main thread)")


def print_profile(path: Path, title: str) -> None:
    import pstats

    print(f"\nProfile of {title}, top 15 by own time:")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(15)


def print_report(size: int, repeat: int, best: dict[str, float], failures: list[str]) -> None:
    python = sys.version.split()[0]
    print(
        f"Volume of {size / MiB:.0f} MiB over the Unix socket; median of {repeat}; "
        f"Python {python}\n"
    )
    print("| transfer                          | seconds |   MiB/s |")
    print("|-----------------------------------|--------:|--------:|")
    for name, seconds in best.items():
        print(f"| {name:<33} | {seconds:7.3f} | {rate(size, seconds):7.1f} |")
    up = best["virsh upload -> libvirtd"] / best["our client upload -> libvirtd"]
    down = best["virsh download <- libvirtd"] / best["our client download <- libvirtd"]
    server = best["virsh upload -> libvirtd"] / best["virsh upload -> our server"]
    print("\nRatios (time of the peer / time of ours; > 1 means ours is faster):")
    print(f"  our client upload   vs virsh: {up:.2f}x")
    print(f"  our client download vs virsh: {down:.2f}x")
    print(f"  virsh -> our server vs virsh -> libvirtd: {server:.2f}x")
    bound = best["virsh upload -> libvirtd"] / best["virsh upload -> sink (bound)"]
    print(f"  virsh -> sink (no writes, any server's bound) vs virsh -> libvirtd: {bound:.2f}x")
    print("\nTargets:")
    for ok, text in (
        (up >= 1.2, f"our client upload >= 1.2x virsh: {up:.2f}x"),
        (down >= 1.0, f"our client download >= virsh: {down:.2f}x"),
        (server >= 1.5, f"our server >= 1.5x libvirtd for virsh vol-upload: {server:.2f}x"),
    ):
        print(f"  {'MET   ' if ok else 'MISSED'} {text}")
    for failure in failures:
        print(f"  WRONG DATA: {failure}")


if __name__ == "__main__":
    sys.exit(main())

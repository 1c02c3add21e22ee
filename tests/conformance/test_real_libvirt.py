"""Against a real libvirtd (private daemon, tests/realpeers.py): the applicable V2 cases of
the catalogue pass; virsh sessions recorded through the recording proxy decode cleanly,
replay identically against the daemon, and round-trip files; our libvirt client's uploads
and downloads round-trip with equal SHA-256 -- also through the recording proxy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from realpeers import NOBODY, Libvirtd, private_libvirtd, require

from xdrstream.capture.decode import DecodedMessage
from xdrstream.conformance import ladder, recorder, replay
from xdrstream.conformance.catalogue import (
    OUTCOMES,
    Context,
    LibvirtSettings,
    Result,
    all_cases,
    prepared,
    run_case,
    select,
)
from xdrstream.conformance.trace import C2S, S2C, Trace
from xdrstream.transport import address as addresses

pytestmark = pytest.mark.real_peers

#: Cases that apply to libvirt's remote program (libvirt-only ones and program-agnostic ones).
LIBVIRT_STREAM_CASES = {"7.3.1/6", "7.3.2/2", "7.3.3/6", "7.3.4/2"}


@pytest.fixture(name="daemon", scope="module")
def daemon_fixture() -> Iterator[Libvirtd]:
    """One private libvirtd for the module (it is heavy): a pool ``tpool`` with a sparse
    volume ``cvol``, a preallocated ``pvol`` (what a user's ``vol-create-as`` gives) and the
    volumes the virsh tests use."""
    require("libvirtd", "virsh", "setpriv")
    with private_libvirtd(tcp=True) as libvirtd:
        libvirtd.define_pool("tpool")
        for name, size, sparse in (("cvol", "2M", True), ("pvol", "2M", False),
                                   ("vvol", "1M", False), ("svol", "2M", True)):  # fmt: skip
            extra = ["--allocation", "0"] if sparse else []
            libvirtd.virsh("vol-create-as", "tpool", name, size, *extra, "--format", "raw")
        yield libvirtd


def _context(address: addresses.Address) -> Context:
    from xdrstream.conformance.cases import identify

    context = Context(
        address,
        program="libvirt",
        timeout=2.0,  # libvirtd answers in milliseconds; its silences cost this each
        libvirt=LibvirtSettings(uri="qemu:///session", pool="tpool", volume="cvol"),
    )
    context.implementation = identify(context)  # libvirtd, from the daemon itself
    return context


def _run(context: Context, include: Sequence[str] = ()) -> dict[str, Result]:
    cases = [c for c in select(all_cases(), include) if c.role == "server"]
    with prepared(context) as fixtures:
        assert fixtures is not None and fixtures.pool and fixtures.domain_name, fixtures and (
            fixtures.pool_problem,
            fixtures.domain_problem,
        )
        return {item.id: run_case(item, context, strict=True) for item in cases}


def _print_table(results: dict[str, Result], title: str) -> None:
    print(f"\n{title}")
    for case_id, result in results.items():
        print(f"  {case_id:<9} {result.outcome:<9} {result.case.title[:70]}")
    counts = {o: sum(r.outcome == o for r in results.values()) for o in OUTCOMES}
    print("  " + ", ".join(f"{n} {o}" for o, n in counts.items() if n))


def test_catalogue_runs_against_libvirtd(daemon: Libvirtd) -> None:
    """At least 60 cases run against libvirtd 9.0 (issue 16 part 1); none fails: each either
    passes or is a deviation the case lists for libvirtd; the suite's own pool, volumes and
    domain are gone after the run (part 3)."""
    context = _context(addresses.parse_address(f"unix:{daemon.socket_path}"))
    results = _run(context)
    _print_table(results, f"catalogue against {context.implementation}")
    bad = {k: r.detail for k, r in results.items() if r.outcome in ("fail", "error")}
    assert bad == {}
    ran = {k for k, r in results.items() if r.outcome in ("pass", "fail", "deviation")}
    assert len(ran) >= 60, len(ran)
    passed = {k for k, r in results.items() if r.outcome == "pass"}
    assert passed >= LIBVIRT_STREAM_CASES | {"4.6/1", "4.7/2", "7.3.1/1", "7.3.2/1", "8.2/1"}
    assert {"3.4/1", "3.4/2", "3.5/1", "4.4.2/3", "4.7/1", "5/1", "7.3.1/2"} <= passed
    deviations = {k: r.deviation_info() for k, r in results.items() if r.outcome == "deviation"}
    assert {"3.2/1", "3.2/2", "10.1/1", "4.6/2", "7.3.1/3"} <= set(deviations)
    assert all(d and d["implementation"] == "libvirtd" for d in deviations.values())
    # only cases that are not for libvirt's program (V1, V3, restore.x's own) and TLS skip
    skipped = {k: r.detail for k, r in results.items() if r.outcome == "skip"}
    assert all("restore only" in d or "TLS" in d for d in skipped.values()), skipped
    pools = daemon.virsh("pool-list", "--all", "--name").stdout
    assert "xdrstream-conformance" not in pools
    domains = daemon.virsh("list", "--all", "--name", driver="test").stdout
    assert "xdrstream-conformance" not in domains


def test_over_tcp_the_libvirt_cases_pass(daemon: Libvirtd) -> None:
    context = _context(addresses.parse_address(f"tcp:127.0.0.1:{daemon.tcp_port}"))
    results = _run(context, ["4.4.1", "4.6/2", "4.7", "7.3.2", "7.3.4"])
    assert {k: r.detail for k, r in results.items() if r.outcome in ("fail", "error")} == {}
    assert {"4.4.1/2", "4.7/4", "7.3.2/2", "7.3.4/2"} <= {
        k for k, r in results.items() if r.outcome == "pass"
    }


def _proxy_uri(proxy: recorder.RecordingProxy, driver: str) -> str:
    path = "/session" if driver == "qemu" else "/default"
    return f"{driver}+tcp://127.0.0.1:{proxy.address.port}{path}"


def _virsh_through(daemon: Libvirtd, driver: str, *args: str) -> Trace:
    upstream = addresses.parse_address(f"tcp:127.0.0.1:{daemon.tcp_port}")
    listen = addresses.parse_address("tcp:127.0.0.1:0")
    with recorder.RecordingProxy(listen, upstream) as proxy:
        import subprocess

        result = subprocess.run(
            ["virsh", "-q", "-c", _proxy_uri(proxy, driver), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        sessions = proxy.wait(1, timeout=30)
    return recorder.to_trace(sessions, programs=["libvirt_remote"], description=" ".join(args))


def _stream_frames(trace: Trace, direction: str, mtype: int) -> list[bytes]:
    return [f.data for f in trace.side(direction) if f.data[16:20] == mtype.to_bytes(4, "big")]


def _decodes_cleanly(trace: Trace) -> None:
    for frame, message in zip(trace.frames, ladder.decode_frames(trace), strict=True):
        if frame.close:
            continue
        assert isinstance(message, DecodedMessage), message
        assert message.body_error is None, message.body_error


def test_virsh_sessions_recorded_through_the_proxy(daemon: Libvirtd) -> None:
    work = daemon.shared_dir("data")
    dense = work / "dense.bin"
    dense.write_bytes(os.urandom(600_000))
    sparse = work / "sparse.bin"
    with sparse.open("wb") as out:
        out.write(os.urandom(96 << 10))
        out.seek(1 << 20)
        out.write(os.urandom(40 << 10))
        out.truncate(2 << 20)
    for path in (dense, sparse):
        os.chown(path, NOBODY, NOBODY)

    upload = _virsh_through(daemon, "qemu", "vol-upload", "--pool", "tpool", "vvol", str(dense))
    download_path = work / "dense.out"
    download = _virsh_through(
        daemon, "qemu", "vol-download", "--pool", "tpool", "vvol", str(download_path)
    )
    assert download_path.read_bytes()[: len(dense.read_bytes())] == dense.read_bytes()
    sparse_up = _virsh_through(
        daemon, "qemu", "vol-upload", "--sparse", "--pool", "tpool", "svol", str(sparse)
    )
    sparse_out = work / "sparse.out"
    sparse_down = _virsh_through(
        daemon, "qemu", "vol-download", "--sparse", "--pool", "tpool", "svol", str(sparse_out)
    )
    assert (
        hashlib.sha256(sparse_out.read_bytes()).digest()
        == hashlib.sha256(sparse.read_bytes()).digest()
    )
    shot = _virsh_through(daemon, "test", "screenshot", "test", str(work / "shot.png"))

    for trace in (upload, download, sparse_up, sparse_down, shot):
        _decodes_cleanly(trace)
    sent = b"".join(f[28:] for f in _stream_frames(upload, C2S, 3) if len(f) > 28)
    assert sent == dense.read_bytes()
    assert _stream_frames(download, S2C, 3)[-1][24:28] == b"\0\0\0\0"  # STREAM/OK confirm
    assert _stream_frames(sparse_up, C2S, 6) and _stream_frames(sparse_down, S2C, 6)  # holes
    assert b"\x89PNG" in b"".join(_stream_frames(shot, S2C, 3))

    # the recorded client sides replay identically against the same daemon
    context = _context(addresses.parse_address(f"tcp:127.0.0.1:{daemon.tcp_port}"))
    for name, trace in (("screenshot", shot), ("vol-download --sparse", sparse_down)):
        result = replay.replay(trace, context, name)
        assert result.ok, (name, result.detail)


def test_our_client_round_trips_with_equal_sha256(daemon: Libvirtd, tmp_path: Path) -> None:
    from xdrstream.libvirt.client import LibvirtClient

    source = tmp_path / "image.bin"
    with source.open("wb") as out:
        out.write(os.urandom(300_000))
        out.seek(1 << 20)
        out.write(os.urandom(5000))
    upstream = addresses.parse_address(f"tcp:127.0.0.1:{daemon.tcp_port}")
    with recorder.RecordingProxy(addresses.parse_address("tcp:127.0.0.1:0"), upstream) as proxy:
        uri = f"qemu+tcp://127.0.0.1:{proxy.address.port}/session"
        with LibvirtClient.open(uri) as client:
            vol = client.lookup_volume(client.lookup_pool("tpool"), "svol")
            sent = client.upload(vol, source, sparse=True, checksum=True)
            dest = tmp_path / "copy.bin"
            got = client.download(
                vol, dest, sparse=True, checksum=True, length=source.stat().st_size
            )
        trace = recorder.to_trace(proxy.wait(1, timeout=30), programs=["libvirt_remote"])
    assert sent.sha256 == got.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert dest.read_bytes() == source.read_bytes()
    _decodes_cleanly(trace)  # what our client sent is well-formed on the wire


def test_a_preallocated_given_volume_fails_nothing(daemon: Libvirtd, tmp_path: Path) -> None:
    """The user's volume is preallocated (``vol-create-as`` without ``--allocation 0``): the
    sparse case uses the suite's own volume, so the run has no failure (issue 16 part 3)."""
    import json

    from xdrstream.cli import main

    report = tmp_path / "libvirt.json"
    code = main([
        "conformance", "run", "--target", f"unix:{daemon.socket_path}", "--strict",
        "--libvirt-pool", "tpool", "--libvirt-volume", "pvol", "--json", str(report),
        "--cases", "7.3.*", "--cases", "3.2/*", "--timeout", "2",
    ])  # fmt: skip
    document = json.loads(report.read_text())
    problems = [(r["id"], r["detail"]) for r in document["results"]
                if r["outcome"] in ("fail", "error")]  # fmt: skip
    assert problems == []
    outcomes = {r["id"]: r["outcome"] for r in document["results"]}
    assert outcomes["7.3.4/2"] == "pass" and outcomes["7.3.1/6"] == "pass"
    assert code == 1  # the deviations fail the run unless allowed
    assert document["implementation"]["name"] == "libvirtd"
    assert document["program"] == "libvirt"  # auto-detected
    listing = daemon.virsh("vol-list", "tpool").stdout.split("\n")
    vols = sorted(line.split()[0] for line in listing if line.strip())
    assert vols == ["cvol", "pvol", "svol", "vvol"]  # the suite's volumes are gone
    allowed = main([
        "conformance", "run", "--target", f"unix:{daemon.socket_path}", "--cases", "3.2/*",
        "--allow-deviation", "3.2/*", "--timeout", "2",
    ])  # fmt: skip
    assert allowed == 0


def test_the_committed_libvirt_traces_replay_or_say_why_not(daemon: Libvirtd) -> None:
    """`conformance replay --target LIBVIRTD` (its default traces) fails nothing on a fresh
    libvirtd: traces that carry their recording daemon's pool UUID are skipped, saying so."""
    context = Context(addresses.parse_address(f"unix:{daemon.socket_path}"), timeout=5.0)
    context.program = "libvirt"
    results = [replay.replay_file(p, context) for p in replay.committed_traces("libvirt")]
    assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
    assert any(not r.skipped for r in results)  # the screenshot: test:///default's domain
    assert any("pool UUID" in r.detail for r in results if r.skipped)
    from xdrstream.cli import main

    assert main(["conformance", "replay", "--target", f"unix:{daemon.socket_path}"]) == 0

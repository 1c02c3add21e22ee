"""Faults around a real `xdrstream serve` and real CLI clients (issue 4, "Done when").

A client killed mid-stream, a stub that crashes, stalled peers (endpoint, server, client,
idle connection), a mutual-TLS refusal, a stream the endpoint rejects, and the server
stopped mid-stream. Each test checks the one-line error and exit code the user sees, and
that nothing leaks: no process carrying the test's tag (the server's stubs included, found
by scanning /proc), no new fd or child in the test process, and the server back to the
file descriptors it had before the fault.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_support import (
    Leaks,
    Pki,
    Server,
    make_pki,
    run_cli,
    serving,
    stub_pids,
    wait_until,
    xdrstream,
)

from xdrstream.endpoints.qemu_stub import SECTION_SIZE, synthetic_bytes, write_synthetic
from xdrstream.protocol import Connection, Role, programs_from_schema, schemas
from xdrstream.protocol.events import Call

SIZE = 24 * SECTION_SIZE  # far more than pipe, socket and stream buffers hold together
SEED = 3
MIB = str(1 << 20)
VARIANTS = [1, 2, 3]
CLEANUP = 10.0  # seconds within which a fault must be cleaned up (a bound, not a wait)
STALL = "30"  # seconds a stalled stub sleeps: far longer than any test waits


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "guest.qevm"
    write_synthetic(path, SIZE, SEED)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def transfer_args(direction: str, image: Path, tmp_path: Path) -> list[str]:
    return [direction, str(image) if direction == "restore" else str(tmp_path / "out.qevm")]


def assert_server_recovers(server: Server, fds: int) -> None:
    """The server lives on with the file descriptors it had before the fault."""
    wait_until(lambda: server.fd_count() == fds, CLEANUP, f"the server is back to {fds} fds")
    assert server.process.poll() is None


# --- a client killed mid-stream -------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("direction", ["restore", "save"])
def test_client_killed_mid_stream_kills_the_stub(
    leaks: Leaks,
    tmp_path: Path,
    image: Path,
    direction: str,
    variant: int,
) -> None:
    # The stub moves 1 MiB, then stalls: the client is certainly mid-stream when killed.
    stall = ["--stub-stall", STALL, "--stub-stall-after", MIB, "--save-size", str(SIZE)]
    with serving(leaks, f"unix:{tmp_path}/x.sock", *stall) as server:
        fds = server.fd_count()
        command = [*transfer_args(direction, image, tmp_path), "--connect", server.address]
        client = subprocess.Popen(
            xdrstream(*command, "--variant", str(variant)),
            env=leaks.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: stub_pids(leaks.tag), CLEANUP, "the stub has started")
            time.sleep(0.3)  # the stream flows into (or out of) the stub, which stalls
            assert client.poll() is None
        finally:
            client.kill()
            client.wait()
        wait_until(lambda: not stub_pids(leaks.tag), CLEANUP, "the server killed the stub")
        assert_server_recovers(server, fds)
        assert server.no_more_lines() == []  # aborted: no verdict


# --- the stub crashes -----------------------------------------------------------------------

FAULT_MESSAGES = {
    "fail-after": r"failed after 1048576 bytes \(fault injection\)",
    "exit-code": r"exit code 7 \(injected\)",
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("direction", ["restore", "save"])
@pytest.mark.parametrize("fault", ["fail-after", "exit-code"])
def test_a_stub_that_crashes_fails_the_transfer_with_its_reason(
    leaks: Leaks,
    tmp_path: Path,
    image: Path,
    fault: str,
    direction: str,
    variant: int,
) -> None:
    stub_fault = ["--stub-fail-after", MIB] if fault == "fail-after" else ["--stub-exit-code", "7"]
    with serving(leaks, f"unix:{tmp_path}/x.sock", *stub_fault, "--save-size", str(SIZE)) as srv:
        fds = srv.fd_count()
        outcome = run_cli(
            leaks,
            *transfer_args(direction, image, tmp_path),
            "--connect",
            srv.address,
            "--variant",
            str(variant),
            "--timeout",
            "5",  # bounds the wait should the server never answer
        )
        assert outcome.code == 1
        pattern = (
            rf"xdrstream {direction}: error: server error: {direction} failed"
            rf"( after \d+ bytes)?: {FAULT_MESSAGES[fault]}"
        )
        assert re.fullmatch(pattern, outcome.error), outcome.error
        verdict = srv.endpoint()
        assert verdict["ok"] is False
        assert verdict["exit_code"] == (1 if fault == "fail-after" else 7)
        assert not (tmp_path / "out.qevm").exists()  # a failed save leaves no file
        assert_server_recovers(srv, fds)


# --- stalled peers --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("direction", ["restore", "save"])
def test_a_stalled_stub_times_out_on_the_server(
    leaks: Leaks,
    tmp_path: Path,
    image: Path,
    direction: str,
    variant: int,
) -> None:
    stall = ["--stub-stall", STALL, "--stub-stall-after", MIB, "--save-size", str(SIZE)]
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--timeout", "1", *stall) as server:
        fds = server.fd_count()
        started = time.monotonic()
        outcome = run_cli(
            leaks,
            *transfer_args(direction, image, tmp_path),
            "--connect",
            server.address,
            "--variant",
            str(variant),
            "--timeout",
            "5",  # bounds the wait should the server never answer
        )
        assert time.monotonic() - started < 8
        assert outcome.code == 1
        assert outcome.error == (
            f"xdrstream {direction}: error: server error: "
            "the endpoint stalled: its pipe made no progress for 1.0 s"
        )
        wait_until(lambda: not stub_pids(leaks.tag), CLEANUP, "the stalled stub is killed")
        assert_server_recovers(server, fds)


@pytest.fixture
def silent_server(tmp_path: Path) -> Iterator[str]:
    """A Unix socket that accepts connections and never reads or answers."""
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(8)
        yield f"unix:{path}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("direction", ["restore", "save"])
def test_a_silent_server_times_out_the_client(
    leaks: Leaks, tmp_path: Path, image: Path, silent_server: str, direction: str, variant: int
) -> None:
    started = time.monotonic()
    outcome = run_cli(
        leaks,
        *transfer_args(direction, image, tmp_path),
        "--connect",
        silent_server,
        "--variant",
        str(variant),
        "--timeout",
        "1",
    )
    assert time.monotonic() - started < 8
    assert outcome.code == 4
    assert re.fullmatch(
        rf"xdrstream {direction}: error: timed out: .*(nothing received|no send progress)"
        r" for 1\.0 s",
        outcome.error,
    ), outcome.error
    assert not (tmp_path / "out.qevm").exists()


def raw_restore_call(variant: int) -> bytes:
    """The frame of a restore call, as a client that then says nothing more would send."""
    schema = schemas.load("restore")
    client = Connection(Role.CLIENT, programs=programs_from_schema(schema))
    procedure = int(schema.constants[f"XS_PROC_RESTORE_V{variant}"])
    args = schema["xs_restore_args"](name="stalled", size_hint=0, flags=0)
    program = int(schema.constants["XS_RESTORE_PROGRAM"])
    return client.send(Call(client.next_serial(), program, 1, procedure, args))


def read_until_closed(sock: socket.socket, timeout: float) -> float:
    """Read (and drop) until the server closes; the seconds it took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    while sock.recv(65536):
        pass
    return time.monotonic() - started


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_client_that_stalls_mid_restore_is_cut_off_and_its_stub_killed(
    leaks: Leaks, tmp_path: Path, variant: int
) -> None:
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--timeout", "1") as server:
        fds = server.fd_count()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(tmp_path / "x.sock"))
            sock.sendall(raw_restore_call(variant))  # then no data, no finish
            wait_until(lambda: stub_pids(leaks.tag), CLEANUP, "the restore started a stub")
            assert read_until_closed(sock, 8) < 6
        wait_until(lambda: not stub_pids(leaks.tag), CLEANUP, "the stub is killed")
        assert_server_recovers(server, fds)


def test_an_idle_connection_is_closed(leaks: Leaks, tmp_path: Path) -> None:
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--idle-timeout", "1") as server:
        fds = server.fd_count()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(tmp_path / "x.sock"))
            assert 0.5 < read_until_closed(sock, 8) < 6
        assert_server_recovers(server, fds)


# --- mutual TLS -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("certificate", "reason"),
    [("none", "certificate required"), ("other-ca", "unknown ca")],
)
def test_mutual_tls_refuses_a_client_without_a_valid_certificate(
    leaks: Leaks, tmp_path: Path, image: Path, pki: Pki, certificate: str, reason: str
) -> None:
    server_args = pki.server_args(require_client_cert=True)
    with serving(leaks, "tcp:127.0.0.1:0", *server_args) as server:
        assert server.address.startswith("tls:")
        fds = server.fd_count()
        client_args = ["--tls-ca", str(pki.ca)]
        if certificate == "other-ca":
            client_args += ["--tls-cert", str(pki.other_client)]
        refused = run_cli(leaks, "restore", str(image), "--connect", server.address, *client_args)
        assert refused.code == 3
        assert refused.error.startswith("xdrstream restore: error: TLS failure: ")
        assert reason in refused.error
        assert server.no_more_lines() == []  # no stub was started for it
        assert_server_recovers(server, fds)

        accepted = run_cli(
            leaks, "restore", str(image), "--connect", server.address, *pki.client_args()
        )
        assert accepted.code == 0, accepted.stderr
        assert server.endpoint()["ok"] is True


# --- streams the endpoint rejects -----------------------------------------------------------


def damaged_stream(kind: str) -> tuple[bytes, str]:
    good = synthetic_bytes(3 * SECTION_SIZE, SEED)
    if kind == "wrong-magic":
        return b"XXXX" + good[4:], r"stream rejected: bad magic 0x58585858 .* \(at byte 0\)"
    if kind == "wrong-version":
        return good[:4] + b"\x00\x00\x00\x02" + good[8:], r"stream rejected: .*version.*"
    if kind == "truncated":
        return good[: len(good) // 2], r"stream rejected: truncated: .*"
    return good + b"\x00", r"stream rejected: .*"  # a byte after QEMU_VM_EOF


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", ["wrong-magic", "wrong-version", "truncated", "trailing-byte"])
def test_a_stream_the_stub_rejects_fails_the_restore_with_the_reason(
    leaks: Leaks, tmp_path: Path, kind: str, variant: int
) -> None:
    data, reason = damaged_stream(kind)
    path = tmp_path / f"{kind}.qevm"
    path.write_bytes(data)
    with serving(leaks, f"unix:{tmp_path}/x.sock") as server:
        fds = server.fd_count()
        outcome = run_cli(
            leaks, "restore", str(path), "--connect", server.address, "--variant", str(variant)
        )
        assert outcome.code == 1
        assert re.fullmatch(
            rf"xdrstream restore: error: server error: restore failed( after \d+ bytes)?: {reason}",
            outcome.error,
        ), outcome.error
        verdict = server.endpoint()
        assert (verdict["ok"], verdict["exit_code"]) == (False, 3)
        assert_server_recovers(server, fds)


# --- the server stops mid-stream ------------------------------------------------------------


@pytest.mark.parametrize("direction", ["restore", "save"])
def test_a_server_stopped_mid_stream_kills_its_stub_and_the_client_fails(
    leaks: Leaks, tmp_path: Path, image: Path, direction: str
) -> None:
    stall = ["--stub-stall", STALL, "--stub-stall-after", MIB, "--save-size", str(SIZE)]
    server = Server(leaks, f"unix:{tmp_path}/x.sock", *stall)
    try:
        client = subprocess.Popen(
            xdrstream(*transfer_args(direction, image, tmp_path), "--connect", server.address),
            env=leaks.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: stub_pids(leaks.tag), CLEANUP, "the stub has started")
            started = time.monotonic()
            assert server.stop(signal.SIGTERM) == 0
            assert time.monotonic() - started < CLEANUP
            _, stderr = client.communicate(timeout=CLEANUP)
        finally:
            if client.poll() is None:
                client.kill()
            client.wait()
        assert client.returncode == 1
        assert re.fullmatch(
            rf"xdrstream {direction}: error: (connection lost|server error): .*", stderr.strip()
        )
        assert not stub_pids(leaks.tag)
        assert not (tmp_path / "x.sock").exists()
    finally:
        server.stop(signal.SIGKILL)

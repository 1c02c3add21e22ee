"""`xdrstream serve/restore/save` as real processes: every variant over Unix, TCP and TLS,
sparse files, the terminal progress bar, one-line errors and their exit codes."""

from __future__ import annotations

import hashlib
import os
import pty
import select
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
    wait_until,
    xdrstream,
)

from xdrstream import cli
from xdrstream.endpoints.qemu_stub import HEADER, SECTION_SIZE, synthetic_sha256, write_synthetic

SIZE = 3 * SECTION_SIZE + 12345
SEED = 11


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("images") / "guest.qevm"
    return path, write_synthetic(path, SIZE, SEED)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server_unix(leaks: Leaks, tmp_path: Path) -> Iterator[Server]:
    args = ["--save-size", str(SIZE), "--seed", str(SEED)]
    with serving(leaks, f"unix:{tmp_path}/x.sock", *args) as server:
        yield server


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- restore and save through every variant and transport -----------------------------------


@pytest.mark.parametrize("variant", [1, 2, 3])
@pytest.mark.parametrize("transport", ["unix", "tcp", "tls"])
def test_restore_and_save_through_each_variant_and_transport(
    leaks: Leaks,
    tmp_path: Path,
    image: tuple[Path, str],
    pki: Pki,
    transport: str,
    variant: int,
) -> None:
    path, expected = image
    listen = f"unix:{tmp_path}/x.sock" if transport == "unix" else "tcp:127.0.0.1:0"
    server_args = ["--save-size", str(SIZE), "--seed", str(SEED)]
    client_args: list[str] = []
    if transport == "tls":
        server_args += pki.server_args()
        client_args = pki.client_args()
    with serving(leaks, listen, *server_args) as server:
        assert server.address.startswith(f"{transport}:")
        connect = ["--connect", server.address, "--variant", str(variant), *client_args]

        restored = run_cli(leaks, "restore", str(path), *connect)
        assert restored.code == 0, restored.stderr
        record = restored.record
        assert (record["direction"], record["variant"]) == ("restore", variant)
        assert (record["bytes"], record["sha256"]) == (SIZE, expected)
        verdict = server.endpoint()  # what the stub itself read and hashed
        assert (verdict["ok"], verdict["bytes"], verdict["sha256"]) == (True, SIZE, expected)

        out = tmp_path / "saved.qevm"
        saved = run_cli(leaks, "save", str(out), *connect)
        assert saved.code == 0, saved.stderr
        assert (saved.record["direction"], saved.record["variant"]) == ("save", variant)
        assert saved.record["bytes"] == SIZE
        assert saved.record["sha256"] == file_sha256(out) == expected
        assert server.endpoint()["ok"] is True


def test_save_size_and_seed_choose_the_stubs_stream(
    leaks: Leaks, tmp_path: Path, server_unix: Server
) -> None:
    size, seed = SECTION_SIZE + 777, 5
    out = tmp_path / "other.qevm"
    saved = run_cli(
        leaks, "save", str(out), "--connect", server_unix.address, "--size", str(size),
        "--seed", str(seed),
    )  # fmt: skip
    assert saved.code == 0, saved.stderr
    assert saved.record["bytes"] == out.stat().st_size == size
    assert file_sha256(out) == synthetic_sha256(size, seed) != synthetic_sha256(SIZE, SEED)


def test_no_sha256_skips_the_hash_and_still_saves_the_whole_image(
    leaks: Leaks, tmp_path: Path, image: tuple[Path, str], server_unix: Server
) -> None:
    """`--no-sha256` (issue 12): "sha256" is null, the transfer itself is unchanged."""
    path, expected = image
    connect = ["--connect", server_unix.address, "--no-sha256"]
    restored = run_cli(leaks, "restore", str(path), *connect)
    assert restored.code == 0, restored.stderr
    assert (restored.record["bytes"], restored.record["sha256"]) == (SIZE, None)
    assert server_unix.endpoint()["sha256"] == expected
    out = tmp_path / "saved.qevm"
    saved = run_cli(leaks, "save", str(out), *connect)
    assert saved.code == 0, saved.stderr
    assert (saved.record["bytes"], saved.record["sha256"]) == (SIZE, None)
    assert file_sha256(out) == expected


def sparse_image(path: Path) -> bytes:
    """A QEVM header, a 4 MiB hole, 64 KiB of data: only `--stub-check header` accepts it."""
    data = os.urandom(1 << 16)
    with open(path, "wb") as file:
        file.write(HEADER)
        file.seek(4 << 20)
        file.write(data)
    return HEADER + bytes((4 << 20) - len(HEADER)) + data


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_sparse_restore_sends_holes_and_the_stub_reads_zeros(
    leaks: Leaks, tmp_path: Path, variant: int
) -> None:
    path = tmp_path / "sparse.img"
    content = sparse_image(path)
    if path.stat().st_blocks * 512 >= len(content):
        pytest.skip(f"the file system of {tmp_path} does not keep holes")
    expected = hashlib.sha256(content).hexdigest()
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--stub-check", "header") as server:
        connect = ["--connect", server.address, "--variant", str(variant)]
        sparse = run_cli(leaks, "restore", str(path), *connect)
        assert sparse.code == 0, sparse.stderr
        assert sparse.record["bytes"] == len(content)
        assert sparse.record["hole_bytes"] >= (4 << 20) - SECTION_SIZE
        assert sparse.record["sha256"] == expected
        assert server.endpoint()["sha256"] == expected  # the hole arrived as zeros

        dense = run_cli(leaks, "restore", str(path), *connect, "--dense")
        assert dense.code == 0, dense.stderr
        assert (dense.record["hole_bytes"], dense.record["data_bytes"]) == (0, len(content))
        assert dense.record["sha256"] == server.endpoint()["sha256"] == expected


# --- the terminal ---------------------------------------------------------------------------


def run_on_terminal(leaks: Leaks, *args: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run `xdrstream ARGS` with stdout and stderr on a pseudo-terminal; (code, output)."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            xdrstream(*args),
            env=leaks.env(),
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
        )
    finally:
        os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                output += chunk
        code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return code, output.decode("utf-8", "replace")


def test_a_terminal_gets_a_progress_bar_and_a_summary(
    leaks: Leaks, tmp_path: Path, image: tuple[Path, str], server_unix: Server
) -> None:
    path, expected = image
    code, output = run_on_terminal(
        leaks, "restore", str(path), "--connect", server_unix.address, "--variant", "1"
    )
    assert code == 0, output
    assert "restore V1" in output  # the bar's label
    assert "MB/s" in output  # rich's transfer speed column
    assert f"restored {path}: {SIZE} bytes via V1" in output
    assert expected in output
    assert '"direction"' not in output  # no JSON on a terminal


def test_json_flag_prints_the_json_line_on_a_terminal_too(
    leaks: Leaks, image: tuple[Path, str], server_unix: Server
) -> None:
    path, expected = image
    code, output = run_on_terminal(
        leaks, "restore", str(path), "--connect", server_unix.address, "--json"
    )
    assert code == 0, output
    assert f'"sha256": "{expected}"' in output
    assert "restored" not in output


def test_save_size_against_a_recorded_stream_is_refused_naming_both_options(
    leaks: Leaks, tmp_path: Path, image: tuple[Path, str]
) -> None:
    recorded, digest = image
    out = tmp_path / "out.qevm"
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--save-from", str(recorded)) as server:
        refused = run_cli(leaks, "save", str(out), "--connect", server.address, "--size", "2M")
        assert refused.code == 1 and not out.exists()
        assert "--size" in refused.error and "--save-from" in refused.error, refused.error
        saved = run_cli(leaks, "save", str(out), "--connect", server.address)
        assert saved.code == 0, saved.stderr
        assert file_sha256(out) == digest


def test_save_size_against_an_images_server_names_the_options(leaks: Leaks, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    with serving(leaks, f"unix:{tmp_path}/x.sock", "--images", str(images)) as server:
        out = tmp_path / "out.qevm"
        refused = run_cli(leaks, "save", str(out), "--connect", server.address, "--size", "2M")
        assert refused.code == 1 and not out.exists()
        assert "--size" in refused.error and "--images" in refused.error, refused.error


def test_a_name_beyond_the_schemas_bound_is_a_usage_error(leaks: Leaks, tmp_path: Path) -> None:
    for command in ("restore", "save"):
        outcome = run_cli(
            leaks, command, str(tmp_path / "f"), "--connect", f"unix:{tmp_path}/none",
            "--name", "a" * 256,
        )  # fmt: skip
        assert outcome.code == 2
        assert "argument --name: an image name has 1 to 255 bytes, not 256" in outcome.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--name", "x", "--size", "2M"], "--name and --size/--seed: give one or the other"),
        (["--name", "x", "--seed", "3"], "--name and --size/--seed: give one or the other"),
        (["--seed", "3"], "--seed needs --size"),
    ],
)
def test_save_options_that_would_be_ignored_are_usage_errors(
    leaks: Leaks, tmp_path: Path, options: list[str], message: str
) -> None:
    out = tmp_path / "out.qevm"
    outcome = run_cli(leaks, "save", str(out), "--connect", f"unix:{tmp_path}/none", *options)
    assert (outcome.code, outcome.error) == (2, f"xdrstream save: error: {message}")


# --- errors ---------------------------------------------------------------------------------


def test_missing_file_is_a_local_error_before_connecting(leaks: Leaks, tmp_path: Path) -> None:
    missing = tmp_path / "missing.img"
    outcome = run_cli(leaks, "restore", str(missing), "--connect", f"unix:{tmp_path}/none")
    assert outcome.code == 2
    assert outcome.error == (
        f"xdrstream restore: error: cannot read {missing}: No such file or directory"
    )


def test_a_directory_is_not_an_image(leaks: Leaks, tmp_path: Path) -> None:
    outcome = run_cli(leaks, "restore", str(tmp_path), "--connect", f"unix:{tmp_path}/none")
    assert outcome.code == 2
    assert outcome.error == f"xdrstream restore: error: cannot read {tmp_path}: Is a directory"


def test_save_into_a_missing_directory_is_a_local_error(leaks: Leaks, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir.img"
    outcome = run_cli(leaks, "save", str(out), "--connect", f"unix:{tmp_path}/none")
    assert outcome.code == 2
    assert outcome.error == f"xdrstream save: error: cannot write {out}: no such directory"
    outcome = run_cli(leaks, "save", str(tmp_path), "--connect", f"unix:{tmp_path}/none")
    assert (outcome.code, outcome.error) == (
        2,
        f"xdrstream save: error: cannot write {tmp_path}: Is a directory",
    )


def test_no_such_socket(leaks: Leaks, tmp_path: Path, image: tuple[Path, str]) -> None:
    outcome = run_cli(leaks, "restore", str(image[0]), "--connect", f"unix:{tmp_path}/none")
    assert outcome.code == 3
    assert outcome.error == (
        f"xdrstream restore: error: cannot connect: no such socket: unix:{tmp_path}/none"
    )


def test_connection_refused_on_a_stale_unix_socket(
    leaks: Leaks, tmp_path: Path, image: tuple[Path, str]
) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: connect() is refused
    outcome = run_cli(leaks, "save", str(tmp_path / "out"), "--connect", f"unix:{path}")
    assert outcome.code == 3
    assert (
        outcome.error == f"xdrstream save: error: cannot connect: connection refused: unix:{path}"
    )
    assert not (tmp_path / "out").exists()


def test_connection_refused_on_tcp(leaks: Leaks, image: tuple[Path, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free again once closed, nobody listening
    outcome = run_cli(leaks, "restore", str(image[0]), "--connect", f"tcp:127.0.0.1:{port}")
    assert outcome.code == 3
    assert "cannot connect: connection refused: tcp:127.0.0.1:" in outcome.error


def test_invalid_address_is_a_usage_error(leaks: Leaks, image: tuple[Path, str]) -> None:
    outcome = run_cli(leaks, "restore", str(image[0]), "--connect", "carrier-pigeon")
    assert outcome.code == 2
    assert "invalid address 'carrier-pigeon': no scheme" in outcome.stderr


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([], "certificate verify failed"),  # the system store does not know the test CA
        (["--tls-ca", "OTHER"], "certificate verify failed"),
        (["--tls-ca", "CA", "--tls-hostname", "elsewhere.example"], "certificate verify failed"),
    ],
    ids=["system-ca", "other-ca", "wrong-hostname"],
)
def test_tls_verification_failure(
    leaks: Leaks,
    tmp_path: Path,
    image: tuple[Path, str],
    pki: Pki,
    extra: list[str],
    reason: str,
) -> None:
    paths = {"CA": str(pki.ca), "OTHER": str(pki.other_ca)}
    extra = [paths.get(arg, arg) for arg in extra]
    with serving(leaks, "tcp:127.0.0.1:0", *pki.server_args()) as server:
        outcome = run_cli(leaks, "restore", str(image[0]), "--connect", server.address, *extra)
        assert outcome.code == 3
        assert outcome.error.startswith("xdrstream restore: error: TLS failure: ")
        assert reason in outcome.error
        assert server.no_more_lines() == []  # no endpoint was started


def test_a_bad_client_certificate_file_is_reported(
    leaks: Leaks, tmp_path: Path, image: tuple[Path, str], pki: Pki
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    outcome = run_cli(
        leaks, "restore", str(image[0]), "--connect", "tls:127.0.0.1:1",
        "--tls-ca", str(pki.ca), "--tls-cert", str(bogus),
    )  # fmt: skip
    assert outcome.code == 2  # a local file, as for serve (cli.py's exit status rule)
    assert f"cannot load TLS certificate '{bogus}'" in outcome.error
    outcome = run_cli(
        leaks, "save", str(tmp_path / "out"), "--connect", "tls:127.0.0.1:1",
        "--tls-ca", str(bogus),
    )  # fmt: skip
    assert outcome.code == 2
    assert f"cannot load TLS CA '{bogus}'" in outcome.error


# --- serve ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_on_a_signal(leaks: Leaks, tmp_path: Path, signum: int) -> None:
    server = Server(leaks, f"unix:{tmp_path}/x.sock")
    assert server.address == f"unix:{tmp_path}/x.sock"
    assert (tmp_path / "x.sock").exists()
    assert server.stop(signum) == 0
    assert not (tmp_path / "x.sock").exists()


def test_serve_refuses_an_address_in_use(leaks: Leaks, tmp_path: Path) -> None:
    with serving(leaks, f"unix:{tmp_path}/x.sock"):
        outcome = run_cli(leaks, "serve", "--listen", f"unix:{tmp_path}/x.sock")
    assert outcome.code == 3
    assert outcome.error == (
        f"xdrstream serve: error: cannot listen, address in use: unix:{tmp_path}/x.sock"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "tls:127.0.0.1:0"], "a tls: address needs --tls-cert and --tls-key"),
        (["--listen", "tcp:127.0.0.1:0", "--tls-cert", "C"], "needs both --tls-cert and --tls-key"),
        (
            [
                "--listen",
                "tcp:127.0.0.1:0",
                "--tls-cert",
                "C",
                "--tls-key",
                "K",
                "--require-client-cert",
            ],
            "needs a CA to verify them (--tls-ca)",
        ),
    ],
    ids=["tls-without-cert", "cert-without-key", "mutual-without-ca"],
)
def test_serve_tls_usage_errors(leaks: Leaks, pki: Pki, args: list[str], message: str) -> None:
    paths = {"C": str(pki.server_cert), "K": str(pki.server_key)}
    outcome = run_cli(leaks, "serve", *[paths.get(arg, arg) for arg in args])
    assert outcome.code == 2
    assert outcome.error.startswith("xdrstream serve: error: ")
    assert message in outcome.error


def test_serve_on_tcp_port_zero_prints_the_real_port(leaks: Leaks) -> None:
    with serving(leaks, "tcp:127.0.0.1:0") as server:
        host, port = server.address.removeprefix("tcp:").rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with socket.create_connection((host, int(port)), timeout=5):
            pass
        wait_until(lambda: server.process.poll() is None, 1, "the server survives a hang-up")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--save-from", "{missing}"], "--save-from {missing}: no such file"),
        (
            ["--save-from", "{image}", "--save-size", "2M"],
            "--save-from and --save-size: not together",
        ),
        (
            ["--save-from", "{image}", "--seed", "2", "--images", "{tmp}"],
            "--save-from and --seed, --images: not together",
        ),
        (["--save-size", "50"], "--save-size 50: a synthetic stream has at least"),
    ],
)
def test_serve_refuses_save_stream_options_it_would_ignore(
    leaks: Leaks, tmp_path: Path, image: tuple[Path, str], options: list[str], message: str
) -> None:
    names = {"missing": tmp_path / "missing.qevm", "image": image[0], "tmp": tmp_path}
    argv = [option.format(**names) for option in options]
    outcome = run_cli(leaks, "serve", "--listen", f"unix:{tmp_path}/x.sock", *argv)
    assert outcome.code == 2
    assert outcome.error.startswith(f"xdrstream serve: error: {message.format(**names)}")
    assert not (tmp_path / "x.sock").exists()


STUBLESS_MODES = ("--qemu", "--images", "--libvirt-storage")
STUB_OPTIONS = (
    ("--save-size", "2M"),
    ("--seed", "3"),
    ("--stub-check", "header"),
    ("--stub-fail-after", "10"),
    ("--stub-close-early", "10"),
    ("--stub-stall", "1"),
    ("--stub-stall-after", "0"),
    ("--stub-exit-code", "0"),
)


def _stubless(tmp_path: Path, mode: str, *options: str) -> tuple[list[str], str]:
    value = "qemu-system-x86_64" if mode == "--qemu" else str(tmp_path)
    argv = ["serve", "--listen", f"unix:{tmp_path}/x.sock", mode, value, *options]
    message = f"xdrstream serve: error: {mode} and {options[0]}: not together ({mode} runs no stub)"
    return argv, message


@pytest.mark.parametrize(
    ("mode", "option"), [(mode, STUB_OPTIONS[i]) for i, mode in enumerate(STUBLESS_MODES)]
)
def test_serve_refuses_stub_options_a_stubless_mode_would_ignore(
    leaks: Leaks, tmp_path: Path, mode: str, option: tuple[str, str]
) -> None:
    """Through the CLI process: exit 2 naming both options, nothing listening (issue 12)."""
    argv, message = _stubless(tmp_path, mode, *option)
    outcome = run_cli(leaks, *argv)
    assert (outcome.code, outcome.error) == (2, message)
    assert not (tmp_path / "x.sock").exists()


@pytest.mark.parametrize("mode", STUBLESS_MODES)
@pytest.mark.parametrize("option", STUB_OPTIONS, ids=lambda option: option[0])
def test_every_stub_option_with_every_stubless_mode_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, option: tuple[str, str]
) -> None:
    """Every pair, in-process (the same parser and run_serve, without a process each)."""
    argv, message = _stubless(tmp_path, mode, *option)
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "x.sock").exists()


def test_a_stall_point_without_a_stall_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--listen", f"unix:{tmp_path}/x.sock", "--stub-stall-after", "100"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "xdrstream serve: error: --stub-stall-after needs --stub-stall"
    assert not (tmp_path / "x.sock").exists()


def test_serve_in_a_missing_directory_says_so(leaks: Leaks, tmp_path: Path) -> None:
    where = f"unix:{tmp_path}/no/such/x.sock"
    outcome = run_cli(leaks, "serve", "--listen", where)
    assert (outcome.code, outcome.error) == (
        3,
        f"xdrstream serve: error: cannot listen, no such directory: {where}",
    )


def test_serve_refuses_a_missing_qemu(leaks: Leaks, tmp_path: Path) -> None:
    missing = tmp_path / "qemu-system-none"
    outcome = run_cli(leaks, "serve", "--listen", f"unix:{tmp_path}/x.sock", "--qemu", str(missing))
    assert outcome.code == 2
    assert outcome.error == f"xdrstream serve: error: --qemu {missing}: no such executable"
    assert not (tmp_path / "x.sock").exists()

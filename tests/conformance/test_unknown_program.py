"""A call of a program the server does not serve gets libvirtd's answer from our servers
(VIR_ERR_RPC, VIR_FROM_RPC, "Cannot find program N version V", §4.4.2), and `xdrstream
restore`/`save` against a server without restore.x say so, and what it serves instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from realpeers import private_libvirtd, require

from xdrstream.cli import main
from xdrstream.conformance.cases import raw
from xdrstream.conformance.peer import Peer
from xdrstream.libvirt import remote
from xdrstream.libvirt.storage_server import StorageServer
from xdrstream.protocol import bodies
from xdrstream.protocol.framing import MessageStatus, MessageType
from xdrstream.restore.server import PROGRAM, RestoreServer, ServerThread
from xdrstream.transport import address as addresses


def unknown_program_answer(address: addresses.Address, prog: int, vers: int) -> tuple[int, ...]:
    """(code, domain, message) of the server's answer to a call of ``prog``/``vers``."""
    with Peer(address, []) as peer:
        peer.send_raw(raw(1, MessageType.CALL, 5, prog=prog, vers=vers))
        frame = peer.frame(what="the answer to a call of an unknown program")
    assert frame.header.status == MessageStatus.ERROR
    error = bodies.unpack_error(frame.payload)
    return error.code, error.domain, error.message  # type: ignore[return-value]


LIBVIRTD_ANSWER = (39, 7, "Cannot find program {prog} version {vers}")  # virnetserverprogram.c


@pytest.mark.parametrize("vers", [1, 99])
def test_our_servers_refuse_an_unknown_program_or_version_as_libvirtd(
    tmp_path: Path, vers: int
) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    with StorageServer(f"unix:{tmp_path / 'lv.sock'}", pool) as storage:
        got = unknown_program_answer(storage.address, PROGRAM, vers)  # restore.x, not served
    code, domain, message = LIBVIRTD_ANSWER
    assert got == (code, domain, message.format(prog=PROGRAM, vers=vers))
    with ServerThread(RestoreServer(f"unix:{tmp_path / 'rs.sock'}")) as restore:
        got = unknown_program_answer(restore.address, remote.PROGRAM, vers)
    assert got == (code, domain, message.format(prog=remote.PROGRAM, vers=vers))


@pytest.mark.parametrize("command", ["restore", "save"])
def test_restore_against_a_libvirt_storage_server_names_the_refused_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    image = tmp_path / "image"
    image.write_bytes(b"x" * 1000)
    with StorageServer(f"unix:{tmp_path / 'lv.sock'}", pool) as storage:
        target = str(storage.address)
        assert main([command, str(image), "--connect", target, "--json"]) == 1
    err = capsys.readouterr().err
    assert f"{target} does not serve restore.x (program 0x58445253 = {PROGRAM}" in err
    assert f"'Cannot find program {PROGRAM} version 1'" in err
    assert "it answers libvirt's remote program" in err and "unknown procedure" not in err


@pytest.mark.real_peers
@pytest.mark.timeout(120)
def test_libvirtd_answers_what_our_servers_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fact the servers copy, checked on libvirtd itself; and the CLI's message there."""
    require("libvirtd", "virsh", "setpriv")
    code, domain, message = LIBVIRTD_ANSWER
    with private_libvirtd() as daemon:
        address = addresses.parse_address(f"unix:{daemon.socket_path}")
        for vers in (1, 99):
            got = unknown_program_answer(address, PROGRAM, vers)
            assert got == (code, domain, message.format(prog=PROGRAM, vers=vers))
        image = tmp_path / "image"
        image.write_bytes(b"x" * 1000)
        assert main(["restore", str(image), "--connect", str(address), "--json"]) == 1
    err = capsys.readouterr().err
    assert f"does not serve restore.x (program 0x58445253 = {PROGRAM}" in err
    assert "it answers libvirt's remote program" in err

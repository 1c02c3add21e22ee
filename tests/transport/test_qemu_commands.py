"""QEMU_VM_COMMANDs in a migration stream: the stub refuses what real QEMU 7.2 refuses.

The streams are real saves made here (one plain, one by a source with the dirty-bitmaps
capability, whose stream carries a MIG_CMD_POSTCOPY_ADVISE of length 0) and those saves with
commands put where a source sends them (after the CONFIGURATION section, before EOF, between
RAM sections). Each is restored into a real QEMU 7.2 with no capabilities set (as a restore
from a file is): a restore that does not complete within `WAIT` seconds (ENABLE_COLO leaves
the migration in state 'colo', RAM_DISCARD in 'active') counts as refused. The stub's
verdict must equal QEMU's on every stream.
"""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor

import pytest
from qemu_oracle import qemu_verdict, save, stub_verdict

from xdrstream.endpoints.migration import MigrationParser
from xdrstream.endpoints.qemu import QemuLauncher, find_qemu

pytestmark = [
    pytest.mark.real_peers,
    pytest.mark.skipif(find_qemu() is None, reason="not installed: qemu-system-x86_64"),
]

WAIT = 5.0  # seconds a restore may take (a complete one takes ~0.1 s)
POOL = 2
DIRTY_BITMAPS = (
    "migrate-set-capabilities",
    {"capabilities": [{"capability": "dirty-bitmaps", "state": True}]},
)
DISK = ("-blockdev", "driver=null-co,node-name=disk0,size=16777216")


def _cmd(command: int, payload: bytes = b"", length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return b"\x08" + struct.pack(">HH", command, size) + payload


def _streams(data: bytes) -> dict[str, bytes]:
    trace: list[tuple[int, str]] = []
    parser = MigrationParser(trace=trace)
    parser.feed(data)
    parser.finish()
    first = next(at for at, what in trace if what.startswith("section"))  # after CONFIGURATION
    eof = next(at for at, what in trace if what == "eof")
    middle = [at for at, what in trace if what.startswith("section")][2]  # before RAM's END

    def at_start(*commands: bytes) -> bytes:
        return data[:first] + b"".join(commands) + data[first:]

    def at_eof(*commands: bytes) -> bytes:
        return data[:eof] + b"".join(commands) + data[eof:]

    ping = _cmd(2, b"\0\0\0\1")
    advise = _cmd(3)
    discard = _cmd(6, b"\x00\x06pc.ram\x00" + struct.pack(">QQ", 0, 4096))
    return {
        "open return path": at_start(_cmd(1)),
        "open return path twice": at_start(_cmd(1), _cmd(1)),
        "open return path before EOF": at_eof(_cmd(1)),
        "open return path between RAM sections": data[:middle] + _cmd(1) + data[middle:],
        "open return path of length 4": at_start(_cmd(1, b"\0" * 4)),
        "ping without a return path": at_start(ping),
        "ping before EOF without a return path": at_eof(ping),
        "ping after open return path": at_start(_cmd(1), ping),
        "ping of length 0": at_start(_cmd(2)),
        "advise of length 0": at_start(advise),
        "advise of length 0 before EOF": at_eof(advise),
        "advise of length 0 between RAM sections": data[:middle] + advise + data[middle:],
        "advise twice": at_start(advise, advise),
        "advise of 16 bytes (postcopy-ram)": at_start(_cmd(3, struct.pack(">QQ", 4096, 4096))),
        "advise of 8 bytes": at_start(_cmd(3, b"\0" * 8)),
        "listen": at_start(_cmd(4)),
        "advise, listen": at_start(advise, _cmd(4)),
        "advise, listen before EOF": at_start(advise)[: eof + 5] + _cmd(4) + data[eof:],
        "run": at_start(_cmd(5)),
        "advise, run": at_start(advise, _cmd(5)),
        "ram discard": at_start(discard),
        "advise, ram discard": at_start(advise, discard),
        "packaged, empty": at_start(_cmd(7, b"\0\0\0\0")),
        "packaged of length 0": at_start(_cmd(7)),
        "enable colo": at_start(_cmd(8)),
        "enable colo before EOF": at_eof(_cmd(8)),
        "enable colo of length 7": at_start(_cmd(8, b"\x06pc.ram")),
        "postcopy resume": at_start(_cmd(9)),
        "postcopy resume twice, after advise": at_start(advise, _cmd(9), _cmd(9)),
        "postcopy resume of length 4": at_start(_cmd(9, b"\0" * 4)),
        "recv bitmap pc.ram": at_start(_cmd(10, b"\x06pc.ram")),
        "recv bitmap of an unknown block before EOF": at_eof(_cmd(10, b"\x06pc.rom")),
        "recv bitmap of length 0": at_start(_cmd(10)),
        "recv bitmap with an empty name": at_start(_cmd(10, b"\0\0\0\0")),
        "recv bitmap name longer than its length": at_start(_cmd(10, b"\x09pc.ram")),
        "command 0": at_start(_cmd(0)),
        "command 11": at_start(_cmd(11)),
    }


@pytest.fixture(scope="module")
def judged() -> list[tuple[str, bool, str, bool, str]]:
    plain = save(QemuLauncher())
    bitmaps = save(QemuLauncher(save_setup=(DIRTY_BITMAPS,)))
    two = save(
        QemuLauncher(
            extra_args=DISK,
            save_setup=(
                DIRTY_BITMAPS,
                ("block-dirty-bitmap-add", {"node": "disk0", "name": "b0"}),
                ("block-dirty-bitmap-add", {"node": "disk0", "name": "b1", "disabled": True}),
            ),
        )
    )
    # the dirty-bitmap START section's body: chunks naming disk0, b1 and b0, then EOS
    start = two.index(b"\x0cdirty-bitmap") + 21
    body = two.index(b"\x7e", start)
    streams = {
        "plain save": plain,
        "save with dirty-bitmaps": bitmaps,
        # restored into a QEMU without the disk: QEMU 7.2 cancels the bitmaps, loads the rest
        "save with two dirty bitmaps": two,
        "dirty-bitmap section cut in a chunk": two[: start + 4],
        "dirty-bitmap section without its EOS": two[: body - 1] + two[body:],
        **_streams(plain),
    }
    with ThreadPoolExecutor(POOL) as pool:
        oracle = list(
            pool.map(
                lambda data: qemu_verdict(QemuLauncher(), data, WAIT, hang_refuses=True),
                streams.values(),
            )
        )
    return [
        (name, qemu_ok, qemu_error, *stub_verdict(data))
        for (name, data), (qemu_ok, qemu_error) in zip(streams.items(), oracle, strict=True)
    ]


def test_a_dirty_bitmaps_save_carries_an_advise_and_both_accept_it(
    judged: list[tuple[str, bool, str, bool, str]],
) -> None:
    verdicts = {name: (qemu, stub) for name, qemu, _, stub, _ in judged}
    assert verdicts["plain save"] == (True, True)
    assert verdicts["save with dirty-bitmaps"] == (True, True)


def test_the_stub_judges_every_command_as_qemu_does(
    judged: list[tuple[str, bool, str, bool, str]],
) -> None:
    disagree = [
        f"{name}: qemu={qemu} ({qemu_error[-160:]}) stub={stub} ({stub_error})"
        for name, qemu, qemu_error, stub, stub_error in judged
        if qemu != stub
    ]
    assert not disagree
    # both verdicts occur, so the oracle is not one-sided
    assert {qemu for _, qemu, _, _, _ in judged} == {True, False}
    for name, _, _, stub, stub_error in judged:
        if not stub:
            assert "(at byte " in stub_error, name


def test_a_dirty_bitmaps_save_has_the_advise_first() -> None:
    data = save(QemuLauncher(save_setup=(DIRTY_BITMAPS,)))
    parser = MigrationParser()
    parser.feed(data)
    assert parser.finish().commands == 1
    assert data[26:31] == _cmd(3)  # right after pc-i440fx-7.2's CONFIGURATION section

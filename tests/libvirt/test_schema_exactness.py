"""Schema exactness across libvirt's whole remote program (issue 16 part 2): every safe
procedure called on a private libvirtd 9.0, each reply decoded exactly per libvirt's .x."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from realpeers import Libvirtd

from xdrstream.cli import main
from xdrstream.conformance import exactness
from xdrstream.fuzz.values import random_value
from xdrstream.libvirt import protocol as protocols
from xdrstream.protocol.framing import (
    LEN_SIZE,
    Header,
    MessageType,
    pack_frame,
    parse_header,
)

#: Measured on libvirtd 9.0 (Debian bookworm), test:///default + qemu:///session with a
#: volume, and the check's own snapshot of the test domain: 166 (158 without
#: them). The floor leaves room for a libvirtd built without a driver's extras.
CHECKED_FLOOR = 150


def test_plan_comes_from_the_annotations(real: protocols.RemoteProtocol) -> None:
    plan = exactness.plan(real)
    assert len(plan) == len(real.procedures)
    for proc in real.procedures.values():
        reason = plan[proc.name]
        if proc.event:
            assert reason is not None and reason.startswith("event")
        elif proc.stream is not None:
            assert reason is not None and "stream" in reason
    assert plan["DOMAIN_GET_INFO"] is None  # @acl domain:read
    assert plan["DOMAIN_GET_XML_DESC"] is None  # read_secure only with VIR_DOMAIN_XML_SECURE
    assert plan["DOMAIN_DESTROY"] == "changes state (@acl stop)"
    assert plan["DOMAIN_CREATE_XML"] == "changes state (@acl start, write)"
    assert plan["CONNECT_GET_DOMAIN_CAPABILITIES"] is None  # in GUARDED_READS
    kept = [name for name, reason in plan.items() if reason is None]
    assert len(kept) >= 190
    table = exactness.leave_out_table(real)
    assert len(table) + len(kept) == len(real.procedures)
    assert all(reason for _, _, reason in table)


class _ReplyServer:
    """A fake daemon: every CALL gets a valid random reply of its result type, except
    CONNECT_GET_LIB_VERSION (4 trailing bytes) and CONNECT_IS_SECURE (void's empty body
    given to a procedure whose result is an int: too short)."""

    def __init__(self, remote: protocols.RemoteProtocol, path: Path) -> None:
        self.remote = remote
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _body(self, number: int, rng: random.Random) -> bytes:
        proc = self.remote.procedure(number)
        if proc.name == "CONNECT_IS_SECURE":
            return b""
        if proc.result_type is None:
            return b""
        schema = self.remote.schema
        value = random_value(schema, schema.xtype(proc.result_type), rng)
        body = bytes(self.remote.codec(proc.result_type).pack(value))
        return body + bytes(4) if proc.name == "CONNECT_GET_LIB_VERSION" else body

    def _serve(self) -> None:
        rng = random.Random(16)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._answer(conn, rng)

    def _answer(self, conn: socket.socket, rng: random.Random) -> None:
        buffer = b""
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            buffer += data
            while len(buffer) >= LEN_SIZE and len(buffer) >= int.from_bytes(buffer[:4], "big"):
                size = int.from_bytes(buffer[:4], "big")
                frame, buffer = buffer[:size], buffer[size:]
                h = parse_header(frame, LEN_SIZE)
                reply = Header(h.prog, h.vers, h.proc, MessageType.REPLY, h.serial, 0)
                conn.sendall(pack_frame(reply, self._body(h.proc, rng)))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def fake(real: protocols.RemoteProtocol, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fake.sock"
    server = _ReplyServer(real, path)
    yield path
    server.close()


@pytest.mark.timeout(60)
def test_inexact_replies_are_mismatches(
    real: protocols.RemoteProtocol, tree: Path, fake: Path
) -> None:
    report = exactness.check(
        real,
        f"unix:{fake}",
        only=["CONNECT_GET_LIB_VERSION", "CONNECT_IS_SECURE", "CONNECT_GET_HOSTNAME"],
    )
    outcome = {o.name: o for o in report.outcomes}
    assert outcome["CONNECT_GET_HOSTNAME"].outcome == "checked"
    assert outcome["CONNECT_GET_LIB_VERSION"].outcome == "mismatch"
    assert "trailing" in outcome["CONNECT_GET_LIB_VERSION"].detail
    assert outcome["CONNECT_IS_SECURE"].outcome == "mismatch"
    assert outcome["DOMAIN_GET_INFO"].outcome == "left-out"
    assert report.count("mismatch") == 2
    command = ["conformance", "exactness", "--connect", f"unix:{fake}", "--libvirt-schemas"]
    assert main([*command, str(tree)]) == 1


@pytest.mark.real_peers
@pytest.mark.timeout(240)
def test_whole_protocol_exact_on_libvirtd(
    daemon: Libvirtd, tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdrstream conformance exactness` on test:///default and qemu:///session (a dir
    pool with a volume): at least CHECKED_FLOOR procedures checked, none inexact."""
    daemon.virsh("vol-create-as", "tpool", "exact1", "1M", "--format", "raw")
    out = tmp_path / "exact.json"
    code = main(
        ["conformance", "exactness", "--connect", f"unix:{daemon.socket_path}",
         "--libvirt-schemas", str(tree), "--uri", "test:///default", "--uri",
         "qemu:///session", "--json", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + printed.splitlines()[-1] if printed else "")
    document = json.loads(out.read_text())
    summary = document["summary"]
    assert code == 0, printed
    assert summary["mismatch"] == 0
    assert summary["checked"] >= CHECKED_FLOOR, printed
    assert sum(summary.values()) == len(protocols.load(tree).procedures) == 443
    names = {p["name"]: p for p in document["procedures"]}
    for name in ("DOMAIN_GET_INFO", "CONNECT_GET_CAPABILITIES", "STORAGE_VOL_GET_INFO",
                 "CONNECT_GET_ALL_DOMAIN_STATS", "NODE_GET_INFO"):  # fmt: skip
        assert names[name]["outcome"] == "checked", names[name]
    # reads of the objects the check made itself (and removed after)
    for name in ("DOMAIN_SNAPSHOT_GET_XML_DESC", "DOMAIN_SNAPSHOT_LOOKUP_BY_NAME"):
        assert names[name]["outcome"] == "checked", names[name]
    assert f"{summary['checked']} procedures checked of 443 in the protocol" in printed
    assert all(p["detail"] for p in document["procedures"] if p["outcome"] == "left-out")

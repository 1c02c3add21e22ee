"""Real QEMU behind the reference server: a guest saved through each variant's stream is
restored through the same variant into another QEMU, which must report `completed`."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdrstream.endpoints.qemu import find_qemu
from xdrstream.restore.client import Client
from xdrstream.restore.server import ServerThread, build_server
from xdrstream.transport.errors import RemoteFailure

pytestmark = [
    pytest.mark.real_peers,
    pytest.mark.skipif(find_qemu() is None, reason="not installed: qemu-system-x86_64"),
]


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_real_qemu_guest_saved_and_restored_through_the_stream(
    tmp_path: Path, variant: int
) -> None:
    qemu = find_qemu()
    assert qemu is not None
    server = build_server(f"unix:{tmp_path}/xs.sock", qemu=qemu)
    saved = tmp_path / "guest.migration"
    with ServerThread(server) as running, Client.connect(running.address) as client:
        got = client.save(saved, variant=variant, name="guest")
        assert server.results[-1].ok, server.results[-1].error
        assert got.bytes == saved.stat().st_size > 0
        assert saved.read_bytes()[:8] == b"QEVM\x00\x00\x00\x03"
        client.restore(saved, variant=variant, name="guest")
        assert server.results[-1].ok, server.results[-1].error
        # and QEMU's own refusal of a cut stream reaches the client
        cut = saved.read_bytes()[: got.bytes // 2]
        with pytest.raises(RemoteFailure, match="restore failed"):
            client.restore([cut], variant=variant, name="guest")

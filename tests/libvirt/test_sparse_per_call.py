"""libvirt's streams are sparse per call (spec.md §7.1.3, §11.3): only a STORAGE_VOL_UPLOAD or
_DOWNLOAD whose ``flags`` has VIR_STORAGE_VOL_*_SPARSE_STREAM may carry holes, as libvirt's
gendispatch.pl decides (``sparse = args->flags & @sparseflag``), in the engine on both
sides, for decoded and for raw (server-decoded) arguments, from the built-in subset and
from libvirt's own remote_protocol.x."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sources import debian_source

from xdrstream.libvirt import LibvirtClient, remote
from xdrstream.libvirt import protocol as protocols
from xdrstream.libvirt.storage_server import StorageServer
from xdrstream.protocol import NEED_DATA, Connection, Role
from xdrstream.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    Event,
    Reply,
    StreamData,
    StreamHole,
)
from xdrstream.protocol.framing import Header, MessageType, pack_frame
from xdrstream.transport.errors import TransportError

BUILTIN = protocols.builtin()
VOL = {"pool": "images", "name": "v.img", "key": "/images/v.img"}


def _drain(conn: Connection) -> list[Event]:
    out: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return out


def _opened(
    proto: protocols.RemoteProtocol, name: str, flags: int, raw_args: bool = False
) -> tuple[Connection, Connection, int]:
    """A client and a server engine with ``name`` called (``flags``) and answered."""
    client = Connection(Role.CLIENT, proto.programs())
    server = Connection(Role.SERVER, [proto.program_definition(raw_args=raw_args)])
    number = proto.procedure(name).number
    args = proto.args(name, vol=VOL, offset=0, length=0, flags=flags)
    serial = client.next_serial()
    server.receive_data(client.send(Call(serial, proto.program, proto.version, number, args)))
    [call] = _drain(server)
    assert isinstance(call, Call)
    client.receive_data(server.send(Reply(serial, None)))
    assert [type(e) for e in _drain(client)] == [Reply]
    return client, server, serial


def _hole_frame(proto: protocols.RemoteProtocol, name: str, serial: int) -> bytes:
    number = proto.procedure(name).number
    header = Header(proto.program, proto.version, number, MessageType.STREAM_HOLE, serial, 0)
    return pack_frame(header, (4096).to_bytes(8, "big") + bytes(4))


@pytest.fixture(params=["builtin", "libvirt 9.0 remote_protocol.x"])
def proto(request: pytest.FixtureRequest) -> protocols.RemoteProtocol:
    if request.param == "builtin":
        return BUILTIN
    return protocols.load(debian_source("libvirt", "bookworm"))


@pytest.mark.parametrize("raw_args", [False, True], ids=["decoded", "raw"])
def test_a_sparse_upload_call_carries_holes(
    proto: protocols.RemoteProtocol, raw_args: bool
) -> None:
    client, server, serial = _opened(proto, "STORAGE_VOL_UPLOAD", remote.SPARSE_STREAM, raw_args)
    assert client.stream_info(serial).sparse and server.stream_info(serial).sparse  # type: ignore[union-attr]
    server.receive_data(client.send(StreamHole(serial, 4096)))
    assert _drain(server) == [StreamHole(serial, 4096)]


@pytest.mark.parametrize("raw_args", [False, True], ids=["decoded", "raw"])
def test_a_hole_in_an_upload_called_without_the_flag_is_a_protocol_error(
    proto: protocols.RemoteProtocol, raw_args: bool
) -> None:
    """libvirtd closes the connection (its daemonStreamHandleHole: "Unexpected stream
    hole"); the sending side refuses to send one."""
    client, server, serial = _opened(proto, "STORAGE_VOL_UPLOAD", 0, raw_args)
    assert not server.stream_info(serial).sparse  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError, match=r"§7\.1\.3"):
        client.send(StreamHole(serial, 4096))
    client.send(StreamData(serial, b"data"))  # the stream goes on: data is allowed
    server.receive_data(_hole_frame(proto, "STORAGE_VOL_UPLOAD", serial))
    with pytest.raises(RemoteProtocolError, match=r"§7\.1\.3"):
        _drain(server)


def test_a_download_is_sparse_only_when_asked(proto: protocols.RemoteProtocol) -> None:
    dense_client, dense_server, dense = _opened(proto, "STORAGE_VOL_DOWNLOAD", 0)
    with pytest.raises(LocalProtocolError, match=r"§7\.1\.3"):
        dense_server.send(StreamHole(dense, 4096))
    dense_client.receive_data(_hole_frame(proto, "STORAGE_VOL_DOWNLOAD", dense))
    with pytest.raises(RemoteProtocolError, match=r"§7\.1\.3"):
        _drain(dense_client)
    client, server, serial = _opened(proto, "STORAGE_VOL_DOWNLOAD", remote.SPARSE_STREAM)
    client.receive_data(server.send(StreamHole(serial, 4096)))
    assert _drain(client) == [StreamHole(serial, 4096)]


def test_the_rule_reads_what_the_engine_sees() -> None:
    """A generated struct, a mapping, the payload bytes; bytes that do not decode and other
    flags ask for no holes."""
    mode = BUILTIN.procedure("STORAGE_VOL_UPLOAD").stream
    assert mode is not None and mode.sparse
    value: Any = BUILTIN.args("STORAGE_VOL_UPLOAD", vol=VOL, offset=0, length=0, flags=3)
    codec = BUILTIN.codec(BUILTIN.procedure("STORAGE_VOL_UPLOAD").arg_type)
    assert mode.sparse_for(value) and mode.sparse_for(codec.pack(value))
    assert mode.sparse_for({"flags": 1}) and not mode.sparse_for({"flags": 2})
    assert not mode.sparse_for(b"\x00\x00") and not mode.sparse_for(None)


def test_our_client_cannot_send_a_hole_in_a_non_sparse_upload(tmp_path: Path) -> None:
    pool = tmp_path / "images"
    pool.mkdir()
    (pool / "v.img").write_bytes(bytes(64 * 1024))
    with (
        StorageServer(f"unix:{tmp_path / 's'}", pool),
        LibvirtClient.open(f"unix:{tmp_path / 's'}") as client,
    ):
        vol = client.lookup_volume("images", "v.img")
        stream = client.open_stream("STORAGE_VOL_UPLOAD", vol=vol, offset=0, length=0, flags=0)
        with pytest.raises((LocalProtocolError, TransportError), match=r"§7\.1\.3"):
            stream.send_hole(4096)

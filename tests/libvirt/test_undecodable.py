"""A call whose arguments do not decode: libvirtd's error reply, and the connection goes on
(issue 16 part 0).  Our storage server against the same raw frames as a real libvirtd."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
from libvirt_servers import OurServer
from realpeers import Libvirtd, require

from xdrstream.libvirt import remote
from xdrstream.libvirt.errors import VIR_ERR_RPC, VIR_FROM_RPC
from xdrstream.protocol import RemoteError, bodies
from xdrstream.protocol.framing import (
    FrameDecoder,
    Header,
    MessageStatus,
    MessageType,
    pack_frame,
)

CALL = MessageType.CALL
# CONNECT_OPEN with a present name whose length word is 0xFFFFFFF0 (libvirtd's own case)
BAD_OPEN = struct.pack(">II", 1, 0xFFFFFFF0)
# CONNECT_OPEN whose optional-name flag is go-libvirt's word 0x01000000 (libtirpc: TRUE)
GO_OPEN = struct.pack(">II", 0x01000000, 15) + b"test:///default\0" + struct.pack(">I", 0)


class RawClient:
    """Hand-made frames to a libvirt server over a Unix socket, replies read back."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.decoder = FrameDecoder()
        self.serial = 0

    def call(self, proc: int, payload: bytes = b"") -> tuple[Header, bytes]:
        self.serial += 1
        header = Header(remote.PROGRAM, remote.VERSION, proc, CALL, self.serial, 0)
        self.sock.sendall(pack_frame(header, payload))
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                assert frame.header.serial == self.serial
                return frame.header, bytes(frame.payload)
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.decoder.feed(data)

    def close(self) -> None:
        self.sock.close()


def undecodable_session(path: Path) -> tuple[RemoteError, Header]:
    """AUTH_LIST, a CONNECT_OPEN that cannot decode, then AUTH_LIST again: the error body of
    the second call and the header of the third call's reply."""
    client = RawClient(path)
    try:
        header, _ = client.call(remote.AUTH_LIST)
        assert header.status == MessageStatus.OK
        header, body = client.call(remote.CONNECT_OPEN, BAD_OPEN)
        assert (header.type, header.status) == (MessageType.REPLY, MessageStatus.ERROR)
        error = bodies.unpack_error(body)
        after, _ = client.call(remote.AUTH_LIST)  # the connection goes on
        return error, after
    finally:
        client.close()


def test_our_server_answers_an_undecodable_call_as_libvirtd(our_server: OurServer) -> None:
    error, after = undecodable_session(our_server.socket)
    assert (error.code, error.domain) == (VIR_ERR_RPC, VIR_FROM_RPC)
    assert error.message == "Unable to decode message payload"
    assert after.status == MessageStatus.OK


@pytest.mark.real_peers
@pytest.mark.timeout(60)
def test_same_error_body_as_a_real_libvirtd(our_server: OurServer, daemon: Libvirtd) -> None:
    theirs, their_after = undecodable_session(daemon.socket_path)
    ours, our_after = undecodable_session(our_server.socket)
    assert (theirs.code, theirs.domain, theirs.message) == (
        VIR_ERR_RPC,
        VIR_FROM_RPC,
        "Unable to decode message payload",
    )
    assert ours == theirs  # every field: code, domain, message, level, str1..3, int1, int2
    assert our_after.status == their_after.status == MessageStatus.OK


def test_go_libvirt_optional_flag_is_accepted(our_server: OurServer) -> None:
    """libtirpc's xdr_bool (and so libvirtd) takes any non-zero word as TRUE."""
    client = RawClient(our_server.socket)
    try:
        client.call(remote.AUTH_LIST)
        header, body = client.call(remote.CONNECT_OPEN, GO_OPEN)
        assert header.status == MessageStatus.OK, bodies.unpack_error(body)
        header, body = client.call(remote.CONNECT_GET_URI)
        assert header.status == MessageStatus.OK
        assert body[4:19] == b"test:///default"  # the name the lenient decode read
    finally:
        client.close()


def test_strict_server_refuses_the_flag_with_the_same_error(tmp_path: Path) -> None:
    from xdrstream.libvirt.storage_server import StorageServer

    directory = tmp_path / "images"
    directory.mkdir()
    sock = tmp_path / "sock"
    with StorageServer(f"unix:{sock}", directory, strict=True):
        client = RawClient(sock)
        try:
            client.call(remote.AUTH_LIST)
            header, body = client.call(remote.CONNECT_OPEN, GO_OPEN)
            assert header.status == MessageStatus.ERROR
            assert bodies.unpack_error(body).message == "Unable to decode message payload"
        finally:
            client.close()


@pytest.mark.real_peers
@pytest.mark.timeout(60)
def test_real_libvirtd_accepts_the_go_libvirt_flag(daemon: Libvirtd) -> None:
    require("libvirtd")
    client = RawClient(daemon.socket_path)
    try:
        client.call(remote.AUTH_LIST)
        header, body = client.call(remote.CONNECT_OPEN, GO_OPEN)
        assert header.status == MessageStatus.OK, bodies.unpack_error(body)
    finally:
        client.close()

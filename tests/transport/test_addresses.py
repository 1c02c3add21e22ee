"""Addresses: parsing and formatting, libvirt URIs, real connect/listen with clear errors."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest

from xdrstream.transport.address import (
    DEFAULT_TCP_PORT,
    DEFAULT_TLS_PORT,
    SYSTEM_SOCKET,
    Address,
    AddressError,
    ConnectError,
    ListenError,
    bound_address,
    connect,
    listen,
    parse_address,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/x.sock", Address("unix", path="/run/x.sock")),
        ("unix:relative/x", Address("unix", path="relative/x")),
        ("tcp:127.0.0.1:16509", Address("tcp", host="127.0.0.1", port=16509)),
        ("tcp:localhost:0", Address("tcp", host="localhost", port=0)),
        ("tcp:[::1]:5000", Address("tcp", host="::1", port=5000)),
        ("tls:example.org:16514", Address("tcp", host="example.org", port=16514, tls=True)),
    ],
)
def test_short_forms_parse_and_format_back(text: str, expected: Address) -> None:
    assert parse_address(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "qemu+unix:///session?socket=/tmp/d/libvirt-sock",
            Address("unix", path="/tmp/d/libvirt-sock", driver="qemu", uri_path="/session"),
        ),
        (
            "test+unix:///default?socket=/s",
            Address("unix", path="/s", driver="test", uri_path="/default"),
        ),
        (
            "qemu+tcp://127.0.0.1:16600/session",
            Address("tcp", host="127.0.0.1", port=16600, driver="qemu", uri_path="/session"),
        ),
        (
            "qemu+tcp://[::1]/system",
            Address("tcp", host="::1", port=DEFAULT_TCP_PORT, driver="qemu", uri_path="/system"),
        ),
        (
            "qemu+tls://host.example/system",
            Address(
                "tcp",
                host="host.example",
                port=DEFAULT_TLS_PORT,
                tls=True,
                driver="qemu",
                uri_path="/system",
            ),
        ),
        (
            "qemu:///system",
            Address("unix", path=SYSTEM_SOCKET, driver="qemu", uri_path="/system"),
        ),
    ],
)
def test_libvirt_uris(uri: str, expected: Address) -> None:
    assert parse_address(uri) == expected


def test_a_session_uri_without_socket_means_the_users_libvirtd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    address = parse_address("qemu+unix:///session")
    assert address.path == "/run/user/1000/libvirt/libvirt-sock"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/just/a/path", "no scheme"),
        ("unix:", "empty socket path"),
        ("tcp:127.0.0.1", "expected HOST:PORT"),
        ("tcp::80", "empty host"),
        ("tcp:host:http", "port 'http' is not 0..65535"),
        ("tcp:host:65536", "port '65536' is not 0..65535"),
        ("tcp:::1:80", "put an IPv6 host in brackets"),
        ("tcp:[::1]80", "expected [IPV6]:PORT"),
        ("udp:host:53", "unknown scheme 'udp'"),
        ("qemu+ssh://host/system", "transport 'ssh' is not supported"),
        ("qemu+unix://host/session", "a unix URI has no host; for a host use DRIVER+tcp://"),
        ("gopher://x", "(no +TRANSPORT in the scheme means unix); for a host use DRIVER+tcp://"),
        ("qemu+tcp://host/system?socket=/x", "socket= is for unix URIs"),
        ("qemu+unix:///session?no_verify=1", "unsupported parameter 'no_verify'"),
        ("qemu+tcp://host:99999/system", "invalid URI"),
    ],
)
def test_bad_addresses_are_explained(text: str, message: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def echo_once(server: socket.socket) -> threading.Thread:
    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(16))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def roundtrip(address: Address) -> None:
    with listen(address) as server:
        real = bound_address(server, address)
        thread = echo_once(server)
        with connect(real, timeout=5) as client:
            assert client.gettimeout() is None  # blocking after connect
            client.sendall(b"hello")
            assert client.recv(16) == b"hello"
        thread.join(5)


def test_unix_listen_and_connect(tmp_path: Path) -> None:
    roundtrip(parse_address(f"unix:{tmp_path / 's.sock'}"))


def test_tcp_listen_and_connect_on_a_free_port() -> None:
    address = parse_address("tcp:127.0.0.1:0")
    with listen(address) as server:
        real = bound_address(server, address)
        assert real.port != 0 and str(real) == f"tcp:127.0.0.1:{real.port}"
    roundtrip(address)


def test_tcp_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        roundtrip(parse_address("tcp:[::1]:0"))
    except ListenError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")


def test_connect_errors_name_the_reason_and_address(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sock"
    with pytest.raises(ConnectError, match=f"^no such socket: {re.escape(f'unix:{missing}')}$"):
        connect(parse_address(f"unix:{missing}"))
    with listen(parse_address("tcp:127.0.0.1:0")) as server:
        port = server.getsockname()[1]
    with pytest.raises(ConnectError, match=rf"^connection refused: tcp:127\.0\.0\.1:{port}$"):
        connect(parse_address(f"tcp:127.0.0.1:{port}"))
    stale = tmp_path / "stale.sock"
    listen(parse_address(f"unix:{stale}")).close()  # the file stays, nobody listens
    with pytest.raises(ConnectError, match=f"^connection refused: {re.escape(f'unix:{stale}')}$"):
        connect(parse_address(f"unix:{stale}"))
    with pytest.raises(ConnectError, match=r"^cannot resolve host"):
        connect(parse_address("tcp:no-such-host.invalid:1"), timeout=5)


def test_listen_replaces_a_stale_socket_but_not_a_live_one_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    address = parse_address(f"unix:{path}")
    listen(address).close()
    assert path.exists()
    with listen(address), pytest.raises(ListenError, match="address in use"):
        listen(address)
    regular = tmp_path / "file"
    regular.write_text("not a socket")
    with pytest.raises(ListenError, match="exists and is not a socket"):
        listen(parse_address(f"unix:{regular}"))
    assert regular.read_text() == "not a socket"


def test_listen_on_a_busy_tcp_port_is_explained() -> None:
    with listen(parse_address("tcp:127.0.0.1:0")) as server:
        port = server.getsockname()[1]
        with pytest.raises(ListenError, match=rf"address in use: tcp:127\.0\.0\.1:{port}"):
            listen(parse_address(f"tcp:127.0.0.1:{port}"))

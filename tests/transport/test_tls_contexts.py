"""TLS contexts over a real loopback socket, with certificates made by trustme."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from test_cli_support import Pki, make_pki

from xdrstream.transport.tls import (
    TLSError,
    client_context,
    server_context,
    wrap_client,
    wrap_server,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class OneShotServer:
    """Accepts one TLS client on 127.0.0.1, answers b"ping" with b"pong", keeps any error."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.error: TLSError | None = None
        self.peer_cert: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._serve, args=(context,), daemon=True)
        self.thread.start()

    def _serve(self, context: ssl.SSLContext) -> None:
        conn, address = self.listener.accept()
        conn.settimeout(10)
        try:
            tls = wrap_server(conn, context, peer=f"{address[0]}:{address[1]}")
        except TLSError as exc:
            self.error = exc
            return
        with tls:
            self.peer_cert = tls.getpeercert() or None
            if tls.recv(4) == b"ping":
                tls.sendall(b"pong")

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.listener.close()


def talk(server: OneShotServer, context: ssl.SSLContext, hostname: str = "localhost") -> bytes:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        with wrap_client(sock, context, hostname, peer=f"tcp:127.0.0.1:{server.port}") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(b"ping")
            return tls.recv(4)
    finally:
        server.join()


def refused_reply(server: OneShotServer, context: ssl.SSLContext) -> bytes | None:
    """What a client gets from a server that refuses it: an error (None) or no data."""
    try:
        return talk(server, context)
    except (TLSError, ssl.SSLError, ConnectionError):
        return None


def test_a_verified_handshake_carries_data(pki: Pki) -> None:
    server = OneShotServer(server_context(pki.server_cert, pki.server_key))
    assert talk(server, client_context(pki.ca)) == b"pong"
    assert server.error is None and server.peer_cert is None


def test_a_client_trusting_another_ca_refuses_the_server(pki: Pki) -> None:
    server = OneShotServer(server_context(pki.server_cert, pki.server_key))
    with pytest.raises(TLSError) as info:
        talk(server, client_context(pki.other_ca))
    assert str(info.value).startswith(f"TLS handshake with tcp:127.0.0.1:{server.port} failed")
    assert "certificate verify failed: unable to get local issuer certificate" in str(info.value)
    assert server.error is not None  # the server saw the client give up


def test_a_client_checks_the_server_host_name(pki: Pki) -> None:
    server = OneShotServer(server_context(pki.server_cert, pki.server_key))
    with pytest.raises(TLSError, match="Hostname mismatch"):
        talk(server, client_context(pki.ca), hostname="elsewhere.example")


def test_mutual_tls_refuses_a_client_without_a_certificate(pki: Pki) -> None:
    context = server_context(pki.server_cert, pki.server_key, pki.ca, require_client_cert=True)
    server = OneShotServer(context)
    # with TLS 1.3 the refusal may reach the client only at its first read
    assert refused_reply(server, client_context(pki.ca)) != b"pong"
    assert server.error is not None
    assert "peer did not return a certificate" in str(server.error)


def test_mutual_tls_accepts_a_client_with_a_valid_certificate(pki: Pki) -> None:
    context = server_context(pki.server_cert, pki.server_key, pki.ca, require_client_cert=True)
    server = OneShotServer(context)
    client = client_context(pki.ca, pki.client_cert, pki.client_key)
    assert talk(server, client) == b"pong"
    assert server.peer_cert is not None
    assert "client.example" in str(server.peer_cert["subjectAltName"])


def test_mutual_tls_refuses_a_certificate_from_another_ca(pki: Pki) -> None:
    context = server_context(pki.server_cert, pki.server_key, pki.ca, require_client_cert=True)
    server = OneShotServer(context)
    assert refused_reply(server, client_context(pki.ca, pki.other_client)) != b"pong"
    assert server.error is not None and "certificate verify failed" in str(server.error)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_before_1_2_is_refused(pki: Pki) -> None:
    server = OneShotServer(server_context(pki.server_cert, pki.server_key))
    old = client_context(pki.ca)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.1
    with pytest.raises(TLSError, match="alert protocol version"):
        talk(server, old)
    assert server.error is not None and "unsupported protocol" in str(server.error)


def test_configuration_errors_name_the_file(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TLSError, match=f"cannot load TLS certificate '{missing}'"):
        server_context(missing, pki.server_key)
    with pytest.raises(TLSError, match=f"cannot load TLS CA '{missing}'"):
        client_context(missing)
    with pytest.raises(TLSError, match="needs a CA"):
        server_context(pki.server_cert, pki.server_key, require_client_cert=True)
    with pytest.raises(TLSError, match="needs its certificate"):
        client_context(pki.ca, key=pki.client_key)


def test_contexts_require_verification_and_tls_1_2(pki: Pki) -> None:
    client = client_context(pki.ca)
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2
    optional = server_context(pki.server_cert, pki.server_key, pki.ca)
    assert optional.verify_mode == ssl.CERT_OPTIONAL
    assert server_context(pki.server_cert, pki.server_key).verify_mode == ssl.CERT_NONE

"""TLS for both roles on the stdlib `ssl` module: TLS 1.2 or later, verification always on.

The server presents `cert`/`key`; with a `ca` it also verifies client certificates, and with
`require_client_cert` it refuses clients that present none (mutual TLS, as libvirtd does
with its client CA). The client verifies the server against `ca` (the system store when
None) and its host name, and presents `cert`/`key` when given. Contexts go to the blocking
helpers below or to asyncio (`loop.create_connection(..., ssl=context)`) unchanged.

Every failure is a `TLSError` saying what and with whom: a file that cannot be loaded, a
handshake that fails verification, a peer that hangs up mid-handshake.
"""

from __future__ import annotations

import os
import socket
import ssl

PathLike = str | os.PathLike[str]
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TLSError(Exception):
    """A TLS configuration or handshake failure."""


def server_context(
    cert: PathLike, key: PathLike, ca: PathLike | None = None, require_client_cert: bool = False
) -> ssl.SSLContext:
    """A server context; client certificates are verified against `ca` when given."""
    if require_client_cert and ca is None:
        raise TLSError("requiring client certificates needs a CA to verify them (--tls-ca)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, cert, key)
    if ca is not None:
        _load_ca(context, ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(
    ca: PathLike | None = None, cert: PathLike | None = None, key: PathLike | None = None
) -> ssl.SSLContext:
    """A client context that verifies the server (against `ca`, else the system store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    context.minimum_version = MINIMUM_VERSION
    if ca is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_ca(context, ca)
    if cert is not None:
        _load_chain(context, cert, key)
    elif key is not None:
        raise TLSError(f"a client key ({os.fspath(key)}) needs its certificate")
    return context


def wrap_client(
    sock: socket.socket, context: ssl.SSLContext, server_hostname: str, peer: str = ""
) -> ssl.SSLSocket:
    """Run the client handshake on a connected blocking socket.

    On failure the socket is closed and TLSError names `peer` (e.g. "tcp:host:port").
    With TLS 1.3 a server that refuses the client's certificate says so only after the
    client's handshake has finished: that refusal surfaces on the first read.
    """
    try:
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
        sock.close()
        raise TLSError(
            f"TLS handshake with {peer or server_hostname} failed: {describe(exc)}"
        ) from exc


def wrap_server(sock: socket.socket, context: ssl.SSLContext, peer: str = "") -> ssl.SSLSocket:
    """Run the server handshake on an accepted blocking socket; TLSError on failure."""
    try:
        return context.wrap_socket(sock, server_side=True)
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        raise TLSError(f"TLS handshake with client {peer or '?'} failed: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """A one-line reason: OpenSSL's verify message where there is one."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    if isinstance(exc, ConnectionError | EOFError) or not str(exc):
        return f"connection closed by peer ({type(exc).__name__})"
    return str(exc)


def _load_chain(context: ssl.SSLContext, cert: PathLike, key: PathLike | None) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(
            f"cannot load TLS certificate {os.fspath(cert)!r} / key "
            f"{os.fspath(key) if key is not None else '(in the certificate file)'!r}: {exc}"
        ) from exc


def _load_ca(context: ssl.SSLContext, ca: PathLike) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load TLS CA {os.fspath(ca)!r}: {exc}") from exc

"""Where to connect or listen: `unix:PATH`, `tcp:HOST:PORT`, `tls:HOST:PORT`, libvirt URIs.

Short forms (what the CLI prints and `str(address)` gives back):

    unix:/run/x.sock        tcp:127.0.0.1:16509      tcp:[::1]:16509      tls:host:16514

libvirt connection URIs are accepted too: `DRIVER+unix:///PATH?socket=SOCKET`,
`DRIVER+tcp://HOST[:PORT]/PATH`, `DRIVER+tls://HOST[:PORT]/PATH` and the local `DRIVER:///PATH`
(e.g. `qemu+unix:///session?socket=/tmp/libvirt-sock`, `qemu+tcp://127.0.0.1:16509/session`).
Ports default to libvirtd's (16509 TCP, 16514 TLS); a unix URI without `socket=` means
libvirtd's own socket for /system or /session.

`connect()` and `listen()` return real blocking sockets; failures are `ConnectError` /
`ListenError` with one clear line, e.g. "connection refused: unix:/x".
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TCP_PORT = 16509
DEFAULT_TLS_PORT = 16514
SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"

FORMS = (
    "unix:PATH, tcp:HOST:PORT, tls:HOST:PORT or a libvirt URI (qemu+unix:///session?socket=PATH)"
)


class AddressError(ValueError):
    """An address that cannot be parsed."""


class ConnectError(ConnectionError):
    """Connecting failed; the message names the reason and the address."""


class ListenError(OSError):
    """Listening failed; the message names the reason and the address."""


@dataclass(frozen=True)
class Address:
    """A Unix socket path or a TCP host and port (with TLS or not).

    `driver` and `uri_path` keep what a libvirt URI said (e.g. "qemu", "/session").
    """

    kind: Literal["unix", "tcp"]
    path: str = ""
    host: str = ""
    port: int = 0
    tls: bool = False
    driver: str | None = None
    uri_path: str | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls' if self.tls else 'tcp'}:{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse a short form or a libvirt URI; AddressError says what is wrong."""
    scheme, sep, rest = text.partition(":")
    if not sep:
        raise AddressError(f"invalid address {text!r}: no scheme; expected {FORMS}")
    if rest.startswith("//"):
        return _parse_uri(text)
    if scheme == "unix":
        if not rest:
            raise AddressError(f"invalid address {text!r}: empty socket path")
        return Address("unix", path=rest)
    if scheme in ("tcp", "tls"):
        host, port = _host_port(text, rest)
        return Address("tcp", host=host, port=port, tls=scheme == "tls")
    raise AddressError(f"invalid address {text!r}: unknown scheme {scheme!r}; expected {FORMS}")


def _host_port(text: str, rest: str) -> tuple[str, int]:
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or not tail.startswith(":"):
            raise AddressError(f"invalid address {text!r}: expected [IPV6]:PORT")
        port_text = tail[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise AddressError(f"invalid address {text!r}: expected HOST:PORT")
        if ":" in host:
            raise AddressError(f"invalid address {text!r}: put an IPv6 host in brackets")
    if not host:
        raise AddressError(f"invalid address {text!r}: empty host")
    return host, _port(text, port_text)


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AddressError(f"invalid address {text!r}: port {port_text!r} is not 0..65535")
    return int(port_text)


def _parse_uri(text: str) -> Address:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise AddressError(f"invalid URI {text!r}: {exc}") from exc
    driver, _, transport = parts.scheme.partition("+")
    transport = transport or "unix"
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(params) - {"socket"}
    if unknown:
        raise AddressError(f"invalid URI {text!r}: unsupported parameter {sorted(unknown)[0]!r}")
    uri_path = parts.path or "/"
    if transport == "unix":
        if parts.hostname:
            implied = "" if "+" in parts.scheme else " (no +TRANSPORT in the scheme means unix)"
            raise AddressError(
                f"invalid URI {text!r}: a unix URI has no host{implied}; "
                f"for a host use DRIVER+tcp:// or DRIVER+tls://, or one of {FORMS}"
            )
        path = params.get("socket") or _default_socket(uri_path)
        return Address("unix", path=path, driver=driver, uri_path=uri_path)
    if transport in ("tcp", "tls"):
        if "socket" in params:
            raise AddressError(f"invalid URI {text!r}: socket= is for unix URIs")
        tls = transport == "tls"
        default = DEFAULT_TLS_PORT if tls else DEFAULT_TCP_PORT
        host = parts.hostname or "localhost"
        return Address(
            "tcp",
            host=host,
            port=default if port is None else port,
            tls=tls,
            driver=driver,
            uri_path=uri_path,
        )
    raise AddressError(
        f"invalid URI {text!r}: transport {transport!r} is not supported (unix, tcp, tls)"
    )


def _default_socket(uri_path: str) -> str:
    """libvirtd's socket for a URI without socket=: /system or the user's /session."""
    if uri_path == "/system":
        return SYSTEM_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~/.cache")
    return os.path.join(runtime, "libvirt", "libvirt-sock")


# --- sockets ------------------------------------------------------------------------------

_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENOENT: "no such socket",
    errno.EACCES: "permission denied",
    errno.ETIMEDOUT: "connection timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRINUSE: "address in use",
    errno.EADDRNOTAVAIL: "address not available",
}


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror})"
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return "connection timed out"
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def connect(address: Address, timeout: float | None = None) -> socket.socket:
    """A connected blocking socket (`timeout` bounds the connect only)."""
    sock: socket.socket | None = None
    try:
        if address.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address.path)
        else:
            sock = socket.create_connection((address.host, address.port), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ConnectError(f"{_reason(exc)}: {address}") from exc
    sock.settimeout(None)
    return sock


def listen(address: Address, backlog: int = 128) -> socket.socket:
    """A listening blocking socket. A stale Unix socket file (nobody listening) is replaced;
    port 0 picks a free port (see `bound_address`)."""
    try:
        if address.kind == "unix":
            return _listen_unix(address.path, backlog)
        info = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        return socket.create_server(
            (address.host, address.port), family=info[0][0], backlog=backlog
        )
    except ListenError:
        raise
    except OSError as exc:
        missing_dir = address.kind == "unix" and exc.errno == errno.ENOENT  # bind's ENOENT
        reason = "no such directory" if missing_dir else _reason(exc)
        raise ListenError(f"cannot listen, {reason}: {address}") from exc


def _listen_unix(path: str, backlog: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ListenError(f"cannot listen, exists and is not a socket: unix:{path}")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # left behind by a server that is gone
        else:
            raise ListenError(f"cannot listen, address in use: unix:{path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_address(sock: socket.socket, address: Address) -> Address:
    """`address` with the port the socket really got (after listening on port 0)."""
    if address.kind == "unix":
        return address
    return dataclasses.replace(address, port=sock.getsockname()[1])

"""What the channels of both drivers (:mod:`.aio`, :mod:`.blocking`) do alike on their socket.

A channel owns one non-blocking socket.  The drivers differ only in how they wait for it
(an event loop's reader/writer callbacks, or ``poll()`` in a thread); sending what the
socket takes now, hang-up detection, shutting down and the TLS state are written here once.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from xdrstream.protocol import Registry
from xdrstream.transport import address as addresses
from xdrstream.transport.core import TLSPump
from xdrstream.transport.drivers import advance, client_tls
from xdrstream.transport.limits import Budget
from xdrstream.transport.options import Options

if TYPE_CHECKING:  # both drivers' connect()/accept() keywords, typed once
    from typing_extensions import Unpack as Unpack

Target = str | addresses.Address
"""Where a client connects: ``unix:PATH``, ``tcp:HOST:PORT``, ``tls:HOST:PORT``."""

Programs = Iterable[Any] | Registry
"""The programs (schemas) a connection speaks."""

_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR

TLS_RAW = 256 * 1024
"""Ciphertext bytes one TLS channel receives per read (its one receive buffer)."""


def byte_views(buffers: Iterable[bytes | bytearray | memoryview]) -> list[memoryview]:
    """``buffers`` as flat byte views for ``sendmsg``, the empty ones left out."""
    return [memoryview(b).cast("B") for b in buffers if len(b)]


class SocketBase:
    """A plain socket in non-blocking mode; the driver's subclass adds the waiting."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    def send_ready(self, views: list[memoryview]) -> list[memoryview]:
        """Send what the socket takes without waiting; the views left (empty: all sent)."""
        while views:
            try:
                sent = self.sock.sendmsg(views)
            except (BlockingIOError, InterruptedError):
                return views
            views = advance(views, sent)
        return views

    def peer_gone(self) -> bool:
        """Whether the peer closed or reset the connection, even with unread data left
        (checked while reading is paused, when end of input cannot be read; Linux
        POLLRDHUP)."""
        fd = self.sock.fileno()
        if fd < 0:
            return True
        poller = select.poll()
        poller.register(fd, _HANGUP)
        return any(events & _HANGUP for _, events in poller.poll(0))

    def peer_certificate(self) -> dict[str, Any] | None:
        return None

    def shutdown(self) -> None:
        """Stop both directions (pending reads see end of input); the fd stays open
        until close(), so no callback registered on it can meet a reused fd number."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


class TLSBase(SocketBase):
    """TLS (a :class:`~.core.TLSPump`) on the plain socket: the state both drivers' TLS
    channels keep (each adds its waiting, and names its kind of lock)."""

    _lock_type: Callable[[], Any]

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        peer: str = "",
    ) -> None:
        super().__init__(sock)
        self._tls = TLSPump(context, server_side, server_hostname, peer)
        self._raw = memoryview(bytearray(TLS_RAW))
        self._lock = self._lock_type()

    def peer_certificate(self) -> dict[str, Any] | None:
        return self._tls.peer_certificate()


class Connecting(TypedDict, total=False):
    """A client's ``connect()`` keywords: ``tls`` (a context; also implied by ``tls:``
    addresses, then verified against the system CAs), ``server_hostname`` (what the
    certificate must name), ``options``."""

    tls: ssl.SSLContext | None
    server_hostname: str | None
    options: Options | None


class Accepting(TypedDict, total=False):
    """A server's ``accept()`` keywords: ``tls`` (handshake first), ``options``, ``name``
    (the peer, for messages), ``budget`` (the server's memory budget shared by its
    connections, §8.5)."""

    tls: ssl.SSLContext | None
    options: Options | None
    name: str
    budget: Budget | None


@dataclass(frozen=True)
class TLSSetup:
    """How to start TLS on a new connection's socket (see :func:`client_setup`)."""

    context: ssl.SSLContext
    server_side: bool
    server_hostname: str | None
    peer: str


def _known(keywords: Mapping[str, object], kind: type[Any], what: str) -> None:
    """A keyword the driver does not take is an error (as in a spelled-out signature)."""
    unknown = sorted(set(keywords) - set(kind.__annotations__))
    if unknown:
        raise TypeError(f"{what}() got unexpected keyword arguments: {', '.join(unknown)}")


def client_setup(
    target: Target, keywords: Connecting
) -> tuple[addresses.Address, Options, TLSSetup | None]:
    """Where a client connects, its options and its TLS set-up (None: plain)."""
    _known(keywords, Connecting, "connect")
    address = addresses.parse_address(target) if isinstance(target, str) else target
    options = keywords.get("options") or Options()
    settings = client_tls(address, keywords.get("tls"), keywords.get("server_hostname"))
    if settings is None:
        return address, options, None
    return address, options, TLSSetup(settings[0], False, settings[1], str(address))


def server_setup(keywords: Accepting) -> tuple[Options, str, TLSSetup | None]:
    """A server connection's options, peer name and TLS set-up (None: plain)."""
    _known(keywords, Accepting, "accept")
    options = keywords.get("options") or Options()
    name = keywords.get("name", "")
    tls = keywords.get("tls")
    return options, name, None if tls is None else TLSSetup(tls, True, None, name or "client")


P = TypeVar("P", bound=SocketBase)


def size_buffers(sock: socket.socket, options: Options) -> None:
    """Give a Unix socket ``options.unix_send_buffer`` of send buffer (0: leave it): what
    bounds the bytes in flight on a Unix stream socket, so the receiver gets a whole frame
    per read where the default (208 KiB on Linux) cannot hold one.  Other families are
    left alone (TCP autotunes; a fixed size would turn that off)."""
    size = options.unix_send_buffer
    if size > 0 and sock.family == socket.AF_UNIX:
        with contextlib.suppress(OSError):  # capped at net.core.wmem_max, never refused
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def channel_for(
    sock: socket.socket,
    setup: TLSSetup | None,
    options: Options,
    plain: Callable[[socket.socket], P],
    secure: Callable[[socket.socket, ssl.SSLContext, bool, str | None, str], P],
) -> P:
    """The driver's channel over ``sock`` (its buffers sized, :func:`size_buffers`):
    ``plain``, or ``secure`` as ``setup`` says."""
    size_buffers(sock, options)
    if setup is None:
        return plain(sock)
    return secure(sock, setup.context, setup.server_side, setup.server_hostname, setup.peer)

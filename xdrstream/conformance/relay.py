"""The relaying proxy the recorder and the judge share: it accepts connections on one
address, connects each to an upstream address and hands both sockets to
:meth:`RelayProxy.connection`, which says which threads relay them (and keeps what it wants
of the bytes). :meth:`RelayProxy.close` closes the listening socket and every relayed
socket and joins every thread the proxy started. Plain TCP/Unix sockets, blocking, one
thread per direction: a test fixture, not a server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from xdrstream.transport import address as addresses

_P = TypeVar("_P", bound="RelayProxy")

#: seconds to connect upstream for one accepted connection (refused: the client is closed)
CONNECT_TIMEOUT = 10.0
#: seconds close() waits for each thread
JOIN_TIMEOUT = 10.0


#: bytes asked of one recv() of a relayed socket
RECV_SIZE = 1 << 20


def received(source: socket.socket) -> Iterator[bytes]:
    """What ``source`` sends, chunk by chunk, until its end of input (a reset counts as
    one)."""
    while True:
        try:
            data = source.recv(RECV_SIZE)
        except OSError:
            return
        if not data:
            return
        yield data


def check_upstream(upstream: addresses.Address) -> None:
    """Connect to ``upstream`` once and close: a command says at its start that the upstream
    cannot be reached (ConnectError, naming it), not by closing each relayed client."""
    try:
        addresses.connect(upstream, timeout=CONNECT_TIMEOUT).close()
    except addresses.ConnectError as exc:
        raise addresses.ConnectError(f"cannot connect to the upstream: {exc}") from exc


class RelayProxy:
    def __init__(self, listen: addresses.Address, upstream: addresses.Address) -> None:
        self.upstream = upstream
        self._listen = listen
        self._sock = addresses.listen(listen)
        self.address = addresses.bound_address(self._sock, listen)
        self._guard = threading.Lock()  # _threads and _sockets
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closed = False

    def connection(
        self, client: socket.socket, upstream: socket.socket
    ) -> Sequence[Callable[[], None]]:
        """One accepted connection, its upstream connected (both blocking): the targets of
        the threads that relay it."""
        raise NotImplementedError

    def start(self: _P) -> _P:
        """Accept in a background thread."""
        self._spawn(self._accept_loop)
        return self

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._guard:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        with self._guard:
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        if self._listen.kind == "unix":
            with contextlib.suppress(OSError):
                os.unlink(self._listen.path)

    def __enter__(self: _P) -> _P:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        with self._guard:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = addresses.connect(self.upstream, timeout=CONNECT_TIMEOUT)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._guard:
                self._sockets += [client, upstream]
            for target in self.connection(client, upstream):
                self._spawn(target)

"""Exceptions of the I/O drivers, the stream API and the reference client and server.

* :class:`TransportError` -- base class of everything below.
* :class:`ConnectionLost` -- the connection is gone (peer closed it, reset, TLS failure,
  protocol error, local close); every exchange on it ends with this error.
* :class:`PeerTimeout` -- the peer stalled (a send made no progress, nothing arrived while
  waiting, keepalive pings unanswered, idle too long); the connection is closed.
* :class:`RemoteFailure` -- the peer reported an error body (spec.md §4.5): ``code``,
  ``message`` and the full :class:`~xdrstream.protocol.RemoteError` in ``error``.
* :class:`StreamAborted` -- (server side) the client aborted the stream.
* :class:`StreamClosed` -- the application used a stream that has already ended.

Error codes are libvirt's ``virErrorNumber`` values (``ERR_*`` below), domains its
``virErrorDomain`` values (``FROM_*``).
"""

from __future__ import annotations

from xdrstream.protocol import RemoteError

ERR_INTERNAL = 1
ERR_NO_SUPPORT = 3
ERR_INVALID_ARG = 8
ERR_OPERATION_FAILED = 9
ERR_RPC = 39
ERR_NO_STORAGE_VOL = 50
ERR_OPERATION_INVALID = 55
ERR_OPERATION_TIMEOUT = 68
ERR_OPERATION_ABORTED = 78

FROM_RPC = 7
FROM_STREAMS = 38


class TransportError(Exception):
    """Base class of the transport layer's errors."""


class ConnectionLost(TransportError):
    """The connection ended; no exchange on it can continue."""


class PeerTimeout(ConnectionLost, TimeoutError):
    """The peer stalled or stayed silent longer than allowed; the connection was closed."""


class StreamClosed(TransportError):
    """The stream (or call) has already ended."""


class StreamAborted(TransportError):
    """The client aborted the stream (raised on the server side)."""


class RemoteFailure(TransportError):
    """The peer answered with an error body (spec.md §4.5)."""

    def __init__(self, error: RemoteError) -> None:
        self.error = error
        self.code = error.code
        self.message = error.message or ""
        super().__init__(f"server error {error.code}: {self.message or '(no message)'}")


def remote_error(code: int, message: str, domain: int = FROM_STREAMS) -> RemoteError:
    """An error body (level 2, "error") with ``message`` clipped to a sane length."""
    return RemoteError(code=code, domain=domain, message=message[:4096], level=2)


class ServerError(TransportError):
    """Raise from a server handler to answer with this code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

"""Exceptions of the protocol layer (spec.md §10).

Every failure the protocol layer reports is a :class:`ProtocolError`:

* :class:`RemoteProtocolError` -- the peer sent something invalid (bad length, bad header,
  message out of order, undecodable body).  The connection is unusable afterwards.
* :class:`LocalProtocolError` -- the local application misused the engine (sent an event
  the state machine does not allow, oversized payload, unknown serial ...).  The engine's
  state is unchanged, so the application may recover.

Each message names the spec section that was violated, e.g. ``"§4.3: ..."``; ``section``
holds that reference, ``offset`` the byte offset in the received stream where known,
``reason`` the message without that offset (for callers that print the offset themselves).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error raised by :mod:`xdrstream.protocol`."""

    def __init__(self, message: str, *, section: str, offset: int | None = None) -> None:
        where = f" (at byte offset {offset})" if offset is not None else ""
        self.reason = f"{section}: {message}"
        super().__init__(f"{self.reason}{where}")
        self.section = section
        self.offset = offset


class LocalProtocolError(ProtocolError):
    """The local application asked for something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a message sequence that violates spec.md."""

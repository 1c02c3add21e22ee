"""What the blocking (:mod:`.blocking`) and asyncio (:mod:`.aio`) drivers decide alike.

Only I/O-free decisions live here; each driver keeps its own waiting, locking and sending.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING

from xdrstream.protocol import Program, RemoteError
from xdrstream.protocol.events import Call
from xdrstream.transport import address as addresses
from xdrstream.transport import tls as tlsmod
from xdrstream.transport.errors import (
    ERR_RPC,
    FROM_RPC,
    ConnectionLost,
    TransportError,
    remote_error,
)

UNKNOWN_PROGRAM = "Cannot find program"
"""How libvirtd's answer to a program or version it does not serve begins (then "N version
V"; virnetserverprogram.c): ours begin alike, and clients recognise it by it."""

UNKNOWN_PROCEDURE = "unknown procedure:"
"""How libvirtd's answer to a procedure its program does not have begins (then "N";
virnetserverprogram.c, VIR_ERR_RPC / VIR_FROM_RPC)."""

if TYPE_CHECKING:  # the blocking driver runs without asyncio
    import asyncio


def connection_error(exc: BaseException) -> TransportError:
    """The error a connection's users see when ``exc`` ended it (the cause is the caller's
    to attach)."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, tlsmod.TLSError):
        return ConnectionLost(str(exc))
    return ConnectionLost(f"connection lost: {type(exc).__name__}: {exc}")


def client_tls(
    address: addresses.Address, tls: ssl.SSLContext | None, server_hostname: str | None
) -> tuple[ssl.SSLContext, str] | None:
    """The TLS context and server name a client uses for ``address``, or None for plain
    (``tls:`` addresses without a context verify against the system CAs)."""
    if tls is None and address.tls:
        tls = tlsmod.client_context()
    if tls is None:
        return None
    return tls, server_hostname or (address.host if address.kind == "tcp" else "localhost")


def unknown_procedure(call: Call, served: Iterable[Program] | None = None) -> RemoteError:
    """The refusal of a call the registry does not know (``call.known`` is False), or of
    one the engine refused from its header (``call.refusal``, spec.md §3.6). A program or
    version not among ``served`` gets libvirtd's answer (virnetserverprogram.c), so a
    client learns which program was refused, not of an "unknown procedure" (§4.4.2)."""
    if call.refusal is not None:
        return call.refusal
    if served is not None and (call.program, call.version) not in {
        (p.number, p.version) for p in served
    }:
        message = f"{UNKNOWN_PROGRAM} {call.program} version {call.version}"
        return remote_error(ERR_RPC, message, domain=FROM_RPC)
    # libvirtd's dispatcher's answer, code and text alike (virnetserverprogram.c)
    return remote_error(ERR_RPC, f"{UNKNOWN_PROCEDURE} {call.procedure}", domain=FROM_RPC)


def advance(views: list[memoryview], sent: int) -> list[memoryview]:
    """Drop ``sent`` bytes from the front of ``views`` (after a partial ``sendmsg``)."""
    while sent:
        first = views[0]
        if sent >= len(first):
            sent -= len(first)
            views.pop(0)
        else:
            views[0] = first[sent:]
            sent = 0
    return views


def resolve(future: asyncio.Future[None]) -> None:
    """Complete ``future`` unless it is done (a loop callback: fd ready, signal)."""
    if not future.done():
        future.set_result(None)

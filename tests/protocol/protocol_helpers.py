"""Shared test helpers: the demo program, a wired client/server pair, raw peer frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdrstream.protocol import NEED_DATA, Connection, Role, schemas
from xdrstream.protocol import _bodies as bodies
from xdrstream.protocol.events import ConnectionClosed, Event, RemoteError
from xdrstream.protocol.framing import Header, MessageStatus, MessageType, pack_frame

RESTORE = schemas.load("restore")
PROG = 0x58445253
VERS = 1
ERR = RemoteError(code=38, domain=18, message="no space left on device")

#: procedure numbers of restore.x by kind
PROCS = {
    "call": 2,
    "v1 upload": 4,
    "v1 download": 5,
    "v2 upload": 6,
    "v2 download": 7,
    "v3 upload": 8,
    "v3 download": 9,
}
DENSE = {"upload": 10, "download": 11}


def restore_args(name: str = "img") -> Any:
    return RESTORE["xs_restore_args"](name=name, size_hint=0, flags=0)


def save_args(name: str = "img") -> Any:
    return RESTORE["xs_save_args"](name=name, flags=0)


def call_args(proc: int) -> Any:
    if proc == 2:
        return RESTORE["xs_echo_args"](data=b"echo")
    if proc in (1, 3):
        return None
    return restore_args() if proc in (4, 6, 8, 10) else save_args()


def call_result(proc: int) -> Any:
    if proc == 2:
        return RESTORE["xs_echo_ret"](data=b"echo")
    if proc == 1:
        return None
    if proc == 3:
        return RESTORE["xs_info_ret"](server="s", images=0, bytes_stored=0)
    cls = "xs_restore_ret" if proc in (4, 6, 8, 10) else "xs_save_ret"
    return RESTORE[cls](length=0)


def pair(**kwargs: Any) -> tuple[Connection, Connection]:
    return (
        Connection(Role.CLIENT, [RESTORE], **kwargs),
        Connection(Role.SERVER, [RESTORE], **kwargs),
    )


def drain(conn: Connection) -> list[Event]:
    """Events until NEED_DATA, or up to and including ConnectionClosed (which repeats)."""
    out: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out


def deliver(dst: Connection, data: bytes) -> list[Event]:
    dst.receive_data(data)
    return drain(dst)


def raw(mtype: int, status: int, serial: int, payload: bytes = b"", proc: int = 2) -> bytes:
    return pack_frame(Header(PROG, VERS, proc, mtype, serial, status), payload)


T = MessageType
S = MessageStatus
Factory = Callable[[], bytes]


def error_body(error: RemoteError = ERR) -> bytes:
    return bodies.pack_error(error)

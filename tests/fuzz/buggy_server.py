"""A tiny restore.x server with planted bugs, for testing the live fuzzer.

    python tests/fuzz/buggy_server.py unix:/path/to.sock [crash,hang,leak]

It answers correctly with the xdrstream engine (calls, streams of every variant) except
for the planted bugs chosen (default ``crash,hang``):

* CRASH: a restore call (procedures 4, 6, 8, 10) whose image-name length prefix exceeds the
  bound of 255 makes the whole process exit with status 3 (it "trusts" the length);
* HANG: a frame whose length word is below 28 makes the connection wait forever instead of
  closing it (spec.md §3.4 says: close);
* LEAK: every connection opens /dev/null and never closes it (descriptors grow).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time

from xdrstream.protocol import NEED_DATA, Connection, ProtocolError, Role, schemas
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    ErrorReply,
    RemoteError,
    Reply,
    StreamAbort,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamEnd,
    StreamFinish,
    StreamHole,
    StreamRead,
)

RESTORE = schemas.load("restore")
RESTORES = {4, 6, 8, 10}
BUGS = set((sys.argv[2] if len(sys.argv) > 2 else "crash,hang").split(","))
LEAKED: list[int] = []


def planted(buffer: bytes) -> None:
    """Look at every complete frame the way a careless parser would."""
    pos = 0
    while len(buffer) - pos >= 4:
        (length,) = struct.unpack_from(">I", buffer, pos)
        if length < 28:
            while "hang" in BUGS:  # HANG: never answers, never closes
                time.sleep(3600)
            return  # (the engine rejects it)
        if len(buffer) - pos < length:
            return
        proc, mtype, status = struct.unpack_from(">iiI", buffer, pos + 12)
        if proc in RESTORES and mtype == 0 and status == 0 and length >= 32:
            (name_length,) = struct.unpack_from(">I", buffer, pos + 28)
            if name_length > 255 and "crash" in BUGS:
                os._exit(3)  # CRASH
        pos += length


def answer(conn: Connection, event: object) -> bytes:
    out = []
    ret = RESTORE["xs_restore_ret"](length=0)
    if isinstance(event, Call):
        proc = event.procedure
        if not event.known:
            return conn.send(ErrorReply(event.serial, RemoteError(code=1, message="unknown")))
        if proc == 1:
            return conn.send(Reply(event.serial, None))
        if proc == 2:
            result = RESTORE["xs_echo_ret"](data=bytes(event.args.data))
            return conn.send(Reply(event.serial, result))
        if proc == 3:
            info = RESTORE["xs_info_ret"](server="buggy", images=0, bytes_stored=0)
            return conn.send(Reply(event.serial, info))
        if proc in (8, 9):  # V3: the reply comes last
            if proc == 9:
                out += [
                    conn.send(StreamData(event.serial, b"img")),
                    conn.send(StreamEnd(event.serial)),
                ]
                out.append(conn.send(Reply(event.serial, RESTORE["xs_save_ret"](length=3))))
            return b"".join(out)
        result = ret if proc in RESTORES else RESTORE["xs_save_ret"](length=3)
        out.append(conn.send(Reply(event.serial, result)))
        if proc in (7, 11):
            out += [conn.send(StreamData(event.serial, b"img")), conn.send(StreamEnd(event.serial))]
        return b"".join(out)
    if isinstance(event, (StreamData, StreamHole)):
        info = conn.stream_info(event.serial)
        if isinstance(event, StreamData):
            conn.stream_consumed(event.serial, len(event.data))
        if info is not None and info.kind.startswith("v1"):
            return conn.send(StreamAck(event.serial))
        return b""
    if isinstance(event, StreamRead):
        return conn.send(StreamEnd(event.serial))
    if isinstance(event, (StreamFinish, StreamAbort)):
        info = conn.stream_info(event.serial)
        if info is not None and info.kind.startswith("v3"):
            return conn.send(Reply(event.serial, ret))
        return conn.send(StreamConfirm(event.serial))
    return b""


def serve_connection(sock: socket.socket) -> None:
    if "leak" in BUGS:
        LEAKED.append(os.open(os.devnull, os.O_RDONLY))  # LEAK
    conn = Connection(Role.SERVER, [RESTORE])
    seen = b""
    with sock:
        try:
            while True:
                data = sock.recv(65536)
                seen += data
                planted(seen)
                conn.receive_data(data)
                while True:
                    event = conn.next_event()
                    if event is NEED_DATA or isinstance(event, ConnectionClosed):
                        break
                    out = answer(conn, event)
                    if out:
                        sock.sendall(out)
                if not data:
                    return
        except (ProtocolError, OSError):
            return


def main() -> None:
    path = sys.argv[1].removeprefix("unix:")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()

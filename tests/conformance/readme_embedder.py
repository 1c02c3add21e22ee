"""A server written only from README's sans-I/O example (issue 16 part 8): h11-style, it
takes ``next_event()``, answers, and repeats. It answers PING, ECHO and GET_INFO, and takes
V2/V3 uploads (counting bytes, no endpoint: a cut stream is confirmed too); downloads and V1
get an ERROR reply. It handles frames strictly in order, as such an embedder does, so the
conformance suite must not fail it for answering a valid frame that came in the same read
as an offending one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from xdrstream.protocol import NEED_DATA, Connection, RemoteProtocolError, Role, schemas
from xdrstream.protocol.events import (
    Call,
    ConnectionClosed,
    ErrorReply,
    KeepalivePing,
    KeepalivePong,
    RemoteError,
    Reply,
    StreamAbort,
    StreamConfirm,
    StreamData,
    StreamFinish,
    StreamHole,
)

restore = schemas.load("restore")
PING, ECHO, INFO = 1, 2, 3
V2_UPLOADS, V3_UPLOAD = (6, 10), 8


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = Connection(Role.SERVER, programs=[restore])
    sizes: dict[int, int] = {}  # open upload serial -> bytes so far
    v3: set[int] = set()
    try:
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, ConnectionClosed):
                break
            answer = None
            if isinstance(event, KeepalivePing):
                answer = KeepalivePong()
            elif isinstance(event, Call):
                serial, proc = event.serial, event.procedure
                if event.refusal is not None:
                    answer = ErrorReply(serial, event.refusal)
                elif not event.known:
                    answer = ErrorReply(serial, RemoteError(code=1, message="unknown procedure"))
                elif proc == PING:
                    answer = Reply(serial)
                elif proc == ECHO:
                    answer = Reply(serial, restore["xs_echo_ret"](data=event.args.data))
                elif proc == INFO:
                    info = restore["xs_info_ret"](server="readme", images=0, bytes_stored=0)
                    answer = Reply(serial, info)
                elif proc in V2_UPLOADS or proc == V3_UPLOAD:
                    if event.args.flags:
                        answer = ErrorReply(serial, RemoteError(code=1, message="bad flags"))
                    else:
                        sizes[serial] = 0
                        if proc == V3_UPLOAD:
                            v3.add(serial)
                        else:
                            answer = Reply(serial, restore["xs_restore_ret"](length=0))
                else:
                    answer = ErrorReply(serial, RemoteError(code=1, message="not supported"))
            elif isinstance(event, (StreamData, StreamHole)) and event.serial in sizes:
                got = len(event.data) if isinstance(event, StreamData) else event.length
                sizes[event.serial] += got
            elif isinstance(event, StreamFinish):
                length = sizes.pop(event.serial, 0)
                if event.serial in v3:
                    v3.discard(event.serial)
                    answer = Reply(event.serial, restore["xs_restore_ret"](length=length))
                else:
                    answer = StreamConfirm(event.serial)
            elif isinstance(event, StreamAbort):
                sizes.pop(event.serial, None)
                if event.serial in v3:
                    v3.discard(event.serial)
                    answer = ErrorReply(event.serial, RemoteError(code=1, message="aborted"))
                else:
                    answer = StreamConfirm(event.serial)
            if answer is not None:
                writer.write(conn.send(answer))
                await writer.drain()
    except (RemoteProtocolError, ConnectionError):
        pass  # a protocol error closes the connection (spec §10.1)
    finally:
        writer.close()


@contextlib.contextmanager
def readme_server(path: Path) -> Iterator[str]:
    """Run the embedder on a Unix socket in a thread; yields its address."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_unix_server(handle, str(path)))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"unix:{path}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

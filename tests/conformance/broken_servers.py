"""Deliberately broken servers: the reference server behind a fault-injecting front.

Each :class:`Fault` is one bug a real implementation could have. :class:`BrokenServer`
listens on a Unix socket, relays every connection to a reference server and applies the
fault to the frames passing through (both directions are cut at frame boundaries), so the
broken server is the reference server with exactly that one bug:

=====================  ===========================================================
fault                  behaviour
=====================  ===========================================================
v3_early_reply         V3 upload: a REPLY/OK right after the call (before any data);
                       the real reply is swallowed
serial_in_use          answers a call whose serial belongs to an open stream (instead of
                       treating it as a protocol error)
ignores_abort          drops the client's aborts (STREAM/ERROR from the client)
accepts_oversized      a length word above the limit is not refused: it waits for the frame
loses_chunk            drops the second data frame of every V2/V3 download
no_draining            closes the connection on a late stream frame after a failure
                       (instead of dropping it, §10.2)
answers_bad_type       answers a header with an unknown type with an ERROR reply instead
                       of closing (what libvirtd does)
echo_wrong_serial      the ECHO reply carries the call's serial + 1
=====================  ===========================================================
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from xdrstream.protocol import bodies
from xdrstream.protocol.events import RemoteError
from xdrstream.protocol.framing import MAX_FRAME, Header, MessageStatus, MessageType, pack_frame
from xdrstream.transport import address as addresses

V3_RESTORE = 8
ECHO = 2
STREAM_PROCS = frozenset(range(4, 12))


class Fault(enum.Enum):
    V3_EARLY_REPLY = "v3_early_reply"
    SERIAL_IN_USE = "serial_in_use"
    IGNORES_ABORT = "ignores_abort"
    ACCEPTS_OVERSIZED = "accepts_oversized"
    LOSES_CHUNK = "loses_chunk"
    NO_DRAINING = "no_draining"
    ANSWERS_BAD_TYPE = "answers_bad_type"
    ECHO_WRONG_SERIAL = "echo_wrong_serial"


def _header(frame: bytes) -> Header:
    return Header(*(int.from_bytes(frame[i : i + 4], "big") for i in range(4, 28, 4)))


def _with_serial(frame: bytes, serial: int) -> bytes:
    return frame[:20] + serial.to_bytes(4, "big") + frame[24:]


@dataclass
class _Link:
    """One relayed connection and what the fault needs to remember about it."""

    client: socket.socket
    server: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    open_streams: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    early: set[int] = field(default_factory=set)
    data_frames: dict[int, int] = field(default_factory=dict)
    held: dict[int, bytes] = field(default_factory=dict)
    closed: bool = False

    def send_client(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.client.sendall(data)

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class BrokenServer:
    def __init__(self, fault: Fault, upstream: addresses.Address, path: Path) -> None:
        self.fault = fault
        self.upstream = upstream
        self.address = addresses.parse_address(f"unix:{path}")
        self._sock = addresses.listen(self.address)
        self._threads: list[threading.Thread] = []
        self._links: list[_Link] = []
        self._stop = False

    def __enter__(self) -> BrokenServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for link in self._links:
            link.close()
            for sock in (link.client, link.server):
                sock.close()
        for thread in self._threads:
            thread.join(10)
            assert not thread.is_alive(), "a broken-server thread did not stop"
        with contextlib.suppress(OSError):
            Path(self.address.path).unlink()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            server = addresses.connect(self.upstream, timeout=10)
            server.settimeout(None)
            link = _Link(client, server)
            self._links.append(link)
            for reader, upstream in ((client, True), (server, False)):
                thread = threading.Thread(
                    target=self._pump, args=(link, reader, upstream), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    # -- relaying --------------------------------------------------------------------------
    def _pump(self, link: _Link, reader: socket.socket, from_client: bool) -> None:
        writer = link.server if from_client else link.client
        buffer = bytearray()
        raw_mode = False  # after bytes that are no frame: pass everything through
        while not link.closed:
            try:
                data = reader.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
            batch = bytearray()  # frames of one read go on in one write, as they came
            while buffer:
                if raw_mode or len(buffer) < 4:
                    if raw_mode:
                        batch += buffer
                        buffer.clear()
                    break
                length = int.from_bytes(buffer[:4], "big")
                if length > MAX_FRAME + 4 and from_client and self.fault is Fault.ACCEPTS_OVERSIZED:
                    buffer.clear()  # "buffers" the announced frame: waits forever
                    break
                if length < 28 or length > MAX_FRAME + 4:
                    raw_mode = True
                    continue
                if len(buffer) < length:
                    break
                frame = bytes(buffer[:length])
                del buffer[:length]
                out = (
                    self._client_frame(link, frame)
                    if from_client
                    else self._server_frame(link, frame)
                )
                batch += out
            if batch:
                self._forward(link, writer, bytes(batch))
        if buffer:
            self._forward(link, writer, bytes(buffer))
        with contextlib.suppress(OSError):
            writer.shutdown(socket.SHUT_WR)

    @staticmethod
    def _forward(link: _Link, writer: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):
            writer.sendall(data)

    def _client_frame(self, link: _Link, frame: bytes) -> bytes:
        header = _header(frame)
        fault = self.fault
        with link.lock:
            if header.type == MessageType.CALL and header.proc in STREAM_PROCS:
                if fault is Fault.SERIAL_IN_USE and header.serial in link.open_streams:
                    pass
                else:
                    link.open_streams.add(header.serial)
            if (
                fault is Fault.SERIAL_IN_USE
                and header.type == MessageType.CALL
                and (header.proc not in STREAM_PROCS and header.serial in link.open_streams)
            ):
                link.send_client(pack_frame(header._replace(type=MessageType.REPLY)))
                return b""
            if (
                fault is Fault.V3_EARLY_REPLY
                and header.type == MessageType.CALL
                and (header.proc == V3_RESTORE)
            ):
                link.early.add(header.serial)
                link.send_client(pack_frame(header._replace(type=MessageType.REPLY), bytes(8)))
            if (
                fault is Fault.IGNORES_ABORT
                and header.type == MessageType.STREAM
                and (header.status == MessageStatus.ERROR)
            ):
                return b""
            if (
                fault is Fault.NO_DRAINING
                and header.type
                in (
                    MessageType.STREAM,
                    MessageType.STREAM_HOLE,
                )
                and header.serial in link.failed
            ):
                link.close()
                return b""
            if fault is Fault.ANSWERS_BAD_TYPE and header.type > MessageType.STREAM_HOLE:
                body = bodies.pack_error(RemoteError(code=39, domain=7, message="bad type"))
                reply = header._replace(type=MessageType.REPLY, status=MessageStatus.ERROR)
                link.send_client(pack_frame(reply, body))
                return b""
        return frame

    def _server_frame(self, link: _Link, frame: bytes) -> bytes:
        header = _header(frame)
        fault = self.fault
        with link.lock:
            ends = header.type == MessageType.STREAM and header.status != MessageStatus.CONTINUE
            if ends or (header.type == MessageType.REPLY and header.status == MessageStatus.ERROR):
                link.open_streams.discard(header.serial)
            if header.status == MessageStatus.ERROR and header.type in (
                MessageType.REPLY,
                MessageType.STREAM,
            ):
                link.failed.add(header.serial)
            if header.type == MessageType.REPLY and header.proc == V3_RESTORE:
                link.open_streams.discard(header.serial)
            if (
                fault is Fault.V3_EARLY_REPLY
                and header.type == MessageType.REPLY
                and (header.serial in link.early)
            ):
                link.early.discard(header.serial)
                return b""
            if (
                fault is Fault.LOSES_CHUNK
                and header.type == MessageType.STREAM
                and (header.status == MessageStatus.CONTINUE and len(frame) > 28)
            ):
                # The first data frame is held back: the second one is lost, or, when the
                # stream ends after a single data frame, that one is, so that a chunk is lost
                # however the server happened to cut the data into frames.
                count = link.data_frames.get(header.serial, 0) + 1
                link.data_frames[header.serial] = count
                if count == 1:
                    link.held[header.serial] = frame
                    return b""
                if count == 2:
                    return link.held.pop(header.serial)
            elif fault is Fault.LOSES_CHUNK:
                link.held.pop(header.serial, None)  # anything else of the stream ends the hold
            if (
                fault is Fault.ECHO_WRONG_SERIAL
                and header.type == MessageType.REPLY
                and (header.proc == ECHO)
            ):
                return _with_serial(frame, (header.serial + 1) & 0xFFFFFFFF)
        return frame

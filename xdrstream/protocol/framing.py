"""Frames on the wire: length word, 24-byte header, payload (spec.md §3, §4).

A frame is::

    +----------------+-------------------------------------------+-----------+
    | length (4)     | prog | vers | proc | type | serial | status | payload   |
    | big-endian u32 | six big-endian 32-bit XDR words (24 bytes) | length-28 |
    +----------------+-------------------------------------------+-----------+

``length`` counts every byte of the frame including itself (§3.1), so the smallest valid
frame is 28 bytes.  A receiver rejects a length below 28 or above ``4 + max_frame`` (the
limit excludes the length word, like libvirt's ``VIR_NET_MESSAGE_MAX``) before buffering
anything of that frame (§3.4).

This module needs no codec: the header is six fixed words and is packed with :mod:`struct`
for speed.  Bodies are decoded by the engine with codec-generated types.

Public names:

* constants: ``LEN_SIZE``, ``HEADER_SIZE``, ``MIN_FRAME``, ``MAX_FRAME``,
  ``LEGACY_STREAM_PAYLOAD``, ``STRING_MAX``; enums :class:`MessageType`,
  :class:`MessageStatus`; ``KEEPALIVE_PROGRAM`` etc.
* :class:`Header` -- frozen named tuple of the six header words;
  :func:`pack_header` / :func:`parse_header`; :func:`pack_frame` (header + payload).
* :class:`Frame` -- a decoded frame: ``header``, ``payload`` (a read-only ``memoryview``
  that stays valid and may be kept), ``offset`` of its length word in the byte stream.
* :class:`FrameDecoder` -- incremental: ``feed(data)`` (or ``get_buffer()`` +
  ``buffer_updated(n)`` to receive in place) then ``next_frame()`` until it returns
  ``None``; any split of the input gives the same frames.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from typing import NamedTuple

from xdrstream.protocol.errors import RemoteProtocolError

#: Size of the length word (libvirt's VIR_NET_MESSAGE_LEN_MAX).
LEN_SIZE = 4
#: Size of the serialised header (VIR_NET_MESSAGE_HEADER_MAX).
HEADER_SIZE = 24
#: Smallest valid value of the length word: length word + header, empty payload.
MIN_FRAME = LEN_SIZE + HEADER_SIZE
#: Largest frame, excluding the length word (VIR_NET_MESSAGE_MAX).
MAX_FRAME = 33554432
#: Largest payload of a frame of MAX_FRAME bytes.
MAX_PAYLOAD = MAX_FRAME - HEADER_SIZE
#: Stream payload per data message that libvirt sends (VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX).
LEGACY_STREAM_PAYLOAD = 262120
#: Longest string in an error body (VIR_NET_MESSAGE_STRING_MAX).
STRING_MAX = 4194304

#: Keepalive program (§5): "keep" in ASCII.
KEEPALIVE_PROGRAM = 0x6B656570
KEEPALIVE_VERSION = 1
KEEPALIVE_PING = 1
KEEPALIVE_PONG = 2


class MessageType(enum.IntEnum):
    """Header ``type`` word (§4.1), libvirt's virNetMessageType numbers."""

    CALL = 0
    REPLY = 1
    MESSAGE = 2
    STREAM = 3
    CALL_WITH_FDS = 4
    REPLY_WITH_FDS = 5
    STREAM_HOLE = 6


class MessageStatus(enum.IntEnum):
    """Header ``status`` word (§4.2), libvirt's virNetMessageStatus numbers."""

    OK = 0
    ERROR = 1
    CONTINUE = 2


_TYPE_BY_VALUE = {int(t): t for t in MessageType}
_STATUS_BY_VALUE = {int(s): s for s in MessageStatus}
_TYPES = frozenset(_TYPE_BY_VALUE)
_STATUSES = frozenset(_STATUS_BY_VALUE)

_HEADER = struct.Struct(">IIiiIi")
_LEN_HEADER = struct.Struct(">IIIiiIi")
_LEN = struct.Struct(">I")
_EMPTY = memoryview(b"")
_SMALL = 4096  # reads below this size are gathered into one buffer


class Header(NamedTuple):
    """The six header words (§3.2).  ``type``/``status`` are plain ints on construction
    and :class:`MessageType`/:class:`MessageStatus` members after :func:`parse_header`."""

    prog: int
    vers: int
    proc: int
    type: int
    serial: int
    status: int


def pack_header(header: Header, payload_len: int = 0) -> bytes:
    """Length word + header for a frame carrying ``payload_len`` payload bytes.

    Raises ``struct.error`` (callers validate first) if a word is out of range.
    """
    prog, vers, proc, mtype, serial, status = header
    return _LEN_HEADER.pack(MIN_FRAME + payload_len, prog, vers, proc, mtype, serial, status)


def pack_frame(header: Header, payload: bytes = b"") -> bytes:
    """A complete frame: length word, header and payload."""
    return pack_header(header, len(payload)) + payload


def parse_header(
    data: bytes | bytearray | memoryview, offset: int = 0, *, stream_offset: int | None = None
) -> Header:
    """Parse the 24 header bytes at ``data[offset:]`` (the bytes after the length word).

    Raises :class:`RemoteProtocolError` (§3.2, §4.1, §4.2) if fewer than 24 bytes remain or
    the type or status word is not one of the values of §4.1/§4.2.  Error offsets are
    reported relative to ``stream_offset`` (default: ``offset``) -- the stream position of
    ``data[offset]``.
    """
    base = offset if stream_offset is None else stream_offset
    if len(data) - offset < HEADER_SIZE:
        raise RemoteProtocolError(
            f"header needs {HEADER_SIZE} bytes, {max(len(data) - offset, 0)} available",
            section="§3.2",
            offset=base,
        )
    prog, vers, proc, mtype, serial, status = _HEADER.unpack_from(data, offset)
    if mtype not in _TYPES:
        raise RemoteProtocolError(
            f"header type {mtype} is not a message type", section="§4.1", offset=base + 12
        )
    if status not in _STATUSES:
        raise RemoteProtocolError(
            f"header status {status} is not a message status", section="§4.2", offset=base + 20
        )
    return Header(prog, vers, proc, _TYPE_BY_VALUE[mtype], serial, _STATUS_BY_VALUE[status])


class Frame(NamedTuple):
    """One received frame.  ``offset``: position of its length word in the byte stream."""

    header: Header
    payload: memoryview
    offset: int


class FrameDecoder:
    """Incremental frame decoder (§3).

    ``feed(data)`` appends bytes; ``next_frame()`` returns the next complete
    :class:`Frame` or ``None`` when more bytes are needed.  The length word is checked as
    soon as its 4 bytes are present, so an oversized frame is refused before it is
    buffered further.

    Fed ``bytes`` objects are kept by reference (other buffer types are copied once, since
    their owner may reuse them).  A payload that lies inside one fed chunk is returned as a
    ``memoryview`` slice of it -- no copy at all; a payload spread over several chunks is
    joined once.  Payload views stay valid: the decoder never writes to a buffer it handed
    out.  After an error the decoder is poisoned: every later call re-raises it.
    """

    __slots__ = (
        "_avail",
        "_big",
        "_big_filled",
        "_big_header",
        "_big_start",
        "_chunks",
        "_error",
        "_head",
        "_max_frame",
        "_scratch",
        "_stream_offset",
        "_tail",
    )

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not HEADER_SIZE <= max_frame <= 0xFFFFFFFF - LEN_SIZE:
            raise ValueError(f"max_frame must be in [{HEADER_SIZE}, 2**32-5], got {max_frame}")
        self._max_frame = max_frame
        self._chunks: deque[memoryview] = deque()
        self._head = 0  # read position inside _chunks[0]
        self._avail = 0  # unread bytes over all chunks and the tail
        # Small reads are gathered here (after the chunks) instead of becoming chunks of
        # their own, so a peer dripping bytes costs no per-read overhead (§8.1).
        self._tail = bytearray()
        self._stream_offset = 0  # stream offset of the next unread byte
        self._error: RemoteProtocolError | None = None
        # receive-into mode (get_buffer): the payload of a large frame is filled in place
        self._big: bytearray | None = None
        self._big_filled = 0
        self._big_header: Header | None = None
        self._big_start = 0
        self._scratch: bytearray | None = None

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame."""
        return self._avail + (MIN_FRAME + self._big_filled if self._big is not None else 0)

    @property
    def offset(self) -> int:
        """Stream offset of the next unread byte."""
        return self._stream_offset

    def get_buffer(self, sizehint: int = 65536) -> memoryview:
        """A writable buffer to receive the next bytes into (``recv_into``, asyncio's
        ``BufferedProtocol``); report how many were written with :meth:`buffer_updated`.

        While a frame with at least 64 KiB still to come is being received, the buffer is
        the rest of that frame's own payload, so the transport's copy is the only one.
        Otherwise it is a fresh buffer of ``sizehint`` bytes that the decoder keeps.
        """
        if self._error is not None:
            raise self._error
        if self._big is None:
            self._start_big()
        if self._big is not None:
            return memoryview(self._big)[self._big_filled :]
        self._scratch = bytearray(max(sizehint, 1))
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` bytes were written at the start of the last :meth:`get_buffer`."""
        if self._error is not None:
            raise self._error
        if self._big is not None:
            if not 0 <= nbytes <= len(self._big) - self._big_filled:
                raise ValueError(f"buffer_updated({nbytes}): beyond the buffer")
            self._big_filled += nbytes
            self._stream_offset += nbytes
            return
        scratch = self._scratch
        if scratch is None or not 0 <= nbytes <= len(scratch):
            raise ValueError(f"buffer_updated({nbytes}) without a matching get_buffer()")
        self._scratch = None
        if nbytes >= _SMALL:
            if self._tail:
                self._flush_tail()
            self._chunks.append(memoryview(scratch)[:nbytes].toreadonly())
            self._avail += nbytes
        elif nbytes:
            self._tail += memoryview(scratch)[:nbytes]
            self._avail += nbytes

    _BIG = 65536

    def _start_big(self) -> None:
        """Enter receive-into mode if the next frame's head is here and >= 64 KiB are due."""
        if self._avail < MIN_FRAME:
            return
        length = self._peek_length()
        if length - LEN_SIZE > self._max_frame or length - self._avail < self._BIG:
            return  # invalid lengths are reported by next_frame
        if self._tail:
            self._flush_tail()
        start = self._stream_offset
        head = self._take(MIN_FRAME)
        try:
            header = parse_header(head, LEN_SIZE, stream_offset=start + LEN_SIZE)
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None
        big = bytearray(length - MIN_FRAME)
        have = self._avail  # all buffered bytes belong to this frame's payload
        if have:
            big[:have] = self._take(have)
        self._big, self._big_filled, self._big_header, self._big_start = big, have, header, start

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        if not data:
            return
        if self._big is not None:  # fill the frame being received in place first
            room = len(self._big) - self._big_filled
            part = memoryview(data)[:room]
            self._big[self._big_filled : self._big_filled + len(part)] = part
            self._big_filled += len(part)
            self._stream_offset += len(part)
            if len(part) == len(data):
                return
            data = memoryview(data)[room:]
        if len(data) < _SMALL:
            self._tail += data
            self._avail += len(data)
            return
        if self._tail:
            self._flush_tail()
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        self._chunks.append(view.cast("B") if view.format != "B" else view)
        self._avail += len(view)

    def _flush_tail(self) -> None:
        self._chunks.append(memoryview(bytes(self._tail)))
        self._tail.clear()

    def _take(self, n: int) -> memoryview:
        """Remove and return the next ``n`` (<= _avail) bytes; zero-copy within a chunk."""
        chunks = self._chunks
        first = chunks[0]
        head = self._head
        if len(first) - head >= n:
            out = first[head : head + n]
            head += n
            if head == len(first):
                chunks.popleft()
                head = 0
            self._head = head
        else:
            parts = []
            need = n
            while need:
                chunk = chunks[0]
                part = chunk[head : head + need]
                parts.append(part)
                need -= len(part)
                head += len(part)
                if head == len(chunk):
                    chunks.popleft()
                    head = 0
            self._head = head
            out = memoryview(b"".join(parts))  # the one copy
        self._avail -= n
        self._stream_offset += n
        return out

    def _peek_length(self) -> int:
        """The next length word (``_avail >= 4``), from the chunks and then the tail."""
        if self._chunks:
            first = self._chunks[0]
            if len(first) - self._head >= LEN_SIZE:
                return int(_LEN.unpack_from(first, self._head)[0])
        word = bytearray()
        for i, chunk in enumerate(self._chunks):
            start = self._head if i == 0 else 0
            word += chunk[start : start + LEN_SIZE - len(word)]
            if len(word) == LEN_SIZE:
                break
        if len(word) < LEN_SIZE:
            word += self._tail[: LEN_SIZE - len(word)]
        return int(_LEN.unpack(word)[0])

    def _fail(self, error: RemoteProtocolError) -> RemoteProtocolError:
        self._error = error
        return error

    def next_frame(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        big = self._big
        if big is not None:
            if self._big_filled < len(big):
                return None
            assert self._big_header is not None
            frame = Frame(self._big_header, memoryview(big).toreadonly(), self._big_start)
            self._big = None
            self._big_header = None
            self._big_filled = 0
            return frame
        if self._avail < LEN_SIZE:
            return None
        length = self._peek_length()
        start = self._stream_offset
        if length < MIN_FRAME:
            raise self._fail(
                RemoteProtocolError(
                    f"frame length {length} is below the minimum {MIN_FRAME}",
                    section="§3.4",
                    offset=start,
                )
            )
        if length - LEN_SIZE > self._max_frame:
            raise self._fail(
                RemoteProtocolError(
                    f"frame length {length} exceeds the limit of {self._max_frame} bytes "
                    "plus the length word",
                    section="§3.4",
                    offset=start,
                )
            )
        if self._avail < length:
            return None
        if self._tail:
            self._flush_tail()
        # Header and payload are taken separately so that a payload lying inside one fed
        # chunk (e.g. written with writev as header + payload) is never copied.
        head = self._take(MIN_FRAME)
        try:
            header = parse_header(head, LEN_SIZE, stream_offset=start + LEN_SIZE)
        except RemoteProtocolError as exc:
            raise self._fail(exc) from None
        payload = self._take(length - MIN_FRAME) if length > MIN_FRAME else _EMPTY
        return Frame(header, payload, start)

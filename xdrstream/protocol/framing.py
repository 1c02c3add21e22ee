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
  ``buffer_updated(n)`` to receive in place) then ``next_frame()`` (or the cheaper
  ``next_raw()``) until it returns ``None``; any split of the input gives the same frames.
"""

from __future__ import annotations

import enum
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from xdrstream.protocol.errors import LocalProtocolError, RemoteProtocolError

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
#: Default per-stream limit of delivered, unconsumed bytes (§8.2): two frames of libvirt's
#: stream payload, so a stream at its limit holds two frames ahead of the one its
#: application is writing out (more queue buys no throughput in a single-threaded
#: driver: the kernel's socket and pipe buffers decouple the processes), and the
#: decoder's pool (:func:`pool_size_for`) serves it without allocating (§8.1).
STREAM_BUFFER = 2 * LEGACY_STREAM_PAYLOAD
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

IN_PLACE_MIN = 65536
"""Smallest frame (length word included) that is received in place into a buffer of its
own (an arena, or a buffer that grows with the payload): below it payloads are views of
the reads."""
POOL_MAX = 16
"""Most in-place payload buffers one decoder keeps for reuse (§8.4): 16 arenas, 4.1 MiB."""
POOL_DEFAULT = 4  # a decoder's pool without per-stream accounting


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
    joined once.  Payload views stay valid: the decoder never writes to a buffer while a
    view of it is alive (buffers of frames received in place are reused only once every
    view of them is gone, see :meth:`get_buffer`).  After an error the decoder is
    poisoned: every later call re-raises it.  With ``max_buffered``, ``feed`` and
    ``get_buffer`` refuse to hold more unread bytes (:class:`LocalProtocolError`, §8.1,
    nothing changed): the engine's ``Limits.max_receive_buffer``.  ``pool_size``: payload
    buffers of in-place frames kept for reuse (§8.1; the engine's :func:`pool_size_for`
    sizes it to the frames one stream may hold before reading pauses, §8.2).
    """

    __slots__ = (
        "_avail",
        "_big",
        "_big_base",
        "_big_filled",
        "_big_kept",
        "_big_size",
        "_big_start",
        "_big_words",
        "_chunks",
        "_error",
        "_head",
        "_max_buffered",
        "_max_frame",
        "_need",
        "_next_head",
        "_pool",
        "_pool_size",
        "_refused",
        "_scratch",
        "_scratch_kept",
        "_scratch_len",
        "_skip",
        "_stream_offset",
        "_tail",
        "allocations",
        "call_bound",
        "discarded",
    )

    def __init__(
        self,
        max_frame: int = MAX_FRAME,
        max_buffered: int | None = None,
        pool_size: int = POOL_DEFAULT,
    ) -> None:
        if not HEADER_SIZE <= max_frame <= 0xFFFFFFFF - LEN_SIZE:
            raise ValueError(f"max_frame must be in [{HEADER_SIZE}, 2**32-5], got {max_frame}")
        if not 0 <= pool_size <= POOL_MAX:
            raise ValueError(f"pool_size must be in [0, {POOL_MAX}], got {pool_size}")
        self._pool_size = pool_size
        self._max_frame = max_frame
        # feed refuses (LocalProtocolError, nothing changed) to hold more than this (§8.1)
        self._max_buffered = sys.maxsize if max_buffered is None else max_buffered
        # next_raw returns None at once while fewer than _need bytes are buffered: the
        # length of the next frame once its header is checked (that header is then kept
        # in _next_head), else LEN_SIZE.  -1 while anything needs the general path (an
        # error, a refused call, a frame received in place), so one compare answers the
        # common "not yet" and feed's fast path knows none of those is under way.
        self._need = LEN_SIZE
        self._next_head: tuple[int, int, int, int, int, int, int] | None = None
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
        self._big_base = 0  # where that payload starts in the buffer
        self._big_size = 0  # payload bytes of that frame (the buffer may be larger)
        self._big_filled = 0
        self._big_words: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)
        self._big_start = 0
        self._scratch: bytearray | None = None
        self._scratch_len = 0
        # whether _scratch / _big is a buffer of the pool already (else pooled when done)
        self._scratch_kept = self._big_kept = False
        # payload buffers of earlier in-place frames, reused once no view of them is alive
        self._pool: list[bytearray] = []
        #: (prog, vers, proc) -> largest valid argument payload of a CALL/OK (None: no
        #: bound beyond max_frame); a call announcing more is refused from its header
        #: (§3.6): its payload is discarded as it arrives, never buffered
        self.call_bound: Callable[[int, int, int], int | None] | None = None
        #: payload bytes discarded of the frame next_raw returned last (0: none)
        self.discarded = 0
        #: receive buffers of in-place frames allocated so far (arenas, a frame's own
        #: buffer and its growth steps): the pool's misses (§8.1)
        self.allocations = 0
        self._refused: RawFrame | None = None  # the refused call, due once _skip is 0
        self._skip = 0  # payload bytes of the refused call still to discard

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame (a refused call's header counts,
        its discarded payload does not)."""
        held = MIN_FRAME if self._refused is not None else 0
        return self._avail + held + (MIN_FRAME + self._big_filled if self._big is not None else 0)

    @property
    def offset(self) -> int:
        """Stream offset of the next unread byte."""
        return self._stream_offset

    @property
    def frame_remaining(self) -> int:
        """Payload bytes still due for the frame being received in place (0 if none).
        While it is non-zero, :meth:`get_buffer` returns the room of that frame's buffer
        (at most this many bytes: the buffer grows in steps as the payload arrives), which
        may be filled by several reads and reported with one :meth:`buffer_updated`."""
        return self._big_size - self._big_filled if self._big is not None else 0

    def release(self) -> None:
        """Give back every buffer (the connection ended): unread bytes, a partial frame,
        the pool.  Views of frames already returned stay valid.  The decoder is left
        poisoned as if at an error, so nothing is received after it."""
        self._chunks.clear()
        self._head = self._avail = 0
        self._tail = bytearray()
        self._big = self._scratch = None
        self._big_base = self._big_size = self._big_filled = 0
        self._pool = []
        self._refused, self._skip = None, 0
        self._need, self._next_head = -1, None
        if self._error is None:
            self._error = RemoteProtocolError(
                "the frame decoder was released (connection ended)",
                section="§3.5",
                offset=self._stream_offset,
            )

    def get_buffer(self, sizehint: int = 65536) -> memoryview:
        """A writable buffer to receive the next bytes into (``recv_into``, asyncio's
        ``BufferedProtocol``); report how many were written with :meth:`buffer_updated`.

        While a frame with at least 64 KiB still to come is being received, the buffer is
        (the next step of) that frame's own payload, so the transport's copy is the only
        one.  That payload buffer grows with the bytes received, from 16 KiB by doubling,
        never to the announced length up front (§8.1), or comes from a small pool: the
        buffer of an earlier frame of the same size, reused once no view of it is alive
        any more (so a delivered payload stays valid for as long as the application keeps
        it), which spares zeroing, page-faulting and growing a fresh one per frame.
        Otherwise the buffer is a fresh one of ``sizehint`` bytes.
        """
        if self._error is not None:
            raise self._error
        big = self._big
        if big is None and self._avail >= MIN_FRAME:
            self._start_big()
            big = self._big
        if big is not None and self._big_filled < self._big_size:
            if self._avail + MIN_FRAME + self._big_filled >= self._max_buffered:
                self._check_room(self._avail + MIN_FRAME + self._big_filled)
            self._scratch = None
            base = self._big_base
            if len(big) - base == self._big_filled:  # this step is full: grow (§8.1)
                big, base = self._grow(self._big_filled + 1), 0
            end = base + min(self._big_size, len(big) - base)
            return memoryview(big)[base + self._big_filled : end]
        # (a complete in-place frame not yet taken by next_frame: what follows it is
        # buffered as usual, never an empty buffer that a recv_into would mistake for EOF)
        held = self._avail if self._need >= 0 else self.buffered
        room = self._max_buffered - held
        size = sizehint if 0 < sizehint <= room else min(max(sizehint, 1), self._check_room(held))
        if not held and self._pool and big is None:
            # At a frame boundary of a connection that has received large frames: read
            # into a pooled buffer large enough for a whole default-sized stream frame,
            # so that if this read starts a large frame its payload goes on filling the
            # same buffer (buffer_updated): no zeroing, no copy of the first read.  A
            # connection that never did (an idle one, a flood of headers) holds no arena.
            want = max(size, _ARENA)
            scratch = self._payload_buffer(want)  # from the pool, or a new one offered to it
            self._scratch_kept = True  # so a frame received into it is not offered again
        else:
            scratch = bytearray(size)
            self._scratch_kept = False
        self._scratch, self._scratch_len = scratch, size
        return memoryview(scratch)[:size]

    def _check_room(self, held: int) -> int:
        """The bytes that may still be received with ``held`` buffered (at least 1)."""
        room = self._max_buffered - held
        if room <= 0:
            raise LocalProtocolError(
                f"receive buffer holds {held} bytes: drain next_event() before reading more",
                section="§8.1",
            )
        return room

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` bytes were written at the start of the last :meth:`get_buffer`."""
        if self._error is not None:
            raise self._error
        scratch = self._scratch
        if scratch is None:  # into the payload of the frame received in place
            big = self._big
            if big is None:
                raise ValueError(f"buffer_updated({nbytes}) without a matching get_buffer()")
            room = min(self._big_size, len(big) - self._big_base) - self._big_filled
            if not 0 <= nbytes <= room:
                raise ValueError(f"buffer_updated({nbytes}): beyond the buffer")
            self._big_filled += nbytes
            self._stream_offset += nbytes
            return
        if not 0 <= nbytes <= self._scratch_len:
            raise ValueError(f"buffer_updated({nbytes}) without a matching get_buffer()")
        self._scratch = None
        if self._skip:  # discarding a refused call (§3.6)
            self.feed(memoryview(scratch)[:nbytes])
            return
        if self._need >= 0 and not self._avail and nbytes >= MIN_FRAME:
            # (at a frame boundary, no frame in place or refused, no error)
            words = _LEN_HEADER.unpack_from(scratch)
            length, mtype, status = words[0], words[4], words[6]
            if (
                self._BIG <= length <= self._max_frame + LEN_SIZE
                and (length <= len(scratch) or 2 * nbytes >= len(scratch))
                and nbytes < length
                and mtype in _TYPES
                and status in _STATUSES
                and (mtype != _CALL or not self._refuses(*words))
            ):  # a large frame starts here: receive the rest of it in place, after this
                # read (however little is missing: nothing has to be copied for that; a
                # frame longer than this buffer, half filled at least so that memory still
                # follows the bytes received, grows it by doubling: one copy in all)
                self._big, self._big_base = scratch, MIN_FRAME
                self._big_kept = self._scratch_kept
                self._big_size, self._big_filled = length - MIN_FRAME, nbytes - MIN_FRAME
                self._big_words = words[1:]
                self._big_start = self._stream_offset
                self._stream_offset += nbytes
                self._need = -1
                return
        if nbytes >= _SMALL:
            if self._tail:
                self._flush_tail()
            self._chunks.append(memoryview(scratch)[:nbytes].toreadonly())
            self._avail += nbytes
        elif nbytes:
            self._tail += memoryview(scratch)[:nbytes]
            self._avail += nbytes

    _BIG = IN_PLACE_MIN

    def _free_pooled(self, size: int) -> bytearray | None:
        """A pooled buffer of exactly ``size`` bytes that no view refers to any more."""
        for buffer in self._pool:
            # only the pool refers to it: no view of it is alive (a memoryview, and every
            # slice of it, holds a reference to the object it exports from)
            if len(buffer) == size and _getrefcount(buffer) <= _FREE_REFS:
                return buffer
        return None

    def _keep(self, buffer: bytearray) -> None:
        """Pool ``buffer`` (a frame's payload buffer, just filled) for later frames."""
        pool = self._pool
        if len(buffer) > _POOL_BUFFER_MAX:
            return
        for held in pool:
            if held is buffer:
                return
        if len(pool) < self._pool_size:
            pool.append(buffer)
            return
        for index in range(len(pool)):
            held = pool[index]
            if _getrefcount(held) <= _FREE_REFS:  # replace an idle one
                pool[index] = buffer
                return

    def _payload_buffer(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes for an in-place frame or an arena read, from the
        pool when one of that size is no longer referenced by any view."""
        buffer = self._free_pooled(size)
        if buffer is None:
            buffer = bytearray(size)
            self.allocations += 1
            self._keep(buffer)
        return buffer

    def _grow(self, need: int) -> bytearray:
        """Make room for ``need`` payload bytes of the frame received in place: memory
        follows the bytes received, never the length announced (§8.1).  The capacity at
        least doubles, so the copies add up to less than one payload."""
        big = self._big
        assert big is not None
        base, filled, size = self._big_base, self._big_filled, self._big_size
        capacity = min(size, max(need, 2 * (len(big) - base), _STEP))
        grown = self._free_pooled(capacity) if base == 0 else None
        if grown is None:
            grown = bytearray(capacity)
            self.allocations += 1
        grown[:filled] = memoryview(big)[base : base + filled]
        self._big, self._big_base = grown, 0
        self._big_kept = False
        return grown

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
        self._next_head = None
        words = _HEADER.unpack_from(self._take(MIN_FRAME), LEN_SIZE)
        self._check_words(words[3], words[5], start)
        size = length - MIN_FRAME
        if self._refuses(length, *words):
            self._refuse(words, size, start)
            return
        have = self._avail  # all buffered bytes belong to this frame's payload
        # a pooled buffer of the frame's size costs nothing; otherwise start with a step
        # and grow as the payload arrives (a header alone never costs the announced size)
        big = self._free_pooled(size)
        if big is None:
            big = bytearray(min(size, max(have, _STEP)))
            self.allocations += 1
        if have:
            big[:have] = self._take(have)
        self._big, self._big_base, self._big_size, self._big_filled = big, 0, size, have
        self._big_kept = False
        self._big_words, self._big_start = words, start
        self._need = -1

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes.  Raises :class:`LocalProtocolError` (nothing changed)
        if that would buffer more than ``max_buffered`` bytes (§8.1)."""
        if type(data) is bytes and self._need >= 0 and not self._tail:
            # the common large read at a frame boundary or inside a frame: kept by reference
            size = len(data)
            if size >= _SMALL and self._avail + size <= self._max_buffered:
                self._chunks.append(memoryview(data))
                self._avail += size
                return
        self._feed(data)

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        if not data:
            return
        nbytes = data.nbytes if isinstance(data, memoryview) else len(data)
        held = self._avail if self._need >= 0 else self.buffered
        if held + nbytes > self._max_buffered:
            raise LocalProtocolError(
                f"receive buffer would exceed {self._max_buffered} bytes: "
                "drain next_event() before reading more",
                section="§8.1",
            )
        if self._skip:  # the payload of a refused call: counted, never kept (§3.6)
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            self._stream_offset += dropped
            if dropped == len(data):
                return
            data = memoryview(data)[dropped:]
        big = self._big
        if big is not None:  # fill the frame being received in place first
            room = self._big_size - self._big_filled
            part = memoryview(data)[:room]
            if self._big_base + self._big_filled + len(part) > len(big):
                big = self._grow(self._big_filled + len(part))
            at = self._big_base + self._big_filled
            big[at : at + len(part)] = part
            self._big_filled += len(part)
            self._stream_offset += len(part)
            if len(part) == len(data):
                return
            data = memoryview(data)[room:]
        size = len(data)
        if size < _SMALL:
            self._tail += data
            self._avail += size
            return
        if self._tail:
            self._flush_tail()
        if type(data) is bytes:
            self._chunks.append(memoryview(data))
        else:
            view = memoryview(data if isinstance(data, bytes) else bytes(data))
            self._chunks.append(view.cast("B") if view.format != "B" else view)
            size = len(view)
        self._avail += size

    def _flush_tail(self) -> None:
        self._chunks.append(memoryview(bytes(self._tail)))
        self._tail.clear()

    def _take(self, n: int) -> memoryview:
        """Remove and return the next ``n`` (<= _avail) bytes; zero-copy within a chunk."""
        chunks = self._chunks
        first = chunks[0]
        head = self._head
        end = head + n
        size = len(first)
        self._avail -= n
        self._stream_offset += n
        if end < size:
            self._head = end
            return first[head:end]
        chunks.popleft()
        if end == size:
            self._head = 0
            return first[head:] if head else first
        # spread over several chunks (a payload cut by the reads): joined, the one copy
        need = end - size
        second = chunks[0]
        if len(second) > need:  # the common case: the rest lies in the next chunk
            self._head = need
            return memoryview(b"".join((first[head:], second[:need])))
        parts = [first[head:]]
        while True:
            chunk = chunks[0]
            size = len(chunk)
            if size > need:
                parts.append(chunk[:need])
                self._head = need
                break
            parts.append(chunk)
            chunks.popleft()
            need -= size
            if not need:
                self._head = 0
                break
        return memoryview(b"".join(parts))

    def _refuses(
        self, length: int, prog: int, vers: int, proc: int, mtype: int, serial: int, status: int
    ) -> bool:
        """Whether the frame with this length word and header is a call announcing more
        than the largest valid argument of its procedure (§3.6)."""
        bound = self.call_bound
        if bound is None or mtype != _CALL or status != _OK or length == MIN_FRAME:
            return False
        most = bound(prog, vers, proc)
        return most is not None and length - MIN_FRAME > most

    def _refuse(self, words: tuple[int, int, int, int, int, int], size: int, start: int) -> None:
        """Discard the payload of a refused call (its header is taken): what is buffered
        now, and the rest as it arrives (feed)."""
        if self._tail:
            self._flush_tail()
        have = min(self._avail, size)
        chunks = self._chunks
        need = have
        while need:
            room = len(chunks[0]) - self._head
            if room > need:
                self._head += need
                break
            need -= room
            chunks.popleft()
            self._head = 0
        self._avail -= have
        self._stream_offset += have
        self._skip = size - have
        self._refused = (*words, _EMPTY, start)
        self._need, self._next_head = -1, None
        self.discarded = size

    def _peek(self, n: int) -> bytes:
        """The next ``n`` (<= _avail) bytes, without taking them."""
        out = bytearray()
        for i, chunk in enumerate(self._chunks):
            start = self._head if i == 0 else 0
            out += chunk[start : start + n - len(out)]
            if len(out) == n:
                return bytes(out)
        return bytes(out + self._tail[: n - len(out)])

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
        self._need = -1
        return error

    def _check_length(self, length: int, start: int) -> None:
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

    def _check_words(self, mtype: int, status: int, start: int) -> None:
        """The type and status words of the frame whose length word is at ``start``."""
        if mtype not in _TYPES:
            raise self._fail(
                RemoteProtocolError(
                    f"header type {mtype} is not a message type",
                    section="§4.1",
                    offset=start + LEN_SIZE + 12,
                )
            )
        if status not in _STATUSES:
            raise self._fail(
                RemoteProtocolError(
                    f"header status {status} is not a message status",
                    section="§4.2",
                    offset=start + LEN_SIZE + 20,
                )
            )

    def next_raw(self) -> RawFrame | None:
        """As :meth:`next_frame`, without building :class:`Header`/:class:`Frame` objects
        (the engine's fast path): ``(prog, vers, proc, type, serial, status, payload,
        offset)`` with ``type`` and ``status`` as plain (valid) ints."""
        avail = self._avail
        if avail < self._need:  # the next frame is not all here (see __init__)
            return None
        if self._need < 0:
            return self._next_special()
        start = self._stream_offset
        chunks = self._chunks
        head = self._head
        words = self._next_head
        if words is not None:  # the header checked when the frame was still incomplete
            self._next_head = None
            length, prog, vers, proc, mtype, serial, status = words
        elif chunks and len(chunks[0]) - head >= MIN_FRAME:
            # length word and header lie in one chunk: no copy at all
            words = _LEN_HEADER.unpack_from(chunks[0], head)
            length, prog, vers, proc, mtype, serial, status = words
            if length < MIN_FRAME or length - LEN_SIZE > self._max_frame:
                self._check_length(length, start)
            if avail < length:
                if mtype == _CALL and self.call_bound is not None and self._refuses(*words):
                    return self._refuse_buffered(length, start)
                self._need, self._next_head = length, words
                return None
        else:
            if avail < LEN_SIZE:
                self._need = LEN_SIZE
                return None
            length = self._peek_length()
            self._check_length(length, start)
            if avail < length:
                if avail < MIN_FRAME:  # the header is still to come
                    self._need = MIN_FRAME
                    return None
                if self.call_bound is not None:
                    head_words = _HEADER.unpack_from(self._peek(MIN_FRAME), LEN_SIZE)
                    if self._refuses(length, *head_words):
                        return self._refuse_buffered(length, start)
                self._need = length
                return None
            if self._tail:
                self._flush_tail()
            prog, vers, proc, mtype, serial, status = _HEADER.unpack_from(
                self._take(MIN_FRAME), LEN_SIZE
            )
            head = -1  # the header is taken
        self._need = LEN_SIZE
        self.discarded = 0
        if mtype not in _TYPES or status not in _STATUSES:
            self._check_words(mtype, status, start)
        if head >= 0:  # take the header, which lies in the first chunk
            if self._tail:
                self._flush_tail()
            head += MIN_FRAME
            if head == len(chunks[0]):
                chunks.popleft()
                head = 0
            self._head = head
            self._avail = avail - MIN_FRAME
            self._stream_offset = start + MIN_FRAME
        # Header and payload are taken separately so that a payload lying inside one fed
        # chunk (e.g. written with writev as header + payload) is never copied.
        payload = self._take(length - MIN_FRAME) if length > MIN_FRAME else _EMPTY
        return (prog, vers, proc, mtype, serial, status, payload, start)

    def _next_special(self) -> RawFrame | None:
        """next_raw while an error, a refused call or a frame received in place is on."""
        if self._error is not None:
            raise self._error
        refused = self._refused
        if refused is not None:
            if self._skip:
                return None
            self._refused = None  # discarded stays set for the engine to see
            self._need = LEN_SIZE
            return refused
        self.discarded = 0
        big = self._big
        assert big is not None
        if self._big_filled < self._big_size:
            return None
        self._big = None
        self._need = LEN_SIZE
        if not self._big_kept:
            self._keep(big)
        view = memoryview(big)
        if len(big) != self._big_size:  # the payload of a frame read into a pooled buffer
            view = view[self._big_base : self._big_base + self._big_size]
        self._big_filled = self._big_size = self._big_base = 0
        return (*self._big_words, view.toreadonly(), self._big_start)

    def _refuse_buffered(self, length: int, start: int) -> RawFrame | None:
        """Refuse the call whose header is next (§3.6); its frame once all is discarded."""
        self._next_head = None
        if self._tail:
            self._flush_tail()
        words = _HEADER.unpack_from(self._take(MIN_FRAME), LEN_SIZE)
        self._check_words(words[3], words[5], start)
        self._refuse(words, length - MIN_FRAME, start)
        return self.next_raw()

    def next_frame(self) -> Frame | None:
        raw = self.next_raw()
        if raw is None:
            return None
        prog, vers, proc, mtype, serial, status, payload, start = raw
        header = Header(prog, vers, proc, _TYPE_BY_VALUE[mtype], serial, _STATUS_BY_VALUE[status])
        return Frame(header, payload, start)


RawFrame = tuple[int, int, int, int, int, int, memoryview, int]
"""What :meth:`FrameDecoder.next_raw` returns."""


def pool_size_for(stream_buffer: int | None) -> int:
    """The decoder pool that serves one stream at its limit without allocating (§8.1,
    §8.2): reading continues while the stream holds fewer than ``stream_buffer``
    unconsumed bytes, so it may hold ``ceil(stream_buffer / (IN_PLACE_MIN - MIN_FRAME))``
    in-place frames (each in a buffer of its own), plus the one the application is writing
    out and the one being received; at most :data:`POOL_MAX` (None: no accounting,
    :data:`POOL_DEFAULT`).
    A pooled buffer is only made when one is missing, so the pool never grows past what
    the connection held at once."""
    if stream_buffer is None:
        return POOL_DEFAULT
    return min(POOL_MAX, -(-stream_buffer // (IN_PLACE_MIN - MIN_FRAME)) + 2)


_ARENA = 264 * 1024  # a read at a frame boundary: room for a frame of 256 KiB of data
_POOL_BUFFER_MAX = 1 << 20  # larger payloads get a buffer of their own
_STEP = 16 * 1024  # first buffer of a large frame whose payload has not arrived yet


_CALL = int(MessageType.CALL)
_OK = int(MessageStatus.OK)
_getrefcount = sys.getrefcount


def _free_refs() -> int:
    """What ``_getrefcount(buffer)`` gives for a buffer only its pool refers to, asked
    from a loop over the pool as _free_pooled and _keep ask (interpreters differ in the
    temporary references they count)."""
    for buffer in [bytearray(1)]:
        return _getrefcount(buffer)
    raise AssertionError  # (the list has one item)


_FREE_REFS = _free_refs()

r"""A test client's end of one connection to the implementation under test.

:class:`Peer` owns a socket (Unix, TCP, optionally TLS) and reads the target's frames with
its own :class:`~xdrstream.protocol.framing.FrameDecoder`. Cases use it two ways:

* through a client-role :class:`~xdrstream.protocol.Connection` (``send``/``event``): the
  engine encodes our events and *judges* every frame the target sends (a frame that the
  state tables of spec.md §9 do not allow raises :class:`Violation`);
* raw (``send_raw``/``frame``/``expect_close``) for frames the engine refuses to produce.

Every wait is bounded by the peer's timeout; running out of time raises :class:`Violation`
with what was awaited.

Inside ``with recording() as frames:`` every peer opened records what it exchanged as
:class:`~xdrstream.conformance.trace.TraceFrame` objects (direction, seconds since the
recording began, bytes; a note names the connection when a case opens several), for the
HTML report.  At most :data:`RECORD_FRAMES` frames are kept per recording, and of a frame
longer than :data:`RECORD_BYTES` only its first bytes (the note gives its length).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdrstream.conformance.trace import C2S, S2C, TraceFrame
from xdrstream.protocol import (
    NEED_DATA,
    Connection,
    Limits,
    Program,
    RemoteProtocolError,
    Role,
)
from xdrstream.protocol.events import (
    ConnectionClosed,
    Event,
    KeepalivePing,
    KeepalivePong,
)
from xdrstream.protocol.framing import (
    KEEPALIVE_PROGRAM,
    MAX_FRAME,
    Frame,
    FrameDecoder,
    Header,
    MessageType,
    pack_header,
)
from xdrstream.transport import address as addresses
from xdrstream.transport import tls as tlsmod

__all__ = ["Closed", "Peer", "Recording", "Silence", "Violation", "frame_bytes", "recording"]

#: Bounds of what a recording keeps (a case may move megabytes of stream data).
RECORD_FRAMES = 400
RECORD_BYTES = 1 << 16


@dataclass
class Recording:
    """The frames of every peer opened while it is active (see the module docstring)."""

    frames: list[TraceFrame] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    peers: int = 0
    #: frames not kept once RECORD_FRAMES were
    dropped: int = 0

    def add(self, peer: int, direction: str, data: bytes, close: bool = False) -> None:
        if len(self.frames) >= RECORD_FRAMES:
            self.dropped += 1
            return
        notes = [f"connection {peer}"] if self.peers > 1 else []
        partial = False
        if not close and len(data) >= 4 and int.from_bytes(data[:4], "big") != len(data):
            partial = True  # a cut-off or oversized frame a case sent on purpose
        if len(data) > RECORD_BYTES:
            notes.append(f"{len(data)} bytes, the first {RECORD_BYTES} kept")
            data = data[:RECORD_BYTES]
        self.frames.append(
            TraceFrame(
                direction,
                data,
                time.monotonic() - self.started,
                partial=partial,
                close=close,
                note="; ".join(notes) or None,
            )
        )


_RECORDINGS: list[Recording] = []


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Record the frames of the peers opened inside the block."""
    active = Recording()
    _RECORDINGS.append(active)
    try:
        yield active
    finally:
        _RECORDINGS.remove(active)


def _split(data: bytes) -> list[bytes]:
    """``data`` (what one send carried) cut at its frames' length words; a rest that is not
    a whole frame stays one piece."""
    pieces, at = [], 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if size < 4 or at + size > len(data):
            break
        pieces.append(data[at : at + size])
        at += size
    if at < len(data):
        pieces.append(data[at:])
    return pieces


def unreachable(address: addresses.Address | str, exc: Exception) -> str:
    """One line saying why ``address`` cannot be reached, naming it once: a ConnectError's
    message already ends with the address, a TLS failure's does not."""
    if isinstance(exc, addresses.ConnectError) or str(address) in str(exc):
        return f"cannot connect: {exc}"
    return f"cannot connect to {address}: {exc}"


class Violation(AssertionError):
    """The target did not behave as the case requires (the message says how, citing §)."""


class Silence(Violation):
    """Nothing arrived in time."""


class Closed(Exception):
    """The target closed the connection (end of input or reset)."""


def frame_bytes(frame: Frame) -> bytes:
    return pack_header(frame.header, len(frame.payload)) + bytes(frame.payload)


def _confirmed(sock: socket.socket, address: addresses.Address) -> None:
    """libvirt over TLS: after the handshake the server checks the client's certificate and
    sends one byte, 1 for success, before any RPC message (libvirt's virnetclient.c)."""
    try:
        byte = sock.recv(1)
    except (OSError, ssl.SSLError) as exc:
        byte, why = b"", str(exc)
    else:
        why = "closed the connection" if not byte else f"sent {byte.hex()}"
    if byte != b"\x01":
        sock.close()
        raise Violation(f"§2.1: {address}: no TLS confirmation byte (libvirt's): {why}")


class Peer:
    """One connection to the target (see the module docstring)."""

    def __init__(
        self,
        address: addresses.Address,
        programs: Sequence[Program],
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        tls_confirmation: bool = False,
    ) -> None:
        self.timeout = timeout
        sock = addresses.connect(address, timeout=timeout)
        if tls is not None:
            server_name = address.host if address.kind == "tcp" else None
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_name)
            except (OSError, ssl.SSLError) as exc:  # a reset too: one line, OpenSSL's reason
                sock.close()
                why = tlsmod.describe(exc)
                raise addresses.ConnectError(f"TLS handshake failed ({why}): {address}") from exc
            if tls_confirmation:
                _confirmed(sock, address)
        self._setup(sock, programs, timeout)

    @classmethod
    def from_socket(
        cls, sock: socket.socket, programs: Sequence[Program] = (), timeout: float = 5.0
    ) -> Peer:
        """A peer on an accepted socket (the engine is still client-role: use raw mode)."""
        peer = cls.__new__(cls)
        peer._setup(sock, programs, timeout)
        return peer

    def _setup(self, sock: socket.socket, programs: Sequence[Program], timeout: float) -> None:
        self.timeout = timeout
        self.sock = sock
        self.engine = Connection(Role.CLIENT, programs=programs, limits=Limits(stream_buffer=None))
        self._decoder = FrameDecoder(MAX_FRAME)
        self._events: deque[Event] = deque()
        self._eof = False
        self.received: list[Frame] = []
        self._recording = _RECORDINGS[-1] if _RECORDINGS else None
        if self._recording is not None:
            self._recording.peers += 1
            self._number = self._recording.peers

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def shutdown_write(self) -> None:
        """End of input for the target (spec.md §3.5)."""
        with contextlib.suppress(OSError):
            if isinstance(self.sock, ssl.SSLSocket):
                self.sock.unwrap()
            else:
                self.sock.shutdown(socket.SHUT_WR)

    # -- sending -----------------------------------------------------------------------
    def send(self, event: Event) -> None:
        self.send_raw(self.engine.send(event))

    def send_raw(self, data: bytes) -> None:
        if self._recording is not None:
            for piece in _split(bytes(data)):
                self._recording.add(self._number, C2S, piece)
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except TimeoutError:
            raise Violation(
                f"the target stopped reading: a send blocked {self.timeout} s"
            ) from None
        except OSError as exc:
            raise Closed(f"send failed: {exc}") from None

    # -- receiving ---------------------------------------------------------------------
    def _recv(self, deadline: float) -> bool:
        """Read once; False at end of input."""
        if self._eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        except TimeoutError:
            raise
        except OSError:
            data = b""
        if not data:
            self._eof = True
            if self._recording is not None:
                self._recording.add(self._number, S2C, b"", close=True)
            return False
        self._decoder.feed(data)
        return True

    def frame(self, timeout: float | None = None, what: str = "a frame") -> Frame:
        """The next frame from the target; :class:`Closed` at end of input (spec.md §3.5:
        a cut-off frame is a :class:`Violation`)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = self._decoder.next_frame()
            except RemoteProtocolError as exc:
                raise Violation(f"the target sent an invalid frame: {exc}") from None
            if frame is not None:
                self.received.append(frame)
                if self._recording is not None:
                    self._recording.add(self._number, S2C, frame_bytes(frame))
                return frame
            try:
                more = self._recv(deadline)
            except TimeoutError:
                raise Silence(
                    f"waited {self.timeout if timeout is None else timeout} s for {what}"
                ) from None
            if not more:
                if self._decoder.buffered:
                    raise Violation(
                        f"§3.5: the target closed inside a frame ({self._decoder.buffered} "
                        "bytes of it sent)"
                    )
                raise Closed("end of input")

    def event(self, timeout: float | None = None, what: str = "an event") -> Event:
        """The next event from the engine that judges the target's frames. Keepalive PINGs
        are answered and skipped; end of input gives ConnectionClosed."""
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, KeepalivePing):
                    self.send(KeepalivePong())
                    continue
                return event
            try:
                frame = self.frame(timeout, what)
            except Closed:
                self.engine.receive_data(b"")
                self._drain()
                if not self._events:
                    return ConnectionClosed()
                continue
            self.engine.receive_data(frame_bytes(frame))
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                event = self.engine.next_event()
            except RemoteProtocolError as exc:
                raise Violation(f"the target broke the protocol: {exc}") from None
            if event is NEED_DATA:
                return
            assert not isinstance(event, type(NEED_DATA))
            self._events.append(event)
            if isinstance(event, ConnectionClosed):
                return

    def expect_event(self, kind: type[Any] | tuple[type[Any], ...], what: str) -> Any:
        event = self.event(what=what)
        if not isinstance(event, kind):
            raise Violation(f"expected {what}, got {_describe(event)}")
        return event

    def expect_close(
        self,
        section: str,
        timeout: float | None = None,
        answers: Sequence[tuple[int, Sequence[MessageType]]] = (),
    ) -> None:
        """The target must close the connection without answering (spec.md §10.1).
        Keepalive messages may still arrive. Before the close it MAY answer the valid frames
        sent ahead of the offending one in the same write (``answers``: serial and frame
        types, each at most once, in order), as h2spec judges: a server that handles frames
        in order cannot know what follows, so only what follows the offender is judged.
        Anything else is a violation."""
        pending = list(answers)
        while True:
            try:
                frame = self.frame(timeout, "the target to close the connection")
            except Closed:
                return
            except Violation as exc:
                raise Violation(
                    f"{section}: the target must close the connection (§10.1): {exc}"
                ) from None
            header = frame.header
            if header.type == MessageType.MESSAGE and header.prog == KEEPALIVE_PROGRAM:
                continue
            while pending and not (header.serial == pending[0][0] and header.type in pending[0][1]):
                pending.pop(0)  # that valid frame went unanswered: the close came first
            if pending:
                pending.pop(0)
                continue
            raise Violation(
                f"{section}: the target answered instead of closing the connection (§10.1 "
                f"forbids answering the offending frame): got {_header_text(header)}"
            )

    def expect_silence(self, seconds: float, what: str) -> None:
        """Nothing but keepalive may arrive for ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                frame = self.frame(left, what)
            except Silence:
                return
            except Closed:
                raise Violation(f"the connection closed while waiting ({what})") from None
            if frame.header.prog == KEEPALIVE_PROGRAM:
                continue
            raise Violation(f"{what}: got {_header_text(frame.header)}")


def _header_text(header: Header) -> str:
    try:
        mtype = MessageType(header.type).name
    except ValueError:
        mtype = str(header.type)
    status = getattr(header.status, "name", str(header.status))
    return f"{mtype}/{status} serial {header.serial} proc {header.proc}"


def _describe(event: object) -> str:
    text = repr(event)
    return text if len(text) < 160 else text[:157] + "..."

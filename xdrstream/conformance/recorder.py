"""A recording proxy: relays sessions byte for byte and turns them into traces.

    proxy = RecordingProxy(parse_address("unix:/tmp/rec.sock"),
                           parse_address("tcp:127.0.0.1:16509"))
    proxy.start()                      # background thread; clients connect to proxy.address
    ... run a client through proxy.address ...
    sessions = proxy.wait(1, timeout=30)
    proxy.close()
    trace = to_trace(sessions, programs=["libvirt_remote"], description="...")

Each accepted connection gets its own upstream connection and two relay threads; every
chunk read is logged, then forwarded unchanged, so the proxy adds no framing of its
own. A session ends when both directions have reached end of input (a reset counts as end of
input); each side's shutdown is passed on. :func:`to_trace` cuts each direction's bytes at
frame boundaries (the length word; after an impossible length word the rest of that
direction is kept as one partial line) and orders the frames by the time they were complete;
the bytes of a frame cut off by the close become a ``partial`` line. Plain TCP/Unix only: a
TLS session would be recorded encrypted.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdrstream.conformance.relay import RelayProxy, received
from xdrstream.conformance.trace import C2S, S2C, Trace, TraceFrame
from xdrstream.protocol.framing import LEN_SIZE, MAX_FRAME, MIN_FRAME
from xdrstream.transport import address as addresses

__all__ = ["RecordingProxy", "Session", "split_session", "to_trace"]


@dataclass
class Session:
    """What one relayed connection carried: (sequence, time, direction, bytes) chunks, with
    ``b""`` for a side's end of input."""

    started: float
    chunks: list[tuple[int, float, str, bytes]] = field(default_factory=list)


class RecordingProxy(RelayProxy):
    def __init__(self, listen: addresses.Address, upstream: addresses.Address) -> None:
        super().__init__(listen, upstream)
        self.sessions: list[Session] = []
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._finished = 0
        self._seq = 0

    def record(self, count: int) -> list[Session]:
        """Relay until ``count`` sessions have ended (foreground)."""
        self.start()
        return self.wait(count, None)

    def wait(self, count: int, timeout: float | None = 30.0) -> list[Session]:
        """Block until ``count`` sessions have ended; TimeoutError otherwise."""
        with self._done:
            if not self._done.wait_for(lambda: self._finished >= count, timeout):
                raise TimeoutError(f"{self._finished} of {count} sessions ended in {timeout} s")
            return list(self.sessions)

    def connection(
        self, client: socket.socket, upstream: socket.socket
    ) -> Sequence[Callable[[], None]]:
        session = Session(time.monotonic())
        with self._lock:
            self.sessions.append(session)
        ends = [0]
        return [
            functools.partial(self._relay, session, source, sink, direction, ends)
            for source, sink, direction in ((client, upstream, C2S), (upstream, client, S2C))
        ]

    def _log(self, session: Session, direction: str, data: bytes) -> None:
        with self._lock:
            self._seq += 1
            session.chunks.append((self._seq, time.monotonic() - session.started, direction, data))

    def _relay(
        self,
        session: Session,
        source: socket.socket,
        sink: socket.socket,
        direction: str,
        ends: list[int],
    ) -> None:
        for data in received(source):
            self._log(session, direction, data)  # before forwarding: causes precede effects
            try:
                sink.sendall(data)
            except OSError:
                break
        self._log(session, direction, b"")
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._done:
            ends[0] += 1
            if ends[0] == 2:
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.close()
                self._finished += 1
                self._done.notify_all()


def split_session(session: Session) -> list[TraceFrame]:
    """The session's frames in the order they were complete on the wire."""
    pending: dict[str, bytearray] = {C2S: bytearray(), S2C: bytearray()}
    broken: set[str] = set()  # directions that sent an impossible length word
    out: list[TraceFrame] = []
    for _seq, when, direction, data in sorted(session.chunks):
        buffer = pending[direction]
        if not data:  # end of input: a cut-off frame stays partial, then the close
            if buffer:
                out.append(TraceFrame(direction, bytes(buffer), time=when, partial=True))
                buffer.clear()
            out.append(TraceFrame(direction, time=when, close=True))
            continue
        buffer += data
        while len(buffer) >= 4 and direction not in broken:
            length = int.from_bytes(buffer[:4], "big")
            if not MIN_FRAME <= length <= MAX_FRAME + LEN_SIZE:
                broken.add(direction)  # no frame boundary after this: one partial line
                break
            if len(buffer) < length:
                break
            out.append(TraceFrame(direction, bytes(buffer[:length]), time=when))
            del buffer[:length]
    for direction, buffer in pending.items():
        if buffer:
            out.append(TraceFrame(direction, bytes(buffer), partial=True))
    return out


def to_trace(
    sessions: Sequence[Session],
    *,
    programs: Sequence[str] = ("restore",),
    description: str = "",
    cases: Sequence[str] = (),
    variant: str | None = None,
    direction: str | None = None,
) -> Trace:
    """One trace of the sessions, one after the other (each ends with its closes)."""
    frames: list[TraceFrame] = []
    for session in sessions:
        frames += split_session(session)
    return Trace(
        frames,
        programs=list(programs),
        variant=variant,
        direction=direction,
        description=description,
        cases=list(cases),
        extra={"source": "recording proxy", "sessions": len(sessions)},
    )

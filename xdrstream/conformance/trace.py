"""The conformance trace format: one recorded (or scripted) session, as JSON Lines.

A trace is a UTF-8 text file. Its first line is the header object, each further line one
frame (or one close) in the order it went on the wire::

    {"xdrstream_trace": 1, "programs": ["restore"], "variant": "v2", "direction": "upload",
     "description": "V2 restore through the reference client and server",
     "cases": ["7.3.1/1"], "source": "make_traces"}
    {"dir": "c2s", "hex": "0000003c58445253...", "t": 0.0}
    {"dir": "s2c", "b64": "AAAAJFhEUlMAAAAB...", "t": 0.0012,
     "expect": {"type": "REPLY", "status": "OK", "serial": "any"}}
    {"dir": "c2s", "hex": "0000001c", "partial": true}
    {"dir": "s2c", "close": true, "t": 0.0031}

Header keys: ``xdrstream_trace`` (format version, an int: readers refuse versions they do
not know), ``programs`` (schema names whose procedures the trace uses: ``restore``,
``libvirt_remote``; ``message`` is implied), ``variant`` (``v1``/``v2``/``v3`` or null),
``direction`` (``upload``/``download`` or null), ``description`` (one line), ``cases``
(catalogue case ids the trace covers, e.g. ``7.3.1/1``), and optional keys: ``source``
(where it came from), ``replay`` (false: timing decides some frames, so
``conformance replay`` skips it, giving ``replay_note`` as the reason),
``client_testable`` (false: ``conformance serve`` does not offer it), ``client_must_close``
(``conformance serve`` fails a client that does not close after the trace), and any other
free-form key.

Frame keys: ``dir`` (``c2s`` client to server, ``s2c`` server to client); the raw bytes of
exactly one frame (length word included) as ``hex`` or ``b64`` (writers use hex up to 64
bytes); optional ``t`` (seconds since the session started), ``partial`` (true: the bytes
are the cut-off start of a frame, seen when the connection closed), ``expect`` (what a
replay must see for this frame instead of the exact bytes: any of the header fields
``prog``, ``vers``, ``proc``, ``type``, ``serial``, ``status`` -- ``"serial": "any"``
accepts any serial -- and ``payload``: ``"exact"`` (default), ``"sha256"`` (length and
SHA-256), ``"error"`` (error body compared by code and domain only) or ``"any"``), and
``note`` (free text shown by ``xdrstream trace show``). A close line (``"close": true``)
records that the ``dir`` side shut its sending half (end of input for the peer).

Public API: :class:`Trace`, :class:`TraceFrame`, :func:`read`/:func:`loads` (raise
:class:`TraceError` naming the line), :func:`write`/:func:`dumps`, and :func:`from_frames`
for the simplest use (a list of ``(Role, bytes)``, as the fuzzer keeps findings).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xdrstream.protocol import Role

__all__ = [
    "FORMAT_VERSION",
    "Trace",
    "TraceError",
    "TraceFrame",
    "dumps",
    "from_frames",
    "loads",
    "read",
    "write",
]

FORMAT_VERSION = 1
C2S = "c2s"
S2C = "s2c"
_HEX_MAX = 64
_EXPECT_KEYS = frozenset({"prog", "vers", "proc", "type", "serial", "status", "payload"})
_PAYLOAD_MODES = frozenset({"exact", "sha256", "error", "any"})


class TraceError(ValueError):
    """A trace file that does not follow the format; the message names the line."""


@dataclass(frozen=True)
class TraceFrame:
    """One line after the header: a frame (``data``) or a close (``close=True``)."""

    direction: str  # C2S or S2C
    data: bytes = b""
    time: float | None = None
    partial: bool = False
    close: bool = False
    expect: Mapping[str, Any] | None = None
    note: str | None = None

    @property
    def sender(self) -> Role:
        return Role.CLIENT if self.direction == C2S else Role.SERVER

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dir": self.direction}
        if self.close:
            out["close"] = True
        else:
            if len(self.data) <= _HEX_MAX:
                out["hex"] = self.data.hex()
            else:
                out["b64"] = base64.b64encode(self.data).decode("ascii")
            if self.partial:
                out["partial"] = True
        if self.time is not None:
            out["t"] = round(self.time, 6)
        if self.expect:
            out["expect"] = dict(self.expect)
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Trace:
    """A header and its frames."""

    frames: list[TraceFrame] = field(default_factory=list)
    programs: list[str] = field(default_factory=lambda: ["restore"])
    variant: str | None = None
    direction: str | None = None
    description: str = ""
    cases: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def header_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "xdrstream_trace": FORMAT_VERSION,
            "programs": list(self.programs),
            "variant": self.variant,
            "direction": self.direction,
            "description": self.description,
            "cases": list(self.cases),
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def side(self, direction: str) -> list[TraceFrame]:
        """The complete frames one side sent (closes and partial frames left out)."""
        return [f for f in self.frames if f.direction == direction and not f.close]

    def stream_bytes(self, direction: str) -> bytes:
        """Everything one side sent, as it went on the wire (partial frames included)."""
        return b"".join(f.data for f in self.frames if f.direction == direction)

    def pairs(self) -> list[tuple[Role, bytes]]:
        """``(sender, bytes)`` of every frame, the fuzzer's simple form."""
        return [(f.sender, f.data) for f in self.frames if not f.close]


def _frame(item: Any, number: int) -> TraceFrame:
    def fail(why: str) -> TraceError:
        return TraceError(f"trace line {number}: {why}")

    if not isinstance(item, dict):
        raise fail("a frame line must be a JSON object")
    direction = item.get("dir")
    if direction not in (C2S, S2C):
        raise fail(f"'dir' must be 'c2s' or 's2c', got {direction!r}")
    when = item.get("t")
    if when is not None and not isinstance(when, int | float):
        raise fail("'t' must be a number of seconds")
    note = item.get("note")
    if note is not None and not isinstance(note, str):
        raise fail("'note' must be a string")
    if item.get("close"):
        return TraceFrame(direction, time=None if when is None else float(when), close=True)
    try:
        if "hex" in item:
            data = bytes.fromhex(item["hex"])
        elif "b64" in item:
            data = base64.b64decode(item["b64"], validate=True)
        else:
            raise fail("a frame needs 'hex' or 'b64' (or 'close': true)")
    except (ValueError, TypeError) as exc:
        if isinstance(exc, TraceError):
            raise
        raise fail(f"bad frame bytes: {exc}") from None
    expect = item.get("expect")
    if expect is not None:
        if not isinstance(expect, dict) or not set(expect) <= _EXPECT_KEYS:
            raise fail(f"'expect' keys must be among {sorted(_EXPECT_KEYS)}")
        if expect.get("payload", "exact") not in _PAYLOAD_MODES:
            raise fail(f"'expect.payload' must be one of {sorted(_PAYLOAD_MODES)}")
    return TraceFrame(
        direction,
        data,
        time=None if when is None else float(when),
        partial=bool(item.get("partial", False)),
        expect=expect,
        note=note,
    )


def loads(text: str) -> Trace:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise TraceError("trace line 1: empty trace (a header line is required)")
    number, first = lines[0]
    try:
        header = json.loads(first)
    except ValueError as exc:
        raise TraceError(f"trace line {number}: not JSON: {exc}") from None
    if not isinstance(header, dict) or "xdrstream_trace" not in header:
        raise TraceError(f"trace line {number}: the header needs 'xdrstream_trace'")
    if header["xdrstream_trace"] != FORMAT_VERSION:
        raise TraceError(
            f"trace line {number}: format version {header['xdrstream_trace']!r} is not "
            f"supported (this reader knows {FORMAT_VERSION})"
        )
    frames = []
    for number, line in lines[1:]:
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise TraceError(f"trace line {number}: not JSON: {exc}") from None
        frames.append(_frame(item, number))
    known = {"xdrstream_trace", "programs", "variant", "direction", "description", "cases"}
    return Trace(
        frames=frames,
        programs=list(header.get("programs") or ["restore"]),
        variant=header.get("variant"),
        direction=header.get("direction"),
        description=str(header.get("description", "")),
        cases=[str(c) for c in header.get("cases") or []],
        extra={k: v for k, v in header.items() if k not in known},
    )


def dumps(trace: Trace) -> str:
    lines = [json.dumps(trace.header_json(), sort_keys=False)]
    lines += [json.dumps(frame.as_json()) for frame in trace.frames]
    return "".join(line + "\n" for line in lines)


def read(path: str | Path) -> Trace:
    try:
        return loads(Path(path).read_text(encoding="utf-8"))
    except TraceError as exc:
        raise TraceError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:  # e.g. a pcapng given for a trace
        raise TraceError(
            f"{path}: not a trace (JSON Lines): byte {exc.start} is not UTF-8"
        ) from None


def write(path: str | Path, trace: Trace) -> None:
    Path(path).write_text(dumps(trace), encoding="utf-8")


def from_frames(
    frames: Iterable[tuple[Role, bytes]],
    *,
    description: str = "",
    programs: Sequence[str] = ("restore",),
    **extra: Any,
) -> Trace:
    """A trace of ``(sender, bytes)`` pairs (each one frame, or a cut-off frame)."""
    out = []
    for sender, data in frames:
        direction = C2S if sender is Role.CLIENT else S2C
        partial = len(data) < 4 or int.from_bytes(data[:4], "big") != len(data)
        out.append(TraceFrame(direction, bytes(data), partial=partial))
    return Trace(out, programs=list(programs), description=description, extra=dict(extra))

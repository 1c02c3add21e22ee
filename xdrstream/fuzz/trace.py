"""Findings and seeds as trace files, in the conformance trace format.

Everything the fuzz layer reads or writes as a trace goes through :func:`dump` and
:func:`load`; the format itself is :mod:`xdrstream.conformance.trace` (JSON Lines: a header
object, then one ``{"dir": "c2s"|"s2c", "hex"|"b64": ...}`` object per frame), so
``xdrstream conformance replay`` can run a finding again. The fuzzer's details (kind,
detail, seed, target) are kept in the header under the key ``"fuzz"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xdrstream.conformance import trace as conformance_trace
from xdrstream.protocol import Role

__all__ = ["dump", "dumps", "load", "load_meta", "loads"]

#: Schema names a fuzz trace may use (restore.x and libvirt's remote program).
PROGRAMS = ("restore", "libvirt_remote")


def _trace(
    frames: Iterable[tuple[Role, bytes]], meta: Mapping[str, Any] | None
) -> conformance_trace.Trace:
    meta = dict(meta or {})
    description = f"fuzz finding: {meta['kind']}: {meta.get('detail', '')}" if meta else ""
    extra: dict[str, Any] = {"source": "xdrstream fuzz"}
    if meta:
        extra["fuzz"] = meta
    return conformance_trace.from_frames(
        frames, description=description, programs=PROGRAMS, **extra
    )


def dumps(frames: Iterable[tuple[Role, bytes]], meta: Mapping[str, Any] | None = None) -> str:
    return conformance_trace.dumps(_trace(frames, meta))


def loads(text: str) -> list[tuple[Role, bytes]]:
    """``(sender, bytes)`` of every frame (ValueError naming the line if malformed)."""
    return conformance_trace.loads(text).pairs()


def dump(
    path: Path, frames: Iterable[tuple[Role, bytes]], meta: Mapping[str, Any] | None = None
) -> None:
    conformance_trace.write(path, _trace(frames, meta))


def load(path: Path) -> list[tuple[Role, bytes]]:
    return conformance_trace.read(path).pairs()


def load_meta(path: Path) -> dict[str, Any]:
    """The fuzzer's details of a finding (empty for other traces)."""
    meta = conformance_trace.read(path).extra.get("fuzz")
    return dict(meta) if isinstance(meta, dict) else {}

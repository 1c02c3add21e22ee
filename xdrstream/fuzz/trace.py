"""Findings and seeds as simple trace files: JSON Lines, one object per frame.

    {"meta": {"kind": "crash", "detail": "...", "seed": 1}}        (optional, first line)
    {"direction": "c2s", "hex": "0000001c58445253..."}             client -> server
    {"direction": "s2c", "hex": "..."}                             server -> client

The conformance layer will define the project's trace format; everything that reads or
writes traces in the fuzz layer goes through :func:`dump` and :func:`load`, so swapping the
format means changing this module only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xdrstream.protocol import Role

__all__ = ["dump", "dumps", "load", "load_meta", "loads"]

_DIRECTION = {Role.CLIENT: "c2s", Role.SERVER: "s2c"}
_SENDER = {v: k for k, v in _DIRECTION.items()}


def dumps(frames: Iterable[tuple[Role, bytes]], meta: Mapping[str, Any] | None = None) -> str:
    lines = [] if meta is None else [json.dumps({"meta": dict(meta)}, sort_keys=True)]
    for sender, data in frames:
        lines.append(json.dumps({"direction": _DIRECTION[sender], "hex": data.hex()}))
    return "".join(line + "\n" for line in lines)


def loads(text: str) -> list[tuple[Role, bytes]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if "meta" in item:
                continue
            out.append((_SENDER[item["direction"]], bytes.fromhex(item["hex"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"trace line {number}: {exc}") from None
    return out


def load_meta(path: Path) -> dict[str, Any]:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    item = json.loads(first) if first.strip() else {}
    meta = item.get("meta") if isinstance(item, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def dump(
    path: Path, frames: Iterable[tuple[Role, bytes]], meta: Mapping[str, Any] | None = None
) -> None:
    path.write_text(dumps(frames, meta), encoding="utf-8")


def load(path: Path) -> list[tuple[Role, bytes]]:
    return loads(path.read_text(encoding="utf-8"))

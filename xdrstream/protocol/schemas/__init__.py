"""The protocol layer's XDR schemas (package data, spec.md §11).

* ``message.x`` -- header, enums, error body, stream hole, V1 stream-call bodies, keepalive.
* ``restore.x`` -- the demonstration program "XDRS" (0x58445253) with ordinary calls and a
  restore (upload) and save (download) procedure per streaming variant.

``path(name)`` gives the file, ``source(name)`` its text, ``load(name)`` the schema compiled
by :mod:`xdrstream.codec` (cached).
"""

from __future__ import annotations

import functools
import importlib
from importlib import resources
from pathlib import Path
from typing import Any

NAMES: tuple[str, ...] = ("message", "restore")


def path(name: str) -> Path:
    """Filesystem path of schema ``name`` (e.g. ``"restore"``)."""
    if name.endswith(".x"):
        name = name[:-2]
    file = resources.files(__name__).joinpath(f"{name}.x")
    if not file.is_file():
        raise FileNotFoundError(f"no protocol schema named {name!r} (have {', '.join(NAMES)})")
    return Path(str(file))


def source(name: str) -> str:
    return path(name).read_text(encoding="utf-8")


@functools.cache
def load(name: str) -> Any:
    """Schema ``name`` compiled by :func:`xdrstream.codec.load_schema`."""
    codec = importlib.import_module("xdrstream.codec")
    return codec.load_schema(path(name))

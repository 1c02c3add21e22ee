"""The numbers of the ``restore.x`` program (spec.md §11.2), read from the schema (issue 10:
a fact is written once, in the schema). Shared by the client and the server, and
re-exported by :mod:`.server`; its own module so that a client need not import the server
(its endpoints and event loop)."""

from __future__ import annotations

from typing import Any

from xdrstream.protocol import schemas

_C = schemas.load("restore").constants
PROGRAM = int(_C["XS_RESTORE_PROGRAM"])
VERSION = int(_C["XS_RESTORE_V1"])
PROC_PING = int(_C["XS_PROC_PING"])
PROC_ECHO = int(_C["XS_PROC_ECHO"])
PROC_GET_INFO = int(_C["XS_PROC_GET_INFO"])
RESTORE_PROCS = {v: int(_C[f"XS_PROC_RESTORE_V{v}"]) for v in (1, 2, 3)}
SAVE_PROCS = {v: int(_C[f"XS_PROC_SAVE_V{v}"]) for v in (1, 2, 3)}
PROC_RESTORE_DENSE = int(_C["XS_PROC_RESTORE_DENSE"])
PROC_SAVE_DENSE = int(_C["XS_PROC_SAVE_DENSE"])


def schema() -> Any:
    """The compiled ``restore.x`` schema."""
    return schemas.load("restore")

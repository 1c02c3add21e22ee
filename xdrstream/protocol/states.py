"""The state tables of spec.md §9 as data, for code outside the engine (generators, tests).

    from xdrstream.protocol.states import TABLES
    TABLES[(Role.CLIENT, "v2 upload")][("OPEN", ">StreamData")]   # -> ("OPEN", "send")

``TABLES[(role, kind)]`` maps ``(state, message)`` to ``(next state, action)``; ``kind`` is
``"call"``, ``"unknown call"`` or ``"<variant> <direction>"``; ``SECTIONS[kind]`` names the
spec section; ``SENDS``/``RECEIVES`` list the events a role sends/receives at all. The
notation is described in :mod:`xdrstream.protocol._state`, the engine's own module, which
this one re-exports.
"""

from xdrstream.protocol._state import (
    RECEIVES,
    SECTIONS,
    SENDS,
    TABLES,
    Role,
    Table,
    Transition,
)

__all__ = ["RECEIVES", "SECTIONS", "SENDS", "TABLES", "Role", "Table", "Transition"]

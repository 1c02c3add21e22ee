"""The state tables of spec.md §9 as data, for code outside the engine (generators, tests).

    from xdrstream.protocol.states import TABLES
    TABLES[(Role.CLIENT, "v2 upload")][("OPEN", ">StreamData")]   # -> ("OPEN", "send")

``TABLES[(role, kind)]`` maps ``(state, message)`` to ``(next state, action)``; ``kind`` is
a :class:`Kind` (``Kind.CALL``, ``Kind.UNKNOWN_CALL`` or e.g. ``Kind.V2_UPLOAD``), states
are :class:`State` and actions :class:`Action`, enums parsed once from the tables' text
that compare equal to the spec's words (``Kind.V2_UPLOAD == "v2 upload"``);
``SECTIONS[kind]`` names the spec section; ``SENDS``/``RECEIVES`` list the events a role
sends/receives at all. The notation is described in :mod:`xdrstream.protocol._state`, the
engine's own module, which this one re-exports.
"""

from xdrstream.protocol._state import (
    RECEIVES,
    SECTIONS,
    SENDS,
    TABLES,
    Action,
    Kind,
    Role,
    State,
    Table,
    Transition,
)

__all__ = [
    "RECEIVES",
    "SECTIONS",
    "SENDS",
    "TABLES",
    "Action",
    "Kind",
    "Role",
    "State",
    "Table",
    "Transition",
]

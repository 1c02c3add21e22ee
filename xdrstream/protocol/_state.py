"""The state tables of spec.md §9, as data.

One table per role and kind of exchange: ``"call"`` (a procedure without stream),
``"<variant> <direction>"`` (a procedure with a stream) and, on the server, ``"unknown
call"`` (a procedure it does not know: answered with an error, its stream frames
dropped).  A table maps ``(state, message)`` to ``(next state, action)``:

* message ``">Name"``: this role sends event ``Name``; ``"<Name"``: it receives it;
* action ``send`` (allowed send), ``deliver`` (received, returned by ``next_event``),
  ``drop`` (received and silently discarded, §10.2), ``hold`` (received early, kept and
  applied to the table in order right after the next delivered event, §7.3.2).

A pair missing from a table is an error: ``LocalProtocolError`` for a send,
``RemoteProtocolError`` for a receipt.  Every exchange starts in ``IDLE`` and is forgotten
when it reaches ``CLOSED``; ``DRAINING`` serials are remembered a while to drop the peer's
late messages (§10.2).  Guards that depend on counters (V1 window, outstanding calls,
``@sparse``, sizes) are checked in code and cited there (§7).

``spec.md`` holds the same tables; ``tests/protocol/test_spec_tables.py`` parses them and
asserts equality.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NamedTuple

from xdrstream.protocol.programs import Direction, StreamMode, Variant


class _Word(str, enum.Enum):
    """A word of the tables: compares and hashes as its text (``State.OPEN == "OPEN"``), so
    code holding the spec's strings can look the tables up."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(_Word):
    """States of an exchange (spec.md §9)."""

    IDLE = "IDLE"
    CALLING = "CALLING"
    CALLED = "CALLED"
    OPEN = "OPEN"
    EOF = "EOF"
    FINISHING = "FINISHING"
    ABORTING = "ABORTING"
    ABORTED = "ABORTED"
    DRAINING = "DRAINING"
    CLOSED = "CLOSED"


class Action(_Word):
    SEND = "send"  # an allowed send
    DELIVER = "deliver"  # received, returned by next_event
    DROP = "drop"  # received and silently discarded (§10.2)
    # received before the reply, kept, and applied in order once the reply has been
    # delivered (libvirtd's race, §7.3.2); discarded if the exchange ends instead
    HOLD = "hold"


class Kind(_Word):
    """Kinds of exchange: a plain call, a server's call of an unknown procedure, or a
    call with a stream of some variant and direction (spec.md §9)."""

    CALL = "call"
    UNKNOWN_CALL = "unknown call"
    V1_UPLOAD = "v1 upload"
    V1_DOWNLOAD = "v1 download"
    V2_UPLOAD = "v2 upload"
    V2_DOWNLOAD = "v2 download"
    V3_UPLOAD = "v3 upload"
    V3_DOWNLOAD = "v3 download"

    @property
    def variant(self) -> Variant | None:
        return _MODES[self][0]

    @property
    def direction(self) -> Direction | None:
        return _MODES[self][1]

    @property
    def section(self) -> str:
        """The section of spec.md that holds this kind's tables."""
        return SECTIONS[self]

    @staticmethod
    def of(mode: StreamMode | None, known: bool = True) -> Kind:
        """The kind of a procedure with stream ``mode`` (None: a plain call; a server
        does not know whether an unknown procedure has a stream, §10.2)."""
        if mode is None:
            return Kind.CALL if known else Kind.UNKNOWN_CALL
        return _KIND_OF[(mode.variant, mode.direction)]


_MODES: dict[Kind, tuple[Variant | None, Direction | None]] = {
    Kind.CALL: (None, None),
    Kind.UNKNOWN_CALL: (None, None),
    **{
        kind: (Variant(kind.value.split()[0]), Direction(kind.value.split()[1]))
        for kind in Kind
        if " " in kind.value and kind is not Kind.UNKNOWN_CALL
    },
}
_KIND_OF = {mode: kind for kind, mode in _MODES.items() if mode[0] is not None}


class Transition(NamedTuple):
    next: State
    action: Action


Table = Mapping[tuple[State, str], Transition]

# Rows: "STATE message NEXT action"; whitespace-separated for readability.
_ROWS: dict[tuple[str, str], str] = {
    ("client", "call"): """
        IDLE      >Call          CALLING  send
        CALLING   <Reply         CLOSED   deliver
        CALLING   <ErrorReply    CLOSED   deliver
    """,
    ("server", "call"): """
        IDLE      <Call          CALLED   deliver
        CALLED    >Reply         CLOSED   send
        CALLED    >ErrorReply    CLOSED   send
    """,
    ("server", "unknown call"): """
        IDLE      <Call          CALLED     deliver
        CALLED    <StreamData    CALLED     drop
        CALLED    <StreamHole    CALLED     drop
        CALLED    <StreamFinish  CALLED     drop
        CALLED    <StreamAbort   CALLED     drop
        CALLED    >ErrorReply    DRAINING   send
        DRAINING  <StreamData    DRAINING   drop
        DRAINING  <StreamHole    DRAINING   drop
        DRAINING  <StreamFinish  CLOSED     drop
        DRAINING  <StreamAbort   CLOSED     drop
    """,
    ("client", "v1 upload"): """
        IDLE      >Call          CALLING    send
        CALLING   <Reply         OPEN       deliver
        CALLING   <ErrorReply    CLOSED     deliver
        OPEN      >StreamData    OPEN       send
        OPEN      >StreamHole    OPEN       send
        OPEN      <StreamAck     OPEN       deliver
        OPEN      >StreamFinish  FINISHING  send
        OPEN      >StreamAbort   ABORTING   send
        OPEN      <StreamError   CLOSED     deliver
        FINISHING <StreamAck     FINISHING  deliver
        FINISHING <StreamConfirm CLOSED     deliver
        FINISHING <StreamError   CLOSED     deliver
        ABORTING  <StreamAck     ABORTING   drop
        ABORTING  <StreamConfirm CLOSED     deliver
        ABORTING  <StreamError   CLOSED     deliver
    """,
    ("server", "v1 upload"): """
        IDLE      <Call          CALLED     deliver
        CALLED    >Reply         OPEN       send
        CALLED    >ErrorReply    CLOSED     send
        OPEN      <StreamData    OPEN       deliver
        OPEN      <StreamHole    OPEN       deliver
        OPEN      >StreamAck     OPEN       send
        OPEN      <StreamFinish  FINISHING  deliver
        OPEN      <StreamAbort   ABORTED    deliver
        OPEN      >StreamError   DRAINING   send
        FINISHING >StreamAck     FINISHING  send
        FINISHING >StreamConfirm CLOSED     send
        FINISHING >StreamError   CLOSED     send
        ABORTED   >StreamConfirm CLOSED     send
        ABORTED   >StreamError   CLOSED     send
        DRAINING  <StreamData    DRAINING   drop
        DRAINING  <StreamHole    DRAINING   drop
        DRAINING  <StreamFinish  CLOSED     drop
        DRAINING  <StreamAbort   CLOSED     drop
    """,
    ("client", "v1 download"): """
        IDLE      >Call          CALLING    send
        CALLING   <Reply         OPEN       deliver
        CALLING   <ErrorReply    CLOSED     deliver
        OPEN      >StreamRead    OPEN       send
        OPEN      <StreamData    OPEN       deliver
        OPEN      <StreamHole    OPEN       deliver
        OPEN      <StreamEnd     EOF        deliver
        OPEN      <StreamError   CLOSED     deliver
        OPEN      >StreamAbort   ABORTING   send
        EOF       >StreamFinish  FINISHING  send
        EOF       >StreamAbort   ABORTING   send
        FINISHING <StreamConfirm CLOSED     deliver
        FINISHING <StreamError   CLOSED     deliver
        ABORTING  <StreamData    ABORTING   drop
        ABORTING  <StreamHole    ABORTING   drop
        ABORTING  <StreamEnd     ABORTING   drop
        ABORTING  <StreamConfirm CLOSED     deliver
        ABORTING  <StreamError   CLOSED     deliver
    """,
    ("server", "v1 download"): """
        IDLE      <Call          CALLED     deliver
        CALLED    >Reply         OPEN       send
        CALLED    >ErrorReply    CLOSED     send
        OPEN      <StreamRead    OPEN       deliver
        OPEN      >StreamData    OPEN       send
        OPEN      >StreamHole    OPEN       send
        OPEN      >StreamEnd     EOF        send
        OPEN      >StreamError   DRAINING   send
        OPEN      <StreamAbort   ABORTED    deliver
        EOF       <StreamRead    EOF        drop
        EOF       <StreamFinish  FINISHING  deliver
        EOF       <StreamAbort   ABORTED    deliver
        FINISHING >StreamConfirm CLOSED     send
        FINISHING >StreamError   CLOSED     send
        ABORTED   >StreamConfirm CLOSED     send
        ABORTED   >StreamError   CLOSED     send
        DRAINING  <StreamRead    DRAINING   drop
        DRAINING  <StreamAbort   CLOSED     drop
    """,
    ("client", "v2 upload"): """
        IDLE      >Call          CALLING    send
        CALLING   <Reply         OPEN       deliver
        CALLING   <ErrorReply    CLOSED     deliver
        OPEN      >StreamData    OPEN       send
        OPEN      >StreamHole    OPEN       send
        OPEN      >StreamFinish  FINISHING  send
        OPEN      >StreamAbort   ABORTING   send
        OPEN      <StreamError   CLOSED     deliver
        FINISHING <StreamConfirm CLOSED     deliver
        FINISHING <StreamError   CLOSED     deliver
        ABORTING  <StreamConfirm CLOSED     deliver
        ABORTING  <StreamError   CLOSED     deliver
    """,
    ("server", "v2 upload"): """
        IDLE      <Call          CALLED     deliver
        CALLED    >Reply         OPEN       send
        CALLED    >ErrorReply    CLOSED     send
        OPEN      <StreamData    OPEN       deliver
        OPEN      <StreamHole    OPEN       deliver
        OPEN      <StreamFinish  FINISHING  deliver
        OPEN      <StreamAbort   ABORTED    deliver
        OPEN      >StreamError   DRAINING   send
        FINISHING >StreamConfirm CLOSED     send
        FINISHING >StreamError   CLOSED     send
        ABORTED   >StreamConfirm CLOSED     send
        ABORTED   >StreamError   CLOSED     send
        DRAINING  <StreamData    DRAINING   drop
        DRAINING  <StreamHole    DRAINING   drop
        DRAINING  <StreamFinish  CLOSED     drop
        DRAINING  <StreamAbort   CLOSED     drop
    """,
    ("client", "v2 download"): """
        IDLE      >Call          CALLING    send
        CALLING   <Reply         OPEN       deliver
        CALLING   <ErrorReply    CLOSED     deliver
        CALLING   <StreamData    CALLING    hold
        CALLING   <StreamHole    CALLING    hold
        CALLING   <StreamEnd     CALLING    hold
        CALLING   <StreamError   CALLING    hold
        OPEN      <StreamData    OPEN       deliver
        OPEN      <StreamHole    OPEN       deliver
        OPEN      <StreamEnd     EOF        deliver
        OPEN      <StreamError   CLOSED     deliver
        OPEN      >StreamAbort   ABORTING   send
        EOF       >StreamFinish  FINISHING  send
        EOF       >StreamAbort   ABORTING   send
        EOF       <StreamError   CLOSED     deliver
        FINISHING <StreamConfirm CLOSED     deliver
        FINISHING <StreamError   CLOSED     deliver
        ABORTING  <StreamData    ABORTING   drop
        ABORTING  <StreamHole    ABORTING   drop
        ABORTING  <StreamEnd     ABORTING   drop
        ABORTING  <StreamConfirm CLOSED     deliver
        ABORTING  <StreamError   CLOSED     deliver
    """,
    ("server", "v2 download"): """
        IDLE      <Call          CALLED     deliver
        CALLED    >Reply         OPEN       send
        CALLED    >ErrorReply    CLOSED     send
        OPEN      >StreamData    OPEN       send
        OPEN      >StreamHole    OPEN       send
        OPEN      >StreamEnd     EOF        send
        OPEN      >StreamError   DRAINING   send
        OPEN      <StreamAbort   ABORTED    deliver
        EOF       <StreamFinish  FINISHING  deliver
        EOF       <StreamAbort   ABORTED    deliver
        EOF       >StreamError   DRAINING   send
        FINISHING >StreamConfirm CLOSED     send
        FINISHING >StreamError   CLOSED     send
        ABORTED   >StreamConfirm CLOSED     send
        ABORTED   >StreamError   CLOSED     send
        DRAINING  <StreamFinish  CLOSED     drop
        DRAINING  <StreamAbort   CLOSED     drop
    """,
    ("client", "v3 upload"): """
        IDLE      >Call          OPEN       send
        OPEN      >StreamData    OPEN       send
        OPEN      >StreamHole    OPEN       send
        OPEN      >StreamFinish  FINISHING  send
        OPEN      >StreamAbort   ABORTING   send
        OPEN      <ErrorReply    CLOSED     deliver
        FINISHING <Reply         CLOSED     deliver
        FINISHING <ErrorReply    CLOSED     deliver
        ABORTING  <Reply         CLOSED     deliver
        ABORTING  <ErrorReply    CLOSED     deliver
    """,
    ("server", "v3 upload"): """
        IDLE      <Call          OPEN       deliver
        OPEN      <StreamData    OPEN       deliver
        OPEN      <StreamHole    OPEN       deliver
        OPEN      <StreamFinish  FINISHING  deliver
        OPEN      <StreamAbort   ABORTED    deliver
        OPEN      >ErrorReply    DRAINING   send
        FINISHING >Reply         CLOSED     send
        FINISHING >ErrorReply    CLOSED     send
        ABORTED   >Reply         CLOSED     send
        ABORTED   >ErrorReply    CLOSED     send
        DRAINING  <StreamData    DRAINING   drop
        DRAINING  <StreamHole    DRAINING   drop
        DRAINING  <StreamFinish  CLOSED     drop
        DRAINING  <StreamAbort   CLOSED     drop
    """,
    ("client", "v3 download"): """
        IDLE      >Call          OPEN       send
        OPEN      <StreamData    OPEN       deliver
        OPEN      <StreamHole    OPEN       deliver
        OPEN      <StreamEnd     EOF        deliver
        OPEN      <ErrorReply    CLOSED     deliver
        OPEN      >StreamAbort   ABORTING   send
        EOF       <Reply         CLOSED     deliver
        EOF       <ErrorReply    CLOSED     deliver
        ABORTING  <StreamData    ABORTING   drop
        ABORTING  <StreamHole    ABORTING   drop
        ABORTING  <StreamEnd     ABORTING   drop
        ABORTING  <Reply         CLOSED     deliver
        ABORTING  <ErrorReply    CLOSED     deliver
    """,
    ("server", "v3 download"): """
        IDLE      <Call          OPEN       deliver
        OPEN      >StreamData    OPEN       send
        OPEN      >StreamHole    OPEN       send
        OPEN      >StreamEnd     EOF        send
        OPEN      >ErrorReply    DRAINING   send
        OPEN      <StreamAbort   ABORTED    deliver
        EOF       >Reply         DRAINING   send
        EOF       >ErrorReply    DRAINING   send
        EOF       <StreamAbort   EOF        drop
        ABORTED   >Reply         CLOSED     send
        ABORTED   >ErrorReply    CLOSED     send
        DRAINING  <StreamAbort   CLOSED     drop
    """,
}


def _parse(rows: str) -> dict[tuple[State, str], Transition]:
    table: dict[tuple[State, str], Transition] = {}
    for line in rows.strip().splitlines():
        state, message, nxt, action = line.split()
        table[(State(state), message)] = Transition(State(nxt), Action(action))
    return table


#: TABLES[(role, kind)] -- parsed once from the rows above.
TABLES: dict[tuple[Role, Kind], dict[tuple[State, str], Transition]] = {
    (Role(role), Kind(kind)): _parse(rows) for (role, kind), rows in _ROWS.items()
}

#: Section of spec.md that holds each kind's tables.
SECTIONS: dict[Kind, str] = {
    Kind.CALL: "§9.1",
    Kind.UNKNOWN_CALL: "§9.1",
    Kind.V1_UPLOAD: "§9.2",
    Kind.V1_DOWNLOAD: "§9.2",
    Kind.V2_UPLOAD: "§9.3",
    Kind.V2_DOWNLOAD: "§9.3",
    Kind.V3_UPLOAD: "§9.4",
    Kind.V3_DOWNLOAD: "§9.4",
}

#: Events a role can send / receive at all (for the every-pair tests).
SENDS: dict[Role, tuple[str, ...]] = {
    Role.CLIENT: ("Call", "StreamData", "StreamHole", "StreamFinish", "StreamAbort", "StreamRead"),
    Role.SERVER: (
        "Reply",
        "ErrorReply",
        "StreamData",
        "StreamHole",
        "StreamEnd",
        "StreamError",
        "StreamConfirm",
        "StreamAck",
    ),
}
RECEIVES: dict[Role, tuple[str, ...]] = {
    Role.CLIENT: SENDS[Role.SERVER],
    Role.SERVER: SENDS[Role.CLIENT],
}


def render_markdown() -> str:
    """The tables in the markdown form spec.md §9 uses."""
    out: list[str] = []
    for (role, kind), table in TABLES.items():
        out.append(f"<!-- state-table: {role.value} {kind.value} -->")
        out.append(f"**{role.value.capitalize()}, {kind.value}**")
        out.append("")
        out.append("| state | message | next | action |")
        out.append("|---|---|---|---|")
        for (state, message), (nxt, action) in table.items():
            out.append(f"| {state.value} | `{message}` | {nxt.value} | {action.value} |")
        out.append("")
    return "\n".join(out)

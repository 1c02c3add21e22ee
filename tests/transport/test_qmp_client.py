"""QMPClient against a scripted QMP peer on a socketpair (no QEMU needed)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from xdrstream.endpoints.qemu import QMPClient, QMPError

GREETING = {"QMP": {"version": {}, "capabilities": []}}
SETUP = {
    "timestamp": {"seconds": 1, "microseconds": 2},
    "event": "MIGRATION",
    "data": {"status": "setup"},
}


def scripted_peer(first: list[dict[str, object]]) -> tuple[socket.socket, threading.Thread]:
    ours, theirs = socket.socketpair()

    def serve() -> None:
        with theirs:
            for message in first:
                theirs.sendall(json.dumps(message).encode() + b"\n")
            line = theirs.makefile().readline()
            if line and json.loads(line).get("execute") == "qmp_capabilities":
                theirs.sendall(b'{"return": {}}\n')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return ours, thread


def test_an_event_before_the_greeting_is_kept_and_the_greeting_still_read() -> None:
    # QEMU 7.2 with -incoming sent MIGRATION/setup ahead of its greeting in a CI run
    sock, thread = scripted_peer([SETUP, GREETING])
    client = QMPClient(sock)
    thread.join(5)
    assert client.greeting == GREETING and client.events == [SETUP]
    client.close()


def test_a_peer_that_never_greets_is_refused() -> None:
    sock, thread = scripted_peer([{"return": {}}])
    with pytest.raises(QMPError, match="not a QMP greeting"):
        QMPClient(sock)
    sock.close()
    thread.join(5)

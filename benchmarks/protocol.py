"""Throughput of the sans-I/O engine (xdrstream.protocol) through a client->server pair.

1. Small calls: round trips of XS_PROC_PING (void) and XS_PROC_ECHO (16 bytes) through a
   client and a server Connection: messages per second (a call and its reply are two).
2. Stream data in 256 KiB chunks (V1, V2, V3 uploads): bytes per second from the client's
   StreamData to the server's StreamData event, compared in the same run with the rate of a
   bare ``bytes`` copy of the same chunks (what any receive path costs at least once).
   Deliveries: "writev" hands the server the client's buffers as sent (header, payload:
   the payload arrives in one piece and is never copied); "N KiB reads" hands it the wire
   bytes cut into N KiB pieces, as recv() would (cut before timing): each payload is then
   joined once, the single copy of the receive path (the kernel's copy into those pieces is
   not timed); "recv_into" receives through ``get_buffer()``/``buffer_updated()`` in 64 KiB
   steps and *does* time the emulated kernel copy, which writes straight into the payload's
   final (zero-initialised) buffer: compare it with "reads" plus one more copy.

Prints one line per measurement and the ratio to the copy rate (target: >= 0.80 for V2).
Run: .venv/bin/python benchmarks/protocol.py [--mib N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from xdrstream.protocol import NEED_DATA, Connection, Limits, Role, schemas
from xdrstream.protocol.events import (
    Call,
    Reply,
    StreamAck,
    StreamConfirm,
    StreamData,
    StreamFinish,
)

PROG, VERS = 0x58445253, 1
CHUNK = 256 * 1024
RESTORE = schemas.load("restore")


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def pair() -> tuple[Connection, Connection]:
    limits = Limits(stream_buffer=None)
    return Connection(Role.CLIENT, [RESTORE], limits), Connection(Role.SERVER, [RESTORE], limits)


def small_calls(n: int, proc: int) -> float:
    client, server = pair()
    args = RESTORE["xs_echo_args"](data=b"0123456789abcdef") if proc == 2 else None
    result = RESTORE["xs_echo_ret"](data=b"0123456789abcdef") if proc == 2 else None
    start = time.perf_counter()
    for _ in range(n):
        serial = client.next_serial()
        server.receive_data(client.send(Call(serial, PROG, VERS, proc, args)))
        call = server.next_event()
        assert isinstance(call, Call)
        client.receive_data(server.send(Reply(call.serial, result)))
        reply = client.next_event()
        assert isinstance(reply, Reply)
    return time.perf_counter() - start


WIRE: dict[tuple[int, int], bytes] = {}


def record_wire(chunks: list[bytes], proc: int) -> None:
    """What the client sends after its call for an upload of ``chunks`` (deterministic)."""
    sent = bytearray()
    upload(chunks, proc, "writev", sent)
    WIRE[(proc, len(chunks))] = bytes(sent)


def upload(chunks: list[bytes], proc: int, delivery: str, record: bytearray | None = None) -> float:
    """Seconds to move ``chunks`` through a V1/V2/V3 upload stream (call set-up excluded)."""
    client, server = pair()
    serial = client.next_serial()
    args = RESTORE["xs_restore_args"](name="bench", size_hint=0, flags=0)
    server.receive_data(client.send(Call(serial, PROG, VERS, proc, args)))
    server.next_event()
    if proc != 8:
        client.receive_data(server.send(Reply(serial, RESTORE["xs_restore_ret"](length=0))))
        client.next_event()
    v1 = proc == 4
    reads: list[bytes] = []
    wire_view = memoryview(WIRE.get((proc, len(chunks)), b""))
    if delivery.endswith("reads"):
        # The wire as recv() would return it, cut outside the timed loop (kernel work).
        size = int(delivery.split()[0]) * 1024
        wire = WIRE[(proc, len(chunks))]
        reads = [wire[i : i + size] for i in range(0, len(wire), size)]
    next_read = 0
    wire_end = 0
    fed = 0
    total = 0
    start = time.perf_counter()
    for chunk in chunks:
        buffers = client.send_buffers(StreamData(serial, chunk))
        if record is not None:
            record += b"".join(buffers)
        if delivery == "writev":
            for buf in buffers:
                server.receive_data(buf if isinstance(buf, bytes) else bytes(buf))
        elif delivery.startswith("recv_into"):
            # the transport's own copy (kernel -> buffer) is emulated and timed
            wire_end += sum(map(len, buffers))
            while fed < wire_end:
                target = server.get_buffer(65536)
                n = min(len(target), 65536, wire_end - fed)
                target[:n] = wire_view[fed : fed + n]
                server.buffer_updated(n)
                fed += n
        else:
            wire_end += sum(map(len, buffers))
            while fed < wire_end:
                server.receive_data(reads[next_read])
                fed += len(reads[next_read])
                next_read += 1
        while (event := server.next_event()) is not NEED_DATA:
            assert isinstance(event, StreamData)
            total += len(event.data)
        if v1:  # the server acknowledges each chunk (window of 8, §7.2.4)
            while server.stream_info(serial).outstanding:  # type: ignore[union-attr]
                client.receive_data(server.send(StreamAck(serial)))
                assert isinstance(client.next_event(), StreamAck)
    server.receive_data(client.send(StreamFinish(serial)))
    assert isinstance(server.next_event(), StreamFinish)
    elapsed = time.perf_counter() - start
    assert total == sum(map(len, chunks))
    finish = Reply(serial, RESTORE["xs_restore_ret"](length=total)) if proc == 8 else None
    client.receive_data(server.send(finish or StreamConfirm(serial)))
    client.next_event()
    return elapsed


def bare_copy(chunks: list[bytes]) -> float:
    start = time.perf_counter()
    for chunk in chunks:
        memoryview(chunk).tobytes()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="stream size (default 128 MiB)")
    parser.add_argument("--calls", type=int, default=20000, help="round trips per measurement")
    parser.add_argument("--runs", type=int, default=3, help="best of N runs")
    ns = parser.parse_args()

    for proc, label in ((1, "ping (void)"), (2, "echo (16 B)")):
        seconds = best_of(ns.runs, lambda p=proc: small_calls(ns.calls, p))
        rate = 2 * ns.calls / seconds
        print(
            f"small calls, {label:12}: {rate:12,.0f} messages/s ({ns.calls / seconds:,.0f} calls/s)"
        )

    chunks = [os.urandom(CHUNK) for _ in range(ns.mib * 4)]
    nbytes = len(chunks) * CHUNK
    copy_rate = nbytes / best_of(ns.runs, lambda: bare_copy(chunks))
    print(f"bare bytes copy of 256 KiB chunks : {copy_rate / 2**20:10,.0f} MiB/s")
    for proc, variant in ((6, "V2"), (8, "V3"), (4, "V1")):
        record_wire(chunks, proc)
        for delivery in ("writev", "256 KiB reads", "64 KiB reads", "recv_into 64KiB"):
            rate = nbytes / best_of(ns.runs, lambda p=proc, d=delivery: upload(chunks, p, d))
            print(
                f"stream {variant} upload, {delivery:13}: {rate / 2**20:10,.0f} MiB/s"
                f"   ratio to bare copy: {rate / copy_rate:5.2f}"
            )


if __name__ == "__main__":
    main()

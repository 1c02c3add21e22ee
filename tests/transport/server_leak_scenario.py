"""Run a reference server through finished, failed, aborted and abandoned streams, then
print (JSON) the file descriptors and child processes it left behind.

Run as its own process by test_server.py::test_nothing_leaks, so that the descriptor table
holds this scenario and nothing else: in the pytest process, threads and servers kept by
other tests (session fixtures, their endpoints) open and close descriptors at any moment.

    python server_leak_scenario.py DIR [--plant-leak]

``--plant-leak`` leaves one pipe open on purpose: the check must report it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from test_cli_support import child_pids

from xdrstream.endpoints import qemu_stub
from xdrstream.restore.client import AsyncClient, Client
from xdrstream.restore.server import RestoreServer, ServerThread
from xdrstream.transport.errors import RemoteFailure


def fd_targets() -> dict[int, str]:
    targets = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own fd)
            targets[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return targets


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def exercise(directory: Path) -> None:
    with ServerThread(RestoreServer(f"unix:{directory}/xs.sock")) as running:
        for variant in (1, 2, 3):
            data = qemu_stub.synthetic_bytes(qemu_stub.MIN_SIZE + 500_000, variant)
            with Client.connect(running.address) as client:
                client.restore([data], variant=variant)
                client.save(directory / "out", variant=variant, name=f"{len(data)}:1")
                try:
                    client.restore([b"XXXX" + data[4:]], variant=variant)
                except RemoteFailure:
                    pass
                else:
                    raise AssertionError("a restore with a bad header succeeded")
                stream = client.open_restore(variant)
                stream.send(data[:100_000])
                stream.abort()
            client = Client.connect(running.address)  # goes away mid-stream
            client.open_restore(variant).send(data[:100_000])
            client.close()

            async def abandon(address: str = str(running.address), v: int = variant) -> None:
                async_client = await AsyncClient.connect(address)
                stream = await async_client.open_save(v, name=str(8 << 20))
                await stream.recv()
                await async_client.close()

            asyncio.run(abandon())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--plant-leak", action="store_true")
    ns = parser.parse_args()
    before, kids = fd_targets(), child_pids()
    exercise(ns.directory)
    if ns.plant_leak:
        os.pipe()
    wait_until(lambda: not (child_pids() - kids) and len(fd_targets()) <= len(before))
    left = {fd: target for fd, target in fd_targets().items() if before.get(fd) != target}
    print(json.dumps({"fds": left, "children": sorted(child_pids() - kids)}))


if __name__ == "__main__":
    main()

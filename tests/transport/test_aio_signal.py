"""aio.Signal: the asyncio driver's wake-up flag (set/clear, wait with a timeout, no Task)."""

from __future__ import annotations

import asyncio

from xdrstream.transport.aio import Signal


def test_set_wakes_every_waiter_in_one_loop_iteration() -> None:
    async def main() -> None:
        signal = Signal()
        woken: list[bool] = []

        async def waiter() -> None:
            woken.append(await signal.wait(60.0))

        tasks = [asyncio.ensure_future(waiter()) for _ in range(2)]
        await asyncio.sleep(0)  # both are waiting now
        assert not woken and not signal.is_set()
        signal.set()
        await asyncio.sleep(0)  # one iteration: the waiters' futures are resolved
        await asyncio.sleep(0)
        assert woken == [True, True]
        await asyncio.gather(*tasks)
        assert await signal.wait(None)  # set: returns at once
        signal.clear()
        assert not signal.is_set() and not signal._waiters

    asyncio.run(main())


def test_a_timeout_or_a_cancel_leaves_no_waiter_behind() -> None:
    async def main() -> None:
        signal = Signal()
        assert await signal.wait(0) is False  # nothing to wait for
        assert await signal.wait(0.001) is False  # expired: not set
        task = asyncio.ensure_future(signal.wait(60.0))
        await asyncio.sleep(0)
        assert len(signal._waiters) == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled() and not signal._waiters
        signal.set()  # nobody waits: just the flag
        assert signal.is_set()

    asyncio.run(main())

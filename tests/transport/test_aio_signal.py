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


def test_waits_share_one_timer_and_an_early_one_does_not_cut_a_longer_wait() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        signal = Signal()
        # waits set in time (every frame's) reuse the timer instead of making one each
        timers = []
        for _ in range(3):
            task = asyncio.ensure_future(signal.wait(60.0))
            await asyncio.sleep(0)
            timers.append(signal._timer)
            signal.set()
            assert await task is True
            signal.clear()
        first = timers[0]
        assert first is not None and timers == [first] * 3
        # a shorter deadline replaces it; a longer wait woken by that timer waits on
        short = asyncio.ensure_future(signal.wait(0.02))
        await asyncio.sleep(0)
        assert signal._timer is not first and first.cancelled()
        start = loop.time()
        assert await short is False
        long = asyncio.ensure_future(signal.wait(0.2))
        await asyncio.sleep(0)
        early = loop.call_at(loop.time() + 0.01, signal._expire)  # a timer due first
        assert await long is False
        assert loop.time() - start >= 0.2 - 0.005  # not cut short by the early timer
        early.cancel()
        # woken in time after a spurious timer wake-up: set wins
        waiting = asyncio.ensure_future(signal.wait(60.0))
        await asyncio.sleep(0)
        signal._expire()  # spurious: not set, deadline far away
        await asyncio.sleep(0)
        assert not waiting.done()
        signal.set()
        assert await waiting is True
        timer = signal._timer
        signal.close()
        assert signal._timer is None and (timer is None or timer.cancelled())

    asyncio.run(main())


def test_a_future_added_is_resolved_by_set_and_a_discarded_one_is_not_kept() -> None:
    """What a server handler waiting on a full pipe uses to give up at the client's abort
    with one future (Stream.notify_abort): no waiter may stay behind per wait."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        signal = Signal()
        kept, dropped = loop.create_future(), loop.create_future()
        signal.add_waiter(kept)
        signal.add_waiter(dropped)
        signal.discard(dropped)
        assert signal._waiters == [kept]
        signal.set()
        assert kept.done() and not dropped.done()
        late = loop.create_future()
        signal.add_waiter(late)  # set already: at once
        assert late.done() and not signal._waiters
        signal.discard(late)  # not there: nothing to do

    asyncio.run(main())

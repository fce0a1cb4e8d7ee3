"""The byte budget that bounds a sync's memory while large files go up."""

from __future__ import annotations

import asyncio

import pytest

from offload.sync.budget import ByteBudget as _ByteBudget


async def test_holders_never_exceed_the_limit_and_each_gets_its_turn():
    budget = _ByteBudget(10)
    peak = 0
    done: list[int] = []

    async def upload(number: int, size: int) -> None:
        nonlocal peak
        async with budget.hold(size):
            peak = max(peak, budget.held)
            await asyncio.sleep(0.001 * (number % 3))
        done.append(number)

    await asyncio.gather(*(upload(n, size) for n, size in enumerate([6, 6, 3, 10, 1, 4, 9, 2])))
    assert peak <= 10
    assert sorted(done) == list(range(8))
    assert budget.held == 0


async def test_something_larger_than_the_limit_waits_for_everything_then_goes_alone():
    budget = _ByteBudget(10)
    async with budget.hold(3):
        waiting = asyncio.ensure_future(_hold_briefly(budget, 50))
        await asyncio.sleep(0)
        assert not waiting.done()
    await waiting
    assert budget.held == 0


async def test_a_smaller_waiter_goes_ahead_of_a_larger_one_that_does_not_fit():
    budget = _ByteBudget(10)
    order: list[str] = []
    release_b = asyncio.Event()

    async def b() -> None:
        async with budget.hold(2):
            await release_b.wait()

    async with budget.hold(6):  # A
        holder = asyncio.ensure_future(b())
        await asyncio.sleep(0)
        large = asyncio.ensure_future(_hold_briefly(budget, 8, order, "large"))
        small = asyncio.ensure_future(_hold_briefly(budget, 2, order, "small"))
        await asyncio.sleep(0)
        assert order == []  # a newcomer queues while someone waits, even if it fits
        release_b.set()
        await holder
        await small  # 6 + 2 fits; 6 + 8 does not
        assert order == ["small"]
        assert not large.done()
    await large
    assert order == ["small", "large"]
    assert budget.held == 0


async def test_a_zero_size_hold_never_waits_even_behind_a_waiter():
    budget = _ByteBudget(10)
    async with budget.hold(10):
        waiting = asyncio.ensure_future(_hold_briefly(budget, 5))
        await asyncio.sleep(0)
        async with budget.hold(0):
            assert budget.held == 10
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert budget.held == 0


async def test_a_cancelled_wait_gives_nothing_away_and_blocks_nobody():
    budget = _ByteBudget(10)
    async with budget.hold(8):
        cancelled = asyncio.ensure_future(_hold_briefly(budget, 5))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert budget.held == 0
    async with budget.hold(10):
        assert budget.held == 10


async def _hold_briefly(
    budget: _ByteBudget, size: int, order: list[str] | None = None, name: str = ""
) -> None:
    async with budget.hold(size):
        if order is not None:
            order.append(name)
        await asyncio.sleep(0.001)

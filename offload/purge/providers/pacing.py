"""A token bucket per provider, so offload stays inside each vendor's documented rate limit.

Hand-written rather than a dependency: it is a few lines, and it must do one
thing a general limiter does not: when the wait for tokens is longer than a
drain should hold a claimed outbox entry, it raises ``PurgeRetry`` with that
wait as ``retry_after`` instead of sleeping, so the entry goes back to the
outbox for later. A 429 pauses the bucket for the Retry-After the API gave.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from offload.purge.providers.base import PurgeRetry

#: The longest a send sleeps for tokens; a longer wait defers the batch instead.
MAX_WAIT = 5.0


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up; each request takes its cost."""

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        what: str = "requests",
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")
        self.rate, self.capacity, self.what = rate, float(capacity), what
        self.max_wait, self.clock = max_wait, clock
        self.tokens = float(capacity)
        self.updated = clock()
        self.paused_until = 0.0

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0: now); reserves them when within max_wait."""
        now = self.clock()
        self._refill(now)
        cost = min(float(cost), self.capacity)
        wait = max(self.paused_until - now, (cost - self.tokens) / self.rate, 0.0)
        if wait > self.max_wait:
            raise PurgeRetry(f"paced to the API's rate limit ({self.what})", retry_after=wait)
        self.tokens -= cost  # may go below zero: the wait pays the debt back
        return wait

    async def take(self, cost: float = 1.0) -> None:
        """Wait (briefly) for ``cost`` tokens, or raise PurgeRetry when the wait is long."""
        wait = self.wait_for(cost)
        if wait > 0:
            await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the API answered 429 with a Retry-After)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

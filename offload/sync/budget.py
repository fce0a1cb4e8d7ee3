"""A bound on the bytes that uploads hold in memory at once.

awscrt buffers a single PUT whole, and boto3 holds a multipart upload's parts
in flight: without a bound, a folder of large files would make a sync's memory
as large as the files in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ByteBudget:
    """At most ``limit`` bytes held at once; one item larger than that waits for all.

    A waiter that fits goes ahead of a larger one that does not, so memory
    stays busy; the larger one goes as soon as enough is given back.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.limit)
        if size <= 0:
            yield
            return
        if self._waiting or self.held + size > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append((size, waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                if (size, waiter) in self._waiting:
                    self._waiting.remove((size, waiter))
                elif not waiter.cancelled():
                    self._give_back(size)  # granted as the wait was cancelled
                raise
        else:
            self.held += size
        try:
            yield
        finally:
            self._give_back(size)

    def _give_back(self, size: int) -> None:
        self.held -= size
        still: list[tuple[int, asyncio.Future[None]]] = []
        for need, waiter in self._waiting:
            if waiter.done():
                continue
            if self.held + need <= self.limit:
                self.held += need
                waiter.set_result(None)
            else:
                still.append((need, waiter))
        self._waiting = still

"""Concurrent loads of one key share one storage request.

When a CDN purge makes a thousand requests miss at once, or a CMS sends the
same upload twice, single-flight turns them into one request per key. Both the
origin's cache and the offloader use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class SingleFlight:
    """Concurrent calls for one key share one run of the loader.

    The loader runs in its own task: a caller that goes away (a client hanging
    up) cancels only its own wait, never the load the others are waiting for.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[Any]] = {}

    async def run(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an error nobody awaited is not logged as lost

    def __len__(self) -> int:
        return len(self._running)

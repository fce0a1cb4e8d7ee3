"""Storage writes and listings timed into ``offload_storage_seconds{operation}``.

The origin times its own reads (``get``, ``head``). Writes happen in the
offloader and in sync runs, which know nothing of metrics, so the server times
them where it opens each site's storage: the instance's ``put``, ``copy``,
``delete`` and ``list`` are replaced by timed ones. Replacing the bound methods
on the instance, rather than wrapping the storage in a proxy, keeps its type,
so code that asks ``isinstance(storage, LocalStorage)`` still gets the truth.
A listing is timed from its first page to its last.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any

from offload.storage import Storage

Record = Callable[[str, float], None]


def time_storage_writes(storage: Storage, record: Record) -> Storage:
    """Time ``storage``'s put, copy, delete and list into ``record(operation, seconds)``."""
    for name in ("put", "copy", "delete"):
        setattr(storage, name, _timed_call(name, getattr(storage, name), record))
    storage.list = _timed_listing(storage.list, record)  # type: ignore[method-assign]
    return storage


def _timed_call(
    operation: str, call: Callable[..., Awaitable[Any]], record: Record
) -> Callable[..., Awaitable[Any]]:
    @wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            record(operation, time.perf_counter() - started)

    return timed


def _timed_listing(
    listing: Callable[..., AsyncIterator[Any]], record: Record
) -> Callable[..., AsyncIterator[Any]]:
    @wraps(listing)
    async def timed(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            async for item in listing(*args, **kwargs):
                yield item
        finally:
            record("list", time.perf_counter() - started)

    return timed

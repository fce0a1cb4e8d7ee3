"""One bucket opened for a bucket tool (``archive``, ``check-layout``), and closed after.

A bucket tool works on one ``s3://bucket/prefix`` or ``site:NAME`` with its own
bounded pool: opening the storage reads AWS config files, so it happens in
that pool, never on the event loop, and the storage is closed however the
work ends.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor

from offload.config.settings import Settings
from offload.sync.locations import Bucket, LocationError, S3Options, open_location
from offload.sync.runner import opened


@contextlib.asynccontextmanager
async def opened_bucket(
    text: str, s3: S3Options, settings: Settings | None, *, threads: int, name: str
) -> AsyncIterator[tuple[Bucket, Executor]]:
    """The bucket ``text`` names and the pool it runs in, for the ``async with`` block."""
    opener = functools.partial(open_location, text, s3, settings)
    with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
        async with opened(opener, pool) as location:
            if not isinstance(location, Bucket):
                raise LocationError(f"{text}: name a bucket (s3://bucket/prefix or site:NAME)")
            yield location, pool

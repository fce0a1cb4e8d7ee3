"""The server's purge drain and its peers' changes: started with the app, stopped with it.

Every worker of every host runs a drain for the sites that purge, so the outbox
empties while any one of them is up. The drain's HTTP client is its own (not
the origin's storage clients) with ``purge_timeout`` per request.

When another process shares the manifest (``--workers`` above one, or a
PostgreSQL manifest shared by several hosts), an upload or deletion through it
changes objects this process's origin may hold in memory; ``follow_changes``
reads the manifest's changes feed every second and forgets those keys, so
every origin stops answering a deleted object within about a second, not after
``meta_cache_ttl``; the purges of a change wait ``SETTLE`` seconds for that, so
that an edge asking again after the purge meets no origin that still has the
old object in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from offload.manifest import Manifest, ManifestError
from offload.purge.drain import PurgeDrain
from offload.purge.providers.base import Provider, provider_for
from offload.server.appkeys import EXECUTOR, MANIFEST, METRICS, ORIGIN_CACHE, PURGES, SETTINGS

log = logging.getLogger(__name__)

#: Seconds between two reads of the manifest's changes feed.
FOLLOW_EVERY = 1.0
#: Seconds a purge waits after its change when other processes serve the same objects:
#: two reads of the feed, so every peer has forgotten the key when the edge asks again.
SETTLE = 2 * FOLLOW_EVERY


async def purge_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the drain (when a site purges) and the changes feed (when the manifest is shared)."""
    settings = app[SETTINGS]
    manifest = app[MANIFEST]
    loop = asyncio.get_running_loop()
    executor = app[EXECUTOR]

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await loop.run_in_executor(executor, fn, *args)

    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.purge_timeout),
        headers={"User-Agent": "offload"},
    )
    providers: dict[str, Provider] = {}
    for name, site in settings.sites.items():
        provider = provider_for(site, session=session, run=run, timeout=settings.purge_timeout)
        if provider is not None:
            providers[name] = provider
    peers = settings.workers > 1 or manifest.shared
    drain = app[PURGES] = PurgeDrain(
        manifest,
        providers,
        run,
        give_up_after=settings.purge_give_up_after,
        # With peers, a purge waits until their origins have read the change from the
        # feed: sent sooner, an edge could fetch the old bytes again from one of them.
        settle=SETTLE if peers else 0.0,
        observer=app[METRICS],
    )
    drain.start()
    follower = None
    if peers:
        follower = asyncio.create_task(follow_changes(app, manifest, run), name="offload-changes")
    try:
        yield
    finally:
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        await drain.stop()
        await session.close()


async def follow_changes(
    app: web.Application, manifest: Manifest, run: Callable[..., Awaitable[Any]]
) -> None:
    """Forget, in this process's origin, every key another process changed."""
    cache = app[ORIGIN_CACHE]
    cursor: int | None = None
    while True:
        try:
            cursor, changed = await run(manifest.changes_after, cursor)
        except ManifestError as exc:
            log.warning("changes feed: %s", exc)
            changed = []
        for site, key in changed:
            cache.forget(site, key)
        await asyncio.sleep(FOLLOW_EVERY)

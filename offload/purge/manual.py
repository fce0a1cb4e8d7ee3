"""``offload purge`` by hand: into the outbox first, then sent from this process.

The items go to the outbox before a request is made, so a purge the CDN API
does not take now is not lost: ``offload serve`` (any worker, any host) sends
it later. Meanwhile this process runs a drain of its own for the site and
waits up to ``wait`` seconds for the items to be sent; it sends whatever else
of the site's outbox is due as well, which does no harm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from offload.config.settings import Settings, Site
from offload.manifest import Manifest, PurgeItem
from offload.purge.drain import PurgeDrain
from offload.purge.providers.base import provider_for


@dataclass
class ManualPurge:
    """What became of each item: sent now, or waiting in the outbox (with the API's last word)."""

    sent: list[PurgeItem] = field(default_factory=list)
    waiting: dict[PurgeItem, str | None] = field(default_factory=dict)
    #: Items given up (``purge_give_up_after`` passed while this run tried), with the last error.
    given_up: dict[PurgeItem, str] = field(default_factory=dict)
    #: Entries of the site still in the outbox at the end (any, not only these items).
    left: int = 0


class PurgeOff(ValueError):
    """The site has ``purge = "none"``."""


async def send_queued(settings: Settings, site: Site, manifest: Manifest, *, wait: float) -> int:
    """Send the site's due outbox entries for up to ``wait`` seconds; how many still wait.

    ``offload sync`` into a site calls this at its end, so its purges go out
    even where no ``offload serve`` shares the manifest.
    """
    return (await purge_now(settings, site, manifest, [], wait=wait, until_empty=True)).left


async def purge_now(
    settings: Settings,
    site: Site,
    manifest: Manifest,
    items: list[PurgeItem],
    *,
    wait: float,
    until_empty: bool = False,
) -> ManualPurge:
    """Put ``items`` in the outbox and send them, waiting at most ``wait`` seconds.

    ``until_empty``: wait until the site's whole outbox is sent instead (or ``wait`` ends).
    """
    loop = asyncio.get_running_loop()
    started = time.time()
    with ThreadPoolExecutor(4, thread_name_prefix="offload-purge") as executor:

        async def run(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(executor, fn, *args)

        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.purge_timeout),
            headers={"User-Agent": "offload"},
        ) as session:
            provider = provider_for(site, session=session, run=run, timeout=settings.purge_timeout)
            if provider is None:
                raise PurgeOff(f'site {site.name!r} has purge = "none": set a purge provider')
            await run(manifest.enqueue_purges, items)
            drain = PurgeDrain(
                manifest, {site.name: provider}, run, give_up_after=settings.purge_give_up_after
            )
            drain.start()
            try:
                if until_empty:
                    await _until_empty(drain, manifest, site, run, wait)
                else:
                    await drain.wait_sent(items, wait)
            finally:
                await drain.stop()
            queue = await run(lambda: manifest.purge_queue(site=site.name, limit=100_000))
    result = ManualPurge(left=queue.waiting)
    still = {entry.item: entry.last_error for entry in queue.entries}
    # Gone from the outbox is sent, unless it went to the give-ups meanwhile.
    dropped = {g.item: g.error for g in queue.recent_give_ups if g.gave_up_at >= started}
    for item in dict.fromkeys(items):
        if item in still:
            result.waiting[item] = still[item]
        elif item in dropped:
            result.given_up[item] = dropped[item]
        else:
            result.sent.append(item)
    return result


async def _until_empty(
    drain: PurgeDrain, manifest: Manifest, site: Site, run: Callable[..., Any], wait: float
) -> None:
    """Until no entry of the site is due (sent, or waiting for a later try), or ``wait`` ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while loop.time() < deadline:
        queue = await run(lambda: manifest.purge_queue(site=site.name, limit=1))
        now = time.time()
        if not queue.waiting or all(entry.next_at > now for entry in queue.entries):
            return
        drain.wake()
        await asyncio.sleep(min(0.2, max(deadline - loop.time(), 0)))

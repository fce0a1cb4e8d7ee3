"""``offload purge`` by hand: into the outbox first, then sent from this process.

The items go to the outbox before a request is made, so a purge the CDN API
does not take now is not lost: ``offload serve`` (any worker, any host) sends
it later. Meanwhile this process runs a drain of its own for the site and
waits up to ``wait`` seconds for the items to be sent; it sends whatever else
of the site's outbox is due as well, which does no harm.
"""

from __future__ import annotations

import asyncio
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


class PurgeOff(ValueError):
    """The site has ``purge = "none"``."""


async def purge_now(
    settings: Settings, site: Site, manifest: Manifest, items: list[PurgeItem], *, wait: float
) -> ManualPurge:
    """Put ``items`` in the outbox and send them, waiting at most ``wait`` seconds."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(4, thread_name_prefix="offload-purge") as executor:

        async def run(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(executor, fn, *args)

        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.purge_timeout),
            headers={"User-Agent": "offload"},
        ) as session:
            provider = provider_for(site, session=session, run=run)
            if provider is None:
                raise PurgeOff(f"site {site.name!r} has purge = \"none\": set a purge provider")
            await run(manifest.enqueue_purges, items)
            drain = PurgeDrain(
                manifest, {site.name: provider}, run, give_up_after=settings.purge_give_up_after
            )
            drain.start()
            try:
                sent_all = await drain.wait_sent(items, wait)
            finally:
                await drain.stop()
            result = ManualPurge()
            if sent_all:
                result.sent = list(dict.fromkeys(items))
                return result
            queue = await run(lambda: manifest.purge_queue(site=site.name, limit=100_000))
    still = {entry.item: entry.last_error for entry in queue.entries}
    for item in dict.fromkeys(items):
        if item in still:
            result.waiting[item] = still[item]
        else:
            result.sent.append(item)
    return result

"""Whether each site's storage answers: for start-up and for ``/_offload/health``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from offload import __version__
from offload.server.appkeys import SETTINGS, STORAGES
from offload.storage import Storage, StorageError


@dataclass(frozen=True)
class SiteHealth:
    site: str
    storage: str
    ok: bool
    error: str | None = None


async def check_storage(site: str, storage: Storage, within: float) -> SiteHealth:
    """Ask one storage to answer within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            await storage.check()
    except TimeoutError:
        return SiteHealth(site, storage.url, False, f"no answer within {within:g} s")
    except StorageError as exc:
        return SiteHealth(site, storage.url, False, str(exc))
    return SiteHealth(site, storage.url, True)


async def check_storages(storages: Mapping[str, Storage], within: float) -> list[SiteHealth]:
    """Check every site's storage at once, so one slow bucket does not delay the rest."""
    return list(
        await asyncio.gather(
            *(check_storage(name, storage, within) for name, storage in storages.items())
        )
    )


async def health(request: web.Request) -> web.Response:
    """``GET /_offload/health``: always 200 while the process runs; the body says what is down.

    A storage outage is shared by every instance, so it should not take this
    one out of a load balancer's rotation; monitors read ``status``.
    """
    app = request.app
    storages: dict[str, Storage] = app[STORAGES]
    results = await check_storages(storages, app[SETTINGS].storage_timeout)
    return web.json_response(
        {
            "status": "ok" if all(r.ok for r in results) else "degraded",
            "version": __version__,
            "pid": os.getpid(),  # which worker answered, with --workers N
            "sites": {
                r.site: {"storage": r.storage, "ok": r.ok, "error": r.error} for r in results
            },
        },
        headers={"Cache-Control": "no-store"},
    )

"""Whether each site's storage answers: for start-up and for ``/_offload/health``.

``/_offload/health`` answers within a second whatever the storages do: a
monitor or a load balancer that waits longer takes the instance for dead. Each
storage is given ``HEALTH_WITHIN`` seconds at most, and has at most one check
in flight, shared by the health requests that come while it runs: a hung
endpoint holds one thread of its own pool, not one per request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from aiohttp import web

from offload import __version__
from offload.server.appkeys import CHECKS, SETTINGS, STORAGES
from offload.server.operator import is_operator
from offload.storage import Storage, StorageError

#: Seconds ``/_offload/health`` waits for any storage's check (all run at once).
HEALTH_WITHIN = 0.75


@dataclass(frozen=True)
class SiteHealth:
    site: str
    storage: str
    ok: bool
    error: str | None = None


async def check_storage(
    site: str, storage: Storage, within: float, check: Awaitable[None] | None = None
) -> SiteHealth:
    """Ask one storage to answer within ``within`` seconds (``check``: one already asked)."""
    try:
        async with asyncio.timeout(within):
            await (storage.check() if check is None else check)
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


async def _shared_check(
    checks: dict[str, asyncio.Task[None]], site: str, storage: Storage, within: float
) -> SiteHealth:
    """Join the storage's check in flight, or start one; wait for it ``within`` seconds.

    The check goes on when this request stops waiting (shielded), so the next
    request joins it rather than starting another on a storage that hangs.
    """
    task = checks.get(site)
    if task is None:
        task = checks[site] = asyncio.ensure_future(storage.check())
        task.add_done_callback(lambda done: _finished(checks, site, done))
    return await check_storage(site, storage, within, asyncio.shield(task))


def _finished(checks: dict[str, asyncio.Task[None]], site: str, task: asyncio.Task[None]) -> None:
    if checks.get(site) is task:
        del checks[site]
    if not task.cancelled():
        task.exception()  # retrieved, so an error no request waited for is not logged as lost


async def health(request: web.Request) -> web.Response:
    """``GET /_offload/health``: always 200 while the process runs; the body says what is down.

    A storage outage is shared by every instance, so it should not take this
    one out of a load balancer's rotation; monitors read ``status``. Anyone gets
    ``{"status": "ok" | "degraded"}``; the version, pid and each site's storage
    and error go only to a request with the ``admin_token`` (``operator``).
    """
    app = request.app
    storages: dict[str, Storage] = app[STORAGES]
    within = min(app[SETTINGS].storage_timeout, HEALTH_WITHIN)
    checks = app[CHECKS]
    results = await asyncio.gather(
        *(_shared_check(checks, name, storage, within) for name, storage in storages.items())
    )
    status = "ok" if all(r.ok for r in results) else "degraded"
    if not is_operator(request):
        # Storage URLs, local paths and endpoint errors are for the operator only.
        return web.json_response({"status": status}, headers={"Cache-Control": "no-store"})
    return web.json_response(
        {
            "status": status,
            "version": __version__,
            "pid": os.getpid(),  # which worker answered, with --workers N
            "sites": {
                r.site: {"storage": r.storage, "ok": r.ok, "error": r.error} for r in results
            },
        },
        headers={"Cache-Control": "no-store"},
    )

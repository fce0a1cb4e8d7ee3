"""The aiohttp application: one factory, no globals.

``create_app(settings)`` wires the routes, opens each site's storage at
start-up and closes it at clean-up; later parts (the origin, the webhooks)
mount their handlers here. Errors become short JSON bodies in one middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from offload.config.settings import Settings
from offload.config.sites import manifest_folder, open_site_storage
from offload.manifest import Manifest, open_manifest
from offload.media.offloader import Offloader
from offload.server import asset_routes, webhooks
from offload.server.appkeys import (
    CHECKS,
    DEBUG,
    EXECUTOR,
    MANIFEST,
    METRICS,
    OFFLOADERS,
    ORIGIN,
    ORIGIN_CACHE,
    PEER_BODIES,
    POOLS,
    RECENT,
    REPLAYS,
    SETTINGS,
    STORAGES,
    SYNC_RUNS,
    UNVERIFIED,
)
from offload.server.health import health
from offload.server.logs import echo_request_id, request_id, request_id_middleware
from offload.server.metrics import CONTENT_TYPE as metrics_content_type
from offload.server.metrics import PUBLISH_SECONDS
from offload.server.operator import is_operator, refusal
from offload.server.origin import Origin
from offload.server.origin_cache import OriginCache
from offload.server.origin_metrics import OriginMetrics
from offload.server.pools import StoragePool
from offload.server.purging import purge_ctx
from offload.server.recent import RecentWebhooks
from offload.server.replays import ReplayCache
from offload.server.status_page import status_page
from offload.server.storage_metrics import time_storage_writes
from offload.server.sync_runs import SyncRuns
from offload.storage import Storage, StorageError, StorageUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The replay cache's file, beside the manifest (shared by the workers).
REPLAYS_FILE = "webhook-replays.sqlite3"

#: Seconds a client is told to wait when storage is down.
RETRY_AFTER = 5


def create_app(settings: Settings, *, debug: bool = False) -> web.Application:
    """Build the app for these settings; storages open when it starts."""
    app = web.Application(middlewares=[request_id_middleware, error_middleware])
    app.on_response_prepare.append(echo_request_id)
    app[SETTINGS] = settings
    app[DEBUG] = debug
    app[METRICS] = metrics = OriginMetrics()
    app[ORIGIN_CACHE] = OriginCache(
        meta_entries=settings.meta_cache_entries,
        meta_ttl=settings.meta_cache_ttl,
        negative_entries=settings.negative_cache_entries,
        body_bytes=settings.body_cache_bytes,
        body_max_object=settings.body_cache_max_object,
        record=metrics.cache,
    )
    app[SYNC_RUNS] = SyncRuns()
    app[RECENT] = RecentWebhooks()
    app[CHECKS] = {}
    app[UNVERIFIED] = asyncio.Semaphore(webhooks.UNVERIFIED_BODIES)
    app[PEER_BODIES] = {}
    app[REPLAYS] = ReplayCache(manifest_folder(settings) / REPLAYS_FILE)
    app.cleanup_ctx.append(_storages_ctx)
    app.cleanup_ctx.append(_metrics_ctx)
    app.cleanup_ctx.append(purge_ctx)
    app.router.add_get("/_offload/health", health)
    app.router.add_get("/_offload/metrics", metrics_page)
    app.router.add_get("/_offload/status", status_page)
    webhooks.add_routes(app)
    asset_routes.add_routes(app)  # Specify web-asset-server paths, on asset_server sites
    # Every other path is a key; other methods get aiohttp's 405 with Allow.
    for method in ("GET", "HEAD", "OPTIONS"):
        app.router.add_route(method, r"/{key:[\s\S]*}", serve_origin)  # newlines too: 400
    return app


async def serve_origin(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/_offload/"):
        raise web.HTTPNotFound
    return await request.app[ORIGIN].handle(request)


async def metrics_page(request: web.Request) -> web.Response:
    """``GET /_offload/metrics``: Prometheus text, for operators only (see ``operator``)."""
    if not is_operator(request):
        return refusal()
    metrics = request.app[METRICS]
    merged = None
    if metrics.shared:
        metrics.publish()  # this worker's latest counts, beside the other workers'
        # The loop's default pool, not the storage pool: a scrape must answer while
        # a slow bucket keeps every storage thread busy.
        merged = await asyncio.get_running_loop().run_in_executor(None, metrics.collect)
    body = metrics.render(merged)
    return web.Response(
        body=body.encode(),
        headers={"Content-Type": metrics_content_type, "Cache-Control": "no-store"},
    )


async def _storages_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open a pool for each site and one for the rest, and every site's storage; close them
    when the app stops.

    Each site's storage, its uploads' files and its manifest rows use the site's
    own pool, so a bucket that hangs holds its own threads and no other site's.
    """
    settings = app[SETTINGS]
    threads = settings.storage_threads
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="offload-io")
    app[EXECUTOR] = executor
    pools = app[POOLS] = {name: StoragePool(name, threads) for name in settings.sites}
    loop = asyncio.get_running_loop()
    storages: dict[str, Storage] = {}
    try:
        for name, site in settings.sites.items():
            # open_storage reads AWS config files: not on the event loop.
            opened = await loop.run_in_executor(
                pools[name], open_site_storage, settings, site, pools[name]
            )
            storages[name] = time_storage_writes(opened, app[METRICS].storage)
        app[STORAGES] = storages
        # Built now, each in its own pool, rather than by the first request or health check.
        await asyncio.gather(
            *(_warm_up(storage, settings.storage_timeout) for storage in storages.values())
        )
        app[ORIGIN] = Origin(settings, storages, app[ORIGIN_CACHE], app[METRICS], pools)
        # Opens its file, or connects, on first use; a PostgreSQL pool as large as a site's.
        manifest = app[MANIFEST] = open_manifest(settings.manifest, pool_size=threads)

        async def in_executor(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(executor, fn, *args)

        app[SYNC_RUNS].attach(manifest, in_executor)
        app[ORIGIN].transforms.attach(manifest, in_executor)
        shared_replays = manifest.shared_replays()
        if shared_replays is not None:  # every host refuses a webhook any host took
            app[REPLAYS] = shared_replays
        app[OFFLOADERS] = _offloaders(app, manifest, pools)
        yield
    finally:
        await app[SYNC_RUNS].close()
        for check in app[CHECKS].values():
            check.cancel()
        if MANIFEST in app:
            await loop.run_in_executor(executor, app[MANIFEST].close)
        await loop.run_in_executor(executor, app[REPLAYS].close)
        for storage in storages.values():
            await storage.close()
        executor.shutdown(wait=False, cancel_futures=True)
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


async def _warm_up(storage: Storage, within: float) -> None:
    """Make the storage's client now; a failure here is the first request's to report."""
    try:
        async with asyncio.timeout(within):
            await storage.warm_up()
    except (TimeoutError, StorageError) as exc:
        log.debug("%s: not warmed up: %s", storage.url, exc)


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """With shared metrics, publish this worker's counts every PUBLISH_SECONDS and at exit.

    A scrape reaches one worker: the others' counts are as fresh as their last publish.
    """
    metrics = app[METRICS]
    if not metrics.shared:
        yield
        return

    async def publish_often() -> None:
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            metrics.publish()

    task = asyncio.create_task(publish_often(), name="offload-metrics")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.publish()  # a stopped worker's counts stay in the totals


def _offloaders(
    app: web.Application, manifest: Manifest, pools: dict[str, StoragePool]
) -> dict[str, Offloader]:
    settings, cache = app[SETTINGS], app[ORIGIN_CACHE]
    loop = asyncio.get_running_loop()

    def runner(pool: StoragePool) -> Callable[..., Awaitable[Any]]:
        async def run(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        return run

    return {
        name: Offloader(
            site,
            app[STORAGES][name],
            manifest,
            runner(pools[name]),
            concurrency=settings.upload_concurrency,
            forget=functools.partial(cache.forget, name),
        )
        for name, site in settings.sites.items()
    }


def _error_body(status: int, message: str) -> dict[str, object]:
    return {"error": message, "status": status, "request_id": request_id()}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a short JSON answer; never a traceback, never a secret."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return web.json_response(
            _error_body(exc.status, exc.reason), status=exc.status, headers=_kept_headers(exc)
        )
    except StorageUnavailable as exc:
        log.warning("%s %s: storage unavailable: %s", request.method, request.path, exc)
        return web.json_response(
            _error_body(503, "storage unavailable, try again later"),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"},
        )
    except StorageError as exc:
        log.error("%s %s: storage error: %s", request.method, request.path, exc)
        return web.json_response(
            _error_body(502, "storage error"), status=502, headers={"Cache-Control": "no-store"}
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise  # a client that went away: aiohttp closes the connection quietly
    except Exception as exc:
        log.error(
            "%s %s: internal error: %s: %s",
            request.method,
            request.path,
            type(exc).__name__,
            exc,
            exc_info=request.app[DEBUG],
        )
        return web.json_response(
            _error_body(500, "internal error"), status=500, headers={"Cache-Control": "no-store"}
        )


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    """Headers an HTTP error must keep (Allow on 405, Retry-After, WWW-Authenticate...)."""
    dropped = {"content-type", "content-length"}
    return {k: v for k, v in exc.headers.items() if k.lower() not in dropped}

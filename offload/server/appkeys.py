"""The typed keys under which the app keeps what its handlers share.

Kept apart from ``app`` so that a handler module can name a key without
importing the app factory (which imports every handler).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from offload.config.settings import Settings
from offload.manifest import Manifest
from offload.manifest.base import TakenWebhooks
from offload.media.offloader import Offloader
from offload.purge.drain import PurgeDrain
from offload.server.origin import Origin
from offload.server.origin_cache import OriginCache
from offload.server.origin_metrics import OriginMetrics
from offload.server.pools import StoragePool
from offload.server.recent import RecentWebhooks
from offload.server.sync_runs import SyncRuns
from offload.storage import Storage

SETTINGS = web.AppKey("settings", Settings)
#: Each site's storage, by site name; opened at start-up, closed at clean-up.
STORAGES = web.AppKey("storages", dict[str, Storage])
#: The general bounded pool, for blocking work tied to no site's storage (spooling
#: webhook bodies, rewriting); a site's own calls run in its ``POOLS`` entry.
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
#: Each site's own pool, by site name: its storage, file and manifest calls.
POOLS = web.AppKey("pools", dict[str, StoragePool])
#: The health check in flight for each site's storage, shared by concurrent requests.
CHECKS = web.AppKey("checks", dict[str, asyncio.Task[None]])
#: Print Python tracebacks of unexpected errors in the log (``--traceback``).
DEBUG = web.AppKey("debug", bool)
#: The origin handler and what it keeps between requests.
ORIGIN = web.AppKey("origin", Origin)
ORIGIN_CACHE = web.AppKey("origin_cache", OriginCache)
METRICS = web.AppKey("metrics", OriginMetrics)
#: The record of offloaded files (None until the app starts).
MANIFEST = web.AppKey("manifest", Manifest)
#: Each site's uploads and deletions, by site name.
OFFLOADERS = web.AppKey("offloaders", dict[str, Offloader])
#: Background sync runs started by the CMS.
SYNC_RUNS = web.AppKey("sync_runs", SyncRuns)
#: The last webhooks answered and files that failed, for the status page.
RECENT = web.AppKey("recent_webhooks", RecentWebhooks)
#: v1 webhook bodies being read before their signature is known (webhooks.UNVERIFIED_BODIES).
UNVERIFIED = web.AppKey("unverified", asyncio.Semaphore)
#: Webhook bodies being read, by client address (``webhook_bodies_per_peer``).
PEER_BODIES = web.AppKey("peer_bodies", dict[str, int])
#: Signed webhook requests already taken (a replay gets 409).
REPLAYS = web.AppKey("replays", TakenWebhooks)
#: The purge outbox's sender in this process (started with the app).
PURGES = web.AppKey("purges", PurgeDrain)

"""The origin's Prometheus metrics, named once: requests, caches, storage latency, bytes.

One instance per process; ``/_offload/metrics`` renders its registry. With
``--workers N`` each process counts its own requests, and a scrape of the
shared port reaches one of them: the answer carries ``offload_worker_info``
with its pid, so a dashboard can tell the series apart (see the README).
"""

from __future__ import annotations

import os

from offload.server.metrics import LATENCY_BUCKETS, Registry


class OriginMetrics:
    def __init__(self) -> None:
        self.registry = Registry()
        self._requests = self.registry.counter(
            "offload_requests_total", "Origin requests answered, by site and status.",
            ("site", "status"),
        )  # fmt: skip
        self._latency = self.registry.histogram(
            "offload_request_seconds", "Time to answer an origin request (headers and body).",
            LATENCY_BUCKETS,
        )  # fmt: skip
        self._hits = self.registry.counter(
            "offload_cache_hits_total", "Lookups answered from memory, by cache.", ("cache",)
        )
        self._misses = self.registry.counter(
            "offload_cache_misses_total", "Lookups that went to storage, by cache.", ("cache",)
        )
        self._storage = self.registry.histogram(
            "offload_storage_seconds", "Storage request latency, by operation.",
            LATENCY_BUCKETS, ("operation",),
        )  # fmt: skip
        self._sent = self.registry.counter(
            "offload_bytes_sent_total", "Body bytes sent by the origin, by site.", ("site",)
        )
        worker = self.registry.gauge(
            "offload_worker_info", "The process that answered this scrape.", ("pid",)
        )
        worker.set(1, pid=str(os.getpid()))

    def request(self, site: str, status: int, seconds: float) -> None:
        self._requests.inc(site=site, status=str(status))
        self._latency.observe(seconds)

    def cache(self, cache: str, hit: bool) -> None:
        (self._hits if hit else self._misses).inc(cache=cache)

    def storage(self, operation: str, seconds: float) -> None:
        self._storage.observe(seconds, operation=operation)

    def sent(self, site: str, count: int) -> None:
        self._sent.inc(count, site=site)

    def render(self) -> str:
        return self.registry.render()

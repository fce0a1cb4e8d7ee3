"""The origin's Prometheus metrics, named once: requests, caches, storage latency, bytes.

One instance per process; ``/_offload/metrics`` renders its registry. When
prometheus_client's multiprocess folder is set (``serve --workers N`` sets up
one), the registry is shared: a scrape that reaches any worker reports the
totals of all of them. ``offload_worker_info`` names the process that answered
with its pid, and stays that process's own.
"""

from __future__ import annotations

import os
import time

from offload.server.metrics import LATENCY_BUCKETS, Merged, Registry, multiprocess_dir


class OriginMetrics:
    def __init__(self, *, shared: bool | None = None) -> None:
        """``shared``: sum the workers' counts; by default, when the multiprocess folder is set."""
        if shared is None:
            shared = multiprocess_dir() is not None
        self.registry = Registry(shared=shared)
        #: This worker's cache lookups and origin requests, for the status page.
        self.hits = 0
        self.misses = 0
        self.rate = RequestRate()
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
        self._webhooks = self.registry.counter(
            "offload_webhooks_total", "Webhooks answered, by site, hook and status.",
            ("site", "hook", "status"),
        )  # fmt: skip
        self._webhook_latency = self.registry.histogram(
            "offload_webhook_seconds", "Time to answer a webhook, by hook.",
            LATENCY_BUCKETS, ("hook",),
        )  # fmt: skip
        self._purges = self.registry.counter(
            "offload_purges_total",
            "Purge outbox entries settled, by site, provider and result"
            " (sent, failed: tried again later).",
            ("site", "provider", "result"),
        )
        self._purge_give_ups = self.registry.counter(
            "offload_purge_give_ups_total",
            "Purge outbox entries given up after purge_give_up_after seconds of failures.",
            ("site",),
        )
        #: This worker's give-ups, for the status page.
        self.purge_give_ups = 0
        worker = self.registry.gauge(
            "offload_worker_info", "The process that answered this scrape.", ("pid",),
            per_process=True,
        )  # fmt: skip
        worker.set(1, pid=str(os.getpid()))

    @property
    def shared(self) -> bool:
        """Whether a scrape reports every worker's counts (and ``render`` reads files)."""
        return self.registry.shared

    def request(self, site: str, status: int, seconds: float) -> None:
        self._requests.inc(site=site, status=str(status))
        self._latency.observe(seconds)
        self.rate.add()

    def cache(self, cache: str, hit: bool) -> None:
        (self._hits if hit else self._misses).inc(cache=cache)
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def storage(self, operation: str, seconds: float) -> None:
        self._storage.observe(seconds, operation=operation)

    def webhook(self, site: str, hook: str, status: int, seconds: float) -> None:
        self._webhooks.inc(site=site, hook=hook, status=str(status))
        self._webhook_latency.observe(seconds, hook=hook)

    def sent(self, site: str, count: int) -> None:
        self._sent.inc(count, site=site)

    def purge_sent(self, site: str, provider: str, entries: int) -> None:
        self._purges.inc(entries, site=site, provider=provider, result="sent")

    def purge_failed(self, site: str, provider: str, entries: int) -> None:
        self._purges.inc(entries, site=site, provider=provider, result="failed")

    def purge_given_up(self, site: str, entries: int) -> None:
        self._purge_give_ups.inc(entries, site=site)
        self.purge_give_ups += entries

    def publish(self) -> None:
        """Write this worker's counts where the others read them (nothing when not shared)."""
        self.registry.publish()

    def collect(self) -> Merged:
        """Every worker's published counts (blocking: it reads their files; empty unless shared)."""
        return self.registry.collect()

    def render(self, merged: Merged | None = None) -> str:
        """The scrape's body; when shared, from what ``collect`` read (read now if None)."""
        return self.registry.render(merged)


class RequestRate:
    """Origin requests per second over the last minute, in this worker: one count per second."""

    WINDOW = 60

    def __init__(self) -> None:
        self._seconds: dict[int, int] = {}

    def add(self, now: float | None = None) -> None:
        second = int(time.monotonic() if now is None else now)
        self._seconds[second] = self._seconds.get(second, 0) + 1
        if len(self._seconds) > self.WINDOW + 5:
            for old in [s for s in self._seconds if s <= second - self.WINDOW]:
                del self._seconds[old]

    def per_second(self, now: float | None = None) -> float:
        second = int(time.monotonic() if now is None else now)
        recent = sum(n for s, n in self._seconds.items() if second - self.WINDOW < s <= second)
        return recent / self.WINDOW

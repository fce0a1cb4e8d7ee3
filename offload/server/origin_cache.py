"""The origin's memory: object metadata, small bodies and missing keys, loaded single-flight.

A boto3 request costs milliseconds of CPU, so a busy origin answers hot
objects from here. Every cache is bounded (entries, or bytes for bodies).
Metadata is kept past its freshness for the site's ``stale-if-error``
window, so a storage outage can be ridden out on what was last seen; and when
a CDN purge makes a thousand requests miss at once, single-flight turns them
into one storage request per key.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cachetools import LRUCache, TLRUCache

from offload.storage import ObjectInfo, StorageUnavailable
from offload.storage.singleflight import SingleFlight

T = TypeVar("T")

#: Called on every lookup with the cache's name ("meta", "negative", "body") and hit or miss.
Recorder = Callable[[str, bool], None]


@dataclass(frozen=True)
class _Entry:
    info: ObjectInfo
    fresh_until: float
    stale_until: float


class OriginCache:
    """Metadata, missing keys and small bodies of every site's objects."""

    def __init__(
        self,
        *,
        meta_entries: int,
        meta_ttl: float,
        negative_entries: int,
        body_bytes: int,
        body_max_object: int,
        record: Recorder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.meta_ttl = meta_ttl
        self.body_max_object = min(body_max_object, body_bytes)
        self._clock = clock
        self._record = record or (lambda cache, hit: None)
        self._meta: TLRUCache[tuple[str, str], _Entry] = TLRUCache(
            maxsize=max(meta_entries, 1), ttu=lambda _k, entry, _now: entry.stale_until, timer=clock
        )
        self._negative: TLRUCache[tuple[str, str], float] = TLRUCache(
            maxsize=max(negative_entries, 1), ttu=lambda _k, until, _now: until, timer=clock
        )
        self._bodies: LRUCache[tuple[str, str, str], bytes] = LRUCache(
            maxsize=max(body_bytes, 1), getsizeof=len
        )
        self._flight = SingleFlight()
        # cachetools needs a size of at least 1; a configured 0 means "keep none".
        self._keep_meta, self._keep_negative = meta_entries > 0, negative_entries > 0

    async def metadata(
        self,
        site: str,
        key: str,
        load: Callable[[], Awaitable[ObjectInfo | None]],
        *,
        negative_ttl: float,
        stale_if_error: float,
    ) -> ObjectInfo | None:
        """The object's info (None: no such object), from memory while fresh.

        When storage is unavailable, a copy past its freshness but within
        ``stale_if_error`` seconds is returned instead of the error.
        """
        now = self._clock()
        entry = self._meta.get((site, key))
        if entry is not None and now < entry.fresh_until:
            self._record("meta", True)
            return entry.info
        if entry is None and (site, key) in self._negative:
            self._record("negative", True)
            return None
        self._record("meta", False)
        try:
            info = await self._flight.run(("meta", site, key), load)
        except StorageUnavailable:
            if entry is not None and self._clock() < entry.stale_until:
                return entry.info
            raise
        now = self._clock()
        if info is None:
            self._meta.pop((site, key), None)
            if negative_ttl > 0 and self._keep_negative:
                self._negative[site, key] = now + negative_ttl
        else:
            self._negative.pop((site, key), None)
            fresh = now + self.meta_ttl
            if self._keep_meta:
                self._meta[site, key] = _Entry(info, fresh, fresh + max(stale_if_error, 0))
        return info

    def fits_in_memory(self, info: ObjectInfo) -> bool:
        """Whether this object's body is small enough for the body cache."""
        return info.size <= self.body_max_object

    async def body(
        self, site: str, info: ObjectInfo, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """A small object's whole body, keyed by its ETag so a new version is a new entry."""
        cache_key = (site, info.key, info.etag)
        cached = self._bodies.get(cache_key)
        if cached is not None:
            self._record("body", True)
            return cached
        self._record("body", False)
        body = await self._flight.run(("body", *cache_key), load)
        if len(body) == info.size and self.body_max_object > 0:
            self._bodies[cache_key] = body
        return body

    def forget(self, site: str, key: str) -> None:
        """Drop what is known of a key (after an upload or a delete through offload)."""
        self._meta.pop((site, key), None)
        self._negative.pop((site, key), None)

    def forget_body(self, site: str, info: ObjectInfo) -> None:
        self._bodies.pop((site, info.key, info.etag), None)

    def stats(self) -> dict[str, int]:
        return {
            "meta_entries": len(self._meta),
            "negative_entries": len(self._negative),
            "body_bytes": int(self._bodies.currsize),
            "in_flight": len(self._flight),
        }

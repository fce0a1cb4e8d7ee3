"""A sync into a site purges what it replaced or deleted there.

``PurgeNotes`` wraps the run's reporter: every event it passes on that
replaced or deleted an object of the site is noted, and the notes go to the
purge outbox in the manifest database every couple of seconds while the run
goes, and at its end. A new key needs no purge (no edge holds it), so a first
sync of 100,000 files sends none. A dry run notes nothing.

The objects are written before their purges are queued: a run killed in
between leaves those purges unsent (the next run compares equal and writes
nothing), and so does a manifest database that stays away until the run ends
(the run says how many, for ``offload purge``). Flushing every ``every``
seconds keeps that window short; a failed flush keeps its keys for the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from offload.config.settings import Site
from offload.manifest import Manifest, ManifestError
from offload.purge.targets import purges_enabled, purges_for_keys
from offload.sync.report import Event, Forwarding, Reporter

log = logging.getLogger(__name__)

Run = Callable[..., Awaitable[Any]]


class PurgeNotes(Forwarding):
    """Passes everything to ``inner``; notes the site's keys that a CDN must drop."""

    def __init__(self, inner: Reporter, site: Site, manifest: Manifest, run: Run) -> None:
        super().__init__(inner)
        self.site, self.manifest = site, manifest
        self._run = run
        self._keys: list[str] = []
        #: How many purges went to the outbox.
        self.queued = 0
        #: Why the last flush could not queue its purges (None: it could).
        self.failed: str | None = None

    def event(self, event: Event) -> None:
        self.inner.event(event)
        if event.changed_object is not None:
            self._keys.append(event.changed_object)

    async def flush(self) -> None:
        """Put what was noted so far in the outbox (a database error is said, not raised)."""
        keys, self._keys = self._keys, []
        items = purges_for_keys(self.site, keys)
        if not items:
            return
        try:
            await self._run(self.manifest.enqueue_purges, items)
        except ManifestError as exc:  # kept for the next flush (the last one says so)
            self._keys = keys + self._keys
            self.failed = str(exc)
            return
        self.failed = None
        self.queued += len(items)

    @contextlib.asynccontextmanager
    async def flushing(self, every: float = 2.0) -> AsyncIterator[PurgeNotes]:
        """Flush every ``every`` seconds while the block runs, and once at its end."""
        if not purges_enabled(self.site):
            yield self
            return

        async def often() -> None:
            while True:
                await asyncio.sleep(every)
                await self.flush()

        task = asyncio.create_task(often())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.flush()
            if self.failed is not None:
                self.inner.error(
                    f"{len(self._keys)} CDN purge(s) could not be queued: {self.failed}"
                    " (purge them with offload purge once the manifest answers)"
                )

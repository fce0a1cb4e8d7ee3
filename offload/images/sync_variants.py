"""A sync into a site that deletes or replaces an original deletes its variants too.

A variant is made from its original on request and kept under the site's
variants folder (``offload.images.variants``). When ``offload sync … site:NAME``
(or the server's background sync) deletes an original, or puts other bytes
under its key, the variants made from the old bytes go at the run's end, and
their transform URLs are purged with the original's where the site purges (queued
before the variants are deleted, as the offloader queues its purges); the
next request makes them again from the new original. A run killed before its
end leaves them: ``offload variants --prune`` removes those of deleted
originals, and a replaced original's are made again on request anyway (a
variant remembers the ETag of the original it was made from).

The sync itself never lists or deletes the variants folder: ``variants_excluded``
is the filter that keeps it out (a folder of uploads has no such folder, so a
``--delete`` would remove every variant).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from offload.config.settings import Site
from offload.images.variants import delete_purged, find_variants, is_variant_key
from offload.manifest import Manifest, ManifestError
from offload.storage import Storage, StorageError, StorageUnavailable
from offload.sync.filters import EXCLUDE, Filters, Rule
from offload.sync.report import Event, Forwarding, Reporter

Run = Callable[..., Awaitable[Any]]


def variants_excluded(site: Site, filters: Filters) -> Filters:
    """``filters`` with the site's variants folder left out, whatever the rules before say."""
    if not site.transform_variants_prefix:
        return filters
    folder = site.transform_variants_prefix.strip("/")
    return Filters([*filters.rules, Rule(EXCLUDE, f"{folder}/*")])


class VariantCascade(Forwarding):
    """Passes everything on; at ``finish`` deletes the variants of the originals the run
    deleted or replaced, and queues the purge of their transform URLs."""

    def __init__(
        self, inner: Reporter, site: Site, storage: Storage, manifest: Manifest, run: Run
    ) -> None:
        super().__init__(inner)
        self.site, self.storage, self.manifest = site, storage, manifest
        self._run = run
        self._originals: list[str] = []
        #: How many variants the run's end deleted.
        self.deleted = 0

    def event(self, event: Event) -> None:
        self.inner.event(event)
        key = event.changed_object
        if key is not None and not is_variant_key(self.site, key):
            self._originals.append(key)

    async def finish(self) -> None:
        """Delete the noted originals' variants (a failure is said, never raised).

        The variants are listed after the run deleted their originals, so a render
        that stores a variant after this listing finds its original gone when it
        checks again, and deletes that variant itself (``offload.server.transforms``).
        Their purges are queued before they are deleted (``delete_purged``).
        """
        originals, self._originals = self._originals, []
        if not originals:
            return
        try:
            variants = await find_variants(self.site, self.storage, originals)
            await delete_purged(self.site, self.storage, variants, self.manifest, self._run)
        except (StorageError, StorageUnavailable) as exc:
            self.inner.error(
                f"the variants of {len(originals)} original(s) could not be deleted: {exc}"
                " (offload variants --prune removes those of deleted originals)"
            )
            return
        except ManifestError as exc:
            self.inner.error(
                f"the variants of {len(originals)} original(s) were not deleted: their CDN"
                f" purges could not be queued: {exc}"
                " (offload variants --prune removes those of deleted originals)"
            )
            return
        self.deleted += len(variants)

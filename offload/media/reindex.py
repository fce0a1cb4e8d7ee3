"""Rebuilding a site's manifest rows from its bucket: ``offload reindex``.

The bucket is the truth and the manifest a cache of it (DESIGN: Scale), so a
lost or stale manifest is rebuilt from a listing of the site's prefix plus one
HEAD per object for the metadata offload wrote (``sha256``, ``source``,
``mtime``, ``attachment-id``). Objects another tool put there get a row too,
their path taken from the key (the prefix and any version folder removed) and
an empty hash, so the rewriter knows them. The newest object of a path is
the one its URLs are rewritten to: rows are stamped with LastModified.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from offload.config.settings import Settings, Site
from offload.config.sites import open_site_storage
from offload.keys import is_versioned_key, upload_path_of
from offload.media.manifest import Manifest, ManifestRow
from offload.media.offloader import META_ATTACHMENT, META_MTIME, META_SHA256, META_SOURCE, Run
from offload.storage import ObjectInfo, Storage


@dataclass(frozen=True)
class ReindexReport:
    objects: int
    with_metadata: int
    skipped: int  # gone between listing and HEAD, or outside the site's prefix


async def reindex(
    site: Site, storage: Storage, manifest: Manifest, run: Run, *, concurrency: int = 16
) -> ReindexReport:
    """Replace the site's rows with what its bucket holds; one transaction."""
    started = time.time()
    prefix = site.prefix.strip("/")
    rows: list[ManifestRow] = []
    skipped = with_metadata = 0
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[ManifestRow | None]] = set()

    async def describe(listed: ObjectInfo) -> ManifestRow | None:
        async with slots:
            info = await storage.head(listed.key)
        if info is None:
            return None
        return _row(site, info)

    def collect(done: set[asyncio.Task[ManifestRow | None]]) -> None:
        nonlocal skipped, with_metadata
        for task in done:
            row = task.result()
            if row is None:
                skipped += 1
                continue
            rows.append(row)
            with_metadata += bool(row.sha256)

    async for listed in storage.list(f"{prefix}/" if prefix else ""):
        if upload_path_of(site.prefix, listed.key, versioned=site.versioning) is None:
            skipped += 1
            continue
        pending.add(asyncio.ensure_future(describe(listed)))
        if len(pending) >= concurrency * 4:  # bounded memory on a huge bucket
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            collect(done)
    if pending:
        done, _ = await asyncio.wait(pending)
        collect(done)
    await run(lambda: manifest.replace_site(site.name, rows, before=started))
    return ReindexReport(len(rows), with_metadata, skipped)


async def reindex_site(settings: Settings, site: Site) -> ReindexReport:
    """Rebuild ``site``'s rows in the configured manifest, with a pool of its own.

    ``offload reindex`` runs outside the server: it opens the site's storage
    with the same options the server uses, in the pool (opening reads AWS
    config files), and closes both the manifest and the storage however it ends.
    """
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(settings.storage_threads, thread_name_prefix="offload-io") as pool:

        async def run(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        storage = await run(open_site_storage, settings, site, pool)
        manifest = Manifest(settings.manifest)
        try:
            return await reindex(site, storage, manifest, run)
        finally:
            await run(manifest.close)
            await storage.close()


def _row(site: Site, info: ObjectInfo) -> ManifestRow | None:
    metadata = info.metadata or {}
    derived = upload_path_of(site.prefix, info.key, versioned=site.versioning)
    path = metadata.get(META_SOURCE) or derived
    if path is None:
        return None
    version = None
    if site.versioning and is_versioned_key(info.key):
        version = info.key.split("/")[-2]
    try:
        mtime = float(metadata[META_MTIME]) if META_MTIME in metadata else None
    except ValueError:
        mtime = None
    return ManifestRow(
        site=site.name,
        key=info.key,
        path=path,
        version=version,
        size=info.size,
        sha256=metadata.get(META_SHA256, ""),
        etag=info.etag,
        attachment_id=metadata.get(META_ATTACHMENT),
        mtime=mtime,
        offloaded_at=info.last_modified.timestamp(),
    )

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
from dataclasses import dataclass

from offload.config.settings import Site
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

"""Rebuilding a site's manifest rows from its bucket: ``offload reindex``.

The bucket is the truth and the manifest a cache of it (DESIGN: Scale), so a
lost or stale manifest is rebuilt from a listing of the site's prefix plus one
HEAD per object for the metadata offload wrote (``sha256``, ``source``,
``mtime``, ``attachment-id``). Objects another tool put there get a row too,
their path taken from the key (the prefix and any version folder removed) and
an empty hash, so the rewriter knows them. The newest object of a path is
the one its URLs are rewritten to: rows are stamped with LastModified.

The bucket does not say everything the manifest learnt, though. A webhook that
finds the same bytes already in the bucket answers ``unchanged`` and writes no
object, so an attachment id it carried lives in the manifest alone when the
object was written without one (by a webhook that carried no id, by an older
offload, or copied from such an object). Forgetting it would make a later
deletion by that id remove nothing and leave the objects public. So each
object's row is merged with the row its key already has (``merge_row``): the
object's metadata wins where it has a value, and the old row fills what it
lacks. What names the object (its attachment id, source path, version) is kept
whatever the object now holds; what describes its bytes (``sha256``,
``mtime``) only while the old row's size and ETag are the object's, since a
hash of other bytes would be a lie. Rows whose object is gone are dropped.

The old rows are read in the same executor call that replaces the site's rows,
just before it, so a webhook that lands while the bucket is being listed is
merged too; only one committing in the moment between that read and the
replace can still lose what it alone knew.
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
from offload.manifest import Manifest, ManifestRow, open_manifest
from offload.media.offloader import META_ATTACHMENT, META_MTIME, META_SHA256, META_SOURCE, Run
from offload.storage import ObjectInfo, Storage

#: Objects merged per read of their old rows.
_MERGE_CHUNK = 5000
#: The metadata a row is made of; the rest of an object's metadata is not kept in memory.
_KEPT_METADATA = (META_SHA256, META_SOURCE, META_MTIME, META_ATTACHMENT)


@dataclass(frozen=True)
class ReindexReport:
    objects: int
    with_metadata: int
    skipped: int  # gone between listing and HEAD, or outside the site's prefix
    #: Rows the previous manifest completed (an attachment id, hash, path the object lacks).
    completed: int = 0


async def reindex(
    site: Site, storage: Storage, manifest: Manifest, run: Run, *, concurrency: int = 16
) -> ReindexReport:
    """Replace the site's rows with what its bucket holds, merged with the rows it had."""
    started = time.time()
    prefix = site.prefix.strip("/")
    found: list[ObjectInfo] = []
    skipped = 0
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[ObjectInfo | None]] = set()

    async def describe(listed: ObjectInfo) -> ObjectInfo | None:
        async with slots:
            info = await storage.head(listed.key)
        if info is None:
            return None
        metadata = info.metadata or {}
        kept = {name: metadata[name] for name in _KEPT_METADATA if name in metadata}
        return ObjectInfo(info.key, info.size, info.etag, info.last_modified, metadata=kept)

    def collect(done: set[asyncio.Task[ObjectInfo | None]]) -> None:
        nonlocal skipped
        for task in done:
            info = task.result()
            if info is None:
                skipped += 1
            else:
                found.append(info)

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

    def commit() -> ReindexReport:
        # a chunk at a time, each object let go once its row is made: the old rows
        # never all sit in memory beside the objects and the new rows
        rows: list[ManifestRow] = []
        with_metadata = completed = unnamed = 0
        found.reverse()
        while found:
            chunk = [found.pop() for _ in range(min(_MERGE_CHUNK, len(found)))]
            known = manifest.rows_by_key(site.name, (info.key for info in chunk))
            for info in chunk:
                row, filled = _merge(site, info, known.get(info.key))
                if row is None:
                    unnamed += 1
                    continue
                rows.append(row)
                with_metadata += META_SHA256 in info.metadata
                completed += filled
        manifest.replace_site(site.name, rows, before=started)
        return ReindexReport(len(rows), with_metadata, skipped + unnamed, completed)

    report: ReindexReport = await run(commit)
    return report


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
        manifest = open_manifest(settings.manifest, pool_size=settings.storage_threads)
        try:
            return await reindex(site, storage, manifest, run)
        finally:
            await run(manifest.close)
            await storage.close()


def merge_row(site: Site, info: ObjectInfo, old: ManifestRow | None) -> ManifestRow | None:
    """The row of the object ``info`` (from a HEAD), completed by its key's ``old`` row.

    None when neither the object nor the old row says which upload path it is.
    """
    return _merge(site, info, old)[0]


def _merge(
    site: Site, info: ObjectInfo, old: ManifestRow | None
) -> tuple[ManifestRow | None, bool]:
    """The merged row, and whether ``old`` gave it anything the object alone would not."""
    metadata = info.metadata or {}
    version = None
    if site.versioning and is_versioned_key(info.key):
        version = info.key.split("/")[-2]
    try:
        mtime = float(metadata[META_MTIME]) if META_MTIME in metadata else None
    except ValueError:
        mtime = None
    facts: dict[str, Any] = {
        "path": metadata.get(META_SOURCE)
        or upload_path_of(site.prefix, info.key, versioned=site.versioning),
        "version": version,
        "attachment_id": metadata.get(META_ATTACHMENT) or None,
        "sha256": metadata.get(META_SHA256, ""),
        "mtime": mtime,
    }
    filled = False
    if old is not None:
        names = ["version", "attachment_id"]
        if not metadata.get(META_SOURCE):
            names.append("path")  # what the webhook recorded beats a guess from the key
        if (old.size, old.etag) == (info.size, info.etag):
            names += ["sha256", "mtime"]  # the old row describes these very bytes
        for name in names:
            theirs = getattr(old, name)
            ours = facts[name]
            if theirs not in (None, "") and theirs != ours and (name == "path" or not ours):
                facts[name] = theirs
                filled = True
    if not facts["path"]:
        return None, False
    row = ManifestRow(
        site=site.name,
        key=info.key,
        size=info.size,
        etag=info.etag,
        offloaded_at=info.last_modified.timestamp(),
        **facts,
    )
    return row, filled

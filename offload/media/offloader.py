"""Copying an attachment's files to the bucket, and deleting them: the webhooks' work.

No aiohttp here: ``offload.server.webhooks`` reads and checks requests, this module does the
storage and manifest work and says what happened to each file.

For each file: hash it (SHA-256, in the executor, streaming), derive its key
(``keys.upload_key``, with a version folder when the site versions keys), and
HEAD the key. An object whose stored ``sha256`` and size match is
``unchanged`` (no PUT); otherwise the file is PUT with its content type,
Cache-Control and metadata (``sha256``, ``source``, ``mtime``,
``attachment-id``). Missing files are ``pending`` (WordPress saves the
metadata several times while it makes the sizes).

With versioning, every file of an attachment shares one folder, because
WordPress derives each size's URL from the full size's folder. The base folder
is the original's version segment; each present file's key there is HEADed
once, and those answers decide. When no key holds other bytes, the files go
there (the probe's answer stands for the PUT decision: nothing is HEADed
twice). When one does, a file changed while the original did not (a size
regenerated with a new quality or crop): a versioned key is served
``immutable`` and never takes other bytes, so the whole attachment goes to the
folder of its content set (``keys.changed_version_segment``: the base folder
and every present file's path and hash), unchanged files copied there from the
base folder, and the old folders stay for old pages. The rule keeps no state:
two hosts, or a retry, choose alike, and the same content set always finds the
same folder. Files not read (pending, unreadable) do not count, so a partial
body after a regeneration (the original alone) finds no conflict and stays in
the base folder; the CMS sends the whole attachment once per generation of
sizes. A generic body without an original is one attachment per file.

Concurrent requests share work: one set of probes per attachment content set,
one PUT or copy per key and content, so two identical webhooks get one object
and the same answer. The manifest records only files that are in the
bucket, and records every file that got there whatever happened to its
siblings (an attachment half offloaded and half unrecorded would leave objects
no deletion can find). Any file that could not be offloaded is ``failed``
with a short reason, never an exception out of ``offload``: a key the storage
refuses (a reserved ``.offload/`` name, a link in a storage folder) as well
as a storage that failed. ``Outcome.status`` says how to answer: 422 when
every failure is the request's own (its paths make keys no storage takes),
502 when storage failed, and running the same webhook again completes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from offload.config.settings import Site
from offload.http import caching as httpcache
from offload.images.variants import find_variants, variant_purges
from offload.keys import UnsafeKey, changed_version_segment, upload_key, version_segment
from offload.manifest import Manifest, ManifestError, ManifestRow, PurgeItem
from offload.media.outcomes import Item, Outcome
from offload.media.payloads import Attachment, PayloadError
from offload.media.rewrite import Rewriter
from offload.media.uploadfiles import FileFacts, hash_file, resolve_upload
from offload.purge.targets import purges_for_keys
from offload.storage import ObjectInfo, Storage, StorageError, StorageUnavailable, objectmeta
from offload.storage.base import LinkRefused
from offload.storage.content_types import guess_content_type
from offload.storage.singleflight import SingleFlight

log = logging.getLogger(__name__)

T = TypeVar("T")
Run = Callable[..., Awaitable[Any]]
#: What became of one file that reached the bucket: (``uploaded``, ``unchanged`` or
#: ``replaced``: uploaded over other bytes under an unversioned key, which the CDN
#: must drop; etag).
Stored = tuple[str, str]

#: Seconds after which a change's purge goes out even if its manifest row was never
#: written (see ``Offloader._purge_if_unrecorded``): well after the write it guards.
UNRECORDED_PURGE_AFTER = 120.0

META_SHA256 = objectmeta.SHA256
META_SOURCE = objectmeta.SOURCE
META_MTIME = objectmeta.MTIME
META_ATTACHMENT = objectmeta.ATTACHMENT_ID


class VersionCollision(Exception):
    """A changed attachment's folder holds other bytes under a file's name.

    The folder is named after the attachment's whole content set, so this is a
    collision of its 8 hex digits; choosing yet another folder could loop.
    """


#: Failures a file meets in the normal run of things: logged in one line, no traceback.
_EXPECTED = (
    StorageError,
    StorageUnavailable,
    OSError,
    UnsafeKey,
    VersionCollision,
    ManifestError,
)


class Offloader:
    """One site's uploads and deletions against its storage and the manifest."""

    def __init__(
        self,
        site: Site,
        storage: Storage,
        manifest: Manifest,
        run: Run,
        *,
        concurrency: int = 8,
        forget: Callable[[str], None] | None = None,
    ) -> None:
        self.site = site
        self.storage = storage
        self.manifest = manifest
        self._run = run  # blocking call -> awaitable, in the bounded executor
        self._slots = asyncio.Semaphore(concurrency)
        self._flights = SingleFlight()
        self._forget = forget or (lambda _key: None)
        #: The purges of a replaced key's variants, until its upload's record takes them.
        self._variant_purges: dict[str, list[PurgeItem]] = {}
        #: Uploads still writing, by attachment id and by path: a deletion waits for them.
        self._writing: dict[tuple[str, str], set[asyncio.Future[None]]] = {}

    # -- paths and URLs ------------------------------------------------------------------

    async def locate(self, attachment: Attachment) -> dict[str, Path | None]:
        """Each path's file under ``uploads_dir`` (None: missing); PayloadError before any write."""
        uploads_dir = self.site.uploads_dir
        if uploads_dir is None:
            raise PayloadError(
                f"site {self.site.name!r} has no uploads_dir: "
                "send the files' bytes as multipart/form-data"
            )

        def locate_all() -> dict[str, Path | None]:
            return {path: resolve_upload(uploads_dir, path) for path in attachment.paths}

        return await self._run(locate_all)

    def cdn_url(self, key: str, base_url: str = "") -> str:
        """``cdn_url + "/" + key``; the origin's own URL when no cdn_url is set."""
        return f"{(self.site.cdn_url or base_url).rstrip('/')}/{quote(key, safe='/')}"

    def local_url(self, path: str) -> str | None:
        if not self.site.uploads_url:
            return None
        return f"{self.site.uploads_url.rstrip('/')}/{quote(path, safe='/')}"

    def rewriter(self) -> Rewriter:
        """A Rewriter over the manifest (blocking lookups: use it in the executor)."""
        return manifest_rewriter(self.site, self.manifest)

    # -- uploads ---------------------------------------------------------------------

    async def offload(
        self,
        attachment: Attachment,
        files: Mapping[str, Path | None],
        *,
        base_url: str = "",
        with_mtime: bool = True,
    ) -> Outcome:
        """Copy every present file of ``attachment`` (``files``: path -> where its bytes are).

        ``with_mtime=False`` for files whose modification time means nothing
        (a form's parts, spooled just now): no ``mtime`` is stored for them.
        A deletion of the same attachment waits until this is done (see ``delete``).
        """
        written = self._track_writing(attachment)
        try:
            return await self._offload(attachment, files, base_url=base_url, with_mtime=with_mtime)
        finally:
            written()

    async def _offload(
        self,
        attachment: Attachment,
        files: Mapping[str, Path | None],
        *,
        base_url: str,
        with_mtime: bool,
    ) -> Outcome:
        facts: dict[str, FileFacts | None] = {}
        unreadable: dict[str, str] = {}

        async def measure(path: str) -> None:
            file = files.get(path)
            try:
                facts[path] = (
                    None
                    if file is None
                    else await self._run(lambda: hash_file(file, with_mtime=with_mtime))
                )
            except FileNotFoundError:  # vanished since it was located
                facts[path] = None
            except OSError as exc:  # unreadable (permissions): that file fails, not the request
                unreadable[path] = f"the file could not be read: {exc.strerror}"
                facts[path] = None

        await asyncio.gather(*(measure(path) for path in attachment.paths))
        items: list[Item] = []
        rows: list[ManifestRow] = []
        replaced: list[str] = []  # unversioned keys that held other bytes: purged
        present: dict[str, FileFacts] = {}  # the files read: only these are offloaded
        sources: dict[str, Path] = {}
        for path in attachment.paths:
            file, fact = files.get(path), facts[path]
            if path in unreadable:
                items.append(Item(path, "failed", error=unreadable[path]))
            elif file is None or fact is None:
                items.append(Item(path, "pending"))
            else:
                present[path], sources[path] = fact, file

        def landed(path: str, key: str, version: str | None, status: str, etag: str) -> None:
            fact = present[path]
            if status == "replaced":
                replaced.append(key)
                status = "uploaded"
            items.append(Item(path, status, key, self.cdn_url(key, base_url), fact.size, etag))
            rows.append(
                ManifestRow(
                    site=self.site.name,
                    key=key,
                    path=path,
                    version=version,
                    size=fact.size,
                    sha256=fact.sha256,
                    etag=etag,
                    attachment_id=attachment.attachment_id,
                    mtime=fact.mtime_ns / 1e9 if fact.mtime_ns is not None else None,
                )
            )

        def failed(path: str, key: str | None, exc: BaseException) -> None:
            url = self.cdn_url(key, base_url) if key else None
            item = Item(path, "failed", key, url, present[path].size)
            item.error, item.refused = _failure(exc)
            items.append(item)
            if isinstance(exc, _EXPECTED):
                log.warning("site %s: offloading %r failed: %s", self.site.name, path, exc)
            else:
                log.exception("site %s: offloading %r failed", self.site.name, path, exc_info=exc)

        async def store(
            path: str,
            key: str,
            version: str | None,
            flight: Hashable,
            work: Callable[[], Awaitable[Stored]],
        ) -> None:
            try:
                async with self._slots:
                    status, etag = await self._flights.run(flight, work)
            except Exception as exc:  # one file's failure, whatever it is, is that file's
                failed(path, key, exc)
            else:
                landed(path, key, version, status, etag)

        async def one_file(path: str, fact: FileFacts) -> None:
            """Unversioned: the key is the path, and new bytes replace the old."""
            try:
                key = upload_key(self.site.prefix, path)
            except UnsafeKey as exc:
                failed(path, None, exc)
                return
            work = functools.partial(self._put_once, key, path, sources[path], fact, attachment)
            await store(path, key, None, ("once", key, fact.sha256), work)

        async def one_folder(base: str, group: dict[str, FileFacts]) -> None:
            """Versioned: the files of ``group`` go to one folder, ``base`` or a changed one."""
            keys: dict[str, str] = {}
            for path in group:
                try:
                    keys[path] = upload_key(self.site.prefix, path, base)
                except UnsafeKey as exc:  # too long once the folder is in: that file's alone
                    failed(path, None, exc)
            contents = tuple(sorted((path, group[path].sha256) for path in keys))
            try:
                folder, probes = await self._flights.run(
                    ("folder", base, contents), lambda: self._choose_folder(base, keys, group)
                )
            except Exception as exc:  # no folder without every probe: nothing is written
                for path, key in keys.items():
                    failed(path, key, exc)
                return

            async def write(path: str, base_key: str) -> None:
                fact, file, probe = group[path], sources[path], probes[path]
                if folder == base:
                    if probe is not None:  # the probe found these bytes: nothing to write
                        landed(path, base_key, base, "unchanged", probe.etag)
                        return
                    put = functools.partial(self._put, base_key, path, file, fact, base, attachment)
                    await store(path, base_key, base, ("put", base_key, fact.sha256), put)
                    return
                try:
                    key = upload_key(self.site.prefix, path, folder)
                except UnsafeKey as exc:
                    failed(path, None, exc)
                    return
                source = base_key if probe is not None and _holds(probe, fact) else None
                place = functools.partial(
                    self._place, key, path, file, fact, folder, attachment, source
                )
                await store(path, key, folder, ("place", key, fact.sha256), place)

            await asyncio.gather(*(write(path, key) for path, key in keys.items()))

        if not self.site.versioning:
            jobs = [one_file(path, fact) for path, fact in present.items()]
        elif attachment.original is None:  # each file is an attachment of its own
            jobs = [
                one_folder(version_segment(fact.sha256), {path: fact})
                for path, fact in present.items()
            ]
        elif attachment.original in present:
            jobs = [one_folder(version_segment(present[attachment.original].sha256), present)]
        else:  # the original is not there yet: nothing has a folder
            items.extend(Item(path, "pending") for path in present)
            jobs = []
        work = asyncio.ensure_future(asyncio.gather(*jobs))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # The PUTs go on without the request (they are shared, single-flight):
            # wait for them, so that what reaches the bucket gets its row, then stop.
            with contextlib.suppress(BaseException):
                await asyncio.shield(work)
            raise
        finally:
            # Even when the request is cancelled: what reached the bucket is recorded,
            # and the keys it replaced are purged (in the same transaction).
            purges = purges_for_keys(self.site, replaced) + self._replaced_variants(replaced)
            if rows:
                record = functools.partial(self.manifest.record, list(rows), purges=purges)
                await asyncio.shield(self._run(record))
        order = {path: index for index, path in enumerate(attachment.paths)}
        items.sort(key=lambda item: order[item.path])
        outcome = Outcome(self.site.name, items, purges=purges)
        for item in items:
            local = self.local_url(item.path)
            if item.status in ("uploaded", "unchanged") and local and item.url:
                outcome.urls[local] = item.url
        outcome.transforms = self._transforms(attachment, items, base_url)
        return outcome

    def _transforms(
        self, attachment: Attachment, items: list[Item], base_url: str
    ) -> dict[str, Any] | None:
        """The widths a CMS may ask of the original unsigned, and its URL for any of them.

        ``{"widths": [...], "url": ".../_img/w={width}/<original's key>"}`` when the site
        lists ``transform_widths`` and the original reached the bucket: the WordPress
        plugin puts those widths in srcsets (``OFFLOAD_TRANSFORMS``).
        """
        site = self.site
        if not (site.transform_widths and site.transform_prefix and attachment.original):
            return None
        for item in items:
            if (
                item.path == attachment.original
                and item.key
                and item.status
                in (
                    "uploaded",
                    "unchanged",
                )
            ):
                base = (site.cdn_url or base_url).rstrip("/")
                key = quote(item.key, safe="/")
                return {
                    "widths": sorted(site.transform_widths),
                    "url": f"{base}/{site.transform_prefix}/w={{width}}/{key}",
                }
        return None

    async def _choose_folder(
        self, base: str, keys: Mapping[str, str], group: Mapping[str, FileFacts]
    ) -> tuple[str, dict[str, ObjectInfo | None]]:
        """HEAD each file's key in ``base``: (the folder to use, what each HEAD found).

        ``base`` unless a key there holds other bytes: then the attachment
        changed, and all of it goes to the folder of its new content set.
        """

        async def probe(path: str) -> tuple[str, ObjectInfo | None]:
            async with self._slots:
                return path, await self.storage.head(keys[path])

        probes = dict(await asyncio.gather(*(probe(path) for path in keys)))
        if all(info is None or _holds(info, group[path]) for path, info in probes.items()):
            return base, probes  # each probe is None (absent) or holds the file's bytes
        contents = ((path, group[path].sha256) for path in keys)
        return changed_version_segment(base, contents), probes

    async def _put_once(
        self, key: str, path: str, file: Path, fact: FileFacts, attachment: Attachment
    ) -> Stored:
        """Unversioned: HEAD, then PUT unless the same content is there."""
        existing = await self.storage.head(key)
        if existing is not None and _holds(existing, fact):
            return "unchanged", existing.etag
        variants: list[str] = []
        mine: list[PurgeItem] = []
        if existing is not None:
            variants = await self._stale_variants(key)
            mine = variant_purges(self.site, variants)
            await self._purge_if_unrecorded([key], mine)
            self._note_variant_purges(key, mine)
        try:
            _status, etag = await self._put(key, path, file, fact, None, attachment)
        except BaseException:
            self._drop_variant_purges(key, mine)  # no record of this upload will take them
            raise
        if variants:  # made from the old bytes: made again from the new ones on request
            with contextlib.suppress(StorageError, StorageUnavailable):
                await self.storage.delete(variants)
            for variant in variants:
                self._forget(variant)
        if existing is not None:  # and those a render stored since the listing above
            self._note_variant_purges(key, await self._late_variants([key]))
        return ("uploaded" if existing is None else "replaced"), etag

    def _note_variant_purges(self, key: str, items: list[PurgeItem]) -> None:
        """Keep these purges for the record of the upload that replaces ``key``. Two
        uploads of one key may run at once (other bytes): each adds its own, and the
        first record of the key takes them all."""
        if items:
            self._variant_purges.setdefault(key, []).extend(items)

    def _drop_variant_purges(self, key: str, items: list[PurgeItem]) -> None:
        """Take back this upload's own purges (its PUT failed); another's stay."""
        kept = self._variant_purges.get(key)
        if kept is None:
            return  # another upload's record took them (they are harmless purges)
        ids = {id(item) for item in items}
        kept[:] = [item for item in kept if id(item) not in ids]
        if not kept:
            del self._variant_purges[key]

    def _replaced_variants(self, replaced: list[str]) -> list[PurgeItem]:
        """The purges of the variants the replaced keys had (noted by ``_put_once``)."""
        return [item for key in replaced for item in self._variant_purges.pop(key, [])]

    async def _stale_variants(self, key: str) -> list[str]:
        """The stored variants of ``key`` (images on demand), which its new bytes make stale."""
        try:
            return await find_variants(self.site, self.storage, [key])
        except (StorageError, StorageUnavailable, UnsafeKey) as exc:
            log.warning("site %s: listing variants of %r failed: %s", self.site.name, key, exc)
            return []

    async def _late_variants(self, keys: list[str]) -> list[PurgeItem]:
        """Delete the variants of the deleted or replaced ``keys`` stored since they were
        first listed (a render that read an original just before it went or changed);
        their purges, due now with the change's record (a safety purge is queued before
        they are deleted).

        With read-after-write storage, this listing and the render's own check leave
        no stale variant in any order: a render HEADs the original again after it
        stores a variant (``offload.server.transforms``). If that HEAD came after the
        original's deletion or new bytes, the render deletes its variant itself; if
        it came before, the variant was stored before the change, hence before this
        listing, which finds it. (A replaced key's variant made from the new bytes
        in between is deleted too: it is made again on request.) A failure here is
        logged: ``offload variants --prune`` removes a deleted original's, and a
        replaced original's are made again on request. A site with transforms off
        renders nothing, so nothing can appear: it is not listed again.
        """
        if not self.site.transform_prefix:
            return []
        try:
            late = await find_variants(self.site, self.storage, keys)
            if not late:
                return []
            items = variant_purges(self.site, late)
            await self._purge_if_unrecorded([], items)
            await self.storage.delete(late)
        except (StorageError, StorageUnavailable, UnsafeKey, ManifestError) as exc:
            log.warning(
                "site %s: variants stored during a deletion were not deleted: %s",
                self.site.name,
                exc,
            )
            return []
        for variant in late:
            self._forget(variant)
        return items

    async def _purge_if_unrecorded(self, keys: list[str], extra: Sequence[PurgeItem] = ()) -> None:
        """Queue the purge of ``keys`` for UNRECORDED_PURGE_AFTER seconds from now, before
        their objects are replaced or deleted.

        The change's own purge is queued with its manifest row, due at once, and
        merges into this one. This one covers the change whose row is never
        written (the manifest fails, or the process dies, after the storage
        changed): a retry would then find nothing to do, and the edge would serve
        the old bytes for a day. Raises ManifestError before storage is touched.
        """
        items = purges_for_keys(self.site, keys) + list(extra)
        if items:
            later = time.time() + UNRECORDED_PURGE_AFTER
            await self._run(
                functools.partial(self.manifest.enqueue_purges, items, not_before=later)
            )

    async def _place(
        self,
        key: str,
        path: str,
        file: Path,
        fact: FileFacts,
        version: str,
        attachment: Attachment,
        source: str | None,
    ) -> Stored:
        """One file into a changed attachment's folder: (status, etag).

        ``source`` is its key in the base folder when that object holds the
        same bytes: then it is copied server-side where the storage can
        (``Storage.copy``: S3 CopyObject, a file copy on a folder), so an
        unchanged 20 MB original moves no byte through offload; the copy keeps
        that object's metadata (its ``mtime`` and ``attachment-id`` are those it
        was first offloaded with). Otherwise, or when the copy fails or finds
        other bytes (the source went since it was probed), the local file is
        PUT: streaming the object through offload would fetch what is on disk.
        """
        existing = await self.storage.head(key)
        if existing is not None:
            if _holds(existing, fact):
                return "unchanged", existing.etag
            raise VersionCollision(f"{key!r} already holds other bytes")
        if source is not None and self.storage.features.server_side_copy:
            try:
                copied: ObjectInfo | None = await self.storage.copy(source, self.storage, key)
            except StorageUnavailable:
                raise
            except StorageError as exc:  # the source went, or the server refuses copies
                log.info("site %s: copying %r failed, putting it: %s", self.site.name, key, exc)
                copied = None
            if copied is not None and _holds(copied, fact):
                self._forget(key)
                return "uploaded", copied.etag
        return await self._put(key, path, file, fact, version, attachment)

    async def _put(
        self,
        key: str,
        path: str,
        file: Path,
        fact: FileFacts,
        version: str | None,
        attachment: Attachment,
    ) -> Stored:
        """PUT the file with its metadata: ("uploaded", etag)."""
        metadata = {META_SHA256: fact.sha256, META_SOURCE: path}
        if fact.mtime_ns is not None:
            metadata[META_MTIME] = objectmeta.format_mtime(fact.mtime_ns)
        if attachment.attachment_id is not None:
            metadata[META_ATTACHMENT] = attachment.attachment_id
        info = await self.storage.put(
            key,
            file,
            content_type=guess_content_type(path),
            cache_control=self._cache_control(version is not None),
            metadata=metadata,
        )
        self._forget(key)
        return "uploaded", info.etag

    def _cache_control(self, versioned: bool) -> str:
        site = self.site
        return httpcache.cache_control(
            max_age=site.max_age,
            stale_while_revalidate=site.stale_while_revalidate,
            stale_if_error=site.stale_if_error,
            s_maxage=site.s_maxage,
            versioned=versioned,
        )

    # -- deletions -------------------------------------------------------------------

    def _track_writing(self, attachment: Attachment) -> Callable[[], None]:
        """Mark an upload of ``attachment`` as writing; the returned call marks it done."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        names = _writing_names(attachment)
        for name in names:
            self._writing.setdefault(name, set()).add(done)

        def finished() -> None:
            for name in names:
                waiting = self._writing.get(name)
                if waiting is not None:
                    waiting.discard(done)
                    if not waiting:
                        del self._writing[name]
            if not done.done():
                done.set_result(None)

        return finished

    async def delete(self, attachment: Attachment, *, base_url: str = "") -> Outcome:
        """Delete every object the manifest knows for these paths and this attachment.

        A path's rows that belong to another attachment are left alone: the CMS
        reuses a deleted file's name for the next upload of that name, and a
        deletion that arrives late (queued while offload was away, or sent again
        on purpose) must not take the newer attachment's objects with it.

        An upload of the same attachment still writing in this process (its
        client may have given up, but its copies go on) is waited for first:
        its objects get their rows only at its end, and a deletion that ran
        before would miss them and leave them public.
        """
        writing = set().union(*(self._writing.get(n, set()) for n in _writing_names(attachment)))
        if writing:
            await asyncio.wait([asyncio.shield(future) for future in writing])
        rows = await self._run(
            lambda: self.manifest.rows(
                self.site.name, paths=attachment.paths, attachment_id=attachment.attachment_id
            )
        )
        owner = attachment.attachment_id
        rows = [row for row in rows if owner is None or row.attachment_id in (None, owner)]
        outcome = Outcome(self.site.name)
        if not rows:
            return outcome
        keys = [row.key for row in rows]
        status, error = "deleted", None
        try:
            # An original's variants (images on demand) go with it, in the same batch.
            variants = await find_variants(self.site, self.storage, keys)
        except (StorageError, StorageUnavailable, UnsafeKey) as exc:
            log.warning("site %s: listing variants failed: %s", self.site.name, exc)
            variants = []
        variant_items = variant_purges(self.site, variants)
        await self._purge_if_unrecorded(keys, variant_items)
        try:
            await self.storage.delete(keys + variants)  # batches of up to 1,000 keys each
        except (StorageError, StorageUnavailable, UnsafeKey) as exc:
            status, error = "failed", _failure(exc)[0]
            log.warning("site %s: deleting %d objects failed: %s", self.site.name, len(keys), exc)
        else:
            for key in keys + variants:
                self._forget(key)
            late = await self._late_variants(keys)
            # Every deleted key is purged, versioned or not: its URL must stop answering.
            outcome.purges = purges_for_keys(self.site, keys) + variant_items + late
            remove = functools.partial(
                self.manifest.remove, self.site.name, keys, purges=outcome.purges
            )
            await self._run(remove)
        for row in rows:
            url = self.cdn_url(row.key, base_url)
            outcome.items.append(Item(row.path, status, row.key, url, row.size, row.etag, error))
        return outcome


def _writing_names(attachment: Attachment) -> set[tuple[str, str]]:
    """What an upload in progress is known by to a deletion: its attachment id and paths."""
    names = {("path", path) for path in attachment.paths}
    if attachment.attachment_id is not None:
        names.add(("id", attachment.attachment_id))
    return names


def _holds(info: ObjectInfo, fact: FileFacts) -> bool:
    """Whether the object holds the file's bytes (same size and stored SHA-256)."""
    return info.size == fact.size and info.metadata.get(META_SHA256) == fact.sha256


def manifest_rewriter(site: Site, manifest: Manifest) -> Rewriter:
    """A Rewriter whose lookups ask the manifest: each one is a blocking SQLite query."""
    return Rewriter(
        site,
        lambda path: manifest.key_for(site.name, path),
        lambda key: manifest.path_for(site.name, key),
    )


def _failure(exc: BaseException) -> tuple[str, bool]:
    """A failed file's short reason, and whether the request caused it (not the storage)."""
    if isinstance(exc, VersionCollision):  # sending it again meets the same folder
        return "its version folder holds other bytes under this name (a hash collision)", True
    if isinstance(exc, LinkRefused):
        return "the storage folder links this key elsewhere", False
    if isinstance(exc, UnsafeKey):
        return f"the storage refuses the key: {str(exc)[:160]}", True
    if isinstance(exc, StorageError | StorageUnavailable | OSError):
        return _short_error(exc), False
    if isinstance(exc, ManifestError):
        return "the manifest cannot be written now", False
    return "internal error", False


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, StorageUnavailable):
        return "storage unavailable"
    if isinstance(exc, StorageError):
        return "storage error"
    return "the file could not be read"

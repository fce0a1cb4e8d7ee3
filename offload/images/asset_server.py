"""Specify's web-asset-server protocol over a site's storage.

Followed from ``specify/web-asset-server`` (``server.py``, ``settings.py``,
``views/web_asset_store.xml``), the upstream Python 3 server:

- ``/fileget?coll=&type=O|T&filename=&scale=&downloadname=``: the original, or a
  thumbnail fitting ``scale`` x ``scale``, made on first request and kept beside the
  other thumbnails; PDF, TIFF and HEIC thumbnails are PNG. ``downloadname`` gives
  ``Content-Disposition: inline; filename*=utf-8''...``.
- ``/fileupload`` (POST form ``store``, ``type``, ``coll``, ``token``, one file):
  ``type=T`` is answered "Ignoring thumbnail upload!"; an original is stored
  (replacing one of that name, whose thumbnails then go) and answered "Ok.".
- ``/filedelete`` (POST form ``filename``, ``coll``, ``token``): 404 when the
  original is missing; else it goes with all its thumbnails, "Ok.".
- ``/getmetadata?coll=&filename=&dt=``: EXIF as a JSON list of ``{"Name": group,
  "Fields": {tag: value}}`` (indent 4), or with ``dt=date`` the text of
  ``EXIF DateTimeOriginal`` (404 "DateTime not found in EXIF" without one).
- ``/testkey?random=&token=``: "Ok." when the token is good, always checked.
- Tokens (``specify_token``) sign ``filename`` (``store`` for uploads, ``random`` for
  testkey); bad ones get 403 with Specify's message. GET and HEAD need none unless
  ``asset_require_key_for_get``, or the file lies under the site's ``signed_prefixes``
  (``asset_routes``). Answers carry ``X-Timestamp``.

Where offload differs: a collection lives at ``{prefix}/{coll}/originals/`` and
``{prefix}/{coll}/thumbnails/`` (``asset_collections`` maps a collection to
another folder, or with "" to the prefix itself as Specify's ``COLLECTION_DIRS =
None`` does), on the site's storage, local or S3, so an unlisted collection
is not a 404 as with Specify's ``COLLECTION_DIRS``. Input Specify would trip
over (a missing ``type``, a ``scale`` that is no number, a type it cannot
thumbnail, a name with '/') is a 400 with a short body, not a 500. A file name
is one key segment (``keys.key_problem``).

Thumbnails are named ``{filename}_{scale}{ext}`` (``a.tif_200.png``), not
Specify's ``{root}_{scale}{ext}``, under which ``a.tif``, ``a.pdf`` and ``a.png``
shared ``a_200.png``; clients never see the name. A thumbnail records the ETag
of the original it was made from (``META_SOURCE_ETAG``, as transform variants
do), so one whose original was replaced by other means than ``/fileupload``
(sync, a write to the folder or bucket) is made again. ``/filedelete`` takes
both names of the original's thumbnails; see ``AssetStore.thumbnails`` for
when an earlier ``a_200.png`` is left alone. (Specify globbed ``a*``, which also
caught ``ab.jpg``'s.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import mimetypes
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from offload.config.settings import Site
from offload.images.heif import is_heif_type
from offload.images.thumbnails import ThumbnailError, make_thumbnail, read_exif
from offload.images.variants import (
    META_SOURCE_ETAG,
    PURGE_SAFETY_DELAY,
    delete_purged,
    find_variants,
    is_stale,
    is_variant_key,
)
from offload.keys import join_key, key_problem
from offload.manifest import Manifest, ManifestError, PurgeItem
from offload.purge.targets import purges_for_keys
from offload.storage import Storage, StorageError
from offload.storage.base import ObjectInfo

log = logging.getLogger(__name__)
ORIGINALS = "originals"
THUMBNAILS = "thumbnails"
#: Specify's CAN_THUMBNAIL, and HEIC (libvips reads it).
CAN_THUMBNAIL = frozenset(
    {"image/jpeg", "image/gif", "image/png", "image/tiff", "application/pdf", "image/heic"}
)
#: Thumbnails of these are PNG, as Specify makes them.
PNG_THUMBNAIL = frozenset({"application/pdf", "image/tiff", "image/heic"})
#: Largest thumbnail side asked for; Specify's client asks for a few hundred pixels.
MAX_SCALE = 4096
#: Bytes of an original written to its temporary file at a time.
COPY_BLOCK = 1024 * 1024

mimetypes.add_type("image/heic", ".heic")

Run = Callable[..., Awaitable[Any]]
#: A render slot: entered around every copy of an original and its libvips work.
Slot = Callable[..., AbstractAsyncContextManager[Any]]


class AssetError(Exception):
    """An answer other than success: its status and Specify's short text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Asset:
    """One file of one collection, as a request names it."""

    coll: str
    filename: str


def guess_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename, strict=False)[0]


def parse_asset(coll: str | None, filename: str | None, *, field: str = "filename") -> Asset:
    """Check the collection and file name a request gives; AssetError 400 if unsafe."""
    if not coll:
        raise AssetError(400, "coll is missing.")
    if not filename:
        raise AssetError(400, f"{field} is missing.")
    for what, value in (("coll", coll), (field, filename)):
        if "/" in value or key_problem(value):
            raise AssetError(400, f"{what} is not a safe name.")
    return Asset(coll, filename)


def parse_scale(text: str | None) -> int:
    if not text or not text.isascii() or not text.isdigit():
        raise AssetError(400, "scale must be a whole number of pixels.")
    scale = int(text)
    if not 1 <= scale <= MAX_SCALE:
        raise AssetError(400, f"scale must be from 1 to {MAX_SCALE}.")
    return scale


def collection_folder(site: Site, coll: str) -> str:
    """The collection's folder key: under the prefix, mapped by ``asset_collections``.

    A collection whose folder would be the site's variants folder (or lie in it) is
    refused: images on demand deletes what it finds there as variants."""
    folder = join_key(site.prefix, dict(site.asset_collections).get(coll, coll))
    if is_variant_key(site, folder + "/"):
        raise AssetError(400, "coll is not a safe name.")
    return folder


def original_key(site: Site, asset: Asset) -> str:
    return join_key(collection_folder(site, asset.coll), f"{ORIGINALS}/{asset.filename}")


def thumbnail_ext(filename: str) -> str:
    """The extension of a thumbnail of ``filename``: its own, or ``.png`` as Specify has it."""
    return ".png" if guess_type(filename) in PNG_THUMBNAIL else os.path.splitext(filename)[1]


def thumbnail_name(filename: str, scale: int) -> str:
    """``{filename}_{scale}{ext}``: the whole name, so ``a.tif`` and ``a.png`` keep apart."""
    return f"{filename}_{scale}{thumbnail_ext(filename)}"


def thumbnail_key(site: Site, asset: Asset, scale: int) -> str:
    return join_key(thumbnails_folder(site, asset.coll), thumbnail_name(asset.filename, scale))


def thumbnails_folder(site: Site, coll: str) -> str:
    return join_key(collection_folder(site, coll), THUMBNAILS)


def is_thumbnail_of(name: str, filename: str) -> bool:
    """Whether ``name`` is a thumbnail of ``filename`` as this server names them."""
    return _numbered(name, filename, thumbnail_ext(filename))


def is_earlier_thumbnail_of(name: str, filename: str) -> bool:
    """Whether ``name`` is what Specify, and offload before, named a thumbnail of
    ``filename``: ``{root}_{scale}{ext}``, a name other originals with that root and
    that thumbnail extension (``a.png``, ``a.tif``, ``a.pdf``) share."""
    return _numbered(name, os.path.splitext(filename)[0], thumbnail_ext(filename))


def _numbered(name: str, stem: str, ext: str) -> bool:
    return re.fullmatch(rf"{re.escape(stem)}_\d+{re.escape(ext)}", name) is not None


class AssetStore:
    """The protocol's storage side for one site: keys, thumbnails, uploads, deletions.

    ``run`` runs a blocking call in a bounded executor (file copies, libvips).
    ``slot`` bounds the work that copies an original out of storage and opens it
    with libvips (a thumbnail, an EXIF read): entered around each, it waits
    briefly for a free slot or raises. Concurrent first requests for one
    thumbnail are joined by the caller (``asset_routes``), which holds the
    single-flight.
    """

    def __init__(
        self,
        site: Site,
        storage: Storage,
        run: Run,
        spool: Path | None = None,
        slot: Slot = contextlib.nullcontext,
        manifest: Manifest | None = None,
    ):
        self.site = site
        self.storage = storage
        self.run = run
        self.spool = spool  # folder for temporary files; None = the system's
        self.slot = slot
        #: Where the CDN purges of replaced and deleted files are queued (None: not).
        self.manifest = manifest

    async def original(self, asset: Asset) -> ObjectInfo:
        info = await self.storage.head(original_key(self.site, asset))
        if info is None:
            raise AssetError(404, f"Missing original: {asset.filename}")
        return info

    async def ensure_thumbnail(self, asset: Asset, scale: int) -> str:
        """The thumbnail's key, made and stored first if it is missing or stale.

        Only the making takes a render slot: a thumbnail already made is served
        while every slot is busy.
        """
        mimetype = guess_type(asset.filename)
        if mimetype not in CAN_THUMBNAIL:
            raise AssetError(400, "Cannot make a thumbnail of this type of file.")
        key = thumbnail_key(self.site, asset, scale)
        made, original = await asyncio.gather(self.storage.head(key), self.original(asset))
        if made is not None and not is_stale(made, original):
            return key
        # The HEIC turn by either type: a copied-in original may be stored untyped.
        kind = mimetype if is_heif_type(mimetype) else original.content_type
        async with self.slot(kind), self._fetched(original) as (source, etag):
            target = source.with_name("thumb" + os.path.splitext(key)[1])
            try:
                await self.run(
                    make_thumbnail, source, target, scale, pdf=mimetype == "application/pdf"
                )
            except ThumbnailError as exc:
                raise AssetError(422, str(exc)) from None
            await self.storage.put(
                key, target, content_type=guess_type(key), metadata={META_SOURCE_ETAG: etag}
            )
        return key

    async def store(self, asset: Asset, source: Path) -> ObjectInfo:
        """Put an uploaded original; a replaced original's thumbnails and transform
        variants go, and its URL and theirs are purged where the site purges.

        As the upload webhook does it: the original's purge is queued before its
        bytes change (due later, pulled forward once the change is done). The
        variants are listed once the new bytes are in, so a render of the old bytes
        either stored its variant before (listed here) or finds the new ETag when it
        checks its original, and deletes it (``offload.server.transforms``)."""
        key = original_key(self.site, asset)
        replaced: list[PurgeItem] = []
        if self.manifest is not None and await self.storage.head(key) is not None:
            replaced = purges_for_keys(self.site, [key])
            await self._queue_later(replaced)
        info = await self.storage.put(key, source, content_type=guess_type(asset.filename))
        await self._delete(await self.thumbnails(asset), await self._variants(key), replaced)
        return info

    async def delete(self, asset: Asset) -> list[str]:
        """Delete the original, every thumbnail of it and its transform variants, and
        purge their URLs where the site purges; the original's and thumbnails' keys."""
        await self.original(asset)
        key = original_key(self.site, asset)
        keys = [key, *await self.thumbnails(asset)]
        await self._delete(keys, await self._variants(key))
        try:  # rendered meanwhile (as Offloader._late_variants): the deletion stands
            await self._delete([], await self._variants(key))
        except (StorageError, ManifestError) as exc:
            log.warning(
                "site %s: variants stored during the deletion of %s stay: %s",
                self.site.name,
                key,
                exc,
            )
        return keys

    async def _variants(self, key: str) -> list[str]:
        """The original's stored transform variants (images on demand)."""
        if not self.site.transform_prefix:
            return []
        return await find_variants(self.site, self.storage, [key])

    async def _delete(
        self, keys: list[str], variants: list[str], also: Sequence[PurgeItem] = ()
    ) -> None:
        """Delete these, purging their URLs (and ``also``'s) first where the site purges."""
        if self.manifest is None:
            if keys or variants:
                await self.storage.delete([*keys, *variants])
            return
        await delete_purged(
            self.site, self.storage, variants, self.manifest, self.run, others=keys, also=also
        )

    async def _queue_later(self, items: list[PurgeItem]) -> None:
        if items and self.manifest is not None:
            later = time.time() + PURGE_SAFETY_DELAY
            await self.run(functools.partial(self.manifest.enqueue_purges, items, not_before=later))

    async def thumbnails(self, asset: Asset) -> list[str]:
        """The keys of the original's thumbnails, under this server's names and Specify's.

        An earlier name (``a_200.png``) is left alone while another original that
        would have had that name too (``a.png``, ``a.pdf``, beside ``a.tif``), or has
        it as this server's name now (``a.png_200.png``, also the earlier name of
        ``a.png.tif``'s), still exists: it may be that original's thumbnail,
        and deleting a file of an original that stays is worse than keeping an
        unused one. Nothing serves an earlier name any more, so what is left costs
        only its space, and it goes with the last original that could own it. A
        name of this server's (``a.png_200.png``) always goes with its original,
        even when it was also another's earlier name: only this one is served.
        """
        folder = thumbnails_folder(self.site, asset.coll) + "/"
        filename = asset.filename
        root = os.path.splitext(filename)[0]
        own = [
            info.key
            async for info in self.storage.list(f"{folder}{filename}_")
            if is_thumbnail_of(info.key[len(folder) :], filename)
        ]
        earlier = [
            info.key
            async for info in self.storage.list(f"{folder}{root}_")
            if is_earlier_thumbnail_of(info.key[len(folder) :], filename)
        ]
        if earlier and await self._shares_earlier_names(asset):
            earlier = []
        return sorted({*own, *earlier})

    async def _shares_earlier_names(self, asset: Asset) -> bool:
        """Whether another original has, or had, a thumbnail of an earlier name of ours."""
        folder = join_key(collection_folder(self.site, asset.coll), ORIGINALS) + "/"
        root = os.path.splitext(asset.filename)[0]
        ext = thumbnail_ext(asset.filename)
        if (
            root != asset.filename
            and thumbnail_ext(root) == ext
            and await self.storage.head(folder + root) is not None
        ):
            return True  # root_200.ext is the name of that original's thumbnail now
        async for info in self.storage.list(f"{folder}{root}."):
            name = info.key[len(folder) :]
            if (
                name != asset.filename
                and os.path.splitext(name)[0] == root
                and thumbnail_ext(name) == ext
            ):
                return True
        return False

    async def metadata(self, asset: Asset, datatype: str) -> str:
        """Specify's getmetadata body: the EXIF JSON, or with ``dt=date`` the date.

        The original is copied out whole to be read, so this takes a render slot.
        """
        original = await self.original(asset)
        async with self.slot(), self._fetched(original) as (source, _etag):
            groups = await self.run(read_exif, source)
        if datatype == "date":
            date = groups.get("EXIF", {}).get("DateTimeOriginal")
            if date is None:
                raise AssetError(404, "DateTime not found in EXIF")
            return date
        body = [{"Name": name, "Fields": fields} for name, fields in groups.items()]
        return json.dumps(body, indent=4)

    @contextlib.asynccontextmanager
    async def _fetched(self, original: ObjectInfo) -> AsyncIterator[tuple[Path, str]]:
        """The object copied to a temporary file, and the ETag of what was copied.

        Streamed, never held whole: a file of a local folder is copied in one
        executor job; another storage's chunks are written a batch of about
        ``COPY_BLOCK`` bytes at a time.
        """
        key = original.key
        folder = await self.run(tempfile.mkdtemp, "", "offload-asset-", self.spool)
        path = Path(folder) / ("original" + os.path.splitext(key)[1])
        try:
            opened = (
                await self.storage.open_file(key) if self.storage.features.local_files else None
            )
            if opened is not None:
                await self.run(_copy_out, opened[0], path)
                etag = original.etag  # if it changed since, the next request remakes it
            else:
                etag = await self._copy_stream(key, path)
            yield path, etag
        finally:
            await self.run(_remove_tree, Path(folder))

    async def _copy_stream(self, key: str, path: Path) -> str:
        info, body = await self.storage.get(key)
        async with body:
            handle = await self.run(open, path, "wb")
            try:
                batch: list[bytes] = []
                size = 0
                async for chunk in body:
                    batch.append(chunk)
                    size += len(chunk)
                    if size >= COPY_BLOCK:
                        await self.run(handle.writelines, batch)
                        batch, size = [], 0
                if batch:
                    await self.run(handle.writelines, batch)
            finally:
                await self.run(handle.close)
        return info.etag


def _copy_out(opened: BinaryIO, path: Path) -> None:
    with opened, path.open("wb") as out:
        shutil.copyfileobj(opened, out, COPY_BLOCK)


def _remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

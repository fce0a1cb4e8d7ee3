"""Specify's web-asset-server protocol over a site's storage.

Followed from ``specify/web-asset-server`` (``server.py``, ``settings.py``,
``views/web_asset_store.xml``), the upstream Python 3 server:

- ``/fileget?coll=&type=O|T&filename=&scale=&downloadname=``: the original, or a
  thumbnail fitting ``scale`` x ``scale``, named ``{root}_{scale}{ext}`` beside the
  other thumbnails and made on first request; PDF, TIFF and HEIC thumbnails are
  PNG. ``downloadname`` gives ``Content-Disposition: inline; filename*=utf-8''...``.
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
  ``asset_require_key_for_get``. Answers carry ``X-Timestamp``.

Where offload differs: a collection lives at ``{prefix}/{coll}/originals/`` and
``{prefix}/{coll}/thumbnails/`` (``asset_collections`` maps a collection to
another folder, or with "" to the prefix itself as Specify's ``COLLECTION_DIRS =
None`` does), on the site's storage, local or S3, so an unlisted collection
is not a 404 as with Specify's ``COLLECTION_DIRS``. Input Specify would trip
over (a missing ``type``, a ``scale`` that is no number, a type it cannot
thumbnail, a name with '/') is a 400 with a short body, not a 500. A file name
is one key segment (``keys.key_problem``). The thumbnails of ``a.jpg`` are the
``a_{digits}.{ext}`` in the thumbnails folder (Specify globbed ``a*``, which
also caught ``ab.jpg``'s).
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offload.config.settings import Site
from offload.images.thumbnails import ThumbnailError, make_thumbnail, read_exif
from offload.keys import join_key, key_problem
from offload.storage import Storage
from offload.storage.base import ObjectInfo

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
COPY_BLOCK = 1024 * 1024

mimetypes.add_type("image/heic", ".heic")

Run = Callable[..., Awaitable[Any]]


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
    """The collection's folder key: under the prefix, mapped by ``asset_collections``."""
    return join_key(site.prefix, dict(site.asset_collections).get(coll, coll))


def original_key(site: Site, asset: Asset) -> str:
    return join_key(collection_folder(site, asset.coll), f"{ORIGINALS}/{asset.filename}")


def thumbnail_name(filename: str, scale: int) -> str:
    """Specify's ``{root}_{scale}{ext}``, PNG for PDF, TIFF and HEIC."""
    root, ext = os.path.splitext(filename)
    if guess_type(filename) in PNG_THUMBNAIL:
        ext = ".png"
    return f"{root}_{scale}{ext}"


def thumbnail_key(site: Site, asset: Asset, scale: int) -> str:
    name = thumbnail_name(asset.filename, scale)
    return join_key(collection_folder(site, asset.coll), f"{THUMBNAILS}/{name}")


def is_thumbnail_of(name: str, filename: str) -> bool:
    root, ext = os.path.splitext(filename)
    exts = {re.escape(ext), r"\.png"}
    return re.fullmatch(rf"{re.escape(root)}_\d+({'|'.join(exts)})", name) is not None


class AssetStore:
    """The protocol's storage side for one site: keys, thumbnails, uploads, deletions.

    ``run`` runs a blocking call in a bounded executor (file copies, libvips).
    Concurrent first requests for one thumbnail are joined by the caller
    (``asset_routes``), which holds the single-flight.
    """

    def __init__(self, site: Site, storage: Storage, run: Run, spool: Path | None = None):
        self.site = site
        self.storage = storage
        self.run = run
        self.spool = spool  # folder for temporary files; None = the system's

    async def original(self, asset: Asset) -> ObjectInfo:
        info = await self.storage.head(original_key(self.site, asset))
        if info is None:
            raise AssetError(404, f"Missing original: {asset.filename}")
        return info

    async def ensure_thumbnail(self, asset: Asset, scale: int) -> str:
        """The thumbnail's key, made and stored first if it is not there yet."""
        mimetype = guess_type(asset.filename)
        if mimetype not in CAN_THUMBNAIL:
            raise AssetError(400, "Cannot make a thumbnail of this type of file.")
        key = thumbnail_key(self.site, asset, scale)
        if await self.storage.head(key) is not None:
            return key
        await self.original(asset)
        async with self._fetched(original_key(self.site, asset)) as source:
            target = source.with_name("thumb" + os.path.splitext(key)[1])
            try:
                await self.run(
                    make_thumbnail, source, target, scale, pdf=mimetype == "application/pdf"
                )
            except ThumbnailError as exc:
                raise AssetError(422, str(exc)) from None
            await self.storage.put(key, target, content_type=guess_type(key))
        return key

    async def store(self, asset: Asset, source: Path) -> ObjectInfo:
        """Put an uploaded original; a replaced original's thumbnails go."""
        key = original_key(self.site, asset)
        info = await self.storage.put(key, source, content_type=guess_type(asset.filename))
        await self.storage.delete(await self.thumbnails(asset))
        return info

    async def delete(self, asset: Asset) -> list[str]:
        """Delete the original and every thumbnail of it; the keys deleted."""
        await self.original(asset)
        keys = [original_key(self.site, asset), *await self.thumbnails(asset)]
        await self.storage.delete(keys)
        return keys

    async def thumbnails(self, asset: Asset) -> list[str]:
        folder = join_key(collection_folder(self.site, asset.coll), THUMBNAILS) + "/"
        root = os.path.splitext(asset.filename)[0]
        return [
            info.key
            async for info in self.storage.list(f"{folder}{root}_")
            if is_thumbnail_of(info.key[len(folder) :], asset.filename)
        ]

    async def metadata(self, asset: Asset, datatype: str) -> str:
        """Specify's getmetadata body: the EXIF JSON, or with ``dt=date`` the date."""
        await self.original(asset)
        async with self._fetched(original_key(self.site, asset)) as source:
            groups = await self.run(read_exif, source)
        if datatype == "date":
            date = groups.get("EXIF", {}).get("DateTimeOriginal")
            if date is None:
                raise AssetError(404, "DateTime not found in EXIF")
            return date
        body = [{"Name": name, "Fields": fields} for name, fields in groups.items()]
        return json.dumps(body, indent=4)

    @contextlib.asynccontextmanager
    async def _fetched(self, key: str) -> AsyncIterator[Path]:
        """The object copied to a temporary file, streamed (never held whole)."""
        folder = await self.run(tempfile.mkdtemp, "", "offload-asset-", self.spool)
        path = Path(folder) / ("original" + os.path.splitext(key)[1])
        try:
            _info, body = await self.storage.get(key)
            async with body:
                handle = await self.run(open, path, "wb")
                try:
                    async for chunk in body:
                        await self.run(handle.write, chunk)
                finally:
                    await self.run(handle.close)
            yield path
        finally:
            await self.run(_remove_tree, Path(folder))


def _remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)

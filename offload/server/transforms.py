"""The origin's transform route: ``/{transform_prefix}/{options}/{key}``.

The first request for a variant renders it: the original is streamed from
storage to a temporary file, rendered by libvips in the executor
(``offload.images.render``), stored in the bucket (``offload.images.variants``)
and then served like any object. Later requests find the stored variant and
are answered exactly as the origin answers an object (ETag, 304, ranges,
Cache-Control; a versioned original's variants are immutable too), by the
origin's own code. A variant made from an older original (its stored source
ETag differs from the original's) is made again. Once a variant is stored, its
original is HEADed again straight from storage: if it went meanwhile (a
deletion raced the render), the variant is deleted and the answer is 404, so
no variant outlives its original (``Transforms._still_there``).

Bounds: concurrent requests for one variant share one render (single-flight);
at most ``transform_concurrency`` renders run at once in this process, and a
render that cannot start within ``WAIT`` seconds is a 503 with Retry-After, so
a burst never builds an unbounded queue of decoders. Input pixels and output
bytes are bounded by the site's limits (422).

A key under ``signed_prefixes`` is never transformed: a variant would be a
copy of a private object at a URL anyone may fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from aiohttp import web
from cachetools import LRUCache

from offload.config.settings import Settings, Site
from offload.http import caching as httpcache
from offload.images import heif
from offload.images.formats import output_format
from offload.images.options import OptionsError, SignatureError, TransformOptions, resolve
from offload.images.render import Limits, RenderError, render
from offload.images.variants import (
    META_SOURCE_ETAG,
    delete_purged,
    is_stale,
    is_variant_key,
    variant_key,
)
from offload.keys import is_versioned_key, key_problem
from offload.manifest import Manifest, ManifestError
from offload.server.origin_cache import OriginCache
from offload.server.plain_text import text_answer
from offload.storage import NotFound, ObjectInfo, Storage, StorageError, StorageUnavailable
from offload.storage.singleflight import SingleFlight

log = logging.getLogger(__name__)
#: Seconds a render may wait for a free slot before the answer is 503.
WAIT = 2.0
#: Seconds a HEIC may wait for its process's turn before the answer is 503: a 24 MP
#: HEIC takes about 2 s of CPU (libde265 decodes it whole, on one core), so a page of a
#: few new phone photos waits its turn instead of failing; the waiters hold no slot.
HEIC_WAIT = 10.0
#: Most bytes a pixel of an original may take (16-bit RGBA): a larger file is refused
#: before it is fetched, whatever its header would say.
BYTES_PER_PIXEL = 8
#: Bytes of an original written at a time when it is fetched (memory per render).
FETCH_BATCH = 1 << 20
RETRY_AFTER = "2"
#: Option sets and variant keys remembered per process (most recently used).
RESOLVED = 10_000


class Busy(Exception):
    """No render slot (``WAIT``), or for a HEIC no turn (``HEIC_WAIT``), came free in time."""


class Replaced(Exception):
    """The original was replaced while its variant was made (the variant is deleted)."""


class OriginParts(Protocol):
    """What the transform route uses of ``offload.server.origin.Origin``."""

    settings: Settings
    storages: Mapping[str, Storage]
    cache: OriginCache

    async def head_object(self, site: str, storage: Storage, key: str) -> ObjectInfo | None: ...

    async def object_answer(
        self,
        request: web.Request,
        site: Site,
        storage: Storage,
        info: ObjectInfo,
        cors: dict[str, str],
    ) -> web.StreamResponse: ...


class Transforms:
    """The transform route of one process (its render slots and flights)."""

    def __init__(self, origin: OriginParts) -> None:
        self.origin = origin
        self.slots = asyncio.Semaphore(origin.settings.transform_concurrency)
        #: A HEIC is decoded whole (``offload.images.heif``): one at a time in this
        #: process, transforms and asset-server thumbnails together, waited for before
        #: a render slot is taken, so a HEIC in line holds none.
        self._heic = asyncio.Semaphore(1)
        self.flights = SingleFlight()
        #: Where a dropped variant's purge is queued (``attach``); None: not queued.
        self._manifest: Manifest | None = None
        self._run: Callable[..., Awaitable[Any]] | None = None
        #: (site, options segment, key) -> its options, and with the format -> the
        #: variant's key: a hit of a hot variant parses and names nothing (both are
        #: pure functions of these, and took about a tenth of a hit's CPU time).
        self._options: LRUCache[tuple[str, str, str], TransformOptions] = LRUCache(RESOLVED)
        self._targets: LRUCache[tuple[str, TransformOptions, str, str], str] = LRUCache(RESOLVED)

    def attach(self, manifest: Manifest, run: Callable[..., Awaitable[Any]]) -> None:
        """The manifest (and ``run``, its calls in an executor) where the purges of
        variants dropped after a race are queued."""
        self._manifest, self._run = manifest, run

    def claims(self, site: Site, key: str) -> bool:
        """Whether a request path (a decoded key) is a transform URL of the site."""
        return bool(site.transform_prefix) and key.startswith(site.transform_prefix + "/")

    async def answer(
        self, request: web.Request, site: Site, path: str, cors: dict[str, str]
    ) -> web.StreamResponse:
        segment, _, key = path[len(site.transform_prefix) + 1 :].partition("/")
        if problem := key_problem(key):
            return text_answer(400, problem)
        if (site.prefix and not key.startswith(site.prefix + "/")) or is_variant_key(site, key):
            return _not_found(site, cors)
        if site.needs_signature(key):
            return text_answer(403, "keys under signed_prefixes are not transformed")
        try:
            options = self._options.get((site.name, segment, key)) or self._resolve(
                site, segment, key
            )
        except OptionsError as exc:
            return text_answer(400, f"bad transform options: {exc}")
        except SignatureError as exc:
            return text_answer(403, f"transform refused: {exc}")
        try:
            # Made again from the new bytes when the original was replaced while it was
            # being made; a second replacement in a row is a 503.
            for _attempt in range(2):
                with contextlib.suppress(Replaced):
                    return await self._variant(request, site, key, options, cors)
            return text_answer(503, "the image is changing; try again", retry_after=RETRY_AFTER)
        except RenderError as exc:  # kept briefly at the CDN: a repeat costs no render
            return text_answer(exc.status, str(exc), cache_control=_negative(site), extra=cors)
        except Busy:
            return text_answer(
                503, "too many images being made; try again", retry_after=RETRY_AFTER
            )
        except NotFound:  # the original went while it was being read
            return _not_found(site, cors)
        except StorageUnavailable as exc:
            log.warning("%s %s: storage unavailable: %s", site.name, key, exc)
            return text_answer(503, "storage unavailable, try again later", retry_after="5")
        except StorageError as exc:
            log.error("%s %s: storage error: %s", site.name, key, exc)
            return text_answer(502, "storage error")

    def _resolve(self, site: Site, segment: str, key: str) -> TransformOptions:
        options = self._options[(site.name, segment, key)] = resolve(site, segment, key)
        return options

    def _target(self, site: Site, key: str, options: TransformOptions, fmt: str) -> str:
        """The variant's key (``variant_key``), remembered."""
        remembered = (site.name, options, key, fmt)
        target = self._targets.get(remembered)
        if target is None:
            target = self._targets[remembered] = variant_key(site, key, options, fmt)
        return target

    async def _variant(
        self,
        request: web.Request,
        site: Site,
        key: str,
        options: TransformOptions,
        cors: dict[str, str],
    ) -> web.StreamResponse:
        origin = self.origin
        storage = origin.storages[site.name]
        original = await self._info(site, storage, key)
        if original is None:
            return _not_found(site, cors)
        refused = _unfit(site, original)
        if refused is not None:
            return text_answer(*refused, cache_control=_negative(site), extra=cors)
        accept = request.headers.get("Accept", "")
        fmt = output_format(options.format, accept, original.content_type or "")
        if options.format == "auto":
            vary = cors.get("Vary")
            cors = {**cors, "Vary": f"{vary}, Accept" if vary else "Accept"}
        target = self._target(site, key, options, fmt)
        info = await self._info(site, storage, target)
        if info is None or is_stale(info, original):
            info = await self.flights.run(
                (site.name, target),
                lambda: self._make(site, storage, original, options, fmt, target),
            )
        return await origin.object_answer(request, site, storage, info, cors)

    async def _info(self, site: Site, storage: Storage, key: str) -> ObjectInfo | None:
        origin = self.origin
        return await origin.cache.metadata(
            site.name,
            key,
            lambda: origin.head_object(site.name, storage, key),
            negative_ttl=site.negative_ttl,
            stale_if_error=site.stale_if_error,
        )

    @contextlib.asynccontextmanager
    async def heic_turn(self, content_type: str | None) -> AsyncIterator[None]:
        """Wait (``HEIC_WAIT`` at most, then Busy) for this process's HEIC turn when the
        original is a HEIC; nothing to wait for otherwise."""
        if not heif.is_heif_type(content_type):
            yield
            return
        try:
            async with asyncio.timeout(HEIC_WAIT):
                await self._heic.acquire()
        except TimeoutError:
            raise Busy from None
        try:
            yield
        finally:
            self._heic.release()

    @contextlib.asynccontextmanager
    async def _render_slot(self, content_type: str | None) -> AsyncIterator[None]:
        """The HEIC turn when the original is one, then a render slot (``WAIT`` at
        most, then Busy)."""
        async with self.heic_turn(content_type):
            try:
                async with asyncio.timeout(WAIT):
                    await self.slots.acquire()
            except TimeoutError:
                raise Busy from None
            try:
                yield
            finally:
                self.slots.release()

    async def _make(
        self,
        site: Site,
        storage: Storage,
        original: ObjectInfo,
        options: TransformOptions,
        fmt: str,
        target: str,
    ) -> ObjectInfo:
        loop = asyncio.get_running_loop()
        async with self._render_slot(original.content_type):
            workdir = Path(await loop.run_in_executor(None, tempfile.mkdtemp, "", "offload-img-"))
            try:
                source = workdir / "original"
                etag = await _fetch(storage, original, source)
                limits = Limits(site.transform_max_pixels, site.transform_max_output)
                rendered = await loop.run_in_executor(
                    None,
                    lambda: render(source, options, fmt=fmt, limits=limits, workdir=workdir),
                )
                versioned = is_versioned_key(original.key) or "immutable" in (
                    original.cache_control or ""
                )
                info = await storage.put(
                    target,
                    rendered.path,
                    content_type=rendered.content_type,
                    cache_control=httpcache.cache_control(
                        max_age=site.max_age,
                        stale_while_revalidate=site.stale_while_revalidate,
                        stale_if_error=site.stale_if_error,
                        s_maxage=site.s_maxage,
                        versioned=site.versioning and versioned,
                    ),
                    metadata={META_SOURCE_ETAG: etag},
                )
                log.info("%s: made %s (%d bytes)", site.name, target, rendered.size)
            finally:
                await loop.run_in_executor(None, shutil.rmtree, workdir, True)
        self.origin.cache.forget(site.name, target)
        await self._still_there(site, storage, original.key, target, etag)
        return info

    async def _still_there(
        self, site: Site, storage: Storage, key: str, target: str, etag: str
    ) -> None:
        """Raise NotFound, having deleted the variant just stored at ``target``, when the
        original ``key`` went while it was being made; raise Replaced, having deleted
        it too, when other bytes (not ``etag``) replaced the original meanwhile.

        The deletion webhook lists an original's variants, deletes them with the
        original, then lists them once more (``Offloader._late_variants``). A
        variant stored after the first listing is caught by one side or the
        other: with read-after-write storage, if this HEAD (straight to storage,
        not through the origin's cache, which may remember the original) comes
        after the original's deletion, it finds it gone; if it comes before, the
        variant was stored before the deletion and the second listing finds it.
        Either way no variant outlives its original. A variant that cannot be
        deleted here is logged: ``offload variants --prune`` removes it.

        A replacement is caught the same way: its upload lists the variants again
        once its new bytes are stored, so a variant of the old bytes stored after
        that listing meets the new ETag here. Served, the edge would keep it after
        the replacement's purge; it is deleted and made again.

        When the HEAD fails, the variant is deleted too (the answer is the error):
        unchecked, it could be one that neither side would catch.
        """
        try:
            current = await storage.head(key)
        except StorageError:  # StorageUnavailable included
            await self._drop(site, storage, target)
            raise
        if current is not None and current.etag == etag:
            return
        self.origin.cache.forget(site.name, key)
        await self._drop(site, storage, target)
        if current is not None:
            raise Replaced(f"{key!r} was replaced while its variant was made")
        raise NotFound(f"{key!r} was deleted while its variant was made")

    async def _drop(self, site: Site, storage: Storage, target: str) -> None:
        """Delete a variant just stored (best effort: logged when it stays), its URLs'
        purge queued first where the site purges: with several workers, another one
        whose memory still held the old original may have served it meanwhile."""
        self.origin.cache.forget(site.name, target)
        if self._manifest is not None and self._run is not None:
            try:
                await delete_purged(site, storage, [target], self._manifest, self._run)
                return
            except ManifestError as exc:  # deleted all the same, unpurged
                log.warning("%s: the purge of %s was not queued: %s", site.name, target, exc)
            except StorageError as exc:
                log.warning("%s: the variant %s stays: %s", site.name, target, exc)
                return
        try:
            await storage.delete([target])
        except StorageError as exc:  # StorageUnavailable included
            log.warning("%s: the variant %s stays: %s", site.name, target, exc)


async def _fetch(storage: Storage, original: ObjectInfo, path: Path) -> str:
    """Put the original's bytes at ``path``; the ETag of what was put there.

    A storage whose objects are files on this host copies the file in one
    executor job, not two (a read and a write) per chunk through the event loop.
    Other storages stream it, writing a bounded batch of chunks at a time.
    """
    loop = asyncio.get_running_loop()
    opened = await storage.open_file(original.key) if storage.features.local_files else None
    if opened is not None:
        await loop.run_in_executor(None, _copy_out, opened[0], path)
        return original.etag  # if it changed since, its next request makes it again
    info, stream = await storage.get(original.key)
    handle = await loop.run_in_executor(None, path.open, "wb")
    try:
        batch: list[bytes] = []
        size = 0
        async with stream:
            async for chunk in stream:
                batch.append(chunk)
                size += len(chunk)
                if size >= FETCH_BATCH:
                    await loop.run_in_executor(None, handle.writelines, batch)
                    batch, size = [], 0
        if batch:
            await loop.run_in_executor(None, handle.writelines, batch)
    finally:
        await loop.run_in_executor(None, handle.close)
    return info.etag


def _copy_out(opened: BinaryIO, path: Path) -> None:
    with opened, path.open("wb") as out:
        shutil.copyfileobj(opened, out, FETCH_BATCH)


def _unfit(site: Site, original: ObjectInfo) -> tuple[int, str] | None:
    """Why an original is refused before a byte of it is fetched: not an image (415), or
    larger than an uncompressed image of ``transform_max_pixels`` could be (422)."""
    if not (original.content_type or "").startswith("image/"):
        return 415, "not an image: only images are transformed"
    if original.size > site.transform_max_pixels * BYTES_PER_PIXEL:
        return 422, "the image is too large to transform"
    return None


def _not_found(site: Site, cors: dict[str, str]) -> web.Response:
    return text_answer(404, "not found", cache_control=_negative(site), extra=cors)


def _negative(site: Site) -> str:
    return httpcache.negative_cache_control(site.negative_ttl)

"""The CDN origin: serve bucket objects with the headers a CDN needs to cache them well.

Every path outside ``/_offload/`` is a key; the site comes from the Host
header. Hot objects are answered from ``origin_cache.OriginCache`` without touching
storage; larger ones stream (local files with sendfile, S3 bodies chunk by
chunk), each write bounded by ``client_timeout`` so a slow client cannot hold
a connection or a thread for ever. Conditional and range logic is
``offload.http.caching``'s, not aiohttp's ``FileResponse`` (which answers 416 to
``If-Range`` with an ETag and to several ranges).

A hung bucket is an error like a refused one: each storage call (a HEAD, a
GET up to its first bytes, a small body, opening a file) must answer within
``storage_deadline`` seconds, else the storage counts as unavailable, so the
metadata cache answers from a stale copy (stale-if-error) or the client gets a
503 with Retry-After at once. The call's thread stays stuck in boto3 until its
own timeouts end it; the site's ``StoragePool`` keeps that to the site's own
threads and, once they are all stuck, refuses at once instead of queueing.

Storage that is not there (a missing folder or bucket, refused credentials:
``StorageMissing``) takes the same path: it says nothing about the key, so it
must never become a 404, which a CDN would keep for every key it asks for.
A HEAD that finds nothing (or is refused) cannot tell a missing key from a
missing folder or bucket, so before such an answer the storage's own
``check`` must have passed within ``PROOF_TTL`` seconds (one check per site at a
time, shared by concurrent misses; any object found renews the proof).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote

from aiohttp import web
from cachetools import LRUCache

from offload.config.settings import Settings, Site
from offload.http import caching as httpcache
from offload.http import zerocopy
from offload.http.signing import verify_url_signature
from offload.keys import UnsafeKey, is_versioned_key, key_problem
from offload.server.connections import origin_form
from offload.server.origin_cache import OriginCache
from offload.server.origin_metrics import OriginMetrics
from offload.server.plain_text import text_answer
from offload.server.pools import StoragePool
from offload.server.transforms import Transforms
from offload.storage import (
    ObjectInfo,
    Storage,
    StorageError,
    StorageUnavailable,
)
from offload.storage.base import StorageMissing
from offload.storage.content_types import guess_content_type
from offload.storage.s3direct import DirectBody
from offload.storage.singleflight import SingleFlight

log = logging.getLogger(__name__)
T = TypeVar("T")

ALLOW = "GET, HEAD, OPTIONS"
FALLBACK_PIECE = 64 * 1024  # bytes read per write when sendfile cannot be used
RETRY_AFTER = "5"
#: Seconds a storage found there (its check passed, or an object was found) stands
#: proven, so a miss is a 404 without asking again: a folder or bucket that goes
#: away can give 404s for at most this long, and a storm of misses costs at most
#: one check per site this often (a listing of one key on S3, a stat of a folder).
PROOF_TTL = 1.0
# Headers a browser may send in a CORS request to a media object.
_CORS_REQUEST_HEADERS = frozenset(
    {"range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)
_EXPOSED = "Content-Length, Content-Range, ETag, Last-Modified, Accept-Ranges"
_NOT_MODIFIED_HEADERS = (
    "ETag", "Cache-Control", "Last-Modified", "CDN-Cache-Control", "Vary",
    "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
)  # fmt: skip


class _Changed(Exception):
    """The object changed between reading its info and its body: answer again."""


class Origin:
    """The origin handler for every site of one process."""

    def __init__(
        self,
        settings: Settings,
        storages: Mapping[str, Storage],
        cache: OriginCache,
        metrics: OriginMetrics,
        pools: Mapping[str, StoragePool] | None = None,
    ) -> None:
        self.settings = settings
        self.storages = storages
        self.pools = pools or {}
        self._closing: set[asyncio.Future[None]] = set()
        self.cache = cache
        self.metrics = metrics
        self._headers: LRUCache[tuple[Any, ...], dict[str, str]] = LRUCache(
            maxsize=max(settings.meta_cache_entries, 1)
        )
        self._proven_until: dict[str, float] = {}  # site -> monotonic time
        self._proofs = SingleFlight()
        self.transforms = Transforms(self)
        self._by_host: dict[str, Site] = {}
        self._any_host: Site | None = None
        for site in settings.sites.values():
            for host in site.hostnames:
                if host == "*":
                    self._any_host = site
                else:
                    self._by_host[host] = site

    def site_for(self, host: str | None) -> Site | None:
        """The site that answers for a Host header (port and trailing dot ignored)."""
        name = (host or "").strip().lower()
        # "[::1]:8080" keeps its brackets; "example.com:8080" loses its port.
        name = name[: name.find("]") + 1] if name.startswith("[") else name.partition(":")[0]
        return self._by_host.get(name.rstrip("."), self._any_host)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        site = self.site_for(request.host)
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        try:
            for _attempt in range(2):
                try:
                    response = await self._answer(request, site)
                    break
                except _Changed:
                    continue
            else:
                response = text_answer(503, "the object is changing; try again", retry_after="1")
            return response
        finally:
            status = response.status if response is not None else 499
            self.metrics.request(site.name if site else "", status, time.perf_counter() - started)

    # -- the steps of one answer ---------------------------------------------------

    async def _answer(self, request: web.Request, site: Site | None) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            return text_answer(405, "method not allowed", extra={"Allow": ALLOW})
        if site is None:
            return text_answer(404, "no site answers for this host")
        if site.origin_secret and not site.origin_secret.matches(
            request.headers.get(site.origin_secret_header, "")
        ):
            return text_answer(403, "forbidden")
        raw_path = origin_form(request.raw_path).partition("?")[0]  # absolute-form too
        try:
            key = unquote(raw_path[1:], errors="strict")  # decoded exactly once
        except UnicodeDecodeError:
            return text_answer(400, "the path is not UTF-8")
        if problem := key_problem(key):
            return text_answer(400, problem)
        cors = _cors_headers(site, request)
        if request.method == "OPTIONS":
            return _options(site, request, cors)
        if site.asset_server and site.asset_require_key_for_get and not site.needs_signature(key):
            # Specify's REQUIRE_KEY_FOR_GET: the files are fetched through /fileget with
            # a token; at their own URLs (or as transforms) they would need none.
            return text_answer(403, "this asset server's files are fetched with a token")
        if self.transforms.claims(site, key):
            return await self.transforms.answer(request, site, key, cors)
        if site.prefix and not key.startswith(site.prefix + "/"):
            return self._not_found(site, cors)
        signed = site.needs_signature(key)
        valid_for: int | None = None
        if signed:
            query = request.query
            reason = verify_url_signature(
                site.signing_secret.reveal(), raw_path, query.get("expires"), query.get("sig")
            )
            if reason is not None:
                return text_answer(403, f"signed URL refused: {reason}")
            # Verified: expires is a canonical Unix time not yet past.
            valid_for = max(0, int(query["expires"]) - int(time.time()))
        storage = self.storages[site.name]
        try:
            info = await self.cache.metadata(
                site.name,
                key,
                lambda: self._head(site.name, storage, key),
                negative_ttl=site.negative_ttl,
                stale_if_error=site.stale_if_error,
            )
            if info is None:
                return self._not_found(site, cors)
            return await self._object(request, site, storage, info, cors, signed, valid_for)
        except StorageUnavailable as exc:
            # A folder or bucket that is not there (StorageMissing) waits for the operator.
            level = logging.ERROR if isinstance(exc, StorageMissing) else logging.WARNING
            log.log(level, "%s %s: storage unavailable: %s", site.name, key, exc)
            return text_answer(503, "storage unavailable, try again later", retry_after=RETRY_AFTER)
        except StorageError as exc:
            log.error("%s %s: storage error: %s", site.name, key, exc)
            return text_answer(502, "storage error")

    async def head_object(self, site: str, storage: Storage, key: str) -> ObjectInfo | None:
        """An object's info as the origin reads it (for the transform route)."""
        return await self._head(site, storage, key)

    async def object_answer(
        self,
        request: web.Request,
        site: Site,
        storage: Storage,
        info: ObjectInfo,
        cors: dict[str, str],
    ) -> web.StreamResponse:
        """An object answered as the origin answers one (for the transform route)."""
        return await self._object(request, site, storage, info, cors, False)

    def _headers_for(self, site: Site, info: ObjectInfo, signed: bool) -> dict[str, str]:
        """An object's headers (less CORS), built once per version: a hot object's
        answer then costs a dict copy, not dates, policies and tags made again."""
        cache_key = (
            site.name, info.key, info.etag, info.last_modified, info.content_type,
            info.cache_control, signed,
        )  # fmt: skip
        headers = self._headers.get(cache_key)
        if headers is None:
            headers = self._headers[cache_key] = _object_headers(site, info, signed)
        return headers

    async def _head(self, site: str, storage: Storage, key: str) -> ObjectInfo | None:
        """The object's info; None only when the storage itself is proven there."""
        try:
            info = await self._timed(site, "head", lambda: storage.head(key))
        except UnsafeKey:  # a name the backend keeps for itself: as good as absent
            info = None
        except StorageUnavailable:
            raise
        except StorageError:
            await self._prove(site, storage)  # a refusal of the bucket itself: StorageMissing
            raise  # else the key's own refusal, as it was
        if info is None:
            await self._prove(site, storage)
        else:
            self._proven_until[site] = time.monotonic() + PROOF_TTL
        return info

    async def _prove(self, site: str, storage: Storage) -> None:
        """Raise StorageMissing unless the storage is there (see the module docstring)."""
        if time.monotonic() < self._proven_until.get(site, 0.0):
            return
        await self._timed(site, "check", lambda: self._proofs.run(site, storage.check))
        self._proven_until[site] = time.monotonic() + PROOF_TTL

    async def _timed(
        self,
        site: str,
        operation: str,
        call: Callable[[], Awaitable[T]],
        release: Callable[[T], object] | None = None,
    ) -> T:
        return await self._recorded(operation, self._bounded(site, call, release))

    async def _recorded(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.metrics.storage(operation, time.perf_counter() - started)

    def _close_stream(self, answer: tuple[ObjectInfo, Any]) -> None:
        closing = asyncio.ensure_future(answer[1].aclose())
        self._closing.add(closing)  # held until done: the loop keeps only a weak reference
        closing.add_done_callback(self._closing.discard)

    async def _bounded(
        self,
        site: str,
        call: Callable[[], Awaitable[T]],
        release: Callable[[T], object] | None = None,
    ) -> T:
        """One storage call within ``storage_deadline``, else StorageUnavailable.

        The call runs in a task of its own. When nobody waits for it any more
        (deadline, or the client gone), a call with nothing to give back is
        cancelled (its thread's work, if not started, is dropped); one that
        hands over an open stream or file finishes and ``release`` closes it.
        """
        pool = self.pools.get(site)
        if pool is not None:
            pool.refuse_if_stalled()
        deadline = self.settings.storage_deadline
        task = asyncio.ensure_future(call())
        handed_over = False
        try:
            async with asyncio.timeout(deadline):
                result = await asyncio.shield(task)
            handed_over = True
            return result
        except TimeoutError:
            if pool is not None:
                pool.timed_out()
            raise StorageUnavailable(
                f"site {site}: no answer from storage within {deadline:g} s"
            ) from None
        finally:
            if handed_over:
                pass  # the caller owns what it opened
            elif not task.done():
                if release is None:
                    task.cancel()
                else:
                    task.add_done_callback(functools.partial(_release_late, release))
            elif release is not None:
                # It answered in the turn the deadline or the client's going came:
                # what it opened is nobody's now.
                _release_late(release, task)

    def _not_found(self, site: Site, cors: dict[str, str]) -> web.Response:
        cache_control = httpcache.negative_cache_control(site.negative_ttl)
        return text_answer(404, "not found", cache_control=cache_control, extra=cors)

    async def _object(
        self,
        request: web.Request,
        site: Site,
        storage: Storage,
        info: ObjectInfo,
        cors: dict[str, str],
        signed: bool,
        valid_for: int | None = None,
    ) -> web.StreamResponse:
        headers = {**self._headers_for(site, info, signed), **cors}
        if valid_for is not None:  # a browser keeps a signed answer no longer than its URL holds
            headers["Cache-Control"] = f"private, max-age={min(site.max_age, valid_for)}"

        if "Access-Control-Allow-Origin" in cors:
            headers["Access-Control-Expose-Headers"] = _EXPOSED
        verdict = httpcache.precondition(
            request.method, request.headers, info.etag, info.last_modified
        )
        if verdict == 304:
            kept = {name: headers[name] for name in _NOT_MODIFIED_HEADERS if name in headers}
            return web.Response(status=304, headers=kept)
        if verdict == 412:
            return text_answer(412, "precondition failed")
        selection = httpcache.RangeSelection(200, ())
        if request.method == "GET":
            selection = httpcache.select_ranges(
                request.headers, info.size, info.etag, info.last_modified
            )
        if selection.status == 416:
            return text_answer(416, "range not satisfiable", extra={
                "Content-Range": httpcache.unsatisfied_range(info.size), **cors,
            })  # fmt: skip
        if request.method == "HEAD":
            response = web.StreamResponse(headers=headers)
            response.content_length = info.size
            return response
        if self.cache.fits_in_memory(info):
            body = await self.cache.body(
                site.name,
                info,
                lambda: self._bounded(
                    site.name, lambda: self._read_all(site.name, storage, info), _let_finish
                ),
            )
            return self._from_memory(site, info, body, selection, headers)
        return await self._stream(request, site, storage, info, selection, headers)

    async def _read_all(self, site_name: str, storage: Storage, info: ObjectInfo) -> bytes:
        """A small object's body, read whole (cancelled: the stream closes itself)."""
        current, stream = await self._recorded("get", storage.get(info.key))
        async with stream:
            if current.etag != info.etag:
                self.cache.forget(site_name, info.key)
                raise _Changed
            return await stream.read_all()

    def _from_memory(
        self,
        site: Site,
        info: ObjectInfo,
        body: bytes,
        selection: httpcache.RangeSelection,
        headers: dict[str, str],
    ) -> web.Response:
        if selection.status == 206 and len(selection.ranges) == 1:
            first, last = selection.ranges[0]
            headers["Content-Range"] = httpcache.content_range(first, last, info.size)
            body, status = body[first : last + 1], 206
        elif selection.status == 206:
            headers["Content-Type"], body = httpcache.multipart_byteranges(
                body, selection.ranges, headers["Content-Type"]
            )
            status = 206
        else:
            status = 200
        self.metrics.sent(site.name, len(body))
        return web.Response(status=status, body=body, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        site: Site,
        storage: Storage,
        info: ObjectInfo,
        selection: httpcache.RangeSelection,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """A large object, one range of it or all (several ranges of a large object: all)."""
        first, last, status = 0, info.size - 1, 200
        if selection.status == 206 and len(selection.ranges) == 1:
            (first, last), status = selection.ranges[0], 206
            headers["Content-Range"] = httpcache.content_range(first, last, info.size)
        timeout = self.settings.client_timeout
        opened = None
        if storage.features.local_files:
            opened = await self._bounded(
                site.name, lambda: storage.open_file(info.key), _close_file
            )
        if opened is not None:
            handle, st = opened
            if st.st_size != info.size:
                await asyncio.get_running_loop().run_in_executor(None, handle.close)
                self.cache.forget(site.name, info.key)
                raise _Changed
            return _FileSlice(
                handle, first, last - first + 1, status=status, headers=headers,
                timeout=timeout, on_sent=lambda n: self.metrics.sent(site.name, n),
            )  # fmt: skip
        if storage.features.spliced_gets and zerocopy.plain_socket(request.transport):
            body = await self._timed(
                site.name,
                "get",
                lambda: storage.get_spliceable(info.key, first, last, info.size),
                _give_back,
            )
            if body is not None:
                if body.etag != info.etag:
                    body.done(complete=False)
                    self.cache.forget(site.name, info.key)
                    raise _Changed
                return _Relayed(
                    body, status=status, headers=headers, timeout=timeout,
                    on_sent=lambda n: self.metrics.sent(site.name, n),
                )  # fmt: skip
        current, stream = await self._timed(
            site.name, "get", lambda: storage.get(info.key, (first, last)), self._close_stream
        )
        if current.etag != info.etag:
            await stream.aclose()
            self.cache.forget(site.name, info.key)
            raise _Changed
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = stream.length
        async with stream:
            try:
                await response.prepare(request)
                async for chunk in stream:
                    await _bounded(response.write(chunk), timeout, request)
                    self.metrics.sent(site.name, len(chunk))
                await response.write_eof()
            except ConnectionResetError:
                # The client hung up: aiohttp closes the connection quietly for a
                # returned response, but would log a raised error as a server fault.
                log.debug("%s: the client went away mid-stream", request.path)
        return response


def _release_late(release: Callable[[T], object], task: asyncio.Future[T]) -> None:
    """Give back what a call nobody waits for any more opened, once it has."""
    if not task.cancelled() and task.exception() is None:
        release(task.result())


def _let_finish(_body: object) -> None:
    """A small body's read is left to finish rather than cancelled: it closes its own
    stream, which a cancel could leave behind in the storage's thread."""


def _close_file(opened: tuple[BinaryIO, Any] | None) -> None:
    if opened is not None:
        asyncio.get_running_loop().run_in_executor(None, opened[0].close)


def _give_back(body: DirectBody | None) -> None:
    if body is not None:
        body.done(complete=False)


class _ZeroCopy(web.StreamResponse):
    """A body of known length that offload moves itself, each write bounded by ``timeout``."""

    def __init__(
        self, length: int, *, status: int, headers: dict[str, str], timeout: float, on_sent: Any
    ) -> None:
        super().__init__(status=status, headers=headers)
        self.content_length = length
        self._timeout, self._on_sent = timeout, on_sent


class _Relayed(_ZeroCopy):
    """An S3 answer's body spliced to the client (``zerocopy.relay``)."""

    def __init__(self, body: DirectBody, **response: Any) -> None:
        super().__init__(body.length, **response)
        self._direct = body  # not ``_body``: aiohttp's own attribute for a response's bytes

    async def prepare(self, request: web.BaseRequest) -> Any:
        body, complete = self._direct, False
        try:
            writer = await super().prepare(request)
            if request.transport is None:
                raise ConnectionResetError("the client went away")
            await zerocopy.relay(
                request.transport, body.sock, body.head, body.length,
                timeout=self._timeout, source_timeout=body.owner.read_timeout,
                on_sent=self._on_sent,
            )  # fmt: skip
            complete = True
            await super().write_eof()
            return writer
        except zerocopy.SourceError as exc:
            # The headers are out: all a client can be told is a cut connection
            # (aiohttp takes a ConnectionError from here as the client's doing, quietly).
            log.warning("%s: storage failed mid-stream: %s", request.path, exc)
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("storage failed mid-stream") from exc
        finally:
            body.done(complete=complete)


async def _bounded(write: Awaitable[Any], seconds: float, request: web.BaseRequest) -> None:
    """One write to the client, dropped with the connection when the client stalls."""
    try:
        async with asyncio.timeout(seconds):
            await write
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client stopped reading") from None


class _FileSlice(_ZeroCopy):
    """A byte range of an open file, sent with sendfile in slices (each one time-bounded)."""

    def __init__(self, handle: BinaryIO, offset: int, count: int, **response: Any) -> None:
        super().__init__(count, **response)
        self._handle, self._offset, self._count = handle, offset, count

    async def prepare(self, request: web.BaseRequest) -> Any:
        loop = asyncio.get_running_loop()
        try:
            writer = await super().prepare(request)
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("the client went away")
            try:
                await zerocopy.send_file(
                    transport, self._handle.fileno(), self._offset, self._count,
                    self._timeout, self._on_sent,
                )  # fmt: skip
            except NotImplementedError:  # TLS, or no socket to send on
                await self._write_slice(request, self._offset, self._count)
                self._on_sent(self._count)
            await super().write_eof()
            return writer
        finally:
            await loop.run_in_executor(None, self._handle.close)

    async def _write_slice(self, request: web.BaseRequest, offset: int, size: int) -> None:
        """Send a slice by reading it in small pieces, so memory stays small."""
        loop = asyncio.get_running_loop()
        for start in range(offset, offset + size, FALLBACK_PIECE):
            length = min(FALLBACK_PIECE, offset + size - start)
            data = await loop.run_in_executor(None, self._read, start, length)
            await _bounded(self.write(data), self._timeout, request)

    def _read(self, offset: int, size: int) -> bytes:
        self._handle.seek(offset)
        return self._handle.read(size)


# -- headers -----------------------------------------------------------------------


def _object_headers(site: Site, info: ObjectInfo, signed: bool) -> dict[str, str]:
    # A content-hash folder, or an object offload stored as immutable, never changes.
    versioned = site.versioning and (
        is_versioned_key(info.key) or "immutable" in (info.cache_control or "")
    )
    policy = functools.partial(
        httpcache.cache_control,
        stale_while_revalidate=site.stale_while_revalidate,
        stale_if_error=site.stale_if_error,
        versioned=versioned,
    )
    headers = {
        "Content-Type": _content_type(info),
        "ETag": httpcache.quote_etag(info.etag),
        "Last-Modified": httpcache.http_date(info.last_modified),
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
    }
    if signed:  # a signed URL is for whoever holds it: no shared cache keeps it
        headers["Cache-Control"] = f"private, max-age={site.max_age}"
    else:
        headers["Cache-Control"] = policy(max_age=site.max_age, s_maxage=site.s_maxage)
        if site.cdn_max_age is not None:
            headers["CDN-Cache-Control"] = policy(max_age=site.cdn_max_age)
        tags = httpcache.cache_tags(site.name, info.key)
        if site.cache_tag_header:
            headers[site.cache_tag_header] = httpcache.tag_header_value(
                tags, site.cache_tag_separator
            )
        if site.surrogate_key_header:
            headers[site.surrogate_key_header] = httpcache.tag_header_value(
                tags, site.surrogate_key_separator
            )
    return headers


def _content_type(info: ObjectInfo) -> str:
    """The stored type; S3's ``binary/octet-stream`` means none was given, so guess."""
    if info.content_type and info.content_type != "binary/octet-stream":
        return info.content_type
    return guess_content_type(info.key)


def _cors_headers(site: Site, request: web.Request) -> dict[str, str]:
    """CORS for GET and HEAD: '*' as is, or the request's Origin echoed when it is listed.

    With a list, every answer carries ``Vary: Origin``, so a CDN never hands one
    origin's answer to another.
    """
    if not site.cors_origins:
        return {}
    if "*" in site.cors_origins:
        return {"Access-Control-Allow-Origin": "*"}
    origin = request.headers.get("Origin", "")
    if origin in site.cors_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def _options(site: Site, request: web.Request, cors: dict[str, str]) -> web.Response:
    """A CORS preflight, or a plain OPTIONS saying what the origin allows."""
    method = request.headers.get("Access-Control-Request-Method")
    if method is None:
        return web.Response(status=204, headers={"Allow": ALLOW, **cors})
    if "Access-Control-Allow-Origin" not in cors or method not in ("GET", "HEAD"):
        return text_answer(403, "CORS request not allowed", extra={"Vary": "Origin"})
    asked = request.headers.get("Access-Control-Request-Headers", "")
    allowed = [h.strip() for h in asked.split(",") if h.strip().lower() in _CORS_REQUEST_HEADERS]
    headers = {
        **cors,
        "Access-Control-Allow-Methods": ALLOW,
        "Access-Control-Max-Age": "86400",
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    if allowed:
        headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
    return web.Response(status=204, headers=headers)

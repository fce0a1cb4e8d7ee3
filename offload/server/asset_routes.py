"""Specify's web-asset-server routes, for sites with ``asset_server = true``.

The protocol itself (names, thumbnails, EXIF, tokens) is in
``offload.images.asset_server``; this module is its HTTP side. The site is
chosen by the Host header as the origin chooses it; on a host whose site is no
asset server, GET and HEAD of these paths are the origin's (they are keys like
any other) and POST is refused.

An upload is read with aiohttp's streaming multipart reader: the file part goes
to a temporary file block by block (Specify's client sends the file before the
token, so nothing reaches storage until the token is checked), then to storage
from that file. ``max_upload_size`` and ``webhook_body_timeout`` (plus a second
per MiB) bound it as they bound webhook bodies.

A file under the site's ``signed_prefixes`` is private: its GET and HEAD (the
original, a thumbnail, its EXIF) need Specify's token whatever
``asset_require_key_for_get`` says, answered as Specify answers a bad token
(403 and its reason), and never with a Cache-Control a shared cache may keep.
A thumbnail is private when its original is, or when it is kept under a
signed prefix itself.

Copying an original out of storage and opening it with libvips (a thumbnail
made, an EXIF read) holds one of ``RENDERS_AT_ONCE`` slots, waited for at most
``RENDER_WAIT`` seconds before the answer is 503; a thumbnail already made
needs no slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from offload.config.settings import Site
from offload.http.caching import quote_etag
from offload.images.asset_server import (
    Asset,
    AssetError,
    AssetStore,
    guess_type,
    original_key,
    parse_asset,
    parse_scale,
    thumbnail_key,
)
from offload.images.specify_token import token_problem
from offload.manifest import ManifestError
from offload.server.appkeys import EXECUTOR, MANIFEST, ORIGIN, POOLS, SETTINGS, STORAGES
from offload.server.transforms import Busy
from offload.storage import NotFound, StorageError, StorageUnavailable
from offload.storage.base import ByteStream
from offload.storage.singleflight import SingleFlight

log = logging.getLogger(__name__)

PATHS = ("/fileget", "/getmetadata", "/testkey", "/web_asset_store.xml")
BLOCK = 256 * 1024
TEXT = "text/plain; charset=utf-8"
THUMBNAILS = web.AppKey("asset_thumbnails", SingleFlight)
#: Thumbnails made at once per worker (libvips uses several threads for each).
RENDERS = web.AppKey("asset_renders", asyncio.Semaphore)
RENDERS_AT_ONCE = 2
#: Seconds a thumbnail waits for a free render slot before the answer is 503.
RENDER_WAIT = 5.0


class _Busy(Exception):
    """Every render slot stayed taken for RENDER_WAIT seconds."""


WEB_ASSET_STORE = """<?xml version="1.0" encoding="UTF-8"?>
<urls>
    <url type="read"><![CDATA[{base}/fileget]]></url>
    <url type="write"><![CDATA[{base}/fileupload]]></url>
    <url type="delete"><![CDATA[{base}/filedelete]]></url>
    <url type="getmetadata"><![CDATA[{base}/getmetadata]]></url>
    <url type="testkey">{base}/testkey</url>
</urls>
"""


def add_routes(app: web.Application) -> None:
    """Mount the routes when any site is an asset server (before the origin's catch-all)."""
    if not any(site.asset_server for site in app[SETTINGS].sites.values()):
        return
    app[THUMBNAILS] = SingleFlight()
    app[RENDERS] = asyncio.Semaphore(RENDERS_AT_ONCE)
    handlers: dict[str, Callable[..., Any]] = {
        "/fileget": fileget,
        "/getmetadata": getmetadata,
        "/testkey": testkey,
        "/web_asset_store.xml": web_asset_store,
    }
    for path, handler in handlers.items():
        app.router.add_get(path, _guarded(handler))
    app.router.add_post("/fileupload", _guarded(fileupload))
    app.router.add_post("/filedelete", _guarded(filedelete))
    app.router.add_route("OPTIONS", "/fileupload", _guarded(fileupload_options))


def _guarded(handler: Callable[..., Any]) -> Callable[[web.Request], Any]:
    """Find the site; answer errors as Specify does (short text, X-Timestamp)."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        site = request.app[ORIGIN].site_for(request.host)
        if site is None or not site.asset_server:
            if request.method in ("GET", "HEAD", "OPTIONS"):
                return await request.app[ORIGIN].handle(request)
            return _text(405, "Method not allowed.", headers={"Allow": "GET, HEAD, OPTIONS"})
        try:
            response: web.StreamResponse = await handler(request, site)
        except AssetError as exc:
            response = _text(exc.status, exc.message)
        except _Busy:
            response = _text(503, "Too many images being read, try again shortly.")
            response.headers["Retry-After"] = "2"
        except StorageUnavailable as exc:
            log.warning("%s %s: storage unavailable: %s", site.name, request.path, exc)
            response = _text(503, "Storage unavailable, try again later.")
            response.headers["Retry-After"] = "5"
        except NotFound:
            response = _text(404, "Not found.")
        except ManifestError as exc:  # a purge could not be queued: what it guards stays
            log.warning("%s %s: manifest unavailable: %s", site.name, request.path, exc)
            response = _text(503, "Try again later.")
            response.headers["Retry-After"] = "5"
        except StorageError as exc:
            log.error("%s %s: storage error: %s", site.name, request.path, exc)
            response = _text(502, "Storage error.")
        if not response.prepared:
            response.headers["X-Timestamp"] = str(int(time.time()))
        return response

    return run


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=body,
        content_type="text/plain",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )


def _check_token(site: Site, params: Any, field: str, *, always: bool, method: str) -> None:
    """Specify's ``require_token``: POSTs always, GETs when the site asks (or ``always``)."""
    if not (always or method not in ("GET", "HEAD") or site.asset_require_key_for_get):
        return
    problem = token_problem(
        site.asset_server_key.reveal(),
        params.get("token", ""),
        params.get(field) or "",
        tolerance=site.asset_time_tolerance,
    )
    if problem is not None:
        raise AssetError(403, problem)


def _private(site: Site, *keys: str) -> bool:
    """Whether any of these keys lies under the site's ``signed_prefixes``."""
    return any(site.needs_signature(key) for key in keys)


def _store(request: web.Request, site: Site) -> AssetStore:
    pool = request.app[POOLS][site.name]
    loop = asyncio.get_running_loop()
    renders = request.app[RENDERS]

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    @contextlib.asynccontextmanager
    async def slot(content_type: str | None = None) -> AsyncIterator[None]:
        """A render slot; for a HEIC, the process's HEIC turn first (``Transforms``)."""
        try:
            async with request.app[ORIGIN].transforms.heic_turn(content_type):
                try:  # a short wait for a free slot, never an unbounded queue
                    async with asyncio.timeout(RENDER_WAIT):
                        await renders.acquire()
                except TimeoutError:
                    raise _Busy from None
                try:
                    yield
                finally:
                    renders.release()
        except Busy:
            raise _Busy from None

    storage = request.app[STORAGES][site.name]
    return AssetStore(site, storage, run, slot=slot, manifest=request.app[MANIFEST])


# -- the routes -------------------------------------------------------------------------


async def web_asset_store(request: web.Request, site: Site) -> web.Response:
    """The URLs Specify learns the others from; built from the host it was asked on."""
    https = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    base = f"{'https' if https else request.scheme}://{request.host}"
    return web.Response(text=WEB_ASSET_STORE.format(base=base), content_type="text/xml")


async def testkey(request: web.Request, site: Site) -> web.Response:
    _check_token(site, request.query, "random", always=True, method=request.method)
    return _text(200, "Ok.")


async def fileget(request: web.Request, site: Site) -> web.StreamResponse:
    query = request.query
    _check_token(site, query, "filename", always=False, method=request.method)
    asset = parse_asset(query.get("coll"), query.get("filename"))
    kind = query.get("type", "")
    if kind not in ("O", "T"):
        raise AssetError(400, "type must be O (original) or T (thumbnail).")
    store = _store(request, site)
    key = original_key(site, asset)
    scale = parse_scale(query.get("scale")) if kind == "T" else 0
    private = _private(site, key, *([thumbnail_key(site, asset, scale)] if scale else []))
    if private:
        _check_token(site, query, "filename", always=True, method=request.method)
    if kind == "T":
        key = await _thumbnail(request, store, asset, scale)
    try:
        info, body = await store.storage.get(key)
    except NotFound:
        raise AssetError(404, f"Missing original: {asset.filename}") from None
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": info.content_type or guess_type(key) or "application/octet-stream",
                "Content-Length": str(info.size),
                "Cache-Control": "no-store"
                if site.asset_require_key_for_get or private
                else "no-cache",
                "X-Content-Type-Options": "nosniff",
                "X-Timestamp": str(int(time.time())),
            }
        )
        with contextlib.suppress(ValueError):  # an etag no header can carry is left out
            response.headers["ETag"] = quote_etag(info.etag)
        if name := query.get("downloadname"):
            disposition = quote(os.path.basename(name).encode("utf-8", "replace"))
            response.headers["Content-Disposition"] = f"inline; filename*=utf-8''{disposition}"
        if request.method == "HEAD":
            await body.aclose()
        await response.prepare(request)
        if request.method != "HEAD":
            try:
                await _relay(body, response)
            except StorageError as exc:  # the answer has begun: cut it, say why in the log
                log.warning("%s %s: storage failed mid-answer: %s", site.name, key, exc)
                raise ConnectionResetError from None
        await response.write_eof()
    finally:
        await body.aclose()
    return response


async def _relay(body: ByteStream, response: web.StreamResponse) -> None:
    """Write the body, reading one chunk ahead: the stream has closed its file or
    connection (on reading its end) before the client has the last byte."""
    chunks = aiter(body)
    chunk = await anext(chunks, None)
    while chunk is not None:
        following = await anext(chunks, None)
        await response.write(chunk)
        chunk = following


async def _thumbnail(request: web.Request, store: AssetStore, asset: Asset, scale: int) -> str:
    """The thumbnail's key; concurrent first requests make it once (``store.slot``)."""
    flight = (store.site.name, asset.coll, asset.filename, scale)
    return await request.app[THUMBNAILS].run(flight, lambda: store.ensure_thumbnail(asset, scale))


async def getmetadata(request: web.Request, site: Site) -> web.Response:
    query = request.query
    _check_token(site, query, "filename", always=False, method=request.method)
    asset = parse_asset(query.get("coll"), query.get("filename"))
    if _private(site, original_key(site, asset)):
        _check_token(site, query, "filename", always=True, method=request.method)
    datatype = query.get("dt", "")
    body = await _store(request, site).metadata(asset, datatype)
    if datatype == "date":
        return _text(200, body)
    return web.Response(text=body, content_type="application/json")


async def fileupload_options(request: web.Request, site: Site) -> web.Response:
    return _text(200, "", headers={"Access-Control-Allow-Origin": "*"})


async def filedelete(request: web.Request, site: Site) -> web.Response:
    form = await request.post()  # a small urlencoded (or multipart) form of text fields
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    _check_token(site, fields, "filename", always=False, method=request.method)
    asset = parse_asset(fields.get("coll"), fields.get("filename"))
    await _store(request, site).delete(asset)
    return _text(200, "Ok.")


async def fileupload(request: web.Request, site: Site) -> web.Response:
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_upload_size:
        raise AssetError(413, "The upload is too large.")
    loop = asyncio.get_running_loop()
    executor = request.app[EXECUTOR]
    folder = Path(await loop.run_in_executor(executor, tempfile.mkdtemp, "", "offload-upload-"))
    try:
        fields, upload = await _read_form(request, folder, settings)
        _check_token(site, fields, "store", always=False, method=request.method)
        response = _text(200, "Ok.", headers={"Access-Control-Allow-Origin": "*"})
        if fields.get("type") == "T":
            response.text = "Ignoring thumbnail upload!"
            return response
        asset = parse_asset(fields.get("coll"), fields.get("store"), field="store")
        if upload is None:
            raise AssetError(400, "The form holds no file.")
        await _store(request, site).store(asset, upload)
        return response
    finally:
        await loop.run_in_executor(executor, functools.partial(shutil.rmtree, folder, True))


async def _read_form(
    request: web.Request, folder: Path, settings: Any
) -> tuple[dict[str, str], Path | None]:
    """The form's text fields, and its first file part written to ``folder``."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise AssetError(400, "The upload must be multipart/form-data.") from None
    loop = asyncio.get_running_loop()
    executor = request.app[EXECUTOR]
    started = loop.time()
    fields: dict[str, str] = {}
    upload: Path | None = None
    received = 0
    try:
        while (part := await _within(reader.next(), started, received, settings)) is not None:
            if not isinstance(part, BodyPartReader):
                raise AssetError(400, "Nested multipart bodies are not taken.")
            if part.filename is None:
                text = await _within(part.read(), started, received, settings)
                if len(text) > 64 * 1024 or len(fields) > 64:
                    raise AssetError(400, "The form's fields are too large.")
                fields[part.name or ""] = text.decode("utf-8", "replace")
                continue
            if upload is not None:  # Specify sends one file; later ones are read past
                while await _within(part.read_chunk(BLOCK), started, received, settings):
                    pass
                continue
            upload = folder / "upload"
            handle = await loop.run_in_executor(executor, open, upload, "wb")
            try:
                while chunk := await _within(part.read_chunk(BLOCK), started, received, settings):
                    received += len(chunk)
                    if received > settings.max_upload_size:
                        raise AssetError(413, "The upload is too large.")
                    await loop.run_in_executor(executor, handle.write, chunk)
            finally:
                await loop.run_in_executor(executor, handle.close)
    except ValueError:
        raise AssetError(400, "The upload is not well-formed multipart/form-data.") from None
    return fields, upload


async def _within(step: Any, started: float, received: int, settings: Any) -> Any:
    """Await one read of the body within what is left of its time budget."""
    budget = settings.webhook_body_timeout + received / 2**20
    left = started + budget - asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(max(left, 0.001)):
            return await step
    except TimeoutError:
        raise AssetError(408, "The upload came too slowly.") from None

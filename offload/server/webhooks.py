"""The signed webhooks under ``/_offload/{site}/``: uploads, deletions, rewriting, syncs.

Every request is checked in the same order, each step before the next costs
anything: the site exists (404) and has a ``webhook_secret`` (403); the
timestamp and signature headers are present and fresh (401, before the body is
read); the body fits its limit (413); the HMAC of ``timestamp + "." + body``
matches (401, compared in constant time); only then is the body parsed (400)
and acted on. A JSON body is read into memory (it is small and bounded);
a ``multipart/form-data`` body is spooled to a temporary file while it is
hashed, so a large upload is never held in memory, and its files reach
storage only once the whole body has been verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from offload.config.settings import Site
from offload.http.formdata import FormError, FormPart, boundary_of, split_form
from offload.http.signing import BodyVerifier
from offload.keys import upload_path_problem
from offload.media.manifest import ManifestError
from offload.media.offloader import Offloader, Outcome
from offload.media.payloads import MAX_FILES, Attachment, PayloadError, parse_attachment
from offload.media.rewrite import text_charset
from offload.server.appkeys import EXECUTOR, OFFLOADERS, SETTINGS, STORAGES, SYNC_RUNS, UNVERIFIED
from offload.sync.context import SyncOptions
from offload.sync.locations import Folder, site_bucket
from offload.sync.runner import SyncJob

log = logging.getLogger(__name__)

T = TypeVar("T")

TIMESTAMP_HEADER = "X-Offload-Timestamp"
SIGNATURE_HEADER = "X-Offload-Signature"
#: Largest JSON webhook body (WordPress metadata of an image is a few KB).
MAX_JSON_BODY = 4 * 2**20
#: Largest body ``/rewrite`` takes (a long post with its markup).
MAX_REWRITE_BODY = 32 * 2**20
#: Threads of a background sync run (its uploads, reads and hashing).
SYNC_THREADS = 4
#: Bytes read from the request per chunk while spooling.
READ_CHUNK = 256 * 1024
#: Bodies read at once before their signature is known: more wait for a 503,
#: so unsigned junk cannot fill the memory or the spool folder.
UNVERIFIED_BODIES = 8


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_offload/{site}/uploads", uploads)
    app.router.add_post("/_offload/{site}/deletions", deletions)
    app.router.add_post("/_offload/{site}/rewrite", rewrite)
    app.router.add_post("/_offload/{site}/sync", sync_start)
    app.router.add_get("/_offload/{site}/sync/{run}", sync_status)


def error(status: int, message: str, **headers: str) -> web.Response:
    """A short JSON error; ``message`` never holds a secret."""
    return web.json_response(
        {"error": message, "status": status},
        status=status,
        headers={"Cache-Control": "no-store", **headers},
    )


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _refuse(status: int, message: str, **headers: str) -> _Refused:
    return _Refused(error(status, message, **headers))


def _unauthorized(problem: str) -> _Refused:
    return _refuse(401, f"signature: {problem}", **{"WWW-Authenticate": 'HMAC realm="offload"'})


async def _run(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR], fn, *args)


def _site(request: web.Request) -> Site:
    name = request.match_info["site"]
    site = request.app[SETTINGS].sites.get(name)
    if site is None:
        raise _refuse(404, f"no site named {name[:80]!r}")
    if not site.webhook_secret:
        raise _refuse(403, f"webhooks are off for site {name!r}: it has no webhook_secret")
    return site


def _verifier(request: web.Request, site: Site) -> BodyVerifier:
    verifier = BodyVerifier(
        site.webhook_secret.reveal(),
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
    )
    if verifier.problem is not None:
        log.info("site %s: %s refused: %s", site.name, request.path, verifier.problem)
        raise _unauthorized(verifier.problem)
    return verifier


def _check_length(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise _refuse(413, f"the body is larger than {limit} bytes")


@contextlib.asynccontextmanager
async def _unverified_slot(request: web.Request) -> AsyncIterator[None]:
    slots = request.app[UNVERIFIED]
    if slots.locked():
        raise _refuse(503, "too many webhooks at once; try again", **{"Retry-After": "2"})
    async with slots:
        yield


def _check_signature(request: web.Request, site: Site, verifier: BodyVerifier) -> None:
    problem = verifier.result()
    if problem is not None:
        log.info("site %s: %s refused: %s", site.name, request.path, problem)
        raise _unauthorized(problem)


async def _signed_body(
    request: web.Request, site: Site, limit: int, *, signed: bytes | None = None
) -> bytes:
    """The whole (small) body, once its signature is verified.

    ``signed``: what the signature covers instead of the body (a GET's path).
    """
    verifier = _verifier(request, site)
    _check_length(request, limit)
    body = bytearray()
    async with _unverified_slot(request):
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            body += chunk
            if len(body) > limit:
                raise _refuse(413, f"the body is larger than {limit} bytes")
    verifier.update(body if signed is None else signed)
    _check_signature(request, site, verifier)
    return bytes(body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(400, f"the body is not JSON: {exc}") from None


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _answer(outcome: Outcome) -> web.Response:
    return web.json_response(
        outcome.as_json(),
        status=502 if outcome.failed else 200,
        headers={"Cache-Control": "no-store"},
    )


def _refusals(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Refused as refused:
            return refused.response
        except (PayloadError, FormError) as exc:
            return error(400, str(exc))
        except ManifestError as exc:
            log.error("site %s: %s", request.match_info.get("site"), exc)
            return error(500, "the manifest cannot be read or written; see the log")

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


# -- uploads -------------------------------------------------------------------------


@_refusals
async def uploads(request: web.Request) -> web.StreamResponse:
    """Copy an attachment's files to the bucket and answer with their CDN URLs."""
    site = _site(request)
    offloader = request.app[OFFLOADERS][site.name]
    if request.content_type == "multipart/form-data":
        async with _spooled_form(request, site) as (attachment, files):
            outcome = await offloader.offload(
                attachment, files, base_url=_base_url(request), with_mtime=False
            )
        return _answer(outcome)
    if request.content_type != "application/json":
        raise _refuse(415, "send application/json or multipart/form-data")
    body = await _signed_body(request, site, MAX_JSON_BODY)
    attachment = parse_attachment(_json(body), uploads_url=site.uploads_url)
    files = await offloader.locate(attachment)
    outcome = await offloader.offload(attachment, files, base_url=_base_url(request))
    return _answer(outcome)


@contextlib.asynccontextmanager
async def _spooled_form(
    request: web.Request, site: Site
) -> AsyncIterator[tuple[Attachment, dict[str, Path | None]]]:
    """Spool, verify and split a form; its files live until the block ends."""
    limit = request.app[SETTINGS].max_upload_size
    try:
        boundary = boundary_of(request.headers.get("Content-Type", ""))
    except FormError as exc:
        raise _refuse(400, str(exc)) from None
    verifier = _verifier(request, site)
    _check_length(request, limit)
    folder = Path(await _run(request, tempfile.mkdtemp, "", "offload-upload-"))
    try:
        spool = folder / "body"
        async with _unverified_slot(request):
            handle = await _run(request, spool.open, "wb")
            try:
                size = 0
                async for chunk in request.content.iter_chunked(READ_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise _refuse(413, f"the body is larger than {limit} bytes")
                    verifier.update(chunk)
                    await _run(request, handle.write, chunk)
            finally:
                await _run(request, handle.close)
        _check_signature(request, site, verifier)
        parts = await _run(request, split_form, spool, boundary, folder)
        await _run(request, spool.unlink)
        yield _form_attachment(parts)
    finally:
        await _run(request, shutil.rmtree, folder, True)


def _form_attachment(parts: list[FormPart]) -> tuple[Attachment, dict[str, Path | None]]:
    """Pair the n-th ``path`` field with the n-th file part."""
    paths: list[str] = []
    files: list[FormPart] = []
    fields: dict[str, str] = {}
    for part in parts:
        if part.file is not None:
            files.append(part)
        elif part.name == "path":
            problem = upload_path_problem(part.value or "")
            if problem is not None:
                raise PayloadError(f"path: {problem}: {(part.value or '')[:120]!r}")
            paths.append(part.value or "")
        elif part.name in ("attachment_id", "original"):
            fields[part.name] = part.value or ""
        else:
            raise PayloadError(f"unknown form field {part.name[:40]!r}")
    if not files:
        raise PayloadError("the form holds no file")
    if len(paths) != len(files):
        raise PayloadError(
            f"the form holds {len(files)} files and {len(paths)} path fields: "
            "send one path field per file"
        )
    if len(files) > MAX_FILES or len(set(paths)) != len(paths):
        raise PayloadError("each path must appear once, at most 1000 of them")
    body: dict[str, Any] = {"files": paths}
    body.update(fields)
    if body.get("original") == "":
        del body["original"]
    attachment = parse_attachment(body)
    located = dict(zip(paths, (part.file for part in files), strict=True))
    return attachment, located


# -- deletions -------------------------------------------------------------------------


@_refusals
async def deletions(request: web.Request) -> web.StreamResponse:
    """Delete an attachment's objects (one batched request) and their manifest rows."""
    site = _site(request)
    if request.content_type != "application/json":
        raise _refuse(415, "send application/json")
    body = await _signed_body(request, site, MAX_JSON_BODY)
    attachment = parse_attachment(_json(body), uploads_url=site.uploads_url, deletion=True)
    outcome = await request.app[OFFLOADERS][site.name].delete(
        attachment, base_url=_base_url(request)
    )
    return _answer(outcome)


# -- rewriting ---------------------------------------------------------------------------


@_refusals
async def rewrite(request: web.Request) -> web.StreamResponse:
    """The body with its upload URLs rewritten to CDN URLs (``?reverse=1``: back)."""
    site = _site(request)
    body = await _signed_body(request, site, MAX_REWRITE_BODY)
    reverse = request.query.get("reverse", "") in ("1", "true", "yes")
    charset = request.charset or "utf-8"
    offloader = request.app[OFFLOADERS][site.name]
    if not text_charset(charset):
        raise _refuse(400, f"unknown or unsupported charset {charset[:40]!r}")
    result = await _run(request, rewrite_body, offloader, body, charset, reverse)
    headers = {"Cache-Control": "no-store"}
    if "Content-Type" in request.headers:
        headers["Content-Type"] = request.headers["Content-Type"]
    return web.Response(body=result, headers=headers)


def rewrite_body(offloader: Offloader, body: bytes, charset: str, reverse: bool) -> bytes:
    """Blocking (the manifest answers each lookup): run it in the executor."""
    rewriter = offloader.rewriter()
    if not reverse:
        return rewriter.rewrite_bytes(body, charset)
    return rewriter.reverse_bytes(body, charset)


# -- sync runs -----------------------------------------------------------------------------


@_refusals
async def sync_start(request: web.Request) -> web.StreamResponse:
    """Start a background sync of ``uploads_dir`` to the bucket (202 and the run's id).

    The body may be empty or ``{"delete": true, "dry_run": true}``. While a run
    goes on, asking again answers that run's id.
    """
    site = _site(request)
    body = await _signed_body(request, site, MAX_JSON_BODY)
    wanted = _json(body) if body.strip() else {}
    if not isinstance(wanted, dict) or set(wanted) - {"delete", "dry_run"}:
        raise _refuse(400, 'the body must be empty or {"delete": bool, "dry_run": bool}')
    if not all(isinstance(value, bool) for value in wanted.values()):
        raise _refuse(400, "delete and dry_run must be true or false")
    if site.uploads_dir is None:
        raise _refuse(400, f"site {site.name!r} has no uploads_dir to sync")
    if site.versioning:
        # Its keys carry version folders that no file under uploads_dir has: a
        # sync would copy every file again under a second key, and --delete would
        # remove the versioned objects the pages link to.
        raise _refuse(409, f"site {site.name!r} uses versioning: send uploads through the webhook")
    app = request.app
    settings = app[SETTINGS]
    uploads = str(site.uploads_dir)
    folder = Folder(uploads.rstrip("/") + "/", uploads, confined=True)
    options = SyncOptions(
        delete=wanted.get("delete", False),
        dry_run=wanted.get("dry_run", False),
        jobs=settings.upload_concurrency,
        use_crt=False,
    )
    job = SyncJob(
        [(folder, site_bucket(site, app[STORAGES][site.name]))],
        options,
        state_path=settings.manifest.parent / "sync-state.sqlite3",
        # Its own few threads: the origin's pool keeps serving the CDN meanwhile.
        threads=SYNC_THREADS,
        # The collector is the whole server's: leave its pace to the server.
        tune_collector=False,
    )
    record, _new = app[SYNC_RUNS].start(site.name, job)
    where = f"/_offload/{site.name}/sync/{record.id}"
    return web.json_response(
        {"id": record.id, "status": record.status, "url": where},
        status=202,
        headers={"Location": where, "Cache-Control": "no-store"},
    )


@_refusals
async def sync_status(request: web.Request) -> web.StreamResponse:
    """A run's progress and result; signed like the webhooks, over the request's path."""
    site = _site(request)
    await _signed_body(request, site, 0, signed=request.path.encode())
    record = request.app[SYNC_RUNS].get(site.name, request.match_info["run"])
    if record is None:
        raise _refuse(404, "no such sync run (finished runs are kept for a while only)")
    return web.json_response(record.as_json(), headers={"Cache-Control": "no-store"})

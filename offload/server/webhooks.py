"""The signed webhooks under ``/_offload/{site}/``: uploads, deletions, rewriting, syncs.

Every request is checked in the same order, each step before the next costs
anything: the site exists (404) and has a ``webhook_secret`` (403); the
signature over the timestamp, method, target and declared body hash matches
and is fresh (401, compared in constant time, before a byte of the body is
read); it was not taken before (409, see ``replays``); the body fits its
limit (413), arrives in time (408) and from a client holding few others
(503); it hashes to what was declared (400); only then is it parsed (400) and
acted on. A JSON body is read into memory (it is small and bounded); a
``multipart/form-data`` body is spooled to a temporary file while it is
hashed, so a large upload is never held in memory, and its files reach
storage only once the whole body has been verified.

A site with ``webhook_signature = "v1"`` takes the old scheme, the HMAC of
``timestamp + "." + body``: its body must be read before the signature is
known, so at most ``UNVERIFIED_BODIES`` such bodies are read at once, and each
request logs a deprecation warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from offload.config.settings import Site
from offload.config.sites import server_sync_state
from offload.http.formdata import FormError, FormPart, boundary_of, split_form
from offload.http.signing import (
    CONTENT_SHA256_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_TOLERANCE,
    BodyVerifier,
    ContentDigest,
    verify_request_signature,
)
from offload.images.sync_variants import VariantCascade, variants_excluded
from offload.keys import upload_path_problem
from offload.manifest import ManifestError
from offload.media.offloader import Offloader
from offload.media.outcomes import Outcome
from offload.media.payloads import MAX_FILES, Attachment, PayloadError, parse_attachment
from offload.media.rewrite import text_charset
from offload.server.appkeys import (
    EXECUTOR,
    MANIFEST,
    METRICS,
    OFFLOADERS,
    PEER_BODIES,
    POOLS,
    PURGES,
    RECENT,
    REPLAYS,
    SETTINGS,
    STORAGES,
    SYNC_RUNS,
    UNVERIFIED,
)
from offload.server.connections import origin_form
from offload.server.logs import request_id
from offload.sync.context import SyncOptions
from offload.sync.filters import Filters
from offload.sync.locations import Folder, site_bucket
from offload.sync.purging import PurgeNotes
from offload.sync.report import Reporter
from offload.sync.runner import SyncJob

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest JSON webhook body (WordPress metadata of an image is a few KB).
MAX_JSON_BODY = 4 * 2**20
#: Largest body ``/rewrite`` takes (a long post with its markup).
MAX_REWRITE_BODY = 32 * 2**20
#: Threads of a background sync run (its uploads, reads and hashing).
SYNC_THREADS = 4
#: Bytes read from the request per chunk while spooling.
READ_CHUNK = 256 * 1024
#: v1 bodies read at once before their signature is known: more wait for a 503,
#: so unsigned junk cannot fill the memory or the spool folder.
UNVERIFIED_BODIES = 8
#: The slowest pace a long body may keep, past ``webhook_body_timeout``: 1 MiB/s.
BODY_BYTES_PER_SECOND = 2**20
#: What a full spool folder (or a quota) raises while a body is written.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_offload/{site}/uploads", uploads)
    app.router.add_post("/_offload/{site}/deletions", deletions)
    app.router.add_post("/_offload/{site}/rewrite", rewrite)
    app.router.add_post("/_offload/{site}/sync", sync_start)
    app.router.add_get("/_offload/{site}/sync/{run}", sync_status)


def error(status: int, message: str, **headers: str) -> web.Response:
    """A short JSON error; ``message`` never holds a secret."""
    return web.json_response(
        {"error": message, "status": status, "request_id": request_id()},
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


# -- signatures ------------------------------------------------------------------------


@dataclass
class _BodyCheck:
    """What the body of a request whose headers passed must still satisfy."""

    site: Site
    #: v2: the declared hash, checked as the body streams.
    digest: ContentDigest | None = None
    #: v1: the HMAC itself, known only once the whole body is read.
    v1: BodyVerifier | None = None
    #: v2: the signature sent, taken once the body is verified.
    signature: str = ""

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.digest is not None:
            self.digest.update(chunk)
        elif self.v1 is not None:
            self.v1.update(chunk)


def _refused_signature(request: web.Request, site: Site, problem: str) -> _Refused:
    log.info("site %s: %s %s refused: %s", site.name, request.method, request.path, problem)
    return _unauthorized(problem)


async def _authenticate(request: web.Request, site: Site) -> _BodyCheck:
    """Check the signature headers (401) and that they were not taken before (409); no body read."""
    secret = site.webhook_secret.reveal()
    headers = request.headers
    if site.webhook_signature == "v1":
        verifier = BodyVerifier(
            secret, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
        )
        if verifier.problem is not None:
            raise _refused_signature(request, site, verifier.problem)
        log.warning(
            "site %s: %s signed with webhook_signature v1, which is deprecated: it binds no"
            " endpoint; move the client to v2",
            site.name,
            request.path,
        )
        return _BodyCheck(site, v1=verifier)
    declared = headers.get(CONTENT_SHA256_HEADER)
    problem = verify_request_signature(
        secret,
        timestamp=headers.get(TIMESTAMP_HEADER),
        method=request.method,
        target=origin_form(request.raw_path),  # an absolute-form target signs as its path
        body_sha256=declared,
        signature=headers.get(SIGNATURE_HEADER),
    )
    if problem is not None:
        raise _refused_signature(request, site, problem)
    signature = headers[SIGNATURE_HEADER]
    if await _run(request, request.app[REPLAYS].taken, _replay_key(site, signature)):
        raise _replayed(request, site)  # known already: not a byte of its body is read
    assert declared is not None  # verified above
    return _BodyCheck(site, digest=ContentDigest(declared), signature=signature)


def _replay_key(site: Site, signature: str) -> str:
    return f"{site.name} {signature}"


def _replayed(request: web.Request, site: Site) -> _Refused:
    log.warning("site %s: %s %s refused: a replay", site.name, request.method, request.path)
    return _refuse(409, "this signed request was already taken: sign it again to resend")


async def _take_once(request: web.Request, site: Site, signature: str) -> None:
    """409 when this signature was taken before (the timestamp is known to be fresh).

    Called once the body is verified, just before it is used: a request refused
    earlier (busy, too slow, too large, a body that fails its hash) leaves its
    signature untaken, so the same request may be sent again, and a forged body
    raced against a real request cannot use the real one's signature up.
    """
    until = int(request.headers[TIMESTAMP_HEADER]) + WEBHOOK_TOLERANCE + 1
    first = await _run(request, request.app[REPLAYS].first_use, _replay_key(site, signature), until)
    if not first:
        raise _replayed(request, site)


async def _body_verified(request: web.Request, check: _BodyCheck) -> None:
    """After the whole body: it matches its declared hash (400), or its v1 signature (401)."""
    if check.digest is not None:
        if not check.digest.matches():
            log.info("site %s: %s: the body does not match its hash", check.site.name, request.path)
            raise _refuse(400, f"the body does not match {CONTENT_SHA256_HEADER}")
        await _take_once(request, check.site, check.signature)
    if check.v1 is not None:
        problem = check.v1.result()
        if problem is not None:
            raise _refused_signature(request, check.site, problem)
        await _take_once(request, check.site, check.v1.signature)


# -- reading bodies -----------------------------------------------------------------------


def _check_length(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise _refuse(413, f"the body is larger than {limit} bytes")


@contextlib.asynccontextmanager
async def _body_slot(request: web.Request, check: _BodyCheck) -> AsyncIterator[None]:
    """One of the client address's few bodies at once (and, for v1, of the unverified ones)."""
    app = request.app
    peer = request.remote or "unknown"
    bodies = app[PEER_BODIES]
    if bodies.get(peer, 0) >= app[SETTINGS].webhook_bodies_per_peer:
        log.warning("%s: too many webhook bodies at once from %s", request.path, peer)
        raise _refuse(503, "too many webhooks at once from your address; try again", **_RETRY)
    unverified = app[UNVERIFIED] if check.v1 is not None else None
    if unverified is not None and unverified.locked():
        raise _refuse(503, "too many webhooks at once; try again", **_RETRY)
    bodies[peer] = bodies.get(peer, 0) + 1
    try:
        if unverified is None:
            yield
        else:
            async with unverified:
                yield
    finally:
        bodies[peer] -= 1
        if not bodies[peer]:
            del bodies[peer]


_RETRY = {"Retry-After": "2"}


async def _read_body(
    request: web.Request,
    check: _BodyCheck,
    limit: int,
    write: Callable[[bytes], Any] | None = None,
) -> bytearray:
    """Read the body in chunks, hashed as they come, within its size limit and deadline.

    ``write``: an async sink for each chunk (the spool file); without it the
    body is gathered and returned. A body slower than ``webhook_body_timeout``
    plus a second per MiB is refused with 408 and its connection closed.
    """
    _check_length(request, limit)
    base = request.app[SETTINGS].webhook_body_timeout
    declared = request.content_length or 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    body = bytearray()
    size = 0
    async with _body_slot(request, check):
        try:
            async with asyncio.timeout_at(
                started + base + declared / BODY_BYTES_PER_SECOND
            ) as clock:
                async for chunk in request.content.iter_chunked(READ_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise _refuse(413, f"the body is larger than {limit} bytes")
                    check.update(chunk)
                    if write is None:
                        body += chunk
                    else:
                        await write(chunk)
                    allowed = base + max(declared, size) / BODY_BYTES_PER_SECOND
                    clock.reschedule(started + allowed)
        except TimeoutError:
            log.warning(
                "site %s: %s: the body did not arrive in time (%d bytes in %.0f s) from %s",
                check.site.name,
                request.path,
                size,
                loop.time() - started,
                request.remote,
            )
            refused = _refuse(408, "the body did not arrive in time")
            refused.response.force_close()
            raise refused from None
    await _body_verified(request, check)
    return body


async def _signed_body(
    request: web.Request, site: Site, limit: int, *, v1_signed: bytes | None = None
) -> bytes:
    """The whole (small) body, once its signature and hash are verified.

    ``v1_signed``: what a v1 signature covers instead of the body (a GET's path).
    """
    check = await _authenticate(request, site)
    if v1_signed is not None and check.v1 is not None:
        check.v1.update(v1_signed)  # a GET has no body to add to it
    return bytes(await _read_body(request, check, limit))


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(400, f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise _refuse(400, "the body is not JSON this service takes: nested too deeply") from None


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _answer(outcome: Outcome) -> web.Response:
    return web.json_response(
        outcome.as_json(),
        status=outcome.status,
        headers={"Cache-Control": "no-store"},
    )


def _refusals(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    """Answer a webhook's refusals as short JSON, log each refusal, and count every answer."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        try:
            response = await _answered(handler, request)
            return response
        finally:
            status = response.status if response is not None else 500
            request.app[METRICS].webhook(
                request.match_info.get("site", ""),
                handler.__name__,
                status,
                time.perf_counter() - started,
            )

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def _answered(handler: Callable[[web.Request], Any], request: web.Request) -> Any:
    site = request.match_info.get("site", "")
    try:
        return await handler(request)
    except _Refused as refused:
        if not request.content.is_eof():
            # An unread body is not drained (aiohttp would read it for seconds to
            # keep the connection): the connection closes after the answer.
            refused.response.force_close()
        _log_refused(request, refused.response)
        return refused.response
    except (PayloadError, FormError) as exc:
        answer = error(400, str(exc))
        _log_refused(request, answer)
        return answer
    except ManifestError as exc:  # a database away or full: the CMS queues and sends again
        log.error("site %s: %s", site, exc)
        answer = error(503, "the manifest cannot be read or written now; try again later")
        answer.headers["Retry-After"] = "30"
        return answer


def _log_refused(request: web.Request, response: web.Response) -> None:
    """One line per refused webhook: which site and hook, the status and why (no secret).

    The site and hook come from the request's path, which anyone writes: cut short.
    """
    site = request.match_info.get("site", "")[:80]
    hook = request.path.rsplit("/", 1)[-1][:40]
    reason = response.text or ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        reason = str(json.loads(reason).get("error", reason))
    request.app[RECENT].answered(site, hook, "-", response.status, f"refused: {reason[:120]}", 0.0)
    log.info(
        "site %s: %s webhook refused with %d: %s",
        site,
        hook,
        response.status,
        reason[:200],
        extra={"site": site, "hook": hook, "status": response.status, "outcome": "refused"},
    )


def _log_outcome(
    request: web.Request, site: str, hook: str, outcome: Outcome, started: float
) -> None:
    """One line per offload or deletion: the attachment, counts by status, bytes, time, status.

    The status page's list of recent webhooks and failed files gets them too.
    """
    counts: dict[str, int] = {}
    for item in outcome.items:
        counts[item.status] = counts.get(item.status, 0) + 1
    moved = sum(item.size or 0 for item in outcome.items if item.status in ("uploaded", "deleted"))
    took = (time.perf_counter() - started) * 1000
    attachment = outcome.attachment_id or "-"
    shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing"
    recent = request.app[RECENT]
    recent.answered(site, hook, attachment, outcome.status, shown, took)
    for item in outcome.items:
        if item.status == "failed":
            recent.failed_file(site, item.path, item.error or "failed")
    log.info(
        "site %s: %s of attachment %s: %s; %d bytes in %.0f ms; HTTP %d",
        site,
        hook,
        attachment,
        shown,
        moved,
        took,
        outcome.status,
        extra={
            "site": site,
            "hook": hook,
            "attachment": attachment,
            "counts": counts,
            "bytes": moved,
            "duration_ms": round(took, 1),
            "status": outcome.status,
            "outcome": "ok" if outcome.status == 200 else "failed",
        },
    )


# -- uploads -------------------------------------------------------------------------


@_refusals
async def uploads(request: web.Request) -> web.StreamResponse:
    """Copy an attachment's files to the bucket and answer with their CDN URLs."""
    started = time.perf_counter()
    since = time.time()  # the change's purges are queued after this
    site = _site(request)
    offloader = request.app[OFFLOADERS][site.name]
    if request.content_type == "multipart/form-data":
        async with _spooled_form(request, site) as (attachment, files):
            outcome = await offloader.offload(
                attachment, files, base_url=_base_url(request), with_mtime=False
            )
        outcome.attachment_id = attachment.attachment_id
        await _purged(request, outcome, since)
        _log_outcome(request, site.name, "upload", outcome, started)
        return _answer(outcome)
    if request.content_type != "application/json":
        raise _refuse(415, "send application/json or multipart/form-data")
    body = await _signed_body(request, site, MAX_JSON_BODY)
    attachment = parse_attachment(_json(body), uploads_url=site.uploads_url)
    files = await offloader.locate(attachment)
    outcome = await offloader.offload(attachment, files, base_url=_base_url(request))
    outcome.attachment_id = attachment.attachment_id
    await _purged(request, outcome, since)
    _log_outcome(request, site.name, "upload", outcome, started)
    return _answer(outcome)


async def _purged(request: web.Request, outcome: Outcome, since: float) -> None:
    """Wait up to ``purge_wait`` seconds for the change's purges to reach the CDN.

    So that the CMS, told a file is gone or replaced, finds the CDN agrees. The
    purges are in the outbox already: waiting longer gains nothing, and a CDN
    API that is slow or down makes the webhook no slower than this. ``since``:
    a time before the change was committed, so a purge the drain sent before
    this call (another webhook woke it) counts as sent.
    """
    if outcome.purges:
        wait = request.app[SETTINGS].purge_wait
        await request.app[PURGES].wait_sent(outcome.purges, wait, since=since)


@contextlib.asynccontextmanager
async def _spooled_form(
    request: web.Request, site: Site
) -> AsyncIterator[tuple[Attachment, dict[str, Path | None]]]:
    """Spool, verify and split a form; its files live until the block ends."""
    limit = request.app[SETTINGS].max_upload_size
    check = await _authenticate(request, site)
    try:
        boundary = boundary_of(request.headers.get("Content-Type", ""))
    except FormError as exc:
        raise _refuse(400, str(exc)) from None
    _check_length(request, limit)
    try:
        folder = Path(await _run(request, tempfile.mkdtemp, "", "offload-upload-"))
    except OSError as exc:
        raise _no_room(request, exc) from None
    try:
        spool = folder / "body"
        try:
            handle = await _run(request, spool.open, "wb")
            try:

                async def write(chunk: bytes) -> None:
                    await _run(request, handle.write, chunk)

                await _read_body(request, check, limit, write)
            finally:
                await _run(request, handle.close)
            parts = await _run(request, split_form, spool, boundary, folder)
        except OSError as exc:
            raise _no_room(request, exc) from None
        await _run(request, spool.unlink)
        yield _form_attachment(parts)
    finally:
        await _run(request, shutil.rmtree, folder, True)


def _no_room(request: web.Request, exc: OSError) -> Exception:
    """A full spool folder is the server's state, not the client's fault: 507, not 500."""
    if exc.errno not in _NO_ROOM:
        return exc
    log.error(
        "%s: no room to spool a webhook body in %s: %s",
        request.path,
        tempfile.gettempdir(),
        exc.strerror,
    )
    return _refuse(507, "no room to receive the upload right now; try again later", **_RETRY)


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
    started = time.perf_counter()
    since = time.time()  # the change's purges are queued after this
    site = _site(request)
    if request.content_type != "application/json":
        raise _refuse(415, "send application/json")
    body = await _signed_body(request, site, MAX_JSON_BODY)
    attachment = parse_attachment(_json(body), uploads_url=site.uploads_url, deletion=True)
    outcome = await request.app[OFFLOADERS][site.name].delete(
        attachment, base_url=_base_url(request)
    )
    outcome.attachment_id = attachment.attachment_id
    await _purged(request, outcome, since)
    _log_outcome(request, site.name, "deletion", outcome, started)
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
        # Variants are not uploads: a --delete would remove every one (see images.sync_variants).
        filters=variants_excluded(site, Filters()),
    )
    job = SyncJob(
        [(folder, site_bucket(site, app[STORAGES][site.name]))],
        options,
        state_path=server_sync_state(settings),
        # Its own few threads: the origin's pool keeps serving the CDN meanwhile.
        threads=SYNC_THREADS,
        # The collector is the whole server's: leave its pace to the server.
        tune_collector=False,
    )
    around = None if options.dry_run else _into_site(app, site)
    record, _new = await app[SYNC_RUNS].start(site, job, around=around)
    where = f"/_offload/{site.name}/sync/{record['id']}"
    return web.json_response(
        {"id": record["id"], "status": record["status"], "url": where},
        status=202,
        headers={"Location": where, "Cache-Control": "no-store"},
    )


def _into_site(app: web.Application, site: Site) -> Callable[[Reporter], Any]:
    """A background run's reporter, wrapped: the purges of what it replaces or deletes go
    to the outbox as it runs, and the variants of those originals go at its end."""
    manifest, pool, storage = app[MANIFEST], app[POOLS][site.name], app[STORAGES][site.name]

    async def in_pool(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @contextlib.asynccontextmanager
    async def around(reporter: Reporter) -> AsyncIterator[Reporter]:
        cascade = VariantCascade(reporter, site, storage, manifest, in_pool)
        notes = PurgeNotes(cascade, site, manifest, in_pool)
        async with notes.flushing():
            yield notes
        await cascade.finish()

    return around


@_refusals
async def sync_status(request: web.Request) -> web.StreamResponse:
    """A run's progress and result; signed like the webhooks, over the request's path."""
    site = _site(request)
    await _signed_body(request, site, 0, v1_signed=request.path.encode())
    record = await request.app[SYNC_RUNS].get(site.name, request.match_info["run"])
    if record is None:
        raise _refuse(404, "no such sync run (finished runs are kept for a while only)")
    return web.json_response(record, headers={"Cache-Control": "no-store"})

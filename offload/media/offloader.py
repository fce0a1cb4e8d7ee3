"""Copying an attachment's files to the bucket, and deleting them: the webhooks' work.

No aiohttp here: ``offload.server.webhooks`` reads and checks requests, this module does the
storage and manifest work and says what happened to each file.

For each file: hash it (SHA-256, in the executor, streaming), derive its key
(``keys.upload_key``, with the original's version segment when the site
versions keys), and HEAD the key. An object whose stored ``sha256`` and size
match is ``unchanged`` (no PUT); otherwise the file is PUT with its content
type, Cache-Control and metadata (``sha256``, ``source``, ``mtime``,
``attachment-id``). Missing files are ``pending`` (WordPress saves the
metadata several times while it makes the sizes). Concurrent requests for the
same key and content share one HEAD and PUT, so two identical webhooks get one
object and the same answer. The manifest records only files that are in the
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
import hashlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from offload.config.settings import Site
from offload.http import caching as httpcache
from offload.keys import UnsafeKey, upload_key, version_segment
from offload.media.manifest import Manifest, ManifestRow
from offload.media.payloads import Attachment, PayloadError
from offload.media.rewrite import Rewriter
from offload.storage import Storage, StorageError, StorageUnavailable, objectmeta
from offload.storage.base import LinkRefused
from offload.storage.content_types import guess_content_type
from offload.storage.singleflight import SingleFlight

log = logging.getLogger(__name__)

T = TypeVar("T")
Run = Callable[..., Awaitable[Any]]

#: Bytes read per call while hashing a file.
HASH_CHUNK = 1024 * 1024

META_SHA256 = objectmeta.SHA256
META_SOURCE = objectmeta.SOURCE
META_MTIME = objectmeta.MTIME
META_ATTACHMENT = objectmeta.ATTACHMENT_ID


@dataclass
class Item:
    """What happened to one file."""

    path: str
    status: str  # uploaded | unchanged | pending | failed | deleted
    key: str | None = None
    url: str | None = None
    size: int | None = None
    etag: str | None = None
    error: str | None = None
    #: A failure the request caused (a key no storage takes), not the storage's.
    refused: bool = field(default=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "key": self.key,
            "url": self.url,
            "size": self.size,
            "etag": self.etag,
            "status": self.status,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass
class Outcome:
    """The answer to one webhook."""

    site: str
    items: list[Item] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(item.status == "failed" for item in self.items)

    @property
    def status(self) -> int:
        """The HTTP status to answer with: 200, 422 when every failure is the
        request's own (nothing to retry), else 502 (storage failed; a retry may work)."""
        failures = [item for item in self.items if item.status == "failed"]
        if not failures:
            return 200
        return 422 if all(item.refused for item in failures) else 502

    def as_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "items": [item.as_json() for item in self.items],
            "urls": self.urls,
        }


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int
    mtime_ns: int | None


def hash_file(path: Path, *, with_mtime: bool = True) -> FileFacts:
    """SHA-256, size and mtime of one file, read in chunks (blocking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
        size = handle.tell()
    return FileFacts(digest.hexdigest(), size, st.st_mtime_ns if with_mtime else None)


def resolve_upload(uploads_dir: Path, path: str) -> Path | None:
    """The real file behind ``path`` under ``uploads_dir``, or None when it is missing.

    ``path`` has passed ``keys.upload_path_problem`` (relative, no ``..``). A
    symlink that leads outside ``uploads_dir``, or anything but a regular file,
    is a PayloadError (blocking: run it in the executor).
    """
    root = uploads_dir.resolve()
    try:
        real = (root / path).resolve(strict=True)
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise PayloadError(f"{path!r} cannot be resolved: {exc}") from None
    if not real.is_relative_to(root):
        raise PayloadError(f"{path!r} leads outside uploads_dir")
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PayloadError(f"{path!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise PayloadError(f"{path!r} is not a regular file")
    return real


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
        """
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
        shared_version: str | None = None
        if self.site.versioning and attachment.original is not None:
            original = facts.get(attachment.original)
            shared_version = version_segment(original.sha256) if original else None
        items: list[Item] = []
        rows: list[ManifestRow] = []

        async def one(path: str) -> None:
            file, fact = files.get(path), facts[path]
            if path in unreadable:
                items.append(Item(path, "failed", error=unreadable[path]))
                return
            if file is None or fact is None:
                items.append(Item(path, "pending"))
                return
            if not self.site.versioning:
                version = None
            elif attachment.original is None:
                version = version_segment(fact.sha256)
            elif shared_version is None:
                items.append(Item(path, "pending"))  # the original is not there yet
                return
            else:
                version = shared_version
            key = upload_key(self.site.prefix, path, version)
            item = Item(path, "failed", key, self.cdn_url(key, base_url), fact.size)
            items.append(item)
            try:
                async with self._slots:
                    status, etag, key, version = await self._flights.run(
                        (key, fact.sha256),
                        lambda: self._put_once(key, path, file, fact, version, attachment),
                    )
            except Exception as exc:  # one file's failure, whatever it is, is that file's
                item.error, item.refused = _failure(exc)
                if isinstance(exc, StorageError | StorageUnavailable | OSError | UnsafeKey):
                    log.warning("site %s: offloading %r failed: %s", self.site.name, path, exc)
                else:
                    log.exception("site %s: offloading %r failed", self.site.name, path)
                return
            item.status, item.etag = status, etag
            item.key, item.url = key, self.cdn_url(key, base_url)
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

        work = asyncio.ensure_future(asyncio.gather(*(one(path) for path in attachment.paths)))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # The PUTs go on without the request (they are shared, single-flight):
            # wait for them, so that what reaches the bucket gets its row, then stop.
            with contextlib.suppress(BaseException):
                await asyncio.shield(work)
            raise
        finally:
            # Even when the request is cancelled: what reached the bucket is recorded.
            if rows:
                await asyncio.shield(self._run(self.manifest.record, list(rows)))
        order = {path: index for index, path in enumerate(attachment.paths)}
        items.sort(key=lambda item: order[item.path])
        outcome = Outcome(self.site.name, items)
        for item in items:
            local = self.local_url(item.path)
            if item.status in ("uploaded", "unchanged") and local and item.url:
                outcome.urls[local] = item.url
        return outcome

    async def _put_once(
        self,
        key: str,
        path: str,
        file: Path,
        fact: FileFacts,
        version: str | None,
        attachment: Attachment,
    ) -> tuple[str, str, str, str | None]:
        """HEAD, then PUT unless the same content is there: (status, etag, key, version).

        A versioned key is served ``immutable``, so it never takes other bytes:
        a size regenerated while the original stayed the same (new crop, new
        quality) goes to a version folder of its own, derived from the
        attachment's version and its new content, and gets a new URL.
        """
        existing = await self.storage.head(key)
        if (
            existing is not None
            and existing.size == fact.size
            and existing.metadata.get(META_SHA256) == fact.sha256
        ):
            return "unchanged", existing.etag, key, version
        if existing is not None and version is not None:
            mixed = hashlib.sha256(f"{version}:{fact.sha256}".encode()).hexdigest()
            version = version_segment(mixed)
            key = upload_key(self.site.prefix, path, version)
            existing = await self.storage.head(key)
            if existing is not None and existing.metadata.get(META_SHA256) == fact.sha256:
                return "unchanged", existing.etag, key, version
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
        return "uploaded", info.etag, key, version

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

    async def delete(self, attachment: Attachment, *, base_url: str = "") -> Outcome:
        """Delete every object the manifest knows for these paths and this attachment."""
        rows = await self._run(
            lambda: self.manifest.rows(
                self.site.name, paths=attachment.paths, attachment_id=attachment.attachment_id
            )
        )
        outcome = Outcome(self.site.name)
        if not rows:
            return outcome
        keys = [row.key for row in rows]
        status, error = "deleted", None
        try:
            await self.storage.delete(keys)  # batches of up to 1,000 keys per request
        except (StorageError, StorageUnavailable, UnsafeKey) as exc:
            status, error = "failed", _failure(exc)[0]
            log.warning("site %s: deleting %d objects failed: %s", self.site.name, len(keys), exc)
        else:
            for key in keys:
                self._forget(key)
            await self._run(self.manifest.remove, self.site.name, keys)
        for row in rows:
            url = self.cdn_url(row.key, base_url)
            outcome.items.append(Item(row.path, status, row.key, url, row.size, row.etag, error))
        return outcome


def manifest_rewriter(site: Site, manifest: Manifest) -> Rewriter:
    """A Rewriter whose lookups ask the manifest: each one is a blocking SQLite query."""
    return Rewriter(
        site,
        lambda path: manifest.key_for(site.name, path),
        lambda key: manifest.path_for(site.name, key),
    )


def _failure(exc: BaseException) -> tuple[str, bool]:
    """A failed file's short reason, and whether the request caused it (not the storage)."""
    if isinstance(exc, LinkRefused):
        return "the storage folder links this key elsewhere", False
    if isinstance(exc, UnsafeKey):
        return f"the storage refuses the key: {str(exc)[:160]}", True
    if isinstance(exc, StorageError | StorageUnavailable | OSError):
        return _short_error(exc), False
    return "internal error", False


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, StorageUnavailable):
        return "storage unavailable"
    if isinstance(exc, StorageError):
        return "storage error"
    return "the file could not be read"

"""Transfer: uploads, downloads and bucket-to-bucket copies, at most ``jobs`` at once.

Each transfer is a task that holds a slot. Retries are the clients' own
(boto3's standard mode, 3 attempts; awscrt's default, up to 5 retries with
backoff); a transfer that still fails is reported and counted, never
raised, so the run goes on (and then deletes nothing).

- An upload is one PUT (awscrt's, up to its single-PUT limit, when the run
  has a client for the bucket), else the storage's own ``put``: a multipart
  upload aborted on failure. It stores the file's mtime (and, when the
  upload goes multipart, its MD5: such an ETag is no MD5) for later runs.
- A download goes to a ``.offload-partial-*`` file beside its target and is
  renamed into place once whole, with the object's stored mtime.
- A copy is the storage's server-side ``copy``; between two folders, a file
  copy (``copy_file_range``/``sendfile`` where the system has them, so no
  bytes pass through Python) to a ``.offload-partial-*`` file renamed into
  place with the source's mtime, as ``rsync`` does.

Memory stays bounded while large files go up: files over ``LARGE_FILE`` wait
for a share of ``UPLOAD_BUDGET`` (``budget``) in a lane of their own rather
than in a job slot, so that a run of large files (a media folder sorts before
the uploads) never holds every slot while it waits for memory, and the small
files behind it keep the connections busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from offload.storage import NotFound, StorageError, objectmeta
from offload.sync.budget import ByteBudget
from offload.sync.context import RunContext, reason
from offload.sync.locations import Bucket, Folder
from offload.sync.march import Entry
from offload.sync.report import Event
from offload.sync.state import Known, known_of
from offload.sync.walk import PARTIAL_PREFIX

#: Bytes read per chunk when hashing.
CHUNK = 1024 * 1024
#: Bytes that large uploads may hold in memory at once. This keeps the process
#: under 200 MB (measured: 185 MB at 64 MiB, 385 MB unbounded, at the same speed).
UPLOAD_BUDGET = 64 * 2**20
#: Uploads of files larger than this take the large lane (see the module docstring).
LARGE_FILE = 2**20
#: Large uploads waiting for the budget at once (the merge waits beyond this).
LARGE_WAITING = 256


class Transfers:
    """The run's transfers; ``written`` hears of each key an upload wrote."""

    def __init__(self, ctx: RunContext, *, written: Callable[[str], None]) -> None:
        self.ctx = ctx
        self._written = written
        self._slots = asyncio.Semaphore(max(ctx.options.jobs, 1))
        self._large_lane = asyncio.Semaphore(LARGE_WAITING)
        self._budget = ByteBudget(UPLOAD_BUDGET)
        if isinstance(ctx.src, Folder) and isinstance(ctx.dst, Folder):
            self._kind = "copy"
        elif isinstance(ctx.src, Folder):
            self._kind = "upload"
        else:
            self._kind = "download" if isinstance(ctx.dst, Folder) else "copy"

    async def schedule(self, entry: Entry, *, replaces: bool = False) -> None:
        """Start ``entry``'s transfer once a slot is free (a dry run only reports it).

        ``replaces``: the destination holds an older copy (its event says so, for a CDN purge).
        """
        if self.ctx.options.dry_run:
            self._report(entry, None, replaces)
            return
        uploading = isinstance(self.ctx.src, Folder) and isinstance(self.ctx.dst, Bucket)
        large = uploading and entry.side.size > LARGE_FILE
        lane = self._large_lane if large else self._slots
        await lane.acquire()
        self.ctx.track(asyncio.ensure_future(self._transfer(entry, lane, replaces)))

    def _report(self, entry: Entry, error: str | None, replaces: bool) -> None:
        ctx, kind = self.ctx, self._kind
        event = Event(
            kind,
            ctx.src.display(entry.rel),
            ctx.dst.display(entry.rel),
            entry.side.size,
            dry_run=ctx.options.dry_run,
            error=error,
            key=ctx.dst.key(entry.rel) if isinstance(ctx.dst, Bucket) else None,
            replaced=replaces,
        )
        summary = ctx.summary
        if error is None:
            summary.transferred += 1
            summary.bytes += entry.side.size
            summary.kinds[kind] = summary.kinds.get(kind, 0) + 1
        else:
            summary.failed += 1
        ctx.reporter.event(event)

    async def _transfer(self, entry: Entry, lane: asyncio.Semaphore, replaces: bool) -> None:
        src, dst = self.ctx.src, self.ctx.dst
        try:
            if isinstance(src, Folder) and isinstance(dst, Folder):
                done = await self._copy_file(entry, dst)
            elif isinstance(src, Folder):
                assert isinstance(dst, Bucket)
                done = await self._upload(entry, dst)
            elif isinstance(dst, Folder):
                done = await self._download(entry, src, dst)
            else:
                done = await self._copy(entry, src, dst)
            if done:
                self._report(entry, None, replaces)
        except (StorageError, OSError) as exc:
            self._report(entry, reason(exc), replaces)
        except ValueError as exc:  # a key the storage refuses (too long once prefixed)
            self._report(entry, str(exc), replaces)
        except Exception as exc:  # never lost: a transfer that fails is a failed transfer
            self._report(entry, f"{type(exc).__name__}: {exc}", replaces)
        finally:
            lane.release()

    async def _upload(self, entry: Entry, bucket: Bucket) -> bool:
        ctx, options = self.ctx, self.ctx.options
        assert entry.side.mtime_ns is not None
        key = bucket.key(entry.rel)
        stored_mtime = objectmeta.format_mtime(entry.side.mtime_ns)
        metadata = {objectmeta.MTIME: stored_mtime}
        md5 = None
        crt = ctx.crt_for(bucket)
        single = crt is not None and entry.side.size <= crt.single_put_limit
        if not single and not bucket.storage.etag_is_md5(entry.side.size):
            # A multipart ETag is no MD5: keep one for --checksum.
            md5 = await ctx.call(hash_file, entry.ref, "md5")
            if md5 is None:
                return self._vanished(entry)
            metadata[objectmeta.MD5] = md5
        if entry.side.size <= LARGE_FILE:
            footprint = 0  # small files: a few MiB in all at ``jobs`` at once
        elif single:
            footprint = entry.side.size  # awscrt holds a single PUT's body whole
        else:  # a multipart upload holds only its parts in flight
            footprint = bucket.storage.put_memory(entry.side.size)
        try:
            async with self._budget.hold(footprint):
                if single:
                    assert crt is not None
                    info = await crt.put_file(
                        key,
                        entry.ref,
                        size=entry.side.size,
                        content_type=options.content_type,
                        cache_control=options.cache_control,
                        metadata=metadata,
                    )
                else:
                    info = await bucket.storage.put(
                        key,
                        Path(entry.ref),
                        content_type=options.content_type,
                        cache_control=options.cache_control,
                        metadata=metadata,
                    )
        except FileNotFoundError:
            return self._vanished(entry)
        ctx.known_for(bucket).append((key, Known(info.etag, info.size, stored_mtime, md5)))
        self._written(key)
        return True

    def _vanished(self, entry: Entry) -> bool:
        self.ctx.warn(entry.rel, f"skipping {entry.ref}: the file vanished before it was read")
        return False

    async def _download(self, entry: Entry, bucket: Bucket, folder: Folder) -> bool:
        call = self.ctx.call
        target = os.path.join(folder.path, *entry.rel.split("/"))
        parent, name = os.path.split(target)
        partial = os.path.join(parent, _partial_name(name))
        try:
            info, stream = await bucket.storage.get(entry.ref)
        except NotFound:
            self.ctx.warn(entry.rel, f"skipping {bucket.display(entry.rel)}: it vanished")
            return False
        async with stream:
            await call(os.makedirs, parent, 0o777, True)
            handle = await call(open, partial, "wb")
            try:
                try:
                    async for chunk in stream:
                        await call(handle.write, chunk)
                finally:
                    await call(handle.close)
                mtime_ns = objectmeta.parse_mtime_ns(info.metadata.get(objectmeta.MTIME))
                if mtime_ns is None:
                    mtime_ns = int(info.last_modified.timestamp()) * 10**9
                await call(lambda: os.utime(partial, ns=(mtime_ns, mtime_ns)))
                await call(os.replace, partial, target)
            except BaseException:
                await call(_unlink_quietly, partial)
                raise
        self.ctx.known_for(bucket).append((entry.ref, known_of(info)))
        return True

    async def _copy_file(self, entry: Entry, folder: Folder) -> bool:
        """Folder to folder: a partial copy renamed into place, dated as its source."""
        assert entry.side.mtime_ns is not None
        target = os.path.join(folder.path, *entry.rel.split("/"))
        try:
            await self.ctx.call(_copy_local, entry.ref, target, entry.side.mtime_ns)
        except FileNotFoundError as exc:
            if exc.filename != entry.ref:
                raise
            return self._vanished(entry)
        return True

    async def _copy(self, entry: Entry, src: Bucket, dst: Bucket) -> bool:
        key = dst.key(entry.rel)
        try:
            info = await src.storage.copy(entry.ref, dst.storage, key)
        except NotFound:
            self.ctx.warn(entry.rel, f"skipping {src.display(entry.rel)}: it vanished")
            return False
        self.ctx.known_for(dst).append((key, known_of(info)))
        return True


def hash_file(path: str, algorithm: str) -> str | None:
    """The hex digest of a file read in chunks, or None when it vanished (blocking)."""
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError:  # vanished or unreadable: the transfer that follows says which
        return None
    return digest.hexdigest()


def _copy_local(source: str, target: str, mtime_ns: int) -> None:
    """Copy a file beside ``target``, date it ``mtime_ns`` and rename it into place
    (blocking). Its permission bits are the source's, as ``rsync -p`` keeps them, so
    a copied script stays executable."""
    parent, name = os.path.split(target)
    os.makedirs(parent, 0o777, exist_ok=True)
    partial = os.path.join(parent, _partial_name(name))
    try:
        shutil.copyfile(source, partial)
        with contextlib.suppress(OSError):
            shutil.copymode(source, partial)
        os.utime(partial, ns=(mtime_ns, mtime_ns))
        os.replace(partial, target)
    except BaseException:
        _unlink_quietly(partial)
        raise


def _partial_name(name: str) -> str:
    """A hidden temporary name beside ``name``, within the 255 bytes a file name may have."""
    stem = f"{PARTIAL_PREFIX}{secrets.token_hex(4)}-"
    tail = name.encode("utf-8")[: 255 - len(stem)].decode("utf-8", errors="ignore")
    return stem + tail


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

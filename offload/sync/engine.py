"""One sync run: list both sides, merge, decide, transfer, then (maybe) delete.

Both listings arrive sorted by key (``walk`` sorts a folder the way S3 lists a
bucket) and are merged as streams, batch by batch, so memory holds a batch and
the transfers in flight, whatever the tree's size; a listing that is not in
order stops the run before anything is deleted. Filters apply to both sides.

Each batch's equal-size pairs that need an object's stored ``mtime`` (or hash,
under ``--checksum``) get it from the sync state cache (``state``), checked
against the listing's ETag and size, or else from one HEAD each; then each
pair is decided (``compare``) and its transfer handed to at most ``jobs``
concurrent workers.

Safety, in order of what could go wrong:

- ``--dry-run`` reports what would happen and writes nothing: no object, no
  file, no folder, no cache entry (past 10,000 deletions to report, the
  list waits in an unnamed temporary file outside both sides, as in any run);
- an upload is one PUT, or a multipart upload aborted on failure; a download
  goes to a ``.offload-partial-*`` file renamed into place; an interrupted
  run's leftovers (parts of an upload of a key this run writes again, or
  older than a day; partial downloads) are cleaned up by the next run;
- deletions run only after every transfer succeeded (meanwhile they wait in
  a ``spool``: memory, then a temporary file), in batches of 1,000
  keys, and never when the source listed nothing or when more than
  ``max_delete`` would go (unless ``force``); a path the walk skipped with a
  warning counts as present, so its copy is never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from offload.keys import key_problem
from offload.storage import NotFound, ObjectInfo, S3Storage, StorageError, objectmeta
from offload.storage.crt import CrtPutter, crt_putter
from offload.sync.compare import (
    CHECKSUM,
    DEFAULT,
    NEWER,
    SIZE_ONLY,
    Side,
    copy_needed,
    download_needed,
    single_part_md5,
    upload_needed,
)
from offload.sync.filters import Filters
from offload.sync.locations import Bucket, Folder, Location
from offload.sync.report import Event, Reporter, Summary
from offload.sync.spool import DeletionSpool, Doomed, SpoolError
from offload.sync.state import Known, SyncState
from offload.sync.walk import PARTIAL_PREFIX, LocalFile, walk

#: Pairs decided together (one cache query, HEADs in parallel).
BATCH = 512
#: Entries per page of the folder walk (a bucket's pages are the server's, up to 1,000).
PAGE = 1000
#: Pages a listing may run ahead of the merge.
AHEAD = 2
#: State cache entries written at once while a run goes on (memory stays flat).
KNOWN_FLUSH = 2000
#: Keys per delete request (S3's limit).
DELETE_BATCH = 1000
#: Incomplete multipart uploads older than this are an interrupted run's, whatever their key.
STALE_UPLOAD = timedelta(days=1)
#: Bytes read per chunk when hashing or downloading.
CHUNK = 1024 * 1024
#: Bytes that large uploads may hold in memory at once: awscrt buffers a single
#: PUT whole, boto3 a multipart upload's parts in flight. This keeps the
#: process under 200 MB (measured: 185 MB at 64 MiB, 385 MB unbounded, at the
#: same speed).
UPLOAD_BUDGET = 64 * 2**20
#: Uploads of files larger than this take their own lane: bounded by the
#: budget above rather than by a job slot, so that a run of large files (a
#: media folder sorts before the uploads) never holds every slot while it waits
#: for memory, and the small files behind it keep the connections busy.
LARGE_FILE = 2**20
#: Large uploads waiting for the budget at once (the merge waits beyond this).
LARGE_WAITING = 256


class _ByteBudget:
    """At most ``limit`` bytes held at once; one item larger than that waits for all.

    A waiter that fits goes ahead of a larger one that does not, so memory
    stays busy; the larger one goes as soon as enough is given back.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.limit)
        if size <= 0:
            yield
            return
        if self._waiting or self.held + size > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append((size, waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                if (size, waiter) in self._waiting:
                    self._waiting.remove((size, waiter))
                elif not waiter.cancelled():
                    self._give_back(size)  # granted as the wait was cancelled
                raise
        else:
            self.held += size
        try:
            yield
        finally:
            self._give_back(size)

    def _give_back(self, size: int) -> None:
        self.held -= size
        still: list[tuple[int, asyncio.Future[None]]] = []
        for need, waiter in self._waiting:
            if waiter.done():
                continue
            if self.held + need <= self.limit:
                self.held += need
                waiter.set_result(None)
            else:
                still.append((need, waiter))
        self._waiting = still


class SyncError(StorageError):
    """The run cannot go on (a listing out of order, a source that is not there)."""


@dataclass(frozen=True)
class SyncOptions:
    compare: str = DEFAULT  # DEFAULT | SIZE_ONLY | CHECKSUM
    delete: bool = False
    dry_run: bool = False
    max_delete: int | None = 1000
    force: bool = False
    jobs: int = 64
    filters: Filters = field(default_factory=Filters)
    cache_control: str | None = None
    content_type: str | None = None
    #: awscrt for listings and single PUTs (the server turns it off: its threads
    #: would compete with the origin, and the shared boto3 pool is enough there).
    use_crt: bool = True


@dataclass(frozen=True, slots=True)
class Entry:
    """One side's file or object at a path relative to its root."""

    rel: str
    side: Side
    ref: str  # the local path, or the object's key in its storage


class SyncRun:
    """``src`` -> ``dst`` once; ``run()`` returns the summary (and never raises for a file)."""

    def __init__(
        self,
        src: Location,
        dst: Location,
        options: SyncOptions,
        reporter: Reporter,
        state: SyncState,
        executor: Executor,
    ) -> None:
        if isinstance(src, Folder) and isinstance(dst, Folder):
            raise ValueError("one side of a sync must be a bucket")
        self.src, self.dst, self.options, self.reporter = src, dst, options, reporter
        self.state = state
        self.executor = executor
        self.summary = Summary(dry_run=options.dry_run)
        self._slots = asyncio.Semaphore(max(options.jobs, 1))
        self._tasks: set[asyncio.Task[None]] = set()
        self._protected: list[str] = []  # skipped source paths: their copies stay
        self._warnings: list[tuple[str, str]] = []
        self._leftovers: list[str] = []
        self._stale_uploads: dict[str, datetime] = {}
        self._rewritten: set[str] = set()  # keys with a stale upload that this run rewrote
        self._known: dict[str, list[tuple[str, Known]]] = {}  # cache entries to write
        self._facts: dict[tuple[int, str], Known] = {}  # (id of bucket, key) -> stored facts
        self._head_slots = asyncio.Semaphore(max(options.jobs, 1))
        self._source_count = 0
        # awscrt clients for listings, single PUTs and deletions, one per bucket side
        # (storage/crt.py); built when the run starts, off the loop (credentials
        # may come from files or an instance's metadata service).
        self._crt: dict[int, CrtPutter | None] = {}
        self._budget = _ByteBudget(UPLOAD_BUDGET)
        self._large_lane = asyncio.Semaphore(LARGE_WAITING)

    # -- plumbing ------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    @staticmethod
    def _state_location(bucket: Bucket) -> str:
        return f"{bucket.endpoint}|{getattr(bucket.storage, 'url', '')}"

    def _drain_warnings(self) -> None:
        while self._warnings:
            rel, text = self._warnings.pop(0)
            self._protected.append(rel)
            self.summary.warnings += 1
            self.reporter.warning(text)

    def _protects(self, rel: str) -> bool:
        return any(
            rel == p or rel.startswith(p if p.endswith("/") or not p else p + "/")
            for p in self._protected
        )

    # -- listings ----------------------------------------------------------------------

    async def _folder_pages(self, folder: Folder, *, source: bool) -> AsyncIterator[list[Entry]]:
        if not await self._run(os.path.isdir, folder.path):
            if source:
                raise SyncError(f"{folder.shown}: the folder does not exist")
            return
        files = walk(
            folder.path,
            lambda rel, text: self._warnings.append((rel, text)),
            self._leftovers.append if not source else None,
            confined=folder.confined,
        )
        previous = ""
        while True:
            batch: list[LocalFile] = await self._run(lambda: list(islice(files, PAGE)))
            self._drain_warnings()
            if not batch:
                return
            page = []
            for file in batch:
                if file.rel <= previous and previous:
                    raise SyncError(f"{folder.shown}: the walk is out of order at {file.rel!r}")
                previous = file.rel
                problem = key_problem(file.rel)
                if problem is not None:
                    self._warn(file.rel, f"skipping {file.path}: it cannot be a key: {problem}")
                    continue
                page.append(Entry(file.rel, Side(file.size, mtime_ns=file.mtime_ns), file.path))
            yield page

    async def _bucket_pages(self, bucket: Bucket) -> AsyncIterator[list[Entry]]:
        previous = ""
        crt = self._crt.get(id(bucket))
        listing = crt.list_pages if crt is not None else _paged(bucket.storage.list)
        async for infos in listing(bucket.list_prefix):
            page = []
            for info in infos:
                rel = bucket.rel(info.key)
                if rel is None:
                    continue
                if rel <= previous and previous:
                    raise SyncError(f"{bucket.shown}: the listing is out of order at {rel!r}")
                previous = rel
                if rel.endswith("/") and info.size == 0:
                    continue  # a "folder" marker made by a console
                problem = key_problem(rel)
                if problem is not None:
                    self._warn(rel, f"skipping {bucket.display(rel)}: {problem}")
                    continue
                modified = int(info.last_modified.timestamp() * 1e9)
                side = Side(info.size, last_modified_ns=modified, etag=info.etag)
                page.append(Entry(rel, side, info.key))
            yield page

    def _pages(self, location: Location, *, source: bool) -> AsyncIterator[list[Entry]]:
        if isinstance(location, Folder):
            return self._folder_pages(location, source=source)
        return self._bucket_pages(location)

    def _warn(self, rel: str, text: str) -> None:
        self._protected.append(rel)
        self.summary.warnings += 1
        self.reporter.warning(text)

    async def _merged(self) -> AsyncIterator[list[tuple[Entry | None, Entry | None]]]:
        """Pairs (source, destination) in key order, a batch at a time.

        Each side's listing runs ahead by up to ``AHEAD`` pages in its own task,
        so the walk, the listing requests and the merging overlap; the merge
        itself is a plain loop over two lists.
        """
        included = self.options.filters.included
        sources = _Cursor(self._pages(self.src, source=True), included)
        destinations = _Cursor(self._pages(self.dst, source=False), included)
        out: list[tuple[Entry | None, Entry | None]] = []
        try:
            while True:
                has_source = await sources.ready()
                has_destination = await destinations.ready()
                if not has_source and not has_destination:
                    break
                s_page, si = sources.page, sources.at
                d_page, di = destinations.page, destinations.at
                if not has_destination:
                    out.extend((entry, None) for entry in s_page[si:])
                    si = len(s_page)
                elif not has_source:
                    out.extend((None, entry) for entry in d_page[di:])
                    di = len(d_page)
                else:
                    s_end, d_end = len(s_page), len(d_page)
                    while si < s_end and di < d_end:
                        s, d = s_page[si], d_page[di]
                        if s.rel < d.rel:
                            out.append((s, None))
                            si += 1
                        elif d.rel < s.rel:
                            out.append((None, d))
                            di += 1
                        else:
                            out.append((s, d))
                            si += 1
                            di += 1
                sources.at, destinations.at = si, di
                if len(out) >= BATCH:
                    yield out
                    out = []
            if out:
                yield out
        finally:
            await sources.close()
            await destinations.close()

    # -- the run -------------------------------------------------------------------

    async def run(self) -> Summary:
        started = time.monotonic()
        begun = datetime.now(UTC)
        self._crt = await self._run(self._crt_clients)
        deletions = DeletionSpool(self._run)
        batch: list[tuple[Entry, Entry | None]] = []
        try:
            await self._find_stale_uploads(begun)
            try:
                async with contextlib.aclosing(self._merged()) as merged:
                    async for pairs in merged:
                        for s, d in pairs:
                            if s is None:
                                assert d is not None
                                if self.options.delete:
                                    if not deletions:
                                        self._warm_up_client()
                                    await deletions.add(Doomed(d.rel, d.side.size, d.ref))
                                continue
                            self._source_count += 1
                            batch.append((s, d))
                        if len(batch) >= BATCH:
                            await self._decide(batch)
                            batch = []
                await self._decide(batch)
            finally:
                await self._settle()
            self._drain_warnings()
            if deletions:
                await self._delete(deletions)
            await self._clean_up(begun)
        finally:
            await deletions.close()
            await self._close_crt_clients()
        await self._flush_known(0)
        if self.state.problem:
            self.reporter.warning(self.state.problem)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _crt_clients(self) -> dict[int, CrtPutter | None]:
        """awscrt clients for the bucket sides (blocking)."""
        return {
            id(side): crt_putter(side.storage, connections=self.options.jobs)
            for side in (self.src, self.dst)
            if isinstance(side, Bucket) and self.options.use_crt
        }

    async def _close_crt_clients(self) -> None:
        """Shut the awscrt clients down once every request has settled."""
        crt, self._crt = self._crt, {}
        for putter in crt.values():
            if putter is not None:
                await putter.close()

    def _warm_up_client(self) -> None:
        """Build the boto3 client the deletions will need while the run goes on.

        Lazy (``S3Storage.client``) so that a run with nothing to delete never
        pays its third of a second; started here so that one that has does not
        pay it at the end.
        """
        storage = self.dst.storage if isinstance(self.dst, Bucket) else None
        if self._crt.get(id(self.dst)) is not None:
            return  # awscrt deletes: no boto3 client needed
        if isinstance(storage, S3Storage) and not self.options.dry_run:
            warm = asyncio.get_running_loop().run_in_executor(self.executor, lambda: storage.client)
            self._tasks.add(warm)  # type: ignore[arg-type]
            warm.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]

    async def _settle(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- deciding ----------------------------------------------------------------------

    async def _decide(self, batch: list[tuple[Entry, Entry | None]]) -> None:
        if not batch:
            return
        mode = self.options.compare
        src_local, dst_local = isinstance(self.src, Folder), isinstance(self.dst, Folder)
        same_size = [
            index
            for index, (s, d) in enumerate(batch)
            if d is not None and s.side.size == d.side.size
        ]
        if mode == NEWER:  # every pair's object side: which copy is newer
            paired = [index for index, (_s, d) in enumerate(batch) if d is not None]
            await self._fill(batch, paired, object_is_dst=src_local)
        elif same_size and mode != SIZE_ONLY:
            if src_local or dst_local:
                # The object side's stored mtime (and hashes, for --checksum).
                await self._fill(batch, same_size, object_is_dst=src_local)
            else:
                differing = [i for i in same_size if batch[i][0].side.etag != batch[i][1].side.etag]  # type: ignore[union-attr]
                if mode in (DEFAULT, CHECKSUM):
                    await self._fill(batch, differing, object_is_dst=True)
                    await self._fill(batch, differing, object_is_dst=False)
        same_content: set[int] = set()
        if mode == CHECKSUM and same_size:
            same_content = await self._same_content(batch, same_size)
        planned_files = planned_bytes = 0
        for index, (s, d) in enumerate(batch):
            if mode == CHECKSUM and index in same_size:
                needed = index not in same_content
            elif src_local:
                needed = upload_needed(s.side, d.side if d else None, mode)
            elif dst_local:
                needed = download_needed(s.side, d.side if d else None, mode)
            else:
                needed = copy_needed(s.side, d.side if d else None, mode)
            if needed:
                planned_files += 1
                planned_bytes += s.side.size
                await self._schedule(s)
        self.reporter.planned(planned_files, planned_bytes)
        self._facts.clear()  # only this batch's comparisons needed them
        await self._flush_known(KNOWN_FLUSH)

    async def _fill(
        self, batch: list[tuple[Entry, Entry | None]], indexes: list[int], *, object_is_dst: bool
    ) -> None:
        """Give the object side of ``batch[i]`` its stored facts: from the cache, else a HEAD."""
        bucket = self.dst if object_is_dst else self.src
        if not indexes or not isinstance(bucket, Bucket):
            return
        location = self._state_location(bucket)

        def object_of(index: int) -> Entry:
            s, d = batch[index]
            entry = d if object_is_dst else s
            assert entry is not None
            return entry

        known = await self._run(self.state.lookup, location, [object_of(i).ref for i in indexes])
        facts: dict[int, Known] = {}
        missing: list[int] = []
        for index in indexes:
            entry = object_of(index)
            hit = known.get(entry.ref)
            if hit is not None and hit.etag == entry.side.etag and hit.size == entry.side.size:
                facts[index] = hit
            else:
                missing.append(index)

        async def head(index: int) -> None:
            entry = object_of(index)
            async with self._head_slots:
                info = await bucket.storage.head(entry.ref)
            if info is not None:
                facts[index] = fact = _known_of(info)
                self._known_for(bucket).append((entry.ref, fact))

        await asyncio.gather(*(head(index) for index in missing))
        for index, fact in facts.items():
            s, d = batch[index]
            entry = object_of(index)
            updated = Entry(entry.rel, _with_fact(entry.side, fact), entry.ref)
            self._facts[(id(bucket), entry.ref)] = fact
            batch[index] = (s, updated) if object_is_dst else (updated, d)

    async def _same_content(
        self, batch: list[tuple[Entry, Entry | None]], indexes: list[int]
    ) -> set[int]:
        """``--checksum``: which equal-size pairs hold the same bytes."""
        same: set[int] = set()

        async def compare(index: int) -> None:
            s, d = batch[index]
            assert d is not None
            if isinstance(self.src, Bucket) and isinstance(self.dst, Bucket):
                if s.side.etag == d.side.etag or _same_stored_hash(
                    self._facts.get((id(self.src), s.ref)), self._facts.get((id(self.dst), d.ref))
                ):
                    same.add(index)
                return
            local, obj = (s, d) if isinstance(self.src, Folder) else (d, s)
            bucket = self.dst if isinstance(self.src, Folder) else self.src
            fact = self._facts.get((id(bucket), obj.ref))
            md5 = single_part_md5(obj.side.etag) or (fact.md5 if fact else None)
            sha256 = fact.sha256 if fact else None
            if md5 is None and sha256 is None:
                return  # nothing to compare with: transfer
            async with self._head_slots:
                digest = await self._run(_hash_file, local.ref, "md5" if md5 else "sha256")
            if digest is not None and digest == (md5 or sha256):
                same.add(index)

        await asyncio.gather(*(compare(index) for index in indexes))
        return same

    # -- transferring ------------------------------------------------------------------

    async def _schedule(self, entry: Entry) -> None:
        if self.options.dry_run:
            self._report(entry, None)
            return
        large = isinstance(self.src, Folder) and entry.side.size > LARGE_FILE
        lane = self._large_lane if large else self._slots
        await lane.acquire()
        task = asyncio.ensure_future(self._transfer(entry, lane))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _kind(self) -> str:
        if isinstance(self.src, Folder):
            return "upload"
        return "download" if isinstance(self.dst, Folder) else "copy"

    def _report(self, entry: Entry, error: str | None) -> None:
        kind = self._kind()
        event = Event(
            kind,
            self.src.display(entry.rel),
            self.dst.display(entry.rel),
            entry.side.size,
            dry_run=self.options.dry_run,
            error=error,
        )
        if error is None:
            self.summary.transferred += 1
            self.summary.bytes += entry.side.size
            self.summary.kinds[kind] = self.summary.kinds.get(kind, 0) + 1
        else:
            self.summary.failed += 1
        self.reporter.event(event)

    async def _transfer(self, entry: Entry, lane: asyncio.Semaphore) -> None:
        try:
            if isinstance(self.src, Folder):
                assert isinstance(self.dst, Bucket)
                done = await self._upload(entry, self.dst)
            elif isinstance(self.dst, Folder):
                done = await self._download(entry, self.src, self.dst)
            else:
                done = await self._copy(entry, self.src, self.dst)
            if done:
                self._report(entry, None)
        except (StorageError, OSError) as exc:
            self._report(entry, _reason(exc))
        except ValueError as exc:  # a key the storage refuses (too long once prefixed)
            self._report(entry, str(exc))
        except Exception as exc:  # never lost: a transfer that fails is a failed transfer
            self._report(entry, f"{type(exc).__name__}: {exc}")
        finally:
            lane.release()

    async def _upload(self, entry: Entry, bucket: Bucket) -> bool:
        assert entry.side.mtime_ns is not None
        key = bucket.key(entry.rel)
        stored_mtime = objectmeta.format_mtime(entry.side.mtime_ns)
        metadata = {objectmeta.MTIME: stored_mtime}
        md5 = None
        crt = self._crt.get(id(bucket))
        single = crt is not None and entry.side.size <= crt.single_put_limit
        threshold = getattr(bucket.storage, "multipart_threshold", None)
        if not single and threshold is not None and entry.side.size > threshold:
            # A multipart ETag is no MD5: keep one for --checksum.
            md5 = await self._run(_hash_file, entry.ref, "md5")
            if md5 is None:
                return self._vanished(entry)
            metadata[objectmeta.MD5] = md5
        if entry.side.size <= LARGE_FILE:
            footprint = 0  # small files: a few MiB in all at ``jobs`` at once
        elif single or not isinstance(bucket.storage, S3Storage):
            footprint = entry.side.size
        else:  # a multipart upload holds its parts in flight
            storage = bucket.storage
            footprint = storage.multipart_concurrency * storage.multipart_chunksize
        try:
            async with self._budget.hold(footprint):
                if single:
                    assert crt is not None
                    info = await crt.put_file(
                        key,
                        entry.ref,
                        size=entry.side.size,
                        content_type=self.options.content_type,
                        cache_control=self.options.cache_control,
                        metadata=metadata,
                    )
                else:
                    info = await bucket.storage.put(
                        key,
                        Path(entry.ref),
                        content_type=self.options.content_type,
                        cache_control=self.options.cache_control,
                        metadata=metadata,
                    )
        except FileNotFoundError:
            return self._vanished(entry)
        self._known_for(bucket).append((key, Known(info.etag, info.size, stored_mtime, md5)))
        if key in self._stale_uploads:
            self._rewritten.add(key)  # its interrupted upload is now just litter
        return True

    def _vanished(self, entry: Entry) -> bool:
        self._warn(entry.rel, f"skipping {entry.ref}: the file vanished before it was read")
        return False

    async def _download(self, entry: Entry, bucket: Bucket, folder: Folder) -> bool:
        target = os.path.join(folder.path, *entry.rel.split("/"))
        parent, name = os.path.split(target)
        partial = os.path.join(parent, _partial_name(name))
        try:
            info, stream = await bucket.storage.get(entry.ref)
        except NotFound:
            self._warn(entry.rel, f"skipping {bucket.display(entry.rel)}: it vanished")
            return False
        async with stream:
            await self._run(os.makedirs, parent, 0o777, True)
            handle = await self._run(open, partial, "wb")
            try:
                try:
                    async for chunk in stream:
                        await self._run(handle.write, chunk)
                finally:
                    await self._run(handle.close)
                mtime_ns = objectmeta.parse_mtime_ns(info.metadata.get(objectmeta.MTIME))
                if mtime_ns is None:
                    mtime_ns = int(info.last_modified.timestamp()) * 10**9
                await self._run(lambda: os.utime(partial, ns=(mtime_ns, mtime_ns)))
                await self._run(os.replace, partial, target)
            except BaseException:
                await self._run(_unlink_quietly, partial)
                raise
        self._known_for(bucket).append((entry.ref, _known_of(info)))
        return True

    async def _copy(self, entry: Entry, src: Bucket, dst: Bucket) -> bool:
        key = dst.key(entry.rel)
        try:
            info = await src.storage.copy(entry.ref, dst.storage, key)
        except NotFound:
            self._warn(entry.rel, f"skipping {src.display(entry.rel)}: it vanished")
            return False
        self._known_for(dst).append((key, _known_of(info)))
        return True

    # -- deleting ----------------------------------------------------------------------

    async def _deletable(self, deletions: DeletionSpool) -> int:
        """How many entries may go: a path the walk skipped keeps its copy."""
        count = 0
        async with contextlib.aclosing(deletions.batches(DELETE_BATCH)) as batches:
            async for doomed in batches:
                count += sum(1 for d in doomed if not self._protects(d.rel))
        return count

    async def _delete(self, deletions: DeletionSpool) -> None:
        """Delete what only the destination holds, unless a guard says no.

        Two passes over the spool: the first counts what may go, the second
        deletes it in full batches. A spool that lost its file (a full
        ``TMPDIR``) deletes nothing; the transfers have been made all the same.
        """
        try:
            count = await self._deletable(deletions)
            why = self._refusal(count)
        except SpoolError as exc:
            count, why = deletions.count, str(exc)
        if not count:
            return
        if why is not None:
            self.summary.refused_deletes = count
            self.reporter.error(f"deleting nothing: {why}")
            return
        batch: list[Doomed] = []
        try:
            async with contextlib.aclosing(deletions.batches(DELETE_BATCH)) as batches:
                async for doomed in batches:
                    batch += (d for d in doomed if not self._protects(d.rel))
                    while len(batch) >= DELETE_BATCH:
                        await self._delete_batch(batch[:DELETE_BATCH])
                        batch = batch[DELETE_BATCH:]
        except SpoolError as exc:  # it was read back once already: hardly ever
            self.summary.refused_deletes = count - self.summary.deleted
            self.reporter.error(f"deleting no more: {exc}")
            return
        if batch:
            await self._delete_batch(batch)

    def _refusal(self, count: int) -> str | None:
        """Why ``count`` deletions must not run, or None when they may."""
        if self.summary.failed:
            return f"{self.summary.failed} transfer(s) failed"
        if self._source_count == 0 and not self.options.force:
            return "the source holds no files (use --force to empty the destination)"
        limit = self.options.max_delete
        if limit is not None and count > limit and not self.options.force:
            return (
                f"{count} files would go, more than --max-delete {limit}"
                " (use --force, or raise --max-delete)"
            )
        return None

    async def _delete_batch(self, batch: list[Doomed]) -> None:
        error = None
        if not self.options.dry_run:
            try:
                if isinstance(self.dst, Bucket):
                    crt = self._crt.get(id(self.dst))
                    deleter = crt.delete if crt is not None else self.dst.storage.delete
                    await deleter([entry.ref for entry in batch])
                    await self._run(
                        self.state.forget,
                        self._state_location(self.dst),
                        [entry.ref for entry in batch],
                    )
                else:
                    await self._run(_unlink_all, [entry.ref for entry in batch])
            except (StorageError, OSError) as exc:
                error = _reason(exc)
        for entry in batch:
            event = Event(
                "delete",
                self.dst.display(entry.rel),
                None,
                entry.size,
                dry_run=self.options.dry_run,
                error=error,
            )
            if error is None:
                self.summary.deleted += 1
            else:
                self.summary.failed += 1
            self.reporter.event(event)

    # -- leftovers of interrupted runs -------------------------------------------------

    async def _find_stale_uploads(self, begun: datetime) -> None:
        if not isinstance(self.dst, Bucket) or not isinstance(self.dst.storage, S3Storage):
            return
        storage: S3Storage = self.dst.storage
        crt = self._crt.get(id(self.dst))
        finder = crt.incomplete_uploads if crt is not None else storage.incomplete_uploads
        self._stale_uploads = await finder(self.dst.list_prefix, begun)

    async def _clean_up(self, begun: datetime) -> None:
        if self.options.dry_run:
            return
        if self._stale_uploads and isinstance(self.dst, Bucket):
            storage = self.dst.storage
            assert isinstance(storage, S3Storage)
            old = begun - STALE_UPLOAD
            keys = {
                key
                for key, initiated in self._stale_uploads.items()
                if key in self._rewritten or initiated < old
            }
            if keys:
                await storage.abort_incomplete_uploads(self.dst.list_prefix, begun, keys)
        if self._leftovers:
            await self._run(_unlink_all, self._leftovers)

    async def _flush_known(self, at_least: int) -> None:
        """Write what was learnt to the state cache once there is this much of it."""
        for location, entries in self._known.items():
            if entries and len(entries) >= at_least:
                self._known[location] = []
                if not self.options.dry_run:
                    await self._run(self.state.store, location, entries)

    def _known_for(self, bucket: Bucket) -> list[tuple[str, Known]]:
        return self._known.setdefault(self._state_location(bucket), [])


class _Cursor:
    """One side of the merge: pages fetched ahead by a task, and a position in the current one."""

    def __init__(self, pages: AsyncIterator[list[Entry]], included: Callable[[str], bool]) -> None:
        self.page: list[Entry] = []
        self.at = 0
        self._included = included
        self._queue: asyncio.Queue[list[Entry] | BaseException | None] = asyncio.Queue(AHEAD)
        self._ended = False
        self._pages = pages
        self._task = asyncio.ensure_future(self._fetch())

    async def _fetch(self) -> None:
        try:
            async for page in self._pages:
                await self._queue.put(page)
        except Exception as exc:  # handed to the merge, which raises it in its own task
            await self._queue.put(exc)
        else:
            await self._queue.put(None)

    async def ready(self) -> bool:
        """Whether an entry is at ``page[at]``; False once the side has no more."""
        while self.at >= len(self.page):
            if self._ended:
                return False
            item = await self._queue.get()
            if item is None or isinstance(item, BaseException):
                self._ended = True
                if item is not None:
                    raise item
                return False
            self.page, self.at = [e for e in item if self._included(e.rel)], 0
        return True

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(RuntimeError):  # already closed or running elsewhere
            await self._pages.aclose()  # type: ignore[attr-defined]


def _paged(
    listing: Callable[[str], AsyncIterator[ObjectInfo]],
) -> Callable[[str], AsyncIterator[list[ObjectInfo]]]:
    """A one-object-at-a-time listing as pages of up to ``PAGE`` objects."""

    async def pages(prefix: str) -> AsyncIterator[list[ObjectInfo]]:
        page: list[ObjectInfo] = []
        async for info in listing(prefix):
            page.append(info)
            if len(page) >= PAGE:
                yield page
                page = []
        if page:
            yield page

    return pages


def _known_of(info: ObjectInfo) -> Known:
    meta = info.metadata or {}
    return Known(
        info.etag,
        info.size,
        meta.get(objectmeta.MTIME),
        meta.get(objectmeta.MD5),
        meta.get(objectmeta.SHA256),
    )


def _with_fact(side: Side, fact: Known) -> Side:
    return Side(
        side.size,
        mtime_ns=side.mtime_ns,
        last_modified_ns=side.last_modified_ns,
        etag=side.etag,
        stored_mtime=fact.mtime,
    )


def _same_stored_hash(a: Known | None, b: Known | None) -> bool:
    if a is None or b is None:
        return False
    return bool((a.md5 and a.md5 == b.md5) or (a.sha256 and a.sha256 == b.sha256))


def _hash_file(path: str, algorithm: str) -> str | None:
    """The hex digest of a file read in chunks, or None when it vanished (blocking)."""
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError:  # vanished or unreadable: the transfer that follows says which
        return None
    return digest.hexdigest()


def _partial_name(name: str) -> str:
    """A hidden temporary name beside ``name``, within the 255 bytes a file name may have."""
    stem = f"{PARTIAL_PREFIX}{secrets.token_hex(4)}-"
    tail = name.encode("utf-8")[: 255 - len(stem)].decode("utf-8", errors="ignore")
    return stem + tail


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        _unlink_quietly(path)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)

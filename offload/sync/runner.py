"""``run_sync()``: the one way to run a sync, for the command line, backups and the server.

A ``SyncJob`` says what to sync: pairs of sides, run one after another with
the same options, each side either open already (the server's) or opened
here, in the run's executor (an S3 client reads config files). What
``run_sync`` opens it closes; what it was given stays open. It owns the rest
of running a sync: the executor, the sync state cache, ``merge`` (push, then
pull back), and the cyclic collector's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from offload.config.settings import Settings, Site
from offload.storage.uploadmarks import UploadMarks
from offload.sync.compare import NEWER, SIZE_ONLY
from offload.sync.context import SyncError, SyncOptions
from offload.sync.engine import SyncRun
from offload.sync.locations import Bucket, Folder, Location, S3Options, open_location
from offload.sync.preflight import check_sides
from offload.sync.report import Reporter, Summary
from offload.sync.state import SyncState, default_path

#: Opens one side, given the run's executor (blocking: an S3 client reads config files).
Opener = Callable[[Executor], Location]
#: A side: open already (``run_sync`` leaves it open), or to be opened (and then closed).
SideSpec = Location | Opener


@dataclass(frozen=True)
class SyncJob:
    """What ``run_sync`` does."""

    pairs: Sequence[tuple[SideSpec, SideSpec]]
    options: SyncOptions
    #: Each pair is a folder and a bucket: push the folder's newer files, then
    #: pull the bucket's newer ones back (each side's newer copy wins); delete nothing.
    merge: bool = False
    #: The sync state cache; None: ``default_path()`` (``$OFFLOAD_SYNC_STATE``, else ~/.cache).
    state_path: Path | None = None
    #: Threads of the run's executor; None: ``jobs`` plus a few for walking and hashing.
    threads: int | None = None
    thread_name: str = "offload-sync"
    #: Let the cyclic collector pass less often while the run goes (see
    #: ``_collector_spared``); off where the process serves other work too.
    tune_collector: bool = True

    @classmethod
    def between(
        cls,
        src: str,
        dst: str,
        options: SyncOptions,
        *,
        s3: S3Options | None = None,
        settings: Settings | None = None,
        merge: bool = False,
    ) -> SyncJob:
        """``src`` to ``dst``, each a folder, ``s3://bucket/prefix`` or ``site:NAME``."""
        s3 = s3 or S3Options()
        return cls([(_opener(src, s3, settings), _opener(dst, s3, settings))], options, merge=merge)

    @classmethod
    def backups(cls, settings: Settings, sites: Sequence[Site], *, jobs: int) -> SyncJob:
        """Each site's objects (the keys under its ``prefix``) to its ``backup`` storage,
        under the same prefix, by size only, deleting nothing.

        Only the site's own keys: a storage shared by several sites or tools
        holds keys that are not this site's to copy. A site without a
        ``backup`` target is left out.
        """
        pairs: list[tuple[SideSpec, SideSpec]] = []
        for site in sites:
            if not site.backup:
                continue
            target = replace(site, storage=site.backup)  # same endpoint and credentials
            pairs.append((_under_prefix(settings, site), _under_prefix(settings, target)))
        options = SyncOptions(compare=SIZE_ONLY, jobs=jobs)
        return cls(pairs, options, thread_name="offload-backup")


async def run_sync(job: SyncJob, reporter: Reporter, *, summary: Summary | None = None) -> Summary:
    """Run ``job`` to its end and return its counts (it never raises for one file).

    ``summary``: the one to count into as the job goes, for a status page that
    reads it meanwhile (a job of one plain pair counts into it live; a merge or
    several pairs add each run's counts as it ends). Raises ``SyncError`` (and
    the locations' errors) when a run cannot start or go on: before each pair
    runs, ``preflight`` checks that a folder source is there and, for a run
    on awscrt, that each bucket's endpoint takes a connection.
    """
    total = summary if summary is not None else Summary()
    total.dry_run = job.options.dry_run
    live = total if len(job.pairs) == 1 and not job.merge else None
    loop = asyncio.get_running_loop()
    threads = job.threads or job.options.jobs + 4
    pool = ThreadPoolExecutor(threads, thread_name_prefix=job.thread_name)
    state = SyncState(job.state_path or default_path(), read_only=job.options.dry_run)
    marks = None if job.options.dry_run else UploadMarks(job.state_path or default_path())
    with _collector_spared(job.tune_collector):
        try:
            for src_spec, dst_spec in job.pairs:
                async with (
                    opened(src_spec, pool) as src,
                    opened(dst_spec, pool) as dst,
                    _noting_uploads((src, dst), marks),
                ):
                    await check_sides(
                        src,
                        dst,
                        functools.partial(loop.run_in_executor, pool),
                        use_crt=job.options.use_crt,
                    )
                    if job.merge:
                        result = await _merge(src, dst, job.options, reporter, state, pool)
                    else:
                        run = SyncRun(src, dst, job.options, reporter, state, pool, summary=live)
                        result = await run.run()
                if result is not total:
                    total.add(result)
        finally:
            await loop.run_in_executor(pool, state.close)
            if marks is not None:
                await loop.run_in_executor(pool, marks.close)
            # Not waiting on the loop: a call an error cut short (a page of the
            # walk) finishes in its thread on its own.
            pool.shutdown(wait=False)
    return total


async def _merge(
    src: Location,
    dst: Location,
    options: SyncOptions,
    reporter: Reporter,
    state: SyncState,
    pool: Executor,
) -> Summary:
    """Push the folder's files to the bucket, then pull the bucket's back; delete nothing."""
    folder, bucket = (src, dst) if isinstance(src, Folder) else (dst, src)
    if not isinstance(folder, Folder) or not isinstance(bucket, Bucket):
        raise SyncError("a merge needs a folder and a bucket")
    # Each side's newer copy wins (rsync -u): an edit on either head travels.
    keep = replace(options, delete=False, compare=NEWER)
    summary = await SyncRun(folder, bucket, keep, reporter, state, pool).run()
    if summary.failed:
        return summary  # pull only onto a folder whose push went through
    summary.add(await SyncRun(bucket, folder, keep, reporter, state, pool).run())
    return summary


@contextlib.asynccontextmanager
async def opened(spec: SideSpec, pool: Executor) -> AsyncIterator[Location]:
    """The side itself, or opened in ``pool`` and closed (its storage) afterwards."""
    if isinstance(spec, Folder | Bucket):
        yield spec
        return
    location = await asyncio.get_running_loop().run_in_executor(pool, spec, pool)
    try:
        yield location
    finally:
        if isinstance(location, Bucket):
            await location.storage.close()


@contextlib.asynccontextmanager
async def _noting_uploads(
    sides: tuple[Location, Location], marks: UploadMarks | None
) -> AsyncIterator[None]:
    """Note the multipart uploads of the run's buckets in the state file, so that one a
    kill cuts short is aborted by the next run; a storage noting them already keeps its
    notes (a site's storage notes them in the default state file)."""
    noted = [
        side.storage
        for side in sides
        if isinstance(side, Bucket) and marks is not None and side.storage.upload_marks is None
    ]
    for storage in noted:
        storage.use_upload_marks(marks)
    try:
        yield
    finally:
        for storage in noted:
            storage.use_upload_marks(None)


def _opener(text: str, s3: S3Options, settings: Settings | None) -> Opener:
    return functools.partial(open_location, text, s3, settings)


def _under_prefix(settings: Settings, site: Site) -> Opener:
    """A site's keys (those under its ``prefix``), as a sync side."""
    only = replace(settings, sites={site.name: site})
    return functools.partial(open_location, f"site:{site.name}", S3Options(), only)


@contextlib.contextmanager
def _collector_spared(tune: bool = True) -> Iterator[None]:
    """Collect cycles less often while a run goes (``tune``); as it was afterwards.

    A sync makes a few objects per file (a task, its future, an event), freed
    by reference counting; the cyclic collector's default pass every 700 new
    objects kept walking the whole heap of imported modules. Freezing what is
    imported and passing every 20,000 allocations took a tenth of a second of
    CPU off an upload of 5,040 files, with no more memory to show for it. The
    collector is as it was afterwards (the command may run inside another
    program, as in the tests); a heap someone else froze is left alone.
    """
    if not tune:
        yield
        return
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()

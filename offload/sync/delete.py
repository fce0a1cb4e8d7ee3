"""Delete and clean up: what only the destination holds, and what interrupted runs left.

Deletions run only after every transfer succeeded; meanwhile they wait in a
``spool`` (memory, then a temporary file). They go in batches of
``DELETE_BATCH`` keys, and never when a transfer failed, when the source
listed nothing, or when more than ``max_delete`` would go (the last two
unless ``force``); a path the run skipped with a warning counts as present,
so its copy is never deleted. A guard that refuses is reported as a
``Refusal`` and the run deletes nothing at all.

Leftovers: a multipart upload offload began (noted in the state file, see
``storage.uploadmarks``) whose writer is no longer running is aborted whatever
its age; any other incomplete upload under the prefix (another tool's, or one
begun before notes were kept) is aborted when this run wrote its key again, or
when it is older than ``STALE_UPLOAD``. The ``.offload-partial-*`` files of an
interrupted download are removed. A dry run cleans up nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import datetime, timedelta

from offload.storage import StorageError
from offload.sync.context import RunContext, reason
from offload.sync.locations import Bucket
from offload.sync.report import EMPTY_SOURCE, TOO_MANY, Event, Refusal
from offload.sync.spool import DeletionSpool, Doomed, SpoolError

#: Keys per delete request (S3's limit).
DELETE_BATCH = 1000
#: Incomplete multipart uploads older than this are an interrupted run's, whatever their key.
STALE_UPLOAD = timedelta(days=1)


class Deleter:
    """The deletions of one run, once its transfers are done."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def warm_up_client(self) -> None:
        """Build the boto3 client the deletions will need while the run goes on.

        Lazy (``Storage.warm_up``) so that a run with nothing to delete never
        pays its third of a second; started here (at the first deletion the
        march finds) so that one that has does not pay it at the end.
        """
        dst = self.ctx.dst
        if not isinstance(dst, Bucket) or self.ctx.options.dry_run:
            return
        if self.ctx.crt_for(dst) is not None:
            return  # awscrt deletes: no boto3 client needed
        self.ctx.track(asyncio.ensure_future(dst.storage.warm_up()))

    async def delete(self, deletions: DeletionSpool, source_count: int) -> None:
        """Delete what only the destination holds, unless a guard says no.

        Two passes over the spool: the first counts what may go, the second
        deletes it in full batches. A spool that lost its file (a full
        ``TMPDIR``) deletes nothing; the transfers have been made all the same.
        """
        summary = self.ctx.summary
        why: Refusal | None
        try:
            count = await self._deletable(deletions)
            why = self._refusal(count, source_count)
        except SpoolError as exc:
            count, why = deletions.count, Refusal(str(exc))
        if not count:
            return
        if why is not None:
            summary.refused_deletes = count
            self.ctx.reporter.refused(why)
            return
        batch: list[Doomed] = []
        try:
            async with contextlib.aclosing(deletions.batches(DELETE_BATCH)) as batches:
                async for doomed in batches:
                    batch += (d for d in doomed if not self.ctx.protects(d.rel))
                    while len(batch) >= DELETE_BATCH:
                        await self._delete_batch(batch[:DELETE_BATCH])
                        batch = batch[DELETE_BATCH:]
        except SpoolError as exc:  # it was read back once already: hardly ever
            summary.refused_deletes = count - summary.deleted
            self.ctx.reporter.error(f"deleting no more: {exc}")
            return
        if batch:
            await self._delete_batch(batch)

    async def _deletable(self, deletions: DeletionSpool) -> int:
        """How many entries may go: a path the walk skipped keeps its copy."""
        count = 0
        async with contextlib.aclosing(deletions.batches(DELETE_BATCH)) as batches:
            async for doomed in batches:
                count += sum(1 for d in doomed if not self.ctx.protects(d.rel))
        return count

    def _refusal(self, count: int, source_count: int) -> Refusal | None:
        """Why ``count`` deletions must not run, or None when they may."""
        options = self.ctx.options
        failed = self.ctx.summary.failed
        if failed:
            return Refusal(f"{failed} transfer(s) failed")
        if source_count == 0 and not options.force:
            return Refusal("the source holds no files", EMPTY_SOURCE, count)
        limit = options.max_delete
        if limit is not None and count > limit and not options.force:
            text = f"{count} files would go, more than the limit of {limit}"
            return Refusal(text, TOO_MANY, count, limit)
        return None

    async def _delete_batch(self, batch: list[Doomed]) -> None:
        ctx = self.ctx
        dst, dry_run = ctx.dst, ctx.options.dry_run
        error = None
        if not dry_run:
            try:
                if isinstance(dst, Bucket):
                    crt = ctx.crt_for(dst)
                    deleter = crt.delete if crt is not None else dst.storage.delete
                    await deleter([entry.ref for entry in batch])
                    await ctx.call(
                        ctx.state.forget,
                        ctx.state_location(dst),
                        [entry.ref for entry in batch],
                    )
                else:
                    await ctx.call(_unlink_all, [entry.ref for entry in batch])
            except (StorageError, OSError) as exc:
                error = reason(exc)
        for entry in batch:
            event = Event(
                "delete",
                dst.display(entry.rel),
                None,
                entry.size,
                dry_run=dry_run,
                error=error,
                key=entry.ref if isinstance(dst, Bucket) else None,
            )
            if error is None:
                ctx.summary.deleted += 1
            else:
                ctx.summary.failed += 1
            ctx.reporter.event(event)


class Cleanup:
    """What interrupted runs left at the destination; ``written`` hears of each key uploaded."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._stale_uploads: dict[str, datetime] = {}
        self._rewritten: set[str] = set()  # keys with a stale upload that this run rewrote

    async def find_stale_uploads(self, begun: datetime) -> None:
        """Note the destination's incomplete uploads begun before this run."""
        dst = self.ctx.dst
        if not isinstance(dst, Bucket) or not dst.storage.features.incomplete_uploads:
            return
        storage = dst.storage
        crt = self.ctx.crt_for(dst)
        finder = crt.incomplete_uploads if crt is not None else storage.incomplete_uploads
        self._stale_uploads = await finder(dst.list_prefix, begun)

    def written(self, key: str) -> None:
        if key in self._stale_uploads:
            self._rewritten.add(key)  # its interrupted upload is now just litter

    async def clean_up(self, begun: datetime, leftovers: list[str]) -> None:
        """Abort the stale uploads and remove the partial downloads (``leftovers``)."""
        if self.ctx.options.dry_run:
            return
        dst = self.ctx.dst
        if isinstance(dst, Bucket) and dst.storage.features.incomplete_uploads:
            await dst.storage.abort_marked_uploads(dst.list_prefix)
        if self._stale_uploads and isinstance(dst, Bucket):
            storage = dst.storage
            old = begun - STALE_UPLOAD
            keys = {
                key
                for key, initiated in self._stale_uploads.items()
                if key in self._rewritten or initiated < old
            }
            if keys:
                await storage.abort_incomplete_uploads(dst.list_prefix, begun, keys)
        if leftovers:
            await self.ctx.call(_unlink_all, leftovers)


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

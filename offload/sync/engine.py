"""One sync run, in order: march, decide and transfer, then (maybe) delete, then clean up.

The parts each do one job (see ``context``): ``march`` merges the two sorted
listings into pairs, a batch at a time; ``decide`` picks what to transfer
and ``transfer`` runs it, at most ``jobs`` at once, while the march goes on;
``delete`` runs once every transfer has settled, and then the leftovers of
interrupted runs are cleaned up. A run never raises for one file: a failure
is counted and reported (``Summary``), and a listing it cannot trust stops it
(``SyncError``) before anything is deleted.

Safety, in order of what could go wrong:

- a dry run reports what would happen and writes nothing: no object, no
  file, no folder, no cache entry (past 10,000 deletions to report, the
  list waits in an unnamed temporary file outside both sides, as in any run);
- an upload is one PUT, or a multipart upload aborted on failure; a download
  goes to a ``.offload-partial-*`` file renamed into place; an interrupted
  run's leftovers are cleaned up by the next run (``delete``);
- deletions run only after every transfer succeeded, and only past the
  guards of ``delete``.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Executor
from datetime import UTC, datetime

from offload.storage.base import FastClient
from offload.sync import march
from offload.sync.context import RunContext, SyncOptions
from offload.sync.decide import Decider, SourcePair
from offload.sync.delete import Cleanup, Deleter
from offload.sync.locations import Bucket, Location
from offload.sync.report import Reporter, Summary
from offload.sync.spool import DeletionSpool, Doomed
from offload.sync.state import SyncState
from offload.sync.transfer import Transfers


class SyncRun:
    """``src`` -> ``dst`` once; ``run()`` returns the summary (and never raises for a file).

    ``summary``: the one to count into as the run goes (a status page may read
    it meanwhile); a new one by default.
    """

    def __init__(
        self,
        src: Location,
        dst: Location,
        options: SyncOptions,
        reporter: Reporter,
        state: SyncState,
        executor: Executor,
        *,
        summary: Summary | None = None,
    ) -> None:
        if summary is None:
            summary = Summary(dry_run=options.dry_run)
        self.ctx = ctx = RunContext(src, dst, options, reporter, state, executor, summary)
        self.march = march.March(ctx)
        self.cleanup = Cleanup(ctx)
        self.transfers = Transfers(ctx, written=self.cleanup.written)
        self.decider = Decider(ctx, self.transfers)
        self.deleter = Deleter(ctx)

    @property
    def summary(self) -> Summary:
        return self.ctx.summary

    async def run(self) -> Summary:
        ctx, options = self.ctx, self.ctx.options
        started = time.monotonic()
        begun = datetime.now(UTC)
        ctx.crt = await ctx.call(self._crt_clients)
        deletions = DeletionSpool(ctx.call)
        batch: list[SourcePair] = []
        source_count = 0
        try:
            await self.cleanup.find_stale_uploads(begun)
            try:
                async with contextlib.aclosing(self.march.pairs()) as pairs:
                    async for chunk in pairs:
                        for s, d in chunk:
                            if s is None:
                                assert d is not None
                                if options.delete:
                                    if not deletions:
                                        self.deleter.warm_up_client()
                                    await deletions.add(Doomed(d.rel, d.side.size, d.ref))
                                continue
                            source_count += 1
                            batch.append((s, d))
                        if len(batch) >= march.BATCH:
                            await self.decider.decide(batch)
                            batch = []
                await self.decider.decide(batch)
            finally:
                await ctx.settle()
            self.march.drain_warnings()
            if deletions:
                await self.deleter.delete(deletions, source_count)
            await self.cleanup.clean_up(begun, self.march.leftovers)
        finally:
            await deletions.close()
            await self._close_crt_clients()
        await ctx.flush_known(0)
        if ctx.state.problem:
            ctx.reporter.warning(ctx.state.problem)
        ctx.summary.seconds = time.monotonic() - started
        return ctx.summary

    def _crt_clients(self) -> dict[int, FastClient | None]:
        """awscrt clients for the bucket sides (blocking: credentials may come from
        files or an instance's metadata service)."""
        ctx = self.ctx
        return {
            id(side): side.storage.fast_client(ctx.options.jobs)
            for side in (ctx.src, ctx.dst)
            if isinstance(side, Bucket)
            and ctx.options.use_crt
            and side.storage.features.fast_client
        }

    async def _close_crt_clients(self) -> None:
        """Shut the awscrt clients down once every request has settled."""
        crt, self.ctx.crt = self.ctx.crt, {}
        for putter in crt.values():
            if putter is not None:
                await putter.close()

"""Background sync runs started by the CMS (``POST /_offload/{site}/sync``).

One run per site at a time, across every worker and host sharing the manifest:
asking again while one runs, anywhere, gets that run. The run goes on in the
process that started it, which keeps its live record here (counts, the last
failures and warnings) and writes it to the manifest database every couple of
seconds (a heartbeat) and at its end, so ``GET /_offload/{site}/sync/{id}``
answers on every host. A running run whose heartbeat stops for STALE_AFTER
seconds (its process was killed) is marked failed by the next start. The
database keeps the last KEEP_FINISHED finished runs of each site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from offload.config.settings import Site
from offload.errors import ExitCode, OffloadError
from offload.manifest import Manifest, ManifestError, SyncRunRecord
from offload.sync.report import Event, Refusal, Reporter, Summary
from offload.sync.runner import SyncJob, run_sync

log = logging.getLogger(__name__)

Run = Callable[..., Awaitable[Any]]
#: Wraps a run's reporter for the run's length (a context manager giving the one to use).
Around = Callable[[Reporter], AbstractAsyncContextManager[Reporter]]

#: Finished runs remembered per site.
KEEP_FINISHED = 20
#: Failures and warnings remembered per run.
KEEP_MESSAGES = 50
#: Seconds between two writes of a running run's record.
HEARTBEAT = 2.0
#: A running run not written for this long belongs to a process that is gone.
STALE_AFTER = 60.0


def this_host() -> str:
    """Who runs a run: the host name and process id (shown, never relied upon)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RunRecord:
    id: str
    site: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    status: str = "running"  # running | succeeded | failed
    summary: Summary = field(default_factory=Summary)
    messages: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_MESSAGES))
    task: asyncio.Task[None] | None = None
    #: The exit code ``offload sync`` would have left with; None while running.
    exit_code: int | None = None

    def stored(self, host: str) -> SyncRunRecord:
        """The record as the manifest database keeps it."""
        s = self.summary
        return SyncRunRecord(
            id=self.id,
            site=self.site,
            host=host,
            status=self.status,
            started=self.started,
            finished=self.finished,
            heartbeat=time.time(),
            exit_code=self.exit_code,
            counts={
                "transferred": s.transferred,
                "bytes": s.bytes,
                "deleted": s.deleted,
                "failed": s.failed,
                "warnings": s.warnings,
            },
            messages=list(self.messages),
        )

    def as_json(self) -> dict[str, Any]:
        return run_json(self.stored(""))


def run_json(record: SyncRunRecord) -> dict[str, Any]:
    """What ``GET /_offload/{site}/sync/{id}`` answers."""
    counts = record.counts
    return {
        "id": record.id,
        "site": record.site,
        "status": record.status,
        "started": record.started,
        "finished": record.finished,
        "transferred": counts.get("transferred", 0),
        "bytes": counts.get("bytes", 0),
        "deleted": counts.get("deleted", 0),
        "failed": counts.get("failed", 0),
        "warnings": counts.get("warnings", 0),
        "exit_code": record.exit_code,
        "messages": list(record.messages),
    }


class RecordingReporter(Reporter):
    """Keeps the run's failures and warnings for the status endpoint; prints nothing.

    The counts are in the record's ``Summary``, which ``run_sync`` counts into as it goes.
    """

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def event(self, event: Event) -> None:
        if not event.ok:
            self.record.messages.append(f"{event.kind} failed: {event.source}: {event.error}")

    def warning(self, text: str) -> None:
        self.record.messages.append(f"warning: {text}")

    def error(self, text: str) -> None:
        self.record.messages.append(f"error: {text}")

    def refused(self, refusal: Refusal) -> None:
        self.error(f"deleting nothing: {refusal}")  # in words that name no flag

    def planned(self, files: int, size: int) -> None:
        pass

    def finished(self, summary: Summary) -> None:
        pass


class SyncRuns:
    """The runs this process started, and every host's runs through the manifest database."""

    def __init__(self, *, host: str | None = None) -> None:
        self.host = host or this_host()
        self._local: dict[str, RunRecord] = {}
        self._finished: deque[str] = deque()
        self._manifest: Manifest | None = None
        self._run_blocking: Run | None = None

    def attach(self, manifest: Manifest, run: Run) -> None:
        """Keep the records in ``manifest`` (calls go through ``run``, the executor)."""
        self._manifest, self._run_blocking = manifest, run

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        assert self._run_blocking is not None, "attach() a manifest first"
        return await self._run_blocking(lambda: fn(*args, **kwargs))

    def local(self, site: str, run_id: str) -> RunRecord | None:
        """A run this process runs or ran (with its task), else None."""
        record = self._local.get(run_id)
        return record if record is not None and record.site == site else None

    async def recent(self, limit: int = 50) -> list[SyncRunRecord]:
        """Every host's latest runs, newest first (for the status page)."""
        assert self._manifest is not None
        records: list[SyncRunRecord] = await self._call(
            self._manifest.recent_sync_runs, limit=limit
        )
        return [self._fresher(record) for record in records]

    async def get(self, site: str, run_id: str) -> dict[str, Any] | None:
        """A run's JSON, from this process while it runs here, else from the database."""
        record = self.local(site, run_id)
        if record is not None:
            return record.as_json()
        assert self._manifest is not None
        stored = await self._call(self._manifest.get_sync_run, site, run_id)
        return None if stored is None else run_json(stored)

    async def start(
        self, site: Site, job: SyncJob, *, around: Around | None = None
    ) -> tuple[dict[str, Any], bool]:
        """The site's running run (on any host), or a new one of ``job``; whether it is new.

        ``around``: wraps the run's reporter for the run (to purge what it replaces or
        deletes, and delete the variants of what it deletes, when it ends).
        """
        assert self._manifest is not None
        record = RunRecord(secrets.token_hex(8), site.name)
        stored, new = await self._call(
            self._manifest.start_sync_run, record.stored(self.host), stale_after=STALE_AFTER
        )
        if not new:
            return run_json(self._fresher(stored)), False
        self._local[record.id] = record
        record.task = asyncio.ensure_future(self._run(record, job, around))
        return record.as_json(), True

    def _fresher(self, stored: SyncRunRecord) -> SyncRunRecord:
        """This process's live record of a run it runs, else the stored one."""
        record = self._local.get(stored.id)
        return record.stored(self.host) if record is not None else stored

    async def _run(self, record: RunRecord, job: SyncJob, around: Around | None) -> None:
        beat = asyncio.create_task(self._heartbeat(record))
        try:
            reporter: Reporter = RecordingReporter(record)
            if around is None:
                summary = await run_sync(job, reporter, summary=record.summary)
            else:
                async with around(reporter) as wrapped:
                    summary = await run_sync(job, wrapped, summary=record.summary)
            record.exit_code = int(summary.exit_code)
            record.status = "succeeded" if summary.exit_code in (0, 5) else "failed"
        except OffloadError as exc:  # a storage or sync error: the code the CLI would exit with
            record.status = "failed"
            record.exit_code = int(exc.exit_code)
            record.messages.append(f"error: {exc}")
        except asyncio.CancelledError:
            record.status = "failed"
            record.exit_code = int(ExitCode.INTERRUPTED)
            record.messages.append("error: stopped with the server")
            raise
        except Exception as exc:  # recorded for the status page, never a traceback to a client
            log.exception("site %s: sync run %s failed", record.site, record.id)
            record.status = "failed"
            record.exit_code = int(ExitCode.INTERNAL)
            record.messages.append(f"error: internal error: {type(exc).__name__}")
        finally:
            record.finished = time.time()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await asyncio.shield(self._save(record))
            self._forget_old(record.id)
            _log_run(record)

    async def _heartbeat(self, record: RunRecord) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            await self._save(record)

    async def _save(self, record: RunRecord) -> None:
        assert self._manifest is not None
        try:
            await self._call(self._manifest.update_sync_run, record.stored(self.host))
        except ManifestError as exc:  # the next beat tries again; the run goes on
            log.warning("site %s: sync run %s not saved: %s", record.site, record.id, exc)

    def _forget_old(self, run_id: str) -> None:
        """Keep this process's last finished runs in memory (the database keeps its own)."""
        self._finished.append(run_id)
        while len(self._finished) > KEEP_FINISHED:
            self._local.pop(self._finished.popleft(), None)

    async def close(self) -> None:
        tasks = [
            record.task
            for record in self._local.values()
            if record.task is not None and not record.task.done()
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _log_run(record: RunRecord) -> None:
    """One line per sync run: its counts, bytes, duration and outcome."""
    summary = record.summary
    log.info(
        "site %s: sync run %s %s (exit %s): %d transferred, %d deleted, %d failed;"
        " %d bytes in %.1f s",
        record.site,
        record.id,
        record.status,
        record.exit_code,
        summary.transferred,
        summary.deleted,
        summary.failed,
        summary.bytes,
        summary.seconds,
        extra={
            "site": record.site,
            "run": record.id,
            "outcome": record.status,
            "exit_code": record.exit_code,
            "transferred": summary.transferred,
            "deleted": summary.deleted,
            "failed": summary.failed,
            "bytes": summary.bytes,
            "duration_ms": round(summary.seconds * 1000, 1),
        },
    )

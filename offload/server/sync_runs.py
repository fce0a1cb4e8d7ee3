"""Background sync runs started by the CMS (``POST /_offload/{site}/sync``).

One run per site at a time: asking again while one runs gets that run. Each
run records its progress (counts, the last failures and warnings) where
``GET /_offload/{site}/sync/{id}`` can read it; the last few finished runs of
each site are kept, older ones forgotten, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from offload.errors import ExitCode, OffloadError
from offload.sync.report import Event, Refusal, Reporter, Summary
from offload.sync.runner import SyncJob, run_sync

log = logging.getLogger(__name__)

#: Finished runs remembered per site.
KEEP_FINISHED = 20
#: Failures and warnings remembered per run.
KEEP_MESSAGES = 50


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

    def as_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "id": self.id,
            "site": self.site,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "transferred": s.transferred,
            "bytes": s.bytes,
            "deleted": s.deleted,
            "failed": s.failed,
            "warnings": s.warnings,
            "exit_code": self.exit_code,
            "messages": list(self.messages),
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
    """Every site's runs in this process."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, RunRecord]] = {}
        self._finished: dict[str, deque[str]] = {}

    def running(self, site: str) -> RunRecord | None:
        for record in self._runs.get(site, {}).values():
            if record.status == "running":
                return record
        return None

    def recent(self) -> list[RunRecord]:
        """Every run this worker remembers, newest first (for the status page)."""
        runs = [record for site in self._runs.values() for record in site.values()]
        return sorted(runs, key=lambda record: record.started, reverse=True)

    def get(self, site: str, run_id: str) -> RunRecord | None:
        return self._runs.get(site, {}).get(run_id)

    def start(self, site: str, job: SyncJob) -> tuple[RunRecord, bool]:
        """The site's running run, or a new one of ``job``; whether it is new."""
        current = self.running(site)
        if current is not None:
            return current, False
        record = RunRecord(secrets.token_hex(8), site)
        self._runs.setdefault(site, {})[record.id] = record
        record.task = asyncio.ensure_future(self._run(record, job))
        return record, True

    async def _run(self, record: RunRecord, job: SyncJob) -> None:
        try:
            summary = await run_sync(job, RecordingReporter(record), summary=record.summary)
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
            self._forget_old(record.site, record.id)
            _log_run(record)

    def _forget_old(self, site: str, run_id: str) -> None:
        finished = self._finished.setdefault(site, deque())
        finished.append(run_id)
        while len(finished) > KEEP_FINISHED:
            self._runs[site].pop(finished.popleft(), None)

    async def close(self) -> None:
        tasks = [
            record.task
            for runs in self._runs.values()
            for record in runs.values()
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

"""What the parts of one sync run share, and nothing more.

A run is cut as rclone cuts its engine: ``march`` walks the two listings in
step, ``decide`` picks what to transfer, ``transfer`` moves bytes and
``delete`` removes what only the destination holds. They work on the same
run, so they share its sides, options and output, the counts (``Summary``),
the paths the run skipped (their copies must never be deleted), what the run
learnt for the sync state cache, its awscrt clients, and the background work
to settle before deletions may start. That is this object; each part keeps
the rest of its state to itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from offload.storage import StorageError
from offload.storage.base import FastClient
from offload.sync.compare import DEFAULT
from offload.sync.filters import Filters
from offload.sync.locations import Bucket, Location
from offload.sync.report import Reporter, Summary
from offload.sync.state import Known, SyncState

#: State cache entries written at once while a run goes on (memory stays flat).
KNOWN_FLUSH = 2000


class SyncError(StorageError):
    """The run cannot go on (a listing out of order, a source that is not there)."""


@dataclass(frozen=True)
class SyncOptions:
    compare: str = DEFAULT  # DEFAULT | SIZE_ONLY | CHECKSUM | NEWER
    delete: bool = False
    dry_run: bool = False
    #: Deletions past this many are refused unless ``force`` (None: no limit).
    max_delete: int | None = 1000
    #: Delete past ``max_delete``, and from a source that listed nothing.
    force: bool = False
    jobs: int = 64
    filters: Filters = field(default_factory=Filters)
    cache_control: str | None = None
    content_type: str | None = None
    #: awscrt for listings and single PUTs (the server turns it off: its threads
    #: would compete with the origin, and the shared boto3 pool is enough there).
    use_crt: bool = True


class RunContext:
    """One run's shared state (see the module docstring)."""

    def __init__(
        self,
        src: Location,
        dst: Location,
        options: SyncOptions,
        reporter: Reporter,
        state: SyncState,
        executor: Executor,
        summary: Summary,
    ) -> None:
        self.src, self.dst, self.options, self.reporter = src, dst, options, reporter
        self.state = state
        self.executor = executor
        self.summary = summary
        #: awscrt clients for listings, single PUTs and deletions, one per bucket
        #: side (storage/crt.py), keyed by ``id(bucket)``; the engine builds them.
        self.crt: dict[int, FastClient | None] = {}
        self._protected: list[str] = []  # skipped source paths: their copies stay
        self._known: dict[str, list[tuple[str, Known]]] = {}  # cache entries to write
        self._pending: set[asyncio.Future[Any]] = set()

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the run's executor: file, hashing and SQLite calls block."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def crt_for(self, location: Location) -> FastClient | None:
        return self.crt.get(id(location))

    # -- what the run skipped ------------------------------------------------------

    def warn(self, rel: str, text: str) -> None:
        """A path the run skips: counted, reported, and its copy kept from deletion."""
        self._protected.append(rel)
        self.summary.warnings += 1
        self.reporter.warning(text)

    def protects(self, rel: str) -> bool:
        return any(
            rel == p or rel.startswith(p if p.endswith("/") or not p else p + "/")
            for p in self._protected
        )

    # -- the sync state cache ------------------------------------------------------

    @staticmethod
    def state_location(bucket: Bucket) -> str:
        return f"{bucket.endpoint}|{getattr(bucket.storage, 'url', '')}"

    def known_for(self, bucket: Bucket) -> list[tuple[str, Known]]:
        """Where to note what an object's metadata says, to be written to the cache."""
        return self._known.setdefault(self.state_location(bucket), [])

    async def flush_known(self, at_least: int) -> None:
        """Write what was learnt to the state cache once there is this much of it."""
        for location, entries in self._known.items():
            if entries and len(entries) >= at_least:
                self._known[location] = []
                if not self.options.dry_run:
                    await self.call(self.state.store, location, entries)

    # -- background work -----------------------------------------------------------

    def track(self, future: asyncio.Future[Any]) -> None:
        """Work the run must wait for before deleting (transfers, a client warming up)."""
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def reason(exc: BaseException) -> str:
    """A failure as one line: an OSError's own words and file, else the error's text."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)

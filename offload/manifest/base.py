"""The manifest store's contract: what is offloaded, the purge outbox, the sync runs' records.

One interface with two implementations: SQLite (``sqlite.py``, the single-host
default) and PostgreSQL (``postgres.py``, shared by several hosts). One contract
test suite runs on both, so callers never ask which one they hold.

The manifest is a cache of what the bucket already says (each object carries
its source path, hash and attachment id in its metadata), so ``offload
reindex`` can rebuild its files from a listing. The outbox is not: a purge is
written in the same transaction as the change that needs it, so a crash
between the two cannot lose it. Every method blocks: callers on an event loop
run them in the bounded executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from offload.errors import OffloadError

PURGE_KINDS = ("url", "tag", "prefix", "everything")

#: Give-up rows kept for the status page (the total count is kept apart).
GIVE_UPS_KEPT = 1000
#: Changes returned by one ``changes_after`` call.
CHANGES_PER_READ = 10_000
#: Seconds a change stays in the feed before a writer prunes it.
CHANGES_KEPT_FOR = 3600.0
#: Seconds between two prunings of the feed by one store object.
PRUNE_EVERY = 60.0
#: Finished sync runs kept per site.
SYNC_RUNS_KEPT = 20
#: Failures and warnings kept per sync run.
SYNC_MESSAGES_KEPT = 50
#: What a stale run's record says when another takes over.
HOST_STOPPED = "its host stopped"


class ManifestError(OffloadError):
    """The manifest database cannot be opened, read or written (location named, no password)."""


@dataclass(frozen=True)
class ManifestRow:
    site: str
    key: str
    path: str
    version: str | None
    size: int
    sha256: str
    etag: str
    attachment_id: str | None = None
    mtime: float | None = None
    offloaded_at: float = 0.0


@dataclass(frozen=True)
class PurgeItem:
    """One thing to purge at a site's CDN."""

    site: str
    kind: str  # one of PURGE_KINDS
    value: str  # the absolute URL, the tag, the key prefix; "" for everything


@dataclass(frozen=True)
class PurgeEntry:
    """A waiting outbox row."""

    id: int
    item: PurgeItem
    created_at: float  # when the change that caused it was committed
    attempts: int  # failed sends so far
    next_at: float  # not sent before this time
    last_error: str | None


@dataclass(frozen=True)
class PurgeGiveUp:
    """An entry dropped after ``purge_give_up_after`` seconds of failures."""

    item: PurgeItem
    created_at: float
    gave_up_at: float
    attempts: int
    error: str


@dataclass(frozen=True)
class PurgeQueue:
    """What ``offload purge --status`` and the status page show."""

    waiting: int  # entries not yet sent (claimed or not)
    claimed: int  # of which a host is sending now (lease not expired)
    oldest: float | None  # created_at of the oldest waiting entry
    by_site: dict[str, int]  # waiting entries per site
    entries: list[PurgeEntry]  # the first `limit`, by next_at then id
    given_up: int  # give-ups ever recorded (kept rows may be fewer)
    recent_give_ups: list[PurgeGiveUp]  # newest first, at most `limit`


@dataclass
class SyncRunRecord:
    """One background sync run (server/sync_runs.py)."""

    id: str
    site: str
    host: str
    status: str  # running | succeeded | failed
    started: float
    finished: float | None
    heartbeat: float
    exit_code: int | None
    counts: dict[str, int] = field(default_factory=dict)  # transferred, bytes, deleted, ...
    messages: list[str] = field(default_factory=list)  # the last 50 failures and warnings


class TakenWebhooks(Protocol):
    """``offload.server.replays.ReplayCache``'s contract: a signature is taken once."""

    def first_use(self, key: str, until: float, *, now: float | None = None) -> bool: ...
    def taken(self, key: str, *, now: float | None = None) -> bool: ...
    def close(self) -> None: ...


class Manifest(ABC):
    """The store. Every method blocks; every database error is a ManifestError."""

    location: str  # for messages: the SQLite path, or the URL with any password masked
    #: Whether other hosts may write it too (PostgreSQL), so a host must follow the
    #: changes feed even with one worker.
    shared: bool = False

    def shared_replays(self) -> TakenWebhooks | None:
        """Where a shared store keeps the signed webhooks taken by every host, so a
        request replayed to another host is refused there too; None: each host keeps
        its own (``offload.server.replays``)."""
        return None

    # -- files ---------------------------------------------------------------------------

    @abstractmethod
    def record(self, rows: Iterable[ManifestRow], *, purges: Iterable[PurgeItem] = ()) -> None:
        """Upsert rows by (site, key), stamped now unless they carry a time; enqueue
        ``purges`` in the same transaction; note each (site, key) in the changes feed."""

    @abstractmethod
    def remove(self, site: str, keys: Iterable[str], *, purges: Iterable[PurgeItem] = ()) -> int:
        """Drop these keys' rows (how many there were); enqueue ``purges`` in the same
        transaction; note the keys in the changes feed."""

    @abstractmethod
    def replace_site(
        self, site: str, rows: Iterable[ManifestRow], *, before: float | None = None
    ) -> int:
        """Make ``rows`` the site's whole record, in one transaction; how many rows.

        ``before``: keep rows stamped at or after this time (written by webhooks
        while a reindex listed the bucket). A reindex purges nothing and notes
        nothing in the feed: the bucket did not change.
        """

    @abstractmethod
    def key_for(self, site: str, path: str) -> str | None:
        """The newest key offloaded from ``path`` (the one URLs are rewritten to)."""

    @abstractmethod
    def path_for(self, site: str, key: str) -> str | None:
        """The local path ``key`` was offloaded from."""

    @abstractmethod
    def rows(
        self, site: str, *, paths: Sequence[str] = (), attachment_id: str | None = None
    ) -> list[ManifestRow]:
        """Every row of these paths (all versions) and of this attachment, by key."""

    @abstractmethod
    def rows_by_key(self, site: str, keys: Iterable[str]) -> dict[str, ManifestRow]:
        """The rows these keys have, by key (a reindex completes its rows from them)."""

    @abstractmethod
    def totals(self, site: str) -> tuple[int, int]:
        """How many objects the manifest holds for ``site``, and their bytes."""

    @abstractmethod
    def count(self, site: str) -> int:
        """How many objects the manifest holds for ``site``."""

    # -- purge outbox --------------------------------------------------------------------

    @abstractmethod
    def enqueue_purges(self, items: Iterable[PurgeItem], *, not_before: float | None = None) -> int:
        """Add items, due at ``not_before`` (default now), in a transaction of their own;
        how many were added.

        An item equal to one still waiting and not claimed is merged into it, and
        makes it due by then at the latest and as young as this change: a new change
        does not wait out an older one's backoff, nor is it given up for the older's
        age. (``record``/``remove`` enqueue their purges due now, the same way.)
        """

    @abstractmethod
    def claim_purges(
        self, *, limit: int, lease: float, sites: Collection[str] | None = None
    ) -> list[PurgeEntry]:
        """Due entries whose lease is free, oldest first, claimed until now + ``lease``.

        Two hosts never claim the same entry; a host that dies holding a claim
        loses it when the lease ends.
        """

    @abstractmethod
    def release_purges(self, ids: Iterable[int]) -> None:
        """Give back claims not sent (a round out of time): due again, no failure counted."""

    @abstractmethod
    def complete_purges(self, ids: Iterable[int]) -> None:
        """These entries were sent: delete them."""

    @abstractmethod
    def defer_purges(self, ids: Iterable[int], *, until: float, error: str) -> None:
        """A failed send: one more attempt counted, the error kept, retried at ``until``."""

    @abstractmethod
    def give_up_purges(self, ids: Iterable[int], *, error: str) -> None:
        """Move these entries to the give-ups (the newest GIVE_UPS_KEPT rows are kept).

        A give-up follows a failed send, so its attempts count that send too.
        """

    @abstractmethod
    def purge_queue(self, *, site: str | None = None, limit: int = 50) -> PurgeQueue:
        """The outbox as the status page and ``offload purge --status`` show it."""

    # -- changes feed --------------------------------------------------------------------

    @abstractmethod
    def changes_after(self, cursor: int | None) -> tuple[int, list[tuple[str, str]]]:
        """``None``: (the current head, []). Otherwise (new head, the (site, key) pairs
        noted after ``cursor``, at most CHANGES_PER_READ), in the order they were noted."""

    # -- background sync runs ------------------------------------------------------------

    @abstractmethod
    def start_sync_run(
        self, record: SyncRunRecord, *, stale_after: float
    ) -> tuple[SyncRunRecord, bool]:
        """Atomically: the site's live running run and False, or ``record`` stored and True.

        A running run whose heartbeat is older than ``stale_after`` seconds is
        marked failed (HOST_STOPPED) first.
        """

    @abstractmethod
    def update_sync_run(self, record: SyncRunRecord) -> None:
        """Store progress, heartbeat or the finish; keeps SYNC_RUNS_KEPT finished runs a site."""

    @abstractmethod
    def get_sync_run(self, site: str, run_id: str) -> SyncRunRecord | None: ...

    @abstractmethod
    def recent_sync_runs(self, *, limit: int = 50) -> list[SyncRunRecord]:
        """Newest first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store opens again on next use."""


def unique_items(items: Iterable[PurgeItem]) -> list[PurgeItem]:
    """The items in order, each once."""
    return list(dict.fromkeys(items))


def newest_messages(messages: Sequence[str]) -> list[str]:
    return list(messages)[-SYNC_MESSAGES_KEPT:]

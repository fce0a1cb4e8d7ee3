"""The manifest on PostgreSQL: one database that several offload hosts share.

psycopg 3 with psycopg_pool's ``ConnectionPool`` (a well-kept pool that checks
a connection before lending it, so a database restart costs no failed call).
Nothing connects until first use, so an origin that never takes a webhook never
opens a connection; the first use makes one plain connection to apply the
migrations and to report a server that is down or refuses the login as a
ManifestError, then opens the pool, sized by the caller to the threads that call
it. Every method is one transaction: ``with pool.connection()`` commits on
success and rolls back on an error.

Concurrency: files are upserted with ``ON CONFLICT (site, key)``, in key order
so two hosts writing the same rows cannot deadlock; purge claims take rows with
``FOR UPDATE SKIP LOCKED``, so two hosts never claim one entry and neither waits
for the other; a site's sync run is started under a transaction-level advisory
lock on the site. Times are the hosts' clocks (a lease is as good as their
agreement, which NTP keeps to milliseconds). Two hosts enqueueing one purge at
the same instant may both add it: the drain's ``prepare`` merges duplicates.
"""

# ruff: noqa: S608 - SQL is put together from this module's constants; values are bound

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from offload.config.kinds import mask_password, url_password
from offload.manifest import queries
from offload.manifest.base import (
    CHANGES_KEPT_FOR,
    CHANGES_PER_READ,
    GIVE_UPS_KEPT,
    PRUNE_EVERY,
    SYNC_RUNS_KEPT,
    Manifest,
    ManifestError,
    ManifestRow,
    PurgeEntry,
    PurgeItem,
    PurgeQueue,
    SyncRunRecord,
    unique_items,
)
from offload.manifest.migrations import POSTGRES_MIGRATIONS, POSTGRES_VERSION_TABLE, too_new

SCHEMA_VERSION = len(POSTGRES_MIGRATIONS)
#: Connections the pool may open, unless the caller sizes it.
DEFAULT_POOL_SIZE = 10
#: The first key of offload's advisory locks ("of"); the second says which.
LOCK_CLASS = 0x6F66
MIGRATION_LOCK = 0
SYNC_RUN_LOCK_CLASS = LOCK_CLASS + 1

_COLUMNS = "site, key, path, version, size, sha256, etag, attachment_id, mtime, offloaded_at"
_UPSERT = (
    f"INSERT INTO files ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (site, key) DO UPDATE SET path = excluded.path, version = excluded.version, "
    "size = excluded.size, sha256 = excluded.sha256, etag = excluded.etag, "
    "attachment_id = excluded.attachment_id, mtime = excluded.mtime, "
    "offloaded_at = excluded.offloaded_at"
)
_WAITING = (
    "site = %(site)s AND kind = %(kind)s AND value = %(value)s "
    "AND (claimed_until IS NULL OR claimed_until <= %(now)s)"
)
#: A waiting entry of the item is made due by ``due`` at the latest, and as young as now.
_MERGE = (
    "UPDATE purge_outbox SET next_at = least(next_at, %(due)s), "
    "created_at = greatest(created_at, %(now)s) WHERE id = ("
    f"SELECT id FROM purge_outbox WHERE {_WAITING} LIMIT 1 FOR UPDATE SKIP LOCKED)"
)
_ENQUEUE = (
    "INSERT INTO purge_outbox (site, kind, value, created_at, attempts, next_at) "
    "SELECT %(site)s, %(kind)s, %(value)s, %(now)s, 0, %(due)s WHERE NOT EXISTS ("
    f"SELECT 1 FROM purge_outbox WHERE {_WAITING})"
)
_NOTE = "INSERT INTO changes (site, key, noted_at) VALUES (%s, %s, %s)"


class PostgresManifest(Manifest):
    """The database at ``url`` (``postgresql://user[:password]@host[:port]/db``)."""

    shared = True

    def shared_replays(self) -> PostgresReplays:
        return PostgresReplays(self)

    def __init__(
        self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, connect_timeout: float = 10.0
    ) -> None:
        self._url = str(url)
        self.location = mask_password(self._url)
        self._password = url_password(self._url)
        self._pool_size = max(1, pool_size)
        self._timeout = connect_timeout
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._pruned = 0.0

    # -- connections ---------------------------------------------------------------------

    def _scrub(self, exc: BaseException) -> str:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            message = message.replace(self._password, "****")
        return message

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """psycopg errors -> ManifestError naming the masked URL, never the password."""
        try:
            yield
        except psycopg.Error as exc:
            raise ManifestError(
                f"manifest {self.location}: cannot {action}: {self._scrub(exc)}"
            ) from None  # the cause may carry the URL: leave it behind

    def _open(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                timeout = max(2, round(self._timeout))  # libpq's unit and minimum
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=timeout
                ) as connection:
                    self._migrate(connection)
                pool = ConnectionPool(
                    self._url,
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs={"connect_timeout": timeout},
                    timeout=self._timeout,
                    check=ConnectionPool.check_connection,
                    name="offload-manifest",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        """Apply the missing migrations, each in its own transaction under the advisory lock."""
        while True:
            with connection.transaction():
                connection.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, MIGRATION_LOCK)
                )
                connection.execute(POSTGRES_VERSION_TABLE)
                row = connection.execute(
                    "SELECT coalesce(max(version), 0) FROM schema_version"
                ).fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise ManifestError(too_new(self.location, version, SCHEMA_VERSION))
                if version == SCHEMA_VERSION:
                    return
                for statement in POSTGRES_MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                    (version + 1, time.time()),
                )

    @contextmanager
    def _transaction(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        with self._guard(action), self._open().connection() as connection:
            yield connection

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- files ---------------------------------------------------------------------------

    def record(self, rows: Iterable[ManifestRow], *, purges: Iterable[PurgeItem] = ()) -> None:
        now = time.time()
        latest = {(row.site, row.key): queries.row_values(row, now) for row in rows}
        values = [latest[pair] for pair in sorted(latest)]  # key order: no deadlock
        items = unique_items(purges)
        if not values and not items:
            return
        with (
            self._transaction("write") as connection,
            connection.pipeline(),  # one round trip for the rows, the feed and the purges
            connection.cursor() as cursor,
        ):
            if values:
                cursor.executemany(_UPSERT, values)
            self._note(cursor, list(latest), now)
            _enqueue(cursor, items, now, now)

    def remove(self, site: str, keys: Iterable[str], *, purges: Iterable[PurgeItem] = ()) -> int:
        keys = sorted(set(keys))
        now = time.time()
        with self._transaction("write") as connection, connection.cursor() as cursor:
            cursor.execute("DELETE FROM files WHERE site = %s AND key = ANY(%s)", (site, keys))
            removed = cursor.rowcount
            self._note(cursor, [(site, key) for key in keys], now)
            _enqueue(cursor, unique_items(purges), now, now)
        return removed

    def replace_site(
        self, site: str, rows: Iterable[ManifestRow], *, before: float | None = None
    ) -> int:
        now = time.time()
        latest = {(row.site, row.key): queries.row_values(row, now) for row in rows}
        cutoff = now + 1 if before is None else before
        with self._transaction("write") as connection, connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM files WHERE site = %s AND offloaded_at < %s", (site, cutoff)
            )
            if latest:
                cursor.executemany(_UPSERT, [latest[pair] for pair in sorted(latest)])
        return len(latest)

    def _note(self, cursor: psycopg.Cursor[Any], pairs: list[tuple[str, str]], now: float) -> None:
        if pairs:
            cursor.executemany(_NOTE, [(site, key, now) for site, key in pairs])
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            cursor.execute("DELETE FROM changes WHERE noted_at < %s", (now - CHANGES_KEPT_FOR,))

    def _one(self, sql: str, args: Sequence[Any]) -> Any:
        with self._transaction("read") as connection:
            return connection.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._transaction("read") as connection:
            return connection.execute(sql, args).fetchall()

    def key_for(self, site: str, path: str) -> str | None:
        row = self._one(
            "SELECT key FROM files WHERE site = %s AND path = %s "
            "ORDER BY offloaded_at DESC, key LIMIT 1",
            (site, path),
        )
        return row[0] if row else None

    def path_for(self, site: str, key: str) -> str | None:
        row = self._one("SELECT path FROM files WHERE site = %s AND key = %s", (site, key))
        return row[0] if row else None

    def rows(
        self, site: str, *, paths: Sequence[str] = (), attachment_id: str | None = None
    ) -> list[ManifestRow]:
        if not paths and attachment_id is None:
            return []
        found = self._all(
            f"SELECT {_COLUMNS} FROM files WHERE site = %s "
            "AND (path = ANY(%s) OR attachment_id = %s) ORDER BY key",
            (site, list(paths), attachment_id),
        )
        return [ManifestRow(*row) for row in found]

    def rows_by_key(self, site: str, keys: Iterable[str]) -> dict[str, ManifestRow]:
        keys = list(keys)
        found: dict[str, ManifestRow] = {}
        with self._transaction("read") as connection:
            for start in range(0, len(keys), 5000):
                for row in connection.execute(
                    f"SELECT {_COLUMNS} FROM files WHERE site = %s AND key = ANY(%s)",
                    (site, keys[start : start + 5000]),
                ):
                    found[row[1]] = ManifestRow(*row)
        return found

    def totals(self, site: str) -> tuple[int, int]:
        row = self._one(
            "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE site = %s", (site,)
        )
        return int(row[0]), int(row[1])

    def count(self, site: str) -> int:
        return int(self._one("SELECT count(*) FROM files WHERE site = %s", (site,))[0])

    # -- purge outbox --------------------------------------------------------------------

    def enqueue_purges(self, items: Iterable[PurgeItem], *, not_before: float | None = None) -> int:
        items = unique_items(items)
        if not items:
            return 0
        now = time.time()
        with self._transaction("write") as connection, connection.cursor() as cursor:
            return _enqueue(cursor, items, now, now if not_before is None else not_before)

    def release_purges(self, ids: Iterable[int]) -> None:
        with self._transaction("write") as connection:
            connection.execute(
                "UPDATE purge_outbox SET claimed_until = NULL WHERE id = ANY(%s)", (_ids(ids),)
            )

    def claim_purges(
        self, *, limit: int, lease: float, sites: Collection[str] | None = None
    ) -> list[PurgeEntry]:
        now = time.time()
        only = "" if sites is None else "AND site = ANY(%(sites)s)"
        sql = (
            "WITH due AS (SELECT id FROM purge_outbox WHERE next_at <= %(now)s "
            f"AND (claimed_until IS NULL OR claimed_until <= %(now)s) {only} "
            "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            "UPDATE purge_outbox o SET claimed_until = %(until)s FROM due WHERE o.id = due.id "
            "RETURNING o.id, o.site, o.kind, o.value, o.created_at, o.attempts, o.next_at, "
            "o.last_error"
        )
        args = {"now": now, "limit": limit, "until": now + lease, "sites": sorted(sites or ())}
        with self._transaction("write") as connection:
            found = connection.execute(sql, args).fetchall()
        return sorted((queries.entry(row) for row in found), key=lambda entry: entry.id)

    def complete_purges(self, ids: Iterable[int]) -> None:
        with self._transaction("write") as connection:
            connection.execute("DELETE FROM purge_outbox WHERE id = ANY(%s)", (_ids(ids),))

    def defer_purges(self, ids: Iterable[int], *, until: float, error: str) -> None:
        with self._transaction("write") as connection:
            connection.execute(
                "UPDATE purge_outbox SET attempts = attempts + 1, last_error = %s, next_at = %s, "
                "claimed_until = NULL WHERE id = ANY(%s)",
                (error, until, _ids(ids)),
            )

    def give_up_purges(self, ids: Iterable[int], *, error: str) -> None:
        with self._transaction("write") as connection:
            connection.execute(
                "WITH gone AS (DELETE FROM purge_outbox WHERE id = ANY(%(ids)s) RETURNING *), "
                "kept AS (INSERT INTO purge_give_ups (site, kind, value, created_at, gave_up_at, "
                "attempts, error) SELECT site, kind, value, created_at, %(now)s, attempts + 1, "
                "%(error)s FROM gone ORDER BY id RETURNING site) "
                "INSERT INTO purge_counters (site, given_up) SELECT site, count(*) FROM kept "
                "GROUP BY site ON CONFLICT (site) DO UPDATE "
                "SET given_up = purge_counters.given_up + excluded.given_up",
                {"ids": _ids(ids), "now": time.time(), "error": error},
            )
            connection.execute(
                "DELETE FROM purge_give_ups WHERE id <= "
                "(SELECT id FROM purge_give_ups ORDER BY id DESC LIMIT 1 OFFSET %s)",
                (GIVE_UPS_KEPT,),
            )

    def purge_queue(self, *, site: str | None = None, limit: int = 50) -> PurgeQueue:
        now = time.time()
        where = "site = %(site)s" if site is not None else "TRUE"
        args = {"site": site, "now": now, "limit": limit}
        with self._transaction("read") as connection:
            # One snapshot, so the counts agree with each other.
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")

            def fetch(sql: str) -> list[Any]:
                return connection.execute(sql, args).fetchall()

            by_site = dict(
                fetch(f"SELECT site, count(*) FROM purge_outbox WHERE {where} GROUP BY site")
            )
            ((claimed, oldest),) = fetch(
                "SELECT count(*) FILTER (WHERE claimed_until > %(now)s), min(created_at) "
                f"FROM purge_outbox WHERE {where}"
            )
            entries = fetch(
                f"SELECT {queries.ENTRY_COLUMNS} FROM purge_outbox WHERE {where} "
                "ORDER BY next_at, id LIMIT %(limit)s"
            )
            ((given_up,),) = fetch(
                f"SELECT coalesce(sum(given_up), 0) FROM purge_counters WHERE {where}"
            )
            give_ups = fetch(
                f"SELECT {queries.GIVE_UP_COLUMNS} FROM purge_give_ups WHERE {where} "
                "ORDER BY id DESC LIMIT %(limit)s"
            )
        return queries.purge_queue(by_site, claimed, oldest, entries, given_up, give_ups)

    # -- changes feed --------------------------------------------------------------------

    def changes_after(self, cursor: int | None) -> tuple[int, list[tuple[str, str]]]:
        if cursor is None:
            return int(self._one("SELECT coalesce(max(id), 0) FROM changes", ())[0]), []
        found = self._all(
            "SELECT id, site, key FROM changes WHERE id > %s ORDER BY id LIMIT %s",
            (cursor, CHANGES_PER_READ),
        )
        head = found[-1][0] if found else cursor
        return int(head), [(site, key) for _, site, key in found]

    # -- background sync runs ------------------------------------------------------------

    def start_sync_run(
        self, record: SyncRunRecord, *, stale_after: float
    ) -> tuple[SyncRunRecord, bool]:
        now = time.time()
        with self._transaction("write") as connection:
            connection.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (SYNC_RUN_LOCK_CLASS, record.site),
            )
            running = [
                queries.sync_run(row)
                for row in connection.execute(
                    f"SELECT {queries.RUN_COLUMNS} FROM sync_runs "
                    "WHERE site = %s AND status = 'running' ORDER BY started DESC",
                    (record.site,),
                ).fetchall()
            ]
            for run in running:
                if run.heartbeat >= now - stale_after:
                    return run, False
                connection.execute(
                    queries.POSTGRES_UPDATE_RUN,
                    queries.stopped_values(run, now),
                )
            connection.execute(
                queries.POSTGRES_INSERT_RUN,
                queries.run_values(record),
            )
        return record, True

    def update_sync_run(self, record: SyncRunRecord) -> None:
        with self._transaction("write") as connection:
            connection.execute(
                queries.POSTGRES_UPDATE_RUN,
                queries.update_values(record),
            )
            if record.status != "running":
                connection.execute(
                    "DELETE FROM sync_runs WHERE site = %s AND status <> 'running' AND id NOT IN "
                    "(SELECT id FROM sync_runs WHERE site = %s AND status <> 'running' "
                    "ORDER BY started DESC, id DESC LIMIT %s)",
                    (record.site, record.site, SYNC_RUNS_KEPT),
                )

    def get_sync_run(self, site: str, run_id: str) -> SyncRunRecord | None:
        row = self._one(
            f"SELECT {queries.RUN_COLUMNS} FROM sync_runs WHERE site = %s AND id = %s",
            (site, run_id),
        )
        return queries.sync_run(row) if row else None

    def recent_sync_runs(self, *, limit: int = 50) -> list[SyncRunRecord]:
        found = self._all(
            f"SELECT {queries.RUN_COLUMNS} FROM sync_runs ORDER BY started DESC, id DESC LIMIT %s",
            (limit,),
        )
        return [queries.sync_run(row) for row in found]


class PostgresReplays:
    """Signed webhooks taken by any host sharing the database: a request replayed to
    another host is refused there too. The contract of ``offload.server.replays``'
    ReplayCache (whose SQLite file serves one host); expired rows are swept now and then."""

    def __init__(self, manifest: PostgresManifest) -> None:
        self.manifest = manifest
        self._swept = 0.0
        self._lock = threading.Lock()

    def first_use(self, key: str, until: float, *, now: float | None = None) -> bool:
        moment = time.time() if now is None else now
        with self._lock:
            sweep = moment - self._swept >= PRUNE_EVERY
            if sweep:
                self._swept = moment
        with self.manifest._transaction("write") as connection:
            if sweep:
                connection.execute("DELETE FROM webhooks_taken WHERE until <= %s", (moment,))
            taken = connection.execute(
                "INSERT INTO webhooks_taken (key, until) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET until = excluded.until "
                "WHERE webhooks_taken.until <= %s",
                (key, until, moment),
            ).rowcount
        return bool(taken)

    def taken(self, key: str, *, now: float | None = None) -> bool:
        moment = time.time() if now is None else now
        row = self.manifest._one(
            "SELECT 1 FROM webhooks_taken WHERE key = %s AND until > %s", (key, moment)
        )
        return row is not None

    def close(self) -> None:
        """Nothing of its own: the pool is the manifest's to close."""


def _enqueue(cursor: psycopg.Cursor[Any], items: list[PurgeItem], now: float, due: float) -> int:
    """Merge each item into its waiting entry, else add it due at ``due`` (the caller's
    transaction); how many were added. One pipelined batch per statement."""
    if not items:
        return 0
    values = [
        {"site": i.site, "kind": i.kind, "value": i.value, "now": now, "due": due} for i in items
    ]
    cursor.executemany(_MERGE, values)
    cursor.executemany(_ENQUEUE, values)
    return max(cursor.rowcount, 0)


def _ids(ids: Iterable[int]) -> list[int]:
    return [int(i) for i in ids]

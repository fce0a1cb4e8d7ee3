"""The manifest on one SQLite file: the single-host default.

One row per object, keyed by (site, key): with versioning a re-upload under the
same name is a new key and a new row, and the newest row of a path is the one
URLs are rewritten to; older rows stay until the attachment is deleted, so no
object is ever forgotten. SQLite runs in WAL mode, so readers never wait for
the writer, and several worker processes may share the file; every write is
one ``BEGIN IMMEDIATE`` transaction, which is also what makes a purge claim
exclusive between processes. Each thread gets its own connection.
"""

# ruff: noqa: S608 - SQL is put together from this module's constants; values are bound

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

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
from offload.manifest.migrations import SQLITE_MIGRATIONS, SQLITE_VERSION_TABLE, too_new
from offload.storage.sqlitewal import use_wal

SCHEMA_VERSION = len(SQLITE_MIGRATIONS)

_INSERT = (
    "INSERT OR REPLACE INTO files (site, key, path, version, size, sha256, etag, "
    "attachment_id, mtime, offloaded_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_COLUMNS = "site, key, path, version, size, sha256, etag, attachment_id, mtime, offloaded_at"
_IN_JSON = "IN (SELECT value FROM json_each(?))"
_KEYS_PER_QUERY = 5000


class SqliteManifest(Manifest):
    """The SQLite file at ``path``, created with its folder when missing."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        """Nothing is opened here: the file is made on first use, so an origin
        that never takes a webhook never writes one."""
        self.path = Path(path)
        self.location = str(self.path)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[tuple[sqlite3.Connection, threading.RLock]] = []
        self._lock = threading.Lock()
        self._ready = False
        self._pruned = 0.0

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """sqlite3 and OS errors -> ManifestError naming the file, never a traceback."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise ManifestError(f"manifest {self.path}: cannot {action}: {exc}") from exc

    def _connection(self) -> tuple[sqlite3.Connection, threading.RLock]:
        """This thread's connection, and the lock it holds while it uses it (``close``
        takes it before closing: a connection closed under a running statement would
        crash the process)."""
        held = getattr(self._local, "connection", None)
        if held is not None:
            return held
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # explicit transactions below
                check_same_thread=False,  # close() may run on another thread
            )
            held = (connection, threading.RLock())
            self._connections.append(held)
            if not self._ready:
                use_wal(connection, self._busy_timeout)
                self._migrate(connection)
                self._ready = True
        connection.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode
        self._local.connection = held
        return held

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Apply the missing migrations, each in its own BEGIN IMMEDIATE transaction.

        A file from before the schema_version table (PRAGMA user_version 1,
        table ``files``) counts as version 1 and is upgraded in place.
        """
        while True:
            with _transaction(connection):
                version = _version(connection)
                if version > SCHEMA_VERSION:
                    raise ManifestError(too_new(self.location, version, SCHEMA_VERSION))
                if version == SCHEMA_VERSION:
                    return
                for statement in SQLITE_MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version + 1, time.time()),
                )
                connection.execute(f"PRAGMA user_version={version + 1}")

    def close(self) -> None:
        """Close every thread's connection, each once its thread's statement is done."""
        with self._lock:
            held, self._connections = self._connections, []
            self._local = threading.local()
        for connection, busy in held:
            with busy:
                connection.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._guard("write"):
            connection, busy = self._connection()
            with busy, _transaction(connection):
                yield connection

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._guard("read"):
            connection, busy = self._connection()
            with busy:
                yield connection

    # -- files ---------------------------------------------------------------------------

    def record(self, rows: Iterable[ManifestRow], *, purges: Iterable[PurgeItem] = ()) -> None:
        now = time.time()
        listed = list(rows)
        values = [queries.row_values(row, now) for row in listed]
        items = unique_items(purges)
        if not values and not items:
            return
        with self._write() as connection:
            connection.executemany(_INSERT, values)
            self._note(connection, [(row.site, row.key) for row in listed], now)
            _enqueue(connection, items, now, now)

    def remove(self, site: str, keys: Iterable[str], *, purges: Iterable[PurgeItem] = ()) -> int:
        keys = list(keys)
        now = time.time()
        with self._write() as connection:
            cursor = connection.execute(
                f"DELETE FROM files WHERE site = ? AND key {_IN_JSON}", (site, json.dumps(keys))
            )
            removed = cursor.rowcount
            self._note(connection, [(site, key) for key in keys], now)
            _enqueue(connection, unique_items(purges), now, now)
        return removed

    def replace_site(
        self, site: str, rows: Iterable[ManifestRow], *, before: float | None = None
    ) -> int:
        now = time.time()
        values = [queries.row_values(row, now) for row in rows]
        cutoff = now + 1 if before is None else before
        with self._write() as connection:
            connection.execute(
                "DELETE FROM files WHERE site = ? AND offloaded_at < ?", (site, cutoff)
            )
            connection.executemany(_INSERT, values)
        return len(values)

    def _note(
        self, connection: sqlite3.Connection, pairs: list[tuple[str, str]], now: float
    ) -> None:
        """Note changed keys in the feed; prune it now and then."""
        connection.executemany(
            "INSERT INTO changes (site, key, noted_at) VALUES (?, ?, ?)",
            [(site, key, now) for site, key in pairs],
        )
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            connection.execute("DELETE FROM changes WHERE noted_at < ?", (now - CHANGES_KEPT_FOR,))

    def key_for(self, site: str, path: str) -> str | None:
        with self._read() as connection:
            row = connection.execute(
                "SELECT key FROM files WHERE site = ? AND path = ? "
                "ORDER BY offloaded_at DESC, key LIMIT 1",
                (site, path),
            ).fetchone()
        return row[0] if row else None

    def path_for(self, site: str, key: str) -> str | None:
        with self._read() as connection:
            row = connection.execute(
                "SELECT path FROM files WHERE site = ? AND key = ?", (site, key)
            ).fetchone()
        return row[0] if row else None

    def rows(
        self, site: str, *, paths: Sequence[str] = (), attachment_id: str | None = None
    ) -> list[ManifestRow]:
        found: dict[str, ManifestRow] = {}
        with self._read() as connection:
            if paths:
                sql = f"SELECT {_COLUMNS} FROM files WHERE site = ? AND path {_IN_JSON}"
                for row in connection.execute(sql, (site, json.dumps(list(paths)))):
                    found[row[1]] = ManifestRow(*row)
            if attachment_id is not None:
                sql = f"SELECT {_COLUMNS} FROM files WHERE site = ? AND attachment_id = ?"
                for row in connection.execute(sql, (site, attachment_id)):
                    found[row[1]] = ManifestRow(*row)
        return sorted(found.values(), key=lambda row: row.key)

    def rows_by_key(self, site: str, keys: Iterable[str]) -> dict[str, ManifestRow]:
        """Asked in chunks, so a site of a million keys never sends SQLite one
        statement of tens of megabytes."""
        keys = list(keys)
        found: dict[str, ManifestRow] = {}
        sql = f"SELECT {_COLUMNS} FROM files WHERE site = ? AND key {_IN_JSON}"
        with self._read() as connection:
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = json.dumps(keys[start : start + _KEYS_PER_QUERY])
                for row in connection.execute(sql, (site, chunk)):
                    found[row[1]] = ManifestRow(*row)
        return found

    def totals(self, site: str) -> tuple[int, int]:
        with self._read() as connection:
            row = connection.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE site = ?", (site,)
            ).fetchone()
        return int(row[0]), int(row[1])

    def count(self, site: str) -> int:
        with self._read() as connection:
            row = connection.execute(
                "SELECT count(*) FROM files WHERE site = ?", (site,)
            ).fetchone()
        return int(row[0])

    # -- purge outbox --------------------------------------------------------------------

    def enqueue_purges(self, items: Iterable[PurgeItem], *, not_before: float | None = None) -> int:
        items = unique_items(items)
        if not items:
            return 0
        now = time.time()
        with self._write() as connection:
            return _enqueue(connection, items, now, now if not_before is None else not_before)

    def claim_purges(
        self, *, limit: int, lease: float, sites: Collection[str] | None = None
    ) -> list[PurgeEntry]:
        now = time.time()
        where, args = _due(now, sites)
        with self._write() as connection:
            found = connection.execute(
                f"SELECT {queries.ENTRY_COLUMNS} FROM purge_outbox WHERE {where} "
                "ORDER BY id LIMIT ?",
                (*args, limit),
            ).fetchall()
            connection.execute(
                f"UPDATE purge_outbox SET claimed_until = ? WHERE id {_IN_JSON}",
                (now + lease, json.dumps([row[0] for row in found])),
            )
        return [queries.entry(row) for row in found]

    def release_purges(self, ids: Iterable[int]) -> None:
        with self._write() as connection:
            connection.execute(
                f"UPDATE purge_outbox SET claimed_until = NULL WHERE id {_IN_JSON}", (_ids(ids),)
            )

    def complete_purges(self, ids: Iterable[int]) -> None:
        with self._write() as connection:
            connection.execute(f"DELETE FROM purge_outbox WHERE id {_IN_JSON}", (_ids(ids),))

    def defer_purges(self, ids: Iterable[int], *, until: float, error: str) -> None:
        with self._write() as connection:
            connection.execute(
                "UPDATE purge_outbox SET attempts = attempts + 1, last_error = ?, next_at = ?, "
                f"claimed_until = NULL WHERE id {_IN_JSON}",
                (error, until, _ids(ids)),
            )

    def give_up_purges(self, ids: Iterable[int], *, error: str) -> None:
        now, chosen = time.time(), _ids(ids)
        with self._write() as connection:
            connection.execute(
                "INSERT INTO purge_give_ups (site, kind, value, created_at, gave_up_at, "
                "attempts, error) SELECT site, kind, value, created_at, ?, attempts + 1, ? "
                f"FROM purge_outbox WHERE id {_IN_JSON} ORDER BY id",
                (now, error, chosen),
            )
            connection.execute(
                "INSERT INTO purge_counters (site, given_up) SELECT site, count(*) "
                f"FROM purge_outbox WHERE id {_IN_JSON} GROUP BY site "
                "ON CONFLICT (site) DO UPDATE SET given_up = given_up + excluded.given_up",
                (chosen,),
            )
            connection.execute(f"DELETE FROM purge_outbox WHERE id {_IN_JSON}", (chosen,))
            connection.execute(
                "DELETE FROM purge_give_ups WHERE id <= "
                "(SELECT id FROM purge_give_ups ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (GIVE_UPS_KEPT,),
            )

    def purge_queue(self, *, site: str | None = None, limit: int = 50) -> PurgeQueue:
        now = time.time()
        where, args = ("site = ?", (site,)) if site is not None else ("1 = 1", ())
        with self._read() as connection, _snapshot(connection):
            by_site = dict(
                connection.execute(
                    f"SELECT site, count(*) FROM purge_outbox WHERE {where} GROUP BY site", args
                ).fetchall()
            )
            claimed, oldest = connection.execute(
                "SELECT count(*) FILTER (WHERE claimed_until > ?), min(created_at) "
                f"FROM purge_outbox WHERE {where}",
                (now, *args),
            ).fetchone()
            entries = connection.execute(
                f"SELECT {queries.ENTRY_COLUMNS} FROM purge_outbox WHERE {where} "
                "ORDER BY next_at, id LIMIT ?",
                (*args, limit),
            ).fetchall()
            (given_up,) = connection.execute(
                f"SELECT coalesce(sum(given_up), 0) FROM purge_counters WHERE {where}", args
            ).fetchone()
            give_ups = connection.execute(
                f"SELECT {queries.GIVE_UP_COLUMNS} FROM purge_give_ups WHERE {where} "
                "ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return queries.purge_queue(by_site, claimed, oldest, entries, given_up, give_ups)

    # -- changes feed --------------------------------------------------------------------

    def changes_after(self, cursor: int | None) -> tuple[int, list[tuple[str, str]]]:
        with self._read() as connection:
            if cursor is None:
                (head,) = connection.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()
                return int(head), []
            found = connection.execute(
                "SELECT id, site, key FROM changes WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, CHANGES_PER_READ),
            ).fetchall()
        head = found[-1][0] if found else cursor
        return int(head), [(site, key) for _, site, key in found]

    # -- background sync runs ------------------------------------------------------------

    def start_sync_run(
        self, record: SyncRunRecord, *, stale_after: float
    ) -> tuple[SyncRunRecord, bool]:
        now = time.time()
        with self._write() as connection:
            running = [
                queries.sync_run(row)
                for row in connection.execute(
                    f"SELECT {queries.RUN_COLUMNS} FROM sync_runs "
                    "WHERE site = ? AND status = 'running' ORDER BY started DESC",
                    (record.site,),
                )
            ]
            for run in running:
                if run.heartbeat >= now - stale_after:
                    return run, False
                connection.execute(queries.SQLITE_UPDATE_RUN, queries.stopped_values(run, now))
            connection.execute(queries.SQLITE_INSERT_RUN, queries.run_values(record))
        return record, True

    def update_sync_run(self, record: SyncRunRecord) -> None:
        with self._write() as connection:
            connection.execute(queries.SQLITE_UPDATE_RUN, queries.update_values(record))
            if record.status != "running":
                connection.execute(
                    "DELETE FROM sync_runs WHERE site = ? AND status != 'running' AND id NOT IN "
                    "(SELECT id FROM sync_runs WHERE site = ? AND status != 'running' "
                    "ORDER BY started DESC, id DESC LIMIT ?)",
                    (record.site, record.site, SYNC_RUNS_KEPT),
                )

    def get_sync_run(self, site: str, run_id: str) -> SyncRunRecord | None:
        with self._read() as connection:
            row = connection.execute(
                f"SELECT {queries.RUN_COLUMNS} FROM sync_runs WHERE site = ? AND id = ?",
                (site, run_id),
            ).fetchone()
        return queries.sync_run(row) if row else None

    def recent_sync_runs(self, *, limit: int = 50) -> list[SyncRunRecord]:
        with self._read() as connection:
            found = connection.execute(
                f"SELECT {queries.RUN_COLUMNS} FROM sync_runs ORDER BY started DESC, id DESC "
                "LIMIT ?",
                (limit,),
            ).fetchall()
        return [queries.sync_run(row) for row in found]


def _enqueue(connection: sqlite3.Connection, items: list[PurgeItem], now: float, due: float) -> int:
    """Add the items (due at ``due``) not already waiting unclaimed (the caller's
    transaction); how many were added. An item merged into a waiting entry makes it
    due by ``due`` at the latest and as young as this change (see Manifest.enqueue_purges)."""
    added = 0
    for item in items:
        merged = connection.execute(
            "UPDATE purge_outbox SET next_at = min(next_at, ?), created_at = max(created_at, ?) "
            "WHERE id = (SELECT id FROM purge_outbox WHERE site = ? AND kind = ? AND value = ? "
            "AND (claimed_until IS NULL OR claimed_until <= ?) LIMIT 1)",
            (due, now, item.site, item.kind, item.value, now),
        ).rowcount
        if not merged:
            connection.execute(
                "INSERT INTO purge_outbox (site, kind, value, created_at, attempts, next_at) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                (item.site, item.kind, item.value, now, due),
            )
            added += 1
    return added


def _due(now: float, sites: Collection[str] | None) -> tuple[str, tuple[object, ...]]:
    where = "next_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)"
    if sites is None:
        return where, (now, now)
    return f"{where} AND site {_IN_JSON}", (now, now, json.dumps(sorted(sites)))


def _ids(ids: Iterable[int]) -> str:
    return json.dumps([int(i) for i in ids])


def _version(connection: sqlite3.Connection) -> int:
    """The file's schema version: the table's, or PRAGMA user_version for a version-1 file
    (which has no table yet)."""
    connection.execute(SQLITE_VERSION_TABLE)
    (recorded,) = connection.execute(
        "SELECT coalesce(max(version), 0) FROM schema_version"
    ).fetchone()
    (stamped,) = connection.execute("PRAGMA user_version").fetchone()
    return max(int(recorded), int(stamped))


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


@contextmanager
def _snapshot(connection: sqlite3.Connection) -> Iterator[None]:
    """One read transaction, so several counts agree with each other."""
    connection.execute("BEGIN")
    try:
        yield
    finally:
        connection.execute("COMMIT")

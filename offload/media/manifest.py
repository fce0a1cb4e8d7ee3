"""What is offloaded: one SQLite row per object offload put in a bucket.

The manifest answers the rewriter's question (local path -> key) without a
storage request, and tells a deletion which objects an attachment has. It is a
cache of what the bucket already says (each object carries its source path,
hash and attachment id in its metadata), so ``offload reindex`` can rebuild it
from a listing.

One row per object, keyed by (site, key): with versioning a re-upload under the
same name is a new key and a new row, and the newest row of a path is the one
URLs are rewritten to; older rows stay until the attachment is deleted, so no
object is ever forgotten. SQLite runs in WAL mode, so readers never wait for
the writer, and several worker processes may share the file. Every method
blocks: callers on an event loop run them in the bounded executor. Each thread
gets its own connection.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from offload.errors import OffloadError
from offload.storage.sqlitewal import use_wal

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    site TEXT NOT NULL,
    key TEXT NOT NULL,
    path TEXT NOT NULL,
    version TEXT,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    etag TEXT NOT NULL,
    attachment_id TEXT,
    mtime REAL,
    offloaded_at REAL NOT NULL,
    PRIMARY KEY (site, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_path ON files (site, path, offloaded_at);
CREATE INDEX IF NOT EXISTS files_by_attachment ON files (site, attachment_id);
"""

_INSERT = (
    "INSERT OR REPLACE INTO files (site, key, path, version, size, sha256, etag, "
    "attachment_id, mtime, offloaded_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_SELECT_PATHS = (
    "SELECT site, key, path, version, size, sha256, etag, attachment_id, mtime, offloaded_at "
    "FROM files WHERE site = ? AND path IN (SELECT value FROM json_each(?))"
)
_SELECT_ATTACHMENT = (
    "SELECT site, key, path, version, size, sha256, etag, attachment_id, mtime, offloaded_at "
    "FROM files WHERE site = ? AND attachment_id = ?"
)
_SELECT_KEYS = (
    "SELECT site, key, path, version, size, sha256, etag, attachment_id, mtime, offloaded_at "
    "FROM files WHERE site = ? AND key IN (SELECT value FROM json_each(?))"
)
_KEYS_PER_QUERY = 5000


class ManifestError(OffloadError):
    """The manifest file cannot be opened or written."""


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


class Manifest:
    """The SQLite file at ``path``, created with its folder when missing."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        """Nothing is opened here: the file is made on first use, so an origin
        that never takes a webhook never writes one."""
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False

    def _guard(self, action: str) -> _Guard:
        return _Guard(self.path, action)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # explicit transactions below
                check_same_thread=False,  # close() may run on another thread
            )
            self._connections.append(connection)
            if not self._ready:
                use_wal(connection, self._busy_timeout)
                connection.executescript(_SCHEMA)
                connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._ready = True
        connection.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode
        self._local.connection = connection
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    # -- writing ---------------------------------------------------------------------

    def record(self, rows: Iterable[ManifestRow]) -> None:
        """Add or replace rows (by site and key), stamped now unless they carry a time."""
        now = time.time()
        values = [_values(row, now) for row in rows]
        if not values:
            return
        with self._guard("write"):
            connection = self._connection()
            with _transaction(connection):
                connection.executemany(_INSERT, values)

    def remove(self, site: str, keys: Iterable[str]) -> int:
        """Drop these keys' rows; how many there were."""
        keys = list(keys)
        with self._guard("write"):
            connection = self._connection()
            with _transaction(connection):
                cursor = connection.execute(
                    "DELETE FROM files WHERE site = ? AND key IN (SELECT value FROM json_each(?))",
                    (site, json.dumps(keys)),
                )
                removed = cursor.rowcount
        return removed

    def replace_site(
        self, site: str, rows: Iterable[ManifestRow], *, before: float | None = None
    ) -> int:
        """Make ``rows`` the site's whole record, in one transaction; how many rows.

        ``before``: keep rows stamped at or after this time (written by webhooks
        while a reindex listed the bucket).
        """
        now = time.time()
        values = [_values(row, now) for row in rows]
        cutoff = now + 1 if before is None else before
        with self._guard("write"):
            connection = self._connection()
            with _transaction(connection):
                connection.execute(
                    "DELETE FROM files WHERE site = ? AND offloaded_at < ?", (site, cutoff)
                )
                connection.executemany(_INSERT, values)
        return len(values)

    # -- reading ---------------------------------------------------------------------

    def key_for(self, site: str, path: str) -> str | None:
        """The newest key offloaded from ``path`` (the one URLs are rewritten to)."""
        with self._guard("read"):
            row = (
                self._connection()
                .execute(
                    "SELECT key FROM files WHERE site = ? AND path = ? "
                    "ORDER BY offloaded_at DESC, key LIMIT 1",
                    (site, path),
                )
                .fetchone()
            )
        return row[0] if row else None

    def path_for(self, site: str, key: str) -> str | None:
        """The local path ``key`` was offloaded from."""
        with self._guard("read"):
            row = (
                self._connection()
                .execute("SELECT path FROM files WHERE site = ? AND key = ?", (site, key))
                .fetchone()
            )
        return row[0] if row else None

    def rows(
        self,
        site: str,
        *,
        paths: Sequence[str] = (),
        attachment_id: str | None = None,
    ) -> list[ManifestRow]:
        """Every row of these paths (all versions) and of this attachment."""
        found: dict[str, ManifestRow] = {}
        with self._guard("read"):
            connection = self._connection()
            if paths:
                for row in connection.execute(_SELECT_PATHS, (site, json.dumps(list(paths)))):
                    found[row[1]] = ManifestRow(*row)
            if attachment_id is not None:
                for row in connection.execute(_SELECT_ATTACHMENT, (site, attachment_id)):
                    found[row[1]] = ManifestRow(*row)
        return sorted(found.values(), key=lambda row: row.key)

    def rows_by_key(self, site: str, keys: Iterable[str]) -> dict[str, ManifestRow]:
        """The rows these keys have, by key (a reindex completes its rows from them).

        Asked in chunks, so a site of a million keys never sends SQLite one
        statement of tens of megabytes.
        """
        keys = list(keys)
        found: dict[str, ManifestRow] = {}
        with self._guard("read"):
            connection = self._connection()
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = json.dumps(keys[start : start + _KEYS_PER_QUERY])
                for row in connection.execute(_SELECT_KEYS, (site, chunk)):
                    found[row[1]] = ManifestRow(*row)
        return found

    def totals(self, site: str) -> tuple[int, int]:
        """How many objects the manifest holds for ``site``, and their bytes."""
        with self._guard("read"):
            row = (
                self._connection()
                .execute(
                    "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE site = ?", (site,)
                )
                .fetchone()
            )
        return int(row[0]), int(row[1])

    def count(self, site: str) -> int:
        with self._guard("read"):
            row = (
                self._connection()
                .execute("SELECT count(*) FROM files WHERE site = ?", (site,))
                .fetchone()
            )
        return int(row[0])


def _values(row: ManifestRow, now: float) -> tuple[object, ...]:
    return (
        row.site,
        row.key,
        row.path,
        row.version,
        row.size,
        row.sha256,
        row.etag,
        row.attachment_id,
        row.mtime,
        row.offloaded_at or now,
    )


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.connection.execute("COMMIT" if exc_type is None else "ROLLBACK")


class _Guard:
    """sqlite3 and OS errors -> ManifestError naming the file, never a traceback."""

    def __init__(self, path: Path, action: str) -> None:
        self.path, self.action = path, action

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, sqlite3.Error | OSError):
            raise ManifestError(f"manifest {self.path}: cannot {self.action}: {exc}") from exc

"""The schema, as ordered migrations per backend: version N is the first N applied.

Each store applies the missing ones at first use, each in its own transaction
under a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: ``pg_advisory_xact_lock``),
so two hosts starting together do not race, and records each in the
``schema_version`` table. Version 1 is the manifest's first schema: SQLite
files from before the table (``PRAGMA user_version`` 1) are upgraded in place.
A database at a version this code does not know is refused, never written.
"""

from __future__ import annotations

#: Each migration is a list of statements (sqlite3's executescript would commit
#: the migration's transaction before it ran).
Migration = list[str]

SQLITE_MIGRATIONS: list[Migration] = [
    [
        """CREATE TABLE IF NOT EXISTS files (
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
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS files_by_path ON files (site, path, offloaded_at)",
        "CREATE INDEX IF NOT EXISTS files_by_attachment ON files (site, attachment_id)",
    ],
    [
        """CREATE TABLE purge_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            claimed_until REAL)""",
        "CREATE INDEX purge_outbox_due ON purge_outbox (next_at, id)",
        "CREATE INDEX purge_outbox_item ON purge_outbox (site, kind, value)",
        """CREATE TABLE purge_give_ups (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at REAL NOT NULL,
            gave_up_at REAL NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT NOT NULL)""",
        "CREATE INDEX purge_give_ups_by_site ON purge_give_ups (site, id)",
        """CREATE TABLE purge_counters (
            site TEXT PRIMARY KEY, given_up INTEGER NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT NOT NULL,
            key TEXT NOT NULL,
            noted_at REAL NOT NULL)""",
        "CREATE INDEX changes_by_time ON changes (noted_at)",
        """CREATE TABLE sync_runs (
            site TEXT NOT NULL,
            id TEXT NOT NULL,
            host TEXT NOT NULL,
            status TEXT NOT NULL,
            started REAL NOT NULL,
            finished REAL,
            heartbeat REAL NOT NULL,
            exit_code INTEGER,
            counts TEXT NOT NULL,
            messages TEXT NOT NULL,
            PRIMARY KEY (site, id))""",
        "CREATE INDEX sync_runs_by_start ON sync_runs (started)",
    ],
    [
        # The same table as on PostgreSQL, for one schema version on both; one host's
        # webhooks are kept in offload.server.replays' own file, which needs no manifest.
        """CREATE TABLE webhooks_taken (
            key TEXT PRIMARY KEY,
            until REAL NOT NULL) WITHOUT ROWID""",
    ],
]

POSTGRES_MIGRATIONS: list[Migration] = [
    [
        """CREATE TABLE files (
            site TEXT NOT NULL,
            key TEXT NOT NULL,
            path TEXT NOT NULL,
            version TEXT,
            size BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            etag TEXT NOT NULL,
            attachment_id TEXT,
            mtime DOUBLE PRECISION,
            offloaded_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (site, key))""",
        "CREATE INDEX files_by_path ON files (site, path, offloaded_at)",
        "CREATE INDEX files_by_attachment ON files (site, attachment_id)",
    ],
    [
        """CREATE TABLE purge_outbox (
            id BIGSERIAL PRIMARY KEY,
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL,
            last_error TEXT,
            claimed_until DOUBLE PRECISION)""",
        "CREATE INDEX purge_outbox_due ON purge_outbox (next_at, id)",
        "CREATE INDEX purge_outbox_item ON purge_outbox (site, kind, value)",
        """CREATE TABLE purge_give_ups (
            id BIGSERIAL PRIMARY KEY,
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            gave_up_at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT NOT NULL)""",
        "CREATE INDEX purge_give_ups_by_site ON purge_give_ups (site, id)",
        "CREATE TABLE purge_counters (site TEXT PRIMARY KEY, given_up BIGINT NOT NULL)",
        """CREATE TABLE changes (
            id BIGSERIAL PRIMARY KEY,
            site TEXT NOT NULL,
            key TEXT NOT NULL,
            noted_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX changes_by_time ON changes (noted_at)",
        """CREATE TABLE sync_runs (
            site TEXT NOT NULL,
            id TEXT NOT NULL,
            host TEXT NOT NULL,
            status TEXT NOT NULL,
            started DOUBLE PRECISION NOT NULL,
            finished DOUBLE PRECISION,
            heartbeat DOUBLE PRECISION NOT NULL,
            exit_code INTEGER,
            counts TEXT NOT NULL,
            messages TEXT NOT NULL,
            PRIMARY KEY (site, id))""",
        "CREATE INDEX sync_runs_by_start ON sync_runs (started)",
    ],
    [
        # Signed webhooks already taken by any host (offload.server.replays' table, shared).
        """CREATE TABLE webhooks_taken (
            key TEXT PRIMARY KEY,
            until DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX webhooks_taken_until ON webhooks_taken (until)",
    ],
]

#: Made before the first migration, so a version-1 SQLite file has somewhere to record.
SQLITE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
)
POSTGRES_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)

assert len(SQLITE_MIGRATIONS) == len(POSTGRES_MIGRATIONS), "one schema version, two spellings"


def too_new(location: str, found: int, known: int) -> str:
    return (
        f"manifest {location}: schema version {found} is newer than this offload knows "
        f"({known}); upgrade offload before using this database"
    )

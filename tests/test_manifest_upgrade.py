"""A SQLite manifest written by the previous offload (user_version 1) upgrades in place."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from offload.manifest import PurgeItem, open_manifest
from offload.manifest.sqlite import SCHEMA_VERSION

#: The schema of offload/media/manifest.py, as shipped before the schema_version table.
VERSION_1 = """
PRAGMA journal_mode=WAL;
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
PRAGMA user_version=1;
INSERT INTO files VALUES ('blog', 'up/a.jpg', 'a.jpg', NULL, 5, 'x', 'e', '7', NULL, 100.0);
INSERT INTO files VALUES ('blog', 'up/b.jpg', 'b.jpg', 'v1', 6, 'y', 'f', '7', 1.5, 200.0);
"""


def test_a_version_1_file_keeps_its_rows_and_gains_the_new_tables(tmp_path: Path):
    path = tmp_path / "manifest.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executescript(VERSION_1)
    manifest = open_manifest(path)
    try:
        assert manifest.totals("blog") == (2, 11)
        assert [r.key for r in manifest.rows("blog", attachment_id="7")] == ["up/a.jpg", "up/b.jpg"]
        manifest.remove("blog", ["up/a.jpg"], purges=[PurgeItem("blog", "url", "https://c/a")])
        assert manifest.purge_queue().waiting == 1
    finally:
        manifest.close()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        versions = [v for (v,) in connection.execute("SELECT version FROM schema_version")]
        (stamped,) = connection.execute("PRAGMA user_version").fetchone()
    assert versions == list(range(2, SCHEMA_VERSION + 1))
    assert stamped == SCHEMA_VERSION

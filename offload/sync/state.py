"""A local cache of objects' stored metadata, so a re-sync needs no HEAD per object.

A listing gives each object's size, ETag and LastModified but not its
metadata, and the default comparison wants the stored ``mtime``. Asking every
object (one HEAD each) would make a no-op re-sync of 5,000 files take
seconds. offload remembers what it wrote or read: (location, key) -> ETag,
size, stored mtime and hashes. An entry counts only while the listing shows
the same ETag and size, so a change made by anyone else is never hidden: a
mismatch falls back to a HEAD. Losing the file costs HEADs once, nothing more.
The same file holds the notes of multipart uploads in flight (``uploadmarks``).

The file is ``$OFFLOAD_SYNC_STATE``, else ``$XDG_CACHE_HOME/offload/sync-state.sqlite3``
(``~/.cache/...``). Blocking calls: run them in the executor.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from offload.storage import ObjectInfo, objectmeta
from offload.storage.sqlitewal import use_wal
from offload.storage.uploadmarks import default_path

__all__ = ["Known", "SyncState", "default_path", "known_of"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    location TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime TEXT,
    md5 TEXT,
    sha256 TEXT,
    PRIMARY KEY (location, key)
) WITHOUT ROWID;
"""
_LOOKUP = (
    "SELECT key, etag, size, mtime, md5, sha256 FROM objects "
    "WHERE location = ? AND key IN (SELECT value FROM json_each(?))"
)
_STORE = (
    "INSERT OR REPLACE INTO objects (location, key, etag, size, mtime, md5, sha256) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_FORGET = "DELETE FROM objects WHERE location = ? AND key IN (SELECT value FROM json_each(?))"


@dataclass(frozen=True, slots=True)
class Known:
    """What an object's metadata said, valid while its ETag and size are these."""

    etag: str
    size: int
    mtime: str | None = None
    md5: str | None = None
    sha256: str | None = None


def known_of(info: ObjectInfo) -> Known:
    """What an object's stored metadata says (from a HEAD, a GET or a copy's answer)."""
    meta = info.metadata or {}
    return Known(
        info.etag,
        info.size,
        meta.get(objectmeta.MTIME),
        meta.get(objectmeta.MD5),
        meta.get(objectmeta.SHA256),
    )


class SyncState:
    """The cache file; ``None``-safe: if it cannot be opened, every lookup misses."""

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        """``read_only`` (dry runs): never create or write the file, only read it if it is there."""
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self.problem: str | None = None

    def _open(self) -> sqlite3.Connection | None:
        if self._connection is not None or self.path is None or self.problem is not None:
            return self._connection
        try:
            if self.read_only:
                if not self.path.is_file():
                    self.problem = ""  # nothing to read: every lookup misses, quietly
                    return None
                # immutable: no lock and no -shm file is made; writers checkpoint
                # on close, so the main file holds what the last run learnt.
                connection = sqlite3.connect(
                    f"{self.path.absolute().as_uri()}?mode=ro&immutable=1",
                    uri=True,
                    timeout=10,
                    check_same_thread=False,
                )
                self._connection = connection
                return connection
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            use_wal(connection, 10)
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            self.problem = f"the sync state cache {self.path} cannot be used: {exc}"
            return None
        self._connection = connection
        return connection

    def lookup(self, location: str, keys: Sequence[str]) -> dict[str, Known]:
        if not keys:
            return {}
        with self._lock:
            connection = self._open()
            if connection is None:
                return {}
            try:
                rows = connection.execute(_LOOKUP, (location, json.dumps(list(keys)))).fetchall()
            except sqlite3.Error as exc:
                self.problem = f"the sync state cache {self.path} cannot be read: {exc}"
                return {}
        return {row[0]: Known(*row[1:]) for row in rows}

    def store(self, location: str, entries: Iterable[tuple[str, Known]]) -> None:
        values = [(location, key, k.etag, k.size, k.mtime, k.md5, k.sha256) for key, k in entries]
        if values:
            self._write(lambda connection: connection.executemany(_STORE, values))

    def forget(self, location: str, keys: Sequence[str]) -> None:
        if keys:
            self._write(
                lambda connection: connection.execute(_FORGET, (location, json.dumps(list(keys))))
            )

    def _write(self, change: Callable[[sqlite3.Connection], object]) -> None:
        """One transaction; a failure is noted in ``problem``, never raised (it is a cache)."""
        if self.read_only:
            return
        with self._lock:
            connection = self._open()
            if connection is None:
                return
            try:
                with connection:
                    change(connection)
            except sqlite3.Error as exc:
                self.problem = f"the sync state cache {self.path} cannot be written: {exc}"

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                if not self.read_only:
                    with contextlib.suppress(sqlite3.Error):
                        self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._connection.close()
                self._connection = None

"""Signed webhook requests already taken, so that a captured request is taken once.

A signature is valid for ``WEBHOOK_TOLERANCE`` seconds either side of its
timestamp. Uploads and deletions are idempotent, yet a replay still does harm:
a captured multipart upload sent again after the attachment was deleted puts
the deleted photo back in the bucket. So each signature is remembered until its
timestamp can no longer pass, and a second use is refused (409).

The record is a small SQLite file beside the manifest, in WAL mode, so every
worker of ``--workers N`` (and every ``offload serve`` on this host sharing the
folder) sees the others' entries. Its calls block: run them in the executor.
Nothing is kept in memory (a busy site takes thousands of webhooks in a
window), and expired rows are removed as new ones come in, so the file stays
as small as one window's requests.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from offload.storage.sqlitewal import use_wal

#: Seconds SQLite waits for another worker's write before giving up.
BUSY_TIMEOUT = 5.0
#: Expired rows are swept after this many new ones.
SWEEP_EVERY = 256


class ReplayCache:
    """``first_use(key, until)``: True the first time a key is offered before ``until``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._since_sweep = 0

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            use_wal(connection, BUSY_TIMEOUT)
            connection.execute(
                "CREATE TABLE IF NOT EXISTS taken (key TEXT PRIMARY KEY, until REAL NOT NULL)"
                " WITHOUT ROWID"
            )
            self._connection = connection
        return self._connection

    def first_use(self, key: str, until: float, *, now: float | None = None) -> bool:
        """Record ``key`` until ``until`` (Unix seconds); False if it was already there."""
        moment = time.time() if now is None else now
        with self._lock:
            connection = self._open()
            self._sweep(connection, moment)
            taken = connection.execute(
                "INSERT INTO taken (key, until) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET until = excluded.until"
                " WHERE taken.until <= ?",
                (key, until, moment),
            ).rowcount
            return bool(taken)

    def taken(self, key: str, *, now: float | None = None) -> bool:
        """Whether ``key`` is recorded and not yet expired (a peek: records nothing)."""
        moment = time.time() if now is None else now
        with self._lock:
            row = (
                self._open()
                .execute("SELECT 1 FROM taken WHERE key = ? AND until > ?", (key, moment))
                .fetchone()
            )
            return row is not None

    def _sweep(self, connection: sqlite3.Connection, moment: float) -> None:
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return
        self._since_sweep = 0
        connection.execute("DELETE FROM taken WHERE until <= ?", (moment,))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

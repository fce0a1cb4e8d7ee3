"""SQLite files that several processes open at once: WAL mode, switched on without a race.

Switching a new file to WAL takes a lock that SQLite's busy timeout does not
wait for: when two connections (of two processes, or of one) open a fresh
file at the same moment, one of them gets "database is locked" at once. The
switch is retried here until the connection's busy timeout has passed; on a
file already in WAL mode the pragma only reads the mode.
"""

from __future__ import annotations

import sqlite3
import time


def use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Put the connection's file in WAL mode, waiting up to ``timeout`` seconds for others."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)

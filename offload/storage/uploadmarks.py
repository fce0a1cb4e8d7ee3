"""A durable note of each multipart upload offload starts, so a later run can abort it.

An upload cut short by a kill leaves its parts in the bucket, invisible and
billed. ListMultipartUploads says which uploads are incomplete but not who
began them: it returns no metadata. So offload notes each one itself, in a
table of the sync state file: the note is written before CreateMultipartUpload
is sent, the upload's id is added before its first part goes, and the note is
removed once the upload is completed or aborted. A note still there whose
writer is no longer running is a leftover (``leftovers``), which the next
sync's cleanup aborts, however recent. Uploads begun by other tools have no
note and are left to their own rules.

A writer is named by its host, boot, process id and the process's start time
(Linux's ``/proc``), so a process id reused after a kill, or a reboot, is not
taken for the writer still running. A note from another host (a state file on
a shared disk) cannot be checked: it counts as a leftover only after
``FOREIGN_AFTER``. Like the rest of the state file this is a cache: if it
cannot be used, uploads go on unnoted (``problem`` says why). Every method
blocks (SQLite): callers on an event loop run them in the executor.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from offload.storage.sqlitewal import use_wal

T = TypeVar("T")

#: A note from another host counts as a leftover after this many seconds.
FOREIGN_AFTER = 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS multipart_uploads (
    mark INTEGER PRIMARY KEY,
    place TEXT NOT NULL,
    key TEXT NOT NULL,
    upload_id TEXT,
    writer TEXT NOT NULL,
    begun REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS multipart_uploads_by_place ON multipart_uploads (place, key);
"""
_LIST = (
    "SELECT mark, key, upload_id, writer, begun FROM multipart_uploads "
    "WHERE place = ? AND substr(key, 1, length(?)) = ?"
)

_FORGET = "DELETE FROM multipart_uploads WHERE mark = ?"


@dataclass(frozen=True)
class Leftover:
    """A noted upload whose writer is gone: abort ``upload_id`` (None: the writer was
    killed before CreateMultipartUpload answered; any upload of ``key`` begun since
    ``begun`` is its)."""

    mark: int
    key: str
    upload_id: str | None
    begun: float


def default_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The sync state file: ``$OFFLOAD_SYNC_STATE``, else ``$XDG_CACHE_HOME/offload/...``."""
    if environ.get("OFFLOAD_SYNC_STATE"):
        return Path(environ["OFFLOAD_SYNC_STATE"])
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "offload" / "sync-state.sqlite3"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot, or "" where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the name


def writer_of(pid: int) -> str:
    """The name of process ``pid`` of this host, as notes record it."""
    return f"{socket.gethostname()}|{_boot_id()}|{pid}|{_start_time(pid)}"


def running(writer: str) -> bool | None:
    """Whether the writer of a note still runs; None when this host cannot tell."""
    host, boot, pid_text, started = [*writer.split("|"), "", "", ""][:4]
    if host != socket.gethostname():
        return None
    if boot != _boot_id():
        return False  # rebooted since
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it runs
    except (ValueError, OSError):
        return False
    return _start_time(pid) == started  # a reused id is another process


class UploadMarks:
    """The notes of one state file; safe to share between threads."""

    def __init__(self, path: Path, *, writer: str | None = None) -> None:
        """``writer``: whom new notes name (``writer_of``); this process by default."""
        self.path = path
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._writer = writer or writer_of(os.getpid())

    def _use(self, work: Callable[[sqlite3.Connection], T], default: T) -> T:
        """One transaction; a failure is noted in ``problem`` and gives ``default``."""
        with self._lock:
            if self._connection is None and self.problem is None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    connection = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
                    use_wal(connection, 10)
                    connection.execute("PRAGMA synchronous=NORMAL")
                    connection.executescript(_SCHEMA)
                    self._connection = connection
                except (OSError, sqlite3.Error) as exc:
                    self.problem = f"the upload notes in {self.path} cannot be used: {exc}"
            if self._connection is None:
                return default
            try:
                with self._connection:
                    return work(self._connection)
            except sqlite3.Error as exc:
                self.problem = f"the upload notes in {self.path} cannot be written: {exc}"
                return default

    def begin(self, place: str, key: str) -> int | None:
        """Note an upload about to be created; its mark, or None when nothing could be noted."""

        def insert(connection: sqlite3.Connection) -> int | None:
            cursor = connection.execute(
                "INSERT INTO multipart_uploads (place, key, writer, begun) VALUES (?, ?, ?, ?)",
                (place, key, self._writer, time.time()),
            )
            return cursor.lastrowid

        return self._use(insert, None)

    def started(self, mark: int | None, upload_id: str) -> None:
        """Add the upload's id to its note (before its first part is sent)."""
        if mark is not None:
            self._use(
                lambda c: c.execute(
                    "UPDATE multipart_uploads SET upload_id = ? WHERE mark = ?", (upload_id, mark)
                ),
                None,
            )

    def end(self, mark: int | None) -> None:
        """The upload is completed or aborted: nothing is left to clean up."""
        if mark is not None:
            self.forget([mark])

    def forget(self, marks: Iterable[int]) -> None:
        rows = [(mark,) for mark in marks]
        if rows:
            self._use(
                lambda c: c.executemany("DELETE FROM multipart_uploads WHERE mark = ?", rows), None
            )

    def leftovers(self, place: str, prefix: str) -> list[Leftover]:
        """Noted uploads under ``prefix`` whose writers are no longer running."""
        rows: list[tuple[int, str, str | None, str, float]] = self._use(
            lambda c: c.execute(_LIST, (place, prefix, prefix)).fetchall(), []
        )
        found: list[Leftover] = []
        alive: dict[str, bool | None] = {self._writer: True}  # ours: still in flight
        now = time.time()
        for mark, key, upload_id, writer, begun in rows:
            if writer not in alive:
                alive[writer] = running(writer)
            state = alive[writer]
            if state is False or (state is None and begun < now - FOREIGN_AFTER):
                found.append(Leftover(mark, key, upload_id, begun))
        return found

    def upload_ids(self, place: str, prefix: str) -> set[str]:
        """The ids of every noted upload under ``prefix``, its writer running or not."""
        rows: list[tuple[int, str, str | None, str, float]] = self._use(
            lambda c: c.execute(_LIST, (place, prefix, prefix)).fetchall(), []
        )
        return {row[2] for row in rows if row[2] is not None}

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

"""What a sync says: aws-style lines, or JSON lines, a progress bar, a summary.

Lines follow ``aws s3 sync``: ``upload: photos/a.jpg to s3://media-example/a.jpg``,
``download: ...``, ``copy: ...``, ``delete: s3://media-example/old.jpg``, each prefixed
``(dryrun) `` under ``--dry-run``; failures (``upload failed: ... <why>``) and
warnings go to stderr. ``--quiet`` prints nothing (the exit code tells),
``--only-show-errors`` only failures and warnings. ``--json`` prints one JSON
object per action and a closing ``{"summary": ...}``. A progress bar (files,
bytes, rate, ETA) is drawn on stderr only when it is a terminal.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TextIO

from offload.errors import ExitCode


@dataclass(frozen=True)
class Event:
    """One action: an upload, download, copy or delete, done or only planned."""

    kind: str  # upload | download | copy | delete
    source: str
    destination: str | None
    size: int
    dry_run: bool = False
    error: str | None = None
    #: The destination object's key, when the destination is a bucket.
    key: str | None = None
    #: The destination held an older copy that this transfer replaced.
    replaced: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def changed_object(self) -> str | None:
        """The bucket key this done (not dry-run) action deleted or replaced, else None:
        what a CDN must drop, and whose variants are stale."""
        if not self.ok or self.dry_run or self.key is None:
            return None
        return self.key if self.kind == "delete" or self.replaced else None


#: Refusal guards that whoever started the run may lift (the command line has a flag for each).
EMPTY_SOURCE = "empty-source"
TOO_MANY = "too-many"


@dataclass(frozen=True)
class Refusal:
    """Why a run deletes nothing, in words that name no command-line flag.

    ``guard`` (``EMPTY_SOURCE``, ``TOO_MANY``) says which guard refused, with its
    numbers, so that the command line can say how to lift it; the server,
    whose callers have no flags, shows ``text`` as it is.
    """

    text: str
    guard: str | None = None
    count: int = 0
    limit: int | None = None

    def __str__(self) -> str:
        return self.text


@dataclass
class Summary:
    transferred: int = 0
    bytes: int = 0
    deleted: int = 0
    failed: int = 0
    warnings: int = 0
    refused_deletes: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        if self.failed or self.refused_deletes:
            return ExitCode.FAILED
        if self.warnings:
            return ExitCode.WARNINGS
        return ExitCode.OK

    def add(self, other: Summary) -> None:
        for name in ("transferred", "bytes", "deleted", "failed", "warnings", "refused_deletes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        for kind, count in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + count


def _line(event: Event) -> str:
    if event.kind == "delete":
        text = f"delete: {event.source}"
    else:
        text = f"{event.kind}: {event.source} to {event.destination}"
    return f"(dryrun) {text}" if event.dry_run else text


class Reporter:
    """Text output as aws prints it; thread-safe (the walk warns from the pool)."""

    def __init__(
        self,
        stdout: TextIO,
        stderr: TextIO,
        *,
        quiet: bool = False,
        only_errors: bool = False,
        progress: bool = False,
        words: Callable[[Refusal], str] = str,
    ) -> None:
        """``words`` says a refusal to delete (the command line names its flags there)."""
        self.stdout, self.stderr = stdout, stderr
        self.quiet, self.only_errors = quiet, only_errors
        self._words = words
        self._lock = threading.Lock()
        self._bar = _Progress(stderr) if progress and not quiet else None

    def event(self, event: Event) -> None:
        with self._lock:
            if self._bar:
                self._bar.clear()
            if not event.ok:
                if not self.quiet:
                    where = (
                        event.source
                        if event.kind == "delete"
                        else (f"{event.source} to {event.destination}")
                    )
                    print(f"{event.kind} failed: {where} {event.error}", file=self.stderr)
            elif not (self.quiet or self.only_errors):
                print(_line(event), file=self.stdout)
            if self._bar:
                self._bar.done(event)

    def warning(self, text: str) -> None:
        with self._lock:
            if self._bar:
                self._bar.clear()
            if not self.quiet:
                print(f"warning: {text}", file=self.stderr)

    def error(self, text: str) -> None:
        with self._lock:
            if self._bar:
                self._bar.clear()
            if not self.quiet:
                print(f"error: {text}", file=self.stderr)

    def refused(self, refusal: Refusal) -> None:
        """Deletions that were not made, and why."""
        self.error(f"deleting nothing: {self._words(refusal)}")

    def planned(self, files: int, size: int) -> None:
        if self._bar:
            with self._lock:
                self._bar.plan(files, size)

    def finished(self, summary: Summary) -> None:
        with self._lock:
            if self._bar:
                self._bar.clear()
        for stream in (self.stdout, self.stderr):
            stream.flush()


class Forwarding(Reporter):
    """Passes everything to ``inner``: the base of reporters that note what a run did."""

    def __init__(self, inner: Reporter) -> None:
        # Not Reporter.__init__: this one prints nothing itself.
        self.inner = inner

    def event(self, event: Event) -> None:
        self.inner.event(event)

    def warning(self, text: str) -> None:
        self.inner.warning(text)

    def error(self, text: str) -> None:
        self.inner.error(text)

    def refused(self, refusal: Refusal) -> None:
        self.inner.refused(refusal)

    def planned(self, files: int, size: int) -> None:
        self.inner.planned(files, size)

    def finished(self, summary: Summary) -> None:
        self.inner.finished(summary)


class JsonReporter(Reporter):
    """``--json``: one object per action on stdout, then the summary."""

    def __init__(
        self, stdout: TextIO, stderr: TextIO, *, words: Callable[[Refusal], str] = str
    ) -> None:
        super().__init__(stdout, stderr, words=words)

    def event(self, event: Event) -> None:
        record = {
            "action": event.kind,
            "source": event.source,
            "destination": event.destination,
            "size": event.size,
            "dryrun": event.dry_run,
            "status": "ok" if event.ok else "failed",
        }
        if event.error:
            record["error"] = event.error
        with self._lock:
            print(json.dumps(record), file=self.stdout)

    def warning(self, text: str) -> None:
        with self._lock:
            print(json.dumps({"warning": text}), file=self.stdout)

    def error(self, text: str) -> None:
        with self._lock:
            print(json.dumps({"error": text}), file=self.stdout)

    def finished(self, summary: Summary) -> None:
        data = asdict(summary)
        data["seconds"] = round(summary.seconds, 3)
        data["exit_code"] = int(summary.exit_code)
        with self._lock:
            print(json.dumps({"summary": data}), file=self.stdout)
            self.stdout.flush()


class _Progress:
    """One line on a terminal: files, bytes, rate and ETA, redrawn at most 5 times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.files = self.total_files = self.bytes = self.total_bytes = 0
        self._drawn = 0.0
        self._width = 0

    def plan(self, files: int, size: int) -> None:
        self.total_files += files
        self.total_bytes += size

    def done(self, event: Event) -> None:
        if event.kind != "delete":
            self.files += 1
            self.bytes += event.size
        now = time.monotonic()
        if now - self._drawn >= 0.2:
            self._drawn = now
            self.draw(now)

    def draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        rate = self.bytes / elapsed
        left = max(self.total_bytes - self.bytes, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        text = (
            f"files {self.files}/{self.total_files}  {_size(self.bytes)}/{_size(self.total_bytes)}"
            f"  {_size(rate)}/s  ETA {eta}"
        )
        self._width = max(self._width, len(text))
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()

    def clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1024
    return f"{count:.1f} GiB"

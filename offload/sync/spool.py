"""What a run will delete, kept in order until every transfer is done.

Deletions wait for the transfers (one failed transfer and nothing is
deleted), and ``--max-delete`` needs their number first, so a run must keep
them meanwhile. A bucket with millions of stale objects would make that list
the largest thing in memory: past ``in_memory`` entries the rest goes to an
unnamed temporary file, ``write_every`` lines at a time, and is read back in
the same order. The file lives in the system's temporary folder (never in
either side of the sync) and is gone when the spool is closed, or when the
process dies. Every file call goes through ``run`` (the run's executor).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import IO, Any, NamedTuple

from offload.errors import OffloadError

#: Entries kept in memory before the rest goes to the temporary file.
IN_MEMORY = 10_000
#: Entries written to the file at once.
WRITE_EVERY = 1_000


class SpoolError(OffloadError):
    """The temporary file failed (a full or read-only ``TMPDIR``): the run deletes nothing more."""


class Doomed(NamedTuple):
    """One object or file to delete: its path relative to the root, size, and key or path."""

    rel: str
    size: int
    ref: str


class DeletionSpool:
    """Entries in the order added: the first ``in_memory`` in a list, the rest in a file."""

    def __init__(
        self,
        run: Callable[..., Awaitable[Any]],
        *,
        in_memory: int | None = None,
        write_every: int | None = None,
    ) -> None:
        self._run = run
        self._in_memory = IN_MEMORY if in_memory is None else in_memory
        self._write_every = WRITE_EVERY if write_every is None else write_every
        self._memory: list[Doomed] = []
        self._pending: list[Doomed] = []  # past the bound, not yet written
        self._file: IO[str] | None = None
        self.count = 0
        #: Set when the file failed: from then on entries are only counted, and
        #: the run must delete nothing (it no longer knows every entry).
        self.problem: SpoolError | None = None

    def __bool__(self) -> bool:
        return self.count > 0

    async def add(self, doomed: Doomed) -> None:
        self.count += 1
        if self.problem is not None:
            return
        if not self._pending and self._file is None and len(self._memory) < self._in_memory:
            self._memory.append(doomed)
            return
        self._pending.append(doomed)
        if len(self._pending) >= self._write_every:
            try:
                await self._write()
            except SpoolError as exc:
                self.problem = exc
                self._pending = []

    async def batches(self, size: int) -> AsyncGenerator[list[Doomed], None]:
        """Every entry, in the order added, at most ``size`` at a time; SpoolError if lost."""
        if self.problem is not None:
            raise self.problem
        for start in range(0, len(self._memory), size):
            yield self._memory[start : start + size]
        if self._pending:
            await self._write()
        if self._file is None:
            return
        try:
            await self._run(self._file.seek, 0)
        except OSError as exc:
            raise _failed(exc) from exc
        while True:
            try:
                lines = await self._run(_read_lines, self._file, size)
            except OSError as exc:
                raise _failed(exc) from exc
            if not lines:
                return
            yield [Doomed(*json.loads(line)) for line in lines]

    async def close(self) -> None:
        """Drop the file; what it held is no longer wanted, so an error closing it is none."""
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):  # a full disk fails the final flush once more
                await self._run(handle.close)

    async def _write(self) -> None:
        # ensure_ascii: a key's lone surrogates (a name that was not UTF-8) survive
        text = "".join(json.dumps(list(doomed)) + "\n" for doomed in self._pending)
        self._pending = []
        try:
            if self._file is None:
                opener = functools.partial(tempfile.TemporaryFile, "w+", encoding="ascii")
                self._file = await self._run(opener)
            await self._run(self._file.write, text)
        except OSError as exc:
            raise _failed(exc) from exc


def _failed(exc: OSError) -> SpoolError:
    # Named without tempfile.gettempdir(): with no usable folder, that probes them all again.
    where = tempfile.tempdir or os.environ.get("TMPDIR") or "the temporary folder"
    return SpoolError(
        f"cannot keep the list of what to delete in {where}: {exc.strerror or exc}"
        " (set TMPDIR to a folder with room)"
    )


def _read_lines(handle: IO[str], count: int) -> list[str]:
    lines = []
    for line in handle:
        lines.append(line)
        if len(lines) >= count:
            break
    return lines

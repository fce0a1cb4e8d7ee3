"""The deletion spool (``sync/spool.py``): order kept across memory and its file."""

from __future__ import annotations

import asyncio
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from offload.sync.spool import DeletionSpool, Doomed, SpoolError

AWKWARD = ["line\nbreak.jpg", "caf\u00e9/\u00fc.png", "not-utf8-\udcff.jpg", 'quote"s\\.txt']


def _runner(pool: ThreadPoolExecutor) -> Any:
    async def run(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    return run


def _has_a_name(descriptor: int) -> bool:
    return os.path.exists(os.readlink(f"/proc/self/fd/{descriptor}").removesuffix(" (deleted)"))


async def _all(spool: DeletionSpool, size: int) -> list[list[Doomed]]:
    return [batch async for batch in spool.batches(size)]


async def test_entries_past_the_memory_bound_come_back_from_the_file_in_order():
    with ThreadPoolExecutor(2) as pool:
        spool = DeletionSpool(_runner(pool), in_memory=3, write_every=4)
        added = [Doomed(f"{i:02d}-{AWKWARD[i % 4]}", i, f"p/{i:02d}") for i in range(12)]
        for doomed in added:
            await spool.add(doomed)
        assert spool.count == 12
        assert len(spool._memory) == 3  # the rest went (or waits to go) to the file
        first = await _all(spool, 5)
        assert [d for batch in first for d in batch] == added
        assert all(len(batch) <= 5 for batch in first)
        again = await _all(spool, 1000)  # a second pass reads the same entries
        assert [d for batch in again for d in batch] == added
        await spool.close()


async def test_the_file_has_no_name_and_is_closed_with_the_spool():
    with ThreadPoolExecutor(2) as pool:
        spool = DeletionSpool(_runner(pool), in_memory=0, write_every=1)
        await spool.add(Doomed("a.jpg", 1, "a.jpg"))
        handle = spool._file
        assert handle is not None
        assert not _has_a_name(handle.fileno())  # nobody sees it, and it dies with the process
        await spool.close()
        assert handle.closed


async def test_an_empty_spool_is_false_and_yields_nothing():
    with ThreadPoolExecutor(1) as pool:
        spool = DeletionSpool(_runner(pool))
        assert not spool
        assert await _all(spool, 10) == []
        await spool.close()


async def test_a_folder_that_cannot_hold_the_file_leaves_entries_counted_but_lost(
    tmp_path, monkeypatch
):
    missing = tmp_path / "gone"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    with ThreadPoolExecutor(1) as pool:
        spool = DeletionSpool(_runner(pool), in_memory=1, write_every=1)
        for name in ("a.jpg", "b.jpg", "c.jpg"):
            await spool.add(Doomed(name, 1, name))
        assert spool.count == 3
        assert spool.problem is not None
        with pytest.raises(
            SpoolError, match=f"cannot keep the list of what to delete in {missing}"
        ):
            await _all(spool, 10)
        await spool.close()


async def test_a_full_disk_found_only_on_reading_back_is_a_spool_error_and_close_is_quiet(
    monkeypatch,
):
    # Writes to /dev/full succeed until the buffer is flushed: as on a disk that fills up.
    def full_disk(*_: Any, **__: Any) -> Any:
        return open("/dev/full", "w+")  # the spool closes it

    monkeypatch.setattr(tempfile, "TemporaryFile", full_disk)
    with ThreadPoolExecutor(1) as pool:
        spool = DeletionSpool(_runner(pool), in_memory=0, write_every=1)
        await spool.add(Doomed("a.jpg", 1, "a.jpg"))
        assert spool.problem is None
        with pytest.raises(SpoolError, match="No space left on device"):
            await _all(spool, 10)
        await spool.close()  # its last flush fails again, quietly: the list is not wanted

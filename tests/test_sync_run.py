"""``run_sync()``: the one entry point for the command line, merges, backups and the server.

These run the library in-process over local-folder storages; the end-to-end
runs against S3 servers are in ``test_sync.py``.
"""

from __future__ import annotations

import gc
import io
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pytest

from offload.config.settings import Settings, Site
from offload.server.sync_runs import RecordingReporter, RunRecord
from offload.storage.local import LocalStorage
from offload.sync.context import SyncError, SyncOptions
from offload.sync.locations import Bucket, Folder
from offload.sync.report import Event, Reporter, Summary
from offload.sync.runner import SideSpec, SyncJob, run_sync
from tests.sync_helpers import write_tree

FILES = {"a.jpg": b"A", "sub/b.png": b"BB", "sub/c.txt": b"CCC"}


class _CountedStorage(LocalStorage):
    """A folder storage that counts how often it is closed."""

    closed = 0

    async def close(self) -> None:
        self.closed += 1
        await super().close()


class _Watcher(Reporter):
    """Prints nothing; notes what the run's summary and the collector said at each event."""

    def __init__(self, summary: Summary | None = None) -> None:
        super().__init__(io.StringIO(), io.StringIO())
        self.summary = summary
        self.counts: list[int] = []
        self.thresholds: set[tuple[int, ...]] = set()

    def event(self, event: Event) -> None:
        super().event(event)
        if self.summary is not None:
            self.counts.append(self.summary.transferred)
        self.thresholds.add(gc.get_threshold())


def _folder(path: Path) -> Folder:
    return Folder(f"{path}/", str(path))


def _bucket(root: Path, storage: LocalStorage | None = None) -> Bucket:
    root.mkdir(parents=True, exist_ok=True)
    return Bucket(storage or LocalStorage(root), "", f"file://{root}/", "local")


def _job(src: SideSpec, dst: SideSpec, tmp_path: Path, **options: Any) -> SyncJob:
    return SyncJob(
        [(src, dst)],
        SyncOptions(jobs=4, **options),
        state_path=tmp_path / "state.sqlite3",
        threads=4,
    )


async def test_a_side_given_open_stays_open_and_a_side_run_sync_opened_is_closed(tmp_path: Path):
    data = write_tree(tmp_path / "data", FILES)
    given = _CountedStorage(tmp_path / "given")
    summary = await run_sync(
        _job(_folder(data), _bucket(tmp_path / "given", given), tmp_path), _Watcher()
    )
    assert (summary.transferred, summary.failed) == (3, 0)
    assert given.closed == 0  # the caller's (the server's) storage

    opened: list[_CountedStorage] = []

    def open_side(executor: Executor) -> Bucket:
        storage = _CountedStorage(tmp_path / "opened", executor=executor)
        opened.append(storage)
        return _bucket(tmp_path / "opened", storage)

    summary = await run_sync(_job(_folder(data), open_side, tmp_path), _Watcher())
    assert summary.transferred == 3
    assert [storage.closed for storage in opened] == [1]


async def test_one_pair_counts_into_the_given_summary_as_it_goes(tmp_path: Path):
    data = write_tree(tmp_path / "data", FILES)
    live = Summary()
    watcher = _Watcher(live)
    summary = await run_sync(
        _job(_folder(data), _bucket(tmp_path / "bucket"), tmp_path), watcher, summary=live
    )
    assert summary is live
    assert sorted(watcher.counts) == [1, 2, 3]  # counted before each event, not at the end


async def test_a_refusal_in_a_server_run_is_recorded_in_words_that_name_no_flag(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    bucket = _bucket(tmp_path / "bucket")
    (tmp_path / "bucket" / "old.jpg").write_bytes(b"old")
    record = RunRecord("0123", "blog")
    job = _job(_folder(tmp_path / "empty"), bucket, tmp_path, delete=True)
    summary = await run_sync(job, RecordingReporter(record), summary=record.summary)
    assert (summary.refused_deletes, summary.exit_code) == (1, 1)
    assert list(record.messages) == ["error: deleting nothing: the source holds no files"]
    assert (tmp_path / "bucket" / "old.jpg").exists()


async def test_a_merge_of_two_buckets_is_a_sync_error(tmp_path: Path):
    job = SyncJob(
        [(_bucket(tmp_path / "one"), _bucket(tmp_path / "two"))],
        SyncOptions(jobs=4),
        merge=True,
        state_path=tmp_path / "state.sqlite3",
    )
    with pytest.raises(SyncError, match="a merge needs a folder and a bucket"):
        await run_sync(job, _Watcher())


@pytest.mark.parametrize("tune", [True, False])
async def test_the_collector_is_tuned_only_while_a_run_goes_and_only_when_asked(
    tmp_path: Path, tune: bool
):
    data = write_tree(tmp_path / "data", FILES)
    before = gc.get_threshold(), gc.get_freeze_count()
    watcher = _Watcher()
    job = _job(_folder(data), _bucket(tmp_path / "bucket"), tmp_path)
    await run_sync(
        SyncJob(job.pairs, job.options, state_path=job.state_path, tune_collector=tune), watcher
    )
    assert watcher.thresholds == ({(20_000, 20, 20)} if tune else {before[0]})
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_backups_leave_out_the_sites_without_a_backup_target(tmp_path: Path):
    sites = [
        Site(name="blog", storage=f"file://{tmp_path}/blog", backup=f"file://{tmp_path}/copy"),
        Site(name="shop", storage=f"file://{tmp_path}/shop"),
    ]
    settings = Settings(sites={site.name: site for site in sites})
    job = SyncJob.backups(settings, sites, jobs=8)
    assert len(job.pairs) == 1
    assert (job.options.compare, job.options.delete, job.options.jobs) == ("size-only", False, 8)

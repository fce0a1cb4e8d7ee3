"""PostgreSQL shared by several hosts: concurrent claims and writes, and ``offload reindex``."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from offload.manifest import ManifestRow, PurgeItem, open_manifest
from tests.helpers import run_cli

SITE = "blog"


def test_two_hosts_claiming_at_once_get_disjoint_entries_and_every_one(postgres_url):
    hosts = [open_manifest(postgres_url, pool_size=4), open_manifest(postgres_url, pool_size=4)]
    total = 300
    hosts[0].enqueue_purges(
        PurgeItem(SITE, "url", f"https://cdn.example.com/{i}.jpg") for i in range(total)
    )
    start = threading.Barrier(8)

    def drain(worker: int) -> list[int]:
        host = hosts[worker % 2]
        start.wait()
        taken: list[int] = []
        while claimed := host.claim_purges(limit=7, lease=300):
            taken += [entry.id for entry in claimed]
        return taken

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            taken = [ids for ids in pool.map(drain, range(8))]
        every = [i for ids in taken for i in ids]
        assert len(every) == len(set(every)) == total
        assert sum(1 for ids in taken if ids) > 1  # the work was shared, not serialised
    finally:
        for host in hosts:
            host.close()


def test_two_hosts_recording_the_same_rows_at_once_leave_one_row_each(postgres_url):
    hosts = [open_manifest(postgres_url, pool_size=4), open_manifest(postgres_url, pool_size=4)]
    rows = [ManifestRow(SITE, f"k/{i}.jpg", f"{i}.jpg", None, i, "0" * 64, "e") for i in range(40)]
    start = threading.Barrier(8)

    def write(worker: int) -> None:
        start.wait()
        ordered = rows if worker % 2 else list(reversed(rows))  # opposite orders: no deadlock
        for _ in range(5):
            hosts[worker % 2].record(ordered)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(write, range(8)))
        assert hosts[0].totals(SITE) == (40, sum(range(40)))
        assert hosts[1].key_for(SITE, "39.jpg") == "k/39.jpg"
    finally:
        for host in hosts:
            host.close()


def test_reindex_rebuilds_a_postgresql_manifest(tmp_path: Path, postgres_url):
    bucket = tmp_path / "bucket"
    (bucket / "wp-content/uploads/2024").mkdir(parents=True)
    (bucket / "wp-content/uploads/2024/a.jpg").write_bytes(b"data")
    config = tmp_path / "offload.toml"
    config.write_text(
        f'manifest = "{postgres_url}"\n\n[sites.blog]\nstorage = "{bucket.as_uri()}"\n'
        'prefix = "wp-content/uploads"\n'
    )
    stale = open_manifest(postgres_url)
    stale.record([ManifestRow(SITE, "wp-content/uploads/gone.jpg", "gone.jpg", None, 1, "", "e")])
    stale.close()
    code, out, err = run_cli("reindex", "--config", config)
    assert (code, err) == (0, "")
    assert out.startswith("site blog: 1 objects in the manifest")
    manifest = open_manifest(postgres_url)
    try:
        assert manifest.key_for(SITE, "2024/a.jpg") == "wp-content/uploads/2024/a.jpg"
        assert manifest.key_for(SITE, "gone.jpg") is None
        assert manifest.purge_queue().waiting == 0  # a reindex purges nothing
    finally:
        manifest.close()


def test_reindex_with_the_database_down_is_one_line_without_the_password(tmp_path: Path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    config = tmp_path / "offload.toml"
    config.write_text(
        'manifest = "postgresql://offload:hunter2-long-pass@127.0.0.1:9/media"\n\n'
        f'[sites.blog]\nstorage = "{bucket.as_uri()}"\n'
    )
    code, out, err = run_cli("reindex", "--config", config)
    assert code != 0
    assert err.count("\n") == 1
    assert "hunter2" not in out + err
    assert "offload:****@127.0.0.1:9/media" in err

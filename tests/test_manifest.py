"""The SQLite manifest: what is offloaded, per site, safe to share between threads and processes."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from offload.errors import OffloadError
from offload.manifest import ManifestError, ManifestRow
from offload.manifest.sqlite import SCHEMA_VERSION
from offload.manifest.sqlite import SqliteManifest as Manifest

SITE = "blog"


def row(key: str, path: str | None = None, **fields: object) -> ManifestRow:
    values: dict[str, object] = {
        "site": SITE,
        "key": key,
        "path": path if path is not None else key,
        "version": None,
        "size": 10,
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "etag": '"d41d8cd98f00b204e9800998ecf8427e"',
    }
    values.update(fields)
    return ManifestRow(**values)  # type: ignore[arg-type]


@pytest.fixture
def manifest_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "offload" / "manifest.sqlite"


@pytest.fixture
def manifest(manifest_path: Path) -> Iterator[Manifest]:
    opened = Manifest(manifest_path)
    yield opened
    opened.close()


def _pragma(path: Path, name: str) -> object:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]


# -- opening -------------------------------------------------------------------------


def test_the_file_and_its_folder_are_not_created_until_first_use(manifest, manifest_path):
    assert not manifest_path.parent.exists()
    assert manifest.count(SITE) == 0
    assert manifest_path.is_file()


def test_recording_nothing_does_not_create_the_file(manifest, manifest_path):
    manifest.record([])
    assert not manifest_path.exists()


def test_the_manifest_runs_in_wal_mode(manifest, manifest_path):
    manifest.record([row("a.jpg")])
    assert _pragma(manifest_path, "journal_mode") == "wal"


def test_the_schema_version_is_stamped(manifest, manifest_path):
    manifest.count(SITE)
    assert _pragma(manifest_path, "user_version") == SCHEMA_VERSION


def test_an_existing_manifest_is_opened_with_its_rows(manifest_path):
    first = Manifest(manifest_path)
    first.record([row("a.jpg")])
    first.close()
    second = Manifest(manifest_path)
    try:
        assert second.key_for(SITE, "a.jpg") == "a.jpg"
    finally:
        second.close()


def test_a_closed_manifest_reopens_on_next_use(manifest):
    manifest.record([row("a.jpg")])
    manifest.close()
    assert manifest.count(SITE) == 1
    manifest.close()
    manifest.close()  # closing twice is harmless
    assert manifest.path_for(SITE, "a.jpg") == "a.jpg"


# -- unusable locations ----------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 1])
def test_a_location_under_a_regular_file_is_a_manifest_error_naming_it(tmp_path, depth):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    path = blocker / ("sub/" * depth) / "manifest.sqlite"
    manifest = Manifest(path)
    try:
        for use in (lambda: manifest.count(SITE), lambda: manifest.record([row("a.jpg")])):
            with pytest.raises(ManifestError) as caught:
                use()
            assert str(path) in str(caught.value)
            assert isinstance(caught.value.__cause__, OSError | sqlite3.Error)
    finally:
        manifest.close()


def test_a_folder_in_place_of_the_file_is_a_manifest_error(tmp_path):
    (tmp_path / "manifest.sqlite").mkdir()
    manifest = Manifest(tmp_path / "manifest.sqlite")
    try:
        with pytest.raises(ManifestError, match=r"manifest\.sqlite"):
            manifest.key_for(SITE, "a.jpg")
    finally:
        manifest.close()


def test_a_file_that_is_not_sqlite_is_a_manifest_error(tmp_path):
    path = tmp_path / "manifest.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    manifest = Manifest(path)
    try:
        with pytest.raises(ManifestError, match="cannot"):
            manifest.record([row("a.jpg")])
    finally:
        manifest.close()


def test_manifest_error_is_an_offload_error():
    assert issubclass(ManifestError, OffloadError)


# -- rows --------------------------------------------------------------------------


def test_rows_round_trip_with_every_field(manifest):
    recorded = [
        row(
            "uploads/2024/05/3f9a2c1e/photo.jpg",
            "2024/05/photo.jpg",
            version="3f9a2c1e",
            size=123456789012,
            attachment_id="123",
            mtime=1714650000.123456,
            offloaded_at=1714650001.5,
        ),
        row("uploads/2024/05/doc.pdf", "2024/05/doc.pdf"),
    ]
    before = time.time()
    manifest.record(recorded)
    after = time.time()
    found = manifest.rows(SITE, paths=["2024/05/photo.jpg", "2024/05/doc.pdf"])
    assert found[0] == recorded[0]
    stamped = found[1]
    assert before <= stamped.offloaded_at <= after
    assert stamped == row(
        "uploads/2024/05/doc.pdf", "2024/05/doc.pdf", offloaded_at=stamped.offloaded_at
    )


def test_recording_the_same_key_again_replaces_its_row(manifest):
    manifest.record([row("k.jpg", "a.jpg", size=1)])
    manifest.record([row("k.jpg", "b.jpg", size=2)])
    assert manifest.count(SITE) == 1
    assert manifest.path_for(SITE, "k.jpg") == "b.jpg"
    assert manifest.key_for(SITE, "a.jpg") is None


def test_sites_are_isolated(manifest):
    manifest.record([row("a.jpg", "a.jpg", attachment_id="1")])
    manifest.record([row("a.jpg", "other.jpg", site="shop", attachment_id="1")])
    manifest.record([row("b.jpg", site="shop")])
    assert (manifest.count(SITE), manifest.count("shop"), manifest.count("none")) == (1, 2, 0)
    assert manifest.path_for(SITE, "a.jpg") == "a.jpg"
    assert manifest.path_for("shop", "a.jpg") == "other.jpg"
    assert manifest.key_for(SITE, "b.jpg") is None
    assert [r.site for r in manifest.rows("shop", attachment_id="1")] == ["shop"]
    assert manifest.remove(SITE, ["a.jpg", "b.jpg"]) == 1
    assert manifest.count("shop") == 2
    assert manifest.replace_site("shop", []) == 0
    assert manifest.count("shop") == 0


def test_key_for_answers_the_newest_version_of_a_path(manifest):
    manifest.record([row("v/aaaaaaa1/a.jpg", "a.jpg", offloaded_at=200.0)])
    manifest.record([row("v/aaaaaaa0/a.jpg", "a.jpg", offloaded_at=100.0)])
    assert manifest.key_for(SITE, "a.jpg") == "v/aaaaaaa1/a.jpg"
    manifest.record([row("v/aaaaaaa2/a.jpg", "a.jpg", offloaded_at=300.0)])
    assert manifest.key_for(SITE, "a.jpg") == "v/aaaaaaa2/a.jpg"


def test_key_for_a_reupload_recorded_now_beats_older_rows(manifest):
    manifest.record([row("v/aaaaaaa1/a.jpg", "a.jpg", offloaded_at=time.time() - 60)])
    manifest.record([row("v/aaaaaaa2/a.jpg", "a.jpg")])
    assert manifest.key_for(SITE, "a.jpg") == "v/aaaaaaa2/a.jpg"


def test_unknown_paths_and_keys_answer_none(manifest):
    manifest.record([row("a.jpg")])
    assert manifest.key_for(SITE, "missing.jpg") is None
    assert manifest.path_for(SITE, "missing.jpg") is None


def test_rows_by_paths_return_every_version(manifest):
    manifest.record(
        [
            row("v/aaaaaaa1/a.jpg", "a.jpg", offloaded_at=1.0),
            row("v/aaaaaaa2/a.jpg", "a.jpg", offloaded_at=2.0),
            row("b.jpg"),
        ]
    )
    assert [r.key for r in manifest.rows(SITE, paths=["a.jpg"])] == [
        "v/aaaaaaa1/a.jpg",
        "v/aaaaaaa2/a.jpg",
    ]


def test_rows_by_paths_and_attachment_are_a_union_without_duplicates(manifest):
    manifest.record(
        [
            row("c.jpg", attachment_id="7"),
            row("a.jpg", attachment_id="7"),
            row("a-150x150.jpg", attachment_id="7"),
            row("b.jpg", attachment_id="8"),
            row("z.jpg"),
        ]
    )
    found = manifest.rows(SITE, paths=["a.jpg", "z.jpg", "nope.jpg"], attachment_id="7")
    assert [r.key for r in found] == ["a-150x150.jpg", "a.jpg", "c.jpg", "z.jpg"]
    assert [r.key for r in manifest.rows(SITE, attachment_id="8")] == ["b.jpg"]
    assert manifest.rows(SITE, attachment_id="9") == []


def test_rows_with_neither_paths_nor_attachment_are_empty(manifest):
    manifest.record([row("a.jpg", attachment_id="1")])
    assert manifest.rows(SITE) == []


def test_remove_counts_the_rows_it_dropped(manifest):
    manifest.record([row("a.jpg"), row("b.jpg"), row("c.jpg")])
    assert manifest.remove(SITE, iter(["a.jpg", "c.jpg", "missing.jpg"])) == 2
    assert manifest.remove(SITE, ["a.jpg"]) == 0
    assert manifest.remove(SITE, []) == 0
    assert manifest.count(SITE) == 1
    assert manifest.key_for(SITE, "b.jpg") == "b.jpg"


def test_replace_site_makes_the_rows_the_whole_record(manifest):
    manifest.record([row("old-1.jpg"), row("old-2.jpg"), row("keep.jpg", site="shop")])
    assert manifest.replace_site(SITE, (row(f"new-{i}.jpg") for i in range(3))) == 3
    assert manifest.count(SITE) == 3
    assert manifest.key_for(SITE, "old-1.jpg") is None
    assert manifest.key_for(SITE, "new-2.jpg") == "new-2.jpg"
    assert manifest.count("shop") == 1


def test_a_failed_replace_site_keeps_the_old_record(manifest):
    manifest.record([row("old.jpg")])
    with pytest.raises(ManifestError):
        manifest.replace_site(SITE, [row("new.jpg"), row("bad.jpg", size=None)])
    assert manifest.key_for(SITE, "old.jpg") == "old.jpg"
    assert manifest.key_for(SITE, "new.jpg") is None
    manifest.record([row("after.jpg")])  # no transaction is left open
    assert manifest.count(SITE) == 2


def test_a_failed_record_writes_none_of_its_rows(manifest):
    with pytest.raises(ManifestError):
        manifest.record([row("a.jpg"), row("b.jpg", sha256=None)])
    assert manifest.count(SITE) == 0


def test_many_keys_in_one_remove_and_one_rows(manifest):
    n = 5000
    manifest.record(row(f"uploads/2024/05/f{i}.jpg", f"2024/05/f{i}.jpg") for i in range(n))
    found = manifest.rows(SITE, paths=[f"2024/05/f{i}.jpg" for i in range(n)])
    assert len(found) == n
    assert manifest.remove(SITE, [f"uploads/2024/05/f{i}.jpg" for i in range(n - 1)]) == n - 1
    assert manifest.count(SITE) == 1


@pytest.mark.parametrize(
    "path",
    [
        "2024/05/café.jpg",
        "2024/05/cafe\u0301.jpg",  # decomposed: a different path from the composed one
        "東京/写真.jpg",
        "emoji/😀🎉.png",
        'quotes/it\'s "fine".jpg',
        'json/["a"]\\u0000.jpg',
        "sql/'; DROP TABLE files; --.jpg",
    ],
)
def test_unicode_and_awkward_paths_round_trip(manifest, path):
    key = "uploads/" + path
    manifest.record([row(key, path, attachment_id="äöü")])
    assert manifest.key_for(SITE, path) == key
    assert manifest.path_for(SITE, key) == path
    assert [r.key for r in manifest.rows(SITE, paths=[path])] == [key]
    assert [r.path for r in manifest.rows(SITE, attachment_id="äöü")] == [path]
    assert manifest.remove(SITE, [key]) == 1


def test_composed_and_decomposed_names_stay_distinct(manifest):
    manifest.record([row("k1", "café.jpg"), row("k2", "cafe\u0301.jpg")])
    assert manifest.key_for(SITE, "café.jpg") == "k1"
    assert manifest.key_for(SITE, "cafe\u0301.jpg") == "k2"


# -- concurrency -------------------------------------------------------------------


def _work(manifest: Manifest, worker: int, rounds: int = 40) -> int:
    """Write, read and remove rows of one worker; how many rows it leaves."""
    for i in range(rounds):
        path = f"w{worker}/f{i}.jpg"
        manifest.record([row(f"k/{path}", path, attachment_id=str(worker))])
        assert manifest.key_for(SITE, path) == f"k/{path}"
        assert manifest.path_for(SITE, f"k/{path}") == path
        manifest.count(SITE)
        if i % 4 == 3:
            assert manifest.remove(SITE, [f"k/{path}"]) == 1
    return rounds - rounds // 4


def test_many_threads_share_one_manifest(manifest):
    with ThreadPoolExecutor(max_workers=8) as pool:
        left = list(pool.map(lambda worker: _work(manifest, worker), range(16)))
    assert manifest.count(SITE) == sum(left)
    assert len(manifest.rows(SITE, attachment_id="3")) == left[3]


def test_first_use_from_many_threads_at_once_opens_one_schema(manifest_path):
    manifest = Manifest(manifest_path)
    start = threading.Barrier(8)

    def first(worker: int) -> int:
        start.wait()
        manifest.record([row(f"t{worker}.jpg")])
        return manifest.count(SITE)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert all(n >= 1 for n in pool.map(first, range(8)))
        assert manifest.count(SITE) == 8
    finally:
        manifest.close()


def test_two_manifests_on_one_file_see_each_others_writes(manifest_path):
    first, second = Manifest(manifest_path), Manifest(manifest_path)
    try:
        first.record([row("a.jpg")])
        assert second.key_for(SITE, "a.jpg") == "a.jpg"
        second.record([row("b.jpg")])
        assert first.count(SITE) == 2
        assert second.remove(SITE, ["a.jpg"]) == 1
        assert first.path_for(SITE, "a.jpg") is None
    finally:
        first.close()
        second.close()


def test_two_manifests_on_one_file_write_concurrently_without_locking_errors(manifest_path):
    manifests = [Manifest(manifest_path), Manifest(manifest_path)]
    start = threading.Barrier(12)

    def work(worker: int) -> int:
        start.wait()  # both objects open the new file at the same moment
        return _work(manifests[worker % 2], worker)

    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            left = sum(pool.map(work, range(12)))
        assert manifests[0].count(SITE) == manifests[1].count(SITE) == left
    finally:
        for manifest in manifests:
            manifest.close()


_CHILD = """
import sys
from offload.manifest import ManifestRow
from offload.manifest.sqlite import SqliteManifest
manifest = SqliteManifest(sys.argv[1])
for i in range(200):
    manifest.record([ManifestRow("blog", f"child/{i}.jpg", f"child/{i}.jpg", None, 1, "x", "e")])
    manifest.count("blog")
manifest.close()
"""


def test_another_process_writes_while_this_one_does(manifest, manifest_path):
    manifest.count(SITE)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(manifest_path)],
        cwd=Path(__file__).resolve().parent.parent,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for i in range(200):
            manifest.record([row(f"parent/{i}.jpg")])
            manifest.count(SITE)
    finally:
        _, errors = child.communicate(timeout=60)
    assert child.returncode == 0, errors
    assert manifest.count(SITE) == 400
    assert manifest.key_for(SITE, "child/199.jpg") == "child/199.jpg"


def test_a_writer_does_not_block_readers_of_another_manifest(manifest_path):
    writer, reader = Manifest(manifest_path), Manifest(manifest_path)
    try:
        writer.record([row("a.jpg")])
        reader.count(SITE)
        stop = threading.Event()

        def write_continuously() -> int:
            n = 0
            while not stop.is_set():
                writer.replace_site(SITE, [row(f"r{i}.jpg") for i in range(200)] + [row("a.jpg")])
                n += 1
            return n

        with ThreadPoolExecutor(max_workers=1) as pool:
            writes = pool.submit(write_continuously)
            try:
                for _ in range(200):
                    assert reader.key_for(SITE, "a.jpg") == "a.jpg"
                    assert reader.count(SITE) in (1, 201)
            finally:
                stop.set()
            assert writes.result() >= 1
    finally:
        writer.close()
        reader.close()


def test_close_from_another_thread_closes_every_connection(manifest):
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: manifest.record([row(f"{i}.jpg")]), range(8)))
        closer = threading.Thread(target=manifest.close)
        closer.start()
        closer.join()
        assert list(pool.map(lambda _: manifest.count(SITE), range(8))) == [8] * 8

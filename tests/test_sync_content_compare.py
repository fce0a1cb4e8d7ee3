"""``offload sync`` settles disagreeing times by content when the object has no stored mtime.

The objects here are written by "another tool" (boto3 directly), so they carry
no ``mtime`` metadata and their LastModified is the time of the write.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY, RcloneS3Server
from tests.sync_helpers import (
    HOUR_NS,
    MiB,
    Target,
    big_bytes,
    lines,
    put_in_parts,
    read_tree,
    set_mtime,
    snapshot,
    write_tree,
)

# Each test's own sync state cache, and its tmp_path as the working folder.
pytestmark = pytest.mark.usefixtures("sync_state")

DAY_NS = 24 * HOUR_NS


@pytest.fixture
def rclone_target(
    rclone_backend, rclone_server: RcloneS3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    """``rclone serve s3 --etag-hash MD5``: single-part ETags are MD5s, as on S3."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", RCLONE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RCLONE_SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    yield Target(
        "rclone",
        rclone_backend.client,
        rclone_backend.bucket,
        endpoint_url=rclone_server.endpoint_url,
        root=rclone_backend.root,
    )
    for path in rclone_server.root.glob(f"{rclone_backend.bucket}-*"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["moto", pytest.param("rclone", marks=pytest.mark.rclone)])
def target(request: pytest.FixtureRequest) -> Target:
    return request.getfixturevalue(f"{request.param}_target")


def last_modified_ns(target: Target, key: str) -> int:
    head = target.client.head_object(Bucket=target.bucket, Key=key)
    return int(head["LastModified"].timestamp()) * 10**9


def etag(target: Target, key: str) -> str:
    return str(target.client.head_object(Bucket=target.bucket, Key=key)["ETag"]).strip('"')


def test_an_upload_of_an_older_file_with_other_bytes_replaces_a_foreign_object(target: Target):
    target.put("a.jpg", b"written by another tool")
    write_tree(Path("data"), {"a.jpg": b"WRITTEN BY ANOTHER TOOL"}, time.time_ns() - DAY_NS)
    code, out, err = target.sync("data", target.url())
    assert (code, err) == (0, "")
    assert lines(out) == [f"upload: data/a.jpg to {target.url()}/a.jpg"]
    assert target.objects() == {"a.jpg": b"WRITTEN BY ANOTHER TOOL"}
    assert target.sync("data", target.url()) == (0, "", "")  # now it has offload's mtime


def test_an_upload_of_identical_bytes_at_another_time_sends_nothing(target: Target):
    target.put("old.jpg", b"same bytes")
    target.put("new.jpg", b"more bytes")
    before = {key: etag(target, key) for key in ("old.jpg", "new.jpg")}
    write_tree(Path("data"), {"old.jpg": b"same bytes"}, time.time_ns() - DAY_NS)
    write_tree(Path("data"), {"new.jpg": b"more bytes"}, time.time_ns() + DAY_NS)
    for _ in range(2):  # nothing to re-date on an object: the next run compares again
        assert target.sync("data", target.url()) == (0, "", "")
    assert {key: etag(target, key) for key in before} == before
    assert target.metadata("old.jpg").get("mtime") is None  # the object was not rewritten


# -- download -------------------------------------------------------------------------------


def test_a_download_over_a_newer_local_edit_of_the_same_size_restores_the_objects_bytes(
    target: Target,
):
    target.put("a.jpg", b"bucket bytes")
    write_tree(Path("out"), {"a.jpg": b"local! bytes"}, time.time_ns() + DAY_NS)
    code, out, err = target.sync(target.url(), "out")
    assert (code, err) == (0, "")
    assert lines(out) == [f"download: {target.url()}/a.jpg to out/a.jpg"]
    assert read_tree(Path("out")) == {"a.jpg": b"bucket bytes"}
    assert os.stat("out/a.jpg").st_mtime_ns == last_modified_ns(target, "a.jpg")
    assert target.sync(target.url(), "out") == (0, "", "")


def test_a_download_of_identical_bytes_only_redates_the_file(target: Target):
    target.put("newer.jpg", b"same bytes")
    target.put("older.jpg", b"also same")
    write_tree(Path("out"), {"newer.jpg": b"same bytes"}, time.time_ns() + DAY_NS)
    write_tree(Path("out"), {"older.jpg": b"also same"}, time.time_ns() - DAY_NS)
    assert target.sync(target.url(), "out") == (0, "", "")
    assert read_tree(Path("out")) == {"newer.jpg": b"same bytes", "older.jpg": b"also same"}
    for name in ("newer.jpg", "older.jpg"):
        assert os.stat(f"out/{name}").st_mtime_ns == last_modified_ns(target, name)


# -- what the content is compared with ------------------------------------------------------


def test_a_multipart_object_without_a_stored_hash_is_transferred_to_be_safe(
    moto_target: Target,
):
    data = big_bytes(5 * MiB + 4096)
    put_in_parts(moto_target, "big.bin", data, {})
    assert "-" in etag(moto_target, "big.bin")
    write_tree(Path("data"), {"big.bin": data}, time.time_ns() - DAY_NS)
    code, out, _ = moto_target.sync("data", moto_target.url())
    assert code == 0
    assert lines(out) == [f"upload: data/big.bin to {moto_target.url()}/big.bin"]


def test_a_multipart_object_is_compared_by_its_stored_sha256(moto_target: Target):
    data = big_bytes(5 * MiB + 4096)
    sha256 = hashlib.sha256(data).hexdigest()
    put_in_parts(moto_target, "same.bin", data, {"sha256": sha256})
    put_in_parts(moto_target, "edit.bin", data, {"sha256": sha256})
    edited = bytearray(data)
    edited[-1] ^= 0xFF
    old = time.time_ns() - DAY_NS
    write_tree(Path("data"), {"same.bin": data, "edit.bin": bytes(edited)}, old)
    code, out, _ = moto_target.sync("data", moto_target.url())
    assert code == 0
    assert lines(out) == [f"upload: data/edit.bin to {moto_target.url()}/edit.bin"]
    assert moto_target.objects()["edit.bin"] == bytes(edited)


def test_size_only_still_ignores_content(moto_target: Target):
    moto_target.put("a.jpg", b"bucket")
    write_tree(Path("data"), {"a.jpg": b"BUCKET"}, time.time_ns() - DAY_NS)
    assert moto_target.sync("data", moto_target.url(), "--size-only") == (0, "", "")
    assert moto_target.objects() == {"a.jpg": b"bucket"}


# -- --dry-run ------------------------------------------------------------------------------


def test_a_dry_run_reports_the_content_decision_and_writes_nothing(
    target: Target, sync_state: Path
):
    target.put("up/edit.jpg", b"bucket one")
    target.put("up/same.jpg", b"identical")
    target.put("down/edit.jpg", b"bucket two")
    target.put("down/same.jpg", b"identical")
    write_tree(Path("data"), {"edit.jpg": b"BUCKET ONE"}, time.time_ns() - DAY_NS)
    write_tree(Path("data"), {"same.jpg": b"identical"}, time.time_ns() + DAY_NS)
    write_tree(Path("out"), {"edit.jpg": b"BUCKET TWO"}, time.time_ns() + DAY_NS)
    write_tree(Path("out"), {"same.jpg": b"identical"}, time.time_ns() + DAY_NS)
    objects, etags = target.objects(), {key: etag(target, key) for key in target.objects()}
    local = snapshot(Path("data")), snapshot(Path("out"))
    state = snapshot(sync_state.parent)

    code, out, err = target.sync("data", target.url("up"), "--dry-run")
    assert (code, err) == (0, "")
    assert lines(out) == [f"(dryrun) upload: data/edit.jpg to {target.url('up')}/edit.jpg"]
    code, out, err = target.sync(target.url("down"), "out", "--dry-run")
    assert (code, err) == (0, "")
    assert lines(out) == [f"(dryrun) download: {target.url('down')}/edit.jpg to out/edit.jpg"]

    assert target.objects() == objects
    assert {key: etag(target, key) for key in target.objects()} == etags
    assert (snapshot(Path("data")), snapshot(Path("out"))) == local  # bytes and mtimes
    assert snapshot(sync_state.parent) == state


def test_a_file_touched_after_offloads_own_upload_is_still_decided_by_the_stored_mtime(
    moto_target: Target,
):
    write_tree(Path("data"), {"a.jpg": b"offloaded"}, time.time_ns() - DAY_NS)
    assert moto_target.sync("data", moto_target.url())[0] == 0
    set_mtime(Path("data/a.jpg"), time.time_ns() - 2 * DAY_NS)  # same bytes, other mtime
    code, out, _ = moto_target.sync("data", moto_target.url())
    assert code == 0  # the stored mtime differs: uploaded as before, no hashing needed
    assert lines(out) == [f"upload: data/a.jpg to {moto_target.url()}/a.jpg"]

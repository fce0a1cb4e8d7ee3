"""``offload sync`` and ``offload backup`` end to end, against moto and a real S3 server.

The in-process runs go through ``tests.helpers.run_cli``; boto3 reads credentials
from ``os.environ``, so those and ``OFFLOAD_SYNC_STATE`` are set with monkeypatch.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

import offload.sync.delete as delete
import offload.sync.march as march
import offload.sync.spool as spool
from offload.cli.main import Environment, main
from offload.storage.objectmeta import format_mtime
from offload.storage.s3 import S3Storage
from offload.sync.walk import PARTIAL_PREFIX
from tests.helpers import run_cli
from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY, RcloneS3Server
from tests.sync_helpers import (
    HOUR_NS,
    MiB,
    Target,
    big_bytes,
    lines,
    media_files,
    offload_command,
    put_in_parts,
    read_tree,
    set_mtime,
    snapshot,
    subprocess_env,
    write_tree,
)

# Each test's own sync state cache, and its tmp_path as the working folder.
pytestmark = pytest.mark.usefixtures("sync_state")

#: A fixed, old modification time (2023-11-14), with nanoseconds.
OLD = 1_700_000_000_123_456_789
FILES = {"a.jpg": b"AAAA", "sub/b.png": b"BBBBBB", "sub/deep/c.txt": b"CCCCCCCC"}


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def rclone_target(
    rclone_backend, rclone_server: RcloneS3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    credentials = {
        "AWS_ACCESS_KEY_ID": RCLONE_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": RCLONE_SECRET_KEY,
    }
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    target = Target(
        "rclone",
        rclone_backend.client,
        rclone_backend.bucket,
        endpoint_url=rclone_server.endpoint_url,
        root=rclone_backend.root,
        credentials=credentials,
    )
    yield target
    for path in rclone_server.root.glob(f"{rclone_backend.bucket}-*"):
        shutil.rmtree(path, ignore_errors=True)  # the extra buckets of this test


@pytest.fixture(params=["moto", pytest.param("rclone", marks=pytest.mark.rclone)])
def target(request: pytest.FixtureRequest) -> Target:
    """moto, then a real S3 server (``rclone serve s3``)."""
    return request.getfixturevalue(f"{request.param}_target")


def upload_lines(files: dict[str, bytes], url: str, folder: str = "data") -> list[str]:
    return sorted(f"upload: {folder}/{rel} to {url}/{rel}" for rel in files)


# -- directions -------------------------------------------------------------------------


def test_upload_writes_every_file_under_the_prefix_with_its_mtime(target: Target):
    write_tree(Path("data"), FILES, OLD)
    code, out, err = target.sync("data/", target.url("site"))
    assert (code, err) == (0, "")
    assert sorted(lines(out)) == upload_lines(FILES, target.url("site"))
    assert target.objects("site") == FILES
    for rel in FILES:
        assert target.metadata(f"site/{rel}")["mtime"] == format_mtime(OLD)
    head = target.client.head_object(Bucket=target.bucket, Key="site/a.jpg")
    assert head["ContentType"] == "image/jpeg"
    # Nothing to do the second time, with or without trailing slashes.
    assert target.sync("data", target.url("site") + "/") == (0, "", "")


def test_download_recreates_the_tree_dated_by_stored_mtimes_and_a_rerun_does_nothing(
    target: Target,
):
    write_tree(Path("data"), FILES, OLD)
    assert target.sync("data", target.url("site"))[0] == 0
    code, out, err = target.sync(target.url("site"), "out")
    assert (code, err) == (0, "")
    assert sorted(lines(out)) == sorted(
        f"download: {target.url('site')}/{rel} to out/{rel}" for rel in FILES
    )
    assert read_tree(Path("out")) == FILES
    assert {os.stat(Path("out", rel)).st_mtime_ns for rel in FILES} == {OLD}
    assert target.sync(target.url("site") + "/", "out") == (0, "", "")
    assert target.sync(target.url("site"), "out/") == (0, "", "")


def test_download_of_objects_without_stored_mtime_dates_files_by_last_modified(target: Target):
    target.put("plain/a.jpg", b"put by boto3")
    modified = target.client.head_object(Bucket=target.bucket, Key="plain/a.jpg")["LastModified"]
    code, out, _ = target.sync(target.url("plain"), "out")
    assert code == 0
    assert lines(out) == [f"download: {target.url('plain')}/a.jpg to out/a.jpg"]
    assert int(os.stat("out/a.jpg").st_mtime) == int(modified.timestamp())
    assert target.sync(target.url("plain"), "out") == (0, "", "")


def test_an_object_with_an_out_of_range_stored_mtime_is_never_silently_skipped(
    moto_target: Target,
):
    moto_target.put("odd/huge.jpg", b"from another tool", Metadata={"mtime": "1e20"})
    moto_target.put("odd/ok.jpg", b"fine")
    code, out, err = moto_target.sync(moto_target.url("odd"), "out")
    assert f"download: {moto_target.url('odd')}/ok.jpg to out/ok.jpg" in lines(out)
    if Path("out/huge.jpg").exists():  # dated by LastModified instead
        assert (code, err) == (0, "")
        assert f"download: {moto_target.url('odd')}/huge.jpg to out/huge.jpg" in lines(out)
        assert Path("out/huge.jpg").read_bytes() == b"from another tool"
    else:  # or a reported failure: never a silent success
        assert code == 1
        assert "huge.jpg" in err


def test_bucket_to_bucket_copies_server_side_with_the_stored_mtime(
    target: Target, monkeypatch: pytest.MonkeyPatch
):
    write_tree(Path("data"), FILES, OLD)
    assert target.sync("data", target.url("site"))[0] == 0
    backup = target.new_bucket(f"{target.bucket}-copy")

    async def no_streaming(*args, **kwargs):
        raise AssertionError("a same-endpoint copy must not stream through the client")

    monkeypatch.setattr(S3Storage, "get", no_streaming)
    code, out, err = target.sync(target.url("site") + "/", target.url("copy", bucket=backup))
    assert (code, err) == (0, "")
    assert sorted(lines(out)) == sorted(
        f"copy: {target.url('site')}/{rel} to s3://{backup}/copy/{rel}" for rel in FILES
    )
    assert target.objects("copy", bucket=backup) == FILES
    for rel in FILES:
        assert target.metadata(f"copy/{rel}", bucket=backup)["mtime"] == format_mtime(OLD)
    assert target.sync(target.url("site"), target.url("copy", bucket=backup)) == (0, "", "")


def site_config(path: Path, target: Target, *, backup: str = "") -> Path:
    lines_ = [
        "[sites.blog]",
        f'storage = "s3://{target.bucket}/tenant"',
        'prefix = "wp-content/uploads"',
    ]
    if target.endpoint_url:
        lines_ += [f'endpoint_url = "{target.endpoint_url}"', 'addressing_style = "path"']
    if backup:
        lines_.append(f'backup = "{backup}"')
    path.write_text("\n".join(lines_) + "\n")
    return path


def test_a_site_side_writes_keys_under_the_sites_storage_and_prefix(moto_target: Target):
    config = site_config(Path("offload.toml"), moto_target)
    write_tree(Path("uploads"), FILES, OLD)
    code, out, err = run_cli("sync", "uploads", "site:blog", "--config", config)
    assert (code, err) == (0, "")
    shown = f"s3://{moto_target.bucket}/tenant/wp-content/uploads"
    assert sorted(lines(out)) == upload_lines(FILES, shown, folder="uploads")
    assert moto_target.objects("tenant/wp-content/uploads") == FILES
    assert moto_target.keys() == sorted(f"tenant/wp-content/uploads/{rel}" for rel in FILES)
    code, _, _ = run_cli("sync", "site:blog", "back", "--config", config)
    assert code == 0
    assert read_tree(Path("back")) == FILES


def test_a_site_side_works_with_the_sync_state_cache_set_in_the_environment(
    moto_target: Target, sync_state: Path
):
    """``$OFFLOAD_SYNC_STATE`` is offload's own variable: the config loader must accept it."""
    config = site_config(Path("offload.toml"), moto_target, backup=f"s3://{moto_target.bucket}")
    write_tree(Path("uploads"), FILES, OLD)
    environ = {"OFFLOAD_SYNC_STATE": str(sync_state)}
    code, _, err = run_cli("sync", "uploads", "site:blog", "--config", config, environ=environ)
    assert (code, err) == (0, "")
    assert sync_state.exists()
    assert run_cli("backup", "--config", config, environ=environ)[0] == 0


@pytest.mark.rclone
def test_a_copy_between_two_endpoints_streams_through_offload(
    moto_target: Target, rclone_target: Target
):
    config = site_config(Path("offload.toml"), moto_target)
    write_tree(Path("uploads"), FILES, OLD)
    assert run_cli("sync", "uploads", "site:blog", "--config", config)[0] == 0
    rclone_target.put("copy/stale.jpg", b"only at the destination")
    argv = ["site:blog", rclone_target.url("copy"), "--delete", "--config", config]
    code, out, err = rclone_target.sync(*argv)
    assert (code, err) == (0, "")
    shown = f"s3://{moto_target.bucket}/tenant/wp-content/uploads"
    assert sorted(lines(out)) == sorted(
        [f"copy: {shown}/{rel} to {rclone_target.url('copy')}/{rel}" for rel in FILES]
        + [f"delete: {rclone_target.url('copy')}/stale.jpg"]
    )
    assert rclone_target.objects("copy") == FILES
    assert rclone_target.metadata("copy/sub/b.png")["mtime"] == format_mtime(OLD)
    assert rclone_target.sync(*argv) == (0, "", "")


def test_an_unknown_site_is_a_usage_error_naming_the_sites(moto_target: Target):
    config = site_config(Path("offload.toml"), moto_target)
    Path("data").mkdir()
    code, out, err = run_cli("sync", "data", "site:nope", "--config", config)
    assert code == 2
    assert out == ""
    assert "site:nope" in err
    assert "blog" in err
    assert len(lines(err)) == 1


# -- when a file is transferred -----------------------------------------------------------


def test_an_edit_with_an_older_mtime_and_the_same_size_is_uploaded(target: Target):
    write_tree(Path("data"), {"a.jpg": b"version-1"}, OLD)
    assert target.sync("data", target.url())[0] == 0
    write_tree(Path("data"), {"a.jpg": b"version-2"}, OLD - HOUR_NS)  # restored from a backup
    code, out, _ = target.sync("data", target.url())
    assert code == 0
    assert lines(out) == [f"upload: data/a.jpg to {target.url()}/a.jpg"]
    assert target.objects() == {"a.jpg": b"version-2"}


def test_a_file_dated_in_the_future_is_uploaded_once_not_on_every_run(target: Target):
    future = time.time_ns() + 48 * HOUR_NS
    write_tree(Path("data"), {"future.jpg": b"from tomorrow"}, future)
    assert lines(target.sync("data", target.url())[1]) == [
        f"upload: data/future.jpg to {target.url()}/future.jpg"
    ]
    assert target.sync("data", target.url()) == (0, "", "")


def test_without_a_stored_mtime_the_upload_compares_last_modified_then_content(target: Target):
    target.put("a.jpg", b"same size!")
    modified = target.client.head_object(Bucket=target.bucket, Key="a.jpg")["LastModified"]
    write_tree(Path("data"), {"a.jpg": b"SAME SIZE!"}, int(modified.timestamp()) * 10**9)
    assert target.sync("data", target.url()) == (0, "", "")  # the same second: equal
    set_mtime(Path("data/a.jpg"), time.time_ns() - 24 * HOUR_NS)  # older: aws would skip it
    code, out, _ = target.sync("data", target.url())
    assert code == 0
    assert lines(out) == [f"upload: data/a.jpg to {target.url()}/a.jpg"]
    assert target.objects() == {"a.jpg": b"SAME SIZE!"}


def test_size_only_transfers_on_a_size_change_alone(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"12345", "b.jpg": b"123"}, OLD)
    assert moto_target.sync("data", moto_target.url())[0] == 0
    write_tree(Path("data"), {"a.jpg": b"54321"}, OLD + HOUR_NS)  # same size, newer
    write_tree(Path("data"), {"b.jpg": b"1234"}, OLD)  # other size, same time
    code, out, _ = moto_target.sync("data", moto_target.url(), "--size-only")
    assert code == 0
    assert lines(out) == [f"upload: data/b.jpg to {moto_target.url()}/b.jpg"]
    assert moto_target.objects() == {"a.jpg": b"12345", "b.jpg": b"1234"}


def test_checksum_compares_a_single_part_objects_etag_with_the_files_md5(target: Target):
    write_tree(Path("data"), {"same.jpg": b"unchanged", "edit.jpg": b"original"}, OLD)
    assert target.sync("data", target.url())[0] == 0
    set_mtime(Path("data/same.jpg"), OLD + HOUR_NS)  # touched only
    write_tree(Path("data"), {"edit.jpg": b"ORIGINAL"}, OLD)  # new bytes, old size and time
    assert target.sync("data", target.url(), "--dry-run") == (
        0,
        f"(dryrun) upload: data/same.jpg to {target.url()}/same.jpg\n",
        "",
    )
    code, out, _ = target.sync("data", target.url(), "--checksum")
    assert code == 0
    assert lines(out) == [f"upload: data/edit.jpg to {target.url()}/edit.jpg"]
    assert target.objects()["edit.jpg"] == b"ORIGINAL"


def test_checksum_compares_a_multipart_objects_stored_md5(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = big_bytes(5 * MiB + 4096)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    etag = put_in_parts(target, "big.bin", data, {"mtime": format_mtime(OLD), "md5": md5})
    if target.name == "moto":  # rclone answers a whole-file MD5 as any object's ETag
        assert etag.endswith("-2")  # no MD5: only the stored one can say
    write_tree(Path("data"), {"big.bin": data}, OLD + HOUR_NS)  # touched: same bytes
    assert target.sync("data", target.url(), "--checksum") == (0, "", "")
    assert target.sync("data", target.url(), "--checksum") == (0, "", "")  # from the cache

    changed = bytearray(data)
    changed[5 * MiB] ^= 0xFF
    write_tree(Path("data"), {"big.bin": bytes(changed)}, OLD)  # the stored mtime
    assert target.sync("data", target.url()) == (0, "", "")  # size and mtime say "same"
    monkeypatch.setenv("OFFLOAD_SYNC_STATE", str(tmp_path / "fresh-state.sqlite3"))
    code, out, _ = target.sync("data", target.url(), "--checksum")
    assert code == 0
    assert lines(out) == [f"upload: data/big.bin to {target.url()}/big.bin"]
    assert target.objects() == {"big.bin": bytes(changed)}


def test_checksum_downloads_a_file_whose_bytes_differ_at_equal_size_and_mtime(
    moto_target: Target,
):
    write_tree(Path("data"), {"a.jpg": b"bucket bytes", "b.jpg": b"same"}, OLD)
    assert moto_target.sync("data", moto_target.url())[0] == 0
    write_tree(Path("out"), {"a.jpg": b"local! bytes", "b.jpg": b"same"}, OLD)
    assert moto_target.sync(moto_target.url(), "out") == (0, "", "")
    code, out, _ = moto_target.sync(moto_target.url(), "out", "--checksum")
    assert code == 0
    assert lines(out) == [f"download: {moto_target.url()}/a.jpg to out/a.jpg"]
    assert read_tree(Path("out")) == {"a.jpg": b"bucket bytes", "b.jpg": b"same"}


def test_cache_control_and_content_type_options_set_them_on_new_objects(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"a", "b.unknownext": b"b"})
    code, _, _ = moto_target.sync(
        "data", moto_target.url(), "--cache-control", "public, max-age=60", "--jobs", "1"
    )
    assert code == 0
    for key in ("a.jpg", "b.unknownext"):
        head = moto_target.client.head_object(Bucket=moto_target.bucket, Key=key)
        assert head["CacheControl"] == "public, max-age=60"
    code, _, _ = moto_target.sync("data", moto_target.url("typed"), "--content-type", "text/x-test")
    assert code == 0
    head = moto_target.client.head_object(Bucket=moto_target.bucket, Key="typed/a.jpg")
    assert head["ContentType"] == "text/x-test"


def test_an_unusable_state_cache_costs_a_warning_not_the_sync(
    moto_target: Target, monkeypatch: pytest.MonkeyPatch
):
    Path("not-a-folder").write_text("a file where the cache's folder should be")
    monkeypatch.setenv("OFFLOAD_SYNC_STATE", "not-a-folder/sync.sqlite3")
    write_tree(Path("data"), {"a.jpg": b"a"}, OLD)
    code, out, err = moto_target.sync("data", moto_target.url())
    assert code == 0
    assert lines(out) == [f"upload: data/a.jpg to {moto_target.url()}/a.jpg"]
    assert "not-a-folder" in err
    assert moto_target.sync("data", moto_target.url())[0] == 0  # still no second upload


def test_size_only_and_checksum_together_are_a_usage_error(moto_target: Target, capsys):
    Path("data").mkdir()
    with pytest.raises(SystemExit) as exit_:
        moto_target.sync("data", moto_target.url(), "--size-only", "--checksum")
    assert exit_.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


# -- filters ------------------------------------------------------------------------------

TREE = {
    "a.jpg": b"1",
    "a.txt": b"2",
    "sub/b.jpg": b"3",
    "sub/b.log": b"4",
    "sub/deep/c.jpg": b"5",
    "sub/deep/c.JPG": b"6",
    "other/d.png": b"7",
}


def uploaded(target: Target, *filters: str) -> list[str]:
    code, out, err = target.sync("data", target.url(), "--dry-run", *filters)
    assert (code, err) == (0, "")
    start = "(dryrun) upload: data/"
    return sorted(line[len(start) :].split(" to ", 1)[0] for line in lines(out))


def test_exclude_everything_then_include_from_a_file_selects_jpgs_at_any_depth(
    moto_target: Target,
):
    write_tree(Path("data"), TREE)
    Path("sync.include").write_text("# what the CDN serves\n\n*.jpg\n   \n# not logs\n")
    assert uploaded(moto_target, "--exclude", "*", "--include-from", "sync.include") == [
        "a.jpg",
        "sub/b.jpg",
        "sub/deep/c.jpg",
    ]


def test_the_last_matching_filter_wins(moto_target: Target):
    write_tree(Path("data"), TREE)
    assert uploaded(moto_target, "--exclude", "sub/*", "--include", "*.jpg") == [
        "a.jpg",
        "a.txt",
        "other/d.png",
        "sub/b.jpg",
        "sub/deep/c.jpg",
    ]
    assert uploaded(moto_target, "--include", "*.jpg", "--exclude", "sub/*") == [
        "a.jpg",
        "a.txt",
        "other/d.png",
    ]


def test_a_star_in_a_filter_also_matches_slashes(moto_target: Target):
    write_tree(Path("data"), TREE)
    assert uploaded(moto_target, "--exclude", "s*g") == [
        "a.jpg",
        "a.txt",
        "other/d.png",
        "sub/deep/c.JPG",  # matching is case-sensitive
    ]
    assert uploaded(moto_target, "--exclude", "*/c.*") == [
        "a.jpg",
        "a.txt",
        "other/d.png",
        "sub/b.jpg",
        "sub/b.log",
    ]


def test_filters_match_the_whole_relative_path_not_the_name(moto_target: Target):
    write_tree(Path("data"), TREE)
    assert uploaded(moto_target, "--exclude", "b.jpg") == sorted(TREE)
    assert uploaded(moto_target, "--exclude", "sub/b.?pg") == sorted(set(TREE) - {"sub/b.jpg"})


def test_exclude_from_reads_one_pattern_a_line_skipping_comments(moto_target: Target):
    write_tree(Path("data"), TREE)
    Path("sync.exclude").write_text("# noise\n*.log\n\n*.txt\n#*.png\n")
    assert uploaded(moto_target, "--exclude-from", "sync.exclude") == [
        "a.jpg",
        "other/d.png",
        "sub/b.jpg",
        "sub/deep/c.JPG",
        "sub/deep/c.jpg",
    ]


def test_an_excluded_object_at_the_destination_is_never_deleted(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"1"})
    for key in ("keep/x.log", "keep/deeper/y.log", "gone.jpg"):
        moto_target.put(key, b"old")
    code, out, err = moto_target.sync("data", moto_target.url(), "--delete", "--exclude", "keep*")
    assert (code, err) == (0, "")
    assert sorted(lines(out)) == [
        f"delete: {moto_target.url()}/gone.jpg",
        f"upload: data/a.jpg to {moto_target.url()}/a.jpg",
    ]
    assert moto_target.keys() == ["a.jpg", "keep/deeper/y.log", "keep/x.log"]


def test_a_missing_filter_file_is_a_usage_error(moto_target: Target):
    Path("data").mkdir()
    code, _out, err = moto_target.sync("data", moto_target.url(), "--include-from", "nope.txt")
    assert code == 2
    assert "nope.txt" in err
    assert len(lines(err)) == 1


# -- --delete ------------------------------------------------------------------------------


def test_delete_removes_what_the_source_lacks_after_the_transfers(moto_target: Target):
    for key in ("old-1.jpg", "sub/old-2.jpg"):
        moto_target.put(key, b"stale")
    write_tree(Path("data"), FILES, OLD)
    code, out, err = moto_target.sync("data", moto_target.url(), "--delete")
    assert (code, err) == (0, "")
    printed = lines(out)
    url = moto_target.url()
    deletes = [f"delete: {url}/old-1.jpg", f"delete: {url}/sub/old-2.jpg"]
    assert sorted(printed) == sorted(upload_lines(FILES, moto_target.url()) + deletes)
    assert all(line.startswith("upload: ") for line in printed[: len(FILES)])
    assert moto_target.objects() == FILES


def test_delete_in_a_download_removes_local_files_the_bucket_lacks(moto_target: Target):
    moto_target.put("a.jpg", b"keep")
    write_tree(Path("out"), {"a.jpg": b"keep", "extra/z.jpg": b"local only"})
    code, out, _ = moto_target.sync(moto_target.url(), "out", "--delete")
    assert code == 0
    assert "delete: out/extra/z.jpg" in lines(out)
    assert read_tree(Path("out")) == {"a.jpg": b"keep"}


def test_delete_refuses_to_empty_the_bucket_from_an_empty_source_unless_forced(
    moto_target: Target,
):
    Path("empty").mkdir()
    moto_target.put("a.jpg", b"precious")
    code, out, err = moto_target.sync("empty", moto_target.url(), "--delete")
    assert code == 1
    assert out == ""
    assert "deleting nothing" in err
    assert "--force" in err
    assert moto_target.keys() == ["a.jpg"]
    code, out, _ = moto_target.sync("empty", moto_target.url(), "--delete", "--force")
    assert code == 0
    assert lines(out) == [f"delete: {moto_target.url()}/a.jpg"]
    assert moto_target.keys() == []


def test_delete_refuses_to_empty_a_folder_from_an_empty_bucket_prefix(moto_target: Target):
    moto_target.put("photos/a.jpg", b"a")
    write_tree(Path("out"), {"a.jpg": b"a", "b.jpg": b"precious"})
    code, out, err = moto_target.sync(moto_target.url("fotos"), "out", "--delete")  # a typo
    assert code == 1
    assert out == ""
    assert "deleting nothing" in err
    assert read_tree(Path("out")) == {"a.jpg": b"a", "b.jpg": b"precious"}


def test_delete_refuses_more_than_max_delete_unless_forced(moto_target: Target):
    write_tree(Path("data"), {"keep.jpg": b"k"})
    for i in range(3):
        moto_target.put(f"old-{i}.jpg", b"o")
    code, out, err = moto_target.sync("data", moto_target.url(), "--delete", "--max-delete", "2")
    assert code == 1
    assert lines(out) == [f"upload: data/keep.jpg to {moto_target.url()}/keep.jpg"]
    assert "deleting nothing" in err
    assert "--max-delete 2" in err
    assert moto_target.keys() == ["keep.jpg", "old-0.jpg", "old-1.jpg", "old-2.jpg"]
    args = ("data", moto_target.url(), "--delete", "--max-delete", "2", "--force")
    code, out, _ = moto_target.sync(*args)
    assert code == 0
    assert len(lines(out)) == 3
    assert moto_target.keys() == ["keep.jpg"]


def test_delete_within_max_delete_goes_ahead(moto_target: Target):
    write_tree(Path("data"), {"keep.jpg": b"k"})
    for i in range(3):
        moto_target.put(f"old-{i}.jpg", b"o")
    code, _, _ = moto_target.sync("data", moto_target.url(), "--delete", "--max-delete", "3")
    assert code == 0
    assert moto_target.keys() == ["keep.jpg"]


@pytest.mark.rclone
def test_over_a_thousand_objects_are_listed_in_pages_and_deleted_in_batches(
    rclone_target: Target,
):
    files = {f"f{i:04d}.txt": b"%d" % i for i in range(1003)}
    write_tree(Path("data"), files, OLD)
    code, out, _ = rclone_target.sync("data", rclone_target.url("many"))
    assert code == 0
    assert len(lines(out)) == 1003
    assert rclone_target.sync("data", rclone_target.url("many"), "--delete") == (0, "", "")
    for rel in list(files)[1:]:
        Path("data", rel).unlink()
    code, out, err = rclone_target.sync("data", rclone_target.url("many"), "--delete")
    assert code == 1  # 1,002 > the default --max-delete of 1,000
    assert "deleting nothing" in err
    code, out, _ = rclone_target.sync("data", rclone_target.url("many"), "--delete", "--force")
    assert code == 0
    assert len(lines(out)) == 1002
    assert rclone_target.keys("many") == ["f0000.txt"]


@pytest.mark.parametrize("engine_name", ["awscrt", "boto3"])
def test_listings_merge_in_key_order_across_pages_and_batches(
    target: Target, monkeypatch: pytest.MonkeyPatch, engine_name: str
):
    # Pages of 3 and batches of 2, so every boundary falls somewhere in the middle.
    monkeypatch.setattr(march, "PAGE", 3)
    monkeypatch.setattr(march, "BATCH", 2)
    monkeypatch.setattr(march, "AHEAD", 1)
    if engine_name == "boto3":  # boto3's listing is paged by offload, 3 objects a page
        monkeypatch.setenv("OFFLOAD_NO_CRT", "1")
    folder = {f"{name}.jpg": name.encode() for name in "acdfghkmnpqstvwy"}
    bucket = {f"{name}.jpg": b"stale " + name.encode() for name in "abdeghijmoprsuxz"}
    for rel, body in bucket.items():
        target.put(rel, body)
    write_tree(Path("data"), folder, OLD)
    code, out, err = target.sync("data", target.url(), "--delete")
    assert (code, err) == (0, "")
    uploads = [line.split()[1].removeprefix("data/") for line in lines(out) if "upload" in line]
    deletes = [line.split()[1].rsplit("/", 1)[1] for line in lines(out) if "delete" in line]
    assert sorted(uploads) == sorted(folder)  # every pair differs in size
    assert sorted(deletes) == sorted(set(bucket) - set(folder))
    assert target.objects() == folder
    assert target.sync("data", target.url(), "--delete") == (0, "", "")


def test_nothing_is_deleted_when_a_transfer_failed(moto_target: Target):
    moto_target.put("old.jpg", b"stale")
    write_tree(Path("data"), {"new.jpg": b"fresh"})
    code, out, err = moto_target.sync(
        "data", moto_target.url(), "--delete", "--storage-class", "NO-SUCH-CLASS"
    )
    assert code == 1
    assert out == ""
    assert f"upload failed: data/new.jpg to {moto_target.url()}/new.jpg" in err
    assert "deleting nothing" in err
    assert "Traceback" not in err
    assert moto_target.keys() == ["old.jpg"]


# -- --dry-run -------------------------------------------------------------------------------


@pytest.mark.rclone
def test_dry_run_writes_nothing_to_the_servers_folder_or_the_state_cache(
    rclone_target: Target, sync_state: Path
):
    write_tree(Path("data"), FILES, OLD)
    assert rclone_target.sync("data", rclone_target.url())[0] == 0
    rclone_target.put("extra.jpg", b"only in the bucket")
    write_tree(Path("data"), {"a.jpg": b"AAAA-longer"}, OLD)  # size changed
    set_mtime(Path("data/sub/b.png"), OLD + HOUR_NS)  # touched: needs the stored mtime
    write_tree(Path("data"), {"new.jpg": b"new"}, OLD)
    assert rclone_target.root is not None
    bucket_before, state_before = snapshot(rclone_target.root), snapshot(sync_state.parent)

    code, out, err = rclone_target.sync("data", rclone_target.url(), "--dry-run", "--delete")
    assert (code, err) == (0, "")
    url = rclone_target.url()
    assert sorted(lines(out)) == [
        f"(dryrun) delete: {url}/extra.jpg",
        f"(dryrun) upload: data/a.jpg to {url}/a.jpg",
        f"(dryrun) upload: data/new.jpg to {url}/new.jpg",
        f"(dryrun) upload: data/sub/b.png to {url}/sub/b.png",
    ]
    assert snapshot(rclone_target.root) == bucket_before
    assert snapshot(sync_state.parent) == state_before


def test_dry_run_creates_no_state_cache_when_there_is_none(moto_target: Target, sync_state: Path):
    moto_target.put("a.jpg", b"same")  # equal sizes: the run looks for a stored mtime
    write_tree(Path("data"), {"a.jpg": b"same"}, OLD)  # other times, same bytes: equal
    code, out, _ = moto_target.sync("data", moto_target.url(), "--dry-run")
    assert code == 0
    assert out == ""
    assert not sync_state.exists()
    assert not sync_state.parent.exists()


def test_dry_run_of_a_download_creates_no_folder(moto_target: Target):
    moto_target.put("sub/a.jpg", b"a")
    code, out, err = moto_target.sync(moto_target.url(), "new/folder", "--dry-run")
    assert (code, err) == (0, "")
    url = moto_target.url()
    assert lines(out) == [f"(dryrun) download: {url}/sub/a.jpg to new/folder/sub/a.jpg"]
    assert not Path("new").exists()


def test_dry_run_deletes_no_local_file_and_no_partial_download(moto_target: Target):
    write_tree(Path("out"), {"local-only.jpg": b"x", f"{PARTIAL_PREFIX}0a1b2c3d-a.jpg": b"half"})
    moto_target.put("a.jpg", b"a")
    before = snapshot(Path("out"))
    code, out, _ = moto_target.sync(moto_target.url(), "out", "--delete", "--dry-run")
    assert code == 0
    assert sorted(lines(out)) == [
        "(dryrun) delete: out/local-only.jpg",
        f"(dryrun) download: {moto_target.url()}/a.jpg to out/a.jpg",
    ]
    assert snapshot(Path("out")) == before


# -- interrupted runs -------------------------------------------------------------------------


def test_a_partial_download_left_by_a_killed_run_is_removed_by_the_next_run(moto_target: Target):
    moto_target.put("sub/a.jpg", b"whole")
    partial = write_tree(Path("out/sub"), {f"{PARTIAL_PREFIX}0a1b2c3d-a.jpg": b"wh"})
    code, out, _ = moto_target.sync(moto_target.url(), "out")
    assert code == 0
    assert lines(out) == [f"download: {moto_target.url()}/sub/a.jpg to out/sub/a.jpg"]
    assert sorted(p.name for p in partial.iterdir()) == ["a.jpg"]


def test_a_partial_download_name_in_a_source_folder_is_never_uploaded(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"a", f"{PARTIAL_PREFIX}0a1b2c3d-b.jpg": b"half"})
    code, _out, err = moto_target.sync("data", moto_target.url())
    assert (code, err) == (0, "")
    assert moto_target.keys() == ["a.jpg"]
    assert Path("data", f"{PARTIAL_PREFIX}0a1b2c3d-b.jpg").exists()


def test_an_interrupted_multipart_upload_of_a_key_written_again_is_aborted(target: Target):
    target.client.create_multipart_upload(Bucket=target.bucket, Key="site/big.bin")
    write_tree(Path("data"), {"big.bin": b"small now"}, OLD)
    assert target.sync("data", target.url("site"), "--dry-run")[0] == 0
    assert [upload["Key"] for upload in target.uploads()] == ["site/big.bin"]  # a dry run
    assert target.sync("data", target.url("site"))[0] == 0
    assert target.uploads() == []
    assert target.objects("site") == {"big.bin": b"small now"}


@pytest.mark.rclone
def test_a_recent_multipart_upload_of_another_key_is_left_to_its_writer(rclone_target: Target):
    # moto dates every multipart upload 2010-11-10: only a real server shows a recent one.
    rclone_target.client.create_multipart_upload(Bucket=rclone_target.bucket, Key="site/other.bin")
    write_tree(Path("data"), {"big.bin": b"small"}, OLD)
    assert rclone_target.sync("data", rclone_target.url("site"))[0] == 0
    assert [upload["Key"] for upload in rclone_target.uploads()] == ["site/other.bin"]


@pytest.mark.rclone
def test_a_killed_upload_rerun_leaves_the_bucket_equal_to_the_source(
    rclone_target: Target, tmp_path: Path
):
    """SIGKILL as soon as the first upload lands; the same command again finishes the job."""
    files = media_files(400)
    files["0-big.bin"] = big_bytes(12 * MiB)  # first in key order: in flight from the start
    write_tree(tmp_path / "data", files, OLD)
    rclone_target.put("site/stale.jpg", b"in the bucket only")  # not to be deleted
    assert rclone_target.endpoint_url is not None
    command = offload_command(
        "sync", "data", rclone_target.url("site"), "--endpoint-url", rclone_target.endpoint_url
    )
    env = subprocess_env(tmp_path, rclone_target.credentials)
    # boto3 alone for the killed run: slower than awscrt, so there is time to kill
    # it mid-way, and the 12 MB file goes multipart (above 8 MiB), so the kill can
    # leave an incomplete multipart upload for the rerun to clean up.
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**env, "OFFLOAD_NO_CRT": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    landed = 1  # stale.jpg
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline and landed < 2:
            landed = len(rclone_target.keys("site"))
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=30)
    killed = rclone_target.objects("site")
    assert killed != dict(files, **{"stale.jpg": b"in the bucket only"}), "it finished first"
    assert landed >= 2, err.decode()

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert rerun.stderr == b""
    assert rclone_target.objects("site") == dict(files, **{"stale.jpg": b"in the bucket only"})
    assert rclone_target.uploads() == []


# -- output ------------------------------------------------------------------------------------


def test_warnings_go_to_stderr_and_the_run_exits_5(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"a"})
    Path("data/broken.jpg").symlink_to("nowhere.jpg")
    code, out, err = moto_target.sync("data", moto_target.url())
    assert code == 5
    assert lines(out) == [f"upload: data/a.jpg to {moto_target.url()}/a.jpg"]
    [warning] = lines(err)
    assert warning.startswith("warning: skipping ")
    assert warning.endswith("data/broken.jpg: broken symbolic link")


def test_quiet_prints_nothing_but_keeps_the_exit_code(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"a"})
    Path("data/broken.jpg").symlink_to("nowhere.jpg")
    assert moto_target.sync("data", moto_target.url(), "--quiet") == (5, "", "")
    assert moto_target.keys() == ["a.jpg"]


def test_only_show_errors_prints_warnings_and_failures_but_no_actions(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"a"})
    Path("data/broken.jpg").symlink_to("nowhere.jpg")
    code, out, err = moto_target.sync("data", moto_target.url(), "--only-show-errors")
    assert (code, out) == (5, "")
    assert len(lines(err)) == 1
    assert "broken.jpg" in err
    code, out, err = moto_target.sync(
        "data", moto_target.url("x"), "--only-show-errors", "--storage-class", "NO-SUCH-CLASS"
    )
    assert (code, out) == (1, "")
    assert "upload failed: data/a.jpg" in err


def test_json_prints_one_object_per_action_and_a_closing_summary(moto_target: Target):
    moto_target.put("old.jpg", b"o")
    write_tree(Path("data"), {"a.jpg": b"aa", "b.jpg": b"bbb"})
    Path("data/broken.jpg").symlink_to("nowhere.jpg")
    code, out, err = moto_target.sync("data", moto_target.url(), "--json", "--delete")
    assert code == 5
    records = [json.loads(line) for line in lines(out)]  # nothing but JSON on stdout
    actions = sorted(
        (r["action"], r["source"], r["destination"], r["size"], r["status"])
        for r in records
        if "action" in r
    )
    url = moto_target.url()
    assert actions == [
        ("delete", f"{url}/old.jpg", None, 1, "ok"),
        ("upload", "data/a.jpg", f"{url}/a.jpg", 2, "ok"),
        ("upload", "data/b.jpg", f"{url}/b.jpg", 3, "ok"),
    ]
    warned = [r["warning"] for r in records if "warning" in r] + lines(err)
    assert len(warned) == 1
    assert warned[0].endswith("broken symbolic link")
    summary = records[-1]["summary"]
    assert summary["exit_code"] == 5
    assert (summary["transferred"], summary["bytes"], summary["deleted"]) == (2, 5, 1)
    assert summary["warnings"] == 1


def test_json_of_a_dry_run_marks_each_action(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"aa"})
    code, out, _ = moto_target.sync("data", moto_target.url(), "--json", "--dry-run")
    assert code == 0
    first, summary = (json.loads(line) for line in lines(out))
    assert first["dryrun"] is True
    assert first["action"] == "upload"
    assert summary["summary"]["exit_code"] == 0
    assert moto_target.keys() == []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_is_drawn_only_on_a_terminal(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"aa"})
    out, err = io.StringIO(), Terminal()
    argv = ["sync", "data", moto_target.url("tty"), *moto_target.endpoint_args]
    assert main(argv, Environment(stdout=out, stderr=err, environ={})) == 0
    assert "files 1/1" in err.getvalue()
    assert lines(out.getvalue()) == [f"upload: data/a.jpg to {moto_target.url('tty')}/a.jpg"]
    assert moto_target.sync("data", moto_target.url("pipe")) == (
        0,
        f"upload: data/a.jpg to {moto_target.url('pipe')}/a.jpg\n",
        "",
    )


# -- exit codes -----------------------------------------------------------------------------


#: An endpoint that is never reached: the arguments are refused before any request.
CLOSED = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sync", "data", "s3://bucket-x", "--jobs", "0"], "--jobs"),
        (["sync", "s3://bucket-x/a", "s3://bucket-x/b", "--mode", "merge"], "merge"),
        (["sync", "data", "http://example.com/x"], "s3://"),
        (["sync", "data", "s3://bucket-x/../up"], "prefix"),
        (["sync", "data", "s3://bucket-x", "--endpoint-url", "not-a-url"], "not-a-url"),
        (["sync", "data", "s3://bad:bucket/x", "--endpoint-url", CLOSED], "bad:bucket"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, says):
    Path("data").mkdir()
    code, out, err = run_cli(*argv)
    assert code == 2
    assert out == ""
    assert len(lines(err)) == 1
    assert says in err


def test_a_broken_config_file_exits_3(tmp_path: Path):
    Path("data").mkdir()
    config = tmp_path / "offload.toml"
    config.write_text('[sites.blog]\nstorage = "s3://bucket-x"\nmax_age = "soon"\n')
    code, out, err = run_cli("sync", "data", "site:blog", "--config", config)
    assert code == 3
    assert out == ""
    assert "max_age" in err
    assert "Traceback" not in err


def test_an_unreachable_endpoint_exits_4_with_one_line(aws_env):
    write_tree(Path("data"), {"a.jpg": b"a"})
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code, out, err = run_cli(
        "sync", "data", "s3://bucket-x/p", "--endpoint-url", f"http://127.0.0.1:{port}"
    )
    assert code == 4
    assert out == ""
    assert len(lines(err)) == 1
    assert f"127.0.0.1:{port}" in err


def test_a_missing_bucket_exits_4_with_one_line(moto_target: Target):
    Path("data").mkdir()
    missing = moto_target.url(bucket=f"{moto_target.bucket}-missing")
    code, out, err = moto_target.sync("data", missing)
    assert code == 4
    assert out == ""
    assert len(lines(err)) == 1
    assert "does not exist" in err


def test_command_line_mistakes_exit_2_without_a_traceback_in_a_real_process(tmp_path: Path):
    Path("data").mkdir()
    env = subprocess_env(tmp_path, {})
    for argv in (
        ["sync", "data", "s3://bucket-x", "--max-delete", "many"],
        ["sync", "data", "s3://bucket-x", "--jobs", "0"],
    ):
        done = subprocess.run(
            offload_command(*argv), cwd=tmp_path, env=env, capture_output=True, timeout=60
        )
        assert done.returncode == 2, argv
        assert done.stdout == b""
        assert b"Traceback" not in done.stderr
        assert b"error" in done.stderr.splitlines()[-1]


# -- awkward files ---------------------------------------------------------------------------


def test_awkward_files_are_skipped_with_warnings_and_their_objects_kept(moto_target: Target):
    write_tree(Path("data"), {"a.jpg": b"a", "sub/b.jpg": b"b"}, OLD)
    Path("data/broken.jpg").symlink_to("nowhere.jpg")
    Path("data/sub/loop").symlink_to("..")
    os.close(os.open(b"data/caf\xe9.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    os.mkfifo("data/pipe")
    moto_target.put("broken.jpg", b"the last good copy")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("data/sock")
        code, out, err = moto_target.sync("data", moto_target.url(), "--delete")
    assert code == 5
    assert sorted(lines(out)) == upload_lines({"a.jpg": 1, "sub/b.jpg": 1}, moto_target.url())
    warnings = lines(err)
    assert len(warnings) == 5, err
    assert all(line.startswith("warning: ") for line in warnings)
    for what in ("broken.jpg", "loop", "caf", "pipe", "sock"):
        assert any(what in line for line in warnings), what
    assert moto_target.objects() == {
        "a.jpg": b"a",
        "broken.jpg": b"the last good copy",
        "sub/b.jpg": b"b",
    }


def test_a_followed_symlink_uploads_the_target_bytes(moto_target: Target):
    write_tree(Path("elsewhere"), {"x.jpg": b"linked bytes", "dir/y.jpg": b"y"})
    Path("data").mkdir()
    Path("data/x.jpg").symlink_to(Path("elsewhere/x.jpg").resolve())
    Path("data/dir").symlink_to(Path("elsewhere/dir").resolve())
    code, _, err = moto_target.sync("data", moto_target.url())
    assert (code, err) == (0, "")
    assert moto_target.objects() == {"dir/y.jpg": b"y", "x.jpg": b"linked bytes"}


def test_a_file_that_vanishes_before_its_upload_is_a_warning_not_a_crash(
    moto_target: Target, monkeypatch: pytest.MonkeyPatch
):
    write_tree(Path("data"), {"a.jpg": b"a", "gone.jpg": b"soon gone", "z.jpg": b"z"})
    real_walk = march.walk

    def vanishing_walk(root, warn, leftover=None, **options):
        for found in real_walk(root, warn, leftover, **options):
            if found.rel == "gone.jpg":
                os.unlink(found.path)  # listed, then deleted by someone else
            yield found

    monkeypatch.setattr(march, "walk", vanishing_walk)
    code, out, err = moto_target.sync("data", moto_target.url())
    assert code == 5
    assert sorted(lines(out)) == upload_lines({"a.jpg": 1, "z.jpg": 1}, moto_target.url())
    assert len(lines(err)) == 1
    assert "gone.jpg" in err
    assert "vanished" in err
    assert moto_target.keys() == ["a.jpg", "z.jpg"]


def test_names_that_differ_only_in_unicode_normalisation_stay_two_objects(target: Target):
    nfc = unicodedata.normalize("NFC", "café.jpg")
    nfd = unicodedata.normalize("NFD", "café.jpg")
    write_tree(Path("data"), {nfc: b"composed", nfd: b"decomposed"}, OLD)
    assert target.sync("data", target.url())[0] == 0
    assert target.objects() == {nfc: b"composed", nfd: b"decomposed"}
    assert target.sync("data", target.url()) == (0, "", "")
    assert target.sync(target.url(), "out")[0] == 0
    assert read_tree(Path("out")) == {nfc: b"composed", nfd: b"decomposed"}
    assert target.sync(target.url(), "out") == (0, "", "")


def test_a_long_multibyte_name_downloads_like_any_other(moto_target: Target):
    name = "\u00e9" * 120 + ".jpg"  # 244 bytes: a valid file name (the limit is 255)
    ascii_name = "a" * 250 + ".jpg"
    for key in (name, ascii_name):
        moto_target.put(f"long/{key}", key.encode())
    code, out, err = moto_target.sync(moto_target.url("long"), "out")
    assert (code, err) == (0, "")
    assert read_tree(Path("out")) == {name: name.encode(), ascii_name: ascii_name.encode()}
    assert len(lines(out)) == 2


def test_tricky_names_list_in_walk_order_and_round_trip(target: Target):
    names = ["a-b", "a/b", "a0", "é", "Z", "_", "a b+c.jpg", "%41.jpg", "sub/ü/x.jpg", "sub/u"]
    files = {name: name.encode() for name in names}
    write_tree(Path("data"), files, OLD)
    assert target.sync("data", target.url("t"))[0] == 0
    assert target.keys("t") == sorted(names, key=lambda s: s.encode("utf-8"))
    assert target.sync("data", target.url("t")) == (0, "", "")
    assert target.sync(target.url("t"), "out")[0] == 0
    assert read_tree(Path("out")) == files
    assert target.sync(target.url("t"), "out", "--delete") == (0, "", "")
    assert target.sync("data", target.url("t"), "--delete") == (0, "", "")


# -- modes ---------------------------------------------------------------------------------------


def test_merge_makes_two_web_heads_converge_without_deleting(moto_target: Target):
    moto_target.put("shared/logo.png", b"from the bucket")
    write_tree(Path("head-a"), {"2024/a.jpg": b"uploaded on A"}, OLD)
    write_tree(Path("head-b"), {"2024/b.jpg": b"uploaded on B"}, OLD + HOUR_NS)
    for head in ("head-a", "head-b", "head-a"):
        code, _, err = moto_target.sync(head, moto_target.url(), "--mode", "merge")
        assert (code, err) == (0, ""), head
    everything = {
        "2024/a.jpg": b"uploaded on A",
        "2024/b.jpg": b"uploaded on B",
        "shared/logo.png": b"from the bucket",
    }
    assert read_tree(Path("head-a")) == everything
    assert read_tree(Path("head-b")) == everything
    assert moto_target.objects() == everything
    assert moto_target.sync("head-b", moto_target.url(), "--mode", "merge") == (0, "", "")


def test_merge_carries_an_edit_from_one_head_to_the_other(moto_target: Target):
    write_tree(Path("head-a"), {"a.jpg": b"version 1"}, OLD)
    Path("head-b").mkdir()
    for head in ("head-a", "head-b"):
        assert moto_target.sync(head, moto_target.url(), "--mode", "merge")[0] == 0, head
    assert read_tree(Path("head-b")) == {"a.jpg": b"version 1"}
    write_tree(Path("head-a"), {"a.jpg": b"version 2"}, OLD + HOUR_NS)  # edited on A
    for head in ("head-a", "head-b"):
        assert moto_target.sync(head, moto_target.url(), "--mode", "merge")[0] == 0, head
    assert moto_target.objects() == {"a.jpg": b"version 2"}  # B's older copy must not win
    assert read_tree(Path("head-b")) == {"a.jpg": b"version 2"}


def test_merge_pulls_objects_into_a_folder_given_as_the_destination(moto_target: Target):
    moto_target.put("a.jpg", b"a")
    write_tree(Path("head"), {"b.jpg": b"b"})
    code, _, _ = moto_target.sync(moto_target.url(), "head", "--mode", "merge")
    assert code == 0
    assert read_tree(Path("head")) == {"a.jpg": b"a", "b.jpg": b"b"}
    assert moto_target.keys() == ["a.jpg", "b.jpg"]


def test_mirror_mode_deletes_like_delete(moto_target: Target):
    moto_target.put("stale.jpg", b"old")
    write_tree(Path("data"), {"a.jpg": b"a"}, OLD)
    code, out, _ = moto_target.sync("data", moto_target.url(), "--mode", "mirror")
    assert code == 0
    assert f"delete: {moto_target.url()}/stale.jpg" in lines(out)
    assert moto_target.objects() == {"a.jpg": b"a"}


# -- backup --------------------------------------------------------------------------------------


def test_backup_copies_the_sites_keys_by_size_prints_nothing_and_deletes_nothing(
    target: Target,
):
    backup = target.new_bucket(f"{target.bucket}-backup")
    config = site_config(Path("offload.toml"), target, backup=f"s3://{backup}/snap")
    write_tree(Path("uploads"), FILES, OLD)
    assert run_cli("sync", "uploads", "site:blog", "--config", config)[0] == 0
    target.put("tenant/elsewhere/x.jpg", b"not under the site prefix")
    target.put("snap/only-in-backup.jpg", b"keep me", bucket=backup)
    assert run_cli("backup", "--config", config) == (0, "", "")
    expected = {f"wp-content/uploads/{rel}": data for rel, data in FILES.items()}
    expected["only-in-backup.jpg"] = b"keep me"  # elsewhere/x.jpg is not the site's
    assert target.objects("snap", bucket=backup) == expected
    mtime = target.metadata("snap/wp-content/uploads/a.jpg", bucket=backup)["mtime"]
    assert mtime == format_mtime(OLD)

    target.put("tenant/wp-content/uploads/a.jpg", b"aaaa")  # same size: not copied again
    target.put("tenant/wp-content/uploads/sub/b.png", b"grown bigger")
    assert run_cli("backup", "--config", config, "--site", "blog") == (0, "", "")
    after = target.objects("snap", bucket=backup)
    assert after["wp-content/uploads/a.jpg"] == b"AAAA"
    assert after["wp-content/uploads/sub/b.png"] == b"grown bigger"


def test_backup_without_a_backup_target_is_a_usage_error(moto_target: Target):
    config = site_config(Path("offload.toml"), moto_target)
    code, _, err = run_cli("backup", "--config", config)
    assert code == 2
    assert "backup" in err


# -- archive and check-layout ---------------------------------------------------------------


def _archive_members(path_or_bytes: Path | bytes, mode: str) -> dict[str, bytes]:
    import tarfile

    fileobj = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else None
    name = None if fileobj else str(path_or_bytes)
    with tarfile.open(name=name, fileobj=fileobj, mode=mode) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
        }


@pytest.mark.parametrize(("suffix", "mode"), [(".tar.xz", "r:xz"), (".tar.gz", "r:gz")])
def test_archive_writes_a_prefix_as_a_tarball_named_by_the_suffix(
    target: Target, tmp_path: Path, suffix: str, mode: str
):
    target.put("item-42/originals/a.tif", b"original bytes")
    target.put("item-42/thumbnails/a.jpg", b"thumb")
    target.put("item-43/originals/b.tif", b"not in the archive")
    out = tmp_path / f"item-42{suffix}"
    code, stdout, err = run_cli("archive", target.url("item-42"), out, *target.endpoint_args)
    assert (code, err) == (0, "")
    assert stdout == f"archived 2 objects (19 bytes) to {out}\n"
    assert _archive_members(out, mode) == {
        "originals/a.tif": b"original bytes",
        "thumbnails/a.jpg": b"thumb",
    }
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_archive_to_stdout_streams_a_gzipped_tarball(moto_target: Target, tmp_path: Path):
    moto_target.put("set/a.jpg", b"A" * 5000)
    moto_target.put("set/b/c.jpg", b"C")
    result = subprocess.run(
        offload_command("archive", moto_target.url("set"), "-", *moto_target.endpoint_args),
        env=subprocess_env(tmp_path, moto_target.credentials),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _archive_members(result.stdout, "r:gz") == {"a.jpg": b"A" * 5000, "b/c.jpg": b"C"}


def test_archive_with_an_unknown_suffix_is_a_usage_error(moto_target: Target, tmp_path: Path):
    code, _out, err = run_cli(
        "archive", moto_target.url("set"), tmp_path / "set.zip", *moto_target.endpoint_args
    )
    assert code == 2
    assert "name it .tar.gz" in err


def test_check_layout_passes_a_complete_layout(target: Target):
    target.put("item/originals/a.TIF", b"x")
    target.put("item/originals/b.png", b"x")
    target.put("item/thumbnails/a.jpg", b"x")
    code, out, err = run_cli(
        "check-layout", target.url("item"), "--require", "originals,thumbnails",
        "--types", "originals=jpg,png,tif", "--types", "thumbnails=jpg,png",
        *target.endpoint_args,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out == "ok: 3 objects (originals/ 2, thumbnails/ 1)\n"


def test_check_layout_reports_missing_folders_and_wrong_types_and_exits_1(moto_target: Target):
    moto_target.put("item/originals/a.gif", b"x")
    moto_target.put("item/originals/notes", b"x")
    moto_target.put("item/extra/readme.txt", b"x")
    code, out, _err = run_cli(
        "check-layout", moto_target.url("item"), "--require", "originals,thumbnails",
        "--types", "originals=jpg,png,tif", *moto_target.endpoint_args,
    )  # fmt: skip
    assert code == 1
    bucket = moto_target.url("item")
    assert out.splitlines() == [
        f"{bucket}/thumbnails/: required folder is missing",
        f"{bucket}/originals/a.gif: type gif is not allowed in originals/ (allowed: jpg, png, tif)",
        f"{bucket}/originals/notes: no extension is not allowed in originals/ "
        "(allowed: jpg, png, tif)",
        "3 problem(s): 3 objects (originals/ 2, thumbnails/ 0)",
    ]


def test_check_layout_with_a_malformed_types_option_is_a_usage_error(moto_target: Target):
    code, _out, err = run_cli(
        "check-layout", moto_target.url("item"), "--require", "originals",
        "--types", "originals", *moto_target.endpoint_args,
    )  # fmt: skip
    assert code == 2
    assert "write FOLDER=ext,ext" in err


def test_deletions_past_the_memory_bound_wait_in_a_file_and_then_all_go(
    target: Target, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(spool, "IN_MEMORY", 2)
    monkeypatch.setattr(spool, "WRITE_EVERY", 3)
    monkeypatch.setattr(delete, "DELETE_BATCH", 4)
    write_tree(Path("data"), {"keep.jpg": b"k"})
    for i in range(9):
        target.put(f"old-{i}.jpg", b"o")
    code, out, err = target.sync("data", target.url(), "--delete", "--max-delete", "8")
    assert code == 1
    assert "9 files would go, more than --max-delete 8" in err  # counted from the file too
    assert len(target.keys()) == 10
    code, out, _ = target.sync("data", target.url(), "--delete")
    assert code == 0
    assert lines(out) == [f"delete: {target.url()}/old-{i}.jpg" for i in range(9)]
    assert target.keys() == ["keep.jpg"]


def test_a_temporary_folder_that_cannot_hold_the_deletions_list_means_nothing_is_deleted(
    moto_target: Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setattr(spool, "IN_MEMORY", 1)
    monkeypatch.setattr(spool, "WRITE_EVERY", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    write_tree(Path("data"), {"keep.jpg": b"k"})
    for i in range(3):
        moto_target.put(f"old-{i}.jpg", b"o")
    code, out, err = moto_target.sync("data", moto_target.url(), "--delete")
    assert code == 1
    assert lines(out) == [f"upload: data/keep.jpg to {moto_target.url()}/keep.jpg"]
    assert "deleting nothing: cannot keep the list of what to delete" in err
    assert "Traceback" not in err
    assert moto_target.keys() == ["keep.jpg", "old-0.jpg", "old-1.jpg", "old-2.jpg"]


def test_a_sync_leaves_the_garbage_collector_of_its_host_program_as_it_was(moto_target: Target):
    before = gc.get_threshold(), gc.get_freeze_count()
    write_tree(Path("data"), {"a.jpg": b"a"})
    assert moto_target.sync("data", moto_target.url())[0] == 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before

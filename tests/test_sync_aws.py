"""``offload sync`` side by side with the real ``aws s3 sync`` (awscli), against moto's server.

Where the two agree, both tools run the same command on the same tree, each into
its own prefix of one bucket, and what they print (with the prefix and folder
names made alike) and what lands must be the same. Each deliberate difference
has its own test, showing what aws does and what offload does instead.

The peer runs against moto over HTTP, not ``rclone serve s3``: the aws CLI's
uploads to rclone stall on a response it cannot parse after ``Expect:
100-continue`` (about one PUT in ten, each waiting out the 60 s read timeout
before a retry), which says nothing about either sync.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from offload.storage.objectmeta import format_mtime
from tests.helpers import run_cli
from tests.storage_servers import s3_client
from tests.sync_helpers import (
    HOUR_NS,
    Target,
    bucket_objects,
    fresh_bucket,
    lines,
    moto_server,
    set_mtime,
    subprocess_env,
    write_tree,
)

AWS = Path(sys.executable).with_name("aws")
OLD = 1_700_000_000_123_456_789
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
#: offload's spelling of a flag -> aws's.
AWS_FLAGS = {"--dry-run": "--dryrun"}
TREE = {
    "a.jpg": b"a" * 10,
    "a.txt": b"text",
    "empty.jpg": b"",
    "with space.jpg": b"spaced",
    "caf\u00e9/\u00fcber.png": b"unicode",
    "sub/b.jpg": b"bb",
    "sub/b.log": b"log",
    "sub/deep/c.jpg": b"ccc",
    "other/d.png": b"dddd",
}


@dataclass
class Peer:
    """Both tools over one bucket at ``endpoint``, run from ``home``."""

    endpoint: str
    bucket: str
    home: Path
    target: Target

    def aws(self, *argv: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [str(AWS), "s3", *argv, "--endpoint-url", self.endpoint, "--no-progress"],
            cwd=self.home,
            env=subprocess_env(self.home, CREDENTIALS),
            capture_output=True,
            timeout=120,
        )
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def offload(self, *argv: str) -> tuple[int, str, str]:
        return run_cli(*argv, *self.target.endpoint_args)

    def both(self, src: str, dst: str, *flags: str) -> tuple[list[str], list[str]]:
        """Run ``sync SRC DST FLAGS`` with each tool; ``{tool}`` in SRC/DST names its place.

        Returns each tool's printed lines, sorted, with its own names replaced by TOOL.
        """
        printed = []
        for tool, run in (("aws", self.aws), ("offload", self.offload)):
            argv = [AWS_FLAGS.get(flag, flag) for flag in flags] if tool == "aws" else flags
            code, out, err = run("sync", src.format(tool=tool), dst.format(tool=tool), *argv)
            assert code == 0, f"{tool}: {err}"
            printed.append(sorted(normalise(out, tool)))
        return printed[0], printed[1]

    def objects(self, prefix: str) -> dict[str, bytes]:
        return bucket_objects(self.target.client, self.bucket, prefix)

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


def normalise(out: str, tool: str) -> list[str]:
    return [line.replace(tool, "TOOL") for line in lines(out)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _peer(endpoint: str, home: Path, patch: pytest.MonkeyPatch) -> tuple[Peer, Any]:
    """A fresh bucket, and this process's environment set up as the aws subprocess's."""
    for name, value in subprocess_env(home, CREDENTIALS).items():
        patch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        patch.delenv(name, raising=False)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        patch.delenv(name, raising=False)
    patch.chdir(home)
    client = s3_client(endpoint_url=endpoint)
    bucket = fresh_bucket()
    client.create_bucket(Bucket=bucket)
    target = Target("moto", client, bucket, endpoint_url=endpoint, credentials=CREDENTIALS)
    return Peer(endpoint, bucket, home, target), client


@pytest.fixture
def peer(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Peer]:
    made, client = _peer(endpoint, tmp_path, monkeypatch)
    yield made
    client.close()


# -- one shared scenario: a first upload, then a second run after an awkward edit -----------


@dataclass
class Rounds:
    """What each tool printed in each round (aws first), and what the first round stored."""

    dry: tuple[list[str], list[str]]
    first: tuple[list[str], list[str]]
    second: tuple[list[str], list[str]]
    objects: tuple[dict[str, bytes], dict[str, bytes]]
    metadata: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]


def _metadata(client, bucket: str, prefix: str, rels) -> dict[str, dict[str, str]]:
    found = {}
    for rel in rels:
        head = client.head_object(Bucket=bucket, Key=f"{prefix}/{rel}")
        found[rel] = {name.lower(): value for name, value in head["Metadata"].items()}
    return found


@pytest.fixture(scope="module")
def rounds(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Rounds:
    """Both tools over the same tree: a dry run, a first run, and a second run.

    Before the first round ``future.jpg`` is dated two days ahead. Between the
    first and second rounds ``a.jpg`` gets new bytes of the same size and an
    *older* mtime (a file restored from a backup).
    """
    home = tmp_path_factory.mktemp("aws-rounds")
    tree = dict(TREE, **{"future.jpg": b"tomorrow"})
    write_tree(home / "data", tree, OLD)
    set_mtime(home / "data" / "future.jpg", time.time_ns() + 48 * HOUR_NS)
    with pytest.MonkeyPatch.context() as patch:
        peer, client = _peer(endpoint, home, patch)
        try:
            dest = peer.url("{tool}")
            dry = peer.both("data", dest, "--dry-run")
            first = peer.both("data", dest)
            objects = (peer.objects("aws"), peer.objects("offload"))
            metadata = (
                _metadata(client, peer.bucket, "aws", tree),
                _metadata(client, peer.bucket, "offload", tree),
            )
            write_tree(home / "data", {"a.jpg": b"A" * 10}, OLD - HOUR_NS)
            second = peer.both("data", dest)
        finally:
            client.close()
    return Rounds(dry, first, second, objects, metadata)


def test_a_dry_run_prints_the_same_lines_as_aws(rounds: Rounds):
    aws, offload = rounds.dry
    assert offload == aws
    assert len(offload) == len(TREE) + 1
    assert all(line.startswith("(dryrun) upload: data/") for line in offload)


def test_a_first_upload_prints_the_same_lines_and_stores_the_same_bytes_as_aws(rounds: Rounds):
    aws, offload = rounds.first
    assert offload == aws
    assert "upload: data/with space.jpg to s3://" in "\n".join(offload)
    assert rounds.objects[1] == rounds.objects[0]
    assert rounds.objects[1]["caf\u00e9/\u00fcber.png"] == b"unicode"


def test_difference_offload_uploads_an_edit_with_an_older_mtime_that_aws_skips(rounds: Rounds):
    aws, offload = rounds.second
    assert not any("data/a.jpg " in line for line in aws)
    assert any(line.startswith("upload: data/a.jpg to ") for line in offload)


def test_difference_aws_uploads_a_future_dated_file_on_every_run_offload_once(rounds: Rounds):
    aws_first, offload_first = rounds.first
    aws, offload = rounds.second
    for printed in (aws_first, offload_first, aws):
        assert any(line.startswith("upload: data/future.jpg to ") for line in printed)
    assert not any("future.jpg" in line for line in offload)


def test_difference_offload_stores_the_files_mtime_and_aws_does_not(rounds: Rounds):
    aws, offload = rounds.metadata
    assert all("mtime" not in meta for meta in aws.values())
    assert offload["with space.jpg"]["mtime"] == format_mtime(OLD)
    assert all("mtime" in meta for meta in offload.values())


# -- agreements ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        ["--exclude", "*", "--include", "*.jpg"],
        ["--exclude", "sub/*", "--include", "sub/deep/*"],
        ["--include", "*.log", "--exclude", "*.log", "--exclude", "keep/*"],
    ],
    ids=["only-jpg", "all-but-sub-except-deep", "last-match-wins"],
)
def test_filters_with_delete_print_the_same_lines_as_aws(peer: Peer, filters: list[str]):
    write_tree(Path("data"), TREE, OLD)
    for tool in ("aws", "offload"):
        for key in ("old.jpg", "sub/old.log", "keep/x.txt", "sub/deep/old.jpg"):
            peer.target.put(f"{tool}/{key}", b"stale")
    aws, offload = peer.both("data", peer.url("{tool}"), "--dry-run", "--delete", *filters)
    assert offload == aws
    assert any(line.startswith("(dryrun) delete: ") for line in offload)


def test_size_only_and_delete_resyncs_print_the_same_lines_as_aws(peer: Peer):
    write_tree(Path("data"), {"a.jpg": b"a", "b.jpg": b"b", "c.jpg": b"c", "d.jpg": b"d"}, OLD)
    peer.both("data", peer.url("{tool}"))
    write_tree(Path("data"), {"b.jpg": b"bigger"}, OLD)
    set_mtime(Path("data/c.jpg"), time.time_ns() + HOUR_NS)  # newer, same size
    aws, offload = peer.both("data", peer.url("{tool}"), "--size-only")
    assert offload == aws == [f"upload: data/b.jpg to {peer.url('TOOL')}/b.jpg"]
    Path("data/d.jpg").unlink()
    write_tree(Path("data"), {"e.jpg": b"e"}, OLD)
    aws, offload = peer.both("data", peer.url("{tool}"), "--delete")
    assert offload == aws
    assert offload == [
        f"delete: {peer.url('TOOL')}/d.jpg",
        f"upload: data/c.jpg to {peer.url('TOOL')}/c.jpg",
        f"upload: data/e.jpg to {peer.url('TOOL')}/e.jpg",
    ]
    assert peer.objects("offload") == peer.objects("aws")


def test_a_download_prints_the_same_lines_and_writes_the_same_files_as_aws(peer: Peer):
    for rel, data in TREE.items():
        peer.target.put(f"src/{rel}", data)
    aws, offload = peer.both(peer.url("src"), "out-{tool}")
    assert offload == aws
    assert len(offload) == len(TREE)
    for tool in ("aws", "offload"):
        found = {
            path.relative_to(f"out-{tool}").as_posix(): path.read_bytes()
            for path in Path(f"out-{tool}").rglob("*")
            if path.is_file()
        }
        assert found == TREE, tool
    aws_times = {p.name: int(os.stat(p).st_mtime) for p in Path("out-aws").rglob("*.jpg")}
    ours = {p.name: int(os.stat(p).st_mtime) for p in Path("out-offload").rglob("*.jpg")}
    assert ours == aws_times  # both date a download by LastModified when nothing else says


def test_a_bucket_to_bucket_sync_prints_the_same_copy_lines_as_aws(peer: Peer):
    for rel, data in TREE.items():
        peer.target.put(f"src/{rel}", data)
    aws, offload = peer.both(peer.url("src"), peer.url("copy-{tool}"))
    assert offload == aws
    assert all(line.startswith(f"copy: {peer.url('src')}/") for line in offload)
    assert peer.objects("copy-offload") == peer.objects("copy-aws") == TREE


# -- deliberate differences that need their own setup -------------------------------------------


@pytest.mark.parametrize("case", ["empty-source", "over-max-delete"])
def test_difference_offload_refuses_deletes_that_aws_makes(peer: Peer, case: str):
    Path("data").mkdir()
    if case == "over-max-delete":
        write_tree(Path("data"), {"keep.jpg": b"k"}, OLD)
    for tool in ("aws", "offload"):
        for key in ("keep.jpg", "old-1.jpg", "old-2.jpg"):
            peer.target.put(f"{tool}/{key}", b"k")
    code, out, _ = peer.aws("sync", "data", peer.url("aws"), "--delete")
    assert code == 0
    assert sorted(line for line in lines(out) if line.startswith("delete: ")) == [
        f"delete: {peer.url('aws')}/{key}"
        for key in (["keep.jpg"] if case == "empty-source" else []) + ["old-1.jpg", "old-2.jpg"]
    ]
    flags = ["--max-delete", "1"] if case == "over-max-delete" else []
    code, out, err = peer.offload("sync", "data", peer.url("offload"), "--delete", *flags)
    assert code == 1
    assert "delete:" not in out
    assert "deleting nothing" in err
    assert sorted(peer.objects("offload")) == ["keep.jpg", "old-1.jpg", "old-2.jpg"]

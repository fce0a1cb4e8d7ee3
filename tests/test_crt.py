"""awscrt's listing and deleting (``storage/crt.py``) against real S3 servers over HTTP.

In-process moto cannot see awscrt's requests (they leave from C), so these run
against ``rclone serve s3`` and moto's server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from awscrt.auth import AwsCredentialsProvider
from botocore.credentials import Credentials, DeferredRefreshableCredentials, RefreshableCredentials

from offload.storage import StorageError
from offload.storage.crt import CrtPutter, _provider_of
from offload.storage.s3 import S3Storage, StaticCredentials
from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY, RcloneS3Server, s3_client
from tests.sync_helpers import fresh_bucket, moto_server

AWKWARD = ["a & b.jpg", "ü/x<y>.png", "plus+sign %20.txt", "quote'\"s.txt", "sp ace/ok.jpg"]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(params=["moto", pytest.param("rclone", marks=pytest.mark.rclone)])
def bucket(
    request: pytest.FixtureRequest, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str]]:
    """(boto3 client, fresh bucket) on a server reached over HTTP; the environment holds
    the server's keys, as awscrt's credentials come from it."""
    if request.param == "moto":
        client = s3_client(endpoint_url=request.getfixturevalue("moto_url"))
    else:
        server: RcloneS3Server = request.getfixturevalue("rclone_server")
        client = server.client()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", RCLONE_ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RCLONE_SECRET_KEY)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    name = fresh_bucket()
    client.create_bucket(Bucket=name)
    yield client, name
    client.close()


def _keys(client: Any, name: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
    return [o["Key"] for page in pages for o in page.get("Contents") or []]


async def test_awscrt_lists_awkward_keys_in_pages_under_the_storage_prefix(bucket):
    client, name = bucket
    for key in AWKWARD:
        client.put_object(Bucket=name, Key=f"site/{key}", Body=key.encode())
    client.put_object(Bucket=name, Key="elsewhere.jpg", Body=b"x")
    crt = CrtPutter(S3Storage(client, name, "site"))
    pages = [page async for page in crt.list_pages("")]
    listed = [info for page in pages for info in page]
    assert [info.key for info in listed] == sorted(AWKWARD)
    assert [info.size for info in listed] == [len(k.encode()) for k in sorted(AWKWARD)]
    assert all(len(info.etag) == 32 and info.last_modified.tzinfo for info in listed)


async def test_awscrt_deletes_awkward_keys_and_nothing_else(bucket):
    client, name = bucket
    for key in [*AWKWARD, "kept.jpg"]:
        client.put_object(Bucket=name, Key=f"site/{key}", Body=b"x")
    crt = CrtPutter(S3Storage(client, name, "site"))
    await crt.delete(AWKWARD)
    await crt.delete(["was-never-there.jpg"])  # S3 answers "deleted" for a missing key
    assert _keys(client, name) == ["site/kept.jpg"]


async def test_awscrt_deleting_in_a_missing_bucket_is_a_clear_storage_error(bucket):
    client, name = bucket
    crt = CrtPutter(S3Storage(client, f"{name}-missing"))
    with pytest.raises(StorageError, match="does not exist"):
        await crt.delete(["a.jpg"])


async def test_awscrt_finds_incomplete_uploads_started_before_a_time(bucket):
    client, name = bucket
    crt = CrtPutter(S3Storage(client, name, "site"))
    assert await crt.incomplete_uploads("", datetime.now(UTC) + timedelta(minutes=5)) == {}
    client.create_multipart_upload(Bucket=name, Key="site/big & odd.mp4")
    found = await crt.incomplete_uploads("", datetime.now(UTC) + timedelta(minutes=5))
    assert list(found) == ["big & odd.mp4"]
    initiated = found["big & odd.mp4"]  # moto reports a fixed date in 2010: go by the server's
    assert await crt.incomplete_uploads("", initiated) == {}
    assert list(await crt.incomplete_uploads("", initiated + timedelta(seconds=1))) == list(found)


async def test_a_cancelled_put_stops_at_once_and_later_puts_still_work(bucket, tmp_path):
    client, name = bucket
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (48 * 2**20))
    small = tmp_path / "small.jpg"
    small.write_bytes(b"jpeg")
    crt = CrtPutter(S3Storage(client, name))
    upload = asyncio.ensure_future(crt.put_file("big.bin", big))
    await asyncio.sleep(0.01)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(upload, 10)
    info = await asyncio.wait_for(crt.put_file("small.jpg", small), 10)
    assert info.size == 4
    await asyncio.sleep(1)  # time enough for an upload that went on regardless to land
    assert _keys(client, name) == ["small.jpg"]  # the cancelled PUT never completed


async def test_a_file_that_cannot_be_opened_is_a_file_not_found_error(bucket, tmp_path):
    client, name = bucket
    crt = CrtPutter(S3Storage(client, name))
    with pytest.raises(FileNotFoundError):
        await crt.put_file("gone.jpg", tmp_path / "gone.jpg", size=5)


class _CountedCredentials:
    """botocore-like credentials that count their reads; refreshable ones say so."""

    def __init__(self, inner: Any, *, refreshable: bool) -> None:
        self._inner, self.reads = inner, 0
        if refreshable:
            self.refresh_needed = lambda refresh_in=None: False

    def get_frozen_credentials(self) -> Any:
        self.reads += 1
        return self._inner.get_frozen_credentials()


@pytest.mark.rclone
@pytest.mark.parametrize("refreshable", [False, True], ids=["fixed", "refreshable"])
async def test_fixed_credentials_are_read_once_and_refreshable_ones_at_every_signing(
    rclone_server, aws_env, tmp_path, refreshable
):
    client = rclone_server.client()
    name = fresh_bucket()
    client.create_bucket(Bucket=name)
    keys = Credentials(RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY)
    counted = _CountedCredentials(keys, refreshable=refreshable)
    crt = CrtPutter(S3Storage(client, name, credentials=lambda: counted))
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"jpeg")
    for n in range(3):
        await asyncio.wait_for(crt.put_file(f"{n}.jpg", photo), 10)
    reads = counted.reads
    assert _keys(client, name) == ["0.jpg", "1.jpg", "2.jpg"]  # rclone checked every signature
    if refreshable:
        assert reads >= 3  # a rotated key is seen by the next request
    else:
        assert reads == 1  # handed to awscrt once: no call into Python per request


async def test_closing_shuts_the_client_down_even_after_error_answers(bucket, tmp_path):
    client, name = bucket
    crt = CrtPutter(S3Storage(client, name))
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"jpeg")
    await asyncio.wait_for(crt.put_file("a.jpg", photo), 10)
    await crt.incomplete_uploads("", datetime.now(UTC))  # rclone: a NoSuchUpload answer
    missing = CrtPutter(S3Storage(client, fresh_bucket()))
    with pytest.raises(StorageError, match="does not exist"):
        await missing.delete(["a.jpg"])
    for putter in (crt, missing):
        shut_down = putter._client.shutdown_event
        await putter.close()
        assert shut_down.is_set()  # no request of either is kept alive by its error


@pytest.mark.parametrize(
    ("credentials", "asked_each_time"),
    [
        (Credentials("AKIDFIXED", "fixed-secret", "a-token"), False),
        (StaticCredentials("AKIDFIXED", "fixed-secret", None), False),
        (
            RefreshableCredentials(
                "AKIDROLE",
                "role-secret",
                "role-token",
                datetime.now(UTC) + timedelta(hours=1),
                lambda: {},
                "assume-role",
            ),
            True,
        ),
        (DeferredRefreshableCredentials(lambda: {}, "sso"), True),
    ],
    ids=["botocore-fixed", "environment", "refreshable", "deferred"],
)
def test_only_refreshable_credentials_are_asked_for_on_each_signing(
    credentials, asked_each_time, monkeypatch
):
    made: list[str] = []
    monkeypatch.setattr(
        AwsCredentialsProvider, "new_static", staticmethod(lambda *a: made.append("static"))
    )
    monkeypatch.setattr(
        AwsCredentialsProvider, "new_delegate", staticmethod(lambda get: made.append("delegate"))
    )
    _provider_of(credentials)
    assert made == ["delegate" if asked_each_time else "static"]

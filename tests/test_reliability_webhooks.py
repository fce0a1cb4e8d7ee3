"""Attacks on the webhooks, replayed on loopback against a listening server.

Each test is a bounded version of an attack that once worked: a captured
upload replayed to other endpoints, slow unsigned bodies starving every site's
webhooks, and a huge unsigned multipart body spooled to TMPDIR before its
signature was known.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import signed_request_headers
from offload.server.app import create_app

pytestmark = pytest.mark.reliability

SECRET = "reliability-webhook-secret-0123456789abcdef"


@dataclass
class Server:
    base: str
    port: int
    uploads: Path
    storage: Path


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """Two sites on local folders, served on a free loopback port."""
    uploads = tmp_path / "uploads"
    storage = tmp_path / "bucket"
    sites = {
        name: Site(
            name=name,
            storage=(storage / name).as_uri(),
            uploads_dir=uploads,
            uploads_url="https://blog.example.com/wp-content/uploads",
            webhook_secret=Secret(SECRET),
        )
        for name in ("blog", "shop")
    }
    for folder in (uploads, storage / "blog", storage / "shop"):
        folder.mkdir(parents=True)
    app = create_app(Settings(manifest=tmp_path / "manifest.sqlite3", sites=sites))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Server(f"http://127.0.0.1:{port}", port, uploads, storage)
    finally:
        await runner.cleanup()


async def _signed_post(
    session: ClientSession, base: str, target: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict]:
    async with session.post(base + target, data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_a_captured_upload_replayed_to_any_other_endpoint_or_site_does_nothing(server):
    (server.uploads / "photo.jpg").write_bytes(b"a photo")
    body = json.dumps({"files": ["photo.jpg"], "attachment_id": 7}).encode()
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(SECRET, "POST", "/_offload/blog/uploads", body),
    }
    async with ClientSession() as session:
        status, answer = await _signed_post(
            session, server.base, "/_offload/blog/uploads", body, headers
        )
        assert status == 200, answer
        assert (server.storage / "blog" / "photo.jpg").read_bytes() == b"a photo"
        replays = [
            "/_offload/blog/uploads",  # the same request again
            "/_offload/blog/deletions",
            "/_offload/blog/sync",
            "/_offload/blog/rewrite",
            "/_offload/blog/uploads?reverse=1",
            "/_offload/shop/uploads",
        ]
        for target in replays:
            status, answer = await _signed_post(session, server.base, target, body, headers)
            assert status in (401, 409), (target, status, answer)
    assert (server.storage / "blog" / "photo.jpg").read_bytes() == b"a photo"
    assert not any((server.storage / "shop").iterdir())


async def _slow_unsigned_body(port: int, site: str, replies: list[bytes]) -> None:
    """Headers with a forged signature, then a body at a byte per 0.2 s until refused."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        forged = signed_request_headers("not-the-secret-0123456789abcdef", "POST", "/", b"{}")
        head = (
            f"POST /_offload/{site}/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in forged.items())
            + "\r\n"
        )
        writer.write(head.encode())
        for _ in range(50):
            writer.write(b"{")
            await writer.drain()
            try:
                reply = await asyncio.wait_for(reader.read(4096), 0.2)
            except TimeoutError:
                continue
            replies.append(reply)
            return
        replies.append(b"")
    except ConnectionError:
        replies.append(b"connection closed")
    finally:
        writer.close()


async def test_slow_unsigned_bodies_are_refused_at_once_and_signed_webhooks_go_on(server):
    (server.uploads / "a.jpg").write_bytes(b"a")
    replies: list[bytes] = []
    attackers = [
        asyncio.create_task(_slow_unsigned_body(server.port, site, replies))
        for site in ("blog", "shop") * 8
    ]
    try:
        await asyncio.sleep(0.3)  # the slow bodies are arriving
        started = time.monotonic()
        body = json.dumps({"files": ["a.jpg"]}).encode()
        headers = {
            "Content-Type": "application/json",
            **signed_request_headers(SECRET, "POST", "/_offload/shop/uploads", body),
        }
        async with ClientSession() as session:
            status, answer = await _signed_post(
                session, server.base, "/_offload/shop/uploads", body, headers
            )
        assert status == 200, answer
        assert time.monotonic() - started < 5  # a bound, not a benchmark: it waited on nothing
    finally:
        await asyncio.wait_for(asyncio.gather(*attackers), 20)
    assert len(replies) == 16
    assert all(reply.startswith(b"HTTP/1.1 401") for reply in replies), replies


async def test_a_huge_unsigned_multipart_body_is_never_spooled(server, monkeypatch, tmp_path):
    spool = tmp_path / "tmpdir"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    seen: list[str] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            seen.extend(str(path) for path in spool.rglob("*"))
            await asyncio.sleep(0.01)

    async def huge_form() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="path"\r\n\r\nbig.bin\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        chunk = os.urandom(1024 * 1024)
        for _ in range(64):  # 64 MiB offered
            yield chunk

    watcher = asyncio.create_task(watch())
    forged = signed_request_headers("not-the-secret-0123456789abcdef", "POST", "/", b"")
    try:
        async with (
            ClientSession() as session,
            session.post(
                server.base + "/_offload/blog/uploads",
                data=huge_form(),
                headers={"Content-Type": "multipart/form-data; boundary=b", **forged},
            ) as response,
        ):
            assert response.status == 401
    finally:
        stop.set()
        await watcher
    assert seen == []
    assert not any((server.storage / "blog").iterdir())


async def test_an_absolute_form_webhook_is_signed_over_its_path(server):
    (server.uploads / "b.jpg").write_bytes(b"b")
    body = json.dumps({"files": ["b.jpg"]}).encode()
    signed = signed_request_headers(SECRET, "POST", "/_offload/blog/uploads", body)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        head = (
            f"POST http://127.0.0.1:{server.port}/_offload/blog/uploads HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in signed.items())
            + "\r\n"
        )
        writer.write(head.encode() + body)
        reply = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert (server.storage / "blog" / "b.jpg").read_bytes() == b"b"

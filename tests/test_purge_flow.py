"""Purging through the server, end to end: webhooks in, the fake CDN's purge API out.

The app runs in-process (``create_app`` + aiohttp_client) with the settings an
operator would write in offload.toml, and its sites purge through fake
Cloudflare and Bunny APIs (tests/fake_cdns.py) on real loopback ports
(``purge_api_url``). What the fake accepted is what the CDN was asked to drop.
Backoff waits are never slept through: the test moves an entry's ``next_at``
in the test's own SQLite file, as an operator's clock would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from offload.config.loading import load_settings
from offload.http.signing import signed_request_headers
from offload.manifest import Manifest, ManifestError, PurgeItem, open_manifest
from offload.media.offloader import UNRECORDED_PURGE_AFTER
from offload.purge.drain import PurgeDrain
from offload.server.app import create_app
from offload.server.appkeys import MANIFEST, OFFLOADERS, PURGES
from tests.fake_cdns import FakeBunny, FakeCDN, FakeCloudflare, ThreadedFake
from tests.helpers import ADMIN_TOKEN, free_port, run_cli, wait_for_port

SECRET = "webhook-secret-for-tests-0123456789abcdef"
TOKEN = "cdn-token-0123456789abcdef-SECRET"
ZONE = "zone42"
PREFIX = "wp-content/uploads"
CDN_URL = "https://cdn.example.com"
UPLOADS_URL = "https://blog.example.com/wp-content/uploads"
OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

#: Each vendor's site settings naming the fake, and where its API lives under the fake.
VENDORS: dict[str, tuple[type[FakeCDN], str, str]] = {
    "cloudflare": (
        FakeCloudflare,
        f'cloudflare_zone_id = "{ZONE}"\ncloudflare_api_token = "{TOKEN}"',
        "/client/v4",
    ),
    "bunny": (
        FakeBunny,
        f'bunny_pull_zone_id = "{ZONE}"\nbunny_access_key = "{TOKEN}"',
        "",
    ),
}


def cdn(key: str) -> str:
    return f"{CDN_URL}/{PREFIX}/{key}"


def purged_urls(fake: FakeCDN) -> list[str]:
    """Every URL the fake was asked to purge, in order, repeats kept."""
    urls: list[str] = []
    for accepted in fake.accepted:
        if isinstance(accepted.body, dict) and "files" in accepted.body:  # Cloudflare
            urls.extend(accepted.body["files"])
        elif "url" in accepted.query:  # Bunny
            urls.append(accepted.query["url"])
    return urls


def write_config(
    tmp_path: Path, api_url: str, vendor: str = "cloudflare", settings: str = "", site: str = ""
) -> Path:
    _fake, credentials, _root = VENDORS[vendor]
    (tmp_path / "bucket").mkdir(exist_ok=True)
    (tmp_path / "uploads").mkdir(exist_ok=True)
    config = tmp_path / "offload.toml"
    config.write_text(
        f'manifest = "{tmp_path / "manifest.sqlite3"}"\n'
        f'admin_token = "{ADMIN_TOKEN}"\n'
        f"{settings}\n"
        "[sites.blog]\n"
        f'storage = "{(tmp_path / "bucket").as_uri()}"\n'
        f'prefix = "{PREFIX}"\n'
        f'uploads_dir = "{tmp_path / "uploads"}"\n'
        f'uploads_url = "{UPLOADS_URL}"\n'
        f'cdn_url = "{CDN_URL}"\n'
        'hostnames = ["*"]\n'
        f'webhook_secret = "{SECRET}"\n'
        f'purge = "{vendor}"\n'
        f'purge_api_url = "{api_url}"\n'
        f"{credentials}\n"
        f"{site}\n"
    )
    return config


@dataclass
class Flow:
    client: TestClient
    app: web.Application
    fake: FakeCDN
    config: Path
    tmp_path: Path
    _n: int = 0

    @property
    def manifest(self) -> Manifest:
        return self.app[MANIFEST]

    @property
    def drain(self) -> PurgeDrain:
        return self.app[PURGES]

    def write(self, path: str, data: bytes) -> None:
        file = self.tmp_path / "uploads" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)

    async def post(self, hook: str, body: Any) -> tuple[int, Any]:
        self._n += 1
        raw = json.dumps(body).encode()
        target = f"/_offload/blog/{hook}?n={self._n}"
        headers = {
            "Content-Type": "application/json",
            **signed_request_headers(SECRET, "POST", target, raw),
        }
        response = await self.client.post(target, data=raw, headers=headers)
        return response.status, await response.json()

    async def outbox(self) -> Any:
        return await asyncio.to_thread(self.manifest.purge_queue)

    async def until_sent(self, within: float = 10.0) -> None:
        """Until the outbox is empty (the drain polls; a wake makes it look now)."""
        deadline = time.monotonic() + within
        while (await self.outbox()).waiting:
            assert time.monotonic() < deadline, "the outbox did not empty"
            self.drain.wake()
            await asyncio.sleep(0.05)

    def due_now(self) -> None:
        """Make every waiting entry due (instead of sleeping through its backoff)."""
        with sqlite3.connect(self.tmp_path / "manifest.sqlite3") as db:
            db.execute("UPDATE purge_outbox SET next_at = 0")
        db.close()


Start = Callable[..., Awaitable[Flow]]


@pytest.fixture
def start(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path) -> Start:
    async def start(vendor: str = "cloudflare", settings: str = "", site: str = "") -> Flow:
        fake_class, _credentials, root = VENDORS[vendor]
        fake = fake_class(token=TOKEN, zone=ZONE)
        server: TestServer = await aiohttp_server(fake.app())
        api_url = str(server.make_url(root)).rstrip("/")
        config = write_config(tmp_path, api_url, vendor, settings, site)
        app = create_app(load_settings(config, {}))
        client = await aiohttp_client(app)
        return Flow(client, app, fake, config, tmp_path)

    return start


def photo(attachment_id: int = 42) -> dict[str, Any]:
    """WordPress metadata of a scaled JPEG and one resized copy."""
    return {
        "file": "2024/05/photo-scaled.jpg",
        "original_image": "photo.jpg",
        "sizes": {"medium": {"file": "photo-300x200.jpg", "mime-type": "image/jpeg"}},
        "attachment_id": attachment_id,
    }


def write_photo(flow: Flow, version: bytes = b"1") -> None:
    flow.write("2024/05/photo.jpg", b"original " + version)
    flow.write("2024/05/photo-scaled.jpg", b"scaled " + version)
    flow.write("2024/05/photo-300x200.jpg", b"thumb " + version)


# -- deletions --------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["cloudflare", "bunny"])
async def test_a_deletions_urls_reach_the_cdn_once_before_the_webhook_answers(start, vendor):
    flow = await start(vendor)
    write_photo(flow)
    status, uploaded = await flow.post("uploads", photo())
    assert status == 200
    assert flow.fake.accepted == []  # new keys: nothing cached anywhere yet

    status, deleted = await flow.post("deletions", photo())

    assert status == 200
    urls = {item["url"] for item in deleted["items"]}
    assert urls == {item["url"] for item in uploaded["items"]}
    assert urls == {cdn("2024/05/photo.jpg"), cdn("2024/05/photo-scaled.jpg"),
                    cdn("2024/05/photo-300x200.jpg")}  # fmt: skip
    # In the fake already when the answer came, each once.
    assert sorted(purged_urls(flow.fake)) == sorted(urls)
    assert (await flow.outbox()).waiting == 0


async def test_a_purge_sent_before_its_webhook_came_to_wait_for_it_counts_as_sent(start):
    """Another webhook woke the drain, which sent this change's purge between its commit
    and its wait: the webhook answers at once, not after purge_wait."""
    flow = await start(settings="purge_wait = 60")
    since = time.time()  # as the webhook notes before its change
    item = PurgeItem("blog", "url", cdn("2024/05/a.txt"))
    await asyncio.to_thread(flow.manifest.enqueue_purges, [item])  # the change's commit
    await flow.until_sent()  # sent before anyone waits

    assert await asyncio.wait_for(flow.drain.wait_sent([item], 60, since=since), 30)
    assert purged_urls(flow.fake) == [item.value]
    # An entry queued after a send is not taken for sent.
    flow.fake.fail_next(1000, 503)
    later = time.time()
    await asyncio.to_thread(flow.manifest.enqueue_purges, [item])
    assert not await flow.drain.wait_sent([item], 0.5, since=later)


# -- uploads ----------------------------------------------------------------------------


async def test_an_upload_replacing_an_unversioned_keys_bytes_purges_that_keys_url(start):
    flow = await start()
    flow.write("2024/05/a.txt", b"first")
    assert (await flow.post("uploads", {"files": ["2024/05/a.txt"]}))[0] == 200
    assert flow.fake.accepted == []  # a new key purges nothing

    flow.write("2024/05/a.txt", b"second!")
    status, answer = await flow.post("uploads", {"files": ["2024/05/a.txt"]})

    assert status == 200
    assert [item["status"] for item in answer["items"]] == ["uploaded"]
    assert purged_urls(flow.fake) == [cdn("2024/05/a.txt")]

    status, _ = await flow.post("uploads", {"files": ["2024/05/a.txt"]})  # the same bytes
    assert status == 200
    assert purged_urls(flow.fake) == [cdn("2024/05/a.txt")]
    assert (await flow.outbox()).waiting == 0


class _FailingRecord:
    """The manifest as it is, but for writing a change's rows: the database went away."""

    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manifest, name)

    def record(self, *_args: Any, **_kwargs: Any) -> None:
        raise ManifestError("manifest postgresql://offload:****@db/offload: cannot write")

    def remove(self, *_args: Any, **_kwargs: Any) -> int:
        raise ManifestError("manifest postgresql://offload:****@db/offload: cannot write")


@pytest.mark.parametrize("hook", ["uploads", "deletions"])
async def test_a_change_whose_row_is_never_written_is_still_purged_later(start, hook):
    """The storage changed, then the manifest failed: a retry would find nothing to do, so
    the purge queued before the change goes out a little later on its own."""
    flow = await start()
    flow.write("2024/05/a.txt", b"first")
    assert (await flow.post("uploads", {"files": ["2024/05/a.txt"]}))[0] == 200
    flow.write("2024/05/a.txt", b"second!")
    offloader = flow.app[OFFLOADERS]["blog"]
    offloader.manifest = _FailingRecord(offloader.manifest)  # type: ignore[assignment]

    before = time.time()
    status, _ = await flow.post(hook, {"files": ["2024/05/a.txt"]})

    assert status == 503
    assert flow.fake.accepted == []  # not now: the change may still be under way
    [entry] = (await flow.outbox()).entries
    assert entry.item.value == cdn("2024/05/a.txt")
    assert entry.next_at >= before + UNRECORDED_PURGE_AFTER - 1
    flow.due_now()  # instead of waiting two minutes
    await flow.until_sent()
    assert purged_urls(flow.fake) == [cdn("2024/05/a.txt")]


async def test_with_versioning_an_upload_purges_nothing_and_its_deletion_every_size(start):
    flow = await start(site="versioning = true")
    write_photo(flow, b"1")
    _, first = await flow.post("uploads", photo())
    write_photo(flow, b"2")  # new bytes: a new version folder, a new URL
    _, second = await flow.post("uploads", photo())
    keys = {item["key"] for item in first["items"] + second["items"]}
    assert len(keys) == 6
    assert flow.fake.accepted == []
    assert (await flow.outbox()).waiting == 0

    status, deleted = await flow.post("deletions", {"attachment_id": 42})

    assert status == 200
    assert {item["key"] for item in deleted["items"]} == keys
    assert sorted(purged_urls(flow.fake)) == sorted(f"{CDN_URL}/{key}" for key in keys)


# -- an API that is down or busy -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "error"),
    [(503, None, "503"), (429, "1", "429")],
)
async def test_a_busy_cdn_api_leaves_the_purge_waiting_then_it_is_sent_once(
    start, status, retry_after, error
):
    flow = await start(settings="purge_wait = 0.3")
    flow.write("2024/05/a.txt", b"data")
    await flow.post("uploads", {"files": ["2024/05/a.txt"]})
    flow.fake.fail_next(1000, status, retry_after)

    answered, _ = await flow.post("deletions", {"files": ["2024/05/a.txt"]})

    assert answered == 200  # after purge_wait, not after the API recovers
    deadline = time.monotonic() + 5
    while not (queue := await flow.outbox()).entries or not queue.entries[0].attempts:
        assert time.monotonic() < deadline, "the failed send was not settled"
        await asyncio.sleep(0.05)
    assert queue.waiting == 1
    (entry,) = queue.entries
    assert entry.item == PurgeItem("blog", "url", cdn("2024/05/a.txt"))
    assert entry.attempts >= 1
    assert error in (entry.last_error or "")
    # The next try: after the API's Retry-After when it gave one, else the first backoff (5 s).
    assert 0 < entry.next_at - time.time() <= (1.0 if retry_after else 5.0)
    assert entry.next_at - time.time() > (0.0 if retry_after else 3.0)
    code, out, err = await asyncio.to_thread(run_cli, "purge", "--status", "--config", flow.config)
    assert code == 0, err
    assert "waiting: 1" in out
    assert cdn("2024/05/a.txt") in out
    assert "last error:" in out
    assert error in out
    assert TOKEN not in out + err
    assert purged_urls(flow.fake) == []

    flow.fake._failures.clear()  # the API is back
    flow.due_now()  # (a 429's pause of a second is left to the provider, which waits it out)
    await flow.until_sent()

    assert purged_urls(flow.fake) == [cdn("2024/05/a.txt")]
    await asyncio.sleep(0.1)
    assert purged_urls(flow.fake) == [cdn("2024/05/a.txt")]  # once


async def test_a_cdn_api_asking_to_wait_past_purge_wait_holds_a_deletion_for_one_try(start):
    """Retry-After says two minutes, purge_wait is one: waiting the minute gains nothing."""
    flow = await start(settings="purge_wait = 60")
    flow.write("2024/05/a.txt", b"data")
    await flow.post("uploads", {"files": ["2024/05/a.txt"]})
    flow.fake.fail_next(1000, 429, "120")

    status, _ = await asyncio.wait_for(flow.post("deletions", {"files": ["2024/05/a.txt"]}), 30)

    assert status == 200
    (entry,) = (await flow.outbox()).entries
    assert entry.attempts == 1
    assert "429" in (entry.last_error or "")


async def test_a_purge_failing_past_purge_give_up_after_is_given_up_counted_and_shown(start):
    flow = await start(settings="purge_wait = 0.3\npurge_give_up_after = 0.001")
    flow.write("2024/05/a.txt", b"data")
    await flow.post("uploads", {"files": ["2024/05/a.txt"]})
    flow.fake.fail_next(1000, 503)

    assert (await flow.post("deletions", {"files": ["2024/05/a.txt"]}))[0] == 200

    deadline = time.monotonic() + 5
    while (queue := await flow.outbox()).given_up == 0:
        assert time.monotonic() < deadline, "not given up"
        await asyncio.sleep(0.05)
    assert queue.waiting == 0
    (give_up,) = queue.recent_give_ups
    assert give_up.item == PurgeItem("blog", "url", cdn("2024/05/a.txt"))
    assert "503" in give_up.error

    metrics = await (await flow.client.get("/_offload/metrics", headers=OPERATOR)).text()
    assert 'offload_purge_give_ups_total{site="blog"} 1' in metrics.splitlines()
    page = await (await flow.client.get("/_offload/status", headers=OPERATOR)).text()
    assert cdn("2024/05/a.txt") in page
    assert "given up" in page.lower()
    assert TOKEN not in metrics + page
    code, out, _ = await asyncio.to_thread(run_cli, "purge", "--status", "--config", flow.config)
    assert code == 0
    assert "given up: 1" in out
    assert cdn("2024/05/a.txt") in out


# -- reindex ------------------------------------------------------------------------------


async def test_a_reindex_queues_no_purge(start):
    flow = await start()
    flow.write("2024/05/a.txt", b"first")
    await flow.post("uploads", {"files": ["2024/05/a.txt"]})
    # The bucket changed behind offload's back: a reindex learns it, and purges nothing.
    (flow.tmp_path / "bucket" / PREFIX / "2024/05/a.txt").write_bytes(b"changed elsewhere")
    (flow.tmp_path / "bucket" / PREFIX / "2024/05/b.txt").write_bytes(b"new elsewhere")

    code, out, err = await asyncio.to_thread(run_cli, "reindex", "--config", flow.config)

    assert code == 0, err
    assert out.startswith("site blog: 2 objects")
    queue = await flow.outbox()
    assert (queue.waiting, queue.given_up) == (0, 0)
    await asyncio.sleep(0.1)
    assert flow.fake.accepted == []


# -- kill -9 --------------------------------------------------------------------------------


def _post_signed(port: int, hook: str, body: Any) -> int:
    raw = json.dumps(body).encode()
    target = f"/_offload/blog/{hook}"
    headers = {
        "Content-Type": "application/json",
        "Host": "127.0.0.1",
        **signed_request_headers(SECRET, "POST", target, raw),
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{target}", data=raw, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - loopback
        return response.status


def _serve(config: Path, port: int) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "offload", "serve", "--config", str(config), "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return process


def test_a_purge_not_sent_when_the_server_is_killed_is_sent_after_a_restart(tmp_path):
    """kill -9 after the deletion was committed, before its purge went out."""
    port = free_port()
    down = write_config(
        tmp_path, f"http://127.0.0.1:{free_port()}/client/v4", settings="purge_wait = 0.3"
    )
    (tmp_path / "uploads" / "2024").mkdir(parents=True)
    (tmp_path / "uploads" / "2024" / "a.txt").write_bytes(b"data")
    first = _serve(down, port)
    try:
        assert _post_signed(port, "uploads", {"files": ["2024/a.txt"]}) == 200
        assert _post_signed(port, "deletions", {"files": ["2024/a.txt"]}) == 200
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=20)
    manifest = open_manifest(tmp_path / "manifest.sqlite3")
    try:
        queue = manifest.purge_queue()
    finally:
        manifest.close()
    assert [entry.item.value for entry in queue.entries] == [f"{CDN_URL}/{PREFIX}/2024/a.txt"]

    with ThreadedFake(FakeCloudflare(token=TOKEN, zone=ZONE)) as cloudflare:
        up = write_config(tmp_path, cloudflare.url("/client/v4"), settings="purge_wait = 0.3")
        with sqlite3.connect(tmp_path / "manifest.sqlite3") as db:  # its backoff is over
            db.execute("UPDATE purge_outbox SET next_at = 0")
        db.close()
        second = _serve(up, port)
        try:
            deadline = time.monotonic() + 20
            while not cloudflare.fake.accepted:
                assert time.monotonic() < deadline, "the purge was not sent after the restart"
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            second.send_signal(signal.SIGTERM)
            _out, err = second.communicate(timeout=20)
        assert purged_urls(cloudflare.fake) == [f"{CDN_URL}/{PREFIX}/2024/a.txt"]
        assert TOKEN not in err
        assert "Traceback" not in err

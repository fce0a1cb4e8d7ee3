"""A render that overlaps the deletion of its original leaves no variant behind.

The deletion webhook lists an original's variants, deletes them with the original,
and lists once more; a render HEADs its original again after it stores a variant.
Each test pauses one side at the point where the other could slip past it, on a local
folder and on ``rclone serve s3``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from offload.config.loading import load_settings
from offload.server.app import create_app
from offload.server.appkeys import STORAGES
from tests.fake_cdns import FakeCloudflare
from tests.test_transforms_cascade import (
    CDN_URL,
    KEY,
    TOKEN,
    VARIANTS,
    ZONE,
    listed,
    post,
    purged,
    write_config,
)
from tests.test_transforms_render import jpeg_bytes

PHOTO = {"files": ["2024/05/photo.jpg"]}
THUMB = f"/_img/thumb/{KEY}"
PAUSE = 10  # seconds a test waits for the other side to reach its pause, at most


async def offloaded(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Any, location: dict[str, str]
) -> tuple[Any, Any]:
    """(client, fake Cloudflare) of a site at ``location`` holding the offloaded photo."""
    fake = FakeCloudflare(token=TOKEN, zone=ZONE)
    api = await aiohttp_server(fake.app())
    config = write_config(tmp_path, location, str(api.make_url("/client/v4")).rstrip("/"))
    client = await aiohttp_client(create_app(load_settings(config, {})))
    (tmp_path / "uploads" / "2024" / "05" / "photo.jpg").write_bytes(jpeg_bytes(200, 100))
    assert await post(client, "uploads", PHOTO) == 200
    return client, fake


class Pause:
    """Holds a storage call whose first argument ``when`` picks, once, until ``go``:
    ``reached`` is set as it starts to wait (before the call, or ``after`` it)."""

    def __init__(self, monkeypatch: Any, storage: Any, method: str, when: Any, after: bool = False):
        self.reached, self.go = asyncio.Event(), asyncio.Event()
        self.held: list[Any] = []
        call = getattr(storage, method)

        async def paused(first: Any, *args: Any, **kwargs: Any) -> Any:
            hold = not self.held and when(first)
            if hold:
                self.held.append(first)
            if hold and not after:
                await self.wait()
            result = await call(first, *args, **kwargs)
            if hold and after:
                await self.wait()
            return result

        monkeypatch.setattr(storage, method, paused)

    async def wait(self) -> None:
        self.reached.set()
        await self.go.wait()


@pytest.mark.parametrize("backend", ["local", "rclone"], indirect=True)
async def test_a_render_that_stores_its_variant_after_the_deletion_deletes_it_and_says_404(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch, site_location
):
    client, _fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["blog"]
    # The render has read the original: it waits before it stores its variant.
    pause = Pause(monkeypatch, storage, "put", lambda key: key.startswith(VARIANTS))
    render = asyncio.create_task(client.get(THUMB))
    await asyncio.wait_for(pause.reached.wait(), PAUSE)

    assert await post(client, "deletions", PHOTO) == 200  # lists no variant: none is stored
    pause.go.set()
    answer = await asyncio.wait_for(render, PAUSE)

    assert answer.status == 404
    assert await listed(storage, VARIANTS) == []
    assert await storage.head(KEY) is None


@pytest.mark.parametrize("backend", ["local", "rclone"], indirect=True)
async def test_a_render_between_the_deletions_listing_and_its_delete_leaves_no_variant(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch, site_location
):
    client, fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["blog"]
    # The deletion has listed the variants (none yet): it waits before it deletes.
    pause = Pause(monkeypatch, storage, "delete", lambda keys: KEY in keys)
    deletion = asyncio.create_task(post(client, "deletions", PHOTO))
    await asyncio.wait_for(pause.reached.wait(), PAUSE)

    rendered = await client.get(THUMB)  # the original is still there: made and stored
    assert rendered.status == 200
    assert await listed(storage, VARIANTS) != []
    pause.go.set()
    assert await asyncio.wait_for(deletion, PAUSE) == 200

    assert await listed(storage, VARIANTS) == []
    assert await storage.head(KEY) is None
    wanted = {f"{CDN_URL}/{KEY}", f"{CDN_URL}{THUMB}"}
    for _ in range(100):  # the webhook waits for its purge; the drain may still be sending
        if wanted <= purged(fake):
            break
        await asyncio.sleep(0.05)
    assert wanted <= purged(fake)


async def test_a_render_paused_after_its_put_while_a_deletion_runs_answers_404(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch
):
    location = {"storage": (tmp_path / "bucket").as_uri()}
    client, _fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, location)
    storage = client.app[STORAGES]["blog"]
    # Stored; the render has not checked its original yet.
    pause = Pause(monkeypatch, storage, "put", lambda key: key.startswith(VARIANTS), after=True)
    render = asyncio.create_task(client.get(THUMB))
    await asyncio.wait_for(pause.reached.wait(), PAUSE)

    assert await post(client, "deletions", PHOTO) == 200
    pause.go.set()
    answer = await asyncio.wait_for(render, PAUSE)

    assert answer.status == 404
    assert await listed(storage, VARIANTS) == []


@pytest.mark.parametrize("backend", ["local", "rclone"], indirect=True)
async def test_a_render_of_bytes_replaced_meanwhile_is_made_again_from_the_new_ones(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch, site_location
):
    import pyvips

    from offload.images.variants import META_SOURCE_ETAG
    from tests.test_transforms_render import near

    client, fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["blog"]
    # Made from the old bytes: the render waits before it stores its variant.
    pause = Pause(monkeypatch, storage, "put", lambda key: key.startswith(VARIANTS))
    render = asyncio.create_task(client.get(THUMB))
    await asyncio.wait_for(pause.reached.wait(), PAUSE)

    green = (20, 200, 40)
    (tmp_path / "uploads" / "2024" / "05" / "photo.jpg").write_bytes(jpeg_bytes(200, 100, green))
    assert await post(client, "uploads", PHOTO) == 200  # lists no variant: none is stored yet
    pause.go.set()
    answer = await asyncio.wait_for(render, PAUSE)

    assert answer.status == 200
    image = pyvips.Image.new_from_buffer(await answer.read(), "")
    assert near(image(5, 5), green, tolerance=20)  # the new picture, not the old red one
    [variant] = await listed(storage, VARIANTS)
    stored = await storage.head(variant)
    original = await storage.head(KEY)
    assert stored is not None
    assert original is not None
    assert stored.metadata[META_SOURCE_ETAG] == original.etag
    # The variant of the old bytes was dropped with its URL's purge queued first (with
    # several workers, another may have served it before the render's check).
    for _ in range(100):
        if f"{CDN_URL}{THUMB}" in purged(fake):
            break
        await asyncio.sleep(0.05)
    assert f"{CDN_URL}{THUMB}" in purged(fake)


@pytest.mark.parametrize("backend", ["local", "rclone"], indirect=True)
async def test_a_render_with_its_original_unchanged_is_made_once(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch, site_location
):
    client, _fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["blog"]
    put = storage.put
    made = []

    async def counted_put(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith(VARIANTS):
            made.append(key)
        return await put(key, *args, **kwargs)

    monkeypatch.setattr(storage, "put", counted_put)
    assert (await client.get(THUMB)).status == 200
    assert len(made) == 1  # the ETag it read is the ETag the check finds: no second make


@pytest.mark.parametrize("backend", ["local", "rclone"], indirect=True)
async def test_a_render_between_a_replacements_listing_and_its_put_is_deleted_and_purged(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch, site_location
):
    client, fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["blog"]
    # The upload has listed the variants (none): its PUT waits.
    pause = Pause(monkeypatch, storage, "put", lambda key: key == KEY)
    green = (20, 200, 40)
    (tmp_path / "uploads" / "2024" / "05" / "photo.jpg").write_bytes(jpeg_bytes(200, 100, green))
    upload = asyncio.create_task(post(client, "uploads", PHOTO))
    await asyncio.wait_for(pause.reached.wait(), PAUSE)

    answer = await client.get(THUMB)  # the old bytes are still there: made from them
    assert answer.status == 200
    await answer.read()
    pause.go.set()
    assert await asyncio.wait_for(upload, PAUSE) == 200

    assert await listed(storage, VARIANTS) == []  # the old picture's variant is gone
    for _ in range(100):  # the webhook waits for its purge; the drain may still be sending
        if f"{CDN_URL}{THUMB}" in purged(fake):
            break
        await asyncio.sleep(0.05)
    assert f"{CDN_URL}{THUMB}" in purged(fake)  # and the edge drops the copy it was served


async def test_a_variant_whose_original_cannot_be_checked_is_not_kept(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch
):
    from offload.storage import StorageUnavailable

    location = {"storage": (tmp_path / "bucket").as_uri()}
    client, _fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, location)
    storage = client.app[STORAGES]["blog"]
    head = storage.head
    stored = []
    put = storage.put

    async def noted_put(key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith(VARIANTS):
            stored.append(key)
        return await put(key, *args, **kwargs)

    async def failing_head(key: str) -> Any:
        if stored and key == KEY:  # the check after the variant was stored
            raise StorageUnavailable("storage timed out")
        return await head(key)

    monkeypatch.setattr(storage, "put", noted_put)
    monkeypatch.setattr(storage, "head", failing_head)
    answer = await client.get(THUMB)
    assert answer.status == 503
    assert stored
    assert await listed(storage, VARIANTS) == []


async def test_two_uploads_replacing_one_key_at_once_both_succeed(
    aiohttp_client, aiohttp_server, tmp_path, monkeypatch
):
    location = {"storage": (tmp_path / "bucket").as_uri()}
    client, _fake = await offloaded(aiohttp_client, aiohttp_server, tmp_path, location)
    storage = client.app[STORAGES]["blog"]
    made = await client.get(THUMB)  # a variant, so both uploads have one to purge
    assert made.status == 200
    await made.read()
    pause = Pause(monkeypatch, storage, "put", lambda key: key == KEY)
    photo = tmp_path / "uploads" / "2024" / "05" / "photo.jpg"
    photo.write_bytes(jpeg_bytes(200, 100, (20, 200, 40)))
    first = asyncio.create_task(post(client, "uploads", PHOTO))
    await asyncio.wait_for(pause.reached.wait(), PAUSE)
    photo.write_bytes(jpeg_bytes(200, 100, (20, 40, 200)))  # other bytes: another upload
    assert await post(client, "uploads", PHOTO) == 200  # its record takes the purges
    pause.go.set()
    assert await asyncio.wait_for(first, PAUSE) == 200

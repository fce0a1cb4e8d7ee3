"""Asset-server thumbnails: one name per original, made again when their original changes,
deleted with their original only, and made under the render slots.

Runs over loopback HTTP as ``test_asset_server`` does, with its fixtures.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pyvips

from offload.images.variants import META_SOURCE_ETAG
from offload.storage.base import Storage
from tests import test_asset_server as base
from tests.storage_servers import Backend
from tests.test_asset_server import HOST, KEY, PREFIX, Start, fetched, keys_under, upload

backend = base.backend  # a local folder, then rclone serve s3
start = base.start
THUMBS = f"{PREFIX}/Fish/thumbnails"


def plain(width: int, height: int, rgb: tuple[int, int, int], fmt: str) -> bytes:
    """An image of one colour, written as ``fmt`` ("jpeg", "png" or "tiff")."""
    image = pyvips.Image.black(width, height, bands=3).linear([1, 1, 1], list(rgb)).cast("uchar")
    return bytes(getattr(image, f"{fmt}save_buffer")())


def write_file(path: Path, data: bytes, mtime: float | None = None) -> None:
    """Write a file into the storage's folder by hand, as a writer other than offload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def colour(data: bytes) -> tuple[float, ...]:
    image = pyvips.Image.new_from_buffer(data, "")
    return tuple(band.avg() for band in image.bandsplit()[:3])


def near(found: tuple[float, ...], wanted: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 8 for a, b in zip(found, wanted, strict=True))


async def delete(client: Any, coll: str, filename: str) -> int:
    form = {"coll": coll, "filename": filename, "token": base.make_token(KEY, filename)}
    reply = await client.post("/filedelete", data=form, headers=HOST)
    await reply.read()
    return int(reply.status)


def thumb(filename: str, scale: int = 20) -> dict[str, str]:
    return {"coll": "Fish", "filename": filename, "type": "T", "scale": str(scale)}


GREEN, RED, BLUE = (10, 200, 30), (220, 20, 20), (20, 40, 210)


# -- names ------------------------------------------------------------------------------


async def test_thumbnails_of_originals_with_one_root_do_not_collide(
    start: Start, storage: Storage
) -> None:
    client = await start()
    assert (await upload(client, "Fish", "a.tif", plain(80, 40, GREEN, "tiff"))).status == 200
    assert (await upload(client, "Fish", "a.png", plain(80, 40, RED, "png"))).status == 200
    assert (await upload(client, "Fish", "a.pdf", base.pdf(200, 100))).status == 200
    assert near(colour(await fetched(client, thumb("a.tif"))), GREEN)
    assert near(colour(await fetched(client, thumb("a.png"))), RED)
    assert colour(await fetched(client, thumb("a.pdf")))[0] > 250  # a white page
    assert near(colour(await fetched(client, thumb("a.tif"))), GREEN)
    assert await keys_under(storage, f"{THUMBS}/") == [
        f"{THUMBS}/a.pdf_20.png",
        f"{THUMBS}/a.png_20.png",
        f"{THUMBS}/a.tif_20.png",
    ]


async def put_thumbnail(storage: Storage, name: str) -> None:
    """A thumbnail as an earlier version of offload (or Specify) named it."""
    await storage.put(f"{THUMBS}/{name}", plain(4, 4, BLUE, "png"), content_type="image/png")


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_filedelete_takes_new_and_earlier_names_of_its_own_thumbnails(
    start: Start, storage: Storage
) -> None:
    client = await start()
    await upload(client, "Fish", "a.tif", plain(40, 20, GREEN, "tiff"))
    assert await fetched(client, thumb("a.tif"))
    names = ("a.tif_300.png", "a_20.png", "a_300.png", "ab_20.png", "a.png_20.png", "a_b_20.png")
    for name in names:
        await put_thumbnail(storage, name)
    assert await delete(client, "Fish", "a.tif") == 200
    assert await keys_under(storage, f"{THUMBS}/") == [
        f"{THUMBS}/a.png_20.png",  # a.png's, should it come back
        f"{THUMBS}/a_b_20.png",
        f"{THUMBS}/ab_20.png",
    ]


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_an_earlier_name_another_original_may_own_stays_until_that_one_goes(
    start: Start, storage: Storage
) -> None:
    client = await start()
    await upload(client, "Fish", "a.tif", plain(40, 20, GREEN, "tiff"))
    await upload(client, "Fish", "a.png", plain(40, 20, RED, "png"))
    await upload(client, "Fish", "a.jpg", plain(40, 20, BLUE, "jpeg"))
    for name in ("a_20.png", "a_20.jpg"):
        await put_thumbnail(storage, name)
    assert await delete(client, "Fish", "a.jpg") == 200
    assert await keys_under(storage, f"{THUMBS}/") == [f"{THUMBS}/a_20.png"]
    assert await delete(client, "Fish", "a.tif") == 200  # a_20.png may be a.png's
    assert await keys_under(storage, f"{THUMBS}/") == [f"{THUMBS}/a_20.png"]
    assert await delete(client, "Fish", "a.png") == 200  # the last that could own it
    assert await keys_under(storage, f"{PREFIX}/Fish/") == []


# -- staleness --------------------------------------------------------------------------


async def test_a_thumbnail_records_the_etag_of_its_original(start: Start, storage: Storage) -> None:
    client = await start()
    await upload(client, "Fish", "e.jpg", plain(64, 64, RED, "jpeg"))
    assert await fetched(client, thumb("e.jpg", 16))
    original = await storage.head(f"{PREFIX}/Fish/originals/e.jpg")
    made = await storage.head(f"{THUMBS}/e.jpg_16.jpg")
    assert original is not None
    assert made is not None
    assert (made.metadata or {}).get(META_SOURCE_ETAG) == original.etag


async def test_an_original_replaced_in_storage_gets_a_new_thumbnail(
    start: Start, storage: Storage
) -> None:
    client = await start()
    await upload(client, "Fish", "r.jpg", plain(64, 64, RED, "jpeg"))
    assert near(colour(await fetched(client, thumb("r.jpg", 16))), RED)
    # as sync or another writer would replace it: not through /fileupload
    replaced = plain(64, 64, BLUE, "jpeg")
    await storage.put(f"{PREFIX}/Fish/originals/r.jpg", replaced, content_type="image/jpeg")
    assert near(colour(await fetched(client, thumb("r.jpg", 16))), BLUE)
    assert near(colour(await fetched(client, thumb("r.jpg", 16))), BLUE)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_an_original_written_straight_to_the_folder_gets_a_new_thumbnail(
    start: Start, backend: Backend
) -> None:
    client = await start()
    await upload(client, "Fish", "w.jpg", plain(64, 64, RED, "jpeg"))
    assert near(colour(await fetched(client, thumb("w.jpg", 16))), RED)
    assert backend.root is not None
    write_file(backend.root / PREFIX / "Fish" / "originals" / "w.jpg", plain(48, 64, GREEN, "jpeg"))
    assert near(colour(await fetched(client, thumb("w.jpg", 16))), GREEN)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
@pytest.mark.parametrize("older", [True, False])
async def test_a_thumbnail_with_no_recorded_source_is_stale_when_older_than_its_original(
    start: Start, backend: Backend, older: bool
) -> None:
    client = await start()
    await upload(client, "Fish", "m.jpg", plain(64, 64, RED, "jpeg"))
    assert backend.root is not None
    when = time.time() + (-3600 if older else 3600)
    # put there by hand: no sidecar, so no recorded source
    write_file(backend.root / THUMBS / "m.jpg_16.jpg", plain(16, 16, BLUE, "jpeg"), when)
    wanted = RED if older else BLUE
    assert near(colour(await fetched(client, thumb("m.jpg", 16))), wanted)


# -- bounds -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_made_thumbnail_is_served_while_every_render_slot_is_taken(
    start: Start,
) -> None:
    from offload.server import asset_routes

    client = await start()
    await upload(client, "Fish", "hit.jpg", plain(64, 64, RED, "jpeg"))
    assert await fetched(client, thumb("hit.jpg", 16))
    slots = client.app[asset_routes.RENDERS]
    for _ in range(asset_routes.RENDERS_AT_ONCE):
        await slots.acquire()
    try:
        assert near(colour(await fetched(client, thumb("hit.jpg", 16))), RED)
    finally:
        for _ in range(asset_routes.RENDERS_AT_ONCE):
            slots.release()


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_thumbnail_renders_in_an_executor_thread_holding_a_render_slot(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offload.images import asset_server, thumbnails
    from offload.server import asset_routes

    client = await start()
    seen: list[tuple[bool, int]] = []
    slots = client.app[asset_routes.RENDERS]

    def watched(*args: Any, **kwargs: Any) -> None:
        seen.append((threading.current_thread() is threading.main_thread(), slots._value))
        thumbnails.make_thumbnail(*args, **kwargs)

    monkeypatch.setattr(asset_server, "make_thumbnail", watched)
    await upload(client, "Fish", "t.jpg", plain(64, 64, RED, "jpeg"))
    assert await fetched(client, thumb("t.jpg", 16))
    assert seen == [(False, asset_routes.RENDERS_AT_ONCE - 1)]


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_an_exif_read_copies_its_original_only_in_a_render_slot(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offload.server import asset_routes

    monkeypatch.setattr(asset_routes, "RENDER_WAIT", 0.05)
    client = await start()
    await upload(client, "Fish", "x.jpg", base.photo(32, 32))
    slots = client.app[asset_routes.RENDERS]
    for _ in range(asset_routes.RENDERS_AT_ONCE):
        await slots.acquire()
    query = {"coll": "Fish", "filename": "x.jpg", "dt": "date"}
    busy = await client.get("/getmetadata", params=query, headers=HOST)
    assert (busy.status, busy.headers["Retry-After"]) == (503, "2")
    for _ in range(asset_routes.RENDERS_AT_ONCE):
        slots.release()
    date = await client.get("/getmetadata", params=query, headers=HOST)
    assert (date.status, await date.text()) == (200, "2019:01:02 03:04:05")


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_filedelete_keeps_a_thumbnail_another_original_has_now_under_an_earlier_name(
    start: Start, storage: Storage
) -> None:
    client = await start()
    await upload(client, "Fish", "a.png", plain(40, 20, RED, "png"))
    await upload(client, "Fish", "a.png.tif", plain(40, 20, GREEN, "tiff"))
    assert near(colour(await fetched(client, thumb("a.png"))), RED)  # a.png_20.png
    assert await delete(client, "Fish", "a.png.tif") == 200  # whose earlier name it was
    assert await keys_under(storage, f"{THUMBS}/") == [f"{THUMBS}/a.png_20.png"]


# -- a phone's HEIC (HEVC), decoded by libheif ------------------------------------------


async def test_a_heic_photo_gets_an_upright_png_thumbnail_and_its_exif(
    start: Start, backend: Backend
) -> None:
    from tests.test_transforms_render import PHONE_HEIC

    client = await start()
    assert (await upload(client, "Fish", "IMG_0001.heic", PHONE_HEIC.read_bytes())).status == 200
    body = await fetched(client, thumb("IMG_0001.heic", scale=80))
    image = pyvips.Image.new_from_buffer(body, "")
    assert body.startswith(b"\x89PNG")  # a PNG, as Specify makes for HEIC
    assert (image.width, image.height) == (60, 80)  # upright: the photo is portrait
    query = {"coll": "Fish", "filename": "IMG_0001.heic"}
    meta = await client.get("/getmetadata", params=query, headers=HOST)
    assert meta.status == 200
    groups = {group["Name"]: group["Fields"] for group in await meta.json()}
    assert groups["GPS"]["GPSLatitudeRef"] == "N"
    assert groups["Image"]["Make"] == "offload"


async def test_a_heic_thumbnail_waiting_for_its_turn_holds_no_render_slot(
    start: Start, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from offload.images import heif
    from offload.server import asset_routes, transforms
    from tests.test_transforms_render import PHONE_HEIC

    decode = heif.decode

    def slow_decode(path: Path) -> Any:
        time.sleep(2.0)  # longer than a thumbnail waits for a slot or a turn here
        return decode(path)

    monkeypatch.setattr(heif, "decode", slow_decode)
    monkeypatch.setattr(transforms, "HEIC_WAIT", 0.5)
    monkeypatch.setattr(asset_routes, "RENDER_WAIT", 0.5)
    client = await start()
    for name in ("a.heic", "b.heic"):
        assert (await upload(client, "Fish", name, PHONE_HEIC.read_bytes())).status == 200
    assert (await upload(client, "Fish", "c.jpg", plain(40, 20, GREEN, "jpeg"))).status == 200

    async def status(filename: str) -> int:
        reply = await client.get("/fileget", params=thumb(filename), headers=HOST)
        await reply.read()
        return int(reply.status)

    first = asyncio.create_task(status("a.heic"))
    await asyncio.sleep(0.3)  # the first HEIC renders, holding one of the 2 slots
    second = asyncio.create_task(status("b.heic"))
    await asyncio.sleep(0.1)  # the second waits for the HEIC turn, not in a slot
    assert await status("c.jpg") == 200  # the free slot makes the JPEG's meanwhile
    assert sorted([await first, await second]) == [200, 503]

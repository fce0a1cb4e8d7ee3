"""Specify's web-asset-server protocol at offload's origin, on a folder and on ``rclone serve s3``.

Each test drives the app over loopback HTTP as Specify would: tokens made with
Specify's scheme, uploads as multipart forms with the file first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pypdfium2
import pytest
import pyvips
from aiohttp import FormData

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site, parse_asset_collections
from offload.images.specify_token import make_token, token_problem
from offload.server.app import create_app
from offload.storage.base import Storage
from tests.conftest import RCLONE
from tests.storage_servers import Backend

KEY = "specify-asset-key-for-tests-0123456789"
PREFIX = "specify"


@pytest.fixture(params=["local", RCLONE])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A local folder, then ``rclone serve s3`` (this module's storages)."""
    if request.param == "local":
        root = tmp_path / "bucket"
        root.mkdir()
        return Backend("local", root=root)
    return request.getfixturevalue("rclone_backend")


Start = Callable[..., Awaitable[Any]]


@pytest.fixture
def start(aiohttp_client: Any, site_location: dict[str, str]) -> Start:
    """The app with site "museum" as an asset server on host assets.test, "blog" on any host."""

    async def run(**museum: Any) -> Any:
        options = {
            "hostnames": ("assets.test",),
            "prefix": PREFIX,
            "asset_server": True,
            "asset_server_key": Secret(KEY),
            **site_location,
            **museum,
        }
        sites = {
            "museum": Site(name="museum", **options),
            "blog": Site(name="blog", hostnames=("*",), **site_location),
        }
        return await aiohttp_client(create_app(Settings(storage_timeout=2.0, sites=sites)))

    return run


HOST = {"Host": "assets.test"}


def photo(width: int = 400, height: int = 300) -> bytes:
    """A JPEG of one colour with an EXIF DateTimeOriginal."""
    black = pyvips.Image.black(width, height, bands=3)
    image = black.linear([1, 1, 1], [200, 100, 50]).cast("uchar").copy()
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd2-DateTimeOriginal", "2019:01:02 03:04:05")
    return bytes(image.jpegsave_buffer(Q=95))


def pdf(width: float = 200, height: float = 100) -> bytes:
    document = pypdfium2.PdfDocument.new()
    document.new_page(width, height)
    import io

    out = io.BytesIO()
    document.save(out)
    document.close()
    return out.getvalue()


async def upload(client: Any, coll: str, store: str, data: bytes, *, token: str | None = None):
    form = FormData()
    form.add_field("file", data, filename="upload.bin", content_type="application/octet-stream")
    form.add_field("store", store)
    form.add_field("type", "O")
    form.add_field("coll", coll)
    form.add_field("token", make_token(KEY, store) if token is None else token)
    return await client.post("/fileupload", data=form, headers=HOST)


async def fetched(client: Any, params: dict[str, str]) -> bytes:
    """A /fileget body, read whole (an unread body would hold the file open past the test)."""
    reply = await client.get("/fileget", params=params, headers=HOST)
    assert reply.status == 200
    return bytes(await reply.read())


async def keys_under(storage: Storage, prefix: str) -> list[str]:
    return [info.key async for info in storage.list(prefix)]


# -- tokens ----------------------------------------------------------------------------


def test_a_token_is_hmac_md5_of_timestamp_and_filename_then_the_timestamp() -> None:
    # hex(HMAC-MD5("key", "1700000000" + "a.jpg")), as Specify's generate_token makes it.
    import hashlib
    import hmac

    mac = hmac.new(b"key", b"1700000000a.jpg", hashlib.md5).hexdigest()
    assert make_token("key", "a.jpg", 1700000000) == f"{mac}:1700000000"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (lambda now: make_token(KEY, "a.jpg", now), None),
        (lambda now: make_token(KEY, "a.jpg", now - 149), None),
        (lambda now: make_token(KEY, "a.jpg", now - 150), "timestamp out of range"),
        (lambda now: make_token(KEY, "a.jpg", now + 400), "timestamp out of range"),
        (lambda now: make_token("other-key", "a.jpg", now), "invalid"),
        (lambda now: make_token(KEY, "b.jpg", now), "invalid"),
        (lambda now: "", "missing"),
        (lambda now: "abc", "malformed"),
        (lambda now: "abc:12x", "malformed"),
        (lambda now: "a:b:c", "malformed"),
    ],
)
def test_tokens_good_bad_and_stale(token: Callable[[int], str], problem: str | None) -> None:
    now = 1_700_000_000
    found = token_problem(KEY, token(now), "a.jpg", tolerance=150, now=now)
    assert (found is None) if problem is None else (problem in (found or ""))
    assert KEY not in (found or "")


def test_a_site_without_a_key_refuses_every_token() -> None:
    assert token_problem("", make_token("", "a.jpg"), "a.jpg", tolerance=150) is not None


def test_asset_collections_is_a_table_of_folders() -> None:
    assert parse_asset_collections({"KUFish": "/fish/"}, Path()) == (("KUFish", "fish"),)
    assert parse_asset_collections({"All": ""}, Path()) == (("All", ""),)
    with pytest.raises(ValueError, match="safe key prefix"):
        parse_asset_collections({"KUFish": "../x"}, Path())


# -- the protocol, on both storages ----------------------------------------------------------


async def test_web_asset_store_xml_lists_the_urls_on_the_host_asked(start: Start) -> None:
    client = await start()
    reply = await client.get("/web_asset_store.xml", headers=HOST)
    body = await reply.text()
    assert reply.status == 200
    assert reply.content_type == "text/xml"
    assert "X-Timestamp" in reply.headers
    for kind, path in [("read", "fileget"), ("write", "fileupload"), ("delete", "filedelete")]:
        assert f'<url type="{kind}"><![CDATA[http://assets.test/{path}]]></url>' in body
    assert '<url type="getmetadata"><![CDATA[http://assets.test/getmetadata]]></url>' in body
    assert '<url type="testkey">http://assets.test/testkey</url>' in body


async def test_testkey_needs_a_good_token_always(start: Start) -> None:
    client = await start()
    good = await client.get(
        "/testkey", params={"random": "r1", "token": make_token(KEY, "r1")}, headers=HOST
    )
    assert (good.status, await good.text()) == (200, "Ok.")
    assert good.headers["X-Timestamp"].isdigit()
    bad = await client.get(
        "/testkey", params={"random": "r1", "token": make_token("nope", "r1")}, headers=HOST
    )
    assert (bad.status, await bad.text()) == (403, "Auth token is invalid.")
    assert "X-Timestamp" in bad.headers
    stale = make_token(KEY, "r1", int(time.time()) - 1000)
    old = await client.get("/testkey", params={"random": "r1", "token": stale}, headers=HOST)
    assert old.status == 403
    assert "out of range" in await old.text()


async def test_upload_get_thumbnail_metadata_and_delete_a_jpeg(
    start: Start, storage: Storage
) -> None:
    client = await start()
    data = photo()
    reply = await upload(client, "Fish", "abc.jpg", data)
    assert (reply.status, await reply.text()) == (200, "Ok.")
    assert await storage.head(f"{PREFIX}/Fish/originals/abc.jpg") is not None

    query = {"coll": "Fish", "filename": "abc.jpg"}
    original = await client.get("/fileget", params={**query, "type": "O"}, headers=HOST)
    assert original.status == 200
    assert await original.read() == data
    assert original.headers["Content-Type"] == "image/jpeg"

    named = {**query, "type": "O", "downloadname": "dir/Ménage 1.jpg"}
    download = await client.get("/fileget", params=named, headers=HOST)
    assert await download.read() == data
    assert download.headers["Content-Disposition"] == (
        "inline; filename*=utf-8''M%C3%A9nage%201.jpg"
    )

    thumb = await client.get(
        "/fileget", params={**query, "type": "T", "scale": "100"}, headers=HOST
    )
    assert thumb.status == 200
    image = pyvips.Image.new_from_buffer(await thumb.read(), "")
    assert (image.width, image.height) == (100, 75)
    red, green, blue = (image.avg() for image in image.bandsplit()[:3])
    assert abs(red - 200) < 8
    assert abs(green - 100) < 8
    assert abs(blue - 50) < 8
    assert await storage.head(f"{PREFIX}/Fish/thumbnails/abc.jpg_100.jpg") is not None

    bigger = {**query, "type": "T", "scale": "1000"}  # never enlarged
    big = pyvips.Image.new_from_buffer(
        await (await client.get("/fileget", params=bigger, headers=HOST)).read(), ""
    )
    assert (big.width, big.height) == (400, 300)

    meta = await client.get("/getmetadata", params=query, headers=HOST)
    assert meta.status == 200
    groups = {group["Name"]: group["Fields"] for group in json.loads(await meta.text())}
    assert groups["EXIF"]["DateTimeOriginal"] == "2019:01:02 03:04:05"
    date = await client.get("/getmetadata", params={**query, "dt": "date"}, headers=HOST)
    assert (date.status, await date.text()) == (200, "2019:01:02 03:04:05")

    token = make_token(KEY, "abc.jpg")
    gone = await client.post(
        "/filedelete", data={"coll": "Fish", "filename": "abc.jpg", "token": token}, headers=HOST
    )
    assert (gone.status, await gone.text()) == (200, "Ok.")
    assert await keys_under(storage, f"{PREFIX}/Fish/") == []
    missing = await client.get("/fileget", params={**query, "type": "O"}, headers=HOST)
    assert missing.status == 404
    again = await client.post(
        "/filedelete", data={"coll": "Fish", "filename": "abc.jpg", "token": token}, headers=HOST
    )
    assert again.status == 404


async def test_filedelete_keeps_thumbnails_of_other_files(start: Start, storage: Storage) -> None:
    client = await start()
    for name in ("a.jpg", "ab.jpg"):
        await upload(client, "Fish", name, photo(64, 48))
        params = {"coll": "Fish", "filename": name, "type": "T", "scale": "32"}
        assert await fetched(client, params)
    form = {"coll": "Fish", "filename": "a.jpg", "token": make_token(KEY, "a.jpg")}
    assert (await client.post("/filedelete", data=form, headers=HOST)).status == 200
    assert await keys_under(storage, f"{PREFIX}/Fish/") == [
        f"{PREFIX}/Fish/originals/ab.jpg",
        f"{PREFIX}/Fish/thumbnails/ab.jpg_32.jpg",
    ]


async def test_a_pdf_thumbnail_is_its_first_page_as_png(start: Start, storage: Storage) -> None:
    client = await start()
    assert (await upload(client, "Docs", "field-notes.pdf", pdf())).status == 200
    params = {"coll": "Docs", "filename": "field-notes.pdf", "type": "T", "scale": "50"}
    reply = await client.get("/fileget", params=params, headers=HOST)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "image/png"
    image = pyvips.Image.new_from_buffer(await reply.read(), "")
    assert (image.width, image.height) == (50, 25)
    assert image.avg() > 250  # a blank page on white
    assert await storage.head(f"{PREFIX}/Docs/thumbnails/field-notes.pdf_50.png") is not None


async def test_a_mapped_collection_lives_in_its_folder(start: Start, storage: Storage) -> None:
    collections = (("KUFishvoucher", "ichthyology"), ("Shared", ""))
    client = await start(asset_collections=collections)
    assert (await upload(client, "KUFishvoucher", "v.jpg", photo(32, 32))).status == 200
    assert (await upload(client, "Shared", "s.jpg", photo(8, 8))).status == 200
    assert await keys_under(storage, f"{PREFIX}/") == [
        f"{PREFIX}/ichthyology/originals/v.jpg",
        f"{PREFIX}/originals/s.jpg",
    ]
    params = {"coll": "KUFishvoucher", "filename": "v.jpg", "type": "O"}
    reply = await client.get("/fileget", params=params, headers=HOST)
    assert reply.status == 200
    assert await reply.read()


# -- tokens at the routes, on a folder -------------------------------------------------------


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_an_upload_with_a_bad_or_stale_token_stores_nothing(
    start: Start, storage: Storage
) -> None:
    client = await start()
    bad = await upload(client, "Fish", "x.jpg", photo(8, 8), token=make_token("nope", "x.jpg"))
    assert (bad.status, await bad.text()) == (403, "Auth token is invalid.")
    stale = make_token(KEY, "x.jpg", int(time.time()) - 151)
    old = await upload(client, "Fish", "x.jpg", photo(8, 8), token=stale)
    assert old.status == 403
    assert await keys_under(storage, "") == []
    thumb = await upload(client, "Fish", "x.jpg", photo(8, 8))  # type=O: stored
    assert thumb.status == 200


@pytest.mark.parametrize("backend", ["local"], indirect=True)
@pytest.mark.parametrize("required", [False, True])
async def test_require_key_for_get(start: Start, required: bool) -> None:
    client = await start(asset_require_key_for_get=required)
    await upload(client, "Fish", "g.jpg", photo(8, 8))
    query = {"coll": "Fish", "filename": "g.jpg", "type": "O"}
    bare = await client.get("/fileget", params=query, headers=HOST)
    assert bare.status == (403 if required else 200)
    await bare.read()
    meta = await client.get("/getmetadata", params=query, headers=HOST)
    assert meta.status == (403 if required else 200)
    signed = {**query, "token": make_token(KEY, "g.jpg")}
    reply = await client.get("/fileget", params=signed, headers=HOST)
    assert reply.status == 200
    assert await reply.read()


@pytest.mark.parametrize("backend", ["local"], indirect=True)
@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"coll": "Fish", "filename": "../x.jpg", "type": "O"}, 400),
        ({"coll": "..", "filename": "x.jpg", "type": "O"}, 400),
        ({"coll": "Fish", "filename": "x.jpg", "type": "Q"}, 400),
        ({"coll": "Fish", "filename": "x.jpg", "type": "T", "scale": "big"}, 400),
        ({"coll": "Fish", "filename": "x.txt", "type": "T", "scale": "10"}, 400),
        ({"coll": "Fish", "filename": "nothere.jpg", "type": "T", "scale": "10"}, 404),
        ({"coll": "Fish", "filename": "nothere.jpg", "type": "O"}, 404),
    ],
)
async def test_bad_fileget_requests_get_short_answers(
    start: Start, params: dict[str, str], status: int
) -> None:
    client = await start()
    reply = await client.get("/fileget", params=params, headers=HOST)
    assert reply.status == status
    assert reply.content_type == "text/plain"
    assert len(await reply.text()) < 100


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_other_hosts_keep_these_paths_as_origin_keys(start: Start) -> None:
    client = await start()
    reply = await client.get("/fileget", params={"coll": "x"}, headers={"Host": "blog.test"})
    assert reply.status == 404
    assert "X-Timestamp" not in reply.headers
    post = await client.post("/filedelete", data={}, headers={"Host": "blog.test"})
    assert post.status == 405


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_tiff_thumbnail_is_png(start: Start, storage: Storage) -> None:
    client = await start()
    black = pyvips.Image.black(80, 40, bands=3)
    tiff = bytes(black.linear([1, 1, 1], [10, 200, 30]).cast("uchar").tiffsave_buffer())
    assert (await upload(client, "Herb", "sheet.tif", tiff)).status == 200
    params = {"coll": "Herb", "filename": "sheet.tif", "type": "T", "scale": "20"}
    reply = await client.get("/fileget", params=params, headers=HOST)
    assert reply.headers["Content-Type"] == "image/png"
    image = pyvips.Image.new_from_buffer(await reply.read(), "")
    assert (image.width, image.height) == (20, 10)
    assert await storage.head(f"{PREFIX}/Herb/thumbnails/sheet.tif_20.png") is not None


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_concurrent_first_requests_make_a_thumbnail_once(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offload.images import asset_server, thumbnails

    made: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> None:
        made.append(1)
        thumbnails.make_thumbnail(*args, **kwargs)

    monkeypatch.setattr(asset_server, "make_thumbnail", counted)
    client = await start()
    await upload(client, "Fish", "many.jpg", photo(200, 100))
    params = {"coll": "Fish", "filename": "many.jpg", "type": "T", "scale": "50"}

    async def fetch() -> bytes:
        reply = await client.get("/fileget", params=params, headers=HOST)
        assert reply.status == 200
        return bytes(await reply.read())

    bodies = await asyncio.gather(*(fetch() for _ in range(8)))
    assert len(set(bodies)) == 1
    assert made == [1]


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_replaced_original_loses_its_old_thumbnails(start: Start, storage: Storage) -> None:
    client = await start()
    await upload(client, "Fish", "r.jpg", photo(64, 64))
    params = {"coll": "Fish", "filename": "r.jpg", "type": "T", "scale": "16"}
    assert await fetched(client, params)
    assert (await upload(client, "Fish", "r.jpg", photo(32, 64))).status == 200
    assert await keys_under(storage, f"{PREFIX}/Fish/thumbnails/") == []


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_an_upload_over_max_upload_size_is_refused(
    aiohttp_client: Any, site_location: dict[str, str], storage: Storage
) -> None:
    site = Site(
        name="museum",
        hostnames=("*",),
        asset_server=True,
        asset_server_key=Secret(KEY),
        **site_location,
    )
    settings = Settings(max_upload_size=1000, sites={"museum": site})
    client = await aiohttp_client(create_app(settings))
    reply = await upload(client, "Fish", "big.jpg", b"x" * 5000)
    assert reply.status == 413
    assert await keys_under(storage, "") == []


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_head_of_fileget_gives_the_headers_only(start: Start) -> None:
    client = await start()
    data = photo(16, 16)
    await upload(client, "Fish", "h.jpg", data)
    params = {"coll": "Fish", "filename": "h.jpg", "type": "O"}
    reply = await client.head("/fileget", params=params, headers=HOST)
    assert reply.status == 200
    assert reply.headers["Content-Length"] == str(len(data))
    assert await reply.read() == b""


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_thumbnails_past_the_render_slots_get_503_not_a_queue(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offload.server import asset_routes

    monkeypatch.setattr(asset_routes, "RENDER_WAIT", 0.05)
    client = await start()
    await upload(client, "Fish", "busy.jpg", photo(64, 64))
    slots = client.app[asset_routes.RENDERS]
    for _ in range(asset_routes.RENDERS_AT_ONCE):
        await slots.acquire()  # every slot taken by renders that go on
    params = {"coll": "Fish", "filename": "busy.jpg", "type": "T", "scale": "16"}
    reply = await client.get("/fileget", params=params, headers=HOST)
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "2"
    for _ in range(asset_routes.RENDERS_AT_ONCE):
        slots.release()
    reply = await client.get("/fileget", params=params, headers=HOST)
    assert reply.status == 200
    assert await reply.read()

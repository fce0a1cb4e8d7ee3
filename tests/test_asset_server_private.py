"""Asset-server files under the site's ``signed_prefixes`` need Specify's token on GET,
whatever ``asset_require_key_for_get`` says.

Runs over loopback HTTP as ``test_asset_server`` does, with its fixtures.
"""

from __future__ import annotations

from typing import Any

import pytest

from offload.config.kinds import Secret
from offload.images.specify_token import make_token
from tests import test_asset_server as base
from tests.test_asset_server import HOST, PREFIX, Start, photo, upload

backend = base.backend  # a local folder, then rclone serve s3
start = base.start
KEY = base.KEY


async def private_site(start: Start, *signed: str) -> Any:
    """The museum site with ``signed`` (under its prefix) as signed prefixes."""
    prefixes = tuple(f"{PREFIX}/{folder}" for folder in signed)
    client = await start(signed_prefixes=prefixes, signing_secret=Secret("url-signing-secret"))
    await upload(client, "Secret", "s.jpg", photo(40, 30))
    await upload(client, "Fish", "p.jpg", photo(40, 30))
    return client


async def answer(client: Any, path: str, params: dict[str, str], method: str = "GET") -> Any:
    reply = await client.request(method, path, params=params, headers=HOST)
    body = await reply.read()
    return reply.status, body, reply.headers


@pytest.mark.parametrize("signed", ["Secret", "Secret/originals"])
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/fileget", {"type": "O"}),
        ("/fileget", {"type": "T", "scale": "10"}),
        ("/getmetadata", {}),
        ("/getmetadata", {"dt": "date"}),
    ],
)
async def test_a_private_file_needs_a_token_on_get(
    start: Start, signed: str, path: str, params: dict[str, str]
) -> None:
    client = await private_site(start, signed)
    query = {"coll": "Secret", "filename": "s.jpg", **params}
    status, body, headers = await answer(client, path, query)
    assert (status, body) == (403, b"Auth token is missing.")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "X-Timestamp" in headers
    bad = {**query, "token": make_token("not-the-key", "s.jpg")}
    assert (await answer(client, path, bad))[:2] == (403, b"Auth token is invalid.")
    status, body, headers = await answer(client, path, {**query, "token": make_token(KEY, "s.jpg")})
    assert status == 200
    assert body
    if path == "/fileget":
        assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_head_of_a_private_file_needs_a_token(start: Start) -> None:
    client = await private_site(start, "Secret")
    query = {"coll": "Secret", "filename": "s.jpg", "type": "O"}
    assert (await answer(client, "/fileget", query, "HEAD"))[0] == 403
    signed = {**query, "token": make_token(KEY, "s.jpg")}
    assert (await answer(client, "/fileget", signed, "HEAD"))[0] == 200


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_thumbnail_kept_under_a_signed_prefix_needs_a_token(start: Start) -> None:
    client = await private_site(start, "Fish/thumbnails")
    query = {"coll": "Fish", "filename": "p.jpg"}
    assert (await answer(client, "/fileget", {**query, "type": "O"}))[0] == 200
    thumb = {**query, "type": "T", "scale": "10"}
    assert (await answer(client, "/fileget", thumb))[:2] == (403, b"Auth token is missing.")
    signed = {**thumb, "token": make_token(KEY, "p.jpg")}
    assert (await answer(client, "/fileget", signed))[0] == 200


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_files_outside_signed_prefixes_stay_open_on_get(start: Start) -> None:
    client = await private_site(start, "Secret")
    query = {"coll": "Fish", "filename": "p.jpg"}
    status, body, headers = await answer(client, "/fileget", {**query, "type": "O"})
    assert (status, headers["Cache-Control"]) == (200, "no-cache")
    assert body
    assert (await answer(client, "/fileget", {**query, "type": "T", "scale": "10"}))[0] == 200
    assert (await answer(client, "/getmetadata", query))[0] == 200


async def test_requiring_a_key_for_gets_closes_the_files_own_urls_at_the_origin(
    start: Start,
) -> None:
    client = await start(asset_require_key_for_get=True, transform_widths=(20,))
    await upload(client, "Fish", "p.jpg", photo(40, 30))
    own = f"/{PREFIX}/Fish/originals/p.jpg"
    for path in (own, f"/_img/w=20{own}"):
        reply = await client.get(path, headers=HOST)
        assert reply.status == 403, path
        assert "token" in await reply.text()
    query = {"coll": "Fish", "filename": "p.jpg", "type": "O"}
    token = make_token(KEY, "p.jpg")
    assert (await answer(client, "/fileget", {**query, "token": token}))[0] == 200


async def test_without_a_key_for_gets_the_origin_serves_the_files_own_urls(start: Start) -> None:
    client = await start()
    await upload(client, "Fish", "p.jpg", photo(40, 30))
    reply = await client.get(f"/{PREFIX}/Fish/originals/p.jpg", headers=HOST)
    assert reply.status == 200
    await reply.read()


async def test_a_collection_in_the_variants_folder_is_refused(start: Start) -> None:
    client = await start()
    reply = await upload(client, "_variants", "p.jpg", photo(40, 30))
    assert reply.status == 400
    assert await reply.text() == "coll is not a safe name."

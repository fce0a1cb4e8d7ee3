"""Asset-server deletions and replacements take the original's transform variants with
them, and purge every URL they changed at the CDN where the site purges.

Runs over loopback HTTP as ``test_asset_server`` does, with a fake Cloudflare API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.server.app import create_app
from offload.server.appkeys import STORAGES
from tests import test_asset_server as base
from tests.fake_cdns import FakeCloudflare
from tests.test_asset_server import HOST, KEY, PREFIX, fetched, keys_under, photo, upload

backend = base.backend  # a local folder, then rclone serve s3
CDN = "https://cdn.example.org"
ZONE, TOKEN = "zone-0123456789abcdef", "cloudflare-token-0123456789abcdef"
ORIGINAL = f"{PREFIX}/Fish/originals/p.jpg"
VARIANTS = f"{PREFIX}/_variants/"


async def museum(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, site_location: dict[str, str]
) -> tuple[Any, FakeCloudflare]:
    fake = FakeCloudflare(token=TOKEN, zone=ZONE)
    api = await aiohttp_server(fake.app())
    site = Site(
        name="museum",
        hostnames=("assets.test",),
        prefix=PREFIX,
        asset_server=True,
        asset_server_key=Secret(KEY),
        transform_widths=(20,),
        cdn_url=CDN,
        purge="cloudflare",
        purge_api_url=str(api.make_url("/client/v4")).rstrip("/"),
        cloudflare_zone_id=ZONE,
        cloudflare_api_token=Secret(TOKEN),
        **site_location,
    )
    settings = Settings(
        storage_timeout=2.0, manifest=tmp_path / "manifest.sqlite3", sites={"museum": site}
    )
    return await aiohttp_client(create_app(settings)), fake


async def purged_soon(fake: FakeCloudflare, wanted: set[str]) -> set[str]:
    """The URLs purged once ``wanted`` are among them, or after 5 s (the drain sends)."""
    for _ in range(100):
        got = {url for accepted in fake.accepted for url in accepted.body.get("files", [])}
        if wanted <= got:
            break
        await asyncio.sleep(0.05)
    return got


async def test_filedelete_takes_the_transform_variants_and_purges_every_url(
    aiohttp_client, aiohttp_server, tmp_path, site_location
) -> None:
    client, fake = await museum(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["museum"]
    assert (await upload(client, "Fish", "p.jpg", photo(40, 30))).status == 200
    await fetched(client, {"coll": "Fish", "filename": "p.jpg", "type": "T", "scale": "10"})
    made = await client.get(f"/_img/w=20/{ORIGINAL}", headers=HOST)
    assert made.status == 200
    await made.read()
    assert await keys_under(storage, VARIANTS)

    form = {"coll": "Fish", "filename": "p.jpg", "token": base.make_token(KEY, "p.jpg")}
    reply = await client.post("/filedelete", data=form, headers=HOST)
    assert reply.status == 200

    assert await keys_under(storage, f"{PREFIX}/") == []  # original, thumbnail, variant
    wanted = {
        f"{CDN}/{ORIGINAL}",
        f"{CDN}/{PREFIX}/Fish/thumbnails/p.jpg_10.jpg",
        f"{CDN}/_img/w=20/{ORIGINAL}",
    }
    assert wanted <= await purged_soon(fake, wanted)


async def test_a_replacing_fileupload_purges_the_original_and_drops_its_variants(
    aiohttp_client, aiohttp_server, tmp_path, site_location
) -> None:
    client, fake = await museum(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["museum"]
    assert (await upload(client, "Fish", "p.jpg", photo(40, 30))).status == 200
    made = await client.get(f"/_img/w=20/{ORIGINAL}", headers=HOST)
    assert made.status == 200
    await made.read()

    assert (await upload(client, "Fish", "p.jpg", photo(60, 30))).status == 200

    assert await keys_under(storage, VARIANTS) == []
    wanted = {f"{CDN}/{ORIGINAL}", f"{CDN}/_img/w=20/{ORIGINAL}"}
    assert wanted <= await purged_soon(fake, wanted)


async def test_filedelete_stands_when_its_late_listing_fails(
    aiohttp_client, aiohttp_server, tmp_path, site_location, monkeypatch
) -> None:
    from offload.storage import StorageUnavailable

    client, _fake = await museum(aiohttp_client, aiohttp_server, tmp_path, site_location)
    storage = client.app[STORAGES]["museum"]
    assert (await upload(client, "Fish", "p.jpg", photo(40, 30))).status == 200
    listings = []
    listing = storage.list

    def failing_second_variants_listing(prefix: str, *args: Any, **kwargs: Any) -> Any:
        if prefix.startswith(VARIANTS):
            listings.append(prefix)
            if len(listings) == 2:  # the listing after the deletion, for late variants
                raise StorageUnavailable("storage timed out")
        return listing(prefix, *args, **kwargs)

    monkeypatch.setattr(storage, "list", failing_second_variants_listing)
    form = {"coll": "Fish", "filename": "p.jpg", "token": base.make_token(KEY, "p.jpg")}
    reply = await client.post("/filedelete", data=form, headers=HOST)
    assert reply.status == 200  # the deletion is done: it is not answered as failed
    assert len(listings) == 2
    assert await storage.head(ORIGINAL) is None

"""An original's variants go with it: the deletion webhook deletes and purges them (on a
local folder and on ``rclone serve s3``), and ``offload variants --prune`` removes the
variants whose original went some other way."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from offload.config.loading import load_settings
from offload.http.signing import signed_request_headers
from offload.images.options import sign_options
from offload.server.app import create_app
from tests.fake_cdns import FakeCloudflare
from tests.helpers import run_cli
from tests.test_transforms_render import jpeg_bytes

PREFIX = "wp-content/uploads"
KEY = f"{PREFIX}/2024/05/photo.jpg"
VARIANTS = f"{PREFIX}/_variants/2024/05/photo.jpg/"
CDN_URL = "https://cdn.example.com"
WEBHOOK = "webhook-secret-for-tests-0123456789abcdef"
SIGNING = "signing-secret-for-tests-0123456789abcdef"
TOKEN = "cdn-token-0123456789abcdef-SECRET"
ZONE = "zone42"


def write_config(tmp_path: Path, location: dict[str, str], api_url: str) -> Path:
    (tmp_path / "uploads" / "2024" / "05").mkdir(parents=True, exist_ok=True)
    lines = "".join(f'{name} = "{value}"\n' for name, value in location.items())
    config = tmp_path / "offload.toml"
    config.write_text(
        f'manifest = "{tmp_path / "manifest.sqlite3"}"\n'
        "[sites.blog]\n"
        f"{lines}"
        f'prefix = "{PREFIX}"\n'
        f'uploads_dir = "{tmp_path / "uploads"}"\n'
        f'cdn_url = "{CDN_URL}"\n'
        'hostnames = ["*"]\n'
        f'webhook_secret = "{WEBHOOK}"\n'
        f'signing_secret = "{SIGNING}"\n'
        'purge = "cloudflare"\n'
        f'purge_api_url = "{api_url}"\n'
        f'cloudflare_zone_id = "{ZONE}"\n'
        f'cloudflare_api_token = "{TOKEN}"\n'
        "[sites.blog.transforms]\n"
        'thumb = "w=150,h=150,fit=cover"\n'
    )
    return config


async def post(client: Any, hook: str, body: Any) -> int:
    raw = json.dumps(body).encode()
    target = f"/_offload/blog/{hook}?n={time.monotonic_ns()}"
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(WEBHOOK, "POST", target, raw),
    }
    response = await client.post(target, data=raw, headers=headers)
    return response.status


async def listed(storage: Any, prefix: str) -> list[str]:
    return [info.key async for info in storage.list(prefix)]


def purged(fake: FakeCloudflare) -> set[str]:
    return {url for accepted in fake.accepted for url in accepted.body.get("files", [])}


@pytest.mark.parametrize("backend", ["local", "rclone"], indirect=True)
async def test_deleting_an_original_deletes_and_purges_its_variants(
    aiohttp_client, aiohttp_server, tmp_path, site_location, storage
):
    fake = FakeCloudflare(token=TOKEN, zone=ZONE)
    api = await aiohttp_server(fake.app())
    config = write_config(tmp_path, site_location, str(api.make_url("/client/v4")).rstrip("/"))
    client = await aiohttp_client(create_app(load_settings(config, {})))
    (tmp_path / "uploads" / "2024" / "05" / "photo.jpg").write_bytes(jpeg_bytes())
    assert await post(client, "uploads", {"files": ["2024/05/photo.jpg"]}) == 200
    sig = sign_options(SIGNING, "w=100,f=png", KEY)
    for url in (f"/_img/thumb/{KEY}", f"/_img/w=100,f=png,s={sig}/{KEY}"):
        assert (await client.get(url)).status == 200
    assert sorted(await listed(storage, VARIANTS)) == [
        VARIANTS + "w=100,f=png.png",
        VARIANTS + "w=150,h=150,fit=cover.jpg",
    ]

    assert await post(client, "deletions", {"files": ["2024/05/photo.jpg"]}) == 200

    assert await listed(storage, VARIANTS) == []
    assert await storage.head(KEY) is None
    thumb_sig = sign_options(SIGNING, "w=150,h=150,fit=cover", KEY)
    wanted = {
        f"{CDN_URL}/{KEY}",
        f"{CDN_URL}/_img/thumb/{KEY}",
        f"{CDN_URL}/_img/w=150,h=150,fit=cover,s={thumb_sig}/{KEY}",
        f"{CDN_URL}/_img/w=100,f=png,s={sig}/{KEY}",
    }
    for _ in range(100):  # the webhook waits for its purge; the drain may still be sending
        if wanted <= purged(fake):
            break
        await asyncio.sleep(0.05)
    assert wanted <= purged(fake)
    gone = await client.get(f"/_img/thumb/{KEY}")
    assert gone.status == 404


async def test_prune_removes_variants_whose_original_is_gone(aiohttp_client, tmp_path):
    bucket = tmp_path / "bucket"
    config = write_config(tmp_path, {"storage": bucket.as_uri()}, "http://127.0.0.1:9")
    client = await aiohttp_client(create_app(load_settings(config, {})))
    for name in ("photo.jpg", "kept.jpg"):
        path = bucket / PREFIX / "2024" / "05" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(200, 100))
        assert (await client.get(f"/_img/thumb/{PREFIX}/2024/05/{name}")).status == 200
    (bucket / KEY).unlink()
    folder = bucket / VARIANTS

    code, out, err = await asyncio.to_thread(
        run_cli, "variants", "--config", config, "--site", "blog", "--prune", "--dry-run"
    )
    assert (code, err) == (0, "")
    assert f"(dryrun) delete: {VARIANTS}w=150,h=150,fit=cover.jpg" in out
    assert folder.exists()

    code, out, err = await asyncio.to_thread(
        run_cli, "variants", "--config", config, "--site", "blog", "--prune"
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"delete: {VARIANTS}w=150,h=150,fit=cover.jpg",
        "# 1 variant(s) deleted in site blog",
    ]
    assert not any(folder.glob("*"))
    kept = bucket / PREFIX / "_variants" / "2024" / "05" / "kept.jpg"
    assert [p.name for p in kept.iterdir()] == ["w=150,h=150,fit=cover.jpg"]


async def test_replacing_an_original_purges_and_deletes_its_variants(
    aiohttp_client, aiohttp_server, tmp_path
):
    fake = FakeCloudflare(token=TOKEN, zone=ZONE)
    api = await aiohttp_server(fake.app())
    bucket = tmp_path / "bucket"
    api_url = str(api.make_url("/client/v4")).rstrip("/")
    config = write_config(tmp_path, {"storage": bucket.as_uri()}, api_url)
    client = await aiohttp_client(create_app(load_settings(config, {})))
    photo = tmp_path / "uploads" / "2024" / "05" / "photo.jpg"
    photo.write_bytes(jpeg_bytes(200, 100))
    assert await post(client, "uploads", {"files": ["2024/05/photo.jpg"]}) == 200
    assert (await client.get(f"/_img/thumb/{KEY}")).status == 200
    assert list((bucket / VARIANTS).glob("*.jpg"))

    photo.write_bytes(jpeg_bytes(300, 150))
    assert await post(client, "uploads", {"files": ["2024/05/photo.jpg"]}) == 200

    assert {f"{CDN_URL}/{KEY}", f"{CDN_URL}/_img/thumb/{KEY}"} <= purged(fake)
    assert not list((bucket / VARIANTS).glob("*.jpg"))  # made again from the new bytes
    answer = await client.get(f"/_img/thumb/{KEY}")
    assert answer.status == 200


async def test_an_original_that_is_not_an_image_is_refused_before_it_is_fetched(
    aiohttp_client, tmp_path, monkeypatch
):
    import offload.server.transforms as transforms

    bucket = tmp_path / "bucket"
    config = write_config(tmp_path, {"storage": bucket.as_uri()}, "http://127.0.0.1:9")
    client = await aiohttp_client(create_app(load_settings(config, {})))
    video = bucket / PREFIX / "2024" / "05" / "movie.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(b"\0" * (1 << 20))
    fetched: list[str] = []

    async def fetch(storage: Any, original: Any, path: Path) -> str:
        fetched.append(original.key)
        raise AssertionError("fetched")

    monkeypatch.setattr(transforms, "_fetch", fetch)
    answer = await client.get(f"/_img/thumb/{PREFIX}/2024/05/movie.mp4")
    assert answer.status == 415
    assert "no-store" not in answer.headers["Cache-Control"]  # the CDN keeps the refusal
    assert fetched == []

"""The transform route at the origin, over real loopback HTTP (aiohttp_client).

Originals are written straight into the site's folder (the bucket), as an
offload would have stored them; answers are checked by their headers and by
decoding the image they carry.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import pyvips

from offload.config.loading import load_settings
from offload.images.options import sign_options
from offload.server import transforms
from offload.server.app import create_app
from offload.server.appkeys import ORIGIN_CACHE
from tests.helpers import run_cli
from tests.test_transforms_render import RED, bomb_png, jpeg_bytes, near

PREFIX = "wp-content/uploads"
KEY = f"{PREFIX}/2024/05/photo.jpg"
SIGNING = "signing-secret-for-tests-0123456789abcdef"


def write_config(tmp_path: Path, extra: str = "", global_extra: str = "") -> Path:
    (tmp_path / "bucket").mkdir(exist_ok=True)
    config = tmp_path / "offload.toml"
    config.write_text(
        f'manifest = "{tmp_path / "manifest.sqlite3"}"\n'
        f"{global_extra}\n"
        "[sites.blog]\n"
        f'storage = "{(tmp_path / "bucket").as_uri()}"\n'
        f'prefix = "{PREFIX}"\n'
        'hostnames = ["*"]\n'
        f'signing_secret = "{SIGNING}"\n'
        "transform_widths = [320, 640]\n"
        f"{extra}\n"
        "[sites.blog.transforms]\n"
        'thumb = "w=150,h=150,fit=cover"\n'
        'card = "w=400,f=webp"\n'
    )
    return config


def put(tmp_path: Path, key: str, data: bytes) -> Path:
    path = tmp_path / "bucket" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def variants_of(tmp_path: Path, key: str = KEY) -> list[str]:
    folder = tmp_path / "bucket" / PREFIX / "_variants" / key.removeprefix(PREFIX + "/")
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def signed(options: str, key: str = KEY) -> str:
    return f"/_img/{options},s={sign_options(SIGNING, options, key)}/{key}"


def decoded(body: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(body, "")


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    put(tmp_path, KEY, jpeg_bytes())
    return await aiohttp_client(create_app(load_settings(write_config(tmp_path), {})))


async def test_a_preset_is_served_unsigned_and_stored_as_a_variant(client, tmp_path):
    response = await client.get(f"/_img/thumb/{KEY}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    image = decoded(await response.read())
    assert (image.width, image.height) == (150, 150)
    assert near(image(75, 75), RED)
    assert variants_of(tmp_path) == ["w=150,h=150,fit=cover.jpg"]


async def test_a_stored_variant_answers_like_any_object(client, tmp_path):
    first = await client.get(f"/_img/card/{KEY}")
    body = await first.read()
    etag = first.headers["ETag"]
    assert first.headers["Content-Type"] == "image/webp"
    again = await client.get(f"/_img/card/{KEY}", headers={"If-None-Match": etag})
    assert again.status == 304
    part = await client.get(f"/_img/card/{KEY}", headers={"Range": "bytes=0-9"})
    assert part.status == 206
    assert await part.read() == body[:10]
    assert part.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert "max-age=86400" in first.headers["Cache-Control"]
    assert first.headers["Accept-Ranges"] == "bytes"


async def test_a_listed_width_alone_is_served_unsigned(client):
    response = await client.get(f"/_img/w=320/{KEY}")
    assert response.status == 200
    assert decoded(await response.read()).width == 320


@pytest.mark.parametrize(
    "options", ["w=321", "w=320,q=50", "w=150,h=150,fit=cover", "f=webp", "w=320,f=auto"]
)
async def test_other_options_without_a_signature_are_refused(client, options):
    response = await client.get(f"/_img/{options}/{KEY}")
    assert response.status == 403
    assert "signature" in await response.text()


async def test_signed_options_are_served_and_a_bad_signature_is_refused(client):
    response = await client.get(signed("w=100,h=50,fit=cover,q=60,f=png"))
    assert response.status == 200
    image = decoded(await response.read())
    assert (image.width, image.height) == (100, 50)
    forged = signed("w=100,h=50,fit=cover,q=60,f=png").replace("w=100,h=50", "w=101,h=50", 1)
    assert (await client.get(forged)).status == 403
    other_key = signed("w=100,f=png", key=f"{PREFIX}/other.jpg").replace(
        "other.jpg", "2024/05/photo.jpg"
    )
    assert (await client.get(other_key)).status == 403


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("w=320,zoom=2", "unknown option 'zoom'"),
        ("w=abc", "w must be"),
        ("w=320,fit=squash", "fit must be"),
        ("w", "malformed option"),
        ("h=50,w=100", "canonical order and form: w=100,h=50"),
        ("w=0320", "w must be"),
        ("nosuchpreset", "malformed option"),
    ],
)
async def test_unknown_or_malformed_options_are_a_400(client, options, says):
    response = await client.get(f"/_img/{options}/{KEY}")
    assert response.status == 400
    assert says in await response.text()


async def test_f_auto_follows_accept_and_says_vary_accept(client, tmp_path):
    url = signed("w=200,f=auto")
    avif = await client.get(url, headers={"Accept": "image/avif,image/webp,*/*"})
    webp = await client.get(url, headers={"Accept": "image/webp,*/*"})
    plain = await client.get(url, headers={"Accept": "*/*"})
    assert avif.headers["Content-Type"] == "image/avif"
    assert webp.headers["Content-Type"] == "image/webp"
    assert plain.headers["Content-Type"] == "image/jpeg"
    for response in (avif, webp, plain):
        assert response.headers["Vary"] == "Accept"
    names = variants_of(tmp_path)
    assert names == ["w=200,f=auto.avif", "w=200,f=auto.jpg", "w=200,f=auto.webp"]


async def test_a_decompression_bomb_is_a_422_and_nothing_is_stored(client, tmp_path):
    bomb = f"{PREFIX}/bomb.png"
    put(tmp_path, bomb, bomb_png())
    response = await client.get(f"/_img/w=320/{bomb}")
    assert response.status == 422
    assert "pixels" in await response.text()
    assert variants_of(tmp_path, bomb) == []


async def test_a_file_that_is_no_image_is_a_415(client, tmp_path):
    put(tmp_path, f"{PREFIX}/notes.jpg", b"plain text")
    assert (await client.get(f"/_img/w=320/{PREFIX}/notes.jpg")).status == 415


async def test_a_missing_original_is_a_404(client):
    response = await client.get(f"/_img/w=320/{PREFIX}/none.jpg")
    assert response.status == 404


async def test_concurrent_identical_requests_render_once(client, monkeypatch):
    calls: list[str] = []
    real = transforms.render

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["fmt"])
        return real(*args, **kwargs)

    monkeypatch.setattr(transforms, "render", counting)
    responses = await asyncio.gather(*(client.get(f"/_img/w=640/{KEY}") for _ in range(12)))
    bodies = {await response.read() for response in responses}
    assert [response.status for response in responses] == [200] * 12
    assert len(bodies) == 1
    assert calls == ["jpeg"]
    await client.get(f"/_img/w=640/{KEY}")
    assert calls == ["jpeg"]  # the stored variant, not a new render


async def test_past_the_render_slots_the_answer_is_503_with_retry_after(
    aiohttp_client, tmp_path, monkeypatch
):
    put(tmp_path, KEY, jpeg_bytes())
    config = write_config(tmp_path, global_extra="transform_concurrency = 1")
    client = await aiohttp_client(create_app(load_settings(config, {})))
    release, started = threading.Event(), threading.Event()
    real = transforms.render

    def slow(*args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(transforms, "render", slow)
    monkeypatch.setattr(transforms, "WAIT", 0.1)
    first = asyncio.ensure_future(client.get(f"/_img/w=320/{KEY}"))
    await asyncio.to_thread(started.wait, 10)
    refused = await client.get(f"/_img/w=640/{KEY}")
    release.set()
    assert refused.status == 503
    assert refused.headers["Retry-After"]
    assert (await first).status == 200


async def test_a_versioned_originals_variants_are_immutable(aiohttp_client, tmp_path):
    key = f"{PREFIX}/2024/05/3f9a2c1e/photo.jpg"
    put(tmp_path, key, jpeg_bytes())
    config = write_config(tmp_path, extra="versioning = true")
    client = await aiohttp_client(create_app(load_settings(config, {})))
    response = await client.get(f"/_img/w=320/{key}")
    assert response.status == 200
    assert "immutable" in response.headers["Cache-Control"]
    plain = await client.get(f"/_img/w=320/{KEY}")
    assert "immutable" not in plain.headers["Cache-Control"]


async def test_a_replaced_original_gets_its_variant_made_again(client, tmp_path):
    first = decoded(await (await client.get(f"/_img/w=320/{KEY}")).read())
    assert near(first(10, 10), RED)
    put(tmp_path, KEY, jpeg_bytes(colour=(20, 200, 20)))
    client.server.app[ORIGIN_CACHE].forget("blog", KEY)  # else fresh for meta_cache_ttl
    second = decoded(await (await client.get(f"/_img/w=320/{KEY}")).read())
    assert near(second(10, 10), (20, 200, 20))


def test_sign_url_transform_prints_a_url_the_origin_takes(tmp_path):
    config = write_config(tmp_path)
    code, out, err = run_cli(
        "sign-url", "--config", config, "--transform", "h=50,w=100,fit=cover", KEY
    )
    assert (code, err) == (0, "")
    assert out.strip() == "http://127.0.0.1:8080" + signed("w=100,h=50,fit=cover")
    code, out, _ = run_cli("sign-url", "--config", config, "--transform", "w=640", KEY)
    assert out.strip() == f"http://127.0.0.1:8080/_img/w=640/{KEY}"  # listed: unsigned
    code, _, err = run_cli("sign-url", "--config", config, "--transform", "zoom=2", KEY)
    assert code == 2
    assert "unknown option 'zoom'" in err


async def test_a_hot_variant_is_resolved_once_and_signatures_still_bind_their_key(
    client, tmp_path, monkeypatch
):
    calls = []
    resolve = transforms.resolve

    def counted(*args: Any) -> Any:
        calls.append(args[1:])
        return resolve(*args)

    monkeypatch.setattr(transforms, "resolve", counted)
    for _ in range(3):
        assert (await client.get(f"/_img/thumb/{KEY}")).status == 200
    assert len(calls) == 1
    other = f"{PREFIX}/2024/05/other.jpg"
    put(tmp_path, other, jpeg_bytes())
    segment = signed("w=123").split("/")[2]  # KEY's signature, remembered for KEY
    assert (await client.get(f"/_img/{segment}/{KEY}")).status == 200
    assert (await client.get(f"/_img/{segment}/{other}")).status == 403

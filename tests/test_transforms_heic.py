"""A phone's HEIC (HEVC) through the origin's transform route, over loopback HTTP.

pyvips-binary's libvips cannot decode HEVC; offload.images.heif decodes it with
libheif. The photo is tests/data/phone.heic (made by tests/data/make_phone_heic.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from offload.config.loading import load_settings
from offload.server.app import create_app
from tests.test_transforms_origin import PREFIX, decoded, put, variants_of, write_config
from tests.test_transforms_render import PHONE_HEIC, RED, near

KEY = f"{PREFIX}/2024/05/IMG_0001.heic"
BLUE = (30, 30, 220)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    put(tmp_path, KEY, PHONE_HEIC.read_bytes())
    return await aiohttp_client(create_app(load_settings(write_config(tmp_path), {})))


async def test_a_heic_photo_is_served_upright_as_a_jpeg_and_stored(client, tmp_path):
    response = await client.get(f"/_img/w=320/{KEY}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"  # browsers do not show HEIC
    image = decoded(await response.read())
    assert (image.width, image.height) == (320, 427)
    assert near(image(315, 5), BLUE, tolerance=40)
    assert near(image(5, 420), RED, tolerance=25)
    assert variants_of(tmp_path, KEY) == ["w=320.jpg"]


async def test_a_heic_photo_becomes_the_webp_a_preset_asks_for(client):
    response = await client.get(f"/_img/card/{KEY}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/webp"
    assert decoded(await response.read()).width == 400


async def test_a_damaged_heic_is_a_clear_415_not_a_500(client, tmp_path):
    damaged = f"{PREFIX}/2024/05/damaged.heic"
    data = PHONE_HEIC.read_bytes()
    put(tmp_path, damaged, data[: len(data) // 2])
    response = await client.get(f"/_img/w=320/{damaged}")
    assert response.status == 415
    assert "Traceback" not in await response.text()


async def test_a_heic_waiting_for_its_turn_holds_no_render_slot(client, tmp_path, monkeypatch):
    import asyncio
    import time

    from offload.images import heif
    from offload.server import transforms
    from tests.test_transforms_render import jpeg_bytes

    decode = heif.decode

    def slow_decode(path: Path) -> Any:
        time.sleep(2.0)  # longer than a render waits for a slot
        return decode(path)

    monkeypatch.setattr(heif, "decode", slow_decode)
    monkeypatch.setattr(transforms, "WAIT", 0.5)
    monkeypatch.setattr(transforms, "HEIC_WAIT", 0.5)
    jpeg = f"{PREFIX}/2024/05/photo.jpg"
    put(tmp_path, jpeg, jpeg_bytes())
    first = asyncio.create_task(client.get(f"/_img/w=320/{KEY}"))
    await asyncio.sleep(0.3)  # the first HEIC renders, holding one of the 2 slots
    second = asyncio.create_task(client.get(f"/_img/w=640/{KEY}"))
    await asyncio.sleep(0.3)  # the second waits for its HEIC turn, not in a slot
    other = await client.get(f"/_img/w=320/{jpeg}")
    assert other.status == 200  # the free slot renders the JPEG meanwhile
    # One HEIC rendered; the other waited its 0.5 s for the turn, then was told to retry.
    assert sorted([(await first).status, (await second).status]) == [200, 503]

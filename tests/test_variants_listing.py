"""``find_variants`` finds what one listing per original finds, with fewer listings: at
most eight at once, and one per parent folder where many deleted originals share it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from offload.config.loading import load_settings
from offload.config.settings import Site
from offload.config.sites import open_site_storage
from offload.images import variants as variants_module
from offload.images.options import parse_options
from offload.images.variants import find_variants, variant_folder, variant_key
from offload.storage import Storage

PREFIX = "wp-content/uploads"
MONTH = [f"{PREFIX}/2024/05/photo-{n:02}.jpg" for n in range(25)]
NESTED = f"{PREFIX}/2024/05/photo-00.jpg/inner.jpg"  # a key below another key's path
ELSEWHERE = [f"{PREFIX}/2024/06/other-{n}.jpg" for n in range(3)]
KEPT = [f"{PREFIX}/2024/05/kept-{n}.jpg" for n in range(3)]  # not deleted: not found
BELOW = f"{PREFIX}/2024/05/sub/deep.jpg"  # in the shared folder's subtree, not deleted


def per_key(site: Site, storage: Storage, keys: list[str]) -> Any:
    """The rule as one listing per original: the objects right in its variant folder."""

    async def listing() -> list[str]:
        found = []
        for key in keys:
            folder = variant_folder(site, key)
            async for info in storage.list(folder):
                if "/" not in info.key[len(folder) :]:
                    found.append(info.key)
        return found

    return listing()


@pytest.fixture
def site_and_storage(tmp_path: Path) -> Iterator[tuple[Site, Storage]]:
    config = tmp_path / "offload.toml"
    config.write_text(
        "[sites.blog]\n"
        f'storage = "{(tmp_path / "bucket").as_uri()}"\n'
        f'prefix = "{PREFIX}"\n'
        'cdn_url = "https://cdn.example.com"\n'
    )
    settings = load_settings(config, {})
    site = settings.sites["blog"]
    with ThreadPoolExecutor(4) as pool:
        storage = open_site_storage(settings, site, pool)
        yield site, storage
        asyncio.run(storage.close())


async def put_variants(site: Site, storage: Storage, key: str, *texts: str) -> None:
    for text in texts:
        target = variant_key(site, key, parse_options(text), "jpeg")
        await storage.put(target, b"a variant", content_type="image/jpeg")


class Counting:
    """Wraps a storage's ``list``: how many listings, and the most running at once."""

    def __init__(self, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.running = self.most = 0
        inner = storage.list

        async def listing(prefix: str = "") -> AsyncIterator[Any]:
            self.calls.append(prefix)
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await asyncio.sleep(0)  # every listing waits once, as a real one does
                async for info in inner(prefix):
                    yield info
            finally:
                self.running -= 1

        monkeypatch.setattr(storage, "list", listing)


async def test_many_deleted_keys_in_one_folder_are_listed_once_with_the_same_result(
    site_and_storage, monkeypatch
):
    site, storage = site_and_storage
    for key in MONTH + ELSEWHERE + KEPT + [NESTED, BELOW]:
        await put_variants(site, storage, key, "w=480", "w=150,h=150,fit=cover")
    keys = [*MONTH, *ELSEWHERE, f"{PREFIX}/2024/05/never-had-variants.jpg"]
    wanted = await per_key(site, storage, keys)
    assert len(wanted) == 2 * (len(MONTH) + len(ELSEWHERE))

    counting = Counting(storage, monkeypatch)
    found = await find_variants(site, storage, keys)

    assert found == wanted  # the same variants, in the same order
    assert not any(NESTED in v or BELOW in v or "kept-" in v for v in found)
    # One listing for the month's 26 keys, one per key elsewhere.
    assert sorted(counting.calls) == sorted(
        [f"{PREFIX}/_variants/2024/05/"] + [variant_folder(site, key) for key in ELSEWHERE]
    )


async def test_a_key_below_another_keys_path_keeps_its_own_variants_in_a_shared_listing(
    site_and_storage,
):
    site, storage = site_and_storage
    for key in [*MONTH, NESTED]:
        await put_variants(site, storage, key, "w=480")
    shared = await find_variants(site, storage, MONTH)
    assert shared == await per_key(site, storage, MONTH)
    assert await find_variants(site, storage, [NESTED]) == [
        variant_key(site, NESTED, parse_options("w=480"), "jpeg")
    ]
    assert await find_variants(site, storage, [*MONTH, NESTED]) == await per_key(
        site, storage, [*MONTH, NESTED]
    )


async def test_a_shared_listing_that_finds_too_much_falls_back_to_one_per_key(
    site_and_storage, monkeypatch
):
    site, storage = site_and_storage
    for key in MONTH + KEPT:
        await put_variants(site, storage, key, "w=480", "w=640")
    wanted = await per_key(site, storage, MONTH[:20])
    monkeypatch.setattr(variants_module, "_budget", lambda folders: 10)
    counting = Counting(storage, monkeypatch)

    assert await find_variants(site, storage, MONTH[:20]) == wanted
    assert counting.calls[0] == f"{PREFIX}/_variants/2024/05/"  # given up after 10
    assert sorted(counting.calls[1:]) == sorted(variant_folder(site, k) for k in MONTH[:20])


async def test_at_most_eight_listings_run_at_once(site_and_storage, monkeypatch):
    site, storage = site_and_storage
    keys = [f"{PREFIX}/2024/{n:02}/photo.jpg" for n in range(30)]  # 30 folders, 1 key each
    for key in keys:
        await put_variants(site, storage, key, "w=480")
    counting = Counting(storage, monkeypatch)

    found = await find_variants(site, storage, keys)

    assert len(found) == 30
    assert len(counting.calls) == 30
    assert counting.most == variants_module.LISTINGS_AT_ONCE == 8


async def test_a_failed_listing_is_raised_and_stops_the_others(site_and_storage, monkeypatch):
    from offload.storage import StorageUnavailable

    site, storage = site_and_storage
    keys = [f"{PREFIX}/2024/{n:02}/photo.jpg" for n in range(30)]
    calls: list[str] = []

    async def failing(prefix: str = "") -> AsyncIterator[Any]:
        calls.append(prefix)
        await asyncio.sleep(0)
        raise StorageUnavailable("the bucket is away")
        yield  # an async generator, as list is

    monkeypatch.setattr(storage, "list", failing)
    with pytest.raises(StorageUnavailable):
        await find_variants(site, storage, keys)
    assert len(calls) == 8  # the first eight started; none after the failure

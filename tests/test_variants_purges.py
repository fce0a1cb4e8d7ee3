"""Variants are purged as the offloader purges: the purges of their transform URLs are
queued before they are deleted (due a while later), and again once they are gone (due
at once), so a process that dies between the deletion and the second queueing loses no
purge. That holds for a sync's cascade and for ``offload variants --prune``, which also
says so when the site's storage is not there at all."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from offload.config.loading import load_settings
from offload.config.settings import Site
from offload.config.sites import open_site_storage
from offload.images import variants
from offload.images.options import parse_options
from offload.images.sync_variants import VariantCascade
from offload.images.variants import prune, variant_key
from offload.manifest import Manifest, open_manifest
from offload.storage import Storage
from offload.sync.report import Event, Reporter
from tests.helpers import run_cli
from tests.test_transforms_cascade import CDN_URL, KEY, VARIANTS, write_config

THUMB = "w=150,h=150,fit=cover"
THUMB_URL = f"{CDN_URL}/_img/thumb/{KEY}"


class Crash(BaseException):
    """The process dies here (nothing catches it on the way out)."""


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Site, Storage, Manifest, Any]]:
    """The test site, its storage (the original's two variants in it), its manifest, and
    a ``run`` for the manifest's blocking calls."""
    config = write_config(tmp_path, {"storage": (tmp_path / "bucket").as_uri()}, "http://x")
    settings = load_settings(config, {})
    site = settings.sites["blog"]
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(4) as pool:

        async def run(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        storage = open_site_storage(settings, site, pool)
        manifest = open_manifest(settings.manifest)
        for text in (THUMB, "w=100,f=png"):
            options = parse_options(text)
            target = variant_key(site, KEY, options, options.format or "jpeg")
            await storage.put(target, b"a variant", content_type="image/jpeg")
        try:
            yield site, storage, manifest, run
        finally:
            await storage.close()
            manifest.close()


def crash_after_deleting(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage deletes, then the process dies before anything else happens."""
    inner = storage.delete

    async def delete(keys: Any) -> None:
        await inner(keys)
        raise Crash

    monkeypatch.setattr(storage, "delete", delete)


def queued(manifest: Manifest) -> dict[str, float]:
    """The outbox's URLs, each with the time it is due."""
    return {e.item.value: e.next_at for e in manifest.purge_queue(limit=1000).entries}


async def listed(storage: Storage) -> list[str]:
    return [info.key async for info in storage.list(VARIANTS)]


def cascade_for(parts: tuple[Site, Storage, Manifest, Any]) -> VariantCascade:
    site, storage, manifest, run = parts
    reporter = Reporter(io.StringIO(), io.StringIO())
    cascade = VariantCascade(reporter, site, storage, manifest, run)
    cascade.event(Event("delete", KEY, None, 0, key=KEY))
    return cascade


async def test_a_sync_cascade_that_dies_after_deleting_variants_has_queued_their_purges(
    parts, monkeypatch
):
    _site, storage, manifest, _run = parts
    crash_after_deleting(storage, monkeypatch)
    before = time.time()

    with pytest.raises(Crash):
        await cascade_for(parts).finish()

    assert await listed(storage) == []
    due = queued(manifest)
    assert THUMB_URL in due
    assert len(due) >= 3  # the preset's URL, and each option set's signed URL
    # Due a while later: the purge of a deletion whose own purge was never queued.
    assert all(at >= before + variants.PURGE_SAFETY_DELAY - 1 for at in due.values())


async def test_a_sync_cascade_queues_each_variants_purge_once_due_at_once(parts):
    _site, storage, manifest, _run = parts
    cascade = cascade_for(parts)

    await cascade.finish()

    assert cascade.deleted == 2
    assert await listed(storage) == []
    due = queued(manifest)
    assert THUMB_URL in due
    assert len(manifest.purge_queue(limit=1000).entries) == len(due)  # merged, not doubled
    assert all(at <= time.time() for at in due.values())


async def test_a_prune_that_dies_after_deleting_variants_has_queued_their_purges(
    parts, monkeypatch
):
    site, storage, manifest, run = parts
    crash_after_deleting(storage, monkeypatch)
    before = time.time()

    with pytest.raises(Crash):
        await prune(site, storage, manifest, run)

    assert await listed(storage) == []
    due = queued(manifest)
    assert THUMB_URL in due
    assert all(at >= before + variants.PURGE_SAFETY_DELAY - 1 for at in due.values())


def put_orphan(tmp_path: Path) -> Path:
    """A thumbnail variant of KEY in the site's folder, with no original."""
    variant = tmp_path / "bucket" / VARIANTS / f"{THUMB}.jpg"
    variant.parent.mkdir(parents=True)
    variant.write_bytes(b"a variant")
    return variant


def test_offload_variants_prune_queues_the_purges_of_what_it_deletes(tmp_path):
    config = write_config(tmp_path, {"storage": (tmp_path / "bucket").as_uri()}, "http://x")
    variant = put_orphan(tmp_path)

    code, out, err = run_cli("variants", "--config", config, "--site", "blog", "--prune")

    assert (code, err) == (0, "")
    assert "# 1 variant(s) deleted in site blog" in out
    assert not variant.exists()
    manifest = open_manifest(tmp_path / "manifest.sqlite3")
    try:
        due = queued(manifest)
    finally:
        manifest.close()
    assert THUMB_URL in due
    assert all(at <= time.time() for at in due.values())


def test_a_dry_run_prune_writes_nothing_not_even_a_manifest(tmp_path):
    config = write_config(tmp_path, {"storage": (tmp_path / "bucket").as_uri()}, "http://x")
    variant = put_orphan(tmp_path)

    code, out, err = run_cli(
        "variants", "--config", config, "--site", "blog", "--prune", "--dry-run"
    )

    assert (code, err) == (0, "")
    assert f"(dryrun) delete: {VARIANTS}{THUMB}.jpg" in out
    assert variant.exists()
    assert not (tmp_path / "manifest.sqlite3").exists()


def test_a_prune_on_a_site_that_does_not_purge_queues_nothing(tmp_path):
    config = write_config(tmp_path, {"storage": (tmp_path / "bucket").as_uri()}, "http://x")
    config.write_text(config.read_text().replace('purge = "cloudflare"', 'purge = "none"'))
    variant = put_orphan(tmp_path)

    code, _out, err = run_cli("variants", "--config", config, "--site", "blog", "--prune")

    assert (code, err) == (0, "")
    assert not variant.exists()
    manifest = open_manifest(tmp_path / "manifest.sqlite3")
    try:
        assert manifest.purge_queue().waiting == 0
    finally:
        manifest.close()


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_prune_on_a_storage_folder_that_does_not_exist_is_an_error(tmp_path, dry_run):
    missing = tmp_path / "no-such-bucket"
    config = write_config(tmp_path, {"storage": missing.as_uri()}, "http://x")

    code, out, err = run_cli("variants", "--config", config, "--site", "blog", "--prune", *dry_run)

    assert code == 4  # ExitCode.STORAGE, as offload sync leaves a missing folder with
    assert out == ""
    assert err == f"offload: error: the storage folder {missing} does not exist\n"
    assert not missing.exists()
    assert not (tmp_path / "manifest.sqlite3").exists()

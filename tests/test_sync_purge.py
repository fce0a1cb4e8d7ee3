"""A sync into a site purges what it replaced or deleted there, and nothing else.

``offload sync DIR site:NAME`` runs as a user runs it, with the fake Cloudflare
in a thread of its own (tests/fake_cdns.py's ``ThreadedFake``); the
server's background sync (``POST /_offload/{site}/sync``) runs in-process, as
tests/test_purge_flow.py runs the webhooks.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload.http.signing import signed_request_headers
from offload.manifest import open_manifest
from offload.server.appkeys import SYNC_RUNS
from tests.fake_cdns import FakeCloudflare, ThreadedFake
from tests.helpers import run_cli
from tests.test_cli_purge import TOKEN, ZONE, cloudflare_files, write_config
from tests.test_purge_flow import SECRET, Flow, purged_urls
from tests.test_purge_flow import start as start  # the fixture, shared

PREFIX = "wp-content/uploads"
CDN_URL = "https://cdn.example.com"
OLD = 1_700_000_000


def cdn(path: str) -> str:
    return f"{CDN_URL}/{PREFIX}/{path}"


def write(folder: Path, path: str, data: bytes, mtime: float = OLD) -> None:
    file = folder / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    os.utime(file, (mtime, mtime))


# -- offload sync DIR site:NAME ------------------------------------------------------------


@pytest.fixture
def cloudflare() -> Iterator[ThreadedFake]:
    with ThreadedFake(FakeCloudflare(token=TOKEN, zone=ZONE)) as served:
        yield served


def waiting(tmp_path: Path) -> int:
    manifest = open_manifest(tmp_path / "manifest.sqlite3")
    try:
        return manifest.purge_queue().waiting
    finally:
        manifest.close()


def test_a_sync_into_a_site_purges_what_it_replaced_or_deleted_and_nothing_new(
    tmp_path, cloudflare
):
    config = write_config(tmp_path, cloudflare.url("/client/v4"))
    uploads = tmp_path / "uploads"
    environ = {"OFFLOAD_SYNC_STATE": str(tmp_path / "sync-state.sqlite3")}

    def sync(*args: str) -> tuple[int, str, str]:
        code, out, err = run_cli(
            "sync", uploads, "site:blog", "--config", config, *args, environ=environ
        )
        assert TOKEN not in out + err
        return code, out, err

    for name in ("a.txt", "b.txt", "c.txt"):
        write(uploads, f"2024/05/{name}", f"first {name}".encode())
    assert sync()[:1] == (0,)
    assert cloudflare.fake.accepted == []  # new keys: no edge holds them

    write(uploads, "2024/05/a.txt", b"a changed, and longer", OLD + 60)
    write(uploads, "2024/05/new.txt", b"a new file")
    code, out, err = sync()
    assert (code, err) == (0, "")
    assert "upload:" in out
    assert cloudflare_files(cloudflare.fake) == [cdn("2024/05/a.txt")]

    (uploads / "2024/05/b.txt").unlink()
    code, out, err = sync("--delete")
    assert (code, err) == (0, "")
    assert "delete:" in out
    assert cloudflare_files(cloudflare.fake) == [cdn("2024/05/a.txt"), cdn("2024/05/b.txt")]

    write(uploads, "2024/05/c.txt", b"c changed, and longer", OLD + 60)
    (uploads / "2024/05/new.txt").unlink()
    code, out, err = sync("--delete", "--dry-run")
    assert (code, err) == (0, "")
    assert "(dryrun) upload:" in out
    assert "(dryrun) delete:" in out
    assert len(cloudflare.fake.accepted) == 2  # nothing more sent
    assert waiting(tmp_path) == 0  # nor queued


# -- the server's background sync ------------------------------------------------------------


async def sync_through_server(flow: Flow, body: dict[str, bool] | None = None) -> dict:
    """POST /_offload/blog/sync and wait for the run to finish; its record."""
    raw = json.dumps(body).encode() if body else b""
    flow._n += 1
    target = f"/_offload/blog/sync?n={flow._n}"
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(SECRET, "POST", target, raw),
    }
    response = await flow.client.post(target, data=raw, headers=headers)
    assert response.status == 202, await response.text()
    run_id = (await response.json())["id"]
    deadline = time.monotonic() + 20
    while True:
        record = await flow.app[SYNC_RUNS].get("blog", run_id)
        assert record is not None
        if record["status"] != "running":
            return record
        assert time.monotonic() < deadline, "the sync run did not finish"
        await asyncio.sleep(0.05)


async def test_the_servers_background_sync_queues_the_same_purges(start):
    flow = await start()
    uploads = flow.tmp_path / "uploads"
    for name in ("a.txt", "b.txt"):
        write(uploads, f"2024/05/{name}", f"first {name}".encode())
    assert (await sync_through_server(flow))["status"] == "succeeded"
    await flow.until_sent()
    assert flow.fake.accepted == []

    write(uploads, "2024/05/a.txt", b"a changed, and longer", OLD + 60)
    write(uploads, "2024/05/new.txt", b"a new file")
    assert (await sync_through_server(flow))["status"] == "succeeded"
    await flow.until_sent()
    assert purged_urls(flow.fake) == [cdn("2024/05/a.txt")]

    (uploads / "2024/05/b.txt").unlink()
    write(uploads, "2024/05/new.txt", b"new changed, and longer", OLD + 60)
    assert (await sync_through_server(flow, {"delete": True, "dry_run": True}))["status"] == (
        "succeeded"
    )
    await flow.until_sent()
    assert purged_urls(flow.fake) == [cdn("2024/05/a.txt")]  # a dry run purges nothing

    assert (await sync_through_server(flow, {"delete": True}))["status"] == "succeeded"
    await flow.until_sent()
    assert sorted(purged_urls(flow.fake)) == sorted(
        [cdn("2024/05/a.txt"), cdn("2024/05/b.txt"), cdn("2024/05/new.txt")]
    )


async def test_purges_a_failed_flush_could_not_queue_are_kept_for_the_next(tmp_path: Path):
    from offload.config.settings import Site
    from offload.manifest import ManifestError
    from offload.sync.purging import PurgeNotes
    from offload.sync.report import Event

    class Flaky:
        def __init__(self) -> None:
            self.fail, self.queued = True, []

        def enqueue_purges(self, items):
            if self.fail:
                raise ManifestError("manifest: cannot write")
            self.queued += items
            return len(items)

    class Quiet:
        def event(self, event): ...
        def error(self, text): ...

    async def run(fn, *args):
        return fn(*args)

    site = Site(name="blog", storage=tmp_path.as_uri(), purge="cloudflare",
                cdn_url="https://cdn.example.com")  # fmt: skip
    manifest = Flaky()
    notes = PurgeNotes(Quiet(), site, manifest, run)  # type: ignore[arg-type]
    notes.event(Event("upload", "a.jpg", "site:blog/a.jpg", 1, key="a.jpg", replaced=True))
    await notes.flush()
    assert (manifest.queued, notes.failed) == ([], "manifest: cannot write")
    manifest.fail = False
    notes.event(Event("delete", "site:blog/b.jpg", None, 1, key="b.jpg"))
    await notes.flush()
    assert [item.value for item in manifest.queued] == [
        "https://cdn.example.com/a.jpg",
        "https://cdn.example.com/b.jpg",
    ]
    assert notes.failed is None


def test_a_sync_into_a_site_takes_the_variants_of_what_it_deleted_or_replaced(tmp_path, cloudflare):
    from concurrent.futures import ThreadPoolExecutor

    from offload.config.loading import load_settings
    from offload.config.sites import open_site_storage
    from offload.images.options import TransformOptions
    from offload.images.variants import variant_key

    config = write_config(tmp_path, cloudflare.url("/client/v4"))
    settings = load_settings(config, {})
    site = settings.sites["blog"]
    uploads = tmp_path / "uploads"
    environ = {"OFFLOAD_SYNC_STATE": str(tmp_path / "sync-state.sqlite3")}
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write(uploads, f"2024/05/{name}", f"first {name}".encode())
    assert run_cli("sync", uploads, "site:blog", "--config", config, environ=environ)[0] == 0

    keys = {name: f"{site.prefix}/2024/05/{name}" for name in ("a.jpg", "b.jpg", "c.jpg")}
    variants = {
        name: variant_key(site, key, TransformOptions(width=480), "jpeg")
        for name, key in keys.items()
    }

    async def put_variants() -> None:
        with ThreadPoolExecutor(2) as pool:
            storage = open_site_storage(settings, site, pool)
            for variant in variants.values():
                await storage.put(variant, b"a variant", content_type="image/jpeg")
            await storage.close()

    async def present() -> set[str]:
        with ThreadPoolExecutor(2) as pool:
            storage = open_site_storage(settings, site, pool)
            found = {name for name, v in variants.items() if await storage.head(v) is not None}
            await storage.close()
            return found

    asyncio.run(put_variants())
    # A --delete from the uploads folder (which has no variants folder) keeps them all.
    code, out, err = run_cli(
        "sync", uploads, "site:blog", "--config", config, "--delete", environ=environ
    )
    assert (code, err) == (0, "")
    assert "_variants" not in out
    assert asyncio.run(present()) == {"a.jpg", "b.jpg", "c.jpg"}

    (uploads / "2024/05/b.jpg").unlink()
    write(uploads, "2024/05/c.jpg", b"c changed, and longer", OLD + 60)
    code, out, err = run_cli(
        "sync", uploads, "site:blog", "--config", config, "--delete", environ=environ
    )
    assert (code, err) == (0, "")
    assert asyncio.run(present()) == {"a.jpg"}  # b deleted, c replaced: their variants go

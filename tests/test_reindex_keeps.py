"""`offload reindex` keeps what the manifest knew and the bucket does not say.

The webhook answers ``unchanged`` for a file already in the bucket with the
same bytes, and records the attachment id in the manifest only: the object's
metadata may lack ``attachment-id`` (an older offload wrote it, or a webhook
without an id). A reindex must not forget that id, or a later deletion by id
removes nothing and the objects stay public.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import signed_request_headers
from offload.keys import upload_key, version_segment
from offload.manifest import ManifestRow
from offload.manifest.sqlite import SqliteManifest as Manifest
from offload.media.reindex import ReindexReport, merge_row, reindex
from offload.server.app import create_app
from offload.server.appkeys import MANIFEST, STORAGES
from offload.storage import ObjectInfo, Storage

SECRET = "webhook-secret-for-tests-0123456789abcdef"
PREFIX = "wp-content/uploads"
FILES = {"2024/05/photo.jpg": b"original bytes", "2024/05/photo-300x200.jpg": b"thumb bytes"}
ORIGINAL = "2024/05/photo.jpg"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def post(client: Any, hook: str, body: Mapping[str, Any], n: int) -> tuple[int, Any]:
    raw = json.dumps(body).encode()
    target = f"/_offload/blog/{hook}?n={n}"
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(SECRET, "POST", target, raw),
    }
    response = await client.post(target, data=io.BytesIO(raw), headers=headers)
    return response.status, await response.json()


async def run_reindex(site: Site, storage: Storage, manifest: Manifest) -> ReindexReport:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(4) as pool:

        async def run(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        return await reindex(site, storage, manifest, run, concurrency=4)


@pytest.mark.parametrize("versioning", [False, True])
async def test_an_attachment_id_recorded_on_unchanged_survives_reindex_and_its_deletion_removes_the_objects(  # noqa: E501
    aiohttp_client, site_location, tmp_path, versioning
):
    uploads = tmp_path / "uploads"
    for path, data in FILES.items():
        (uploads / path).parent.mkdir(parents=True, exist_ok=True)
        (uploads / path).write_bytes(data)
    site = Site(
        name="blog",
        prefix=PREFIX,
        uploads_dir=uploads,
        hostnames=("*",),
        versioning=versioning,
        webhook_secret=Secret(SECRET),
        **site_location,
    )
    app = create_app(Settings(manifest=tmp_path / "manifest.sqlite3", sites={"blog": site}))
    client = await aiohttp_client(app)
    storage: Storage = app[STORAGES]["blog"]
    manifest: Manifest = app[MANIFEST]
    version = version_segment(sha256(FILES[ORIGINAL])) if versioning else None
    keys = {path: upload_key(PREFIX, path, version) for path in FILES}
    for path, data in FILES.items():  # in the bucket already, with no attachment-id
        await storage.put(
            keys[path],
            data,
            content_type="image/jpeg",
            cache_control="public, max-age=86400",
            metadata={"sha256": sha256(data), "source": path},
        )

    body = {"files": list(FILES), "original": ORIGINAL, "attachment_id": 42}
    status, answer = await post(client, "uploads", body, 1)
    assert status == 200, answer
    assert {item["status"] for item in answer["items"]} == {"unchanged"}

    report = await run_reindex(site, storage, manifest)
    assert report.objects == 2
    rows = manifest.rows("blog", attachment_id="42")
    assert sorted(row.key for row in rows) == sorted(keys.values())
    assert {row.version for row in rows} == {version}

    status, answer = await post(client, "deletions", {"attachment_id": 42}, 2)
    assert status == 200, answer
    assert sorted(item["key"] for item in answer["items"]) == sorted(keys.values())
    assert {item["status"] for item in answer["items"]} == {"deleted"}
    for key in keys.values():
        assert await storage.head(key) is None


# -- the merge rule, row by row --------------------------------------------------------------

SITE = Site(name="blog", storage="file:///unused", prefix="media")
WHEN = datetime(2024, 5, 1, tzinfo=UTC)


def info(key: str, metadata: dict[str, str], *, size: int = 5, etag: str = '"e1"') -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=etag, last_modified=WHEN, metadata=metadata)


def old(key: str = "media/a.jpg", **fields: Any) -> ManifestRow:
    values: dict[str, Any] = {
        "site": "blog",
        "key": key,
        "path": "a.jpg",
        "version": None,
        "size": 5,
        "sha256": "f" * 64,
        "etag": '"e1"',
        "attachment_id": "42",
        "mtime": 1714550400.5,
        "offloaded_at": 1.0,
    }
    values.update(fields)
    return ManifestRow(**values)


def test_the_old_row_fills_the_attachment_id_hash_and_mtime_the_metadata_lacks():
    row = merge_row(SITE, info("media/a.jpg", {}), old())
    assert row is not None
    assert (row.attachment_id, row.sha256, row.mtime) == ("42", "f" * 64, 1714550400.5)
    assert (row.size, row.etag, row.offloaded_at) == (5, '"e1"', WHEN.timestamp())


def test_object_metadata_wins_over_the_old_row_where_it_has_a_value():
    metadata = {"attachment-id": "7", "sha256": "a" * 64, "source": "b.jpg", "mtime": "12.5"}
    row = merge_row(SITE, info("media/a.jpg", metadata), old())
    assert row is not None
    assert (row.attachment_id, row.sha256, row.path, row.mtime) == ("7", "a" * 64, "b.jpg", 12.5)


def test_an_object_rewritten_with_other_bytes_keeps_its_attachment_but_not_the_old_hash():
    row = merge_row(SITE, info("media/a.jpg", {}, size=9, etag='"e2"'), old())
    assert row is not None
    assert (row.attachment_id, row.path) == ("42", "a.jpg")
    assert (row.sha256, row.mtime, row.size, row.etag) == ("", None, 9, '"e2"')


def test_the_old_rows_path_and_version_stand_where_the_key_cannot_say_them():
    # versioning turned off since: the key's version folder is no longer read as one
    key = "media/2024/3f9a2c1e/photo.jpg"
    recorded = old(key, path="2024/photo.jpg", version="3f9a2c1e")
    row = merge_row(SITE, info(key, {}), recorded)
    assert row is not None
    assert (row.path, row.version) == ("2024/photo.jpg", "3f9a2c1e")


def test_without_an_old_row_the_object_alone_makes_the_row():
    row = merge_row(SITE, info("media/2024/a.jpg", {}), None)
    assert row is not None
    assert (row.path, row.attachment_id, row.sha256, row.version) == ("2024/a.jpg", None, "", None)


async def test_reindex_reports_the_rows_it_completed_and_drops_rows_whose_object_is_gone(
    tmp_path: Path,
):
    from offload.storage.local import LocalStorage

    root = tmp_path / "bucket"
    root.mkdir()
    storage = LocalStorage(root)
    try:
        await storage.put("media/a.jpg", b"bytes", metadata={"sha256": sha256(b"bytes")})
        manifest = Manifest(tmp_path / "manifest.sqlite3")
        manifest.record([old("media/a.jpg", sha256=sha256(b"bytes")), old("media/gone.jpg")])
        report = await run_reindex(SITE, storage, manifest)
        assert (report.objects, report.with_metadata, report.completed) == (1, 1, 1)
        assert [row.key for row in manifest.rows("blog", attachment_id="42")] == ["media/a.jpg"]
        manifest.close()
    finally:
        await storage.close()


def test_rows_by_key_finds_every_asked_key_across_its_query_chunks(tmp_path: Path):
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    manifest.record(old(f"media/{n}.jpg", path=f"{n}.jpg") for n in range(5003))
    manifest.record([ManifestRow("shop", "media/0.jpg", "0.jpg", None, 1, "", "e")])
    asked = [f"media/{n}.jpg" for n in range(0, 5003, 2)] + ["media/missing.jpg"]
    found = manifest.rows_by_key("blog", asked)
    assert sorted(found) == sorted(asked[:-1])
    assert found["media/0.jpg"].site == "blog"
    manifest.close()


def test_the_reindex_command_says_how_many_rows_the_old_manifest_completed(tmp_path: Path):
    from tests.helpers import run_cli

    bucket = tmp_path / "bucket"
    (bucket / "media/2024").mkdir(parents=True)
    (bucket / "media/2024/a.jpg").write_bytes(b"data")  # put there by another tool
    config = tmp_path / "offload.toml"
    config.write_text(
        f'manifest = "{tmp_path / "manifest.sqlite3"}"\n\n'
        f'[sites.blog]\nstorage = "{bucket.as_uri()}"\nprefix = "media"\n'
    )
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    manifest.record([old("media/2024/a.jpg", path="2024/a.jpg", size=4, etag="other")])
    manifest.close()
    code, out, err = run_cli("reindex", "--config", config)
    assert (code, err) == (0, "")
    assert ", 1 completed from the rows it had, " in out
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    [row] = manifest.rows("blog", attachment_id="42")
    assert (row.key, row.sha256) == ("media/2024/a.jpg", "")
    manifest.close()

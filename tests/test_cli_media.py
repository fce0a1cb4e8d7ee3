"""`offload rewrite` and `offload reindex`, and the rebuilding of a manifest behind them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from offload.config.settings import Site
from offload.keys import version_segment
from offload.manifest import ManifestRow
from offload.manifest.sqlite import SqliteManifest as Manifest
from offload.media.offloader import Offloader
from offload.media.payloads import Attachment
from offload.media.reindex import reindex
from offload.storage import Storage
from tests.helpers import run_cli

UPLOADS_URL = "https://blog.example.com/wp-content/uploads"
CDN_URL = "https://cdn.example.com"


def write_config(tmp_path: Path, **extra: str) -> Path:
    bucket = tmp_path / "bucket"
    bucket.mkdir(exist_ok=True)
    lines = [
        f'manifest = "{tmp_path / "manifest.sqlite3"}"',
        "",
        "[sites.blog]",
        f'storage = "{bucket.as_uri()}"',
        'prefix = "wp-content/uploads"',
        f'uploads_url = "{UPLOADS_URL}"',
        f'cdn_url = "{CDN_URL}"',
        *(f"{name} = {value}" for name, value in extra.items()),
    ]
    config = tmp_path / "offload.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def record(tmp_path: Path, *paths: str) -> None:
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    manifest.record(
        ManifestRow("blog", f"wp-content/uploads/{path}", path, None, 1, "0" * 64, "e")
        for path in paths
    )
    manifest.close()


# -- rewrite -----------------------------------------------------------------------------


def test_rewrite_prints_the_file_with_offloaded_urls_on_the_cdn(tmp_path):
    config = write_config(tmp_path)
    record(tmp_path, "2024/05/a.jpg")
    page = tmp_path / "post.html"
    page.write_text(
        f'<img src="{UPLOADS_URL}/2024/05/a.jpg"><img src="{UPLOADS_URL}/2024/05/b.jpg">'
    )
    code, out, err = run_cli("rewrite", "--config", config, page)
    assert (code, err) == (0, "")
    assert out == (
        f'<img src="{CDN_URL}/wp-content/uploads/2024/05/a.jpg">'
        f'<img src="{UPLOADS_URL}/2024/05/b.jpg">'
    )
    back = tmp_path / "back.html"
    back.write_text(out)
    code, restored, _ = run_cli("rewrite", "--config", config, "--reverse", back)
    assert code == 0
    assert restored == page.read_text()


def test_rewrite_reads_standard_input_and_writes_bytes_unchanged_elsewhere(tmp_path):
    config = write_config(tmp_path)
    record(tmp_path, "2024/05/a.jpg")
    escaped = json.dumps({"html": f'<img src="{UPLOADS_URL}/2024/05/a.jpg">'}).replace("/", "\\/")
    raw = escaped.encode() + b"\n\xff not utf-8 \xfe\n"
    result = subprocess.run(
        [sys.executable, "-m", "offload", "rewrite", "--config", str(config), "-"],
        input=raw,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"\n\xff not utf-8 \xfe\n")
    assert (
        b"https:\\/\\/cdn.example.com\\/wp-content\\/uploads\\/2024\\/05\\/a.jpg" in result.stdout
    )


def test_rewrite_with_an_unknown_charset_or_a_missing_file_is_a_usage_error(tmp_path):
    config = write_config(tmp_path)
    page = tmp_path / "post.html"
    page.write_text("<p>")
    code, _out, err = run_cli("rewrite", "--config", config, "--charset", "klingon", page)
    assert code == 2
    assert "unknown encoding 'klingon'" in err
    code, _out, err = run_cli("rewrite", "--config", config, tmp_path / "missing.html")
    assert code == 2
    assert "cannot read" in err
    assert "Traceback" not in err


def test_rewrite_of_an_unknown_site_names_the_sites(tmp_path):
    config = write_config(tmp_path)
    code, _out, err = run_cli("rewrite", "--config", config, "--site", "shop", "-")
    assert code == 2
    assert "no site 'shop'; the sites are blog" in err


# -- reindex -------------------------------------------------------------------------------


async def offload_files(
    site: Site, storage: Storage, manifest: Manifest, uploads: Path, files: dict[str, bytes]
) -> None:
    for path, data in files.items():
        target = uploads / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(4) as pool:

        async def run(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        offloader = Offloader(site, storage, manifest, run)
        attachment = Attachment(tuple(files), next(iter(files)), "42")
        located = await offloader.locate(attachment)
        outcome = await offloader.offload(attachment, located)
        assert {item.status for item in outcome.items} == {"uploaded"}


async def run_reindex(site: Site, storage: Storage, manifest: Manifest) -> Any:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(4) as pool:

        async def run(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        return await reindex(site, storage, manifest, run, concurrency=4)


@pytest.mark.parametrize("versioning", [False, True])
async def test_reindex_rebuilds_the_rows_the_webhooks_wrote(storage, tmp_path, versioning):
    site = Site(
        name="blog",
        storage="file:///unused",
        prefix="wp-content/uploads",
        uploads_dir=tmp_path / "uploads",
        versioning=versioning,
    )
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    files = {"2024/05/photo.jpg": b"original", "2024/05/photo-300x200.jpg": b"thumb"}
    await offload_files(site, storage, manifest, tmp_path / "uploads", files)
    before = sorted(
        (r.key, r.path, r.version, r.size, r.sha256, r.etag, r.attachment_id)
        for r in manifest.rows("blog", paths=list(files))
    )
    fresh = Manifest(tmp_path / "rebuilt.sqlite3")
    report = await run_reindex(site, storage, fresh)
    after = sorted(
        (r.key, r.path, r.version, r.size, r.sha256, r.etag, r.attachment_id)
        for r in fresh.rows("blog", paths=list(files))
    )
    assert after == before
    assert (report.objects, report.with_metadata) == (2, 2)
    if versioning:
        assert {row[2] for row in after} == {version_segment(sha256(b"original"))}
    manifest.close()
    fresh.close()


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


async def test_reindex_keeps_objects_of_other_tools_by_their_key_and_drops_stale_rows(
    storage, tmp_path
):
    site = Site(name="blog", storage="file:///unused", prefix="media")
    await storage.put("media/2024/a.jpg", b"from another tool")
    await storage.put("elsewhere/b.jpg", b"outside the prefix")
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    manifest.record([ManifestRow("blog", "media/gone.jpg", "gone.jpg", None, 1, "", "e")])
    report = await run_reindex(site, storage, manifest)
    assert manifest.key_for("blog", "2024/a.jpg") == "media/2024/a.jpg"
    assert manifest.key_for("blog", "gone.jpg") is None
    assert (report.objects, report.with_metadata) == (1, 0)
    manifest.close()


def test_reindex_command_reports_what_it_found(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "bucket/wp-content/uploads/2024").mkdir(parents=True)
    (tmp_path / "bucket/wp-content/uploads/2024/a.jpg").write_bytes(b"data")
    code, out, err = run_cli("reindex", "--config", config)
    assert (code, err) == (0, "")
    assert out.startswith("site blog: 1 objects in the manifest (0 with offload's metadata)")
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    assert manifest.key_for("blog", "2024/a.jpg") == "wp-content/uploads/2024/a.jpg"
    manifest.close()


def test_reindex_of_an_unreachable_bucket_is_one_line_and_a_storage_exit_code(tmp_path):
    config = tmp_path / "offload.toml"
    config.write_text(
        f'manifest = "{tmp_path / "m.sqlite3"}"\nstorage_timeout = 1\n\n'
        '[sites.blog]\nstorage = "s3://media-bucket"\n'
        'endpoint_url = "http://127.0.0.1:9"\n'
    )
    code, _out, err = run_cli(
        "reindex",
        "--config",
        config,
        environ={"AWS_ACCESS_KEY_ID": "x" * 20, "AWS_SECRET_ACCESS_KEY": "y" * 40},
    )
    assert code == 4
    assert err.count("\n") == 1
    assert "Traceback" not in err

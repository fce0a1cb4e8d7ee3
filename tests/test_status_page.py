"""``/_offload/status``: an operator's page, in aiohttp and in a real headless Chromium.

The browser test starts ``offload serve`` on a free loopback port, lets the
page's viewer in by ``admin_allow`` (a browser sends no bearer token), sends a
signed webhook, and has Debian's ``chromium`` (installed by .ci/run) dump the
rendered DOM and take a phone-sized screenshot. ``UPDATE_STATUS_SCREENSHOT=1``
also writes the screenshot to docs/status-page.png, the one the README shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import signed_request_headers
from offload.server.app import create_app
from tests.helpers import ADMIN_TOKEN, free_port, wait_for_port

SECRET = "webhook-secret-for-the-status-page-0123456789"
OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "status-page.png"


def site_folders(tmp_path: Path) -> tuple[Path, Path]:
    uploads = tmp_path / "uploads"
    (uploads / "2026/12").mkdir(parents=True)
    (uploads / "2026/12/photo.jpg").write_bytes(b"p" * 2048)
    (tmp_path / "bucket").mkdir()
    return uploads, tmp_path / "bucket"


def app(tmp_path: Path):
    uploads, bucket = site_folders(tmp_path)
    blog = Site(
        name="blog", storage=bucket.as_uri(), uploads_dir=uploads, webhook_secret=Secret(SECRET)
    )
    missing = Site(name="shop", storage=(tmp_path / "not-made").as_uri())
    return create_app(
        Settings(
            sites={"blog": blog, "shop": missing},
            manifest=tmp_path / "manifest.sqlite3",
            admin_token=Secret(ADMIN_TOKEN),
        )
    )


async def post_signed(client, hook: str, payload: dict, n: int):
    body = json.dumps(payload).encode()
    target = f"/_offload/blog/{hook}?n={n}"
    headers = {**signed_request_headers(SECRET, "POST", target, body)}
    headers["Content-Type"] = "application/json"
    return await client.post(target, data=body, headers=headers)


async def test_the_status_page_is_for_operators_only(aiohttp_client, tmp_path):
    client = await aiohttp_client(app(tmp_path))
    refused = await client.get("/_offload/status")
    assert refused.status == 401
    assert "blog" not in await refused.text()
    page = await client.get("/_offload/status", headers=OPERATOR)
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"


async def test_the_status_page_shows_sites_webhooks_failures_runs_and_the_origin(
    aiohttp_client, tmp_path
):
    client = await aiohttp_client(app(tmp_path))
    (tmp_path / "uploads/.offload").mkdir()
    (tmp_path / "uploads/.offload/reserved.jpg").write_bytes(b"r")  # a key no storage takes
    payload = {"files": ["2026/12/photo.jpg", ".offload/reserved.jpg"], "attachment_id": 9}
    assert (await post_signed(client, "uploads", payload, 1)).status == 422
    assert (await client.post("/_offload/blog/deletions", json={})).status == 401
    assert (await client.get("/2026/12/nothing-here.jpg")).status == 404
    started = await post_signed(client, "sync", {}, 2)
    assert started.status == 202

    text = await (await client.get("/_offload/status", headers=OPERATOR)).text()
    assert "<script" not in text
    assert 'name="viewport"' in text
    sites = text.split("<h2>Sites</h2>", 1)[1].split("<h2>", 1)[0]
    assert re.search(r"<td>blog</td>.*?>yes<.*?<td class=\"n\">1</td>", sites, re.S)
    assert re.search(r"<td>shop</td>.*?class=\"bad\">no: ", sites, re.S)  # folder not made
    webhooks = text.split("<h2>Last webhooks</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<td>upload</td><td>9</td>" in webhooks
    assert "1 failed, 1 uploaded" in webhooks
    assert "refused: signature" in webhooks
    failed = text.split("<h2>Failed files</h2>", 1)[1].split("<h2>", 1)[0]
    assert ".offload/reserved.jpg" in failed
    runs = text.split("<h2>Sync runs</h2>", 1)[1]
    assert (await started.json())["id"] in runs
    assert "cache hit rate" in text
    assert "requests per second" in text


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium not found: apt-get install chromium (.ci/run does)")
    return binary


def browse(*flags: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # as root in CI containers
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={cwd / 'chromium-profile'}",
            *flags,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_a_real_browser_renders_the_status_page_and_takes_its_screenshot(tmp_path):
    uploads, bucket = site_folders(tmp_path)
    port = free_port()
    config = tmp_path / "offload.toml"
    config.write_text(
        f"""port = {port}
host = "127.0.0.1"
manifest = "{tmp_path / "manifest.sqlite3"}"
admin_allow = ["127.0.0.1"]

[sites.blog]
storage = "{bucket.as_uri()}"
uploads_dir = "{uploads}"
webhook_secret = "{SECRET}"
"""
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "AWS_"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "offload", "serve", "--config", str(config)],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        body = json.dumps({"files": ["2026/12/photo.jpg"], "attachment_id": 7}).encode()
        target = "/_offload/blog/uploads"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{target}",
            data=body,
            headers={
                **signed_request_headers(SECRET, "POST", target, body),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
            assert answer.status == 200
        url = f"http://127.0.0.1:{port}/_offload/status"

        dom = browse("--dump-dom", url=url, cwd=tmp_path)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "<h1>offload " in dom.stdout
        assert re.search(r"<td>blog</td>.*?>yes<", dom.stdout, re.S)
        assert "<td>upload</td><td>7</td>" in dom.stdout

        shot = tmp_path / "status.png"
        taken = browse(f"--screenshot={shot}", "--window-size=412,915", url=url, cwd=tmp_path)
        assert taken.returncode == 0, taken.stderr[-2000:]
        png = shot.read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 5000  # a page, not a blank
        if os.environ.get("UPDATE_STATUS_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            SCREENSHOT.write_bytes(png)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def test_the_status_page_still_answers_when_the_manifest_database_is_down(
    aiohttp_client, tmp_path
):
    uploads, bucket = site_folders(tmp_path)
    down = f"postgresql://offload:hunter2-password@127.0.0.1:{free_port()}/offload"
    blog = Site(name="blog", storage=bucket.as_uri(), uploads_dir=uploads, purge="none")
    client = await aiohttp_client(
        create_app(Settings(sites={"blog": blog}, manifest=down, admin_token=Secret(ADMIN_TOKEN)))
    )
    page = await client.get("/_offload/status", headers=OPERATOR)
    assert page.status == 200
    text = await page.text()
    assert "The manifest cannot be read" in text
    assert "hunter2" not in text
    assert re.search(r"<td>blog</td>.*?>yes<", text, re.S)  # the storage still shows

"""Logs an operator can read: text or JSON lines, and a request id in the answer and the log."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import signed_request_headers
from offload.server import logs
from offload.server.app import create_app
from offload.server.appkeys import SYNC_RUNS
from tests.helpers import ADMIN_TOKEN


@pytest.fixture
def captured():
    """The root logger writing into a buffer, as `offload serve` sets it up; restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()

    def configure(log_format: str) -> io.StringIO:
        logs.configure("info", log_format, buffer)
        return buffer

    yield configure
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def app(tmp_path):
    (tmp_path / "blog").mkdir(exist_ok=True)
    site = Site(name="blog", storage=(tmp_path / "blog").as_uri(), hostnames=("*",))
    site_with_hooks = Site(
        name="hooks", storage=(tmp_path / "blog").as_uri(), webhook_secret=Secret("x" * 40)
    )
    return create_app(Settings(sites={"blog": site, "hooks": site_with_hooks}))


async def test_every_answer_carries_a_request_id_and_errors_name_it(aiohttp_client, tmp_path):
    client = await aiohttp_client(app(tmp_path))
    missing = await client.get("/no/such/key.jpg")
    assert missing.status == 404
    first = missing.headers["X-Request-Id"]
    assert len(first) == 32
    refused = await client.post("/_offload/hooks/uploads", json={"files": ["a.jpg"]})
    assert refused.status == 401
    body = await refused.json()
    assert body["request_id"] == refused.headers["X-Request-Id"] != first


@pytest.mark.parametrize(
    ("given", "kept"),
    [("cdn-edge.7f3a_01", True), ("x" * 65, False), ("has space", False), ("", False)],
)
async def test_a_plain_request_id_from_the_cdn_is_kept(aiohttp_client, tmp_path, given, kept):
    client = await aiohttp_client(app(tmp_path))
    response = await client.get("/_offload/health", headers={"X-Request-Id": given})
    assert (response.headers["X-Request-Id"] == given) is kept


async def test_json_log_lines_carry_the_request_id_and_their_fields(
    aiohttp_client, tmp_path, captured
):
    buffer = captured("json")
    client = await aiohttp_client(app(tmp_path))
    refused = await client.post(
        "/_offload/hooks/uploads", json={"files": ["a.jpg"]}, headers={"X-Request-Id": "req-1"}
    )
    assert refused.status == 401
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "req-1"]
    assert mine, lines
    assert {"time", "level", "logger", "message"} <= set(mine[0])
    assert "x" * 40 not in buffer.getvalue()  # the secret never


def test_text_lines_end_with_the_request_id_and_json_keeps_extra_fields(captured):
    buffer = captured("text")
    logging.getLogger("offload.test").info("plain line")
    assert buffer.getvalue().rstrip().endswith("offload.test: plain line")
    buffer = captured("json")
    logging.getLogger("offload.test").info("counted", extra={"site": "blog", "files": 3})
    entry = json.loads(buffer.getvalue().splitlines()[-1])
    assert (entry["message"], entry["site"], entry["files"], entry["level"]) == (
        "counted",
        "blog",
        3,
        "info",
    )


SECRET = "webhook-secret-for-the-log-tests-0123456789"


def hooks_app(tmp_path):
    uploads = tmp_path / "uploads"
    (uploads / "2026/12").mkdir(parents=True)
    (uploads / "2026/12/photo.jpg").write_bytes(b"x" * 1000)
    (tmp_path / "bucket").mkdir()
    site = Site(
        name="blog",
        storage=(tmp_path / "bucket").as_uri(),
        uploads_dir=uploads,
        webhook_secret=Secret(SECRET),
    )
    return create_app(
        Settings(
            sites={"blog": site},
            manifest=tmp_path / "manifest.sqlite3",
            admin_token=Secret(ADMIN_TOKEN),
        )
    )


async def post_signed(client, hook: str, payload: dict, n: int):
    body = json.dumps(payload).encode()
    target = f"/_offload/blog/{hook}?n={n}"
    headers = signed_request_headers(SECRET, "POST", target, body)
    headers["Content-Type"] = "application/json"
    return await client.post(target, data=body, headers=headers)


async def test_an_offload_and_a_deletion_each_log_one_line_and_count(
    aiohttp_client, tmp_path, captured
):
    buffer = captured("json")
    client = await aiohttp_client(hooks_app(tmp_path))
    payload = {"files": ["2026/12/photo.jpg", "2026/12/later.jpg"], "attachment_id": 7}
    assert (await post_signed(client, "uploads", payload, 1)).status == 200
    assert (await post_signed(client, "deletions", {"attachment_id": 7}, 2)).status == 200
    assert (await client.post("/_offload/blog/uploads", json=payload)).status == 401

    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    done = [line for line in lines if line.get("hook") in ("upload", "deletion")]
    assert [(d["hook"], d["attachment"], d["counts"], d["bytes"], d["status"]) for d in done] == [
        ("upload", "7", {"uploaded": 1, "pending": 1}, 1000, 200),
        ("deletion", "7", {"deleted": 1}, 1000, 200),
    ]
    assert all(d["duration_ms"] >= 0 and d["request_id"] for d in done)
    [refused] = [line for line in lines if line.get("outcome") == "refused"]
    assert (refused["site"], refused["hook"], refused["status"]) == ("blog", "uploads", 401)

    scrape = await client.get(
        "/_offload/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await scrape.text())
        for sample in family.samples
    }

    def webhooks(hook: str, status: str) -> float:
        labels = frozenset({"site": "blog", "hook": hook, "status": status}.items())
        return samples[("offload_webhooks_total", labels)]

    def count(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert (webhooks("uploads", "200"), webhooks("deletions", "200")) == (1, 1)
    assert webhooks("uploads", "401") == 1
    assert count("offload_webhook_seconds_count", hook="uploads") == 2
    assert count("offload_storage_seconds_count", operation="put") == 1
    assert count("offload_storage_seconds_count", operation="delete") == 1


async def test_a_sync_run_logs_one_line_with_its_counts(aiohttp_client, tmp_path, captured):
    buffer = captured("json")
    app = hooks_app(tmp_path)
    client = await aiohttp_client(app)
    started = await post_signed(client, "sync", {}, 1)
    assert started.status == 202
    run = (await started.json())["id"]
    runs = app[SYNC_RUNS]
    await asyncio.wait_for(runs.local("blog", run).task, timeout=30)
    [line] = [json.loads(x) for x in buffer.getvalue().splitlines() if f'"run": "{run}"' in x]
    assert (line["site"], line["outcome"], line["exit_code"]) == ("blog", "succeeded", 0)
    assert (line["transferred"], line["bytes"], line["failed"]) == (1, 1000, 0)

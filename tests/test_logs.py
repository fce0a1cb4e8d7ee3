"""Logs an operator can read: text or JSON lines, and a request id in the answer and the log."""

from __future__ import annotations

import io
import json
import logging

import pytest

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.server import logs
from offload.server.app import create_app


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

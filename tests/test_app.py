"""The aiohttp app over real loopback HTTP: health, and errors as short JSON."""

from __future__ import annotations

import contextlib
import logging
import os

import aiohttp
from aiohttp import web

from offload import __version__
from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.server.app import create_app
from offload.storage import StorageError, StorageUnavailable
from tests.helpers import ADMIN_TOKEN, free_port


def settings_for(tmp_path, **sites: str) -> Settings:
    return Settings(
        storage_timeout=2.0,
        admin_token=Secret(ADMIN_TOKEN),
        sites={name: Site(name=name, storage=url) for name, url in sites.items()},
    )


OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_health_reports_each_sites_storage(aiohttp_client, tmp_path):
    (tmp_path / "blog").mkdir()
    app = create_app(settings_for(tmp_path, blog=(tmp_path / "blog").as_uri()))
    client = await aiohttp_client(app)
    response = await client.get("/_offload/health", headers=OPERATOR)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "sites": {"blog": {"storage": (tmp_path / "blog").as_uri(), "ok": True, "error": None}},
    }


async def test_health_says_degraded_when_one_storage_does_not_answer(
    aiohttp_client, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a" * 20)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b" * 40)
    (tmp_path / "blog").mkdir()
    settings = settings_for(tmp_path, blog=(tmp_path / "blog").as_uri())
    dead = Site(
        name="shop", storage="s3://shop-media", endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    settings = Settings(
        storage_timeout=2.0,
        admin_token=Secret(ADMIN_TOKEN),
        sites={**settings.sites, "shop": dead},
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/_offload/health", headers=OPERATOR)
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "degraded"
    assert body["sites"]["blog"]["ok"] is True
    assert body["sites"]["shop"]["ok"] is False
    assert "cannot reach" in body["sites"]["shop"]["error"]


async def test_health_reports_a_missing_storage_folder(aiohttp_client, tmp_path):
    app = create_app(settings_for(tmp_path, blog=(tmp_path / "missing").as_uri()))
    client = await aiohttp_client(app)
    body = await (await client.get("/_offload/health", headers=OPERATOR)).json()
    assert body["sites"]["blog"] == {
        "storage": (tmp_path / "missing").as_uri(),
        "ok": False,
        "error": f"the storage folder {tmp_path / 'missing'} does not exist",
    }


async def test_health_without_the_admin_token_says_only_ok_or_degraded(aiohttp_client, tmp_path):
    app = create_app(settings_for(tmp_path, blog=(tmp_path / "missing").as_uri()))
    client = await aiohttp_client(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
        response = await client.get("/_offload/health", headers=headers)
        assert response.status == 200
        assert await response.json() == {"status": "degraded"}
    unset = create_app(Settings(sites={"blog": Site(name="blog", storage=(tmp_path).as_uri())}))
    client = await aiohttp_client(unset)
    response = await client.get("/_offload/health", headers={"Authorization": "Bearer "})
    assert await response.json() == {"status": "ok"}  # no token set: nobody gets the detail


async def test_unknown_paths_and_methods_get_short_json_errors(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(settings_for(tmp_path)))
    missing = await client.get("/_offload/nothing-here")
    assert missing.status == 404
    body = await missing.json()
    assert body.pop("request_id") == missing.headers["X-Request-Id"]  # to find its log lines
    assert body == {"error": "Not Found", "status": 404}
    wrong = await client.post("/_offload/health")
    assert wrong.status == 405
    assert "GET" in wrong.headers["Allow"]
    assert (await wrong.json())["status"] == 405


async def test_storage_failures_in_a_handler_become_503_or_502_without_details(
    aiohttp_client, tmp_path
):
    app = create_app(settings_for(tmp_path))

    async def down(request: web.Request) -> web.Response:
        raise StorageUnavailable("s3://bucket is unavailable (SlowDown): key=secret-looking")

    async def broken(request: web.Request) -> web.Response:
        raise StorageError("s3://bucket refused access (AccessDenied)")

    async def bug(request: web.Request) -> web.Response:
        raise RuntimeError("password=hunter2")

    app.router.add_get("/down", down)
    app.router.add_get("/broken", broken)
    app.router.add_get("/bug", bug)
    client = await aiohttp_client(app)

    response = await client.get("/down")
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body.pop("request_id") == response.headers["X-Request-Id"]
    assert body == {"error": "storage unavailable, try again later", "status": 503}

    response = await client.get("/broken")
    assert response.status == 502
    body = await response.json()
    assert body.pop("request_id") == response.headers["X-Request-Id"]
    assert body == {"error": "storage error", "status": 502}

    response = await client.get("/bug")
    assert response.status == 500
    body = await response.json()
    assert body.pop("request_id") == response.headers["X-Request-Id"]
    assert body == {"error": "internal error", "status": 500}


async def test_a_client_that_hangs_up_is_not_logged_as_an_internal_error(
    aiohttp_client, tmp_path, caplog
):
    app = create_app(settings_for(tmp_path))

    async def hung_up(request: web.Request) -> web.Response:
        raise ConnectionResetError("Cannot write to closing transport")

    app.router.add_get("/hung-up", hung_up)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.DEBUG), contextlib.suppress(aiohttp.ClientError):
        await client.get("/hung-up")
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]

"""Operator pages (metrics, health's detail) answer the admin_token and admin_allow addresses."""

from __future__ import annotations

import pytest

from offload.config.kinds import Secret
from offload.config.loading import load_settings
from offload.config.settings import Settings, Site
from offload.errors import OffloadError
from offload.server.app import create_app
from tests.helpers import ADMIN_TOKEN

OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def settings(tmp_path, **options) -> Settings:
    (tmp_path / "blog").mkdir(exist_ok=True)
    site = Site(name="blog", storage=(tmp_path / "blog").as_uri())
    return Settings(storage_timeout=2.0, sites={"blog": site}, **options)


async def test_metrics_need_the_admin_token(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(settings(tmp_path, admin_token=Secret(ADMIN_TOKEN))))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
        refused = await client.get("/_offload/metrics", headers=headers)
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.headers["Cache-Control"] == "no-store"
        assert "admin_token" in (await refused.json())["error"]
        assert "offload_" not in await refused.text()
    allowed = await client.get("/_offload/metrics", headers=OPERATOR)
    assert allowed.status == 200
    assert "offload_worker_info" in await allowed.text()


async def test_without_a_token_or_allowed_addresses_nobody_reads_the_metrics(
    aiohttp_client, tmp_path
):
    client = await aiohttp_client(create_app(settings(tmp_path)))
    response = await client.get("/_offload/metrics", headers={"Authorization": "Bearer "})
    assert response.status == 401


@pytest.mark.parametrize(
    ("allow", "seen"),
    [
        (("127.0.0.1",), True),
        (("127.0.0.0/8", "10.0.0.0/8"), True),
        (("::1", "192.168.0.0/16"), False),  # the test client connects from 127.0.0.1
        ((), False),
    ],
)
async def test_addresses_in_admin_allow_see_operator_pages_without_the_token(
    aiohttp_client, tmp_path, allow, seen
):
    client = await aiohttp_client(create_app(settings(tmp_path, admin_allow=allow)))
    metrics = await client.get("/_offload/metrics")
    assert metrics.status == (200 if seen else 401)
    health = await (await client.get("/_offload/health")).json()
    assert ("sites" in health) is seen
    # A header a client writes is no address: only the connection's peer counts.
    spoofed = await client.get("/_offload/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert spoofed.status == metrics.status


def test_admin_allow_takes_addresses_and_networks_and_refuses_anything_else(tmp_path):
    config = tmp_path / "offload.toml"
    config.write_text('admin_allow = ["10.0.0.0/8", "::1", "192.168.1.7"]\n')
    allowed = load_settings(config, {}).admin_allow
    assert allowed == ("10.0.0.0/8", "::1/128", "192.168.1.7/32")
    config.write_text('admin_allow = ["10.0.0.0/8", "prometheus.internal"]\n')
    with pytest.raises(OffloadError, match="admin_allow"):
        load_settings(config, {})

"""CDN purge providers against fake vendor APIs (tests/fake_cdns.py) and moto's CloudFront."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
import types
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any, TypeVar

import aiohttp
import boto3
import pytest
from aiohttp import web
from moto import mock_aws

from offload.config.kinds import Secret
from offload.config.settings import Site
from offload.errors import ConfigError
from offload.manifest import PurgeItem
from offload.purge.providers.base import Provider, PurgeRefused, PurgeRetry, provider_for
from offload.purge.providers.cloudfront import CloudFrontProvider
from offload.purge.providers.pacing import TokenBucket
from tests.fake_cdns import FAKES, FakeCDN

T = TypeVar("T")
TOKEN = "tok-0123456789abcdef-SECRET"
ZONE = "zone42"
CDN = "https://cdn.example.com"

#: The site settings naming the fake's zone and credentials, per vendor.
CREDENTIALS: dict[str, dict[str, Any]] = {
    "cloudflare": {"cloudflare_zone_id": ZONE, "cloudflare_api_token": Secret(TOKEN)},
    "bunny": {"bunny_pull_zone_id": ZONE, "bunny_access_key": Secret(TOKEN)},
    "keycdn": {"keycdn_zone_id": ZONE, "keycdn_api_key": Secret(TOKEN)},
    "fastly": {"fastly_service_id": ZONE, "fastly_api_token": Secret(TOKEN)},
}
#: Where the vendor's API lives under its base URL (Cloudflare's includes /client/v4).
API_ROOT = {"cloudflare": "/client/v4", "bunny": "", "keycdn": "", "fastly": ""}


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def make_site(purge: str, **overrides: Any) -> Site:
    values: dict[str, Any] = {
        "name": "blog",
        "storage": "file:///srv/blog",
        "cdn_url": CDN,
        "purge": purge,
        **CREDENTIALS.get(purge, {}),
    }
    return Site(**{**values, **overrides})


def urls(count: int) -> list[PurgeItem]:
    return [PurgeItem("blog", "url", f"{CDN}/2024/05/photo-{i}.jpg") for i in range(count)]


def tags(count: int) -> list[PurgeItem]:
    return [PurgeItem("blog", "tag", f"blog:2024/{i:03d}") for i in range(count)]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def vendor(aiohttp_server: Any, session: aiohttp.ClientSession) -> Callable[..., Any]:
    """``await vendor("cloudflare", **site_settings)`` -> (provider, fake)."""

    async def start(name: str, **overrides: Any) -> tuple[Provider, FakeCDN]:
        fake = FAKES[name](token=TOKEN, zone=ZONE)
        server = await aiohttp_server(fake.app())
        api = str(server.make_url(API_ROOT[name])).rstrip("/")
        site = make_site(name, purge_api_url=api, **overrides)
        provider = provider_for(site, session=session, run=run, timeout=5)
        assert provider is not None
        return provider, fake

    return start


async def purge(provider: Provider, items: list[PurgeItem]) -> int:
    """Prepare and send every batch; the number of batches."""
    batches = provider.prepare(items)
    for batch in batches:
        await provider.send(batch)
    return len(batches)


# -- what reaches each API ------------------------------------------------------------


async def test_cloudflare_purges_urls_in_batches_of_100_with_the_bearer_token(vendor):
    provider, fake = await vendor("cloudflare")
    assert await purge(provider, urls(250)) == 3
    assert [len(a.body["files"]) for a in fake.accepted] == [100, 100, 50]
    assert {a.path for a in fake.accepted} == {f"/client/v4/zones/{ZONE}/purge_cache"}
    assert fake.accepted[0].body["files"][0] == f"{CDN}/2024/05/photo-0.jpg"


async def test_cloudflare_purges_tags_folders_and_the_site_by_cache_tag(vendor):
    provider, fake = await vendor("cloudflare")
    items = [*tags(150), PurgeItem("blog", "prefix", "2024/05")]
    assert await purge(provider, items) == 2
    assert [len(a.body["tags"]) for a in fake.accepted] == [100, 51]
    assert fake.accepted[1].body["tags"][-1] == "blog:2024/05"
    await purge(provider, [PurgeItem("blog", "everything", "")])
    assert fake.accepted[-1].body == {"tags": ["blog"]}


async def test_cloudflare_without_cache_tags_purges_folders_by_prefix(vendor):
    provider, fake = await vendor("cloudflare", cache_tag_header="", prefix="wp-content/uploads")
    await purge(provider, [PurgeItem("blog", "prefix", "wp-content/uploads/2024")])
    await purge(provider, [PurgeItem("blog", "everything", "")])
    assert [a.body for a in fake.accepted] == [
        {"prefixes": ["cdn.example.com/wp-content/uploads/2024"]},
        {"prefixes": ["cdn.example.com/wp-content/uploads"]},
    ]


async def test_bunny_purges_one_url_per_request_with_the_access_key(vendor):
    provider, fake = await vendor("bunny")
    items = urls(3) + urls(3)  # duplicates merge
    assert await purge(provider, items) == 3
    assert [a.query["url"] for a in fake.accepted] == [item.value for item in urls(3)]
    assert {a.path for a in fake.accepted} == {"/purge"}


async def test_bunny_purges_folders_by_wildcard_url_and_tags_when_the_origin_sends_cdn_tag(
    vendor,
):
    provider, fake = await vendor("bunny")
    await purge(provider, [PurgeItem("blog", "prefix", "2024/05"), *tags(1)])
    assert [a.query["url"] for a in fake.accepted] == [
        f"{CDN}/2024/05/*",
        f"{CDN}/2024/000/*",
    ]
    tagged, fake = await vendor("bunny", cache_tag_header="CDN-Tag")
    await purge(tagged, [*tags(2), PurgeItem("blog", "everything", "")])
    assert [a.body for a in fake.accepted] == [
        {"CacheTag": "blog:2024/000"},
        {"CacheTag": "blog:2024/001"},
        {"CacheTag": "blog"},
    ]
    assert {a.path for a in fake.accepted} == {f"/pullzone/{ZONE}/purgeCache"}


async def test_with_no_cdn_url_a_folder_is_on_the_sites_first_host_and_percent_encoded(vendor):
    provider, fake = await vendor("bunny", cdn_url="", hostnames=("*", "www.example.com"))
    await purge(provider, [PurgeItem("blog", "prefix", "2024/my photos")])
    assert [a.query["url"] for a in fake.accepted] == ["https://www.example.com/2024/my%20photos/*"]


async def test_keycdn_purges_urls_without_scheme_and_tags_with_basic_auth(vendor):
    provider, fake = await vendor("keycdn")
    assert await purge(provider, urls(150) + tags(3)) == 3
    assert [a.method for a in fake.accepted] == ["DELETE"] * 3
    assert [a.path for a in fake.accepted] == [
        f"/zones/purgeurl/{ZONE}.json",
        f"/zones/purgeurl/{ZONE}.json",
        f"/zones/purgetag/{ZONE}.json",
    ]
    assert [len(a.body.get("urls", [])) for a in fake.accepted] == [100, 50, 0]
    assert fake.accepted[0].body["urls"][0] == "cdn.example.com/2024/05/photo-0.jpg"
    assert fake.accepted[2].body == {"tags": ["blog:2024/000", "blog:2024/001", "blog:2024/002"]}


async def test_keycdn_without_cache_tags_purges_the_zone_for_a_folder(vendor):
    provider, fake = await vendor("keycdn", cache_tag_header="X-Other")
    assert await purge(provider, [*urls(2), PurgeItem("blog", "prefix", "2024")]) == 2
    assert [(a.method, a.path) for a in fake.accepted] == [
        ("GET", f"/zones/purge/{ZONE}.json"),
        ("DELETE", f"/zones/purgeurl/{ZONE}.json"),
    ]


async def test_fastly_purges_surrogate_keys_by_256_and_urls_one_by_one(vendor):
    provider, fake = await vendor("fastly")
    assert await purge(provider, tags(300) + urls(2)) == 4
    keyed = [a for a in fake.accepted if a.path == f"/service/{ZONE}/purge"]
    assert [len(a.body["surrogate_keys"]) for a in keyed] == [256, 44]
    assert [a.path for a in fake.accepted[2:]] == [
        "/purge/cdn.example.com/2024/05/photo-0.jpg",
        "/purge/cdn.example.com/2024/05/photo-1.jpg",
    ]


async def test_fastly_purges_everything_by_the_site_key_or_purge_all(vendor):
    provider, fake = await vendor("fastly")
    await purge(provider, [PurgeItem("blog", "everything", "")])
    assert fake.accepted[-1].body == {"surrogate_keys": ["blog"]}
    keyless, fake = await vendor("fastly", surrogate_key_header="")
    await purge(keyless, [PurgeItem("blog", "prefix", "2024"), *urls(1)])
    assert [a.path for a in fake.accepted] == [
        f"/service/{ZONE}/purge_all",
        "/purge/cdn.example.com/2024/05/photo-0.jpg",
    ]


async def test_a_url_with_encoded_characters_reaches_fastly_as_encoded(vendor):
    provider, fake = await vendor("fastly")
    await purge(provider, [PurgeItem("blog", "url", f"{CDN}/2024/caf%C3%A9%20menu.jpg")])
    assert fake.accepted[0].path == "/purge/cdn.example.com/2024/caf%C3%A9%20menu.jpg"


# -- answers: retry, refused -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FAKES))
async def test_429_is_a_retry_with_the_retry_after_seconds(vendor, name):
    provider, fake = await vendor(name)
    fake.fail_next(1, 429, retry_after="7")
    with pytest.raises(PurgeRetry) as info:
        await purge(provider, urls(1))
    assert info.value.retry_after == 7
    assert "429" in info.value.reason


async def test_429_with_an_http_date_is_a_retry_after_that_many_seconds(vendor):
    provider, fake = await vendor("cloudflare")
    fake.fail_next(1, 429, retry_after=formatdate(time.time() + 120, usegmt=True))
    with pytest.raises(PurgeRetry) as info:
        await purge(provider, urls(1))
    assert info.value.retry_after is not None
    assert 100 < info.value.retry_after <= 120


@pytest.mark.parametrize("name", sorted(FAKES))
@pytest.mark.parametrize("status", [500, 503])
async def test_a_5xx_is_a_retry(vendor, name, status):
    provider, fake = await vendor(name)
    fake.fail_next(1, status)
    with pytest.raises(PurgeRetry, match=str(status)):
        await purge(provider, tags(1))
    await purge(provider, tags(1))  # the next one goes through
    assert len(fake.accepted) == 1


@pytest.mark.parametrize("name", sorted(FAKES))
async def test_a_403_is_refused_with_the_vendors_reason(vendor, name):
    provider, fake = await vendor(name)
    fake.fail_next(1, 403)
    with pytest.raises(PurgeRefused, match="HTTP 403"):
        await purge(provider, urls(1))


@pytest.mark.parametrize("name", sorted(FAKES))
async def test_a_wrong_token_is_refused_and_no_token_is_in_the_reason(vendor, name):
    wrong = "wrong-token-that-must-stay-secret"
    field = next(k for k, v in CREDENTIALS[name].items() if isinstance(v, Secret))
    provider, fake = await vendor(name, **{field: Secret(wrong)})
    with pytest.raises(PurgeRefused) as info:
        await purge(provider, urls(1))
    assert fake.refused
    assert not fake.accepted
    for text in (str(info.value), info.value.reason, repr(info.value)):
        assert wrong not in text
        assert TOKEN not in text


async def test_a_vendor_error_that_echoes_the_token_is_blanked(aiohttp_server, session):
    async def echo(request: web.Request) -> web.Response:
        message = f"bad header {request.headers['Authorization']}"
        return web.json_response({"errors": [{"message": message}]}, status=400)

    app = web.Application()
    app.router.add_post("/zones/{zone}/purge_cache", echo)
    server = await aiohttp_server(app)
    site = make_site("cloudflare", purge_api_url=str(server.make_url("/")).rstrip("/"))
    provider = provider_for(site, session=session, run=run)
    assert provider is not None
    with pytest.raises(PurgeRefused) as info:
        await purge(provider, urls(1))
    assert TOKEN not in str(info.value)
    assert "bad header Bearer ****" in str(info.value)


async def test_no_connection_is_a_retry_without_the_token(session, unused_tcp_port):
    site = make_site("fastly", purge_api_url=f"http://127.0.0.1:{unused_tcp_port}")
    provider = provider_for(site, session=session, run=run, timeout=2)
    assert provider is not None
    with pytest.raises(PurgeRetry) as info:
        await purge(provider, tags(1))
    assert TOKEN not in str(info.value)


async def test_an_api_that_does_not_answer_in_time_is_a_retry(aiohttp_server, session):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_post("/service/{service}/purge", slow)
    server = await aiohttp_server(app)
    site = make_site("fastly", purge_api_url=str(server.make_url("/")).rstrip("/"))
    provider = provider_for(site, session=session, run=run, timeout=0.2)
    assert provider is not None
    with pytest.raises(PurgeRetry, match=r"no answer within 0\.2s"):
        await purge(provider, tags(1))


# -- the fakes refuse what the vendor would refuse ------------------------------------

BASIC = "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
#: (vendor, method, path, headers, body or None, query) of malformed requests.
MALFORMED: list[tuple[str, str, str, dict[str, str], Any, dict[str, str]]] = [
    (
        "cloudflare",
        "POST",
        f"/client/v4/zones/{ZONE}/purge_cache",
        {"X-Auth-Key": TOKEN},
        {"files": [CDN + "/a.jpg"]},
        {},
    ),
    (
        "cloudflare",
        "POST",
        f"/client/v4/zones/{ZONE}/purge_cache",
        {"Authorization": f"Bearer {TOKEN}"},
        {"urls": [CDN + "/a.jpg"]},
        {},
    ),
    (
        "cloudflare",
        "POST",
        f"/client/v4/zones/{ZONE}/purge_cache",
        {"Authorization": f"Bearer {TOKEN}"},
        {"files": [f"{CDN}/{i}" for i in range(101)]},
        {},
    ),
    (
        "bunny",
        "POST",
        "/purge",
        {"Authorization": f"Bearer {TOKEN}"},
        None,
        {"url": CDN + "/a.jpg"},
    ),
    (
        "bunny",
        "POST",
        f"/pullzone/{ZONE}/purgeCache",
        {"AccessKey": TOKEN},
        {"CacheTags": ["a", "b"]},
        {},
    ),
    ("bunny", "POST", "/purge", {"AccessKey": TOKEN}, {"urls": [CDN + "/a", CDN + "/b"]}, {}),
    (
        "keycdn",
        "DELETE",
        f"/zones/purgeurl/{ZONE}.json",
        {"Authorization": f"Bearer {TOKEN}"},
        {"urls": ["cdn.example.com/a.jpg"]},
        {},
    ),
    (
        "keycdn",
        "DELETE",
        f"/zones/purgeurl/{ZONE}.json",
        {"Authorization": BASIC},
        {"urls": [CDN + "/a.jpg"]},
        {},
    ),
    (
        "keycdn",
        "DELETE",
        f"/zones/purgeurl/{ZONE}.json",
        {"Authorization": BASIC},
        {"urls": [f"cdn.example.com/{'x' * 100}/{i}" for i in range(700)]},
        {},
    ),
    (
        "fastly",
        "POST",
        f"/service/{ZONE}/purge",
        {"Authorization": f"Bearer {TOKEN}"},
        {"surrogate_keys": ["a"]},
        {},
    ),
    ("fastly", "POST", f"/service/{ZONE}/purge", {"Fastly-Key": TOKEN}, {"keys": ["a"]}, {}),
    (
        "fastly",
        "POST",
        f"/service/{ZONE}/purge",
        {"Fastly-Key": TOKEN},
        {"surrogate_keys": [f"k{i}" for i in range(257)]},
        {},
    ),
    ("fastly", "GET", f"/service/{ZONE}/purge", {"Fastly-Key": TOKEN}, None, {}),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "headers", "body", "query"),
    MALFORMED,
    ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)],
)
async def test_each_fake_refuses_a_malformed_request(
    aiohttp_server, session, name, method, path, headers, body, query
):
    fake = FAKES[name](token=TOKEN, zone=ZONE)
    server = await aiohttp_server(fake.app())
    async with session.request(
        method, server.make_url(path), headers=headers, json=body, params=query
    ) as response:
        assert 400 <= response.status < 500
        assert response.status != 429
    assert not fake.accepted


# -- batching and merging -------------------------------------------------------------


@pytest.mark.parametrize("name", [*sorted(FAKES), "cloudfront"])
def test_prepare_merges_duplicates(name):
    provider = provider_for(make_site(name), session=None, run=run)  # type: ignore[arg-type]
    assert provider is not None
    batches = provider.prepare(urls(2) + urls(2) + tags(1) + tags(1))
    assert sum(len(batch) for batch in batches) == 3


MIXED = [
    *urls(3),
    *tags(2),
    PurgeItem("blog", "tag", "other-tag"),
    PurgeItem("blog", "prefix", "2024/05"),
    PurgeItem("blog", "everything", ""),
]


@pytest.mark.parametrize("name", [*sorted(FAKES), "cloudfront"])
@pytest.mark.parametrize("tag_header", ["Cache-Tag", "CDN-Tag", ""])
def test_what_each_item_needs_alone_is_in_the_batches_of_all(name, tag_header):
    """The drain completes an entry when every request its item alone needs was sent."""
    site = make_site(name, cache_tag_header=tag_header, surrogate_key_header="")
    provider = provider_for(site, session=None, run=run)  # type: ignore[arg-type]
    assert provider is not None
    together = {item for batch in provider.prepare(MIXED) for item in batch}
    for item in MIXED:
        alone = {needed for batch in provider.prepare([item]) for needed in batch}
        assert alone
        assert alone <= together


# -- CloudFront (moto) ----------------------------------------------------------------


@pytest.fixture
def distribution(aws_env: None) -> Any:
    with mock_aws():
        client = boto3.client("cloudfront", region_name="us-east-1")
        config = {
            "CallerReference": "test",
            "Comment": "",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "origin",
                        "DomainName": "origin.example.com",
                        "CustomOriginConfig": {
                            "HTTPPort": 80,
                            "HTTPSPort": 443,
                            "OriginProtocolPolicy": "https-only",
                        },
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "origin",
                "ViewerProtocolPolicy": "redirect-to-https",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
            },
        }
        made = client.create_distribution(DistributionConfig=config)
        yield client, made["Distribution"]["Id"]


def invalidated_paths(client: Any, distribution_id: str) -> list[list[str]]:
    listed = client.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    batches = []
    for summary in listed.get("Items", []):
        got = client.get_invalidation(DistributionId=distribution_id, Id=summary["Id"])
        batches.append(got["Invalidation"]["InvalidationBatch"]["Paths"]["Items"])
    return batches


async def test_cloudfront_invalidates_paths_folders_and_the_site(distribution):
    client, distribution_id = distribution
    site = make_site("cloudfront", cloudfront_distribution_id=distribution_id, prefix="media")
    provider = provider_for(site, session=None, run=run)  # type: ignore[arg-type]
    assert isinstance(provider, CloudFrontProvider)
    items = [
        PurgeItem("blog", "url", f"{CDN}/media/2024/a b.jpg"),
        PurgeItem("blog", "prefix", "media/2024/05"),
        PurgeItem("blog", "tag", "blog:media/2023"),
        PurgeItem("blog", "everything", ""),
    ]
    assert await purge(provider, items) == 2
    batches = sorted(invalidated_paths(client, distribution_id))
    assert batches == sorted(
        [["/media/2024/a%20b.jpg"], ["/media/2024/05/*", "/media/2023/*", "/media/*"]]
    )


def test_cloudfront_batches_3000_files_and_15_wildcards():
    provider = provider_for(make_site("cloudfront"), session=None, run=run)  # type: ignore[arg-type]
    assert provider is not None
    folders = [PurgeItem("blog", "prefix", f"f{i}") for i in range(16)]
    batches = provider.prepare(urls(3001) + folders)
    assert [len(b) for b in batches] == [3000, 1, 15, 1]


async def test_cloudfront_unknown_distribution_is_refused(distribution):
    site = make_site("cloudfront", cloudfront_distribution_id="ENOSUCH")
    provider = provider_for(site, session=None, run=run)  # type: ignore[arg-type]
    assert provider is not None
    with pytest.raises(PurgeRefused, match="NoSuchDistribution"):
        await purge(provider, urls(1))


class RaisingClient:
    def __init__(self, code: str, status: int) -> None:
        self.code, self.status = code, status
        self.references: list[str] = []

    def create_invalidation(self, **kwargs: Any) -> None:
        from botocore.exceptions import ClientError

        self.references.append(kwargs["InvalidationBatch"]["CallerReference"])
        error = {"Error": {"Code": self.code, "Message": "m"}}
        error["ResponseMetadata"] = {"HTTPStatusCode": self.status}  # type: ignore[assignment]
        raise ClientError(error, "CreateInvalidation")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("TooManyInvalidationsInProgress", 400, PurgeRetry),
        ("Throttling", 400, PurgeRetry),
        ("ServiceUnavailable", 503, PurgeRetry),
        ("AccessDenied", 403, PurgeRefused),
        ("InvalidArgument", 400, PurgeRefused),
    ],
)
async def test_cloudfront_errors_map_to_retry_or_refused(code, status, error):
    provider = provider_for(make_site("cloudfront"), session=None, run=run)  # type: ignore[arg-type]
    assert isinstance(provider, CloudFrontProvider)
    provider._client = client = RaisingClient(code, status)
    for _ in range(2):
        with pytest.raises(error, match=code):
            await purge(provider, urls(1))
    assert len(set(client.references)) == 2  # a new CallerReference per request


# -- provider_for and pacing ----------------------------------------------------------


def test_no_provider_for_purge_none():
    assert provider_for(make_site("none"), session=None, run=run) is None  # type: ignore[arg-type]


def test_nginx_is_imported_by_name_when_it_exists(monkeypatch):
    made: list[tuple[Site, object]] = []

    class NginxProvider(Provider):
        name = "nginx"

        def __init__(self, site: Site, session: object) -> None:
            made.append((site, session))

        def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
            return [items]

        async def send(self, batch: list[PurgeItem]) -> None:
            return None

    module = types.ModuleType("offload.purge.providers.nginx")
    module.NginxProvider = NginxProvider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "offload.purge.providers.nginx", module)
    site = make_site("nginx", nginx_purge_url="http://127.0.0.1:8081/purge")
    provider = provider_for(site, session="the session", run=run)  # type: ignore[arg-type]
    assert isinstance(provider, NginxProvider)
    assert made == [(site, "the session")]


def test_nginx_without_its_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "offload.purge.providers.nginx", None)
    site = make_site("nginx", nginx_purge_url="http://127.0.0.1:8081/purge")
    with pytest.raises(ConfigError, match="nginx purge provider is not part of this build"):
        provider_for(site, session=None, run=run)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_token_bucket_spends_its_burst_then_defers_with_the_wait():
    clock = Clock()
    bucket = TokenBucket(0.5, 3, max_wait=5, clock=clock)
    assert [bucket.wait_for() for _ in range(3)] == [0, 0, 0]
    assert bucket.wait_for() == 2  # reserved: sleeps two seconds for one token
    with pytest.raises(PurgeRetry) as info:
        bucket.wait_for(4)  # more than max_wait away
    assert info.value.retry_after == pytest.approx(8)
    clock.now += 10
    assert bucket.wait_for() == 0


def test_a_paused_bucket_defers_until_the_pause_ends():
    clock = Clock()
    bucket = TokenBucket(10, 10, max_wait=5, clock=clock)
    bucket.pause(30)
    with pytest.raises(PurgeRetry) as info:
        bucket.wait_for()
    assert info.value.retry_after == pytest.approx(30)
    clock.now += 30
    assert bucket.wait_for() == 0


async def test_a_429_pauses_the_providers_bucket(vendor):
    provider, fake = await vendor("fastly")
    fake.fail_next(1, 429, retry_after="60")
    with pytest.raises(PurgeRetry):
        await purge(provider, tags(1))
    with pytest.raises(PurgeRetry, match="paced") as info:
        await purge(provider, tags(1))  # not sent: the API asked for a minute's rest
    assert info.value.retry_after is not None
    assert info.value.retry_after > 50
    assert not fake.accepted

"""The CDN origin over real loopback HTTP, on the local folder, moto and ``rclone serve s3``.

Each test builds the app with ``create_app`` for a site whose storage is the
``backend`` fixture's bucket (or folder) and writes objects through the
``storage`` fixture. Tests that do not depend on the backend (routing, key
safety, policy headers, CORS, protection) run on the local folder only.

Every response is linted with httplint as it arrives (``Served.fetch``), so
no test can produce a response that httplint rates BAD without failing; and
``test_every_kind_of_response_passes_httplint`` makes each kind once, by name.

Requests are sent with raw, already-encoded paths on the client session
itself: ``TestClient.get`` joins the path onto the server's root URL, which
removes ``.`` and ``..`` segments before they ever reach the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import signed_url
from offload.server.app import create_app
from offload.server.appkeys import ORIGIN_CACHE, STORAGES
from offload.storage import Storage, StorageError, StorageUnavailable
from tests.helpers import ADMIN_TOKEN
from tests.httplint_check import bad_notes
from tests.storage_servers import Backend

LOCAL = pytest.mark.parametrize("backend", ["local"], indirect=True)

#: Objects up to this size are kept in memory; larger ones stream.
BODY_LIMIT = 64 * 1024
SMALL = bytes((i * 7 + 3) % 256 for i in range(3000))
LARGE = random.Random(12).randbytes(300_000)
SIZES = {"small": SMALL, "large": LARGE}
DEFAULT_POLICY = "public, max-age=86400, stale-while-revalidate=86400, stale-if-error=604800"
ALLOWED = {"GET", "HEAD", "OPTIONS"}


# -- the app under test -------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    #: What httplint rates BAD in this response.
    problems: list[str]


class StorageSpy:
    """Counts a storage's reads, and makes it slow, unavailable or failing on demand.

    It replaces the storage object's own methods, so the origin calls it without
    knowing; it keeps every body stream and open file it handed out, to prove
    they were released.
    """

    def __init__(self, storage: Storage) -> None:
        self.calls: Counter[str] = Counter()
        self.delay = 0.0
        self.failure: type[StorageError] | None = None
        self.streams: list[Any] = []
        self.closed_streams = 0
        self.files: list[Any] = []
        for name in ("head", "get", "open_file", "get_spliceable"):
            if hasattr(storage, name):
                setattr(storage, name, self._wrap(name, getattr(storage, name)))

    def _wrap(self, name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def spied(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.failure is not None:
                raise self.failure(f"{name}: the storage is made to fail by the test")
            result = await call(*args, **kwargs)
            if name == "get":
                self._watch(result[1])
            elif name == "get_spliceable" and result is not None:
                self.calls["get"] += 1  # a GET of the body all the same, spliced
                self._watch_spliced(result)
            elif name == "open_file":
                self.files.append(result[0])
            return result

        return spied

    def _watch(self, stream: Any) -> None:
        self.streams.append(stream)
        close = stream.aclose
        seen = False

        async def aclose() -> None:
            nonlocal seen
            if not seen:
                seen = True
                self.closed_streams += 1
            await close()

        stream.aclose = aclose

    def _watch_spliced(self, body: Any) -> None:
        self.streams.append(body)
        done = body.done
        seen = False

        def finished(*, complete: bool) -> None:
            nonlocal seen
            if not seen:
                seen = True
                self.closed_streams += 1
            done(complete=complete)

        body.done = finished

    @property
    def reads(self) -> int:
        """Body reads of any kind: S3 gets, or local gets and opened files."""
        return self.calls["get"] + self.calls["open_file"]


@dataclass
class Served:
    client: TestClient
    app: web.Application
    spies: dict[str, StorageSpy] = field(default_factory=dict)

    def spy(self, site: str = "blog") -> StorageSpy:
        if site not in self.spies:
            self.spies[site] = StorageSpy(self.app[STORAGES][site])
        return self.spies[site]

    def url(self, path: str) -> URL:
        return URL(f"http://{self.client.host}:{self.client.port}{path}", encoded=True)

    async def fetch(
        self,
        path: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        *,
        lint: bool = True,
    ) -> Reply:
        """One request with the path exactly as given; the response must pass httplint."""
        headers = dict(headers or {})
        async with self.client.session.request(
            method, self.url(path), headers=headers, allow_redirects=False
        ) as response:
            body = await response.read()
            problems = bad_notes(
                response.status,
                response.raw_headers,
                body,
                method,
                target=path,
                request_headers=headers,
                reason=response.reason or "",
            )
            reply = Reply(response.status, response.headers, body, problems)
        if lint:
            assert problems == [], f"httplint on {method} {path} -> {reply.status}: {problems}"
        return reply

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        reply = await self.fetch(
            "/_offload/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.body.decode())
            for sample in family.samples
        }


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
def serve(aiohttp_client: Any, site_location: dict[str, str]) -> Serve:
    """Start the origin: site "blog" on the backend (any host), plus any ``sites`` given."""

    async def start(
        *, settings: Mapping[str, Any] | None = None, sites: Mapping[str, Site] = (), **blog: Any
    ) -> Served:
        blog = {"hostnames": ("*",), **site_location, **blog}
        all_sites = {"blog": Site(name="blog", **blog), **dict(sites)}
        options = {
            "body_cache_max_object": BODY_LIMIT,
            "storage_timeout": 2.0,
            "admin_token": Secret(ADMIN_TOKEN),
            **(settings or {}),
        }
        app = create_app(Settings(**options, sites=all_sites))
        return Served(await aiohttp_client(app), app)

    return start


async def put_raw(backend: Backend, key: str, data: bytes) -> None:
    """Place an object the way another tool would: no stored content type, no sidecar."""
    if backend.is_s3:
        await asyncio.to_thread(
            backend.client.put_object,
            Bucket=backend.bucket,
            Key=f"{backend.prefix}/{key}",
            Body=data,
        )
    else:
        assert backend.root is not None
        path = backend.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def http_date(seconds_from: str, delta: float = 0) -> str:
    when = email.utils.parsedate_to_datetime(seconds_from) + timedelta(seconds=delta)
    return email.utils.format_datetime(when, usegmt=True)


def parse_byteranges(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, bytes) of each part, checking the framing exactly."""
    kind, _, boundary = content_type.partition("; boundary=")
    assert kind == "multipart/byteranges"
    first, delimiter, close = (
        f"--{boundary}\r\n",
        f"\r\n--{boundary}\r\n",
        f"\r\n--{boundary}--\r\n",
    )
    assert body.startswith(first.encode())
    assert body.endswith(close.encode())
    parts = []
    for part in body[len(first) : -len(close)].split(delimiter.encode()):
        head, _, data = part.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n"))
        assert set(fields) == {"Content-Type", "Content-Range"}
        parts.append((fields["Content-Type"], fields["Content-Range"], data))
    return parts


# -- 200 and HEAD ----------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_an_object_is_served_with_its_exact_bytes(serve, storage, size):
    data = SIZES[size]
    await storage.put("media/2024/05/photo.jpg", data)
    origin = await serve()
    reply = await origin.fetch("/media/2024/05/photo.jpg")
    assert reply.status == 200
    assert reply.body == data
    assert reply.headers["Content-Length"] == str(len(data))


async def test_a_large_object_streams_from_storage_and_is_never_held_in_memory(serve, storage):
    await storage.put("media/big.bin", LARGE)
    origin = await serve()
    spy = origin.spy()
    for _ in range(2):
        assert (await origin.fetch("/media/big.bin")).body == LARGE
    assert spy.reads == 2  # each GET read storage again
    assert origin.app[ORIGIN_CACHE].stats()["body_bytes"] == 0


@pytest.mark.parametrize("size", SIZES)
async def test_head_sends_the_get_headers_and_no_body(serve, storage, size):
    data = SIZES[size]
    await storage.put("media/photo.jpg", data)
    origin = await serve()
    get = await origin.fetch("/media/photo.jpg")
    head = await origin.fetch("/media/photo.jpg", "HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(data))
    ignored = {"date", "content-length", "x-request-id"}
    assert {k: v for k, v in head.headers.items() if k.lower() not in ignored} == {
        k: v for k, v in get.headers.items() if k.lower() not in ignored
    }


async def test_an_object_carries_the_headers_a_cdn_needs(serve, storage):
    info = await storage.put("media/photo.jpg", SMALL)
    origin = await serve()
    reply = await origin.fetch("/media/photo.jpg")
    head = await storage.head("media/photo.jpg")
    assert head is not None
    assert reply.headers["Content-Type"] == "image/jpeg"
    assert reply.headers["Content-Length"] == str(len(SMALL))
    assert reply.headers["ETag"] == f'"{info.etag}"'
    assert not reply.headers["ETag"].startswith("W/")
    assert email.utils.parsedate_to_datetime(reply.headers["Last-Modified"]) == (
        head.last_modified.replace(microsecond=0)
    )
    assert reply.headers["Last-Modified"].endswith(" GMT")
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Cache-Control"] == DEFAULT_POLICY


async def test_the_stored_content_type_wins_over_the_extension(serve, storage):
    await storage.put("media/photo.jpg", SMALL, content_type="image/webp")
    origin = await serve()
    assert (await origin.fetch("/media/photo.jpg")).headers["Content-Type"] == "image/webp"


GUESSES = [
    ("media/photo.jpg", "image/jpeg"),
    ("media/font.woff2", "font/woff2"),
    ("media/blob.qqq", "application/octet-stream"),
]


@pytest.mark.parametrize(("key", "content_type"), GUESSES)
async def test_an_object_stored_without_a_type_gets_one_from_its_extension(
    serve, backend, key, content_type
):
    await put_raw(backend, key, SMALL)
    origin = await serve()
    assert (await origin.fetch(f"/{key}")).headers["Content-Type"] == content_type


# -- cache policy and purge tags (the same on every backend) -------------------------

VERSIONED = "a/2024/05/3f9a2c1e/photo.jpg"
POLICIES = [
    pytest.param({}, "a/2024/05/photo.jpg", DEFAULT_POLICY, id="defaults"),
    pytest.param(
        {"max_age": 60, "stale_while_revalidate": 0, "stale_if_error": 0},
        "a/photo.jpg",
        "public, max-age=60",
        id="no-stale-directives",
    ),
    pytest.param(
        {"max_age": 300, "stale_while_revalidate": 30, "stale_if_error": 600, "s_maxage": 3600},
        "a/photo.jpg",
        "public, max-age=300, stale-while-revalidate=30, stale-if-error=600, s-maxage=3600",
        id="every-lifetime",
    ),
    pytest.param(
        {"versioning": True}, VERSIONED, "public, max-age=31536000, immutable", id="versioned"
    ),
    pytest.param({"versioning": False}, VERSIONED, DEFAULT_POLICY, id="versioning-off"),
    pytest.param({"versioning": True}, "a/2024/05/photo.jpg", DEFAULT_POLICY, id="unversioned-key"),
]


@LOCAL
@pytest.mark.parametrize(("policy", "key", "cache_control"), POLICIES)
async def test_cache_control_follows_the_sites_policy(serve, storage, policy, key, cache_control):
    await storage.put(key, SMALL)
    origin = await serve(**policy)
    reply = await origin.fetch(f"/{key}")
    assert reply.headers["Cache-Control"] == cache_control
    assert "CDN-Cache-Control" not in reply.headers


CDN_POLICIES = [
    pytest.param(
        {"cdn_max_age": 3600},
        "a/photo.jpg",
        "public, max-age=3600, stale-while-revalidate=86400, stale-if-error=604800",
        id="cdn-max-age",
    ),
    pytest.param(
        {"cdn_max_age": 3600, "versioning": True},
        VERSIONED,
        "public, max-age=31536000, immutable",
        id="versioned",
    ),
]


@LOCAL
@pytest.mark.parametrize(("policy", "key", "cdn_cache_control"), CDN_POLICIES)
async def test_cdn_cache_control_is_sent_when_cdn_max_age_is_set(
    serve, storage, policy, key, cdn_cache_control
):
    await storage.put(key, SMALL)
    origin = await serve(**policy)
    reply = await origin.fetch(f"/{key}")
    assert reply.headers["CDN-Cache-Control"] == cdn_cache_control


TAGS = "blog", "blog:a", "blog:a/2024", "blog:a/2024/05"
TAG_HEADERS = [
    pytest.param({}, {"Cache-Tag": ",".join(TAGS), "Surrogate-Key": " ".join(TAGS)}, id="defaults"),
    pytest.param(
        {
            "cache_tag_header": "X-Purge-Tags",
            "cache_tag_separator": ";",
            "surrogate_key_header": "Edge-Keys",
            "surrogate_key_separator": "|",
        },
        {"X-Purge-Tags": ";".join(TAGS), "Edge-Keys": "|".join(TAGS)},
        id="renamed",
    ),
    pytest.param(
        {"cache_tag_header": "", "surrogate_key_header": "Surrogate-Key"},
        {"Surrogate-Key": " ".join(TAGS)},
        id="cache-tag-off",
    ),
    pytest.param({"cache_tag_header": "", "surrogate_key_header": ""}, {}, id="both-off"),
]


@LOCAL
@pytest.mark.parametrize(("options", "expected"), TAG_HEADERS)
async def test_purge_tags_name_the_site_and_the_keys_folders(serve, storage, options, expected):
    await storage.put("a/2024/05/photo.jpg", SMALL)
    origin = await serve(**options)
    reply = await origin.fetch("/a/2024/05/photo.jpg")
    tag_names = {"Cache-Tag", "Surrogate-Key", "X-Purge-Tags", "Edge-Keys"}
    assert {name: reply.headers[name] for name in tag_names if name in reply.headers} == expected


async def test_a_missing_key_is_404_cacheable_for_negative_ttl(serve, storage):
    origin = await serve()
    reply = await origin.fetch("/media/missing.jpg")
    assert reply.status == 404
    assert reply.headers["Cache-Control"] == "public, max-age=60"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


@LOCAL
async def test_a_404_lives_as_long_as_the_sites_negative_ttl(serve, storage):
    origin = await serve(negative_ttl=5)
    reply = await origin.fetch("/media/missing.jpg")
    assert (reply.status, reply.headers["Cache-Control"]) == (404, "public, max-age=5")


@LOCAL
async def test_a_storage_error_is_502_and_never_stored(serve, storage):
    origin = await serve()
    origin.spy().failure = StorageError
    reply = await origin.fetch("/media/photo.jpg")
    assert reply.status == 502
    assert reply.headers["Cache-Control"] == "no-store"


# -- routing and keys (the same on every backend) --------------------------------------

HOSTS = [
    ("blog.example.com", b"blog"),
    ("BLOG.Example.COM", b"blog"),
    ("blog.example.com:8443", b"blog"),
    ("blog.example.com.", b"blog"),
    ("cdn.blog.example.com", b"blog"),
    ("shop.example.com", b"shop"),
    ("elsewhere.example", b"shop"),
    ("[::1]:8080", b"shop"),
]


@LOCAL
@pytest.mark.parametrize(("host", "body"), HOSTS)
async def test_the_host_header_picks_the_site(serve, backend, tmp_path, host, body):
    shop = tmp_path / "shop"
    await put_raw(backend, "media/who.txt", b"blog")
    await put_raw(Backend("local", root=shop), "media/who.txt", b"shop")
    origin = await serve(
        hostnames=("blog.example.com", "cdn.blog.example.com"),
        sites={
            "shop": Site(name="shop", storage=shop.as_uri(), hostnames=("shop.example.com", "*"))
        },
    )
    reply = await origin.fetch("/media/who.txt", headers={"Host": host})
    assert (reply.status, reply.body) == (200, body)


@LOCAL
async def test_a_host_no_site_claims_is_404_when_no_site_takes_every_host(serve, backend):
    await put_raw(backend, "media/who.txt", b"blog")
    origin = await serve(hostnames=("blog.example.com",))
    assert (
        await origin.fetch("/media/who.txt", headers={"Host": "blog.example.com"})
    ).status == 200
    assert (await origin.fetch("/media/who.txt", headers={"Host": "other.example"})).status == 404


UNSAFE_PATHS = [
    pytest.param("/", id="empty-key"),
    pytest.param("/media/../etc/passwd", id="dot-dot"),
    pytest.param("/media/%2E%2E/etc/passwd", id="encoded-dot-dot"),
    pytest.param("/media/./photo.jpg", id="dot"),
    pytest.param("/media/%2e/photo.jpg", id="encoded-dot"),
    pytest.param("/media//photo.jpg", id="empty-segment"),
    pytest.param("//media/photo.jpg", id="leading-empty-segment"),
    pytest.param("/media/", id="trailing-slash"),
    pytest.param("/media%5Cphoto.jpg", id="backslash"),
    pytest.param("/media/%00.jpg", id="nul"),
    pytest.param("/media/%0A.jpg", id="newline"),
    pytest.param("/media/%0D.jpg", id="carriage-return"),
    pytest.param("/media/%1B.jpg", id="escape"),
    pytest.param("/media/%7F.jpg", id="del"),
    pytest.param("/media/%C2%85.jpg", id="c1-control"),
    pytest.param("/" + "a" * 1025, id="1025-bytes"),
    pytest.param("/media/" + "%C3%A9" * 510, id="1026-bytes-in-utf8"),
    pytest.param("/media/%FF.jpg", id="invalid-utf8"),
    pytest.param("/media/%C3.jpg", id="truncated-utf8"),
    pytest.param("/media/%C0%AF.jpg", id="overlong-utf8"),
    pytest.param("/media/%ED%A0%80.jpg", id="utf8-surrogate"),
]


@LOCAL
@pytest.mark.parametrize("path", UNSAFE_PATHS)
async def test_an_unsafe_path_is_refused_with_400(serve, storage, path):
    origin = await serve()
    reply = await origin.fetch(path)
    assert reply.status == 400, reply.body
    assert reply.headers["Cache-Control"] == "no-store"


@LOCAL
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("/".join(["a" * 200] * 5) + "/" + "b" * 19, id="1024-bytes"),
        pytest.param("a" * 256, id="256-byte-segment"),
    ],
)
async def test_a_long_key_within_1024_bytes_is_looked_up(serve, storage, key):
    assert len(key.encode()) <= 1024
    origin = await serve()
    assert (await origin.fetch(f"/{key}")).status == 404


@LOCAL
async def test_an_encoded_slash_is_decoded_exactly_once(serve, storage):
    await storage.put("a/b.txt", b"slash")
    await storage.put("a%2Fb.txt", b"percent")
    origin = await serve()
    assert (await origin.fetch("/a%2Fb.txt")).body == b"slash"
    assert (await origin.fetch("/a%252Fb.txt")).body == b"percent"
    assert (await origin.fetch("/%61/b.txt")).body == b"slash"


@LOCAL
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/wp-content/uploads/2024/photo.jpg", 200),
        ("/private/secret.txt", 404),
        ("/wp-content/uploads-old/photo.jpg", 404),
        ("/wp-content/uploads", 404),
    ],
)
async def test_a_key_outside_the_sites_prefix_is_404(serve, storage, path, status):
    for key in ("wp-content/uploads/2024/photo.jpg", "private/secret.txt"):
        await storage.put(key, SMALL)
    await storage.put("wp-content/uploads-old/photo.jpg", SMALL)
    origin = await serve(prefix="wp-content/uploads")
    reply = await origin.fetch(path)
    assert reply.status == status
    if status == 404:
        assert reply.headers["Cache-Control"] == "public, max-age=60"


@LOCAL
async def test_paths_under_offload_are_never_keys(serve, backend):
    await put_raw(backend, "_offload/photo.jpg", SMALL)
    origin = await serve()
    assert (await origin.fetch("/_offload/photo.jpg")).status == 404


@LOCAL
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_405_with_allow(serve, storage, method):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve()
    reply = await origin.fetch("/media/photo.jpg", method)
    assert reply.status == 405
    assert {m.strip() for m in reply.headers["Allow"].split(",")} == ALLOWED


# -- conditional requests ---------------------------------------------------------------

CONDITIONS = [
    pytest.param("GET", {"If-None-Match": "{etag}"}, 304, id="inm-strong"),
    pytest.param("GET", {"If-None-Match": "{weak}"}, 304, id="inm-weak"),
    pytest.param("GET", {"If-None-Match": '"other", {etag}'}, 304, id="inm-list"),
    pytest.param("GET", {"If-None-Match": "*"}, 304, id="inm-star"),
    pytest.param("HEAD", {"If-None-Match": "{etag}"}, 304, id="inm-head"),
    pytest.param("GET", {"If-None-Match": '"other"'}, 200, id="inm-other"),
    pytest.param("GET", {"If-Modified-Since": "{lm}"}, 304, id="ims-same"),
    pytest.param("GET", {"If-Modified-Since": "{before}"}, 200, id="ims-before"),
    pytest.param(
        "GET", {"If-None-Match": '"other"', "If-Modified-Since": "{lm}"}, 200, id="inm-beats-ims"
    ),
    pytest.param("GET", {"If-Match": '"other"'}, 412, id="im-other"),
    pytest.param("GET", {"If-Match": "{weak}"}, 412, id="im-weak"),
    pytest.param("GET", {"If-Match": "{etag}"}, 200, id="im-same"),
    pytest.param("GET", {"If-Unmodified-Since": "{before}"}, 412, id="ius-before"),
    pytest.param("GET", {"If-Unmodified-Since": "{lm}"}, 200, id="ius-same"),
]


def validators(reply: Reply) -> dict[str, str]:
    etag, modified = reply.headers["ETag"], reply.headers["Last-Modified"]
    return {
        "etag": etag,
        "weak": f"W/{etag}",
        "lm": modified,
        "before": http_date(modified, -86400),
    }


@pytest.mark.parametrize(("method", "conditions", "status"), CONDITIONS)
async def test_conditional_requests_follow_rfc_9110(serve, storage, method, conditions, status):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve()
    first = await origin.fetch("/media/photo.jpg")
    values = validators(first)
    headers = {name: value.format(**values) for name, value in conditions.items()}
    reply = await origin.fetch("/media/photo.jpg", method, headers)
    assert reply.status == status
    if status == 304:
        assert reply.body == b""
        for name in ("ETag", "Cache-Control", "Last-Modified"):
            assert reply.headers[name] == first.headers[name]
    elif status == 412:
        assert reply.headers["Cache-Control"] == "no-store"
    else:
        assert reply.body == (SMALL if method == "GET" else b"")


# -- ranges -------------------------------------------------------------------------------

RANGES = [
    pytest.param("bytes=0-9", lambda size: (0, 9), id="first-10"),
    pytest.param("bytes=100-", lambda size: (100, size - 1), id="from-100"),
    pytest.param("bytes=-5", lambda size: (size - 5, size - 1), id="last-5"),
    pytest.param("bytes=10-99999999", lambda size: (10, size - 1), id="past-the-end"),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("header", "span"), RANGES)
async def test_one_range_gives_206_with_exactly_those_bytes(serve, storage, size, header, span):
    data = SIZES[size]
    await storage.put("media/video.mp4", data)
    origin = await serve()
    reply = await origin.fetch("/media/video.mp4", headers={"Range": header})
    first, last = span(len(data))
    assert reply.status == 206
    assert reply.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert reply.headers["Content-Length"] == str(last - first + 1)
    assert reply.body == data[first : last + 1]


@pytest.mark.parametrize(("header", "span"), RANGES)
async def test_a_range_of_a_streamed_object_reads_only_that_range_from_storage(
    serve, storage, backend, header, span
):
    await storage.put("media/video.mp4", LARGE)
    origin = await serve()
    spy = origin.spy()
    reply = await origin.fetch("/media/video.mp4", headers={"Range": header})
    first, last = span(len(LARGE))
    assert reply.body == LARGE[first : last + 1]
    if backend.is_s3:
        assert [stream.length for stream in spy.streams] == [last - first + 1]
    else:
        assert spy.calls["open_file"] == 1  # sent with sendfile from the open file


async def test_an_unsatisfiable_range_gives_416_with_the_size(serve, storage):
    await storage.put("media/video.mp4", SMALL)
    origin = await serve()
    reply = await origin.fetch("/media/video.mp4", headers={"Range": f"bytes={len(SMALL)}-"})
    assert reply.status == 416
    assert reply.headers["Content-Range"] == f"bytes */{len(SMALL)}"
    assert reply.headers["Cache-Control"] == "no-store"


IF_RANGES = [
    pytest.param("{etag}", 206, id="same-etag"),
    pytest.param("{weak}", 200, id="weak-etag"),
    pytest.param('"other"', 200, id="other-etag"),
    pytest.param("{lm}", 206, id="same-date"),
    pytest.param("{before}", 200, id="earlier-date"),
]


@pytest.mark.parametrize(("if_range", "status"), IF_RANGES)
async def test_if_range_sends_the_range_only_while_the_object_is_unchanged(
    serve, storage, if_range, status
):
    await storage.put("media/video.mp4", SMALL)
    origin = await serve()
    values = validators(await origin.fetch("/media/video.mp4", "HEAD"))
    headers = {"Range": "bytes=0-9", "If-Range": if_range.format(**values)}
    reply = await origin.fetch("/media/video.mp4", headers=headers)
    assert reply.status == status
    assert reply.body == (SMALL[:10] if status == 206 else SMALL)


async def test_several_ranges_of_a_small_object_give_multipart_byteranges(serve, storage):
    await storage.put("media/video.mp4", SMALL)
    origin = await serve()
    reply = await origin.fetch("/media/video.mp4", headers={"Range": "bytes=0-1, 10-19, -5"})
    assert reply.status == 206
    assert "Content-Range" not in reply.headers
    assert reply.headers["Content-Length"] == str(len(reply.body))
    size = len(SMALL)
    assert parse_byteranges(reply.headers["Content-Type"], reply.body) == [
        ("video/mp4", f"bytes 0-1/{size}", SMALL[0:2]),
        ("video/mp4", f"bytes 10-19/{size}", SMALL[10:20]),
        ("video/mp4", f"bytes {size - 5}-{size - 1}/{size}", SMALL[-5:]),
    ]


async def test_several_ranges_of_a_streamed_object_give_the_whole_object(serve, storage):
    await storage.put("media/video.mp4", LARGE)
    origin = await serve()
    reply = await origin.fetch("/media/video.mp4", headers={"Range": "bytes=0-1, 10-19"})
    assert reply.status == 200
    assert "Content-Range" not in reply.headers
    assert reply.body == LARGE


# -- CORS (the same on every backend) ---------------------------------------------------

A, B = "https://a.example", "https://b.example"
CORS_GETS = [
    pytest.param(("*",), A, "*", None, id="star"),
    pytest.param(("*",), None, "*", None, id="star-without-origin"),
    pytest.param((A, B), B, B, "Origin", id="listed"),
    pytest.param((A, B), "https://evil.example", None, "Origin", id="not-listed"),
    pytest.param((A, B), None, None, "Origin", id="list-without-origin"),
    pytest.param((), A, None, None, id="cors-off"),
]


@LOCAL
@pytest.mark.parametrize(("allowed", "origin_header", "acao", "vary"), CORS_GETS)
async def test_cors_allows_the_sites_origins(serve, storage, allowed, origin_header, acao, vary):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve(cors_origins=allowed)
    headers = {"Origin": origin_header} if origin_header else {}
    found = await origin.fetch("/media/photo.jpg", headers=headers)
    missing = await origin.fetch("/media/no.jpg", headers=headers)
    assert (found.status, missing.status) == (200, 404)
    for reply in (found, missing):
        assert reply.headers.get("Access-Control-Allow-Origin") == acao
        assert reply.headers.get("Vary") == vary
    if acao is not None:
        exposed = {h.strip() for h in found.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"Content-Length", "Content-Range", "ETag", "Accept-Ranges"} <= exposed


@LOCAL
async def test_a_revalidation_keeps_its_cors_headers(serve, storage):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve(cors_origins=(A, B))
    first = await origin.fetch("/media/photo.jpg", headers={"Origin": A})
    reply = await origin.fetch(
        "/media/photo.jpg", headers={"Origin": A, "If-None-Match": first.headers["ETag"]}
    )
    assert reply.status == 304
    assert reply.headers["Access-Control-Allow-Origin"] == A
    assert reply.headers["Vary"] == "Origin"


@LOCAL
async def test_a_web_font_works_across_origins(serve, storage):
    await storage.put("fonts/inter.woff2", SMALL)
    origin = await serve(cors_origins=(A,))
    reply = await origin.fetch("/fonts/inter.woff2", headers={"Origin": A})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "font/woff2"
    assert reply.headers["Access-Control-Allow-Origin"] == A
    assert reply.body == SMALL


PREFLIGHTS = [
    pytest.param(("*",), A, "GET", "range", 204, "*", id="star"),
    pytest.param((A, B), A, "GET", "Range, If-None-Match", 204, A, id="listed"),
    pytest.param((A, B), A, "HEAD", None, 204, A, id="listed-head"),
    pytest.param((A, B), "https://evil.example", "GET", None, 403, None, id="not-listed"),
    pytest.param((A, B), A, "PUT", None, 403, None, id="method-not-allowed"),
    pytest.param((), A, "GET", None, 403, None, id="cors-off"),
]


@LOCAL
@pytest.mark.parametrize(
    ("allowed", "origin_header", "method", "asked", "status", "acao"), PREFLIGHTS
)
async def test_a_preflight_is_answered_for_allowed_origins_and_methods(
    serve, storage, allowed, origin_header, method, asked, status, acao
):
    origin = await serve(cors_origins=allowed)
    headers = {"Origin": origin_header, "Access-Control-Request-Method": method}
    if asked:
        headers["Access-Control-Request-Headers"] = asked
    reply = await origin.fetch("/fonts/inter.woff2", "OPTIONS", headers)
    assert reply.status == status
    assert reply.headers.get("Access-Control-Allow-Origin") == acao
    if status == 204:
        methods = {m.strip() for m in reply.headers["Access-Control-Allow-Methods"].split(",")}
        assert {"GET", "HEAD"} <= methods
        assert int(reply.headers["Access-Control-Max-Age"]) > 0
        assert reply.headers.get("Access-Control-Allow-Headers") == asked


@LOCAL
async def test_a_plain_options_says_what_is_allowed(serve, storage):
    origin = await serve()
    reply = await origin.fetch("/media/photo.jpg", "OPTIONS")
    assert reply.status == 204
    assert {m.strip() for m in reply.headers["Allow"].split(",")} == ALLOWED


# -- origin protection (the same on every backend) ----------------------------------------

SECRETS = [
    pytest.param("X-Origin-Secret", {}, 403, id="missing"),
    pytest.param("X-Origin-Secret", {"X-Origin-Secret": "wrong"}, 403, id="wrong"),
    pytest.param("X-Origin-Secret", {"X-Origin-Secret": "s3cr3t-from-the-cdn"}, 200, id="right"),
    pytest.param("X-Pull-Auth", {"X-Pull-Auth": "s3cr3t-from-the-cdn"}, 200, id="custom-header"),
    pytest.param(
        "X-Pull-Auth", {"X-Origin-Secret": "s3cr3t-from-the-cdn"}, 403, id="default-header-ignored"
    ),
]


@LOCAL
@pytest.mark.parametrize(("header", "sent", "status"), SECRETS)
async def test_the_origin_secret_is_required_when_set(serve, storage, header, sent, status):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve(origin_secret=Secret("s3cr3t-from-the-cdn"), origin_secret_header=header)
    reply = await origin.fetch("/media/photo.jpg", headers=sent)
    assert reply.status == status
    if status == 403:
        assert reply.headers["Cache-Control"] == "no-store"
        assert b"s3cr3t" not in reply.body


SIGNING_SECRET = "signing-secret-0123456789"


def signed(path: str, expires: int, secret: str = SIGNING_SECRET) -> str:
    parts = urlsplit(signed_url("https://cdn.example", path, secret, expires))
    return f"{parts.path}?{parts.query}"


def tamper(path: str) -> str:
    last = path[-1]
    return path[:-1] + ("0" if last != "0" else "1")


SIGNED_LINKS = [
    pytest.param(lambda: signed("/private/report.pdf", int(time.time()) + 60), 200, id="valid"),
    pytest.param(lambda: signed("/private/report.pdf", int(time.time()) - 1), 403, id="expired"),
    pytest.param(
        lambda: tamper(signed("/private/report.pdf", int(time.time()) + 60)), 403, id="tampered"
    ),
    pytest.param(
        lambda: signed("/private/report.pdf", int(time.time()) + 60, "another-secret"),
        403,
        id="other-secret",
    ),
    pytest.param(
        lambda: signed("/private/other.pdf", int(time.time()) + 60).replace("other", "report"),
        403,
        id="other-path",
    ),
    pytest.param(lambda: "/private/report.pdf", 403, id="missing"),
    pytest.param(lambda: f"/private/report.pdf?expires={int(time.time()) + 60}", 403, id="no-sig"),
    pytest.param(lambda: "/public/report.pdf", 200, id="unsigned-prefix"),
    pytest.param(lambda: "/privateer/report.pdf", 200, id="prefix-is-a-folder"),
]


@LOCAL
@pytest.mark.parametrize(("link", "status"), SIGNED_LINKS)
async def test_signed_prefixes_need_a_valid_unexpired_signature(serve, storage, link, status):
    for folder in ("private", "public", "privateer"):
        await storage.put(f"{folder}/report.pdf", SMALL)
    origin = await serve(signed_prefixes=("private",), signing_secret=Secret(SIGNING_SECRET))
    path = link()
    reply = await origin.fetch(path)
    assert reply.status == status
    if status == 200:
        assert reply.body == SMALL
    if status == 200 and path.startswith("/private/"):
        # The link holds 60 s: a browser may keep the answer no longer than that.
        assert reply.headers["Cache-Control"] in ("private, max-age=60", "private, max-age=59")
        assert "Cache-Tag" not in reply.headers
    if status == 403:
        assert reply.headers["Cache-Control"] == "no-store"


@LOCAL
async def test_a_signed_answer_is_kept_no_longer_than_its_url_nor_than_max_age(serve, storage):
    await storage.put("private/report.pdf", SMALL)
    origin = await serve(signed_prefixes=("private",), signing_secret=Secret(SIGNING_SECRET))
    soon = await origin.fetch(signed("/private/report.pdf", int(time.time()) + 600))
    assert soon.headers["Cache-Control"] in ("private, max-age=600", "private, max-age=599")
    later = await origin.fetch(signed("/private/report.pdf", int(time.time()) + 30 * 86400))
    assert later.headers["Cache-Control"] == "private, max-age=86400"  # max_age still caps it


# -- caches -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_a_second_get_asks_storage_only_for_what_is_not_in_memory(serve, storage, size):
    data = SIZES[size]
    await storage.put("media/photo.jpg", data)
    origin = await serve()
    spy = origin.spy()
    for _ in range(3):
        assert (await origin.fetch("/media/photo.jpg")).body == data
    assert spy.calls["head"] == 1
    assert spy.reads == (1 if size == "small" else 3)


async def test_concurrent_gets_of_one_uncached_key_make_one_storage_request(serve, storage):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve()
    spy = origin.spy()
    spy.delay = 0.05
    replies = await asyncio.gather(*(origin.fetch("/media/photo.jpg") for _ in range(20)))
    assert [r.body for r in replies] == [SMALL] * 20
    assert (spy.calls["head"], spy.calls["get"]) == (1, 1)


async def test_a_404_is_remembered_for_the_negative_ttl(serve, storage):
    origin = await serve()
    spy = origin.spy()
    assert (await origin.fetch("/media/late.jpg")).status == 404
    await storage.put("media/late.jpg", SMALL)
    assert (await origin.fetch("/media/late.jpg")).status == 404
    assert spy.calls["head"] == 1


@LOCAL
async def test_a_404_is_not_remembered_when_negative_ttl_is_zero(serve, storage):
    origin = await serve(negative_ttl=0)
    assert (await origin.fetch("/media/late.jpg")).status == 404
    await storage.put("media/late.jpg", SMALL)
    assert (await origin.fetch("/media/late.jpg")).body == SMALL


# -- failures -----------------------------------------------------------------------------


async def test_storage_down_gives_503_with_retry_after_and_no_store(serve, storage):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve()
    origin.spy().failure = StorageUnavailable
    reply = await origin.fetch("/media/photo.jpg")
    assert reply.status == 503
    assert int(reply.headers["Retry-After"]) > 0
    assert reply.headers["Cache-Control"] == "no-store"


async def test_a_cached_object_is_served_while_storage_is_down_within_stale_if_error(
    serve, storage
):
    await storage.put("media/photo.jpg", SMALL)
    await storage.put("media/big.bin", LARGE)
    origin = await serve(settings={"meta_cache_ttl": 0})  # metadata is stale at once
    spy = origin.spy()
    assert (await origin.fetch("/media/photo.jpg")).body == SMALL
    assert (await origin.fetch("/media/big.bin")).body == LARGE
    spy.failure = StorageUnavailable
    assert (await origin.fetch("/media/photo.jpg")).body == SMALL
    assert (await origin.fetch("/media/big.bin")).status == 503  # its body is not in memory
    assert (await origin.fetch("/media/never-seen.jpg")).status == 503
    spy.failure = None
    heads = spy.calls["head"]
    assert (await origin.fetch("/media/big.bin")).body == LARGE
    assert spy.calls["head"] == heads + 1


async def test_past_stale_if_error_storage_down_is_503_until_it_recovers(serve, storage):
    await storage.put("media/photo.jpg", SMALL)
    origin = await serve(stale_if_error=0, settings={"meta_cache_ttl": 0})
    spy = origin.spy()
    assert (await origin.fetch("/media/photo.jpg")).status == 200
    spy.failure = StorageUnavailable
    assert (await origin.fetch("/media/photo.jpg")).status == 503
    spy.failure = None
    assert (await origin.fetch("/media/photo.jpg")).body == SMALL


HUGE = random.Random(13).randbytes(8 * 1024 * 1024)


async def slow_reader(origin: Served, path: str) -> tuple[asyncio.StreamReader, Any]:
    """A raw HTTP/1.1 client with a tiny receive buffer that has read the headers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (origin.client.host, origin.client.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: origin.test\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return reader, writer


def open_paths() -> set[str]:
    paths = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            paths.add(os.readlink(f"/proc/self/fd/{fd}"))
    return paths


async def eventually(check: Callable[[], bool], within: float = 5.0) -> bool:
    """Whether ``check`` comes true within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def streaming_released(spy: StorageSpy, backend: Backend, key: str) -> Callable[[], bool]:
    """Whether every body the origin opened for ``key`` has been closed."""
    if backend.is_s3:
        return lambda: len(spy.streams) == spy.closed_streams
    assert backend.root is not None
    path = os.path.realpath(backend.root / key)
    return lambda: all(f.closed for f in spy.files) and path not in open_paths()


async def test_a_client_that_hangs_up_mid_stream_releases_the_storage_stream(
    serve, storage, backend
):
    await storage.put("media/huge.bin", HUGE)
    origin = await serve()
    spy = origin.spy()
    released = streaming_released(spy, backend, "media/huge.bin")
    reader, writer = await slow_reader(origin, "/media/huge.bin")
    assert await reader.readexactly(4096) == HUGE[:4096]
    assert spy.reads == 1
    assert not released()  # still streaming
    writer.transport.abort()
    assert await eventually(released)
    sent = (await origin.metrics()).get(
        ("offload_bytes_sent_total", frozenset({("site", "blog")})), 0
    )  # no series yet when not one slice was sent whole
    assert sent < len(HUGE)


async def test_a_client_that_stops_reading_is_dropped_after_client_timeout(serve, storage, backend):
    await storage.put("media/huge.bin", HUGE)
    origin = await serve(settings={"client_timeout": 0.3})
    spy = origin.spy()
    released = streaming_released(spy, backend, "media/huge.bin")
    reader, writer = await slow_reader(origin, "/media/huge.bin")
    try:
        assert await reader.readexactly(4096) == HUGE[:4096]
        assert not released()
        assert await eventually(released)  # while this client still holds the connection
    finally:
        writer.transport.abort()


# -- metrics ------------------------------------------------------------------------------


@LOCAL
async def test_metrics_count_requests_caches_storage_time_and_bytes(serve, storage):
    await storage.put("media/photo.jpg", SMALL)
    await storage.put("media/big.bin", LARGE)
    origin = await serve()
    for path in ("/media/photo.jpg", "/media/photo.jpg", "/media/big.bin", "/media/no.jpg"):
        await origin.fetch(path)
    await origin.fetch("/media/no.jpg")
    metrics = await origin.metrics()

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, frozenset(labels.items())), 0)

    assert value("offload_requests_total", site="blog", status="200") == 3
    assert value("offload_requests_total", site="blog", status="404") == 2
    assert value("offload_cache_hits_total", cache="meta") == 1
    assert value("offload_cache_misses_total", cache="meta") == 3
    assert value("offload_cache_hits_total", cache="negative") == 1
    assert value("offload_cache_hits_total", cache="body") == 1
    assert value("offload_cache_misses_total", cache="body") == 1
    assert value("offload_storage_seconds_count", operation="head") == 3
    assert value("offload_storage_seconds_count", operation="get") == 1  # the small body
    assert value("offload_storage_seconds_bucket", operation="head", le="+Inf") == 3
    assert value("offload_bytes_sent_total", site="blog") == 2 * len(SMALL) + len(LARGE)
    assert value("offload_request_seconds_count") == 5


# -- every kind of response, linted ---------------------------------------------------


async def test_every_kind_of_response_passes_httplint(serve, storage):
    await storage.put("media/photo.jpg", SMALL)
    await storage.put("media/big.bin", LARGE)
    await storage.put("private/report.pdf", SMALL)
    origin = await serve(
        cors_origins=(A,), signed_prefixes=("private",), signing_secret=Secret(SIGNING_SECRET)
    )
    etag = (await origin.fetch("/media/photo.jpg", "HEAD")).headers["ETag"]
    kinds = [
        ("200 from memory", "GET", "/media/photo.jpg", {}, 200),
        ("200 streamed", "GET", "/media/big.bin", {}, 200),
        ("HEAD", "HEAD", "/media/big.bin", {}, 200),
        ("200 with CORS", "GET", "/media/photo.jpg", {"Origin": A}, 200),
        ("206 from memory", "GET", "/media/photo.jpg", {"Range": "bytes=0-99"}, 206),
        ("206 streamed", "GET", "/media/big.bin", {"Range": "bytes=1000-"}, 206),
        ("206 multipart", "GET", "/media/photo.jpg", {"Range": "bytes=0-9,20-29"}, 206),
        ("304", "GET", "/media/photo.jpg", {"If-None-Match": etag}, 304),
        ("400", "GET", "/media/%2E%2E/photo.jpg", {}, 400),
        ("403", "GET", "/private/report.pdf", {}, 403),
        ("404", "GET", "/media/missing.jpg", {}, 404),
        ("405", "POST", "/media/photo.jpg", {}, 405),
        ("412", "GET", "/media/photo.jpg", {"If-Match": '"other"'}, 412),
        ("416", "GET", "/media/photo.jpg", {"Range": "bytes=999999-"}, 416),
        ("OPTIONS", "OPTIONS", "/media/photo.jpg", {}, 204),
        (
            "preflight",
            "OPTIONS",
            "/media/photo.jpg",
            {"Origin": A, "Access-Control-Request-Method": "GET"},
            204,
        ),
        ("preflight refused", "OPTIONS", "/media/photo.jpg",
         {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}, 403),
    ]  # fmt: skip
    statuses, problems = {}, {}
    for kind, method, path, headers, _ in kinds:
        reply = await origin.fetch(path, method, headers, lint=False)
        statuses[kind], problems[kind] = reply.status, reply.problems
    origin.spy().failure = StorageUnavailable
    reply = await origin.fetch("/media/never-seen.jpg", lint=False)
    statuses["503"], problems["503"] = reply.status, reply.problems
    assert statuses == {kind: status for kind, *_, status in kinds} | {"503": 503}
    assert {kind: found for kind, found in problems.items() if found} == {}

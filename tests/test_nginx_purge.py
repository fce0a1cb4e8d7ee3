"""Purging the shipped nginx front: NginxProvider against a real nginx with the purge module.

nginx runs nginx/offload.conf (tests/nginx_server.py says what is adapted: ports
and paths only, the purge server's allow list as shipped) in front of a real
``offload serve`` over a local folder. Objects are asked for through nginx until
its ``X-Cache-Status`` says HIT; then NginxProvider purges them, and the next
request must be a MISS; and end to end, with the server's own purge drain, an
object deleted by the deletion webhook is a MISS (then offload's 404) as soon as
the webhook has answered. Never skipped: .ci/run installs nginx and Debian's
``libnginx-mod-http-cache-purge``.

The answers nginx never gives on loopback (429, 5xx, a dead port) are checked
against a small aiohttp server at the end.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from offload.config.loading import load_settings
from offload.config.settings import Site
from offload.http.signing import signed_request_headers
from offload.manifest import PurgeItem
from offload.purge.providers.base import PurgeRefused, PurgeRetry
from offload.purge.providers.nginx import BATCH_ITEMS, NginxProvider
from tests.helpers import free_port
from tests.nginx_server import SERVER_NAME, NginxServer, nginx_binary, purge_module

pytestmark = pytest.mark.nginx

SECRET = "nginx-purge-test-origin-secret-0123456789"
WEBHOOK_SECRET = "nginx-purge-test-webhook-secret-0123456789"
CDN = "https://cdn.example.com"
SITE = "media"
SMALL = 4096


# -- the two servers -------------------------------------------------------------------


@dataclass
class Stack:
    """offload serve on a folder, nginx in front of it, and the site as offload reads it."""

    front: NginxServer
    origin_port: int
    bucket: Path
    uploads: Path
    site: Site
    tls: ssl.SSLContext

    def put(self, key: str) -> bytes:
        data = os.urandom(SMALL)
        path = self.bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def get(self, key: str, host: str = SERVER_NAME) -> tuple[int, str | None, bytes]:
        """GET ``/key`` (percent-encoded as offload writes CDN URLs) through nginx."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.front.https_port, timeout=10, context=self.tls
        )
        try:
            connection.request("GET", "/" + quote(key, safe="/"), headers={"Host": host})
            response = connection.getresponse()
            return response.status, response.headers.get("X-Cache-Status"), response.read()
        finally:
            connection.close()

    def cached(self, key: str, host: str = SERVER_NAME) -> bytes:
        """Ask until nginx answers from its cache; return the body."""
        first = self.get(key, host)
        second = self.get(key, host)
        assert (first[0], first[1]) == (200, "MISS"), first[:2]
        assert (second[0], second[1], second[2]) == (200, "HIT", first[2])
        return second[2]

    def url(self, key: str) -> str:
        """The CDN URL offload gives for ``key`` (Offloader.cdn_url)."""
        return f"{CDN}/{quote(key, safe='/')}"

    def webhook(self, kind: str, files: list[str]) -> tuple[int, dict]:
        """A signed ``uploads`` or ``deletions`` webhook straight to offload."""
        target = f"/_offload/{SITE}/{kind}"
        body = json.dumps({"files": files}).encode()
        headers = {
            "Content-Type": "application/json",
            **signed_request_headers(WEBHOOK_SECRET, "POST", target, body),
        }
        connection = http.client.HTTPConnection("127.0.0.1", self.origin_port, timeout=30)
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()


def _start_origin(home: Path, port: int) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    command = [sys.executable, "-m", "offload", "serve", "--config", home / "offload.toml"]
    with (home / "offload.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=home,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"offload serve exited:\n{(home / 'offload.log').read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/_offload/health")
            connection.getresponse().read()
            connection.close()
            return process
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("offload serve did not listen") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = nginx_binary()
    if binary is None:
        pytest.fail("nginx is not installed: .ci/run installs it (apt-get install nginx)")
    home = tmp_path_factory.mktemp("purge-origin")
    bucket = home / "bucket"
    bucket.mkdir()
    uploads = home / "uploads"
    uploads.mkdir()
    origin_port = free_port()
    front = NginxServer(
        binary, tmp_path_factory.mktemp("purge-nginx"), origin_port=origin_port, secret=SECRET
    )
    # '*' so that offload also answers nginx's requests for the CDN's host name.
    (home / "offload.toml").write_text(
        f"[sites.{SITE}]\n"
        f'storage = "{bucket.as_uri()}"\n'
        f'hostnames = ["{SERVER_NAME}", "*"]\n'
        f'cdn_url = "{CDN}"\n'
        f'origin_secret = "{SECRET}"\n'
        f'uploads_dir = "{uploads}"\n'
        f'webhook_secret = "{WEBHOOK_SECRET}"\n'
        'purge = "nginx"\n'
        f'nginx_purge_url = "{front.purge_url}"\n'
    )
    site = load_settings(home / "offload.toml", {}).sites[SITE]
    process = _start_origin(home, origin_port)
    try:
        front.prepare()
        front.start()
        try:
            tls = ssl.create_default_context(cafile=str(front.ca_file))
            yield Stack(front, origin_port, bucket, uploads, site, tls)
        finally:
            front.stop()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def purge(site: Site, *items: PurgeItem, source: str | None = None) -> None:
    """Prepare and send ``items`` as the drain does, from ``source`` when given."""

    async def run() -> None:
        connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            provider = NginxProvider(site, session)
            try:
                for batch in provider.prepare(list(items)):
                    await provider.send(batch)
            finally:
                await provider.close()

    asyncio.run(run())


def url_item(url: str) -> PurgeItem:
    return PurgeItem(SITE, "url", url)


def supports_partial_keys() -> bool:
    """Whether the installed module purges keys ending in '*' (nginx-modules' 2.5 fork)."""
    return b"partial" in purge_module().read_bytes()


# -- against the real nginx ----------------------------------------------------------


def test_a_purged_url_is_a_miss_on_the_next_request(stack: Stack) -> None:
    data = stack.put("plain/photo.jpg")
    stack.cached("plain/photo.jpg")

    purge(stack.site, url_item(stack.url("plain/photo.jpg")))

    assert stack.get("plain/photo.jpg") == (200, "MISS", data)
    assert stack.get("plain/photo.jpg")[1] == "HIT"


def test_a_purge_finds_keys_with_spaces_and_utf8_as_the_cdn_sent_them(stack: Stack) -> None:
    key = "encoded/été photo (1).jpg"
    stack.put(key)
    stack.cached(key)

    purge(stack.site, url_item(stack.url(key)))

    assert stack.get(key)[1] == "MISS"


def test_a_url_is_purged_under_the_cdn_host_and_each_site_hostname(stack: Stack) -> None:
    # nginx as the CDN itself (Host: the CDN's name), and nginx behind a CDN that
    # asks with the origin's name: two cache entries for one object.
    stack.put("hosts/photo.jpg")
    stack.cached("hosts/photo.jpg", host="cdn.example.com")
    stack.cached("hosts/photo.jpg", host=SERVER_NAME)

    purge(stack.site, url_item(stack.url("hosts/photo.jpg")))

    assert stack.get("hosts/photo.jpg", host="cdn.example.com")[1] == "MISS"
    assert stack.get("hosts/photo.jpg", host=SERVER_NAME)[1] == "MISS"


def test_a_purge_of_a_url_nginx_never_cached_succeeds(stack: Stack) -> None:
    purge(stack.site, url_item(stack.url("never/asked.jpg")))  # the module's 404: no error


def test_a_purge_leaves_other_urls_cached(stack: Stack) -> None:
    stack.put("others/a.jpg")
    stack.put("others/b.jpg")
    stack.cached("others/a.jpg")
    stack.cached("others/b.jpg")

    purge(stack.site, url_item(stack.url("others/a.jpg")))

    assert stack.get("others/a.jpg")[1] == "MISS"
    assert stack.get("others/b.jpg")[1] == "HIT"


def test_many_urls_in_several_batches_are_all_purged(stack: Stack) -> None:
    keys = [f"many/{n}.jpg" for n in range(BATCH_ITEMS + 5)]
    for key in keys:
        stack.put(key)
        assert stack.get(key)[1] == "MISS"

    purge(stack.site, *(url_item(stack.url(key)) for key in keys))

    assert {stack.get(key)[1] for key in keys} == {"MISS"}


def test_a_prefix_purge_works_only_where_the_module_supports_partial_keys(stack: Stack) -> None:
    stack.put("prefix/a.jpg")
    stack.cached("prefix/a.jpg")
    item = PurgeItem(SITE, "prefix", "prefix/")

    if supports_partial_keys():
        purge(stack.site, item)
        assert stack.get("prefix/a.jpg")[1] == "MISS"
    else:
        # Debian's build (2.3) takes the '*' literally: refused, never reported as done.
        with pytest.raises(PurgeRefused, match="does not purge by prefix"):
            purge(stack.site, item)
        assert stack.get("prefix/a.jpg")[1] == "HIT"


def test_a_purge_from_an_address_not_allowed_is_refused(stack: Stack) -> None:
    # The shipped purge server allows 127.0.0.1 and ::1 only; 127.0.0.2 is loopback
    # too, but not on the list.
    stack.put("denied/photo.jpg")
    stack.cached("denied/photo.jpg")

    with pytest.raises(PurgeRefused, match="403"):
        purge(stack.site, url_item(stack.url("denied/photo.jpg")), source="127.0.0.2")

    assert stack.get("denied/photo.jpg")[1] == "HIT"
    entries = [e for e in stack.front.log_entries() if "/_offload/purge/" in e["request"]]
    assert any(e["remote_addr"] == "127.0.0.2" and e["status"] == 403 for e in entries)


def test_the_purge_server_answers_only_purge(stack: Stack) -> None:
    stack.put("method/photo.jpg")
    stack.cached("method/photo.jpg")
    connection = http.client.HTTPConnection("127.0.0.1", stack.front.purge_port, timeout=10)
    try:
        connection.request("GET", f"/_offload/purge/{SERVER_NAME}/method/photo.jpg")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()

    assert response.status == 405
    assert response.headers["Allow"] == "PURGE"
    assert stack.get("method/photo.jpg")[1] == "HIT"


def test_a_deleted_key_is_a_miss_then_404_right_after_the_deletion_webhook(stack: Stack) -> None:
    # The whole path: the deletion webhook removes the object and its manifest row,
    # with the URL's purge in the outbox in the same transaction; the server's drain
    # sends it through NginxProvider, and the webhook answers once it is sent.
    photo = stack.uploads / "2024" / "05" / "gone.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(os.urandom(SMALL))
    status, answer = stack.webhook("uploads", ["2024/05/gone.jpg"])
    assert status == 200, answer
    stack.cached("2024/05/gone.jpg")  # through the origin's host name, as a CDN asks
    stack.cached("2024/05/gone.jpg", host="cdn.example.com")  # and as the CDN itself

    status, answer = stack.webhook("deletions", ["2024/05/gone.jpg"])
    assert status == 200, answer

    after = stack.get("2024/05/gone.jpg")
    assert (after[0], after[1]) == (404, "MISS")
    assert stack.get("2024/05/gone.jpg", host="cdn.example.com")[:2] == (404, "MISS")


# -- what the provider makes of items ------------------------------------------------


def site(**settings: object) -> Site:
    values: dict[str, object] = {
        "name": SITE,
        "storage": "file:///tmp/bucket",
        "hostnames": ("origin.example.com", "*"),
        "cdn_url": CDN,
        "purge": "nginx",
        "nginx_purge_url": "http://127.0.0.1:8081/_offload/purge",
    }
    values.update(settings)
    return Site(**values)  # type: ignore[arg-type]


def keys_of(provider: NginxProvider, item: PurgeItem) -> list[str]:
    return [target.describe() for target in provider.targets(item)]


async def test_items_become_cache_keys_under_every_host() -> None:
    async with aiohttp.ClientSession() as session:
        provider = NginxProvider(site(), session)
        assert keys_of(provider, url_item(f"{CDN}/a/b%20c.jpg")) == [
            "cdn.example.com/a/b%20c.jpg",
            "origin.example.com/a/b%20c.jpg",
        ]
        assert keys_of(provider, url_item("https://origin.example.com/x.jpg?v=2")) == [
            "origin.example.com/x.jpg?v=2"
        ]
        assert keys_of(provider, PurgeItem(SITE, "prefix", "2024/05/")) == [
            "cdn.example.com/2024/05/*",
            "origin.example.com/2024/05/*",
        ]
        assert keys_of(provider, PurgeItem(SITE, "everything", "")) == [
            "cdn.example.com/*",
            "origin.example.com/*",
        ]
        assert keys_of(provider, PurgeItem(SITE, "tag", f"{SITE}:2024/05")) == [
            "cdn.example.com/2024/05/*",
            "origin.example.com/2024/05/*",
        ]
        assert keys_of(provider, PurgeItem(SITE, "tag", SITE)) == [
            "cdn.example.com/*",
            "origin.example.com/*",
        ]


async def test_prepare_merges_duplicates_and_sets_refusable_items_apart() -> None:
    async with aiohttp.ClientSession() as session:
        provider = NginxProvider(site(), session)
        urls = [url_item(f"{CDN}/k/{n}.jpg") for n in range(BATCH_ITEMS + 1)]
        prefix = PurgeItem(SITE, "prefix", "k/")
        bad = url_item("not a url")

        batches = provider.prepare([*urls, urls[0], prefix, bad, prefix])

        assert batches == [urls[:BATCH_ITEMS], urls[BATCH_ITEMS:], [prefix], [bad]]


async def test_a_site_without_a_purge_url_is_a_clear_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="nginx_purge_url"):
            NginxProvider(site(nginx_purge_url=""), session)


# -- answers the shipped nginx never gives on loopback -----------------------------


async def answering(aiohttp_server, status: int, headers: dict[str, str] | None = None):
    """A purge server that answers every PURGE with ``status``; returns its URL and log."""
    seen: list[tuple[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.raw_path))
        return web.Response(status=status, headers=headers or {}, text="answer")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/_offload/purge", seen


@pytest.mark.parametrize("status", [200, 404, 412])
async def test_a_url_purge_succeeds_when_nginx_deleted_it_or_never_had_it(
    aiohttp_server, status: int
) -> None:
    url, seen = await answering(aiohttp_server, status)
    async with aiohttp.ClientSession() as session:
        provider = NginxProvider(site(nginx_purge_url=url), session)
        await provider.send([url_item(f"{CDN}/a/b%20c.jpg")])

    assert sorted(seen) == [
        ("PURGE", "/_offload/purge/cdn.example.com/a/b%20c.jpg"),
        ("PURGE", "/_offload/purge/origin.example.com/a/b%20c.jpg"),
    ]


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, PurgeRetry, 7.0),
        (502, {}, PurgeRetry, None),
        (503, {"Retry-After": "30"}, PurgeRetry, 30.0),
        (403, {}, PurgeRefused, None),
        (405, {}, PurgeRefused, None),
        (400, {}, PurgeRefused, None),
    ],
)
async def test_failed_purges_are_retried_or_refused_by_status(
    aiohttp_server, status: int, headers: dict[str, str], error: type, retry_after: float | None
) -> None:
    url, _ = await answering(aiohttp_server, status, headers)
    async with aiohttp.ClientSession() as session:
        provider = NginxProvider(site(nginx_purge_url=url), session)
        with pytest.raises(error, match=str(status)) as caught:
            await provider.send([url_item(f"{CDN}/a.jpg")])

    if error is PurgeRetry:
        assert caught.value.retry_after == retry_after


async def test_a_wildcard_purge_answered_404_is_refused_not_reported_done(aiohttp_server) -> None:
    url, _ = await answering(aiohttp_server, 404)
    async with aiohttp.ClientSession() as session:
        provider = NginxProvider(site(nginx_purge_url=url), session)
        with pytest.raises(PurgeRefused, match="does not purge by prefix"):
            await provider.send([PurgeItem(SITE, "everything", "")])


async def test_a_purge_server_that_is_down_means_retry_and_the_password_stays_out() -> None:
    url = f"http://purger:hunter2-secret@127.0.0.1:{free_port()}/_offload/purge"
    async with aiohttp.ClientSession() as session:
        provider = NginxProvider(site(nginx_purge_url=url), session)
        with pytest.raises(PurgeRetry) as caught:
            await provider.send([url_item(f"{CDN}/a.jpg")])

    assert "hunter2-secret" not in str(caught.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in str(caught.value)

"""The shipped nginx front (nginx/offload.conf) in front of a real ``offload serve``.

Both run as processes on loopback ports; tests/nginx_server.py says how the
shipped file is adapted (ports, upstream, secret and file locations only).
Without nginx the module is skipped on a workstation, and fails in CI (``CI``
set), where .ci/run installs it.

Each test asks for its own objects, so the tests share the two servers without
sharing cache entries.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.nginx_server import SERVER_NAME, NginxServer, nginx_binary

NGINX = nginx_binary()
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
SECRET = "nginx-test-origin-secret-0123456789abcdef"
SMALL = 20 * 1024
LARGE = 1024 * 1024

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.skipif(
        NGINX is None and not IN_CI,
        reason="nginx is not installed (apt-get install nginx); in CI this fails instead",
    ),
]


# -- clients -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def cache(self) -> str | None:
        return self.headers.get("X-Cache-Status")


def request(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    *,
    tls: ssl.SSLContext | None = None,
    source: str = "127.0.0.1",
) -> Reply:
    """One request on a fresh connection; ``Host`` is the shipped server_name unless given."""
    address = (source, 0)
    connection: http.client.HTTPConnection
    if tls is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, 10, address)
    else:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, source_address=address, context=tls
        )
    try:
        connection.request(method, path, headers={"Host": SERVER_NAME, **(headers or {})})
        response = connection.getresponse()
        return Reply(response.status, response.msg, response.read())
    finally:
        connection.close()


# -- the two servers -----------------------------------------------------------------


@dataclass
class Origin:
    """``offload serve`` on a free loopback port, over a folder as the bucket."""

    port: int
    bucket: Path
    log: Path

    def put(self, key: str, size: int) -> bytes:
        """Write an object as a plain file in the bucket folder; return its bytes."""
        data = os.urandom(size)
        path = self.bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        """Straight to offload, around nginx."""
        return request(self.port, path, headers=headers)


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"offload serve exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            request(port, "/_offload/health")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"offload serve did not listen:\n{log.read_text()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    home = tmp_path_factory.mktemp("origin")
    bucket = home / "bucket"
    bucket.mkdir()
    config = home / "offload.toml"
    # max_age = 1: objects expire in nginx's cache within two seconds. The access
    # log shows which requests reached offload and what it answered.
    config.write_text(
        "access_log = true\n\n"
        "[sites.media]\n"
        f'storage = "{bucket.as_uri()}"\n'
        'hostnames = ["*"]\n'
        f'origin_secret = "{SECRET}"\n'
        "max_age = 1\n"
    )
    port = free_port()
    log = home / "offload.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "offload", "serve", "--config", config, "--port", str(port)],
            cwd=home,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_listening(process, port, log)
        yield Origin(port=port, bucket=bucket, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    if NGINX is None:
        pytest.fail("nginx is not installed, and CI is set: .ci/run installs it with apt-get")
    return NGINX


@pytest.fixture(scope="module")
def front(
    nginx_bin: str, origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxServer]:
    server = NginxServer(
        nginx_bin, tmp_path_factory.mktemp("nginx"), origin_port=origin.port, secret=SECRET
    )
    server.prepare()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls(front: NginxServer) -> ssl.SSLContext:
    """A client context that trusts the test certificate, and only it."""
    return ssl.create_default_context(cafile=str(front.ca_file))


@pytest.fixture
def via_nginx(front: NginxServer, tls: ssl.SSLContext):
    def get(path: str, headers: dict[str, str] | None = None, **options) -> Reply:
        return request(front.https_port, path, headers=headers, tls=tls, **options)

    return get


def wait_for_log(front: NginxServer, predicate, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for entry in front.log_entries():
            if predicate(entry):
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no such entry in nginx's log: {front.log_entries()}")
        time.sleep(0.05)


# -- the config itself ---------------------------------------------------------------


def test_the_shipped_config_passes_nginx_t(nginx_bin: str, tmp_path: Path) -> None:
    server = NginxServer(nginx_bin, tmp_path, origin_port=free_port(), secret=SECRET)
    server.prepare()
    result = server.check()
    output = result.stderr + result.stdout
    assert result.returncode == 0, output
    assert "test is successful" in output
    # nginx 1.25.1+ deprecates `listen ... http2` (kept for 1.22); nothing else may warn.
    warnings = [
        line for line in output.splitlines() if "[warn]" in line and "listen ... http2" not in line
    ]
    assert warnings == []


# -- what the issue asks for ---------------------------------------------------------


def test_the_second_request_is_a_hit(origin: Origin, via_nginx) -> None:
    data = origin.put("hit/photo.jpg", SMALL)

    first = via_nginx("/hit/photo.jpg")
    second = via_nginx("/hit/photo.jpg")

    assert (first.status, first.cache, first.body) == (200, "MISS", data)
    assert (second.status, second.cache, second.body) == (200, "HIT", data)
    assert second.headers["ETag"] == first.headers["ETag"]


def test_the_origins_cache_control_passes_through_unchanged(origin: Origin, via_nginx) -> None:
    origin.put("policy/photo.jpg", SMALL)
    direct = origin.get("/policy/photo.jpg", {"X-Origin-Secret": SECRET})

    through = via_nginx("/policy/photo.jpg")

    assert "max-age=1" in direct.headers["Cache-Control"]
    for name in ("Cache-Control", "ETag", "Last-Modified", "Content-Type"):
        assert through.headers[name] == direct.headers[name], name


def test_after_expiry_nginx_revalidates_and_offload_answers_304(
    origin: Origin, front: NginxServer, via_nginx
) -> None:
    data = origin.put("revalidate/photo.jpg", SMALL)
    assert via_nginx("/revalidate/photo.jpg").cache == "MISS"

    # max-age=1: within about two seconds the copy is stale. nginx then answers with it
    # at once (use_stale updating) and revalidates in a background subrequest.
    deadline = time.monotonic() + 5
    while (stale := via_nginx("/revalidate/photo.jpg")).cache == "HIT":
        assert time.monotonic() < deadline, "the object never expired in nginx's cache"
        time.sleep(0.2)
    assert (stale.status, stale.cache, stale.body) == (200, "STALE", data)

    # The background request carried the cached validators (offload answers 304 to
    # nothing else), and nginx kept its body.
    wait_for_log(
        front,
        lambda e: (
            "/revalidate/photo.jpg" in e["request"]
            and e["upstream_status"] == "304"
            and e["cache"] == "REVALIDATED"
        ),
    )
    # offload's own access log (aiohttp's format) says the same.
    deadline = time.monotonic() + 5
    while '"GET /revalidate/photo.jpg HTTP/1.1" 304 ' not in origin.log.read_text():
        assert time.monotonic() < deadline, "offload's log shows no 304"
        time.sleep(0.05)
    again = via_nginx("/revalidate/photo.jpg")
    assert (again.status, again.cache, again.body) == (200, "HIT", data)


def test_a_range_passes_through_on_a_miss_and_from_the_cache(origin: Origin, via_nginx) -> None:
    data = origin.put("range/clip.mp4", LARGE)

    cold = via_nginx("/range/clip.mp4", {"Range": "bytes=1000-1999"})
    warm = via_nginx("/range/clip.mp4", {"Range": "bytes=-100"})

    assert (cold.status, cold.cache) == (206, "MISS")
    assert cold.headers["Content-Range"] == f"bytes 1000-1999/{LARGE}"
    assert cold.body == data[1000:2000]
    assert (warm.status, warm.cache) == (206, "HIT")
    assert warm.headers["Content-Range"] == f"bytes {LARGE - 100}-{LARGE - 1}/{LARGE}"
    assert warm.body == data[-100:]


def test_ranges_from_a_cached_object_follow_rfc_9110(origin: Origin, via_nginx) -> None:
    data = origin.put("ranges/clip.mp4", LARGE)
    etag = via_nginx("/ranges/clip.mp4").headers["ETag"]

    beyond = via_nginx("/ranges/clip.mp4", {"Range": f"bytes={LARGE}-"})
    matching = via_nginx("/ranges/clip.mp4", {"Range": "bytes=0-9", "If-Range": etag})
    changed = via_nginx("/ranges/clip.mp4", {"Range": "bytes=0-9", "If-Range": '"other"'})
    several = via_nginx("/ranges/clip.mp4", {"Range": "bytes=0-9,100-109"})

    assert beyond.status == 416
    assert beyond.headers["Content-Range"] == f"bytes */{LARGE}"
    assert (matching.status, matching.body) == (206, data[:10])
    assert (changed.status, changed.body) == (200, data)
    assert several.status == 206
    assert several.headers["Content-Type"].startswith("multipart/byteranges")
    assert data[:10] in several.body
    assert data[100:110] in several.body


def test_offload_refuses_requests_without_the_secret_that_nginx_adds(
    origin: Origin, via_nginx
) -> None:
    data = origin.put("secret/photo.jpg", SMALL)

    assert origin.get("/secret/photo.jpg").status == 403
    assert origin.get("/secret/photo.jpg", {"X-Origin-Secret": "guess"}).status == 403
    # A client's own header is replaced, not passed on.
    through = via_nginx("/secret/photo.jpg", {"X-Origin-Secret": "guess"})
    assert (through.status, through.body) == (200, data)


# -- the rest of the front -----------------------------------------------------------


def test_head_is_answered_from_the_cached_get(origin: Origin, via_nginx) -> None:
    origin.put("head/photo.jpg", SMALL)
    assert via_nginx("/head/photo.jpg").cache == "MISS"

    head = via_nginx("/head/photo.jpg", method="HEAD")

    assert (head.status, head.cache, head.body) == (200, "HIT", b"")
    assert head.headers["Content-Length"] == str(SMALL)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_from_nginx(front: NginxServer, origin: Origin, via_nginx, method):
    origin.put(f"methods/{method}.jpg", SMALL)

    reply = via_nginx(f"/methods/{method}.jpg", method=method)

    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD, OPTIONS"
    entry = wait_for_log(front, lambda e: e["request"].startswith(f"{method} /methods/"))
    assert entry["upstream_addr"] == ""  # offload never saw it


def test_a_404_is_cached_briefly(via_nginx) -> None:
    first = via_nginx("/missing/photo.jpg")
    second = via_nginx("/missing/photo.jpg")

    assert (first.status, first.cache) == (404, "MISS")
    assert (second.status, second.cache) == (404, "HIT")


def test_health_is_public_and_never_cached(front: NginxServer, via_nginx) -> None:
    reply = via_nginx("/_offload/health", source="127.0.0.2")

    assert reply.status == 200
    assert reply.cache is None


def test_other_offload_paths_answer_only_the_allowed_addresses(
    front: NginxServer, via_nginx
) -> None:
    refused = via_nginx("/_offload/metrics", source="127.0.0.2")
    allowed = via_nginx("/_offload/metrics")

    assert refused.status == 403
    assert allowed.status != 403
    entry = wait_for_log(
        front, lambda e: "/_offload/metrics" in e["request"] and e["remote_addr"] == "127.0.0.1"
    )
    assert entry["upstream_addr"] != ""  # passed on to offload


def test_port_80_redirects_to_https(front: NginxServer) -> None:
    reply = request(front.http_port, "/img/photo.jpg?w=1")

    assert reply.status == 301
    assert reply.headers["Location"] == f"https://{SERVER_NAME}/img/photo.jpg?w=1"


def test_tls_offers_http2(front: NginxServer) -> None:
    tls = ssl.create_default_context(cafile=str(front.ca_file))
    tls.set_alpn_protocols(["h2", "http/1.1"])

    with (
        socket.create_connection(("127.0.0.1", front.https_port), timeout=10) as raw,
        tls.wrap_socket(raw, server_hostname=SERVER_NAME) as connection,
    ):
        assert connection.selected_alpn_protocol() == "h2"

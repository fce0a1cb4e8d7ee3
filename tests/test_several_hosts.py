"""Two ``offload serve`` hosts sharing one PostgreSQL manifest and one bucket.

Real parts throughout: a PostgreSQL server (tests/postgres_server.py), an
``rclone serve s3`` bucket, two ``offload serve`` processes on two ports with
the same configuration, and a fake Cloudflare purge API (tests/fake_cdns.py)
that both hosts purge through.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from offload.http.signing import signed_request_headers
from offload.manifest import open_manifest
from tests.fake_cdns import FakeCloudflare, ThreadedFake
from tests.helpers import ADMIN_TOKEN, free_port, wait_for_port
from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY

pytestmark = pytest.mark.rclone

SECRET = "several-hosts-webhook-secret-0123456789abcdef"
TOKEN = "cloudflare-token-for-several-hosts-0123456789"
ZONE = "0123456789abcdef0123456789abcdef"
CDN = "https://cdn.example.com"
FILES = {"2024/05/photo.jpg": b"photo bytes " * 500, "2024/05/photo-300x200.jpg": b"small " * 90}


class Host:
    """One ``offload serve`` process on its own port."""

    def __init__(self, config: Path, environ: dict[str, str]) -> None:
        self.port = free_port()
        self.config, self.environ = config, environ
        self.process = self._start()

    def _start(self) -> subprocess.Popen[str]:
        argv = ["serve", "--config", str(self.config), "--port", str(self.port)]
        process = subprocess.Popen(
            [sys.executable, "-m", "offload", *argv],
            env=self.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_port(self.port, 30)
        except TimeoutError:
            process.kill()
            raise AssertionError(
                f"offload serve did not start: {process.communicate()[1]}"
            ) from None
        return process

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hook(self, hook: str, body: dict) -> tuple[int, dict]:
        raw = json.dumps(body).encode()
        target = f"/_offload/blog/{hook}"
        return self.request(
            "POST", target, raw, signed_request_headers(SECRET, "POST", target, raw)
        )

    def signed_get(self, target: str) -> tuple[int, dict]:
        return self.request("GET", target, b"", signed_request_headers(SECRET, "GET", target))

    def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict]:
        headers = {**headers, "Content-Type": "application/json"}
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.url(target), data=body or None, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def origin(self, key: str) -> int:
        headers = {"Host": "cdn.example.com"}
        request = urllib.request.Request(self.url(f"/{key}"), headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
                answer.read()
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.communicate(timeout=20)[1]
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[1]


@pytest.fixture
def shared(
    tmp_path, postgres_url, rclone_backend
) -> Iterator[tuple[Path, dict[str, str], FakeCloudflare]]:
    """A config both hosts use, their environment, and the fake Cloudflare they purge."""
    fake = FakeCloudflare(token=TOKEN, zone=ZONE)
    uploads = tmp_path / "uploads"
    for path, data in FILES.items():
        (uploads / path).parent.mkdir(parents=True, exist_ok=True)
        (uploads / path).write_bytes(data)
    with ThreadedFake(fake) as served:
        api = served.url()
        config = tmp_path / "offload.toml"
        config.write_text(
            f"""manifest = "{postgres_url}"
meta_cache_ttl = 3600

[sites.blog]
storage = "s3://{rclone_backend.bucket}/several"
endpoint_url = "{rclone_backend.client.meta.endpoint_url}"
addressing_style = "path"
uploads_dir = "{uploads}"
uploads_url = "https://blog.example.com/wp-content/uploads"
prefix = "wp-content/uploads"
cdn_url = "{CDN}"
hostnames = ["cdn.example.com"]
webhook_secret = "{SECRET}"
purge = "cloudflare"
cloudflare_zone_id = "{ZONE}"
cloudflare_api_token = "{TOKEN}"
purge_api_url = "{api}/client/v4"
"""
        )
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "AWS_"))}
        environ.update(
            AWS_ACCESS_KEY_ID=RCLONE_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=RCLONE_SECRET_KEY,
            AWS_DEFAULT_REGION="us-east-1",
            OFFLOAD_ADMIN_TOKEN=ADMIN_TOKEN,
        )
        yield config, environ, fake


@pytest.fixture
def two_hosts(shared) -> Iterator[tuple[Host, Host, FakeCloudflare]]:
    """Two ``offload serve`` processes on the shared configuration, stopped at the end."""
    config, environ, fake = shared
    first = Host(config, environ)
    try:
        second = Host(config, environ)
        try:
            yield first, second, fake
        finally:
            second.stop()
    finally:
        first.stop()


def purged_urls(fake: FakeCloudflare) -> list[str]:
    return [url for accepted in fake.accepted for url in accepted.body.get("files", [])]


def eventually(check, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time allowed")
        time.sleep(0.1)


ATTACHMENT = {"files": sorted(FILES), "original": "2024/05/photo.jpg", "attachment_id": "41"}
KEYS = [f"wp-content/uploads/{path}" for path in sorted(FILES)]


def test_an_upload_through_one_host_is_deleted_through_the_other_and_purged_once(
    two_hosts, rclone_backend
):
    first, second, fake = two_hosts
    status, answer = first.hook("uploads", ATTACHMENT)
    assert status == 200, answer
    assert {item["status"] for item in answer["items"]} == {"uploaded"}
    # Both origins serve the objects (and keep their metadata in memory for an hour).
    for host in (first, second):
        assert [host.origin(key) for key in KEYS] == [200, 200]
    assert purged_urls(fake) == []  # new keys: nothing to purge

    status, answer = second.hook("deletions", {"attachment_id": "41"})
    assert status == 200, answer
    assert sorted(item["key"] for item in answer["items"]) == KEYS
    assert {item["status"] for item in answer["items"]} == {"deleted"}
    listed = rclone_backend.client.list_objects_v2(Bucket=rclone_backend.bucket)
    assert listed.get("KeyCount", 0) == 0

    # Each URL reached the CDN API once, by the time the webhook answered.
    expected = sorted(f"{CDN}/{key}" for key in KEYS)
    assert sorted(purged_urls(fake)) == expected
    # Both origins forget the objects: the deleting one at once, the other from the
    # changes feed (about a second), not after its hour of meta_cache_ttl.
    for host in (second, first):
        eventually(lambda host=host: [host.origin(key) for key in KEYS] == [404, 404])
    time.sleep(1.5)  # both hosts' drains have polled the outbox since
    assert sorted(purged_urls(fake)) == expected  # sent once, not once per host


def test_a_sync_run_started_on_one_host_is_seen_and_not_started_again_on_the_other(two_hosts):
    first, second, _fake = two_hosts
    status, started = first.hook("sync", {"dry_run": True})
    assert status == 202, started
    # Another body (the same one in the same second would be a replay: 409).
    status, again = second.hook("sync", {"dry_run": True, "delete": False})
    assert status == 202, again
    # A run either still going (the same one) or finished (then a new one may start).
    seen = second.signed_get(f"/_offload/blog/sync/{started['id']}")
    assert seen[0] == 200, seen
    assert seen[1]["id"] == started["id"]
    if seen[1]["status"] == "running":
        assert again["id"] == started["id"]
    final = seen[1]
    deadline = time.monotonic() + 20
    while final["status"] == "running" and time.monotonic() < deadline:
        time.sleep(1.1)  # a signed GET is taken once: the same second's would be a replay
        final = second.signed_get(f"/_offload/blog/sync/{started['id']}")[1]
    assert (final["status"], final["exit_code"]) == ("succeeded", 0)


def test_a_webhook_replayed_to_the_other_host_is_refused(two_hosts):
    first, second, _fake = two_hosts
    raw = json.dumps(ATTACHMENT).encode()
    target = "/_offload/blog/uploads"
    headers = signed_request_headers(SECRET, "POST", target, raw)
    assert first.request("POST", target, raw, headers)[0] == 200
    status, answer = second.request("POST", target, raw, headers)
    assert status == 409, answer


def test_shared_replays_take_a_signature_once_across_hosts(postgres_url):
    hosts = [open_manifest(postgres_url), open_manifest(postgres_url)]
    try:
        first, second = (host.shared_replays() for host in hosts)
        assert first is not None
        assert second is not None
        now = time.time()
        assert first.first_use("blog:sig-1", now + 300, now=now)
        assert not second.first_use("blog:sig-1", now + 300, now=now)
        assert second.taken("blog:sig-1", now=now)
        # Once its window is over, the same key may be taken again (a new request).
        assert second.first_use("blog:sig-1", now + 900, now=now + 301)
    finally:
        for host in hosts:
            host.close()


def test_a_purge_interrupted_by_kill_9_is_sent_after_the_restart(shared):
    """The CDN API is down when the deletion comes; the host is killed; after a restart the
    purge goes out: it was in the outbox, written with the deletion."""
    config, environ, fake = shared
    host = Host(config, environ)
    try:
        assert host.hook("uploads", ATTACHMENT)[0] == 200
        fake.fail_next(1000, status=503)
        status, answer = host.hook("deletions", {"attachment_id": "41"})
        assert status == 200, answer  # the deletion is done; its purges wait
        assert purged_urls(fake) == []
        host.stop(signal.SIGKILL)
        fake._failures.clear()
        restarted = Host(config, environ)
        try:
            # The failed try deferred the entries by the first backoff (5 s); the restarted
            # host's drain sends them when they are due.
            eventually(lambda: len(purged_urls(fake)) == len(KEYS), within=20)
            assert sorted(purged_urls(fake)) == sorted(f"{CDN}/{key}" for key in KEYS)
        finally:
            restarted.stop()
    finally:
        host.stop()


def test_two_hosts_taking_the_same_upload_at_once_make_one_row_per_key(two_hosts, postgres_url):
    first, second, fake = two_hosts
    raw = json.dumps(ATTACHMENT).encode()

    def send(host: Host, query: str) -> tuple[int, dict]:
        target = f"/_offload/blog/uploads{query}"  # another query: another signed request
        headers = signed_request_headers(SECRET, "POST", target, raw)
        return host.request("POST", target, raw, headers)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, (first, second), ("?n=1", "?n=2")))
    assert [status for status, _ in answers] == [200, 200], answers
    urls = [sorted(item["url"] for item in answer["items"]) for _, answer in answers]
    assert urls[0] == urls[1] == sorted(f"{CDN}/{key}" for key in KEYS)
    manifest = open_manifest(postgres_url)
    try:
        assert manifest.totals("blog") == (2, sum(len(data) for data in FILES.values()))
    finally:
        manifest.close()
    for host in (first, second):
        assert [host.origin(key) for key in KEYS] == [200, 200]
    assert purged_urls(fake) == []  # the same bytes twice: nothing replaced

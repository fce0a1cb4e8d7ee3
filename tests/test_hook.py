"""The webhooks end to end: signed requests in, objects in the bucket, rows in the manifest.

Each test builds the app for a site whose ``uploads_dir`` is a temporary
folder and whose storage is the ``backend`` fixture (a local folder, moto, and
``rclone serve s3``); tests of request checking that touch no storage run on
the local folder only.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import sign_body, signed_request_headers
from offload.keys import version_segment
from offload.manifest import Manifest
from offload.server.app import create_app
from offload.server.appkeys import MANIFEST, PEER_BODIES, STORAGES
from offload.storage import Storage, StorageUnavailable

LOCAL = pytest.mark.parametrize("backend", ["local"], indirect=True)
SECRET = "webhook-secret-for-tests-0123456789abcdef"
UPLOADS_URL = "https://blog.example.com/wp-content/uploads"
CDN_URL = "https://cdn.example.com"
PREFIX = "wp-content/uploads"
DEFAULT_POLICY = "public, max-age=86400, stale-while-revalidate=86400, stale-if-error=604800"
IMMUTABLE = "public, max-age=31536000, immutable"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wordpress_metadata(attachment_id: int = 42, *, sizes: tuple[str, ...] = ("300x200",)) -> dict:
    """What WordPress stores for a big JPEG it scaled down, with its resized copies."""
    return {
        "width": 2560,
        "height": 1707,
        "file": "2024/05/photo-scaled.jpg",
        "filesize": 123456,
        "sizes": {
            f"size-{size}": {
                "file": f"photo-{size}.jpg",
                "width": 300,
                "height": 200,
                "mime-type": "image/jpeg",
                "filesize": 1000,
            }
            for size in sizes
        },
        "image_meta": {"aperture": "0", "credit": "", "caption": ""},
        "original_image": "photo.jpg",
        "attachment_id": attachment_id,
    }


_REQUEST_NUMBERS = itertools.count(1)


class PutCounter:
    """Counts a storage's PUTs and makes chosen keys fail, by replacing its methods."""

    def __init__(self, storage: Storage) -> None:
        self.puts: Counter[str] = Counter()
        self.failing: set[str] = set()
        self.delay = 0.0
        put = storage.put

        async def counted(key: str, *args: Any, **kwargs: Any) -> Any:
            self.puts[key] += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if key in self.failing:
                raise StorageUnavailable(f"{key}: the storage is made to fail by the test")
            return await put(key, *args, **kwargs)

        storage.put = counted  # type: ignore[method-assign]


@dataclass
class Hooks:
    client: TestClient
    site: Site
    uploads: Path
    storage: Storage
    counter: PutCounter
    manifest: Manifest

    def write(self, path: str, data: bytes) -> Path:
        file = self.uploads / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        return file

    async def post(
        self,
        hook: str,
        body: bytes | Mapping[str, Any],
        *,
        content_type: str = "application/json",
        secret: str = SECRET,
        timestamp: str | None = None,
        headers: Mapping[str, str] | None = None,
        site: str = "blog",
        query: str | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """POST a v2-signed webhook.

        A signed request is taken once, so, as a client resending the same body
        within a second must, each call is made unique by an ``n`` query
        parameter unless ``query`` ("" for none) is given.
        """
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if query is None:
            query = f"n={next(_REQUEST_NUMBERS)}"
        target = f"/_offload/{site}/{hook}" + (f"?{query}" if query else "")
        sent = {
            "Content-Type": content_type,
            **signed_request_headers(secret, "POST", target, raw, timestamp=timestamp),
            **(headers or {}),
        }
        data = io.BytesIO(raw) if len(raw) > 1024 * 1024 else raw  # aiohttp warns of big bytes
        response = await self.client.post(target, data=data, headers=sent)
        text = await response.text()
        try:
            answer: Any = json.loads(text)
        except json.JSONDecodeError:
            answer = text
        return response.status, answer, response.headers

    async def stored(self, key: str) -> tuple[bytes, Any] | None:
        info = await self.storage.head(key)
        if info is None:
            return None
        _info, stream = await self.storage.get(key)
        return await stream.read_all(), info


Start = Callable[..., Awaitable[Hooks]]


@pytest.fixture
def start(aiohttp_client: Any, site_location: dict[str, str], tmp_path: Path) -> Start:
    async def start(settings: Mapping[str, Any] | None = None, **site_options: Any) -> Hooks:
        uploads = tmp_path / "uploads"
        uploads.mkdir(exist_ok=True)
        options = {
            "hostnames": ("*",),
            "prefix": PREFIX,
            "uploads_dir": uploads,
            "uploads_url": UPLOADS_URL,
            "cdn_url": CDN_URL,
            "webhook_secret": Secret(SECRET),
            **site_location,
            **site_options,
        }
        site = Site(name="blog", **options)
        all_settings = {"manifest": tmp_path / "manifest.sqlite3", **(settings or {})}
        app = create_app(Settings(**all_settings, sites={"blog": site}))
        client = await aiohttp_client(app)
        storage = app[STORAGES]["blog"]
        return Hooks(client, site, uploads, storage, PutCounter(storage), app[MANIFEST])

    return start


# -- uploads -------------------------------------------------------------------------


async def test_wordpress_metadata_offloads_the_original_the_scaled_copy_and_every_size(start):
    hooks = await start()
    files = {
        "2024/05/photo.jpg": b"original bytes",
        "2024/05/photo-scaled.jpg": b"scaled bytes",
        "2024/05/photo-300x200.jpg": b"thumbnail bytes",
    }
    for path, data in files.items():
        hooks.write(path, data)
    status, answer, headers = await hooks.post("uploads", wordpress_metadata())
    assert status == 200, answer
    assert headers["Cache-Control"] == "no-store"
    assert answer["site"] == "blog"
    assert [item["path"] for item in answer["items"]] == list(files)
    for item in answer["items"]:
        data = files[item["path"]]
        key = f"{PREFIX}/{item['path']}"
        assert item == {
            "path": item["path"],
            "key": key,
            "url": f"{CDN_URL}/{key}",
            "size": len(data),
            "etag": item["etag"],
            "status": "uploaded",
        }
        body, info = await hooks.stored(key)
        assert body == data
        assert info.etag == item["etag"]
        assert info.content_type == "image/jpeg"
        assert info.cache_control == DEFAULT_POLICY
        mtime_ns = (hooks.uploads / item["path"]).stat().st_mtime_ns
        assert info.metadata == {
            "sha256": sha256(data),
            "source": item["path"],
            "mtime": f"{mtime_ns // 10**9}.{mtime_ns % 10**9:09d}",
            "attachment-id": "42",
        }
    assert answer["urls"] == {
        f"{UPLOADS_URL}/{path}": f"{CDN_URL}/{PREFIX}/{path}" for path in files
    }
    rows = hooks.manifest.rows("blog", attachment_id="42")
    assert {row.path for row in rows} == set(files)
    assert {row.sha256 for row in rows} == {sha256(data) for data in files.values()}


async def test_versioning_puts_every_file_under_the_originals_hash_and_serves_it_immutable(start):
    hooks = await start(versioning=True)
    hooks.write("2024/05/photo.jpg", b"v1 original")
    hooks.write("2024/05/photo-scaled.jpg", b"v1 scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"v1 thumb")
    status, answer, _ = await hooks.post("uploads", wordpress_metadata())
    assert status == 200, answer
    version = version_segment(sha256(b"v1 original"))
    assert [item["key"] for item in answer["items"]] == [
        f"{PREFIX}/2024/05/{version}/photo.jpg",
        f"{PREFIX}/2024/05/{version}/photo-scaled.jpg",
        f"{PREFIX}/2024/05/{version}/photo-300x200.jpg",
    ]
    _body, info = await hooks.stored(answer["items"][2]["key"])
    assert info.cache_control == IMMUTABLE
    served = await hooks.client.get("/" + answer["items"][2]["key"])
    assert served.headers["Cache-Control"] == IMMUTABLE

    # New content under the same name: a new version, hence new URLs.
    hooks.write("2024/05/photo.jpg", b"v2 original")
    hooks.write("2024/05/photo-300x200.jpg", b"v2 thumb")
    status, again, _ = await hooks.post("uploads", wordpress_metadata())
    assert status == 200
    version2 = version_segment(sha256(b"v2 original"))
    assert version2 != version
    assert again["items"][2]["key"] == f"{PREFIX}/2024/05/{version2}/photo-300x200.jpg"
    assert again["urls"][f"{UPLOADS_URL}/2024/05/photo-300x200.jpg"].endswith(
        f"/{version2}/photo-300x200.jpg"
    )
    assert await hooks.stored(answer["items"][2]["key"]) is not None  # the old URL still works
    key = hooks.manifest.key_for("blog", "2024/05/photo-300x200.jpg")
    assert key == f"{PREFIX}/2024/05/{version2}/photo-300x200.jpg"


async def test_the_same_files_offloaded_twice_are_one_put_each_and_then_unchanged(start):
    hooks = await start()
    hooks.write("2024/05/photo.jpg", b"original")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"thumb")
    first = await hooks.post("uploads", wordpress_metadata())
    second = await hooks.post("uploads", wordpress_metadata())
    assert first[0] == second[0] == 200
    assert [item["status"] for item in second[1]["items"]] == ["unchanged"] * 3
    assert [item["etag"] for item in second[1]["items"]] == [
        item["etag"] for item in first[1]["items"]
    ]
    assert second[1]["urls"] == first[1]["urls"]
    assert set(hooks.counter.puts.values()) == {1}


async def test_two_identical_webhooks_at_once_make_one_object_and_the_same_answer(start):
    hooks = await start(versioning=True)
    hooks.write("2024/05/photo.jpg", b"original")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"thumb")
    hooks.counter.delay = 0.2  # both requests are in flight together
    first, second = await asyncio.gather(
        hooks.post("uploads", wordpress_metadata()), hooks.post("uploads", wordpress_metadata())
    )
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert len(hooks.counter.puts) == 3
    assert set(hooks.counter.puts.values()) == {1}


async def test_missing_sizes_are_pending_and_a_later_call_completes_the_set(start):
    hooks = await start()
    hooks.write("2024/05/photo.jpg", b"original")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    metadata = wordpress_metadata(sizes=("300x200", "1024x683"))
    status, answer, _ = await hooks.post("uploads", metadata)
    assert status == 200
    statuses = {item["path"]: item["status"] for item in answer["items"]}
    assert statuses == {
        "2024/05/photo.jpg": "uploaded",
        "2024/05/photo-scaled.jpg": "uploaded",
        "2024/05/photo-300x200.jpg": "pending",
        "2024/05/photo-1024x683.jpg": "pending",
    }
    assert f"{UPLOADS_URL}/2024/05/photo-300x200.jpg" not in answer["urls"]
    hooks.write("2024/05/photo-300x200.jpg", b"thumb")
    hooks.write("2024/05/photo-1024x683.jpg", b"large")
    status, answer, _ = await hooks.post("uploads", metadata)
    assert [item["status"] for item in answer["items"]] == [
        "unchanged",
        "unchanged",
        "uploaded",
        "uploaded",
    ]
    assert len(answer["urls"]) == 4


async def test_with_versioning_everything_waits_for_the_original(start):
    hooks = await start(versioning=True)
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    status, answer, _ = await hooks.post("uploads", wordpress_metadata())
    assert status == 200
    assert {item["status"] for item in answer["items"]} == {"pending"}
    assert not hooks.counter.puts


async def test_a_rest_media_object_offloads_its_source_url_and_sizes(start):
    hooks = await start()
    hooks.write("2024/05/café.jpg", b"main")
    hooks.write("2024/05/café-150x150.jpg", b"thumb")
    media = {
        "id": 7,
        "source_url": f"{UPLOADS_URL}/2024/05/caf%C3%A9.jpg",
        "media_details": {
            "file": "2024/05/café.jpg",
            "sizes": {
                "thumbnail": {"source_url": f"{UPLOADS_URL}/2024/05/caf%C3%A9-150x150.jpg"},
                "full": {"source_url": f"{UPLOADS_URL}/2024/05/caf%C3%A9.jpg"},
            },
        },
    }
    status, answer, _ = await hooks.post("uploads", media)
    assert status == 200, answer
    assert [(item["path"], item["status"]) for item in answer["items"]] == [
        ("2024/05/café.jpg", "uploaded"),
        ("2024/05/café-150x150.jpg", "uploaded"),
    ]
    assert answer["items"][1]["url"] == f"{CDN_URL}/{PREFIX}/2024/05/caf%C3%A9-150x150.jpg"
    assert hooks.manifest.rows("blog", attachment_id="7")


async def test_generic_files_each_get_their_own_version(start):
    hooks = await start(versioning=True)
    hooks.write("docs/a.pdf", b"a")
    hooks.write("docs/b.pdf", b"b")
    status, answer, _ = await hooks.post("uploads", {"files": ["docs/a.pdf", "docs/b.pdf"]})
    assert status == 200
    assert [item["key"] for item in answer["items"]] == [
        f"{PREFIX}/docs/{version_segment(sha256(b'a'))}/a.pdf",
        f"{PREFIX}/docs/{version_segment(sha256(b'b'))}/b.pdf",
    ]
    _body, info = await hooks.stored(answer["items"][0]["key"])
    assert info.content_type == "application/pdf"


def encode_form(*parts: tuple[str, str | bytes, str | None]) -> tuple[bytes, str]:
    """A multipart/form-data body: (field name, value, file name or None) per part."""
    boundary = "offload-test-boundary-7f3a"
    chunks = []
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename is not None:
            head += "Content-Type: application/octet-stream\r\n"
        data = value.encode() if isinstance(value, str) else value
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _form(*files: tuple[str, bytes]) -> tuple[bytes, str]:
    parts: list[tuple[str, str | bytes, str | None]] = []
    for path, data in files:
        parts += [("path", path, None), ("file", data, path.rsplit("/", 1)[-1])]
    return encode_form(*parts)


async def test_multipart_files_are_streamed_to_storage_under_their_path_fields(start):
    hooks = await start()
    big = os.urandom(3 * 1024 * 1024 + 17)
    body, content_type = encode_form(
        ("path", "2024/05/video.mp4", None),
        ("file", big, "video.mp4"),
        ("path", "2024/05/poster.jpg", None),
        ("file", b"poster", "poster.jpg"),
        ("attachment_id", "99", None),
    )
    status, answer, _ = await hooks.post("uploads", body, content_type=content_type)
    assert status == 200, answer
    assert [(item["path"], item["size"]) for item in answer["items"]] == [
        ("2024/05/video.mp4", len(big)),
        ("2024/05/poster.jpg", 6),
    ]
    stored = await hooks.stored(f"{PREFIX}/2024/05/video.mp4")
    assert stored is not None
    data, info = stored
    assert sha256(data) == sha256(big)  # compared by hash: a failure must not print 3 MB
    assert info.content_type == "video/mp4"
    assert info.metadata["sha256"] == sha256(big)
    assert info.metadata["attachment-id"] == "99"
    assert "mtime" not in info.metadata  # a form carries no modification time
    assert not list(hooks.uploads.rglob("*.mp4"))  # nothing lands in uploads_dir


@LOCAL
async def test_a_form_over_max_upload_size_is_413_and_stores_nothing(start):
    hooks = await start(settings={"max_upload_size": 64 * 1024})
    body, content_type = _form(("a/big.bin", b"x" * 100_000))
    status, answer, _ = await hooks.post("uploads", body, content_type=content_type)
    assert status == 413
    assert "larger than 65536 bytes" in answer["error"]
    assert not hooks.counter.puts


@LOCAL
async def test_a_form_with_a_file_but_no_path_field_is_400(start):
    hooks = await start()
    body, content_type = encode_form(("file", b"data", "a.jpg"))
    status, answer, _ = await hooks.post("uploads", body, content_type=content_type)
    assert status == 400
    assert "path field" in answer["error"]


@LOCAL
@pytest.mark.parametrize("path", ["../escape.jpg", "/etc/passwd", "a/../../b.jpg", "a\\b.jpg"])
async def test_a_form_path_that_escapes_is_400_and_stores_nothing(start, path):
    hooks = await start()
    body, content_type = _form(("ok/a.jpg", b"fine"), (path, b"evil"))
    status, _answer, _ = await hooks.post("uploads", body, content_type=content_type)
    assert status == 400
    assert not hooks.counter.puts


# -- request checks ------------------------------------------------------------------------


@LOCAL
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"headers": {"X-Offload-Timestamp": ""}}, "missing timestamp"),
        ({"headers": {"X-Offload-Signature": ""}}, "missing signature"),
        ({"headers": {"X-Offload-Content-SHA256": ""}}, "missing content hash"),
        ({"headers": {"X-Offload-Content-SHA256": "F" * 64}}, "malformed content hash"),
        ({"headers": {"X-Offload-Content-SHA256": sha256(b"{}")}}, "bad signature"),
        ({"timestamp": "yesterday"}, "malformed timestamp"),
        ({"skew": -302}, "stale timestamp"),
        ({"skew": 302}, "stale timestamp"),  # whole seconds: 301 may round to 300
        ({"secret": "another-secret-0123456789abcdef0123"}, "bad signature"),
        ({"headers": {"X-Offload-Signature": "sha256=" + "0" * 64}}, "bad signature"),
        ({"headers": {"X-Offload-Signature": "md5=abc"}}, "bad signature"),
    ],
)
async def test_a_bad_signature_is_401_and_touches_nothing(start, change, reason):
    hooks = await start()
    hooks.write("2024/05/a.jpg", b"data")
    change = dict(change)
    if "skew" in change:
        change["timestamp"] = str(int(time.time()) + change.pop("skew"))
    status, answer, headers = await hooks.post("uploads", {"files": ["2024/05/a.jpg"]}, **change)
    assert status == 401
    assert answer.pop("request_id") == headers["X-Request-Id"]
    assert answer == {"error": f"signature: {reason}", "status": 401}
    assert "WWW-Authenticate" in headers
    assert SECRET not in json.dumps(answer)
    assert not hooks.counter.puts


def _v2_headers(target: str, signed_body: bytes, **extra: str) -> dict[str, str]:
    return {**signed_request_headers(SECRET, "POST", target, signed_body), **extra}


def _v1_headers(body: bytes) -> dict[str, str]:
    """A JSON body signed the old way (``timestamp.body``), as plugins in the field do."""
    stamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Offload-Timestamp": stamp,
        "X-Offload-Signature": sign_body(SECRET, stamp, body),
    }


@LOCAL
async def test_a_body_that_does_not_match_its_signed_hash_is_400_and_touches_nothing(start):
    hooks = await start()
    hooks.write("2024/05/a.jpg", b"data")
    hooks.write("2024/05/b.jpg", b"data")
    target = "/_offload/blog/uploads"
    response = await hooks.client.post(
        target,
        data=b'{"files": ["2024/05/b.jpg"]}',
        headers=_v2_headers(
            target, b'{"files": ["2024/05/a.jpg"]}', **{"Content-Type": "application/json"}
        ),
    )
    assert response.status == 400
    assert (await response.json())["error"] == ("the body does not match X-Offload-Content-SHA256")
    assert not hooks.counter.puts


@LOCAL
async def test_a_multipart_body_changed_after_signing_is_400_and_stores_nothing(start):
    hooks = await start()
    body, content_type = _form(("2024/05/a.jpg", b"data"))
    target = "/_offload/blog/uploads"
    response = await hooks.client.post(
        target,
        data=body.replace(b"data", b"DATA"),
        headers=_v2_headers(target, body, **{"Content-Type": content_type}),
    )
    assert response.status == 400
    assert not hooks.counter.puts
    assert not hooks.manifest.key_for("blog", "2024/05/a.jpg")


@LOCAL
@pytest.mark.parametrize(
    "files",
    [["../outside.jpg"], ["/etc/passwd"], ["2024/./a.jpg"], ["2024//a.jpg"], ["a\x00.jpg"]],
)
async def test_a_path_outside_uploads_dir_is_400_and_nothing_is_offloaded(start, files):
    hooks = await start()
    hooks.write("2024/05/a.jpg", b"data")
    status, answer, _ = await hooks.post("uploads", {"files": ["2024/05/a.jpg", *files]})
    assert status == 400
    assert "error" in answer
    assert not hooks.counter.puts


@LOCAL
async def test_a_symlink_leading_outside_uploads_dir_is_400_and_nothing_is_offloaded(
    start, tmp_path
):
    hooks = await start()
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("not for the bucket")
    hooks.write("2024/05/a.jpg", b"data")
    (hooks.uploads / "2024/05/link.jpg").symlink_to(secret_file)
    status, answer, _ = await hooks.post(
        "uploads", {"files": ["2024/05/a.jpg", "2024/05/link.jpg"]}
    )
    assert status == 400
    assert "leads outside uploads_dir" in answer["error"]
    assert not hooks.counter.puts


@LOCAL
async def test_a_symlink_inside_uploads_dir_is_followed(start):
    hooks = await start()
    hooks.write("2024/05/a.jpg", b"data")
    (hooks.uploads / "2024/05/alias.jpg").symlink_to(hooks.uploads / "2024/05/a.jpg")
    status, answer, _ = await hooks.post("uploads", {"files": ["2024/05/alias.jpg"]})
    assert status == 200
    assert answer["items"][0]["size"] == 4


@LOCAL
async def test_a_folder_named_as_a_file_is_400(start):
    hooks = await start()
    (hooks.uploads / "2024/05/folder.jpg").mkdir(parents=True)
    status, answer, _ = await hooks.post("uploads", {"files": ["2024/05/folder.jpg"]})
    assert status == 400
    assert "not a regular file" in answer["error"]


@LOCAL
async def test_unknown_site_is_404_and_a_site_without_secret_is_403(start):
    hooks = await start()
    status, _answer, _ = await hooks.post("uploads", {"files": ["a.jpg"]}, site="nope")
    assert status == 404
    bare = await start(webhook_secret=Secret())
    status, answer, _ = await bare.post("uploads", {"files": ["a.jpg"]})
    assert status == 403
    assert "no webhook_secret" in answer["error"]


@LOCAL
async def test_bodies_that_are_not_json_or_not_a_known_shape_are_400(start):
    hooks = await start()
    assert (await hooks.post("uploads", b"{not json"))[0] == 400
    assert (await hooks.post("uploads", {"something": "else"}))[0] == 400
    assert (await hooks.post("uploads", b"[1, 2]"))[0] == 400
    status, _answer, _ = await hooks.post("uploads", b"x", content_type="text/plain")
    assert status == 415


@LOCAL
async def test_a_json_body_over_the_limit_is_413(start):
    hooks = await start()
    huge = {"files": ["a.jpg"], "padding": "x" * (5 * 1024 * 1024)}
    status, _answer, _ = await hooks.post("uploads", huge)
    assert status == 413


@LOCAL
async def test_get_on_a_webhook_is_405_not_an_object(start):
    hooks = await start()
    response = await hooks.client.get("/_offload/blog/uploads")
    assert response.status in (404, 405)
    assert response.headers["Content-Type"].startswith("application/json")


# -- failure halfway ---------------------------------------------------------------------


async def test_a_storage_failure_halfway_is_502_and_a_retry_completes_the_rest(start):
    hooks = await start()
    hooks.write("2024/05/photo.jpg", b"original")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"thumb")
    failing = f"{PREFIX}/2024/05/photo-300x200.jpg"
    hooks.counter.failing.add(failing)
    status, answer, _ = await hooks.post("uploads", wordpress_metadata())
    assert status == 502
    statuses = {item["key"]: item["status"] for item in answer["items"]}
    assert statuses[failing] == "failed"
    assert [s for k, s in statuses.items() if k != failing] == ["uploaded", "uploaded"]
    failed_item = next(item for item in answer["items"] if item["key"] == failing)
    assert failed_item["error"] == "storage unavailable"
    assert f"{UPLOADS_URL}/2024/05/photo-300x200.jpg" not in answer["urls"]
    assert await hooks.stored(failing) is None  # no partial object
    assert hooks.manifest.key_for("blog", "2024/05/photo-300x200.jpg") is None
    assert hooks.manifest.count("blog") == 2

    hooks.counter.failing.clear()
    status, answer, _ = await hooks.post("uploads", wordpress_metadata())
    assert status == 200
    assert [item["status"] for item in answer["items"]] == ["unchanged", "unchanged", "uploaded"]
    assert hooks.manifest.count("blog") == 3


# -- deletions ----------------------------------------------------------------------------


async def test_a_deletion_removes_every_version_of_the_attachment_and_its_rows(start):
    hooks = await start(versioning=True)
    hooks.write("2024/05/photo.jpg", b"v1")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"thumb")
    _s, first, _h = await hooks.post("uploads", wordpress_metadata())
    hooks.write("2024/05/photo.jpg", b"v2")
    _s, second, _h = await hooks.post("uploads", wordpress_metadata())
    keys = {item["key"] for item in first["items"] + second["items"]}
    assert len(keys) == 6

    deleted = []
    delete = hooks.storage.delete

    async def counted(batch: Any) -> None:
        deleted.append(list(batch))
        await delete(batch)

    hooks.storage.delete = counted  # type: ignore[method-assign]
    status, answer, _ = await hooks.post("deletions", {"attachment_id": 42})
    assert status == 200
    assert {item["key"] for item in answer["items"]} == keys
    assert {item["status"] for item in answer["items"]} == {"deleted"}
    assert len(deleted) == 1  # one batched call
    assert set(deleted[0]) == keys
    for key in keys:
        assert await hooks.stored(key) is None
    assert hooks.manifest.count("blog") == 0


@pytest.mark.parametrize("versioning", [False, True])
async def test_a_late_deletion_leaves_the_newer_attachment_of_the_same_names_alone(
    start, versioning
):
    """The CMS reuses a deleted file's name: a deletion of the old attachment that comes late
    (queued while offload was away) takes nothing of the new one's."""
    hooks = await start(versioning=versioning)
    hooks.write("2024/05/photo.jpg", b"old")
    hooks.write("2024/05/photo-scaled.jpg", b"old scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"old thumb")
    await hooks.post("uploads", wordpress_metadata(41))
    status, _, _ = await hooks.post("deletions", wordpress_metadata(41))
    assert status == 200
    hooks.write("2024/05/photo.jpg", b"new")
    hooks.write("2024/05/photo-scaled.jpg", b"new scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"new thumb")
    _s, newer, _h = await hooks.post("uploads", wordpress_metadata(42))
    new_keys = [item["key"] for item in newer["items"]]

    status, late, _ = await hooks.post("deletions", wordpress_metadata(41))

    assert (status, late["items"]) == (200, [])
    for key in new_keys:
        assert await hooks.stored(key) is not None, key
    assert hooks.manifest.count("blog") == 3


async def test_deleting_by_wordpress_metadata_removes_those_files(start):
    hooks = await start()
    hooks.write("2024/05/photo.jpg", b"original")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"thumb")
    await hooks.post("uploads", wordpress_metadata(attachment_id=5))
    metadata = wordpress_metadata(attachment_id=5)
    status, answer, _ = await hooks.post("deletions", metadata)
    assert status == 200
    assert len(answer["items"]) == 3
    assert await hooks.stored(f"{PREFIX}/2024/05/photo.jpg") is None


@LOCAL
async def test_deleting_an_unknown_attachment_is_200_and_does_nothing(start):
    hooks = await start()
    calls = []
    hooks.storage.delete = lambda keys: calls.append(keys)  # type: ignore[method-assign,assignment,return-value]
    status, answer, _ = await hooks.post("deletions", {"attachment_id": 404})
    assert (status, answer) == (200, {"site": "blog", "items": [], "urls": {}})
    assert calls == []


# -- the origin sees new content at once -------------------------------------------------------


async def test_an_upload_replaces_what_the_origin_has_cached(start):
    hooks = await start()
    hooks.write("2024/05/a.txt", b"first")
    await hooks.post("uploads", {"files": ["2024/05/a.txt"]})
    before = await hooks.client.get(f"/{PREFIX}/2024/05/a.txt")
    assert await before.read() == b"first"
    hooks.write("2024/05/a.txt", b"second!")
    await hooks.post("uploads", {"files": ["2024/05/a.txt"]})
    after = await hooks.client.get(f"/{PREFIX}/2024/05/a.txt")
    assert await after.read() == b"second!"


# -- rewriting -----------------------------------------------------------------------------


async def test_the_rewrite_endpoint_rewrites_offloaded_urls_and_keeps_the_content_type(start):
    hooks = await start()
    hooks.write("2024/05/photo.jpg", b"original")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"thumb")
    await hooks.post("uploads", wordpress_metadata())
    html = (
        f'<img src="{UPLOADS_URL}/2024/05/photo-scaled.jpg" '
        f'srcset="{UPLOADS_URL}/2024/05/photo-300x200.jpg 300w, '
        f'{UPLOADS_URL}/2024/05/other.jpg 600w">'
    )
    status, body, headers = await hooks.post(
        "rewrite", html.encode(), content_type="text/html; charset=utf-8"
    )
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert body == (
        f'<img src="{CDN_URL}/{PREFIX}/2024/05/photo-scaled.jpg" '
        f'srcset="{CDN_URL}/{PREFIX}/2024/05/photo-300x200.jpg 300w, '
        f'{UPLOADS_URL}/2024/05/other.jpg 600w">'
    )
    status, back, _ = await hooks.post(
        "rewrite", body.encode(), content_type="text/html; charset=utf-8", query="reverse=1"
    )
    assert (status, back) == (200, html)


@LOCAL
async def test_the_rewrite_endpoint_is_signed_and_rejects_an_unknown_charset(start):
    hooks = await start()
    status, _body, _ = await hooks.post(
        "rewrite", b"<p>", secret="wrong-secret-0123456789abcdef0123"
    )
    assert status == 401
    status, answer, _ = await hooks.post("rewrite", b"<p>", content_type="text/html; charset=nope")
    assert status == 400
    assert "unknown or unsupported charset" in answer["error"]


@LOCAL
async def test_latin1_bodies_are_rewritten_in_their_own_charset(start):
    hooks = await start()
    hooks.write("2024/05/a.jpg", b"data")
    await hooks.post("uploads", {"files": ["2024/05/a.jpg"]})
    html = f'<p>café</p><img src="{UPLOADS_URL}/2024/05/a.jpg">'.encode("latin-1")
    status, body, _ = await hooks.post("rewrite", html, content_type="text/html; charset=latin-1")
    assert status == 200
    assert body == f'<p>café</p><img src="{CDN_URL}/{PREFIX}/2024/05/a.jpg">'


# -- sync runs ------------------------------------------------------------------------------


async def _status(hooks: Hooks, url: str, *, secret: str = SECRET) -> tuple[int, Any]:
    url = f"{url}?n={next(_REQUEST_NUMBERS)}"  # asked many times a second: each one unique
    response = await hooks.client.get(url, headers=signed_request_headers(secret, "GET", url))
    return response.status, await response.json()


async def test_a_sync_run_copies_uploads_dir_in_the_background_and_reports_progress(start):
    hooks = await start()
    for index in range(5):
        hooks.write(f"2024/05/file-{index}.jpg", b"x" * (index + 1))
    hooks.counter.delay = 0.1  # slow enough to ask while it runs
    status, answer, headers = await hooks.post("sync", b"")
    assert status == 202, answer
    assert headers["Location"] == answer["url"] == f"/_offload/blog/sync/{answer['id']}"
    again_status, again, _ = await hooks.post("sync", b"")
    assert (again_status, again["id"]) == (202, answer["id"])  # one run per site at a time
    deadline = time.monotonic() + 30
    while True:
        code, report = await _status(hooks, answer["url"])
        assert code == 200
        if report["status"] != "running":
            break
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.05)
    assert report["status"] == "succeeded", report
    assert (report["transferred"], report["failed"], report["exit_code"]) == (5, 0, 0)
    stored = await hooks.stored(f"{PREFIX}/2024/05/file-4.jpg")
    assert stored is not None
    assert stored[0] == b"xxxxx"
    assert "mtime" in stored[1].metadata
    status, third, _ = await hooks.post("sync", b"")  # after it finished: a new run
    assert status == 202
    assert third["id"] != answer["id"]


@LOCAL
async def test_sync_status_is_signed_and_unknown_runs_are_404(start):
    hooks = await start()
    code, answer = await _status(hooks, "/_offload/blog/sync/0123456789abcdef")
    assert code == 404
    assert "no such sync run" in answer["error"]
    code, _answer = await _status(
        hooks, "/_offload/blog/sync/0123456789abcdef", secret="wrong-secret-0123456789abcdef"
    )
    assert code == 401


@LOCAL
async def test_a_sync_request_with_unknown_options_is_400_and_starts_nothing(start):
    hooks = await start()
    status, answer, _ = await hooks.post("sync", {"delete": "yes"})
    assert (status, answer["error"]) == (400, "delete and dry_run must be true or false")
    status, answer, _ = await hooks.post("sync", {"everything": True})
    assert status == 400
    assert "the body must be empty" in answer["error"]
    assert not hooks.counter.puts


async def test_a_regenerated_size_of_an_unchanged_original_gets_a_new_versioned_key(start):
    hooks = await start(versioning=True)
    hooks.write("2024/05/photo.jpg", b"original")
    hooks.write("2024/05/photo-scaled.jpg", b"scaled")
    hooks.write("2024/05/photo-300x200.jpg", b"thumb, first crop")
    _s, first, _h = await hooks.post("uploads", wordpress_metadata())
    old_keys = [item["key"] for item in first["items"]]
    hooks.write("2024/05/photo-300x200.jpg", b"thumb, second crop")
    status, second, _ = await hooks.post("uploads", wordpress_metadata())
    assert status == 200
    assert [item["status"] for item in second["items"]] == ["uploaded"] * 3
    new_keys = [item["key"] for item in second["items"]]
    folders = {key.rsplit("/", 2)[1] for key in new_keys}
    assert len(folders) == 1  # WordPress derives every size URL from the full size's folder
    assert folders != {version_segment(sha256(b"original"))}
    assert [key.rsplit("/", 1)[1] for key in new_keys] == [
        key.rsplit("/", 1)[1] for key in old_keys
    ]
    for key, data in zip(old_keys, [b"original", b"scaled", b"thumb, first crop"], strict=True):
        old = await hooks.stored(key)  # an immutable key never takes other bytes
        assert old is not None
        assert old[0] == data
    for key, data in zip(new_keys, [b"original", b"scaled", b"thumb, second crop"], strict=True):
        new = await hooks.stored(key)
        assert new is not None
        assert new[0] == data
        assert new[1].cache_control == IMMUTABLE
    assert hooks.manifest.key_for("blog", "2024/05/photo-300x200.jpg") == new_keys[2]
    assert hooks.manifest.key_for("blog", "2024/05/photo-scaled.jpg") == new_keys[1]
    _s, third, _h = await hooks.post("uploads", wordpress_metadata())
    assert third["items"] == [{**item, "status": "unchanged"} for item in second["items"]]


@LOCAL
async def test_a_versioned_site_refuses_a_sync_run(start):
    hooks = await start(versioning=True)
    status, answer, _ = await hooks.post("sync", b"")
    assert status == 409
    assert "uses versioning" in answer["error"]


@LOCAL
async def test_too_many_unverified_v1_bodies_at_once_get_503(start):
    from offload.server.appkeys import UNVERIFIED

    hooks = await start(webhook_signature="v1")
    slots = hooks.client.app[UNVERIFIED]
    while not slots.locked():
        await slots.acquire()
    body = b'{"files": ["a.jpg"]}'
    response = await hooks.client.post(
        "/_offload/blog/uploads", data=body, headers=_v1_headers(body)
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "2"
    assert "too many webhooks" in (await response.json())["error"]


# -- signature v2: bound to the request, taken once, checked before the body ------------------


@LOCAL
async def test_the_same_signed_request_sent_twice_is_taken_once(start):
    hooks = await start()
    hooks.write("2024/05/a.jpg", b"data")
    stamp = str(int(time.time()))
    first = await hooks.post("uploads", {"files": ["2024/05/a.jpg"]}, timestamp=stamp, query="")
    again = await hooks.post("uploads", {"files": ["2024/05/a.jpg"]}, timestamp=stamp, query="")
    assert first[0] == 200
    assert again[1].pop("request_id") == again[2]["X-Request-Id"]
    assert again[:2] == (
        409,
        {"error": "this signed request was already taken: sign it again to resend", "status": 409},
    )
    assert hooks.counter.puts == {f"{PREFIX}/2024/05/a.jpg": 1}


@LOCAL
async def test_an_upload_signature_replayed_to_deletions_deletes_nothing(start):
    hooks = await start()
    hooks.write("2024/05/a.jpg", b"data")
    body = json.dumps({"files": ["2024/05/a.jpg"], "attachment_id": 7}).encode()
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(SECRET, "POST", "/_offload/blog/uploads", body),
    }
    assert (await hooks.client.post("/_offload/blog/uploads", data=body, headers=headers)).ok
    for target in ("/_offload/blog/deletions", "/_offload/blog/sync", "/_offload/blog/rewrite"):
        response = await hooks.client.post(target, data=body, headers=headers)
        assert (response.status, (await response.json())["error"]) == (
            401,
            "signature: bad signature",
        )
    assert await hooks.stored(f"{PREFIX}/2024/05/a.jpg") is not None


@LOCAL
async def test_a_bad_signature_is_refused_before_a_byte_of_the_body_is_read(start):
    hooks = await start()
    read = 0

    async def body_that_never_ends():
        nonlocal read
        while True:
            read += 1
            yield b"x" * 1024
            await asyncio.sleep(0.01)

    headers = {
        "Content-Type": "application/json",
        **signed_request_headers("not-the-secret-0123456789abcdef", "POST", "/x", b""),
    }
    async with asyncio.timeout(10):
        response = await hooks.client.post(
            "/_offload/blog/uploads", data=body_that_never_ends(), headers=headers
        )
        assert response.status == 401
    assert hooks.client.app[PEER_BODIES] == {}


@LOCAL
async def test_a_v1_signed_request_is_refused_by_a_v2_site(start):
    hooks = await start()
    body = b'{"files": ["2024/05/a.jpg"]}'
    response = await hooks.client.post(
        "/_offload/blog/uploads", data=body, headers=_v1_headers(body)
    )
    assert response.status == 401
    assert (await response.json())["error"] == "signature: missing content hash"


@LOCAL
async def test_a_v1_site_takes_the_old_scheme_once_and_logs_that_it_is_deprecated(start, caplog):
    hooks = await start(webhook_signature="v1")
    hooks.write("2024/05/a.jpg", b"data")
    body = b'{"files": ["2024/05/a.jpg"]}'
    headers = _v1_headers(body)
    with caplog.at_level("WARNING", logger="offload.server.webhooks"):
        response = await hooks.client.post("/_offload/blog/uploads", data=body, headers=headers)
        assert response.status == 200
        again = await hooks.client.post("/_offload/blog/uploads", data=body, headers=headers)
        assert again.status == 409
    assert any("deprecated" in record.getMessage() for record in caplog.records)
    assert hooks.counter.puts == {f"{PREFIX}/2024/05/a.jpg": 1}


@LOCAL
async def test_a_signed_body_that_arrives_too_slowly_is_408_and_its_connection_closed(start):
    hooks = await start({"webhook_body_timeout": 0.3})
    body = json.dumps({"files": ["2024/05/a.jpg"]}).encode()

    async def trickle():
        for byte in body:
            yield bytes([byte])
            await asyncio.sleep(0.05)

    target = "/_offload/blog/uploads"
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **signed_request_headers(SECRET, "POST", target, body),
    }
    async with asyncio.timeout(10):
        response = await hooks.client.post(target, data=trickle(), headers=headers)
    assert response.status == 408
    assert response.headers["Connection"] == "close"
    assert (await response.json())["error"] == "the body did not arrive in time"
    assert not hooks.counter.puts


@LOCAL
async def test_one_address_may_send_only_so_many_bodies_at_once(start):
    hooks = await start({"webhook_bodies_per_peer": 2})
    server = hooks.client.server
    body = json.dumps({"files": ["a.jpg"]}).encode()
    slow = []
    for number in range(2):  # two signed bodies from this address, still arriving
        target = f"/_offload/blog/uploads?n=slow-{number}"
        headers = {
            "Host": "localhost",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            **signed_request_headers(SECRET, "POST", target, body),
        }
        reader, writer = await asyncio.open_connection(server.host, server.port)
        head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n" + body[:5])
        slow.append((reader, writer))
    try:
        for _ in range(500):  # until both are being read (bounded: 5 s)
            if hooks.client.app[PEER_BODIES].get("127.0.0.1", 0) == 2:
                break
            await asyncio.sleep(0.01)
        assert hooks.client.app[PEER_BODIES] == {"127.0.0.1": 2}
        status, answer, headers = await hooks.post("uploads", {"files": ["a.jpg"]})
        assert (status, headers["Retry-After"]) == (503, "2")
        assert answer["error"] == "too many webhooks at once from your address; try again"
        hooks.write("a.jpg", b"data")
        for reader, writer in slow:  # the rest of their bodies: both are taken
            writer.write(body[5:])
            async with asyncio.timeout(10):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        for _reader, writer in slow:
            writer.close()
    assert (await hooks.post("uploads", {"files": ["a.jpg"]}))[0] == 200


@LOCAL
async def test_a_full_spool_folder_is_507_with_a_clear_body(start, monkeypatch):
    import errno
    import tempfile

    def no_room(*_args: Any, **_kwargs: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", no_room)
    hooks = await start()
    body, content_type = _form(("2024/05/a.jpg", b"data"))
    status, answer, headers = await hooks.post("uploads", body, content_type=content_type)
    assert (status, headers["Retry-After"]) == (507, "2")
    assert answer["error"] == "no room to receive the upload right now; try again later"
    assert not hooks.counter.puts


@LOCAL
@pytest.mark.parametrize("hook", ["uploads", "deletions", "sync"])
async def test_deeply_nested_json_is_400(start, hook):
    hooks = await start()
    status, answer, _ = await hooks.post(hook, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    assert "nested too deeply" in answer["error"]


@LOCAL
async def test_a_sync_run_that_fails_reports_the_exit_code_the_cli_would(start, monkeypatch):
    from offload.server import sync_runs
    from offload.storage import StorageError

    async def unreachable(*_args: Any, **_kwargs: Any) -> None:
        raise StorageError("the bucket cannot be reached")

    monkeypatch.setattr(sync_runs, "run_sync", unreachable)
    hooks = await start()
    status, answer, _ = await hooks.post("sync", b"")
    assert status == 202
    deadline = time.monotonic() + 10
    while (report := (await _status(hooks, answer["url"]))[1])["status"] == "running":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert (report["status"], report["exit_code"]) == ("failed", 4)
    assert "error: the bucket cannot be reached" in report["messages"]


@LOCAL
async def test_a_reserved_key_is_that_files_failure_and_a_422_while_its_siblings_are_recorded(
    start,
):
    hooks = await start(prefix="")
    hooks.write("a.jpg", b"a")
    hooks.write(".offload/meta/x.jpg", b"x")
    status, answer, _ = await hooks.post("uploads", {"files": ["a.jpg", ".offload/meta/x.jpg"]})
    assert status == 422
    assert [item["status"] for item in answer["items"]] == ["uploaded", "failed"]
    assert hooks.manifest.key_for("blog", "a.jpg") == "a.jpg"


@LOCAL
async def test_a_signed_body_that_never_sends_a_byte_is_408(start):
    hooks = await start({"webhook_body_timeout": 0.3})
    body = json.dumps({"files": ["2024/05/a.jpg"]}).encode()
    target = "/_offload/blog/uploads"
    headers = {
        "Host": "localhost",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **signed_request_headers(SECRET, "POST", target, body),
    }
    server = hooks.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n")  # the headers, then not a byte of the body
        async with asyncio.timeout(10):
            reply = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"Connection: close" in reply
    assert hooks.client.app[PEER_BODIES] == {}


@LOCAL
async def test_a_request_refused_before_its_body_was_used_may_be_sent_again(start):
    hooks = await start({"webhook_bodies_per_peer": 1})
    hooks.write("a.jpg", b"data")
    body = json.dumps({"files": ["a.jpg"]}).encode()
    target = "/_offload/blog/uploads"
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(SECRET, "POST", target, body),
    }
    hooks.client.app[PEER_BODIES]["127.0.0.1"] = 1
    busy = await hooks.client.post(target, data=body, headers=headers)
    assert busy.status == 503
    del hooks.client.app[PEER_BODIES]["127.0.0.1"]
    forged = await hooks.client.post(target, data=b'{"files": []}', headers=headers)
    assert forged.status == 400  # a body raced in with the real headers uses nothing up
    taken = await hooks.client.post(target, data=body, headers=headers)
    assert taken.status == 200
    again = await hooks.client.post(target, data=body, headers=headers)
    assert again.status == 409

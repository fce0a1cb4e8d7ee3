"""The storage contract (offload/storage/base.py), run against every backend.

Each test takes the ``storage`` fixture and so runs on a local folder, moto, and
a real S3 server (rclone serve s3). Where a test looks behind the contract it
uses ``backend``: the boto3 client of the S3 backends, or the local root.
LocalStorage-only behaviour is at the end of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from offload.keys import UnsafeKey
from offload.storage.base import (
    ByteRange,
    CopySource,
    Features,
    InvalidRange,
    NotFound,
    ObjectInfo,
    PutSource,
    Storage,
    StorageError,
)
from tests.storage_servers import TEST_PART_SIZE, Backend, MiB

# -- helpers ------------------------------------------------------------------


@cache
def payload(size: int) -> bytes:
    """Deterministic incompressible bytes, so a shifted or truncated chunk shows."""
    return random.Random(size).randbytes(size)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def chunks(data: bytes, size: int = 1_000_003) -> AsyncIterator[bytes]:
    """An async byte stream in chunks that line up with no part boundary."""
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


class SourceBroke(Exception):
    """Raised by a put's source midway, as a dropped upload connection would."""


async def breaking_stream(good_bytes: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    data = payload(good_bytes)
    async for piece in chunks(data, chunk):
        yield piece
    raise SourceBroke("the client went away")


async def read(
    storage: Storage, key: str, byte_range: ByteRange | None = None
) -> tuple[ObjectInfo, bytes]:
    """Get an object (or a range) whole; checks the stream says its own length."""
    info, stream = await storage.get(key, byte_range)
    async with stream:
        body = await stream.read_all()
    assert len(body) == stream.length
    return info, body


async def listing(storage: Storage, prefix: str = "") -> list[ObjectInfo]:
    return [info async for info in storage.list(prefix)]


async def listed_keys(storage: Storage, prefix: str = "") -> list[str]:
    return [info.key for info in await listing(storage, prefix)]


async def put_many(storage: Storage, objects: Mapping[str, bytes], limit: int = 32) -> None:
    """Put objects concurrently, at most ``limit`` at a time."""
    gate = asyncio.Semaphore(limit)

    async def put_one(key: str, data: bytes) -> None:
        async with gate:
            await storage.put(key, data)

    async with asyncio.TaskGroup() as group:
        for key, data in objects.items():
            group.create_task(put_one(key, data))


def utf8_order(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def watch_s3_calls(client: Any) -> Counter[str]:
    """Count the S3 operations a client makes from now on, by name."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.s3", count)
    return calls


def open_multipart_uploads(backend: Backend) -> list[dict[str, Any]]:
    try:
        answer = backend.client.list_multipart_uploads(Bucket=backend.bucket)
    except ClientError as error:
        # rclone answers NoSuchUpload when there are none.
        if error.response["Error"]["Code"] == "NoSuchUpload":
            return []
        raise
    return answer.get("Uploads", [])


def bucket_state(backend: Backend) -> Any:
    """Everything a write could have changed: the S3 bucket's keys, or the local files."""
    if backend.is_s3:
        pages = backend.client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket)
        return sorted(
            (item["Key"], item["ETag"]) for page in pages for item in page.get("Contents", [])
        )
    assert backend.root is not None
    # The parent too: a key that escaped the root would land beside it.
    return sorted(
        (str(path), path.stat().st_size)
        for path in backend.root.parent.rglob("*")
        if path.is_file()
    )


def assert_recent(when: datetime) -> None:
    assert when.tzinfo is not None, "last_modified must be timezone-aware"
    assert abs(datetime.now(UTC) - when) < timedelta(hours=1)


# -- round trips --------------------------------------------------------------

SIZES = [
    pytest.param(0, id="0B"),
    pytest.param(1, id="1B"),
    pytest.param(5 * MiB, id="5MiB"),
    pytest.param(20 * MiB, id="20MiB"),
]


def make_source(kind: str, data: bytes, tmp_path: Path) -> PutSource:
    if kind == "bytes":
        return data
    if kind == "path":
        path = tmp_path / "upload.bin"
        path.write_bytes(data)
        return path
    return chunks(data)


@pytest.mark.parametrize("kind", ["bytes", "path", "stream"])
@pytest.mark.parametrize("size", SIZES)
async def test_put_then_get_round_trips_bytes_exactly(
    storage: Storage, backend: Backend, tmp_path: Path, size: int, kind: str
) -> None:
    data = payload(size)
    key = f"2024/05/object-{size}.bin"
    calls = watch_s3_calls(backend.client) if backend.is_s3 else Counter[str]()

    put = await storage.put(key, make_source(kind, data, tmp_path))

    assert (put.key, put.size) == (key, size)
    assert_recent(put.last_modified)
    head = await storage.head(key)
    assert head is not None
    assert (head.key, head.size) == (key, size)
    got, body = await read(storage, key)
    assert (got.key, got.size, got.etag) == (key, size, head.etag)
    assert len(body) == size
    assert md5(body) == md5(data), "the body differs from what was put"
    [listed] = await listing(storage, "2024/05/")
    assert (listed.key, listed.size, listed.etag) == (key, size, head.etag)

    for etag in (put.etag, head.etag):
        assert re.fullmatch(r"[0-9a-f]{32}(-[0-9]+)?", etag), f"not an unquoted S3 ETag: {etag}"
    if size < TEST_PART_SIZE:
        assert put.etag == head.etag == md5(data)
    if size > TEST_PART_SIZE and backend.is_s3:
        assert calls["CreateMultipartUpload"] == 1
        assert calls["UploadPart"] == 4
        assert calls["CompleteMultipartUpload"] == 1
        assert re.fullmatch(r"[0-9a-f]{32}-4", put.etag), put.etag
    # rclone's CompleteMultipartUpload answers a "<md5>-<parts>" ETag but its
    # HEAD then reports the whole file's MD5 (--etag-hash MD5), so only the
    # other backends can promise that put and head agree on a multipart ETag.
    if backend.name != "rclone":
        assert put.etag == head.etag


async def test_check_passes_on_a_reachable_bucket(storage: Storage) -> None:
    await storage.check()


async def test_closing_a_body_early_releases_it(storage: Storage) -> None:
    data = payload(MiB)
    await storage.put("early/close.bin", data)
    for _ in range(3):
        info, stream = await storage.get("early/close.bin")
        first = await anext(stream)
        await stream.aclose()
        assert data.startswith(first)
        assert info.size == MiB
    _, body = await read(storage, "early/close.bin")
    assert body == data


# -- byte ranges --------------------------------------------------------------


@pytest.mark.parametrize(
    ("byte_range", "expected"),
    [
        pytest.param((0, 0), slice(0, 1), id="first-byte"),
        pytest.param((10, 19), slice(10, 20), id="middle"),
        pytest.param((90, None), slice(90, 100), id="open-ended"),
        pytest.param((0, None), slice(0, 100), id="whole"),
        pytest.param((99, 99), slice(99, 100), id="last-byte"),
        pytest.param((95, 10_000), slice(95, 100), id="last-past-end-clamps"),
    ],
)
async def test_get_with_a_byte_range_returns_only_that_range(
    storage: Storage, byte_range: ByteRange, expected: slice
) -> None:
    data = payload(100)
    await storage.put("ranges/obj", data, content_type="text/plain")

    info, stream = await storage.get("ranges/obj", byte_range)
    async with stream:
        length = stream.length
        body = await stream.read_all()

    assert body == data[expected]
    assert length == len(data[expected])
    assert info.size == 100, "size is the whole object's, also for a range"
    assert info.etag == md5(data)
    assert info.content_type == "text/plain"


@pytest.mark.parametrize(
    "byte_range",
    [
        pytest.param((100, None), id="first-at-size"),
        pytest.param((100, 200), id="first-at-size-bounded"),
        pytest.param((150, None), id="first-past-size"),
    ],
)
async def test_a_range_starting_at_or_past_the_end_raises_invalid_range(
    storage: Storage, byte_range: ByteRange
) -> None:
    await storage.put("ranges/obj", payload(100))
    with pytest.raises(InvalidRange):
        await storage.get("ranges/obj", byte_range)


async def test_any_range_of_an_empty_object_raises_invalid_range(storage: Storage) -> None:
    await storage.put("ranges/empty", b"")
    with pytest.raises(InvalidRange):
        await storage.get("ranges/empty", (0, None))


# -- content type, cache control, metadata ------------------------------------

METADATA = {
    "Original-Name": "Zürich/東京.jpg",
    "caption": "50% off, naïve café",
    "Attachment-ID": "4711",
}
EXPECTED_METADATA = {
    "original-name": "Zürich/東京.jpg",
    "caption": "50% off, naïve café",
    "attachment-id": "4711",
}
CACHE_CONTROL = "public, max-age=31536000, immutable"


async def test_content_type_cache_control_and_metadata_survive_head_and_get(
    storage: Storage,
) -> None:
    put = await storage.put(
        "meta/photo.jpg",
        b"\xff\xd8\xff not really a jpeg",
        content_type="image/jpeg",
        cache_control=CACHE_CONTROL,
        metadata=METADATA,
    )
    head = await storage.head("meta/photo.jpg")
    got, _ = await read(storage, "meta/photo.jpg")
    ranged, _ = await read(storage, "meta/photo.jpg", (0, 3))

    for info in (head, got, ranged):
        assert info is not None
        assert info.content_type == "image/jpeg"
        assert info.cache_control == CACHE_CONTROL
        assert dict(info.metadata) == EXPECTED_METADATA
    assert put.etag == got.etag


async def test_metadata_keys_that_no_header_can_carry_are_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="metadata"):
        await storage.put("meta/bad", b"x", metadata={"no spaces": "x"})
    assert await storage.head("meta/bad") is None


# -- listing ------------------------------------------------------------------


async def test_list_returns_every_key_past_one_thousand_in_byte_order(storage: Storage) -> None:
    objects = {f"many/{i % 10}/{i:04d}.txt": str(i).encode() for i in range(1100)}
    decoys = {"many-more/x.txt": b"d", "man.txt": b"d", "zzz/x.txt": b"d"}
    await put_many(storage, {**objects, **decoys})

    infos = await listing(storage, "many/")
    keys = [info.key for info in infos]

    assert len(keys) == len(set(keys)), "no key listed twice"
    assert keys == utf8_order(objects)
    assert {info.key: info.size for info in infos} == {k: len(v) for k, v in objects.items()}
    assert all(info.etag == md5(objects[info.key]) for info in infos)
    assert await listed_keys(storage) == utf8_order({**objects, **decoys})


async def test_list_orders_keys_by_utf8_bytes_not_folder_by_folder(storage: Storage) -> None:
    # '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f): a walk that lists a
    # folder's children before its siblings gets "order/b/c" too early.
    keys = [
        "order/b/c",
        "order/b-c",
        "order/b.c",
        "order/b0",
        "order/B",
        "order/a b",
        "order/z",
        "order/é",
        "order/東京",
        "order/😀",
    ]
    await put_many(storage, {key: b"x" for key in keys})
    assert await listed_keys(storage, "order/") == [
        "order/B",
        "order/a b",
        "order/b-c",
        "order/b.c",
        "order/b/c",
        "order/b0",
        "order/z",
        "order/é",
        "order/東京",
        "order/😀",
    ]


async def test_list_prefix_is_a_string_prefix_not_a_folder(storage: Storage) -> None:
    await put_many(storage, {key: b"x" for key in ["a/b/y", "a/bc/x", "a/c", "ab"]})

    assert await listed_keys(storage, "a/b") == ["a/b/y", "a/bc/x"]
    assert await listed_keys(storage, "a/b/") == ["a/b/y"]
    assert await listed_keys(storage, "a/b/y") == ["a/b/y"]
    assert await listed_keys(storage, "a") == ["a/b/y", "a/bc/x", "a/c", "ab"]
    assert await listed_keys(storage, "a/") == ["a/b/y", "a/bc/x", "a/c"]
    assert await listed_keys(storage, "nothing") == []


async def test_list_of_an_empty_bucket_is_empty(storage: Storage) -> None:
    assert await listed_keys(storage) == []


# -- deleting -----------------------------------------------------------------


async def test_deleting_many_keys_leaves_none(storage: Storage, backend: Backend) -> None:
    keys = [f"bulk/{i % 7}/{i:04d}.jpg" for i in range(1100)]
    await put_many(storage, {key: b"x" for key in keys})
    await storage.put("keep/me.jpg", b"kept")
    batches: list[int] = []
    if backend.is_s3:

        def record(params: dict[str, Any], **_: Any) -> None:
            batches.append(len(params["Delete"]["Objects"]))

        backend.client.meta.events.register("before-parameter-build.s3.DeleteObjects", record)

    await storage.delete(key for key in [*keys, "bulk/missing-1", "never/was"])

    assert await listed_keys(storage) == ["keep/me.jpg"]
    assert await storage.head(keys[0]) is None
    assert await storage.head(keys[-1]) is None
    if backend.is_s3:
        assert batches, "S3 backends delete with DeleteObjects"
        assert max(batches) <= 1000, batches
        assert sum(batches) == len(keys) + 2


async def test_deleting_missing_keys_is_not_an_error(storage: Storage) -> None:
    await storage.delete([])
    await storage.delete(["never/was", "never/is"])
    await storage.put("once.txt", b"x")
    await storage.delete(["once.txt"])
    await storage.delete(["once.txt"])
    assert await storage.head("once.txt") is None


async def test_a_deleted_folder_name_can_become_a_key(storage: Storage) -> None:
    await storage.put("dir/sub/file.txt", b"x")
    await storage.delete(["dir/sub/file.txt"])
    await storage.put("dir/sub", b"now a file")
    _, body = await read(storage, "dir/sub")
    assert body == b"now a file"
    assert await listed_keys(storage) == ["dir/sub"]


# -- copy ---------------------------------------------------------------------


async def test_copy_keeps_data_content_type_cache_control_and_metadata(
    storage: Storage, backend: Backend
) -> None:
    data = payload(100_000)
    await storage.put(
        "src/photo.jpg",
        data,
        content_type="image/jpeg",
        cache_control=CACHE_CONTROL,
        metadata=METADATA,
    )

    copied = await storage.copy("src/photo.jpg", storage, "dst/2024/photo copy.jpg")

    assert (copied.key, copied.size) == ("dst/2024/photo copy.jpg", len(data))
    info, body = await read(storage, "dst/2024/photo copy.jpg")
    assert body == data
    assert info.etag == md5(data)
    assert info.content_type == "image/jpeg"
    assert info.cache_control == CACHE_CONTROL
    metadata = dict(info.metadata)
    if backend.name == "rclone":
        # rclone's CopyObject adds its own "Mtime" entry, even with REPLACE.
        metadata.pop("mtime", None)
    assert metadata == EXPECTED_METADATA
    assert (await read(storage, "src/photo.jpg"))[1] == data, "the source stays"


async def test_copy_to_another_backend_keeps_everything(storage: Storage, tmp_path: Path) -> None:
    from offload.storage.local import LocalStorage

    data = payload(300_000)
    await storage.put(
        "src/a.css", data, content_type="text/css", cache_control="no-cache", metadata=METADATA
    )
    other = LocalStorage(tmp_path / "other")
    try:
        await storage.copy("src/a.css", other, "elsewhere/a.css")
        info, body = await read(other, "elsewhere/a.css")
    finally:
        await other.close()
    assert body == data
    assert (info.content_type, info.cache_control) == ("text/css", "no-cache")
    assert dict(info.metadata) == EXPECTED_METADATA


async def test_copy_of_a_missing_key_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.copy("no/such.jpg", storage, "dst.jpg")
    assert await storage.head("dst.jpg") is None


# -- awkward keys -------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "with space/file name.jpg",
        "plus+sign.jpg",
        "100%.jpg",
        "percent%20literal.jpg",
        "hash#tag.jpg",
        "question?.jpg",
        "a&b=c;d,e.jpg",
        "café/résumé.pdf",
        "東京/写真.jpg",
        "emoji-😀/🎉.png",
        "tilde~'quote'(1).jpg",
    ],
)
async def test_awkward_keys_round_trip_through_every_operation(storage: Storage, key: str) -> None:
    data = key.encode() * 3

    put = await storage.put(key, data, content_type="image/jpeg")
    assert put.key == key

    head = await storage.head(key)
    assert head is not None
    assert (head.key, head.size, head.etag) == (key, len(data), md5(data))
    info, body = await read(storage, key)
    assert (info.key, body) == (key, data)
    assert await listed_keys(storage, key) == [key]
    assert await listed_keys(storage) == [key]

    await storage.delete([key])
    assert await storage.head(key) is None
    assert await listed_keys(storage) == []


# -- missing objects ----------------------------------------------------------


async def test_get_of_a_missing_key_raises_not_found_and_head_returns_none(
    storage: Storage,
) -> None:
    await storage.put("present.txt", b"x")
    assert await storage.head("absent.txt") is None
    assert await storage.head("present.txt/child") is None
    with pytest.raises(NotFound):
        await storage.get("absent.txt")
    with pytest.raises(NotFound):
        await storage.get("absent.txt", (0, 9))
    with pytest.raises(NotFound):
        await storage.get("no/such/folder/file.txt")


# -- failed puts --------------------------------------------------------------


@pytest.mark.parametrize(
    "good_bytes",
    [pytest.param(1000, id="small"), pytest.param(12 * MiB, id="multipart")],
)
async def test_a_put_whose_source_fails_leaves_no_object(
    storage: Storage, backend: Backend, good_bytes: int
) -> None:
    await storage.put("other.txt", b"unrelated")
    before = bucket_state(backend)
    calls = watch_s3_calls(backend.client) if backend.is_s3 else Counter[str]()

    with pytest.raises(SourceBroke, match="went away"):
        await storage.put("broken/upload.bin", breaking_stream(good_bytes))

    assert await storage.head("broken/upload.bin") is None
    assert await listed_keys(storage) == ["other.txt"]
    assert bucket_state(backend) == before
    if backend.is_s3:
        assert open_multipart_uploads(backend) == []
        if good_bytes > TEST_PART_SIZE:
            assert calls["CreateMultipartUpload"] == 1, "the large case must go multipart"


@pytest.mark.parametrize(
    "good_bytes",
    [pytest.param(1000, id="small"), pytest.param(12 * MiB, id="multipart")],
)
async def test_a_failed_overwrite_keeps_the_old_object(
    storage: Storage, backend: Backend, good_bytes: int
) -> None:
    await storage.put("photo.jpg", b"old bytes", content_type="image/jpeg", metadata={"v": "1"})

    with pytest.raises(SourceBroke):
        await storage.put("photo.jpg", breaking_stream(good_bytes), content_type="text/plain")

    info, body = await read(storage, "photo.jpg")
    assert body == b"old bytes"
    assert (info.content_type, dict(info.metadata)) == ("image/jpeg", {"v": "1"})
    if backend.is_s3:
        assert open_multipart_uploads(backend) == []


# -- overwriting --------------------------------------------------------------


async def test_overwriting_a_key_replaces_content_and_metadata(storage: Storage) -> None:
    first = await storage.put(
        "over/write.jpg",
        b"first version, rather longer",
        content_type="image/jpeg",
        cache_control=CACHE_CONTROL,
        metadata={"version": "1", "only-in-first": "yes"},
    )
    second = await storage.put(
        "over/write.jpg", b"second", content_type="image/webp", metadata={"version": "2"}
    )

    assert second.etag != first.etag
    info, body = await read(storage, "over/write.jpg")
    assert body == b"second"
    assert (info.size, info.etag) == (6, md5(b"second"))
    assert info.content_type == "image/webp"
    assert info.cache_control is None, "cache control from the old object must not linger"
    assert dict(info.metadata) == {"version": "2"}
    head = await storage.head("over/write.jpg")
    assert head is not None
    assert (head.size, head.content_type, dict(head.metadata)) == (
        6,
        "image/webp",
        {"version": "2"},
    )
    assert await listed_keys(storage) == ["over/write.jpg"]


# -- unsafe keys --------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["../x", "a/../../x", "a//b", "a\\b", "", "/abs", "a/./b", "trailing/", "nul\x00byte"],
)
async def test_unsafe_keys_raise_unsafe_key_and_touch_nothing(
    storage: Storage, backend: Backend, key: str
) -> None:
    await storage.put("good.txt", b"good")
    before = bucket_state(backend)
    consumed = False

    async def stream() -> AsyncIterator[bytes]:
        nonlocal consumed
        consumed = True
        yield b"evil"

    with pytest.raises(UnsafeKey):
        await storage.put(key, b"evil")
    with pytest.raises(UnsafeKey):
        await storage.put(key, stream())
    with pytest.raises(UnsafeKey):
        await storage.head(key)
    with pytest.raises(UnsafeKey):
        await storage.get(key)
    with pytest.raises(UnsafeKey):
        await storage.get(key, (0, 1))
    with pytest.raises(UnsafeKey):
        await storage.delete(["good.txt", key])
    with pytest.raises(UnsafeKey):
        await storage.copy(key, storage, "copy.txt")
    with pytest.raises(UnsafeKey):
        await storage.copy("good.txt", storage, key)

    assert not consumed, "the source must not be read for a key that is refused"
    assert bucket_state(backend) == before
    assert await listed_keys(storage) == ["good.txt"]
    assert issubclass(UnsafeKey, ValueError)


# -- S3 backends: the prefix --------------------------------------------------


async def test_s3_objects_live_under_the_storage_prefix(
    s3_storage: Storage, s3_backend: Backend
) -> None:
    await s3_storage.put("2024/photo.jpg", b"x", content_type="image/jpeg")

    head = s3_backend.client.head_object(
        Bucket=s3_backend.bucket, Key=f"{s3_backend.prefix}/2024/photo.jpg"
    )
    assert head["ContentType"] == "image/jpeg"


async def test_s3_storage_sees_only_its_own_prefix(
    s3_storage: Storage, s3_backend: Backend
) -> None:
    client, bucket = s3_backend.client, s3_backend.bucket
    for outside in ("tenant-ab/x.jpg", "tenant-b/x.jpg", "x.jpg"):
        client.put_object(Bucket=bucket, Key=outside, Body=b"outside")
    await s3_storage.put("x.jpg", b"inside")

    assert await listed_keys(s3_storage) == ["x.jpg"]
    assert await listed_keys(s3_storage, "x") == ["x.jpg"]
    assert (await read(s3_storage, "x.jpg"))[1] == b"inside"
    assert await s3_storage.head("b/x.jpg") is None
    await s3_storage.delete(["x.jpg", "b/x.jpg"])
    remaining = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(item["Key"] for item in remaining) == [
        "tenant-ab/x.jpg",
        "tenant-b/x.jpg",
        "x.jpg",
    ]


async def test_s3_copy_between_prefixes_of_one_bucket_is_server_side(
    s3_storage: Storage, s3_backend: Backend
) -> None:
    from offload.storage.s3 import S3Storage

    await s3_storage.put("a.jpg", b"jpeg", content_type="image/jpeg", metadata={"v": "1"})
    other = S3Storage(s3_backend.client, s3_backend.bucket, "tenant-b")
    calls = watch_s3_calls(s3_backend.client)
    try:
        copied = await s3_storage.copy("a.jpg", other, "b.jpg")
        info, body = await read(other, "b.jpg")
    finally:
        await other.close()

    assert calls["CopyObject"] == 1
    assert calls["PutObject"] == 0
    assert (copied.key, body, info.content_type) == ("b.jpg", b"jpeg", "image/jpeg")
    assert dict(info.metadata).get("v") == "1"
    s3_backend.client.head_object(Bucket=s3_backend.bucket, Key="tenant-b/b.jpg")


async def test_s3_errors_from_a_missing_bucket_are_storage_errors(s3_backend: Backend) -> None:
    from offload.storage.s3 import S3Storage

    missing = S3Storage(s3_backend.client, "no-such-bucket-here", "p")
    try:
        with pytest.raises(StorageError):
            await missing.check()
        with pytest.raises(StorageError):
            await missing.put("k.txt", b"x")
        with pytest.raises(StorageError):
            await missing.get("k.txt")
        with pytest.raises(StorageError):
            await listing(missing)
    finally:
        await missing.close()


async def test_a_large_stream_is_read_only_a_few_parts_ahead_of_what_was_sent(
    s3_storage: Storage, s3_backend: Backend
) -> None:
    import time

    sent = pulled = 0
    ahead: list[int] = []

    def slow_part(**_: Any) -> None:
        time.sleep(0.02)  # a slow link: a reader without bounds would race ahead

    def part_sent(**_: Any) -> None:
        nonlocal sent
        sent += TEST_PART_SIZE

    events = s3_backend.client.meta.events
    events.register("before-call.s3.UploadPart", slow_part)
    events.register("after-call.s3.UploadPart", part_sent)

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(60):
            ahead.append(pulled - sent)
            pulled += MiB
            yield payload(MiB)

    try:
        put = await s3_storage.put("stream/long.bin", source())
    finally:
        events.unregister("before-call.s3.UploadPart", slow_part)
        events.unregister("after-call.s3.UploadPart", part_sent)

    assert put.size == 60 * MiB
    assert sent == 60 * MiB
    concurrency = 4  # S3Config's default
    assert max(ahead) <= (concurrency + 3) * TEST_PART_SIZE


async def test_a_cancelled_stream_put_aborts_its_upload(
    s3_storage: Storage, s3_backend: Backend
) -> None:
    created = asyncio.Event()
    loop = asyncio.get_running_loop()

    def upload_created(**_: Any) -> None:
        loop.call_soon_threadsafe(created.set)

    async def stalled() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield payload(4 * MiB)
        await asyncio.Event().wait()  # a client that stops sending
        yield b""

    events = s3_backend.client.meta.events
    events.register("after-call.s3.CreateMultipartUpload", upload_created)
    try:
        put = asyncio.ensure_future(s3_storage.put("stream/cut.bin", stalled()))
        await created.wait()
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
    finally:
        events.unregister("after-call.s3.CreateMultipartUpload", upload_created)

    assert open_multipart_uploads(s3_backend) == []
    assert await s3_storage.head("stream/cut.bin") is None


# -- LocalStorage only --------------------------------------------------------


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    root.mkdir()
    return root


@pytest.fixture
async def local(local_root: Path) -> AsyncIterator[Storage]:
    from offload.storage.local import LocalStorage

    store = LocalStorage(local_root)
    try:
        yield store
    finally:
        await store.close()


async def test_local_stores_each_object_as_a_plain_file_at_its_key(
    local: Storage, local_root: Path
) -> None:
    await local.put("2024/05/photo.jpg", b"jpeg bytes", content_type="image/jpeg")
    assert (local_root / "2024/05/photo.jpg").read_bytes() == b"jpeg bytes"


@pytest.fixture
def outside(tmp_path: Path, local_root: Path) -> Path:
    """A folder beside the root holding a secret, linked into the root twice."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (local_root / "link").symlink_to(outside, target_is_directory=True)
    (local_root / "file-link").symlink_to(outside / "secret.txt")
    return outside


def assert_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.rglob("*")) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"


REFUSED = (UnsafeKey, StorageError)


@pytest.mark.parametrize("key", ["link/new.txt", "link/deeper/new.txt", "link/secret.txt"])
async def test_local_refuses_to_write_through_a_symlinked_folder(
    local: Storage, outside: Path, key: str
) -> None:
    with pytest.raises(REFUSED):
        await local.put(key, b"escaped")
    assert_untouched(outside)


async def test_local_writing_a_symlinked_key_never_writes_its_target(
    local: Storage, outside: Path
) -> None:
    # Refusing is fine; so is replacing the link itself with a plain file.
    with contextlib.suppress(REFUSED):
        await local.put("file-link", b"overwritten")
    assert_untouched(outside)


@pytest.mark.parametrize("key", ["link/secret.txt", "file-link"])
async def test_local_refuses_to_read_through_a_symlink_out_of_the_root(
    local: Storage, outside: Path, key: str
) -> None:
    with pytest.raises(REFUSED):
        await local.get(key)
    with pytest.raises(REFUSED):
        await local.copy(key, local, "stolen.txt")
    with contextlib.suppress(REFUSED):  # refusing is as good as not finding
        assert await local.head(key) is None
    assert key not in await listed_keys(local)
    assert await local.head("stolen.txt") is None


@pytest.mark.parametrize("key", ["link/secret.txt", "file-link"])
async def test_local_never_deletes_through_a_symlink_out_of_the_root(
    local: Storage, outside: Path, key: str
) -> None:
    with contextlib.suppress(REFUSED):
        await local.delete([key])
    assert_untouched(outside)


async def test_local_keeps_everything_across_a_restart(local_root: Path) -> None:
    from offload.storage.local import LocalStorage

    first = LocalStorage(local_root)
    try:
        put = await first.put(
            "keep/photo.jpg",
            payload(10_000),
            content_type="image/jpeg",
            cache_control=CACHE_CONTROL,
            metadata=METADATA,
        )
    finally:
        await first.close()

    again = LocalStorage(local_root)
    try:
        head = await again.head("keep/photo.jpg")
        info, body = await read(again, "keep/photo.jpg")
        [listed] = await listing(again)
    finally:
        await again.close()

    assert body == payload(10_000)
    for seen in (head, info):
        assert seen is not None
        assert (seen.size, seen.etag) == (10_000, put.etag)
        assert (seen.content_type, seen.cache_control) == ("image/jpeg", CACHE_CONTROL)
        assert dict(seen.metadata) == EXPECTED_METADATA
    assert listed.etag == put.etag


async def test_local_reserved_folder_is_never_listed(local: Storage) -> None:
    await local.put("a.txt", b"a", metadata={"x": "y"})
    await local.put(".offloaded.txt", b"b")
    await local.put(".offload-notes/c.txt", b"c")
    with pytest.raises(SourceBroke):
        await local.put("d.txt", breaking_stream(1000))

    assert await listed_keys(local) == [".offload-notes/c.txt", ".offloaded.txt", "a.txt"]
    assert await listed_keys(local, ".offload") == [".offload-notes/c.txt", ".offloaded.txt"]
    assert await listed_keys(local, ".offload/") == []
    assert await listed_keys(local, ".offload/meta/") == []


@pytest.mark.parametrize("key", [".offload", ".offload/x", ".offload/meta/a.txt.json"])
async def test_local_reserved_folder_is_not_addressable(local: Storage, key: str) -> None:
    await local.put("a.txt", b"a", metadata={"x": "y"})
    with pytest.raises(UnsafeKey):
        await local.put(key, b"x")
    with pytest.raises(UnsafeKey):
        await local.head(key)
    with pytest.raises(UnsafeKey):
        await local.get(key)
    with pytest.raises(UnsafeKey):
        await local.delete([key])
    with pytest.raises(UnsafeKey):
        await local.copy("a.txt", local, key)
    info = await local.head("a.txt")
    assert info is not None
    assert dict(info.metadata) == {"x": "y"}


async def test_local_serves_a_file_dropped_into_the_folder(
    local: Storage, local_root: Path
) -> None:
    (local_root / "dropped").mkdir()
    (local_root / "dropped/by-hand.txt").write_bytes(b"hello")

    head = await local.head("dropped/by-hand.txt")
    assert head is not None
    assert head.size == 5
    assert head.etag
    assert '"' not in head.etag
    info, body = await read(local, "dropped/by-hand.txt")
    assert (info.etag, body) == (head.etag, b"hello")
    [listed] = await listing(local)
    assert (listed.key, listed.etag) == ("dropped/by-hand.txt", head.etag)


async def test_local_never_reports_a_stale_etag_for_a_file_replaced_by_hand(
    local: Storage, local_root: Path
) -> None:
    put = await local.put("edited.txt", b"original", metadata={"v": "1"})
    (local_root / "edited.txt").write_bytes(b"edited by hand, longer")
    os.utime(local_root / "edited.txt", ns=(1_700_000_000_000_000_000,) * 2)

    head = await local.head("edited.txt")
    assert head is not None
    assert head.size == len(b"edited by hand, longer")
    assert head.etag != put.etag
    info, body = await read(local, "edited.txt")
    assert (info.etag, body) == (head.etag, b"edited by hand, longer")


# -- optional capabilities: each backend does what its ``features`` say --------

CAPABILITIES = {
    "local_files": ("open_file",),
    "spliced_gets": ("get_spliceable",),
    "server_side_copy": ("copy_place", "copy_source", "copy_in"),
    "incomplete_uploads": ("incomplete_uploads", "abort_incomplete_uploads"),
    "fast_client": ("fast_client",),
}


def test_every_capability_is_named_by_a_feature() -> None:
    from offload.storage.base import Features

    assert set(CAPABILITIES) == {field.name for field in dataclasses.fields(Features)}


async def test_a_backend_implements_exactly_the_capabilities_it_declares(
    storage: Storage,
) -> None:
    for feature, methods in CAPABILITIES.items():
        declared = getattr(storage.features, feature)
        for method in methods:
            own = getattr(type(storage), method) is not getattr(Storage, method)
            assert own == declared, f"{type(storage).__name__}.{method} vs features.{feature}"


async def test_local_files_open_the_objects_own_file_or_decline(storage: Storage) -> None:
    data = payload(70_000)
    await storage.put("files/photo.jpg", data)

    opened = await storage.open_file("files/photo.jpg")

    if not storage.features.local_files:
        assert opened is None
        return
    assert opened is not None
    handle, st = opened
    try:
        assert st.st_size == len(data)
        assert handle.read() == data
    finally:
        handle.close()
    with pytest.raises(NotFound):
        await storage.open_file("files/absent.jpg")


async def test_spliced_gets_leave_exactly_the_range_in_the_socket_or_decline(
    storage: Storage, backend: Backend
) -> None:
    data = payload(300_000)
    await storage.put("splice/video.mp4", data)

    body = await storage.get_spliceable("splice/video.mp4", 1000, 199_999, len(data))

    if body is None:
        # Declined: no capability, or an endpoint it cannot splice from (moto in
        # this process has no socket at all). rclone, over plain HTTP, always can.
        assert not (storage.features.spliced_gets and backend.name == "rclone")
        return
    assert storage.features.spliced_gets
    received = bytearray(body.head)
    body.sock.setblocking(True)
    while len(received) < body.length:
        received += body.sock.recv(body.length - len(received))
    body.done(complete=True)
    assert bytes(received) == data[1000:200_000]
    assert body.etag == md5(data)


async def test_server_side_copy_moves_no_bytes_through_offload(
    storage: Storage, backend: Backend
) -> None:
    data = payload(100_000)
    await storage.put("src/photo.jpg", data, content_type="image/jpeg", metadata=METADATA)
    calls = watch_s3_calls(backend.client) if backend.is_s3 else Counter[str]()
    reads: list[str] = []
    get = storage.get

    async def no_reads(key: str, byte_range: ByteRange | None = None) -> Any:
        reads.append(key)
        return await get(key, byte_range)

    storage.get = no_reads  # type: ignore[method-assign]

    copied = await storage.copy_in(storage, "src/photo.jpg", "dst/photo.jpg")

    if not storage.features.server_side_copy:
        assert copied is None
        assert await storage.head("dst/photo.jpg") is None
        return
    assert copied is not None
    assert (copied.key, copied.size) == ("dst/photo.jpg", len(data))
    assert reads == []
    assert calls["GetObject"] == calls["PutObject"] == 0
    info, body = await read(storage, "dst/photo.jpg")
    assert (body, info.content_type) == (data, "image/jpeg")
    assert {k: v for k, v in info.metadata.items() if k != "mtime"} == EXPECTED_METADATA


class _Elsewhere(Storage):
    """A storage whose objects no other backend can reach: a server-side copy must decline."""

    url = "elsewhere://"
    features = Features(server_side_copy=True)

    def copy_place(self) -> tuple[str, ...]:
        return ("elsewhere",)

    def copy_source(self, key: str) -> CopySource:
        return CopySource(self.copy_place(), "nowhere", key)

    async def copy_in(self, src: Storage, src_key: str, dst_key: str) -> ObjectInfo | None:
        return None

    async def check(self) -> None:
        raise NotImplementedError

    async def head(self, key: str) -> ObjectInfo | None:
        raise AssertionError("a copy from elsewhere must not be looked at")

    async def get(self, key: str, byte_range: ByteRange | None = None) -> Any:
        raise NotImplementedError

    async def put(self, key: str, source: PutSource, **_: Any) -> ObjectInfo:
        raise NotImplementedError

    async def delete(self, keys: Iterable[str]) -> None:
        raise NotImplementedError

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        raise NotImplementedError


async def test_server_side_copy_declines_a_source_it_cannot_reach(
    storage: Storage, backend: Backend
) -> None:
    elsewhere = _Elsewhere()
    before = bucket_state(backend)
    try:
        assert await storage.copy_in(elsewhere, "a.jpg", "b.jpg") is None
    finally:
        await elsewhere.close()
    assert bucket_state(backend) == before


async def test_incomplete_uploads_are_found_and_aborted_or_there_are_none(
    storage: Storage, backend: Backend
) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    if not storage.features.incomplete_uploads:
        assert await storage.incomplete_uploads("", later) == {}
        assert await storage.abort_incomplete_uploads("", later, ["big.bin"]) == 0
        return
    assert backend.is_s3
    assert await storage.incomplete_uploads("", later) == {}
    full = f"{backend.prefix}/big.bin"
    backend.client.create_multipart_upload(Bucket=backend.bucket, Key=full)
    backend.client.create_multipart_upload(Bucket=backend.bucket, Key="outside.bin")

    found = await storage.incomplete_uploads("", later)

    assert list(found) == ["big.bin"]
    assert await storage.incomplete_uploads("", found["big.bin"]) == {}, "begun later: kept"
    assert await storage.abort_incomplete_uploads("", later, ["big.bin"]) == 1
    assert await storage.incomplete_uploads("", later) == {}
    assert [u["Key"] for u in open_multipart_uploads(backend)] == ["outside.bin"]


async def test_a_fast_client_puts_lists_and_deletes_like_the_storage_or_there_is_none(
    storage: Storage, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name == "rclone":  # awscrt signs with the environment's keys
        from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", RCLONE_ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RCLONE_SECRET_KEY)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    fast = await asyncio.get_running_loop().run_in_executor(None, storage.fast_client, 4)
    if fast is None or backend.name != "rclone":
        # None: no capability (or no awscrt). moto in this process has no socket
        # for awscrt to reach, so only rclone's is used.
        assert fast is None or storage.features.fast_client
        if fast is not None:
            await fast.close()
        return
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"jpeg bytes")
    try:
        put = await fast.put_file("fast/photo.jpg", photo, content_type="image/jpeg")
        listed = [info for page in [p async for p in fast.list_pages("fast/")] for info in page]
        head = await storage.head("fast/photo.jpg")
        assert head is not None
        assert (head.etag, head.content_type) == (put.etag, "image/jpeg")
        assert [(i.key, i.etag) for i in listed] == [("fast/photo.jpg", put.etag)]
        await fast.delete(["fast/photo.jpg"])
        assert await storage.head("fast/photo.jpg") is None
    finally:
        await fast.close()


async def test_warming_up_changes_nothing_and_the_storage_still_answers(
    storage: Storage, backend: Backend
) -> None:
    await storage.put("warm.txt", b"x")
    before = bucket_state(backend)
    await storage.warm_up()
    assert bucket_state(backend) == before
    assert await listed_keys(storage) == ["warm.txt"]


async def test_warming_up_an_s3_storage_builds_its_client_once_off_the_loop(
    s3_backend: Backend,
) -> None:
    import threading

    from offload.storage.s3 import S3Storage
    from offload.storage.s3config import S3Config

    built_on: list[str] = []

    def make_client() -> object:
        built_on.append(threading.current_thread().name)
        return s3_backend.client

    storage = S3Storage(make_client, s3_backend.bucket, s3_backend.prefix, config=S3Config())
    try:
        await storage.warm_up()
        await storage.warm_up()
        assert len(built_on) == 1
        assert built_on[0] != threading.current_thread().name  # in the pool
        assert await listed_keys(storage) == []  # the client it built answers
    finally:
        await storage.close()


@pytest.mark.parametrize("size", [1, 12 * MiB], ids=["small", "multipart"])
async def test_an_etag_said_to_be_the_md5_is_the_md5(storage: Storage, size: int) -> None:
    data = payload(size)
    put = await storage.put("etag/object.bin", data)
    head = await storage.head("etag/object.bin")
    assert head is not None
    if storage.etag_is_md5(size):
        assert put.etag == head.etag == md5(data)
    else:  # a multipart ETag (rclone's HEAD reports the MD5 all the same)
        assert re.fullmatch(r"[0-9a-f]{32}-[0-9]+", put.etag), put.etag
    assert 0 < storage.put_memory(size) <= size

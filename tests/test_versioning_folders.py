"""With versioning, every file of an attachment shares one folder, whatever was regenerated.

WordPress derives each size's URL from the full size's folder (``image_downsize``
replaces the file name), so a size that changed while the original did not
must not get a folder of its own: the whole attachment moves to the folder of
its new content set. The webhooks run over each storage backend (``start``
from ``test_hook``: a local folder, moto, and ``rclone serve s3``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from offload.keys import changed_version_segment, is_versioned_key, upload_key, version_segment
from offload.storage import Storage, StorageError
from offload.storage.base import Features
from tests import test_hook
from tests.test_hook import IMMUTABLE, PREFIX, UPLOADS_URL, Hooks, encode_form, sha256

start = test_hook.start  # the fixture, over every backend

ORIGINAL = "2024/05/photo.jpg"
SCALED = "2024/05/photo-scaled.jpg"
THUMB = "2024/05/photo-300x200.jpg"
LARGE = "2024/05/photo-1024x683.jpg"
FIRST = {ORIGINAL: b"original", SCALED: b"scaled", THUMB: b"thumb, quality 82"}
BASE = version_segment(sha256(FIRST[ORIGINAL]))


def metadata(sizes: tuple[str, ...] = ("300x200",)) -> dict[str, Any]:
    return test_hook.wordpress_metadata(sizes=sizes)


def folder_of(contents: dict[str, bytes]) -> str:
    """The folder an attachment with these files moves to once one of them changed."""
    return changed_version_segment(BASE, ((path, sha256(data)) for path, data in contents.items()))


def folders(answer: dict[str, Any]) -> set[str]:
    return {item["key"].rsplit("/", 2)[1] for item in answer["items"] if item["key"]}


class CopyCounter:
    """Counts a storage's copies (each destination key) by replacing its method."""

    def __init__(self, storage: Storage) -> None:
        self.copies: Counter[str] = Counter()
        self.delay = 0.0
        self.failure: Exception | None = None
        copy = storage.copy

        async def counted(src_key: str, dst_storage: Storage, dst_key: str) -> Any:
            self.copies[dst_key] += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.failure is not None:
                raise self.failure
            return await copy(src_key, dst_storage, dst_key)

        storage.copy = counted  # type: ignore[method-assign]


async def offloaded(hooks: Hooks, contents: dict[str, bytes], body: Any = None) -> dict[str, Any]:
    """Write ``contents`` under uploads_dir, send the webhook, and check it is a 200."""
    for path, data in contents.items():
        hooks.write(path, data)
    status, answer, _ = await hooks.post("uploads", metadata() if body is None else body)
    assert status == 200, answer
    return answer


async def holds(hooks: Hooks, key: str, data: bytes) -> bool:
    stored = await hooks.stored(key)
    return stored is not None and stored[0] == data and stored[1].metadata["sha256"] == sha256(data)


# -- the rule -------------------------------------------------------------------------


async def test_sizes_regenerated_with_identical_bytes_stay_in_the_originals_folder(start):
    hooks = await start(versioning=True)
    first = await offloaded(hooks, FIRST)
    assert folders(first) == {BASE}
    puts = sum(hooks.counter.puts.values())
    again = await offloaded(hooks, FIRST)  # rewritten: new mtimes, the same bytes
    assert [item["status"] for item in again["items"]] == ["unchanged"] * 3
    assert [item["key"] for item in again["items"]] == [item["key"] for item in first["items"]]
    assert sum(hooks.counter.puts.values()) == puts


async def test_a_changed_size_moves_every_file_to_the_folder_of_the_new_content_set(start):
    hooks = await start(versioning=True)
    first = await offloaded(hooks, FIRST)
    copies = CopyCounter(hooks.storage)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    second = await offloaded(hooks, second_set)
    folder = folder_of(second_set)
    assert folders(second) == {folder}
    assert folder != BASE
    assert [item["key"] for item in second["items"]] == [
        upload_key(PREFIX, path, folder) for path in second_set
    ]
    assert all(is_versioned_key(item["key"]) for item in second["items"])
    for path, data in second_set.items():
        assert await holds(hooks, upload_key(PREFIX, path, folder), data)
        assert second["urls"][f"{UPLOADS_URL}/{path}"].endswith(f"/{folder}/{path.split('/')[-1]}")
    for item, data in zip(first["items"], FIRST.values(), strict=True):
        assert await holds(hooks, item["key"], data)  # old pages keep their images
    # The unchanged files were copied from the original's folder, the changed one PUT.
    assert set(copies.copies) == {upload_key(PREFIX, path, folder) for path in (ORIGINAL, SCALED)}
    assert hooks.counter.puts[upload_key(PREFIX, THUMB, folder)] == 1
    _info = (await hooks.stored(upload_key(PREFIX, ORIGINAL, folder)))[1]
    assert _info.cache_control == IMMUTABLE
    rows = hooks.manifest.rows("blog", attachment_id="42")
    assert {row.version for row in rows} == {BASE, folder}
    assert {row.key for row in rows if row.version == folder} == {
        item["key"] for item in second["items"]
    }
    for path in second_set:
        assert hooks.manifest.key_for("blog", path) == upload_key(PREFIX, path, folder)


async def test_two_regenerations_get_two_folders_and_going_back_finds_the_earlier_one(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    third_set = {**FIRST, SCALED: b"scaled, sharper", THUMB: b"thumb, cropped"}
    second = await offloaded(hooks, second_set)
    third = await offloaded(hooks, third_set)
    assert folders(second) == {folder_of(second_set)}
    assert folders(third) == {folder_of(third_set)}
    assert folder_of(second_set) != folder_of(third_set)

    copies = CopyCounter(hooks.storage)
    puts = sum(hooks.counter.puts.values())
    back = await offloaded(hooks, second_set)
    assert back["items"] == [{**item, "status": "unchanged"} for item in second["items"]]
    assert hooks.manifest.key_for("blog", THUMB) == upload_key(PREFIX, THUMB, folder_of(second_set))
    first_again = await offloaded(hooks, FIRST)
    assert folders(first_again) == {BASE}
    assert {item["status"] for item in first_again["items"]} == {"unchanged"}
    assert not copies.copies
    assert sum(hooks.counter.puts.values()) == puts


async def test_a_partial_payload_after_a_regeneration_goes_to_the_originals_folder(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    await offloaded(hooks, second_set)
    # The original alone holds no conflict in its own folder: it is found there.
    only_original = {"files": [ORIGINAL], "original": ORIGINAL, "attachment_id": 42}
    answer = await offloaded(hooks, {}, only_original)
    assert [(item["key"], item["status"]) for item in answer["items"]] == [
        (upload_key(PREFIX, ORIGINAL, BASE), "unchanged")
    ]


async def test_pending_files_do_not_enter_the_folders_hash(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    answer = await offloaded(hooks, second_set, metadata(("300x200", "1024x683")))
    assert [item["status"] for item in answer["items"]] == ["uploaded"] * 3 + ["pending"]
    assert folders(answer) == {folder_of(second_set)}


async def test_a_regeneration_sent_as_a_form_moves_to_the_same_folder(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    parts: list[tuple[str, str | bytes, str | None]] = [("original", ORIGINAL, None)]
    for path, data in second_set.items():
        parts += [("path", path, None), ("file", data, path.rsplit("/", 1)[1])]
    body, content_type = encode_form(*parts, ("attachment_id", "42", None))
    status, answer, _ = await hooks.post("uploads", body, content_type=content_type)
    assert status == 200, answer
    assert folders(answer) == {folder_of(second_set)}
    for path, data in second_set.items():
        assert await holds(hooks, upload_key(PREFIX, path, folder_of(second_set)), data)


async def test_generic_files_without_an_original_still_get_a_folder_each(start):
    hooks = await start(versioning=True)
    body = {"files": ["docs/a.pdf", "docs/b.pdf"]}
    await offloaded(hooks, {"docs/a.pdf": b"a", "docs/b.pdf": b"b"}, body)
    answer = await offloaded(hooks, {"docs/a.pdf": b"a, second edition"}, body)
    assert [item["key"] for item in answer["items"]] == [
        f"{PREFIX}/docs/{version_segment(sha256(b'a, second edition'))}/a.pdf",
        f"{PREFIX}/docs/{version_segment(sha256(b'b'))}/b.pdf",
    ]
    assert [item["status"] for item in answer["items"]] == ["uploaded", "unchanged"]


# -- concurrency ----------------------------------------------------------------------


async def test_identical_regeneration_webhooks_at_once_agree_and_write_each_key_once(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    for path, data in second_set.items():
        hooks.write(path, data)
    copies = CopyCounter(hooks.storage)
    heads: Counter[str] = Counter()
    head = hooks.storage.head

    async def counted_head(key: str) -> Any:
        heads[key] += 1
        await asyncio.sleep(0.2)
        return await head(key)

    hooks.storage.head = counted_head  # type: ignore[method-assign]
    puts_before = hooks.counter.puts.copy()
    hooks.counter.delay = copies.delay = 0.2  # both requests are in flight together
    first, second = await asyncio.gather(
        hooks.post("uploads", metadata()), hooks.post("uploads", metadata())
    )
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    folder = folder_of(second_set)
    assert folders(first[1]) == {folder}
    new_keys = {upload_key(PREFIX, path, folder) for path in second_set}
    written = (hooks.counter.puts - puts_before) + copies.copies
    assert set(written) == new_keys
    assert set((hooks.counter.puts - puts_before).values()) == {1}
    assert set(copies.copies.values()) == {1}
    # One probe of each key, shared; the copies HEAD their source for its metadata.
    assert heads == Counter(
        {
            **{upload_key(PREFIX, path, BASE): 1 for path in second_set},
            **{key: 1 for key in new_keys},
        }
    ) + Counter(upload_key(PREFIX, path, BASE) for path in (ORIGINAL, SCALED))


# -- failures -------------------------------------------------------------------------


async def test_a_copy_the_storage_refuses_puts_the_local_file_instead(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    copies = CopyCounter(hooks.storage)
    copies.failure = StorageError("the server does not copy")
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    answer = await offloaded(hooks, second_set)
    folder = folder_of(second_set)
    assert [item["status"] for item in answer["items"]] == ["uploaded"] * 3
    for path, data in second_set.items():
        assert await holds(hooks, upload_key(PREFIX, path, folder), data)
        assert hooks.counter.puts[upload_key(PREFIX, path, folder)] == 1


@test_hook.LOCAL
async def test_a_storage_without_server_side_copies_gets_the_local_files(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    hooks.storage.features = Features()  # type: ignore[misc]
    copies = CopyCounter(hooks.storage)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    answer = await offloaded(hooks, second_set)
    assert folders(answer) == {folder_of(second_set)}
    assert not copies.copies
    assert {hooks.counter.puts[item["key"]] for item in answer["items"]} == {1}


async def test_a_new_folder_holding_other_bytes_fails_that_file_clearly(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    taken = upload_key(PREFIX, SCALED, folder_of(second_set))
    await hooks.storage.put(taken, b"someone else", metadata={"sha256": sha256(b"someone else")})
    for path, data in second_set.items():
        hooks.write(path, data)
    status, answer, _ = await hooks.post("uploads", metadata())
    assert status == 422  # sending it again would meet the same folder
    statuses = {item["path"]: item["status"] for item in answer["items"]}
    assert statuses == {ORIGINAL: "uploaded", SCALED: "failed", THUMB: "uploaded"}
    failed = next(item for item in answer["items"] if item["status"] == "failed")
    assert failed["key"] == taken
    assert "hash collision" in failed["error"]
    assert await holds(hooks, taken, b"someone else")  # never overwritten
    assert f"{UPLOADS_URL}/{SCALED}" not in answer["urls"]


async def test_a_probe_that_fails_fails_the_whole_attachment_and_a_retry_completes_it(start):
    hooks = await start(versioning=True)
    await offloaded(hooks, FIRST)
    second_set = {**FIRST, THUMB: b"thumb, quality 60"}
    for path, data in second_set.items():
        hooks.write(path, data)
    head = hooks.storage.head
    failing = upload_key(PREFIX, SCALED, BASE)

    async def flaky_head(key: str) -> Any:
        if key == failing:
            raise test_hook.StorageUnavailable("the storage is made to fail by the test")
        return await head(key)

    hooks.storage.head = flaky_head  # type: ignore[method-assign]
    puts = sum(hooks.counter.puts.values())
    status, answer, _ = await hooks.post("uploads", metadata())
    assert status == 502  # no folder can be chosen without knowing what the bucket holds
    assert {item["status"] for item in answer["items"]} == {"failed"}
    assert {item["error"] for item in answer["items"]} == {"storage unavailable"}
    assert sum(hooks.counter.puts.values()) == puts
    assert answer["urls"] == {}

    hooks.storage.head = head  # type: ignore[method-assign]
    answer = await offloaded(hooks, second_set)
    assert folders(answer) == {folder_of(second_set)}


# -- the folder's name ------------------------------------------------------------------


def test_the_changed_folder_depends_on_the_content_set_not_its_order():
    a, b = ("2024/05/a.jpg", sha256(b"a")), ("2024/05/b.jpg", sha256(b"b"))
    assert changed_version_segment(BASE, [a, b]) == changed_version_segment(BASE, [b, a])
    assert changed_version_segment(BASE, [a, b]) != changed_version_segment(BASE, [a])
    assert changed_version_segment(BASE, [a]) != changed_version_segment("b" + BASE[1:], [a])
    swapped = [(a[0], b[1]), (b[0], a[1])]
    assert changed_version_segment(BASE, [a, b]) != changed_version_segment(BASE, swapped)
    assert changed_version_segment(BASE, [a]) == changed_version_segment(
        BASE, [(a[0], a[1].upper())]
    )
    assert is_versioned_key(upload_key(PREFIX, a[0], changed_version_segment(BASE, [a, b])))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ([('a","b', "0" * 64)], [("a", "0" * 64), ("b", "0" * 64)]),
        ([("a,b", "0" * 64)], [("a", "0" * 64), ("b", "0" * 64)]),
    ],
)
def test_names_that_look_like_separators_give_other_folders(one, other):
    assert changed_version_segment(BASE, one) != changed_version_segment(BASE, other)

"""A local folder shared by threads and workers: a put racing a delete in the same folder."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from offload.storage import LocalStorage, StorageError
from offload.storage import local as local_module


async def test_a_put_whose_folder_a_concurrent_delete_prunes_is_retried_and_stored(
    tmp_path, monkeypatch
):
    storage = LocalStorage(tmp_path / "bucket")
    real_replace = os.replace
    pruned: list[str] = []

    def replace_after_a_prune(src, dst):
        # The sibling's delete removes the folder it left empty, between mkdir and the move.
        if not pruned and str(dst).endswith("photo-300x200.jpg"):
            pruned.append(str(dst))
            shutil.rmtree(os.path.dirname(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(local_module.os, "replace", replace_after_a_prune)
    info = await storage.put("2024/05/photo-300x200.jpg", b"thumb")
    assert pruned
    assert info.size == 5
    assert (tmp_path / "bucket" / "2024" / "05" / "photo-300x200.jpg").read_bytes() == b"thumb"
    head = await storage.head("2024/05/photo-300x200.jpg")
    assert head is not None
    assert head.etag == info.etag


async def test_puts_and_deletes_racing_in_one_folder_never_fail(tmp_path):
    storage = LocalStorage(tmp_path / "bucket")

    async def churn(worker: int) -> None:
        for round_ in range(40):
            key = f"soak/{round_ % 3}/file-{worker}-{round_}.jpg"
            await storage.put(key, b"x")
            await storage.delete([key])

    await asyncio.gather(*(churn(worker) for worker in range(8)))
    assert not [path for path in (tmp_path / "bucket").rglob("*") if path.is_file()]


async def test_a_file_where_a_folder_must_be_is_still_a_clear_error(tmp_path):
    storage = LocalStorage(tmp_path / "bucket")
    await storage.put("2024", b"a file named like the folder")
    with pytest.raises(StorageError, match="a folder and an object would share a name"):
        await storage.put("2024/05/a.jpg", b"a")

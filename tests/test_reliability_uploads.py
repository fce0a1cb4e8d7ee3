"""Uploads never orphan objects, links stay in their folder, no multipart leftovers.

Issue #13, items 6, 7 and the symlink part of 8. The unit tests pin each piece:
an offloaded file's failure is its own ``failed`` item (and the siblings that
made it are recorded), a storage folder's links never lead a key out of the
folder or across a signed prefix, and every multipart upload offload starts is
noted until it ends, so a later run aborts one a kill cut short. The tests
marked ``reliability`` replay the attacks on loopback: a link in a storage
folder under the origin and the webhooks' offloader, and a sync killed,
rerun and killed again against a real S3 server (``rclone serve s3``, which
dates uploads truly: moto dates them all 2010, so the old one-day rule would
hide the leftovers there).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.config.sites import open_site_storage
from offload.http.signing import signed_url
from offload.manifest.sqlite import SqliteManifest as Manifest
from offload.media.offloader import Offloader
from offload.media.outcomes import Outcome
from offload.media.payloads import Attachment
from offload.server.app import create_app
from offload.storage.base import LinkRefused, NotFound, StorageError
from offload.storage.local import LocalStorage
from offload.storage.s3 import S3Storage
from offload.storage.s3config import S3Config
from offload.storage.uploadmarks import UploadMarks, running, writer_of
from tests.helpers import run_cli
from tests.storage_servers import RCLONE_ACCESS_KEY, RCLONE_SECRET_KEY, Backend
from tests.sync_helpers import (
    big_bytes,
    incomplete_uploads,
    list_keys,
    offload_command,
    subprocess_env,
    write_tree,
)

MiB = 2**20
SIGNING_SECRET = "s" * 32
OLD = 1_600_000_000 * 10**9


# -- a storage folder's links ----------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A storage folder: ``private/`` is signed, ``alias`` links to it, ``back`` out of it."""
    root = tmp_path / "bucket"
    write_tree(root, {"private/report.pdf": b"secret", "public/a.jpg": b"a", "public/b.jpg": b"b"})
    (root / "alias").symlink_to("private")
    (root / "private" / "back").symlink_to("../public")
    (root / "public" / "same").symlink_to(".")  # a link that keeps its meaning
    (root / "private" / "inner").symlink_to(".")
    return root


@pytest.fixture
async def fenced(folder: Path) -> AsyncIterator[LocalStorage]:
    storage = LocalStorage(folder, fences=("private",))
    try:
        yield storage
    finally:
        await storage.close()


async def test_a_key_a_link_leads_into_a_signed_prefix_is_absent(fenced: LocalStorage):
    assert await fenced.head("alias/report.pdf") is None
    with pytest.raises(NotFound):
        await fenced.get("alias/report.pdf")
    with pytest.raises(NotFound):
        await fenced.open_file("alias/report.pdf")
    with pytest.raises(NotFound):
        await fenced.copy("alias/report.pdf", fenced, "public/stolen.pdf")
    assert (await fenced.head("private/report.pdf")) is not None


async def test_a_key_a_link_leads_out_of_a_signed_prefix_is_absent(fenced: LocalStorage):
    assert await fenced.head("private/back/a.jpg") is None


async def test_links_that_stay_on_their_side_of_every_fence_are_followed(fenced: LocalStorage):
    assert (await fenced.head("public/same/a.jpg")) is not None
    assert (await fenced.head("private/inner/report.pdf")) is not None


async def test_nothing_is_written_or_deleted_through_a_link_across_a_fence(
    fenced: LocalStorage, folder: Path
):
    with pytest.raises(LinkRefused):
        await fenced.put("alias/new.pdf", b"planted")
    assert not (folder / "private" / "new.pdf").exists()
    with pytest.raises(LinkRefused):
        await fenced.delete(["alias/report.pdf"])
    assert (folder / "private" / "report.pdf").read_bytes() == b"secret"


async def test_a_listing_skips_links_across_a_fence(fenced: LocalStorage):
    keys = [info.key async for info in fenced.list("")]
    assert not any(key.startswith(("alias/", "private/back/")) for key in keys)
    assert "private/report.pdf" in keys
    assert "public/same/a.jpg" in keys


async def test_a_link_into_the_reserved_folder_is_refused(tmp_path: Path):
    storage = LocalStorage(tmp_path / "bucket")
    try:
        await storage.put("public/a.jpg", b"a", content_type="image/jpeg")
        (tmp_path / "bucket" / "sidecars").symlink_to(".offload/meta")
        assert await storage.head("sidecars/public/a.jpg.json") is None
        assert [info.key async for info in storage.list("")] == ["public/a.jpg"]
    finally:
        await storage.close()


def test_a_sites_folder_is_fenced_at_its_signed_prefixes(folder: Path):
    site = Site(name="blog", storage=folder.as_uri(), signed_prefixes=("private", "members"))
    with ThreadPoolExecutor(1) as pool:
        storage = open_site_storage(Settings(sites={"blog": site}), site, pool)
    assert isinstance(storage, LocalStorage)
    assert storage.fences == ("members", "private")


def _origin_settings(folder: Path) -> Settings:
    site = Site(
        name="blog",
        storage=folder.as_uri(),
        hostnames=("*",),
        signed_prefixes=("private",),
        signing_secret=Secret(SIGNING_SECRET),
    )
    return Settings(sites={"blog": site})


@pytest.mark.reliability
async def test_the_origin_never_serves_a_signed_file_through_a_link(aiohttp_client: Any, folder):
    client = await aiohttp_client(create_app(_origin_settings(folder)))
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/alias/report.pdf")
        assert response.status == 404, method
        assert b"secret" not in await response.read()
    assert (await client.get("/private/report.pdf")).status == 403  # unsigned
    expires = int(time.time()) + 60
    good = signed_url("", "/private/report.pdf", SIGNING_SECRET, expires)
    response = await client.get(good)
    assert (response.status, await response.read()) == (200, b"secret")
    # a signed key that a link leads out of the fence: absent, signed or not
    assert (await client.get("/private/back/a.jpg")).status == 403
    out = signed_url("", "/private/back/a.jpg", SIGNING_SECRET, expires)
    assert (await client.get(out)).status == 404
    # links that stay on their side of the fence are followed as before
    assert (await client.get("/private/inner/report.pdf")).status == 403
    assert (await client.get("/public/same/a.jpg")).status == 200


# -- the offloader: one file's failure is its own ---------------------------------------


def _site(storage: Path, uploads: Path, **extra: Any) -> Site:
    return Site(name="blog", storage=storage.as_uri(), uploads_dir=uploads, **extra)


async def _offload(
    site: Site, storage: Any, manifest: Manifest, paths: tuple[str, ...]
) -> tuple[Offloader, Outcome]:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(4)

    async def run(fn: Any, *args: Any) -> Any:
        return await loop.run_in_executor(pool, fn, *args)

    offloader = Offloader(site, storage, manifest, run)
    attachment = Attachment(paths, paths[0], "42")
    outcome = await offloader.offload(attachment, await offloader.locate(attachment))
    return offloader, outcome


def _statuses(outcome: Outcome) -> dict[str, str]:
    return {item.path: item.status for item in outcome.items}


async def test_a_reserved_key_fails_that_file_alone_with_a_4xx(tmp_path: Path):
    uploads = write_tree(tmp_path / "uploads", {"a.jpg": b"a", ".offload/meta/x.jpg": b"x"})
    storage = LocalStorage(tmp_path / "bucket")
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    site = _site(tmp_path / "bucket", uploads)
    _, outcome = await _offload(site, storage, manifest, ("a.jpg", ".offload/meta/x.jpg"))
    assert _statuses(outcome) == {"a.jpg": "uploaded", ".offload/meta/x.jpg": "failed"}
    [failed] = [item for item in outcome.items if item.status == "failed"]
    assert "reserved" in (failed.error or "")
    assert outcome.status == 422
    assert [row.key for row in manifest.rows("blog", paths=("a.jpg",))] == ["a.jpg"]
    await storage.close()


async def test_a_storage_that_breaks_on_one_file_is_502_and_the_others_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    uploads = write_tree(tmp_path / "uploads", {"a.jpg": b"a", "b.jpg": b"b", "c.jpg": b"c"})
    storage = LocalStorage(tmp_path / "bucket")
    real_head = storage.head

    async def head(key: str) -> Any:
        if key == "b.jpg":
            raise RuntimeError("a bug in a backend")  # not even a StorageError
        return await real_head(key)

    monkeypatch.setattr(storage, "head", head)
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    _, outcome = await _offload(
        _site(tmp_path / "bucket", uploads), storage, manifest, ("a.jpg", "b.jpg", "c.jpg")
    )
    assert _statuses(outcome) == {"a.jpg": "uploaded", "b.jpg": "failed", "c.jpg": "uploaded"}
    assert outcome.status == 502
    rows = manifest.rows("blog", paths=("a.jpg", "b.jpg", "c.jpg"))
    assert sorted(row.key for row in rows) == ["a.jpg", "c.jpg"]
    await storage.close()


def test_an_outcome_without_failures_is_200_and_one_storage_failure_makes_it_502():
    from offload.media.outcomes import Item

    assert Outcome("blog", [Item("a", "uploaded"), Item("b", "pending")]).status == 200
    refused = Item("b", "failed", refused=True)
    assert Outcome("blog", [Item("a", "uploaded"), refused]).status == 422
    assert Outcome("blog", [refused, Item("c", "failed")]).status == 502


@pytest.mark.reliability
async def test_a_webhook_over_a_linked_storage_folder_fails_that_file_and_records_the_rest(
    tmp_path: Path,
):
    """``wp-content/uploads/2024`` in the storage folder links out of it (and another
    year into a signed prefix): those files fail, the others are recorded, and a
    deletion then removes every object the webhook made."""
    files = {
        "2023/05/a.jpg": b"a",
        "2024/05/b.jpg": b"b",
        "2025/05/c.jpg": b"c",
        "2023/05/d.jpg": b"d",
    }
    uploads = write_tree(tmp_path / "uploads", files)
    bucket = tmp_path / "bucket"
    outside = tmp_path / "elsewhere"
    (bucket / "wp-content" / "uploads").mkdir(parents=True)
    (bucket / "wp-content" / "private").mkdir(parents=True)
    outside.mkdir()
    (bucket / "wp-content" / "uploads" / "2024").symlink_to(outside)
    (bucket / "wp-content" / "uploads" / "2025").symlink_to("../private")
    site = _site(
        bucket,
        uploads,
        prefix="wp-content/uploads",
        signed_prefixes=("wp-content/private",),
        signing_secret=Secret(SIGNING_SECRET),
    )
    with ThreadPoolExecutor(2) as pool:
        storage = open_site_storage(Settings(sites={"blog": site}), site, pool)
        manifest = Manifest(tmp_path / "manifest.sqlite3")
        offloader, outcome = await _offload(site, storage, manifest, tuple(files))
        assert _statuses(outcome) == {
            "2023/05/a.jpg": "uploaded",
            "2024/05/b.jpg": "failed",
            "2025/05/c.jpg": "failed",
            "2023/05/d.jpg": "uploaded",
        }
        assert outcome.status in (422, 502)
        assert list(outside.iterdir()) == []
        assert list((bucket / "wp-content/private").iterdir()) == []
        recorded = manifest.rows("blog", attachment_id="42")
        assert sorted(row.path for row in recorded) == ["2023/05/a.jpg", "2023/05/d.jpg"]

        deleted = await offloader.delete(Attachment(tuple(files), None, "42"))
        assert {item.status for item in deleted.items} == {"deleted"}
        assert [info.key async for info in storage.list("wp-content/uploads/2023")] == []
        assert manifest.rows("blog", attachment_id="42") == []
        await storage.close()


# -- multipart uploads are noted until they end ------------------------------------------


def test_a_sites_bucket_notes_its_uploads_in_the_servers_sync_state_file(
    aws_env: None, tmp_path: Path
):
    """The webhooks' uploads too, where the server's background syncs clean up."""
    site = Site(name="blog", storage="s3://media/blog", endpoint_url="http://127.0.0.1:9")
    settings = Settings(manifest=tmp_path / "manifest.sqlite3", sites={"blog": site})
    with ThreadPoolExecutor(1) as pool:
        storage = open_site_storage(settings, site, pool)
    assert storage.upload_marks is not None
    assert storage.upload_marks.path == tmp_path / "sync-state.sqlite3"


def _dead_writer() -> str:
    process = subprocess.Popen(["true"])
    process.wait()
    return writer_of(process.pid)


def test_a_writer_runs_while_its_process_does_and_not_once_its_id_is_reused():
    me = writer_of(os.getpid())
    assert running(me) is True
    assert running(_dead_writer()) is False
    host, boot, pid, _started = me.split("|")
    assert running(f"{host}|{boot}|{pid}|1") is False  # the same id, another process
    assert running(f"another-host|{boot}|{pid}|1") is None


async def _stream(data: bytes, fail_at: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MiB):
        if fail_at is not None and start >= fail_at:
            raise OSError("the source broke")
        yield data[start : start + MiB]
        await asyncio.sleep(0)


@pytest.fixture
def marks(tmp_path: Path) -> Iterator[UploadMarks]:
    notes = UploadMarks(tmp_path / "state.sqlite3")
    yield notes
    notes.close()


async def test_a_multipart_upload_is_noted_with_its_id_before_a_part_goes_and_forgotten_after(
    moto_backend: Backend, marks: UploadMarks
):
    storage = moto_backend.make_storage()
    storage.use_upload_marks(marks)
    seen: list[set[str]] = []
    real_call = storage._call_sync  # type: ignore[attr-defined]

    def call(method: str, what: str, **kwargs: Any) -> Any:
        if method == "upload_part":
            seen.append(marks.upload_ids(f"aws|{moto_backend.bucket}", ""))
        return real_call(method, what, **kwargs)

    storage._multipart._call = call  # type: ignore[attr-defined]
    await storage.put("big.bin", _stream(big_bytes(12 * MiB)))
    assert seen
    assert all(len(ids) == 1 for ids in seen)
    assert marks.upload_ids(f"aws|{moto_backend.bucket}", "") == set()
    with pytest.raises(OSError, match="the source broke"):
        await storage.put("broken.bin", _stream(big_bytes(12 * MiB), fail_at=8 * MiB))
    assert marks.upload_ids(f"aws|{moto_backend.bucket}", "") == set()  # aborted: forgotten
    assert incomplete_uploads(moto_backend.client, moto_backend.bucket) == []
    await storage.close()


def _left_behind(
    backend: Backend, state: Path, key: str, *, writer: str, endpoint: str | None = None
) -> None:
    """A multipart upload of ``key`` noted by ``writer`` whose abort was lost: as a kill
    leaves it (blocking: it runs its own loop)."""
    config = S3Config(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, endpoint_url=endpoint
    )
    storage = S3Storage(backend.client, backend.bucket, backend.prefix, config=config)
    storage.use_upload_marks(UploadMarks(state, writer=writer))

    def no_abort(method: str, what: str, **kwargs: Any) -> Any:
        if method == "abort_multipart_upload":
            raise StorageError("the abort was lost")
        return storage._call_sync(method, what, **kwargs)

    storage._multipart._call = no_abort

    async def put() -> None:
        with pytest.raises(OSError, match="the source broke"):
            await storage.put(key, _stream(big_bytes(12 * MiB), fail_at=6 * MiB))
        await storage.close()

    asyncio.run(put())


def test_only_uploads_noted_by_a_writer_that_is_gone_are_aborted(
    moto_backend: Backend, tmp_path: Path
):
    state = tmp_path / "state.sqlite3"
    with ThreadPoolExecutor(1) as pool:  # asyncio.run cannot nest in this test's loop
        pool.submit(_left_behind, moto_backend, state, "gone.bin", writer=_dead_writer()).result()
        pool.submit(
            _left_behind, moto_backend, state, "running.bin", writer=writer_of(os.getpid())
        ).result()
    moto_backend.client.create_multipart_upload(
        Bucket=moto_backend.bucket, Key=f"{moto_backend.prefix}/other-tool.bin"
    )
    storage = moto_backend.make_storage()
    storage.use_upload_marks(UploadMarks(state))
    aborted = asyncio.run(storage.abort_marked_uploads(""))
    assert aborted == 1
    left = sorted(u["Key"] for u in incomplete_uploads(moto_backend.client, moto_backend.bucket))
    assert left == [f"{moto_backend.prefix}/other-tool.bin", f"{moto_backend.prefix}/running.bin"]


@pytest.mark.rclone
def test_a_note_whose_writer_died_before_create_answered_takes_the_upload_of_its_key(
    rclone_backend: Backend, rclone_server: Any, tmp_path: Path
):
    """Only uploads of that key begun since the note (moto dates every upload 2010)."""
    backend, endpoint = rclone_backend, rclone_server.endpoint_url
    state = tmp_path / "state.sqlite3"
    dead = UploadMarks(state, writer=_dead_writer())
    full = f"{backend.prefix}/half.bin"
    dead.begin(f"{endpoint}|{backend.bucket}", full)  # killed before the id was written
    backend.client.create_multipart_upload(Bucket=backend.bucket, Key=full)
    config = S3Config(endpoint_url=endpoint)
    storage = S3Storage(backend.client, backend.bucket, backend.prefix, config=config)
    storage.use_upload_marks(UploadMarks(state))
    assert asyncio.run(storage.abort_marked_uploads("")) == 1
    assert incomplete_uploads(backend.client, backend.bucket) == []
    assert dead.leftovers(f"{endpoint}|{backend.bucket}", "") == []


@pytest.fixture
def rclone_env(rclone_backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", RCLONE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RCLONE_SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    state = tmp_path / "state" / "sync.sqlite3"
    monkeypatch.setenv("OFFLOAD_SYNC_STATE", str(state))
    monkeypatch.chdir(tmp_path)
    return state


@pytest.mark.rclone
def test_a_sync_aborts_a_recent_upload_a_killed_run_left_under_another_key(
    rclone_backend: Backend, rclone_env: Path, rclone_server: Any
):
    """Not a key this run writes, and a minute old, not a day: noted, so it goes."""
    backend = rclone_backend
    endpoint = rclone_server.endpoint_url
    site = Backend("rclone", client=backend.client, bucket=backend.bucket, prefix="site")
    with ThreadPoolExecutor(1) as pool:  # its own loop, as the killed process had
        pool.submit(
            _left_behind, site, rclone_env, "video.bin", writer=_dead_writer(), endpoint=endpoint
        ).result()
    backend.client.create_multipart_upload(Bucket=backend.bucket, Key="site/other-tool.bin")
    write_tree(Path("data"), {"a.jpg": b"a"}, OLD)
    code, _out, err = run_cli(
        "sync", "data", f"s3://{backend.bucket}/site", "--endpoint-url", endpoint
    )
    assert (code, err) == (0, "")
    left = [u["Key"] for u in incomplete_uploads(backend.client, backend.bucket)]
    assert left == ["site/other-tool.bin"]


# -- kill, rerun, kill ----------------------------------------------------------------------


def _kill_when(process: subprocess.Popen[bytes], ready: Any, deadline: float) -> bool:
    """SIGKILL ``process`` once ``ready()``; whether it was still running then.

    The process is stopped (SIGSTOP) while ``ready()`` looks, so that it cannot run
    on to its end between a look that finds the moment and the kill: on a loaded
    machine a look at the bucket takes longer than the rest of the run.
    """
    try:
        while process.poll() is None and time.monotonic() < deadline:
            process.send_signal(signal.SIGSTOP)
            if ready():
                break
            process.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        alive = process.poll() is None
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    return alive


@pytest.mark.reliability
@pytest.mark.rclone
def test_kill_rerun_kill_leaves_no_multipart_upload(
    rclone_backend: Backend, rclone_server: Any, tmp_path: Path
):
    """The first run dies with uploads in flight; the rerun dies after it has
    completed one of those keys but before its cleanup; the last run completes,
    and no incomplete upload is left under the prefix (another tool's stays)."""
    backend = rclone_backend
    files = {f"{name}.bin": big_bytes(12 * MiB, seed=seed) for seed, name in enumerate("abcdef")}
    write_tree(tmp_path / "data", files, OLD)
    backend.client.create_multipart_upload(Bucket=backend.bucket, Key="other/theirs.bin")
    # Two files at a time: the rerun lands one key a while before it ends, so the
    # kill between the two is not a matter of luck on a fast machine.
    command = offload_command(
        "sync", "data", f"s3://{backend.bucket}/site", "--endpoint-url", rclone_server.endpoint_url,
        "--jobs", "2",
    )  # fmt: skip
    credentials = {
        "AWS_ACCESS_KEY_ID": RCLONE_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": RCLONE_SECRET_KEY,
    }
    env = {**subprocess_env(tmp_path, credentials), "OFFLOAD_NO_CRT": "1"}

    def in_flight() -> set[str]:
        return {
            u["Key"] for u in incomplete_uploads(backend.client, backend.bucket)
            if u["Key"].startswith("site/")
        }  # fmt: skip

    first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    assert _kill_when(first, in_flight, time.monotonic() + 20), "the first run finished first"
    left_by_first = in_flight()
    assert left_by_first

    def one_of_them_landed() -> bool:
        landed = {f"site/{key}" for key in list_keys(backend.client, backend.bucket, "site")}
        return bool(left_by_first & landed)

    second = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    assert _kill_when(second, one_of_them_landed, time.monotonic() + 20), "the rerun finished"

    last = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert last.returncode == 0, last.stderr.decode()
    assert sorted(list_keys(backend.client, backend.bucket, "site")) == sorted(files)
    assert in_flight() == set()
    assert [u["Key"] for u in incomplete_uploads(backend.client, backend.bucket)] == [
        "other/theirs.bin"
    ]


@dataclass
class TwoFiles:
    """An offloader of a.jpg and b.jpg (attachment 7) on a folder, b.jpg's put held by ``gate``."""

    offloader: Offloader
    storage: LocalStorage
    manifest: Manifest
    uploads: Path
    attachment: Attachment

    def start(self) -> asyncio.Future[Outcome]:
        files = {path: self.uploads / path for path in self.attachment.paths}
        return asyncio.ensure_future(self.offloader.offload(self.attachment, files))

    async def keys(self) -> list[str]:
        return sorted([info.key async for info in self.storage.list("")])

    async def rows(self) -> list[str]:
        rows = await asyncio.to_thread(self.manifest.rows, "blog", attachment_id="7")
        return sorted(row.key for row in rows)


def two_files(tmp_path: Path, gate: Callable[[], Awaitable[object]]) -> TwoFiles:
    from offload.media.payloads import parse_attachment

    uploads = tmp_path / "up"
    uploads.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (uploads / name).write_bytes(name.encode())
    storage = LocalStorage(tmp_path / "bucket")
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    put = storage.put

    async def held_put(key, *args, **kwargs):
        if key.endswith("b.jpg"):
            await gate()
        return await put(key, *args, **kwargs)

    storage.put = held_put  # type: ignore[method-assign]

    async def run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    site = Site(name="blog", storage=storage.url, uploads_dir=uploads)
    offloader = Offloader(site, storage, manifest, run)
    attachment = parse_attachment({"files": ["a.jpg", "b.jpg"], "attachment_id": 7})
    return TwoFiles(offloader, storage, manifest, uploads, attachment)


async def test_a_cancelled_upload_still_records_what_reached_the_bucket(tmp_path):
    two = two_files(tmp_path, lambda: asyncio.sleep(0.3))
    task = two.start()
    await asyncio.sleep(0.1)
    task.cancel()  # the server stopping, say
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await two.keys() == ["a.jpg", "b.jpg"]
    assert await two.rows() == ["a.jpg", "b.jpg"]
    two.manifest.close()


async def test_a_deletion_during_an_upload_whose_client_gave_up_leaves_no_object(tmp_path):
    """The client of an upload times out while offload still copies; the deletion that
    follows waits for the copies, then removes every object they made."""
    from offload.media.payloads import parse_attachment

    release = asyncio.Event()
    waiting = asyncio.Event()

    async def gate() -> None:
        waiting.set()
        await release.wait()

    two = two_files(tmp_path, gate)
    task = two.start()
    await waiting.wait()
    task.cancel()  # the client gave up; a.jpg is in, b.jpg still on its way
    deletion = asyncio.ensure_future(
        two.offloader.delete(parse_attachment({"attachment_id": 7}, deletion=True))
    )
    await asyncio.sleep(0.1)
    assert not deletion.done()  # it waits for the copies it would otherwise miss
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    outcome = await deletion
    assert sorted(item.key for item in outcome.items) == ["a.jpg", "b.jpg"]
    assert await two.keys() == []
    assert await two.rows() == []
    two.manifest.close()

"""``offload archive``: a prefix of a bucket as a tarball, streamed.

Objects are listed and fetched one at a time and written into the tar stream
as they arrive (``tarfile``'s stream modes ``w|gz``/``w|xz``), so neither the
prefix nor one object is ever staged on disk or held in memory. A file
target is written under a temporary name and renamed when complete, so a
failure leaves no partial archive; ``-`` streams to standard output. A prefix
with no objects is an error, found before the tarball's first byte: an empty
archive exiting 0 would hide a mistyped prefix from a backup script.

``tarfile`` is synchronous: the writer runs in a worker thread and asks the
event loop, one step at a time, for the next listing entry and the next
chunk of the object it is copying.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import IO, Any, Literal, TypeVar

from offload.buckets.opening import opened_bucket
from offload.config.settings import Settings
from offload.errors import ExitCode, OffloadError
from offload.storage import ByteStream, NotFound, ObjectInfo, objectmeta
from offload.sync.locations import Bucket, S3Options

T = TypeVar("T")

#: tarfile's streaming write mode for each compression.
TarMode = Literal["w|gz", "w|xz", "w|"]
MODES: dict[str, TarMode] = {"gz": "w|gz", "xz": "w|xz", "tar": "w|"}


class NothingToArchive(OffloadError):
    """The prefix holds no objects: most often a mistyped prefix, so the command fails."""

    exit_code = ExitCode.FAILED


@dataclass
class ArchiveReport:
    objects: int = 0
    bytes: int = 0
    skipped: int = 0


class _Bridge:
    """Runs coroutines on the loop from the writer's thread, one at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __call__(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


class _StreamReader:
    """A file-like ``read(n)`` over a ByteStream, for ``tarfile.addfile``."""

    def __init__(self, stream: ByteStream, bridge: _Bridge) -> None:
        self.stream, self.bridge = stream, bridge
        self.buffer = bytearray()
        self.done = False

    def read(self, size: int = -1) -> bytes:
        while not self.done and (size < 0 or len(self.buffer) < size):
            chunk = self.bridge(_next_chunk(self.stream))
            if chunk is None:
                self.done = True
            else:
                self.buffer += chunk
        if size < 0:
            size = len(self.buffer)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


async def _next_chunk(stream: ByteStream) -> bytes | None:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


async def _next_info(listing: AsyncIterator[ObjectInfo]) -> ObjectInfo | None:
    try:
        return await listing.__anext__()
    except StopAsyncIteration:
        return None


def _write(
    bucket: Bucket,
    out: IO[bytes],
    mode: TarMode,
    bridge: _Bridge,
    report: ArchiveReport,
    warn: Callable[[str], None],
) -> None:
    listing = bucket.storage.list(bucket.list_prefix)
    listed = _next_file(bucket, listing, bridge)
    if listed is None:  # found before the tarball starts: nothing is written, not even a header
        raise NothingToArchive(
            f"nothing to archive: {bucket.display('')} holds no objects (no archive written)"
        )
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        while listed is not None:
            key, rel = listed
            _add(tar, bucket, key, rel, bridge, report, warn)
            listed = _next_file(bucket, listing, bridge)


def _next_file(
    bucket: Bucket, listing: AsyncIterator[ObjectInfo], bridge: _Bridge
) -> tuple[str, str] | None:
    """The next listed object that is a file under the prefix: (key, its path there)."""
    while (listed := bridge(_next_info(listing))) is not None:
        rel = bucket.rel(listed.key)
        if rel and not rel.endswith("/"):
            return listed.key, rel
    return None


def _add(
    tar: tarfile.TarFile,
    bucket: Bucket,
    key: str,
    rel: str,
    bridge: _Bridge,
    report: ArchiveReport,
    warn: Callable[[str], None],
) -> None:
    try:
        info, stream = bridge(bucket.storage.get(key))
    except NotFound:
        warn(f"skipping {bucket.display(rel)}: it vanished")
        report.skipped += 1
        return
    try:
        member = tarfile.TarInfo(rel)
        member.size = info.size
        mtime_ns = objectmeta.parse_mtime_ns(info.metadata.get(objectmeta.MTIME))
        member.mtime = mtime_ns / 1e9 if mtime_ns is not None else info.last_modified.timestamp()
        member.mode = 0o644
        tar.addfile(member, _StreamReader(stream, bridge))
    finally:
        bridge(stream.aclose())
    report.objects += 1
    report.bytes += info.size


async def write_archive(
    bucket: Bucket,
    target: str,
    compression: str,
    stdout: IO[bytes],
    executor: Executor,
    warn: Callable[[str], None],
) -> ArchiveReport:
    """Write the tarball of ``bucket``'s prefix to ``target`` (``-``: ``stdout``)."""
    loop = asyncio.get_running_loop()
    bridge = _Bridge(loop)
    report = ArchiveReport()
    mode = MODES[compression]
    if target == "-":
        await loop.run_in_executor(executor, _write, bucket, stdout, mode, bridge, report, warn)
        return report

    def to_file() -> None:
        folder = os.path.dirname(os.path.abspath(target))
        partial = os.path.join(folder, f".{os.path.basename(target)}.partial-{os.getpid()}")
        try:
            with open(partial, "wb") as out:
                _write(bucket, out, mode, bridge, report, warn)
            os.replace(partial, target)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise

    await loop.run_in_executor(executor, to_file)
    return report


async def archive_bucket(
    text: str,
    s3: S3Options,
    settings: Settings | None,
    target: str,
    compression: str,
    stdout: IO[bytes],
    warn: Callable[[str], None],
) -> ArchiveReport:
    """Open the bucket ``text`` names and write its tarball to ``target`` (``-``: stdout)."""
    async with opened_bucket(text, s3, settings, threads=8, name="offload-archive") as (
        bucket,
        pool,
    ):
        return await write_archive(bucket, target, compression, stdout, pool, warn)

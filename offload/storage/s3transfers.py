"""Multipart uploads and server-side copies through s3transfer, boto3's own transfer manager.

s3transfer cuts a file, bytes or a stream into parts, sends
``multipart_concurrency`` of them at a time, and when anything fails it waits
for the parts in flight and aborts the upload, so neither a partial object nor
orphaned parts (which S3 bills for) remain; a copy too large for one
CopyObject goes as UploadPartCopy the same way. What this module adds:

- **Async streams.** A webhook's body arrives as an async byte stream.
  ``StreamReader`` is the file s3transfer reads in its own thread, each read
  waiting on the event loop for the next chunk; s3transfer holds at most
  ``multipart_concurrency`` parts of it in memory, so a stream of any length
  costs a bounded amount.
- **The answer.** s3transfer returns nothing, and the caller needs the ETag:
  each transfer gets its own manager over a ``_Recorder``, the client that
  keeps the CompleteMultipartUpload or CopyObject answer. A manager per
  transfer is also how boto3's own ``upload_file`` and ``copy`` use it.
- **Bounds.** A transfer runs on its manager's threads: as many as it has
  parts in flight, and one that reads its source. ``TransferSlots`` admits a
  storage's transfers while their parts in flight fit its connection pool, so
  threads and connections stay bounded however many puts arrive at once.
- **Waiting.** The event loop waits on an asyncio future that s3transfer's
  done callback settles: no thread is held waiting for a transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

from offload.storage.s3config import S3Config

#: Runs a blocking call in the storage's bounded pool.
Runner = Callable[..., Awaitable[Any]]


class TransferSlots:
    """Parts in flight across one storage's transfers, at most ``capacity`` of them.

    A transfer takes a slot for each part it may send at once; transfers are
    admitted in the order they asked.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._units = asyncio.Semaphore(capacity)
        self._order = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self, count: int) -> AsyncIterator[None]:
        count = min(count, self.capacity)
        taken = 0
        try:
            async with self._order:
                while taken < count:
                    await self._units.acquire()
                    taken += 1
            yield
        finally:
            for _ in range(taken):
                self._units.release()


class Transfers:
    """The uploads and copies of one S3 storage (see the module docstring)."""

    def __init__(self, client: Callable[[], Any], config: S3Config, run: Runner) -> None:
        self._client = client  # made on first use, in the pool: see S3Storage.client
        self._config = config
        self._run = run
        self.slots = TransferSlots(max(config.max_connections, config.multipart_concurrency))

    def parts(self, size: int) -> int:
        """How many parts s3transfer cuts an upload of ``size`` bytes into."""
        chunk = ChunksizeAdjuster().adjust_chunksize(self._config.multipart_chunksize, size)
        return max(1, math.ceil(size / chunk))

    async def upload(
        self, source: str | bytes | StreamReader, bucket: str, key: str, args: dict[str, Any]
    ) -> tuple[str, int]:
        """Upload ``source`` in parts; (the ETag, the size sent)."""
        config = self._config
        if isinstance(source, str):
            size = (await self._run(_file_size, source)) or 1
            width = min(config.multipart_concurrency, self.parts(size))
        elif isinstance(source, bytes):
            width = min(config.multipart_concurrency, self.parts(len(source)))
        else:
            width = config.multipart_concurrency
        fileobj = io.BytesIO(source) if isinstance(source, bytes) else source
        settings = _settings(config.multipart_threshold, config.multipart_chunksize, width)

        def submit(manager: TransferManager, subscriber: _Done) -> Any:
            return manager.upload(fileobj, bucket, key, extra_args=args, subscribers=[subscriber])

        async with self.slots.hold(width):
            future, recorder = await self._transfer(settings, submit, source)
        size = future.meta.size
        return recorder.etag, size if size is not None else getattr(source, "count", 0)

    async def copy(
        self,
        source: dict[str, str],
        size: int,
        etag: str,
        bucket: str,
        key: str,
        args: dict[str, Any],
    ) -> str:
        """Copy ``source`` (Bucket and Key) of ``size`` bytes server-side; the new ETag.

        Up to ``copy_threshold`` bytes in one CopyObject; larger in parts, each
        on the condition that the source still has ``etag``.
        """
        config = self._config
        multipart = size > config.copy_threshold
        width = min(config.multipart_concurrency, self.parts(size)) if multipart else 1
        settings = _settings(config.copy_threshold + 1, config.multipart_chunksize, width)

        def submit(manager: TransferManager, subscriber: _Done) -> Any:
            subscriber.size, subscriber.etag = size, f'"{etag}"'
            return manager.copy(source, bucket, key, extra_args=args, subscribers=[subscriber])

        async with self.slots.hold(width):
            _, recorder = await self._transfer(settings, submit, None)
        return recorder.etag

    async def _transfer(
        self,
        settings: TransferConfig,
        submit: Callable[[TransferManager, _Done], Any],
        source: object,
    ) -> tuple[Any, _Recorder]:
        """Start one transfer on a manager of its own, wait for it, shut the manager down."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        done = _Done(loop, finished)

        def start() -> tuple[TransferManager, _Recorder, Any]:
            recorder = _Recorder(self._client())
            manager = TransferManager(recorder, settings)
            return manager, recorder, submit(manager, done)

        manager, recorder, future = await self._run(start)
        try:
            try:
                await asyncio.shield(finished)
            except asyncio.CancelledError:
                future.cancel()
                if isinstance(source, StreamReader):
                    source.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(finished)  # the upload is aborted before this returns
                raise
            future.result()  # done: raises what failed, at once
            return future, recorder
        finally:
            await asyncio.shield(self._run(manager.shutdown))


def _settings(threshold: int, chunksize: int, width: int) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=threshold,
        multipart_chunksize=chunksize,
        max_request_concurrency=width,
        max_submission_concurrency=1,
        max_in_memory_upload_chunks=width,
    )


def _file_size(path: str) -> int:
    return os.stat(path).st_size


class _Recorder:
    """The client s3transfer is handed: the storage's own, keeping a transfer's last answer."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.etag = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def complete_multipart_upload(self, **kwargs: Any) -> Any:
        answer = self._client.complete_multipart_upload(**kwargs)
        self.etag = answer.get("ETag", "")
        return answer

    def copy_object(self, **kwargs: Any) -> Any:
        answer = self._client.copy_object(**kwargs)
        self.etag = answer.get("CopyObjectResult", {}).get("ETag", "")
        return answer

    def put_object(self, **kwargs: Any) -> Any:
        answer = self._client.put_object(**kwargs)
        self.etag = answer.get("ETag", "")
        return answer


class _Done(BaseSubscriber):
    """Tells the event loop that a transfer has ended; gives a copy its size and ETag."""

    def __init__(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        self._loop, self._finished = loop, finished
        self.size: int | None = None
        self.etag: str | None = None

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        if self.size is not None:  # a copy: no HeadObject of the source again
            future.meta.provide_transfer_size(self.size)
            future.meta.provide_object_etag(self.etag)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        def settle() -> None:
            if not self._finished.done():
                self._finished.set_result(None)

        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(settle)


class _Stopped(Exception):
    """The put that owned a stream was cancelled: s3transfer stops reading it and aborts."""


class StreamReader:
    """An async byte stream as the blocking, unseekable file s3transfer reads in its thread.

    ``head`` is what was read already (to learn that the stream is large).
    Each ``read`` asks the event loop once for as many chunks as it needs (a
    hop per chunk cost a third more CPU on a 200 MB stream), then joins them:
    each byte is copied once here. An error of the stream is raised in
    s3transfer's thread, which fails the transfer and aborts the upload.
    """

    def __init__(
        self, head: bytes, rest: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._chunks: deque[bytes] = deque([head] if head else [])
        self._buffered = len(head)
        self._rest, self._loop = rest, loop
        self._ended = False
        self._stopped = False
        self._waiting: Any = None
        self._lock = threading.Lock()
        #: Bytes handed to s3transfer so far: the object's size once the transfer is done.
        self.count = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int = -1) -> bytes:
        if not self._ended and (amount < 0 or self._buffered < amount):
            with self._lock:
                if self._stopped:
                    raise _Stopped("the put was cancelled")
                wanted = -1 if amount < 0 else amount - self._buffered
                self._waiting = asyncio.run_coroutine_threadsafe(
                    _gather(self._rest, wanted), self._loop
                )
            try:
                chunks, self._ended = self._waiting.result()
            except asyncio.CancelledError:
                raise _Stopped("the put was cancelled") from None
            self._chunks.extend(chunks)
            self._buffered += sum(map(len, chunks))
        return self._take(self._buffered if amount < 0 else min(amount, self._buffered))

    def _take(self, count: int) -> bytes:
        parts, missing = [], count
        while missing:
            chunk = self._chunks.popleft()
            if len(chunk) > missing:
                chunk, rest = chunk[:missing], chunk[missing:]
                self._chunks.appendleft(rest)
            parts.append(chunk)
            missing -= len(chunk)
        self._buffered -= count
        self.count += count
        return b"".join(parts)

    def stop(self) -> None:
        """Make a read waiting for chunks give up (the loop's side)."""
        with self._lock:
            self._stopped = True
            if self._waiting is not None:
                self._waiting.cancel()


async def _gather(chunks: AsyncIterator[bytes], wanted: int) -> tuple[list[bytes], bool]:
    """Chunks of at least ``wanted`` bytes in all (all of them: -1), and whether it ended."""
    got: list[bytes] = []
    size = 0
    while wanted < 0 or size < wanted:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return got, True
        if chunk:
            got.append(bytes(chunk))
            size += len(chunk)
    return got, False

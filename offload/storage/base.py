"""The storage contract every backend honours, and the pieces backends share.

A backend is a bucket (or a folder standing in for one) seen through a prefix.
All methods are coroutines; every blocking call (boto3, file I/O) runs in a
bounded thread pool so the event loop never waits on the network or the disk.
Errors leave this layer only as ``NotFound``, ``StorageUnavailable`` (of which
``StorageMissing``), ``InvalidRange`` or ``StorageError``, with the underlying cause chained.

What only some backends can do is an optional capability, as rclone's
``fs.Features``: a backend declares it in ``features``, a caller asks there
and calls the matching method, and a backend without it keeps this module's
method, which declines (None, nothing found, nothing done). No caller ever
asks which backend it holds.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

from offload.errors import ExitCode, OffloadError
from offload.keys import UnsafeKey

if TYPE_CHECKING:
    from offload.storage.s3direct import DirectBody
    from offload.storage.uploadmarks import UploadMarks

T = TypeVar("T")

#: Inclusive byte offsets ``(first, last)``; ``last`` None means "to the end".
#: A ``last`` past the end is clamped, as S3 does; a ``first`` at or past the end
#: raises InvalidRange. Suffix ranges (``bytes=-n``) are resolved by the caller,
#: which knows the size.
ByteRange = tuple[int, int | None]

#: What ``put`` accepts: bytes held in memory, a file on disk, or a stream.
#: A plain ``str`` is refused on purpose: it could be either a path or content.
PutSource = bytes | bytearray | memoryview | os.PathLike[str] | AsyncIterable[bytes]

DEFAULT_THREADS = 16
CHUNK_SIZE = 256 * 1024

_METADATA_KEY = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


class StorageError(OffloadError):
    """The backend refused or failed a request; the cause is chained."""

    exit_code = ExitCode.STORAGE


class NotFound(StorageError):
    """No object under that key."""


class StorageUnavailable(StorageError):
    """The backend could not be reached or is overloaded; trying later may work."""


class StorageMissing(StorageUnavailable):
    """The storage itself is not there: its folder or bucket is missing, or it refuses
    the credentials (none, unknown, mis-signed, or denied on the bucket itself).

    Every key would fail alike, so nothing about a key may be concluded from
    it: never a 404 a CDN could cache for every key. It is a kind of
    ``StorageUnavailable`` so callers that ride out an outage (a stale copy, a
    503 with Retry-After) treat it the same; the message says what to fix.
    """


class LinkRefused(UnsafeKey):
    """A write or delete of a key that a link in a storage folder leads elsewhere: out
    of the folder, into its reserved part, or into or out of a fenced (signed)
    prefix. Reading such a key finds nothing; following it would serve or write
    bytes under a name that does not guard them."""


class InvalidRange(StorageError):
    """A byte range that starts at or past the end of the object."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a backend knows of one object.

    ``etag`` is unquoted (``d41d8cd9...`` or ``<md5>-<parts>`` for multipart
    uploads). ``size`` is always the whole object's size, also for ranged gets.
    Listings fill in key, size, etag and last_modified only: content type,
    cache control and metadata come from ``head`` or ``get``.
    """

    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str | None = None
    cache_control: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class ByteStream:
    """Chunks of one object's body, read in the thread pool on demand.

    Closing it (``aclose``, ``async with``, or reading to the end) releases the
    file handle or HTTP connection at once, which matters when a CDN hangs up
    mid-transfer: nothing waits for the garbage collector.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        run: Callable[..., Any],
        length: int,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._read = read
        self._close = close
        self._run = run
        self._remaining = length
        self._chunk_size = chunk_size
        self._closed = False
        #: How many bytes the whole stream yields.
        self.length = length

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        if self._closed or self._remaining <= 0:
            await self.aclose()
            raise StopAsyncIteration
        try:
            data = await self._run(self._read, min(self._chunk_size, self._remaining))
        except BaseException:
            await self.aclose()
            raise
        if not data:
            await self.aclose()
            raise StorageError(f"the object ended {self._remaining} bytes early")
        self._remaining -= len(data)
        return data

    async def read_all(self) -> bytes:
        """Collect the stream; only for bodies known to be small."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Shielded: a caller cancelled here (a client that went away) would otherwise
        # cancel the close still queued in the executor, and leave the file open.
        await asyncio.shield(self._run(self._close))

    async def __aenter__(self) -> ByteStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Return metadata with lower-case keys, refusing keys S3 could not carry as headers."""
    checked: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        key = name.lower()
        if not _METADATA_KEY.match(key):
            raise ValueError(f"metadata key {name!r} must be letters, digits and '-'")
        if not isinstance(value, str):
            raise ValueError(f"metadata value for {name!r} must be a string")
        checked[key] = value
    return checked


def resolve_range(byte_range: ByteRange | None, size: int, key: str) -> tuple[int, int]:
    """Turn a requested range into inclusive offsets inside an object of ``size`` bytes."""
    if byte_range is None:
        return 0, size - 1
    first, last = byte_range
    if first < 0 or (last is not None and last < first):
        raise ValueError(f"malformed byte range {byte_range!r}")
    if first >= size:
        raise InvalidRange(f"range starts at {first} but {key!r} has {size} bytes")
    return first, size - 1 if last is None else min(last, size - 1)


@dataclass(frozen=True)
class Features:
    """What a backend can do beyond the contract; each flag names the methods it vouches for."""

    #: ``open_file``: the object is a file on this host, to send with sendfile.
    local_files: bool = False
    #: ``get_spliceable``: a GET whose body is left in its socket, to splice to a client.
    spliced_gets: bool = False
    #: ``copy_source`` and ``copy_in``: a copy between two storages of this kind
    #: moves no bytes through offload (S3 CopyObject on one endpoint; a file copy).
    server_side_copy: bool = False
    #: ``incomplete_uploads`` and ``abort_incomplete_uploads``: multipart uploads
    #: an interrupted writer left behind, invisible but billed.
    incomplete_uploads: bool = False
    #: ``fast_client``: a client in C (awscrt) for the many small PUTs, listings
    #: and deletions of a sync.
    fast_client: bool = False


@dataclass(frozen=True)
class CopySource:
    """One object as a server-side copy reaches it.

    Two storages whose ``copy_place`` is equal can copy between them without
    the bytes passing through offload; ``bucket`` and ``key`` name the object
    there (an S3 bucket and full key, or a folder and the key inside it).
    """

    place: tuple[str, ...]
    bucket: str
    key: str


class FastClient(Protocol):
    """A sync's fast path for one bucket (``Storage.fast_client``): what boto3 does, cheaper."""

    #: Files up to this size go up in one PUT through it; larger ones through ``Storage.put``.
    single_put_limit: int

    async def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        size: int | None = None,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo: ...

    def list_pages(self, prefix: str = "") -> AsyncIterator[list[ObjectInfo]]: ...

    async def incomplete_uploads(
        self, prefix: str, started_before: datetime
    ) -> dict[str, datetime]: ...

    async def delete(self, keys: Iterable[str]) -> None: ...

    async def close(self) -> None: ...


class Storage(abc.ABC):
    """A bucket, or a folder standing in for one, seen through a key prefix."""

    #: Where the objects live, fit to print (never holds credentials).
    url: str
    #: Where the storage's server is, as configured: "local" for a folder, "aws"
    #: for AWS's own endpoint. Equal ``endpoint`` and ``url``: the same objects.
    endpoint: str = "local"
    #: The optional capabilities this backend has (none by default).
    features: Features = Features()

    def __init__(self, *, executor: Executor | None = None) -> None:
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=DEFAULT_THREADS, thread_name_prefix="offload-storage"
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call in the bounded pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        """Release the thread pool if this backend made its own."""
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @abc.abstractmethod
    async def check(self) -> None:
        """Prove the bucket answers and can be read; raise StorageError or StorageUnavailable."""

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None when there is no such object."""

    @abc.abstractmethod
    async def get(
        self, key: str, byte_range: ByteRange | None = None
    ) -> tuple[ObjectInfo, ByteStream]:
        """The object's info and its body (or one range of it); raise NotFound."""

    @abc.abstractmethod
    async def put(
        self,
        key: str,
        source: PutSource,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store an object whole or not at all: a failed put leaves no partial object."""

    @abc.abstractmethod
    async def delete(self, keys: Iterable[str]) -> None:
        """Delete these keys; keys that do not exist are not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in UTF-8 byte order of keys."""

    async def copy(self, src_key: str, dst_storage: Storage, dst_key: str) -> ObjectInfo:
        """Copy one object with its content type, cache control and metadata.

        Server-side when both storages can reach each other's objects
        (``server_side_copy``, with equal places); otherwise the body streams
        through this process, never held whole.
        """
        if self.features.server_side_copy and dst_storage.features.server_side_copy:
            copied = await dst_storage.copy_in(self, src_key, dst_key)
            if copied is not None:
                return copied
        info, body = await self.get(src_key)
        async with body:
            return await dst_storage.put(
                dst_key,
                body,
                content_type=info.content_type,
                cache_control=info.cache_control,
                metadata=info.metadata,
            )

    async def warm_up(self) -> None:
        """Make ready now what the first request would otherwise wait for; nothing by default.

        For a caller that knows requests will come, while it has other work.
        """
        return

    def etag_is_md5(self, size: int) -> bool:
        """Whether an object of ``size`` bytes put here gets the MD5 of its bytes as ETag.

        S3's multipart uploads do not: a sync then keeps the MD5 in metadata.
        """
        return True

    def put_memory(self, size: int) -> int:
        """The most memory a ``put`` of a file of ``size`` bytes may hold at once."""
        return size

    # -- optional capabilities (see ``Features``); these defaults decline -----------

    async def open_file(self, key: str) -> tuple[BinaryIO, os.stat_result] | None:
        """``local_files``: the open file holding ``key`` and its stat; raise NotFound.

        The caller closes the file, and compares the stat with the info it holds,
        since the file may have been replaced since that info was read.
        """
        return None

    async def get_spliceable(self, key: str, first: int, last: int, size: int) -> DirectBody | None:
        """``spliced_gets``: bytes ``first..last`` of ``key`` (``size`` bytes in all) left
        in their socket, or None when only ``get`` can serve them."""
        return None

    def copy_place(self) -> tuple[str, ...] | None:
        """``server_side_copy``: where a copy to or from this storage can be made
        without the bytes passing through offload (blocking: it may build a client)."""
        return None

    def copy_source(self, key: str) -> CopySource | None:
        """``server_side_copy``: ``key`` as another storage of this place copies it (blocking)."""
        return None

    async def copy_in(self, src: Storage, src_key: str, dst_key: str) -> ObjectInfo | None:
        """``server_side_copy``: copy ``src``'s object to ``dst_key`` here without its
        bytes passing through offload, or None (nothing done) when ``src`` is elsewhere."""
        return None

    async def incomplete_uploads(
        self, prefix: str, started_before: datetime
    ) -> dict[str, datetime]:
        """``incomplete_uploads``: keys under ``prefix`` with an upload begun before
        ``started_before``, each with the earliest start of its uploads."""
        return {}

    async def abort_incomplete_uploads(
        self, prefix: str, started_before: datetime, keys: Iterable[str]
    ) -> int:
        """``incomplete_uploads``: abort the uploads of ``keys`` begun before
        ``started_before`` (later ones belong to a writer running now); how many."""
        return 0

    @property
    def upload_marks(self) -> UploadMarks | None:
        """``incomplete_uploads``: where this storage notes the multipart uploads it starts."""
        return None

    def use_upload_marks(self, marks: UploadMarks | None) -> None:
        """``incomplete_uploads``: note each multipart upload in ``marks`` until it ends,
        so that one a kill cut short is found (``abort_marked_uploads``); None: stop."""
        return

    async def abort_marked_uploads(self, prefix: str) -> int:
        """``incomplete_uploads``: abort the noted uploads under ``prefix`` whose writers
        are no longer running, however recent; how many."""
        return 0

    def fast_client(self, connections: int) -> FastClient | None:
        """``fast_client``: the fast path for a sync's bulk requests, or None (blocking:
        it may read credentials). The caller closes it once its requests have ended."""
        return None

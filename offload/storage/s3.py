"""An S3 bucket (AWS, Wasabi, MinIO, R2, ``rclone serve s3``...) through boto3.

The client is passed in, never made here: tests hand in a moto or rclone
client, and the caller decides endpoint, credentials and timeouts. boto3 is
blocking, so every call runs in the bounded pool; large puts go multipart
with parts in parallel, and any failure aborts the upload so neither a
partial object nor orphaned parts (which S3 bills for) remain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from offload.keys import join_key, key_problem, validate_key
from offload.storage.base import (
    ByteRange,
    ByteStream,
    InvalidRange,
    NotFound,
    ObjectInfo,
    PutSource,
    Storage,
    StorageError,
    StorageUnavailable,
    check_metadata,
)
from offload.storage.content_types import guess_content_type
from offload.storage.s3direct import DirectBody, DirectGets, PresignedGet

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
MAX_SINGLE_COPY = 5 * 1024 * MiB
DELETE_BATCH = 1000

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_BUSY = {
    "SlowDown",
    "ServiceUnavailable",
    "RequestTimeout",
    "InternalError",
    "Throttling",
    "ThrottlingException",
    "RequestTimeTooSkewed",
    "503",
    "500",
}
_DENIED = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
}
# RFC 2231-style marker for metadata values that are not plain ASCII: S3 sends
# metadata as HTTP headers, which cannot carry them faithfully.
_ENCODED = "utf-8''"

#: One part of a multipart upload: a blocking call given (upload id, part number)
#: that sends the part and returns its ETag.
PartSender = Callable[[str, int], str]


class S3Storage(Storage):
    """One bucket, seen through ``prefix``."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        executor: Executor | None = None,
        storage_class: str | None = None,
        multipart_threshold: int = 8 * MiB,
        multipart_chunksize: int = 8 * MiB,
        multipart_concurrency: int = 4,
        copy_threshold: int = MAX_SINGLE_COPY,
    ) -> None:
        super().__init__(executor=executor)
        if multipart_chunksize < MIN_PART_SIZE:
            raise ValueError(f"multipart_chunksize must be at least {MIN_PART_SIZE} bytes")
        # A client, or a callable that makes one on first use: a boto3 client
        # costs a third of a second to build, which a sync that finds nothing
        # to do (its listings go through awscrt) never pays.
        if callable(client) and not hasattr(client, "meta"):
            self._client, self._make_client = None, client
        else:
            self._client, self._make_client = client, None
        self._client_lock = threading.Lock()
        self._direct: DirectGets | None = None  # spliced GETs, made on first use
        self._direct_checked = False
        #: Where the client connects, as configured (None: boto3's default chain).
        self.endpoint_url: str | None = None
        self.region: str | None = None
        self.addressing_style: str | None = None
        self.profile: str | None = None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix and key_problem(self.prefix):
            raise ValueError(f"bad storage prefix {prefix!r}: {key_problem(self.prefix)}")
        self.storage_class = storage_class or None
        self.multipart_threshold = max(multipart_threshold, 0)
        self.multipart_chunksize = multipart_chunksize
        self.multipart_concurrency = max(multipart_concurrency, 1)
        self.copy_threshold = copy_threshold
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    assert self._make_client is not None
                    self._client = self._make_client()
        return self._client

    # -- plumbing ----------------------------------------------------------

    def _full(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key))

    def _short(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    async def _call(self, method: str, what: str, **kwargs: Any) -> Any:
        """Call a client method in the pool; botocore errors come back translated."""
        return await self._run(self._call_sync, method, what, **kwargs)

    def _call_sync(self, method: str, what: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: Exception, what: str) -> StorageError:
        endpoint = self.client.meta.endpoint_url
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = error.get("Message") or code
            if code in _NOT_FOUND:
                return NotFound(f"no object {what!r} in {self.url}")
            if code == "InvalidRange" or status == 416:
                return InvalidRange(f"range outside {what!r} in {self.url}")
            if code == "NoSuchBucket":
                return StorageError(f"the bucket {self.bucket!r} does not exist at {endpoint}")
            if code in _DENIED:
                return StorageError(f"{self.url} refused access ({code}) for {what!r}")
            if code in _BUSY or status >= 500:
                return StorageUnavailable(f"{self.url} is unavailable ({code}): {message}")
            return StorageError(f"{self.url}: {what!r}: {code}: {message}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"no usable S3 credentials for {self.url}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or a profile"
            )
        if isinstance(exc, BotoConnectionError):
            return StorageUnavailable(f"cannot reach {endpoint} for {self.url}: {exc}")
        return StorageError(f"{self.url}: {what!r}: {exc}")

    def _info(self, key: str, response: Mapping[str, Any], size: int) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=size,
            etag=response.get("ETag", "").strip('"'),
            last_modified=response.get("LastModified") or datetime.now(UTC),
            content_type=response.get("ContentType"),
            cache_control=response.get("CacheControl"),
            metadata=_decode_metadata(response.get("Metadata") or {}),
        )

    # -- reading -----------------------------------------------------------

    async def check(self) -> None:
        await self._call(
            "list_objects_v2", self.url, Bucket=self.bucket, Prefix=self._list_prefix(""), MaxKeys=1
        )

    async def head(self, key: str) -> ObjectInfo | None:
        full = self._full(key)
        try:
            response = await self._call("head_object", key, Bucket=self.bucket, Key=full)
        except NotFound:
            return None
        return self._info(key, response, response["ContentLength"])

    async def get(
        self, key: str, byte_range: ByteRange | None = None
    ) -> tuple[ObjectInfo, ByteStream]:
        full = self._full(key)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if byte_range is not None:
            first, last = byte_range
            if first < 0 or (last is not None and last < first):
                raise ValueError(f"malformed byte range {byte_range!r}")
            kwargs["Range"] = f"bytes={first}-{'' if last is None else last}"
        response = await self._call("get_object", key, **kwargs)
        length = response["ContentLength"]
        size = length
        if "ContentRange" in response:  # "bytes 0-9/1234"
            size = int(response["ContentRange"].rsplit("/", 1)[1])
        body = response["Body"]

        def read(amount: int) -> bytes:
            try:
                return body.read(amount)
            except (BotoCoreError, ClientError) as exc:
                raise self._translate(exc, key) from exc

        return self._info(key, response, size), ByteStream(read, body.close, self._run, length)

    async def get_spliceable(self, key: str, first: int, last: int, size: int) -> DirectBody | None:
        """Bytes ``first..last`` of ``key`` (``size`` bytes in all) left in their socket.

        For the origin to splice to its client (``s3direct``).

        None when the endpoint is not plain HTTP, or the answer is anything but
        the range asked for: ``get`` then serves it.
        """
        if not self._direct_checked:
            self._direct, self._direct_checked = DirectGets.for_storage(self.presigned_get), True
        if self._direct is None:
            return None
        return await self._direct.get(key, first, last, size)

    async def presigned_get(self, key: str, expires_in: int) -> PresignedGet:
        """A presigned GET of ``key`` valid ``expires_in`` seconds, for ``s3direct``."""
        params = {"Bucket": self.bucket, "Key": self._full(key)}

        def presign() -> PresignedGet:
            config = self.client.meta.config
            url = self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
            return PresignedGet(
                url, float(config.connect_timeout or 5.0), float(config.read_timeout or 60.0)
            )

        return await self._run(presign)

    async def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        await super().close()

    # -- writing -----------------------------------------------------------

    def _put_args(
        self,
        key: str,
        content_type: str | None,
        cache_control: str | None,
        metadata: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "ContentType": content_type or guess_content_type(key),
            "Metadata": _encode_metadata(check_metadata(metadata)),
        }
        if cache_control:
            args["CacheControl"] = cache_control
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args

    async def put(
        self,
        key: str,
        source: PutSource,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        full = self._full(key)
        args = self._put_args(key, content_type, cache_control, metadata)
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            if len(data) <= self.multipart_threshold:
                return await self._put_single(key, full, data, args)
            return await self._put_multipart(
                key, full, args, _slices(data, self._part_size(len(data)))
            )
        if isinstance(source, os.PathLike):
            path = Path(source)
            size = (await self._run(path.stat)).st_size
            if size <= self.multipart_threshold:
                return await self._run(self._put_file_sync, key, full, path, args)
            return await self._put_multipart(key, full, args, self._file_parts(full, path, size))
        if isinstance(source, AsyncIterable):
            return await self._put_stream(key, full, source, args)
        raise TypeError(f"cannot store a {type(source).__name__}; pass bytes, a Path or a stream")

    def _part_size(self, size: int) -> int:
        """The configured part size, grown when needed to stay within S3's 10,000 parts."""
        return max(self.multipart_chunksize, -(-size // MAX_PARTS))

    async def _put_single(
        self, key: str, full: str, data: bytes, args: dict[str, Any]
    ) -> ObjectInfo:
        response = await self._call(
            "put_object", key, Bucket=self.bucket, Key=full, Body=data, **args
        )
        return self._written(key, len(data), response["ETag"], args)

    def _put_file_sync(self, key: str, full: str, path: Path, args: dict[str, Any]) -> ObjectInfo:
        """One PUT streamed from the open file: memory holds a socket buffer, not the file."""
        with open(path, "rb") as body:
            size = os.fstat(body.fileno()).st_size
            response = self._call_sync(
                "put_object", key, Bucket=self.bucket, Key=full, Body=body,
                ContentLength=size, **args,
            )  # fmt: skip
        return self._written(key, size, response["ETag"], args)

    def _written(self, key: str, size: int, etag: str, args: Mapping[str, Any]) -> ObjectInfo:
        """What was just stored; last_modified is this host's clock (no extra HEAD)."""
        return ObjectInfo(
            key=key,
            size=size,
            etag=etag.strip('"'),
            last_modified=datetime.now(UTC),
            content_type=args["ContentType"],
            cache_control=args.get("CacheControl"),
            metadata=_decode_metadata(args["Metadata"]),
        )

    async def _put_stream(
        self, key: str, full: str, source: AsyncIterable[bytes], args: dict[str, Any]
    ) -> ObjectInfo:
        """Buffer up to the threshold; a stream that ends by then is one PUT."""
        chunks = aiter(source)
        head = bytearray()
        async for chunk in chunks:
            head += chunk
            if len(head) > self.multipart_threshold:
                break
        else:
            return await self._put_single(key, full, bytes(head), args)
        parts = _rechunk(head, chunks, self.multipart_chunksize)
        return await self._put_multipart(key, full, args, _payload_senders(self, full, parts))

    def _file_parts(
        self, full: str, path: Path, size: int
    ) -> AsyncIterator[tuple[PartSender, int]]:
        part_size = self._part_size(size)

        async def senders() -> AsyncIterator[tuple[PartSender, int]]:
            for offset in range(0, size, part_size):
                length = min(part_size, size - offset)

                def send(
                    upload_id: str, number: int, offset: int = offset, length: int = length
                ) -> str:
                    with path.open("rb") as handle:
                        handle.seek(offset)
                        data = handle.read(length)
                    if len(data) != length:
                        raise OSError(f"{path} changed size while it was being uploaded")
                    return self._upload_part(full, upload_id, number, data)

                yield send, length

        return senders()

    def _upload_part(self, full: str, upload_id: str, number: int, data: bytes) -> str:
        response = self._call_sync(
            "upload_part",
            full,
            Bucket=self.bucket,
            Key=full,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return response["ETag"]

    async def _put_multipart(
        self,
        key: str,
        full: str,
        args: dict[str, Any],
        parts: AsyncIterator[tuple[PartSender, int]] | Iterable[bytes],
    ) -> ObjectInfo:
        if not isinstance(parts, AsyncIterator):
            parts = _payload_senders(self, full, _aiter_of(parts))
        etag, size = await self._multipart(key, full, args, parts)
        return self._written(key, size, etag, args)

    async def _multipart(
        self,
        key: str,
        full: str,
        args: dict[str, Any],
        parts: AsyncIterator[tuple[PartSender, int]],
    ) -> tuple[str, int]:
        """Send parts concurrently (bounded); on any failure abort so no parts remain."""
        created = await self._call(
            "create_multipart_upload", key, Bucket=self.bucket, Key=full, **args
        )
        upload_id = created["UploadId"]
        slots = asyncio.Semaphore(self.multipart_concurrency)
        tasks: list[asyncio.Task[str]] = []
        size = 0

        async def send(sender: PartSender, number: int) -> str:
            try:
                return await self._run(sender, upload_id, number)
            finally:
                slots.release()

        try:
            while True:
                await slots.acquire()  # a free slot before the next part is read: bounded memory
                if any(task.done() and task.exception() for task in tasks):
                    slots.release()
                    break
                try:
                    sender, length = await anext(parts)
                except StopAsyncIteration:
                    slots.release()
                    break
                tasks.append(asyncio.create_task(send(sender, len(tasks) + 1)))
                size += length
            etags = await asyncio.gather(*tasks)
            completed = await self._call(
                "complete_multipart_upload",
                key,
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
                },
            )
        except BaseException:
            await asyncio.shield(self._abort(key, full, upload_id, tasks))
            raise
        return completed["ETag"], size

    async def _abort(
        self, key: str, full: str, upload_id: str, tasks: list[asyncio.Task[str]]
    ) -> None:
        """Wait for parts in flight (a part landing after the abort would linger), then abort."""
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._call(
                "abort_multipart_upload", key, Bucket=self.bucket, Key=full, UploadId=upload_id
            )
        except StorageError as exc:
            log.warning("could not abort the multipart upload of %r in %s: %s", key, self.url, exc)

    async def delete(self, keys: Iterable[str]) -> None:
        fulls = [self._full(key) for key in keys]
        batches = [fulls[i : i + DELETE_BATCH] for i in range(0, len(fulls), DELETE_BATCH)]
        slots = asyncio.Semaphore(self.multipart_concurrency)

        async def delete_batch(batch: list[str]) -> None:
            async with slots:
                response = await self._call(
                    "delete_objects",
                    batch[0],
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"{self.url} refused to delete {len(errors)} of {len(batch)} objects, "
                    f"first {self._short(first.get('Key', ''))!r}: {first.get('Code')}"
                )

        await asyncio.gather(*(delete_batch(batch) for batch in batches))

    async def copy(self, src_key: str, dst_storage: Storage, dst_key: str) -> ObjectInfo:
        # The clients may not exist yet: building one reads config files, so not here.
        same = isinstance(dst_storage, S3Storage) and await self._run(
            self._same_endpoint, dst_storage
        )
        if not same:
            return await super().copy(src_key, dst_storage, dst_key)
        assert isinstance(dst_storage, S3Storage)
        info = await self.head(src_key)
        if info is None:
            raise NotFound(f"no object {src_key!r} in {self.url}")
        source = {"Bucket": self.bucket, "Key": self._full(src_key)}
        dst_full = dst_storage._full(dst_key)
        args = dst_storage._put_args(dst_key, info.content_type, info.cache_control, info.metadata)
        if info.size <= self.copy_threshold:
            response = await dst_storage._call(
                "copy_object",
                dst_key,
                Bucket=dst_storage.bucket,
                Key=dst_full,
                CopySource=source,
                MetadataDirective="REPLACE",
                **args,
            )
            etag = response["CopyObjectResult"]["ETag"]
        else:
            parts = dst_storage._copy_parts(dst_full, source, info.size)
            etag, _ = await dst_storage._multipart(dst_key, dst_full, args, parts)
        return dst_storage._written(dst_key, info.size, etag, args)

    def _same_endpoint(self, other: S3Storage) -> bool:
        """Whether a server-side copy can reach from this bucket to ``other``'s."""
        mine, theirs = self.client.meta, other.client.meta
        return mine.endpoint_url == theirs.endpoint_url and mine.region_name == theirs.region_name

    def _copy_parts(
        self, full: str, source: dict[str, str], size: int
    ) -> AsyncIterator[tuple[PartSender, int]]:
        part_size = max(self._part_size(size), self.multipart_chunksize)

        async def senders() -> AsyncIterator[tuple[PartSender, int]]:
            for offset in range(0, size, part_size):
                last = min(offset + part_size, size) - 1

                def send(
                    upload_id: str, number: int, offset: int = offset, last: int = last
                ) -> str:
                    response = self._call_sync(
                        "upload_part_copy",
                        full,
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=source,
                        CopySourceRange=f"bytes={offset}-{last}",
                    )
                    return response["CopyPartResult"]["ETag"]

                yield send, last - offset + 1

        return senders()

    # -- listing -----------------------------------------------------------

    def _list_prefix(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _uploads_sync(self, prefix: str) -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._list_prefix(prefix)}
        while True:
            try:
                page = self.client.list_multipart_uploads(**args)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                    return  # rclone's answer when there are none
                raise self._translate(exc, prefix) from exc
            except BotoCoreError as exc:
                raise self._translate(exc, prefix) from exc
            yield from page.get("Uploads") or []
            if not page.get("IsTruncated"):
                return
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    async def incomplete_uploads(
        self, prefix: str, started_before: datetime
    ) -> dict[str, datetime]:
        """Keys under ``prefix`` with a multipart upload begun before ``started_before``.

        What an interrupted run left: parts that are invisible but billed.
        The earliest start of each key's uploads.
        """

        def find() -> dict[str, datetime]:
            found: dict[str, datetime] = {}
            for upload in self._uploads_sync(prefix):
                initiated = upload["Initiated"]
                if initiated < started_before:
                    key = self._short(upload["Key"])
                    found[key] = min(initiated, found.get(key, initiated))
            return found

        return await self._run(find)

    async def abort_incomplete_uploads(
        self, prefix: str, started_before: datetime, keys: Iterable[str]
    ) -> int:
        """Abort the uploads of ``keys`` begun before ``started_before``; how many.

        Uploads begun later belong to someone running now and are left alone.
        """
        wanted = {self._full(key) for key in keys}

        def sweep() -> int:
            aborted = 0
            for upload in list(self._uploads_sync(prefix)):
                if upload["Key"] in wanted and upload["Initiated"] < started_before:
                    self._call_sync(
                        "abort_multipart_upload", upload["Key"], Bucket=self.bucket,
                        Key=upload["Key"], UploadId=upload["UploadId"],
                    )  # fmt: skip
                    aborted += 1
            return aborted

        return await self._run(sweep)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=self._list_prefix(prefix)))

        def next_page() -> dict[str, Any] | None:
            try:
                return next(pages, None)
            except (BotoCoreError, ClientError) as exc:
                raise self._translate(exc, prefix) from exc

        while (page := await self._run(next_page)) is not None:
            for item in page.get("Contents") or []:
                yield ObjectInfo(
                    key=self._short(item["Key"]),
                    size=item["Size"],
                    etag=item.get("ETag", "").strip('"'),
                    last_modified=item["LastModified"],
                )


def _encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        if value.isascii() and value.isprintable() and not value.startswith(_ENCODED)
        else _ENCODED + quote(value, safe="")
        for key, value in metadata.items()
    }


def _decode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {
        key.lower(): unquote(value[len(_ENCODED) :]) if value.startswith(_ENCODED) else value
        for key, value in metadata.items()
    }


def _slices(data: bytes, part_size: int) -> list[bytes]:
    return [data[i : i + part_size] for i in range(0, len(data), part_size)]


async def _aiter_of(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def _rechunk(
    head: bytearray, rest: AsyncIterator[bytes], part_size: int
) -> AsyncIterator[bytes]:
    """Cut a stream into parts of exactly ``part_size`` bytes (the last may be shorter)."""
    buffer = head
    while True:
        while len(buffer) >= part_size:
            yield bytes(buffer[:part_size])
            del buffer[:part_size]
        try:
            buffer += await anext(rest)
        except StopAsyncIteration:
            break
    if buffer:
        yield bytes(buffer)


async def _payload_senders(
    storage: S3Storage, full: str, payloads: AsyncIterator[bytes]
) -> AsyncIterator[tuple[PartSender, int]]:
    async for payload in payloads:

        def send(upload_id: str, number: int, payload: bytes = payload) -> str:
            return storage._upload_part(full, upload_id, number, payload)

        yield send, len(payload)

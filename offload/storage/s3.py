"""An S3 bucket (AWS, Wasabi, MinIO, R2, ``rclone serve s3``...) through boto3.

The client is passed in, never made here: tests hand in a moto or rclone
client, and ``open_storage`` decides endpoint, credentials and timeouts from
an ``S3Config``. boto3 is blocking, so every call runs in the bounded pool.
Objects up to ``multipart_threshold`` go up in one PutObject; larger ones,
and server-side copies too large for one CopyObject, go in parts
(``s3multipart``, which says why it is not s3transfer), and a failed upload
is aborted so neither a partial object nor orphaned parts remain. What boto3
answers goes through the one translator, ``s3errors``.

Its capabilities: spliced GETs over plain HTTP (``s3direct``), server-side
copies between buckets of one endpoint, finding and aborting incomplete
uploads, and awscrt's client for a sync's bulk requests (``crt``). The public
surface that ``crt`` builds on: ``bucket``, ``prefix``, ``config``,
``full_key``, ``short_key``, ``list_prefix``, ``connection`` and
``credentials``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from offload.keys import join_key, key_problem, validate_key
from offload.storage import s3errors
from offload.storage.base import (
    ByteRange,
    ByteStream,
    CopySource,
    FastClient,
    Features,
    NotFound,
    ObjectInfo,
    PutSource,
    Storage,
    StorageError,
    StorageMissing,
)
from offload.storage.s3config import DEFAULTS, DELETE_BATCH, Connection, S3Config
from offload.storage.s3direct import DirectBody, DirectGets, PresignedGet
from offload.storage.s3headers import info_of, put_args, written
from offload.storage.s3multipart import Multipart
from offload.storage.uploadmarks import UploadMarks


@dataclass(frozen=True)
class StaticCredentials:
    """Fixed keys from the environment, shaped like botocore's frozen credentials.

    Not botocore's own ``Credentials``: importing ``botocore.credentials`` costs
    about 50 ms and 9 MB (it pulls in botocore's HTTP stack), which a sync that
    finds nothing to do, and signs with awscrt, would pay for three strings.
    """

    access_key: str
    secret_key: str
    token: str | None = None

    def get_frozen_credentials(self) -> StaticCredentials:
        return self


#: Seconds an S3 server's clock may be ahead of ours when matching a note to its upload.
CLOCK_SKEW = 300.0


class S3Storage(Storage):
    """One bucket, seen through ``prefix``."""

    features = Features(
        spliced_gets=True, server_side_copy=True, incomplete_uploads=True, fast_client=True
    )

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        config: S3Config = DEFAULTS,
        executor: Executor | None = None,
        credentials: Callable[[], Any] | None = None,
    ) -> None:
        """``client`` is a boto3 S3 client, or a callable that makes one on first use.

        ``credentials`` returns the botocore credentials the client signs with,
        for clients other than boto3's; by default they come from botocore's
        chain (the environment, then ``config.profile``).
        """
        super().__init__(executor=executor)
        # A boto3 client costs a third of a second to build, which a sync that
        # finds nothing to do (its listings go through awscrt) never pays.
        if callable(client) and not hasattr(client, "meta"):
            self._client, self._make_client = None, client
        else:
            self._client, self._make_client = client, None
        self._client_lock = threading.Lock()
        self._credentials = credentials
        self._direct: DirectGets | None = None  # spliced GETs, made on first use
        self._direct_checked = False
        self.config = config
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix and key_problem(self.prefix):
            raise ValueError(f"bad storage prefix {prefix!r}: {key_problem(self.prefix)}")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint = config.endpoint_url or "aws"
        self._marks: UploadMarks | None = None  # notes of multipart uploads (use_upload_marks)
        self._multipart = Multipart(self._call_sync, self.run, config, bucket, self._marked)

    @property
    def client(self) -> Any:
        """The boto3 client, built on first use (blocking: call it in the pool)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    assert self._make_client is not None
                    self._client = self._make_client()
        return self._client

    async def warm_up(self) -> None:
        """Build the boto3 client (a third of a second) in the pool."""
        await self.run(lambda: self.client)

    # -- the public surface of keys and connections ----------------------------------

    def full_key(self, key: str) -> str:
        """The key in the bucket of the storage's ``key`` (checked: UnsafeKey)."""
        return join_key(self.prefix, validate_key(key))

    def short_key(self, full_key: str) -> str:
        """The storage's key for a key of the bucket under its prefix."""
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def list_prefix(self, prefix: str) -> str:
        """The bucket's listing prefix for the storage's ``prefix``."""
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def connection(self) -> Connection:
        """Where requests go: the client's answer once it exists, else the config's and
        the environment's, without building a client (blocking: may read AWS config)."""
        if self._client is not None:
            meta = self._client.meta
            style = (meta.config.s3 or {}).get("addressing_style") or "auto"
            return Connection(meta.endpoint_url, meta.region_name or "us-east-1", style)
        env = os.environ
        endpoint = (
            self.config.endpoint_url
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
        )
        region = self.config.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            import botocore.session

            region = botocore.session.Session(profile=self.config.profile).get_config_variable(
                "region"
            )
        region = region or "us-east-1"
        endpoint = endpoint or f"https://s3.{region}.amazonaws.com"
        return Connection(endpoint, region, self.config.addressing_style or "auto")

    def credentials(self) -> Any:
        """The botocore credentials requests are signed with, or None (blocking).

        From ``credentials`` when given; else the environment's keys (when no
        profile is named), else botocore's whole chain for the profile: SSO,
        assumed roles, instance roles. botocore's public ``get_credentials``.
        """
        if self._credentials is not None:
            return self._credentials()
        env = os.environ
        if (
            not self.config.profile
            and env.get("AWS_ACCESS_KEY_ID")
            and env.get("AWS_SECRET_ACCESS_KEY")
        ):
            return StaticCredentials(
                env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
            )
        import botocore.session

        return botocore.session.Session(profile=self.config.profile).get_credentials()

    # -- plumbing ----------------------------------------------------------

    def _place(self) -> s3errors.Place:
        endpoint = self._client.meta.endpoint_url if self._client is not None else self.endpoint
        return s3errors.Place(self.url, self.bucket, endpoint)

    async def _call(self, method: str, what: str, **kwargs: Any) -> Any:
        """Call a client method in the pool; botocore errors come back translated."""
        return await self.run(self._call_sync, method, what, **kwargs)

    def _call_sync(self, method: str, what: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise s3errors.for_botocore(exc, what, self._place()) from exc

    # -- reading -----------------------------------------------------------

    async def check(self) -> None:
        """List one key: the bucket exists, and our credentials may read it (else
        StorageMissing, AccessDenied included: it is the bucket's own refusal).

        A HEAD's 404 or 403 has no body to tell a missing key from a missing
        bucket or refused credentials: the origin asks this before it answers one.
        """
        try:
            await self._call(
                "list_objects_v2",
                self.url,
                Bucket=self.bucket,
                Prefix=self.list_prefix(""),
                MaxKeys=1,
            )
        except StorageMissing:
            raise
        except StorageError as exc:
            code = s3errors.code_of(exc.__cause__) if exc.__cause__ else ""
            if code in s3errors.DENIED:
                raise StorageMissing(f"{self.url} refused to list the bucket ({code})") from exc
            raise

    async def head(self, key: str) -> ObjectInfo | None:
        full = self.full_key(key)
        try:
            response = await self._call("head_object", key, Bucket=self.bucket, Key=full)
        except NotFound:
            return None
        return info_of(key, response, response["ContentLength"])

    async def get(
        self, key: str, byte_range: ByteRange | None = None
    ) -> tuple[ObjectInfo, ByteStream]:
        full = self.full_key(key)
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
                raise s3errors.for_botocore(exc, key, self._place()) from exc

        return info_of(key, response, size), ByteStream(read, body.close, self.run, length)

    async def get_spliceable(self, key: str, first: int, last: int, size: int) -> DirectBody | None:
        """None when the endpoint is not plain HTTP, or the answer is anything but
        the range asked for (see ``s3direct``)."""
        if not self._direct_checked:
            self._direct, self._direct_checked = DirectGets.for_storage(self.presigned_get), True
        if self._direct is None:
            return None
        return await self._direct.get(key, first, last, size)

    async def presigned_get(self, key: str, expires_in: int) -> PresignedGet:
        """A presigned GET of ``key`` valid ``expires_in`` seconds, for ``s3direct``."""
        params = {"Bucket": self.bucket, "Key": self.full_key(key)}

        def presign() -> PresignedGet:
            config = self.client.meta.config
            url = self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
            return PresignedGet(
                url, float(config.connect_timeout or 5.0), float(config.read_timeout or 60.0)
            )

        return await self.run(presign)

    async def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        await super().close()

    # -- writing -----------------------------------------------------------

    def etag_is_md5(self, size: int) -> bool:
        return size <= self.config.multipart_threshold

    def put_memory(self, size: int) -> int:
        """A multipart upload holds its parts in flight; a single PUT its one body."""
        if size <= self.config.multipart_threshold:
            return size
        return min(size, self.config.multipart_concurrency * self.config.multipart_chunksize)

    def _args(
        self,
        key: str,
        content_type: str | None,
        cache_control: str | None,
        metadata: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        return put_args(key, content_type, cache_control, metadata, self.config.storage_class)

    async def put(
        self,
        key: str,
        source: PutSource,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        full = self.full_key(key)
        args = self._args(key, content_type, cache_control, metadata)
        threshold = self.config.multipart_threshold
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            if len(data) <= threshold:
                return await self._put_single(key, full, data, args)
            etag, size = await self._multipart.upload_bytes(key, full, data, args)
            return written(key, size, etag, args)
        if isinstance(source, os.PathLike):
            path = Path(source)
            size = (await self.run(path.stat)).st_size
            if size <= threshold:
                return await self.run(self._put_file_sync, key, full, path, args)
            etag, size = await self._multipart.upload_file(key, full, path, size, args)
            return written(key, size, etag, args)
        if isinstance(source, AsyncIterable):
            return await self._put_stream(key, full, source, args)
        raise TypeError(f"cannot store a {type(source).__name__}; pass bytes, a Path or a stream")

    async def _put_single(
        self, key: str, full: str, data: bytes, args: dict[str, Any]
    ) -> ObjectInfo:
        response = await self._call(
            "put_object", key, Bucket=self.bucket, Key=full, Body=data, **args
        )
        return written(key, len(data), response["ETag"], args)

    def _put_file_sync(self, key: str, full: str, path: Path, args: dict[str, Any]) -> ObjectInfo:
        """One PUT streamed from the open file: memory holds a socket buffer, not the file."""
        with open(path, "rb") as body:
            size = os.fstat(body.fileno()).st_size
            response = self._call_sync(
                "put_object", key, Bucket=self.bucket, Key=full, Body=body,
                ContentLength=size, **args,
            )  # fmt: skip
        return written(key, size, response["ETag"], args)

    async def _put_stream(
        self, key: str, full: str, source: AsyncIterable[bytes], args: dict[str, Any]
    ) -> ObjectInfo:
        """Buffer up to the threshold; a stream that ends by then is one PUT."""
        chunks = aiter(source)
        head = bytearray()
        async for chunk in chunks:
            head += chunk
            if len(head) > self.config.multipart_threshold:
                break
        else:
            return await self._put_single(key, full, bytes(head), args)
        etag, size = await self._multipart.upload_stream(key, full, head, chunks, args)
        return written(key, size, etag, args)

    async def delete(self, keys: Iterable[str]) -> None:
        fulls = [self.full_key(key) for key in keys]
        batches = [fulls[i : i + DELETE_BATCH] for i in range(0, len(fulls), DELETE_BATCH)]
        slots = asyncio.Semaphore(self.config.multipart_concurrency)

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
                    f"first {self.short_key(first.get('Key', ''))!r}: {first.get('Code')}"
                )

        await asyncio.gather(*(delete_batch(batch) for batch in batches))

    # -- server-side copies --------------------------------------------------

    def copy_place(self) -> tuple[str, ...]:
        """One endpoint and region: a CopyObject reaches any bucket there (builds the client)."""
        meta = self.client.meta
        return ("s3", meta.endpoint_url, meta.region_name or "")

    def copy_source(self, key: str) -> CopySource:
        return CopySource(self.copy_place(), self.bucket, self.full_key(key))

    async def copy_in(self, src: Storage, src_key: str, dst_key: str) -> ObjectInfo | None:
        """CopyObject from a bucket on this endpoint; in parts above ``copy_threshold``."""

        def where() -> tuple[CopySource | None, tuple[str, ...]]:
            return src.copy_source(src_key), self.copy_place()

        # The clients may not exist yet: building one reads config files, so not here.
        source, place = await self.run(where)
        if source is None or source.place != place:
            return None
        info = await src.head(src_key)
        if info is None:
            raise NotFound(f"no object {src_key!r} in {src.url}")
        full = self.full_key(dst_key)
        args = self._args(dst_key, info.content_type, info.cache_control, info.metadata)
        copy_source = {"Bucket": source.bucket, "Key": source.key}
        if info.size > self.config.copy_threshold:
            etag = await self._multipart.copy(dst_key, full, copy_source, info.size, args)
        else:
            response = await self._call(
                "copy_object", dst_key, Bucket=self.bucket, Key=full, CopySource=copy_source,
                MetadataDirective="REPLACE", **args,
            )  # fmt: skip
            etag = response["CopyObjectResult"]["ETag"]
        return written(dst_key, info.size, etag, args)

    # -- incomplete uploads --------------------------------------------------

    def _uploads_sync(self, prefix: str) -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.list_prefix(prefix)}
        while True:
            try:
                page = self.client.list_multipart_uploads(**args)
            except (BotoCoreError, ClientError) as exc:
                if s3errors.code_of(exc) == "NoSuchUpload":
                    return  # rclone's answer when there are none
                raise s3errors.for_botocore(exc, prefix, self._place()) from exc
            yield from page.get("Uploads") or []
            if not page.get("IsTruncated"):
                return
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    async def incomplete_uploads(
        self, prefix: str, started_before: datetime
    ) -> dict[str, datetime]:
        def find() -> dict[str, datetime]:
            found: dict[str, datetime] = {}
            for upload in self._uploads_sync(prefix):
                initiated = upload["Initiated"]
                if initiated < started_before:
                    key = self.short_key(upload["Key"])
                    found[key] = min(initiated, found.get(key, initiated))
            return found

        return await self.run(find)

    async def abort_incomplete_uploads(
        self, prefix: str, started_before: datetime, keys: Iterable[str]
    ) -> int:
        wanted = {self.full_key(key) for key in keys}

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

        return await self.run(sweep)

    # -- offload's own incomplete uploads -------------------------------------------

    @property
    def upload_marks(self) -> UploadMarks | None:
        return self._marks

    def use_upload_marks(self, marks: UploadMarks | None) -> None:
        self._marks = marks

    def _marks_place(self) -> str:
        """The bucket as notes name it: its endpoint as configured, or as the environment says."""
        env = os.environ
        endpoint = (
            self.config.endpoint_url
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or "aws"
        )
        return f"{endpoint}|{self.bucket}"

    def _marked(self) -> tuple[UploadMarks, str] | None:
        marks = self._marks
        return None if marks is None else (marks, self._marks_place())

    async def abort_marked_uploads(self, prefix: str) -> int:
        """Abort the noted uploads under ``prefix`` whose writers are gone, at any age.

        A note without an upload id (its writer was killed while the upload was
        being created) takes the uploads of its key begun since shortly before
        it. An abort that fails keeps its note for the next run.
        """
        marks = self._marks
        if marks is None:
            return 0
        place = self._marks_place()

        def sweep() -> int:
            left = marks.leftovers(place, self.list_prefix(prefix))
            if not left:
                return 0
            targets = [(lo, lo.upload_id) for lo in left if lo.upload_id is not None]
            unknown = {lo.key: lo for lo in left if lo.upload_id is None}
            if unknown:
                noted = marks.upload_ids(place, self.list_prefix(prefix))  # a live writer's
                for upload in self._uploads_sync(prefix):
                    lo = unknown.get(upload["Key"])
                    if (
                        lo is not None
                        and upload["UploadId"] not in noted
                        and upload["Initiated"].timestamp() >= lo.begun - CLOCK_SKEW
                    ):
                        targets.append((lo, upload["UploadId"]))
            aborted, failed = 0, set()
            for lo, upload_id in targets:
                try:
                    self._call_sync(
                        "abort_multipart_upload", lo.key, Bucket=self.bucket, Key=lo.key,
                        UploadId=upload_id,
                    )  # fmt: skip
                    aborted += 1
                except StorageError as exc:
                    if s3errors.code_of(exc.__cause__ or exc) != "NoSuchUpload":
                        failed.add(lo.mark)  # completed or aborted already: nothing left
            marks.forget(lo.mark for lo in left if lo.mark not in failed)
            return aborted

        return await self.run(sweep)

    # -- listing and the fast path ---------------------------------------------------

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        def paginate() -> Iterator[dict[str, Any]]:
            paginator = self.client.get_paginator("list_objects_v2")
            return iter(paginator.paginate(Bucket=self.bucket, Prefix=self.list_prefix(prefix)))

        pages = await self.run(paginate)

        def next_page() -> dict[str, Any] | None:
            try:
                return next(pages, None)
            except (BotoCoreError, ClientError) as exc:
                raise s3errors.for_botocore(exc, prefix, self._place()) from exc

        while (page := await self.run(next_page)) is not None:
            for item in page.get("Contents") or []:
                yield ObjectInfo(
                    key=self.short_key(item["Key"]),
                    size=item["Size"],
                    etag=item.get("ETag", "").strip('"'),
                    last_modified=item["LastModified"],
                )

    def fast_client(self, connections: int) -> FastClient | None:
        """awscrt's client for this bucket, or None: no awscrt, ``OFFLOAD_NO_CRT`` set,
        or no credentials to sign with."""
        from offload.storage import crt

        return crt.for_storage(self, connections=connections)

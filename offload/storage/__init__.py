"""Storage backends behind one async contract, and the factory that picks one by URL.

``open_storage`` is the one place that turns a URL and an ``S3Config`` into a
backend; it builds the boto3 client for ``s3://`` URLs so the backends never
make their own. It reads AWS config files and so blocks: call it from a
thread (the app does) or before the event loop starts.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from offload.storage.base import (
    ByteRange,
    ByteStream,
    Features,
    InvalidRange,
    NotFound,
    ObjectInfo,
    Storage,
    StorageError,
    StorageUnavailable,
)
from offload.storage.local import LocalStorage
from offload.storage.s3config import DEFAULTS, S3Config

if TYPE_CHECKING:
    from offload.storage.s3 import S3Storage

__all__ = [
    "ByteRange",
    "ByteStream",
    "Features",
    "InvalidRange",
    "LocalStorage",
    "NotFound",
    "ObjectInfo",
    "S3Config",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "open_storage",
    "parse_storage_url",
]


def __getattr__(name: str) -> Any:
    """``S3Storage`` on first use: boto3 costs a tenth of a second that most commands never need."""
    if name == "S3Storage":
        from offload.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_storage_url(url: str) -> tuple[str, str, str]:
    """Split a storage URL into (scheme, bucket or folder, prefix); raise ValueError if unusable."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"a file URL names no host: use file:///abs/path, not {url!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"a file URL needs an absolute path: {url!r}")
        return "file", path, ""
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"an s3 URL needs a bucket: s3://bucket/prefix, not {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"an s3 URL takes no '?' or '#': {url!r}")
        return "s3", parts.netloc, unquote(parts.path).strip("/")
    raise ValueError(f"storage must be a file:// or s3:// URL, got {url!r}")


def open_storage(
    url: str, *, executor: Executor | None = None, config: S3Config = DEFAULTS
) -> Storage:
    """Build the backend a storage URL names (``file:///abs/path`` or ``s3://bucket/prefix``).

    ``config`` is for ``s3://`` URLs: a folder has no options.
    """
    scheme, location, prefix = parse_storage_url(url)
    if scheme == "file":
        return LocalStorage(Path(location), executor=executor)
    from offload.storage.s3 import S3Storage

    return S3Storage(
        lambda: make_s3_client(config), location, prefix, config=config, executor=executor
    )


def make_s3_client(config: S3Config = DEFAULTS) -> Any:
    """A boto3 S3 client; credentials come from boto3's standard chain.

    Without ``endpoint_url`` boto3 still honours ``AWS_ENDPOINT_URL_S3``. For
    any endpoint other than AWS, checksums are sent only where S3 requires
    them: botocore's newer default adds CRC headers that many S3-compatible
    servers reject.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    custom_endpoint = (
        config.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": config.max_attempts},
        "max_pool_connections": max(config.max_connections, config.multipart_concurrency),
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "s3": {"addressing_style": config.addressing_style or "auto"},
        # What botocore signs requests with anyway; said explicitly so that
        # presigned URLs (the origin's direct GETs) are SigV4 too, not SigV2.
        "signature_version": "s3v4",
    }
    if custom_endpoint:
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    try:
        session = boto3.session.Session(profile_name=config.profile)
        return session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            config=Config(**options),
        )
    except BotoCoreError as exc:
        raise StorageError(f"cannot set up the S3 client: {exc}") from exc

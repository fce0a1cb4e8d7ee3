"""How an object's facts travel in S3 requests and answers, for boto3 and awscrt alike.

S3 sends metadata as HTTP headers, which cannot carry every string
faithfully: a value that is not plain printable ASCII is stored
percent-encoded behind an RFC 2231-style ``utf-8''`` marker and decoded on
the way back, so ``Zürich`` round-trips whichever client wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from offload.storage.base import ObjectInfo, check_metadata
from offload.storage.content_types import guess_content_type

_ENCODED = "utf-8''"


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        if value.isascii() and value.isprintable() and not value.startswith(_ENCODED)
        else _ENCODED + quote(value, safe="")
        for key, value in metadata.items()
    }


def decode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {
        key.lower(): unquote(value[len(_ENCODED) :]) if value.startswith(_ENCODED) else value
        for key, value in metadata.items()
    }


def put_args(
    key: str,
    content_type: str | None,
    cache_control: str | None,
    metadata: Mapping[str, str] | None,
    storage_class: str | None,
) -> dict[str, Any]:
    """The boto3 arguments that describe an object being written (checked metadata)."""
    args: dict[str, Any] = {
        "ContentType": content_type or guess_content_type(key),
        "Metadata": encode_metadata(check_metadata(metadata)),
    }
    if cache_control:
        args["CacheControl"] = cache_control
    if storage_class:
        args["StorageClass"] = storage_class
    return args


def info_of(key: str, answer: Mapping[str, Any], size: int) -> ObjectInfo:
    """What a HeadObject or GetObject answer says of ``key``."""
    return ObjectInfo(
        key=key,
        size=size,
        etag=answer.get("ETag", "").strip('"'),
        last_modified=answer.get("LastModified") or datetime.now(UTC),
        content_type=answer.get("ContentType"),
        cache_control=answer.get("CacheControl"),
        metadata=decode_metadata(answer.get("Metadata") or {}),
    )


def written(key: str, size: int, etag: str, args: Mapping[str, Any]) -> ObjectInfo:
    """What was just stored; last_modified is this host's clock (no extra HEAD)."""
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag.strip('"'),
        last_modified=datetime.now(UTC),
        content_type=args["ContentType"],
        cache_control=args.get("CacheControl"),
        metadata=decode_metadata(args["Metadata"]),
    )

"""Every option of an S3 storage, with its default, in one object checked when it is made.

As s3transfer's ``TransferConfig``: the multipart threshold, part size and
concurrency, and the client's endpoint, timeouts and connection pool, are
declared here once. ``open_storage`` builds the boto3 client from it,
``S3Storage`` and its transfers read it, and the server's settings and the
command line take their defaults from ``DEFAULTS``. A value S3 could never
accept (a part under 5 MiB, a concurrency of 0) is a ValueError here, before
any request is made. The module imports nothing of boto3, so the settings can
read the defaults without paying for botocore.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MiB = 2**20
GiB = 2**30
#: S3's limits on the parts of a multipart upload, and on one CopyObject.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_SINGLE_COPY = 5 * GiB
#: Keys one DeleteObjects request may name.
DELETE_BATCH = 1000
ADDRESSING_STYLES = ("auto", "path", "virtual")


@dataclass(frozen=True)
class S3Config:
    """Where an S3 storage connects and how it moves large objects."""

    #: The S3 endpoint (None: ``AWS_ENDPOINT_URL_S3``, else AWS's own).
    endpoint_url: str | None = None
    region: str | None = None
    #: The AWS profile credentials and region are read from (None: the default chain).
    profile: str | None = None
    #: "path", "virtual", or None for botocore's choice ("auto").
    addressing_style: str | None = None
    #: The storage class of every object written (None: the bucket's default).
    storage_class: str | None = None
    #: Connections boto3 keeps to the endpoint; at least ``multipart_concurrency`` are kept.
    max_connections: int = 16
    connect_timeout: float = 5.0
    #: Seconds to wait for any byte of an answer: well under a CDN's origin timeout
    #: (CloudFront's default is 30 s), so a hung endpoint is an error while it matters.
    read_timeout: float = 10.0
    #: Tries of each request, the first included (boto3's standard retry mode).
    max_attempts: int = 3
    #: Objects larger than this go up in parts; this size and smaller in one PUT.
    multipart_threshold: int = 8 * MiB
    #: The size of each part (grown when an object would need over 10,000).
    multipart_chunksize: int = 8 * MiB
    #: Parts of one object in flight at once.
    multipart_concurrency: int = 4
    #: Objects up to this size are copied server-side in one CopyObject, larger ones in parts.
    copy_threshold: int = MAX_SINGLE_COPY

    def __post_init__(self) -> None:
        if self.addressing_style == "auto":
            object.__setattr__(self, "addressing_style", None)
        problems = [
            _at_least("max_connections", self.max_connections, 1),
            _at_least("multipart_threshold", self.multipart_threshold, 1),
            _at_least("multipart_concurrency", self.multipart_concurrency, 1),
            _at_least("max_attempts", self.max_attempts, 1),
            _within("multipart_chunksize", self.multipart_chunksize, MIN_PART_SIZE, MAX_PART_SIZE),
            _within("copy_threshold", self.copy_threshold, 1, MAX_SINGLE_COPY),
            _positive("connect_timeout", self.connect_timeout),
            _positive("read_timeout", self.read_timeout),
        ]
        if self.addressing_style not in (None, *ADDRESSING_STYLES):
            problems.append(
                f"addressing_style must be one of {', '.join(ADDRESSING_STYLES)}, "
                f"got {self.addressing_style!r}"
            )
        for name in ("endpoint_url", "region", "profile", "storage_class"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                problems.append(f"{name} must be a non-empty string or None, got {value!r}")
        problems = [problem for problem in problems if problem]
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes: Any) -> S3Config:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


def _at_least(name: str, value: object, least: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        return f"{name} must be an integer >= {least}, got {value!r}"
    return ""


def _within(name: str, value: object, least: int, most: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        return f"{name} must be from {least} to {most} bytes, got {value!r}"
    return ""


def _positive(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return f"{name} must be a number of seconds above 0, got {value!r}"
    return ""


@dataclass(frozen=True)
class Connection:
    """Where an S3 storage's requests go, for a client other than boto3's (awscrt)."""

    endpoint_url: str
    region: str
    addressing_style: str  # "auto", "path" or "virtual"


#: The defaults, for the settings and the command line to start from.
DEFAULTS = S3Config()

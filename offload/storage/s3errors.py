"""The one translation of S3's answers into offload's errors, for boto3 and awscrt alike.

An S3 error is a code (``NoSuchKey``, ``SlowDown``...), an HTTP status and a
message, whichever client got it: ``for_answer`` maps those three, and
``for_botocore`` and ``for_crt`` only pull them out of their client's
exception. So a missing bucket, a refused key or a busy server reads the same
in a sync run (awscrt) as in the origin (boto3), and nothing above the storage
layer ever sees a botocore or awscrt exception. A missing bucket or refused
credentials are ``StorageMissing``: no key can be read, so no answer about a
key may be drawn from them. Messages name the storage and the key, never
credentials or signed URLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offload.storage.base import (
    InvalidRange,
    NotFound,
    StorageError,
    StorageMissing,
    StorageUnavailable,
)

NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
BUSY = frozenset(
    {
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
)
DENIED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)
#: Refusals of the credentials themselves, whatever the key: ``StorageMissing``.
#: A plain AccessDenied may be about one key (a bucket policy on a prefix, or a
#: missing key without ListBucket), so it stays a StorageError here.
BAD_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)


@dataclass(frozen=True)
class Place:
    """Which storage an error belongs to: its URL, its bucket and the endpoint it reached."""

    url: str
    bucket: str
    endpoint: str | None


def for_answer(code: str, status: int, message: str, what: str, place: Place) -> StorageError:
    """The error for an S3 error answer about ``what`` (a key, a prefix or an operation)."""
    said = f": {message}" if message and message != code else ""
    if code in NOT_FOUND:
        return NotFound(f"no object {what!r} in {place.url}")
    if code == "InvalidRange" or status == 416:
        return InvalidRange(f"range outside {what!r} in {place.url}")
    if code == "NoSuchBucket":
        return StorageMissing(f"the bucket {place.bucket!r} does not exist at {place.endpoint}")
    if code in BAD_CREDENTIALS:
        return StorageMissing(f"{place.url} refused access ({code}): check the credentials")
    if code in DENIED:
        return StorageError(f"{place.url} refused access ({code}) for {what!r}")
    if code in BUSY or status >= 500:
        return StorageUnavailable(f"{place.url} is unavailable ({code or status}){said}")
    return StorageError(f"{place.url}: {what!r}: {code or status}{said}")


def unreachable(place: Place, reason: object) -> StorageUnavailable:
    """The error for a request that never got an answer (refused, reset, timed out)."""
    return StorageUnavailable(f"cannot reach {place.endpoint} for {place.url}: {reason}")


def code_of(exc: BaseException) -> str:
    """The S3 error code a botocore ClientError carries ("" for any other exception)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def for_botocore(exc: Exception, what: str, place: Place) -> StorageError:
    """The error for a botocore exception (a ClientError, or a BotoCoreError)."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return for_answer(code, status, error.get("Message") or code, what, place)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageMissing(
            f"no usable S3 credentials for {place.url}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or a profile"
        )
    if isinstance(exc, BotoConnectionError):
        return unreachable(place, exc)
    return StorageError(f"{place.url}: {what!r}: {exc}")


def crt_answer(exc: Any) -> tuple[str, int]:
    """(code, status) of an awscrt ``S3ResponseError``: the code is read from its XML body."""
    status = getattr(exc, "status_code", 0) or 0
    body = bytes(getattr(exc, "body", b"") or b"")
    code = ""
    if b"<Code>" in body:
        code = body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode(errors="replace")
    return code, status


def for_crt(exc: Any, what: str, place: Place) -> StorageError:
    """The error for an awscrt ``S3ResponseError`` (an answer) or ``AwsCrtError`` (none)."""
    if hasattr(exc, "status_code"):
        code, status = crt_answer(exc)
        return for_answer(code, status, "", what, place)
    return unreachable(place, getattr(exc, "name", exc))

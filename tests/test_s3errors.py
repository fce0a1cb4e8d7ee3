"""One translation of S3 errors: boto3's and awscrt's answers become the same offload errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from offload.storage.base import (
    InvalidRange,
    NotFound,
    StorageError,
    StorageMissing,
    StorageUnavailable,
)
from offload.storage.s3errors import Place, for_botocore, for_crt

PLACE = Place("s3://media/blog", "media", "http://127.0.0.1:9000")

ANSWERS = [
    ("NoSuchKey", 404, NotFound, "no object 'a.jpg' in s3://media/blog"),
    ("InvalidRange", 416, InvalidRange, "range outside 'a.jpg' in s3://media/blog"),
    (
        "NoSuchBucket",
        404,
        StorageMissing,
        "the bucket 'media' does not exist at http://127.0.0.1:9000",
    ),
    (
        "AccessDenied",
        403,
        StorageError,
        "s3://media/blog refused access (AccessDenied) for 'a.jpg'",
    ),
    ("SignatureDoesNotMatch", 403, StorageMissing, "refused access (SignatureDoesNotMatch)"),
    ("InvalidAccessKeyId", 403, StorageMissing, "refused access (InvalidAccessKeyId)"),
    ("SlowDown", 503, StorageUnavailable, "s3://media/blog is unavailable (SlowDown)"),
    ("InternalError", 500, StorageUnavailable, "is unavailable (InternalError)"),
    ("", 502, StorageUnavailable, "s3://media/blog is unavailable (502)"),
    ("NoSuchUpload", 404, StorageError, "s3://media/blog: 'a.jpg': NoSuchUpload"),
]


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


class CrtAnswer(Exception):
    """Shaped as awscrt's S3ResponseError: a status and the XML body of the error."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.status_code = status
        self.body = f"<Error><Code>{code}</Code></Error>".encode() if code else b""


@pytest.mark.parametrize(("code", "status", "kind", "message"), ANSWERS)
@pytest.mark.parametrize("client", ["boto3", "awscrt"])
def test_an_s3_answer_is_the_same_error_from_either_client(
    client: str, code: str, status: int, kind: type[StorageError], message: str
) -> None:
    exc: Any = client_error(code, status) if client == "boto3" else CrtAnswer(code, status)
    translate = for_botocore if client == "boto3" else for_crt

    error = translate(exc, "a.jpg", PLACE)

    assert type(error) is kind
    assert message in str(error)


def test_an_unreachable_endpoint_is_unavailable_from_either_client() -> None:
    class CrtError(Exception):
        name = "AWS_IO_SOCKET_CONNECTION_REFUSED"

    boto = for_botocore(EndpointConnectionError(endpoint_url="http://127.0.0.1:9000"), "k", PLACE)
    crt = for_crt(CrtError(), "k", PLACE)

    for error in (boto, crt):
        assert type(error) is StorageUnavailable
        assert str(error).startswith("cannot reach http://127.0.0.1:9000 for s3://media/blog: ")


def test_missing_credentials_say_how_to_give_them_and_show_none() -> None:
    error = for_botocore(NoCredentialsError(), "k", PLACE)
    assert type(error) is StorageMissing
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile" in str(error)

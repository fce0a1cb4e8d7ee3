"""The few S3 XML documents that offload reads and writes without boto3.

A sync reads a listing page of 1,000 objects many times over; ElementTree
builds a tree of some 7,000 elements for each, and that was a fifth of a
no-op re-sync's CPU. S3's answers are flat and regular, so the values are
taken out with regular expressions instead: about five times cheaper. Element
names may carry a namespace prefix; text is unescaped (``&quot;`` around
every ETag, ``&amp;`` in keys that are not URL-encoded).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


def _element(name: str) -> re.Pattern[bytes]:
    """``<name>text</name>``, with or without a namespace prefix; group 1 is the text."""
    return re.compile(rf"<(?:[\w.-]+:)?{name}>(.*?)</(?:[\w.-]+:)?{name}>".encode(), re.S)


_CONTENTS = _element("Contents")
_UPLOAD = _element("Upload")
_ERROR = _element("Error")
_FIELDS = {
    name: _element(name)
    for name in (
        "Key",
        "Size",
        "ETag",
        "LastModified",
        "Initiated",
        "Code",
        "IsTruncated",
        "NextContinuationToken",
        "EncodingType",
        "NextKeyMarker",
        "NextUploadIdMarker",
    )
}


def _text(name: str, document: bytes) -> str:
    """The text of the first ``name`` element in ``document``, unescaped ("" when none)."""
    found = _FIELDS[name].search(document)
    if found is None:
        return ""
    text = found.group(1).decode("utf-8", errors="replace")
    return html.unescape(text) if "&" in text else text


def _without(block: re.Pattern[bytes], document: bytes) -> bytes:
    """The document without its repeated blocks: what is left are the page's own fields."""
    return block.sub(b"", document)


@dataclass(frozen=True, slots=True)
class Listing:
    """One ListObjectsV2 page: (key, size, ETag without quotes, LastModified text) per object."""

    objects: list[tuple[str, int, str, str]]
    truncated: bool
    next_token: str | None


def parse_listing(document: bytes) -> Listing:
    """A ListObjectsV2 answer; keys are URL-decoded when the page says it encoded them."""
    page = _without(_CONTENTS, document)
    encoded = _text("EncodingType", page).lower() == "url"
    objects = []
    for match in _CONTENTS.finditer(document):
        block = match.group(1)
        key = _text("Key", block)
        objects.append(
            (
                unquote_plus(key) if encoded else key,
                int(_text("Size", block) or 0),
                _text("ETag", block).strip('"'),
                _text("LastModified", block),
            )
        )
    return Listing(
        objects,
        _text("IsTruncated", page).lower() == "true",
        _text("NextContinuationToken", page) or None,
    )


@dataclass(frozen=True, slots=True)
class UploadsPage:
    """One ListMultipartUploads page: (key, Initiated text) per upload, and the next markers."""

    uploads: list[tuple[str, str]]
    truncated: bool
    markers: dict[str, str]


def parse_uploads(document: bytes) -> UploadsPage:
    page = _without(_UPLOAD, document)
    uploads = [
        (_text("Key", m.group(1)), _text("Initiated", m.group(1)))
        for m in _UPLOAD.finditer(document)
    ]
    markers = {
        "key-marker": _text("NextKeyMarker", page),
        "upload-id-marker": _text("NextUploadIdMarker", page),
    }
    return UploadsPage(uploads, _text("IsTruncated", page).lower() == "true", markers)


def delete_request(keys: Iterable[str]) -> bytes:
    """A quiet DeleteObjects body: only the keys that could not be deleted come back."""
    objects = "".join(
        f"<Object><Key>{html.escape(key, quote=False)}</Key></Object>" for key in keys
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="{S3_NAMESPACE}">'
        f"<Quiet>true</Quiet>{objects}</Delete>"
    ).encode()


def delete_errors(document: bytes) -> list[tuple[str, str]]:
    """(key, code) of each object a DeleteObjects answer says it did not delete."""
    return [
        (_text("Key", m.group(1)), _text("Code", m.group(1))) for m in _ERROR.finditer(document)
    ]

"""Check an HTTP response with httplint, as a CDN engineer would with REDbot.

``bad_notes`` feeds one exchange (the request's method, target and headers,
and the response's status, raw headers and body) to httplint's linters and
returns the notes it rates BAD, as readable lines, so a test can say
``assert bad_notes(...) == []`` and print what went wrong when it fails.

One BAD note is httplint's mistake and is left out: it wants a Content-Range
header on every 206, but RFC 9110 section 15.3.7.2 says a multipart/byteranges
206 MUST NOT have one in its header section (each part carries its own).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from httplint import HttpRequestLinter, HttpResponseLinter
from httplint.note import Note, levels
from httplint.status import PARTIAL_WITHOUT_RANGE

RawHeaders = Iterable[tuple[bytes, bytes]]


def _raw(headers: RawHeaders | Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    if isinstance(headers, Mapping):
        return [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]
    return [(bytes(name), bytes(value)) for name, value in headers]


def _walk(notes: Iterable[Note]) -> Iterable[Note]:
    for note in notes:
        yield note
        yield from _walk(note.subnotes)


def lint(
    status: int,
    headers: RawHeaders | Mapping[str, str],
    body: bytes,
    method: str = "GET",
    *,
    target: str = "/",
    request_headers: RawHeaders | Mapping[str, str] = (),
    reason: str = "",
) -> list[Note]:
    """Every note httplint has on this response (and its subnotes), at any level."""
    now = time.time()
    request = HttpRequestLinter(start_time=now)
    request.process_request_topline(method.encode(), target.encode(), b"HTTP/1.1")
    request.process_headers(_raw(request_headers))
    request.finish_content(True)

    response = HttpResponseLinter(start_time=now)
    response.request = request
    response.is_head_response = method == "HEAD"
    response.process_response_topline(b"HTTP/1.1", str(status).encode(), reason.encode())
    response.process_headers(_raw(headers))
    if body:
        response.feed_content(body)
    response.finish_content(True)
    return list(_walk(response.notes))


def bad_notes(
    status: int,
    headers: RawHeaders | Mapping[str, str],
    body: bytes,
    method: str = "GET",
    *,
    target: str = "/",
    request_headers: RawHeaders | Mapping[str, str] = (),
    reason: str = "",
) -> list[str]:
    """The BAD notes httplint has on this response, one ``subject: summary`` line each."""
    notes = lint(
        status,
        headers,
        body,
        method,
        target=target,
        request_headers=request_headers,
        reason=reason,
    )
    multipart = any(
        name.lower() == b"content-type" and value.lower().startswith(b"multipart/byteranges")
        for name, value in _raw(headers)
    )
    return [
        f"{note.subject}: {note.summary}"
        for note in notes
        if note.level == levels.BAD and not (multipart and isinstance(note, PARTIAL_WITHOUT_RANGE))
    ]

"""multipart/form-data from a spooled request body, split into files on disk by python-multipart.

The webhook signature covers the raw body, so the body is first written to a
temporary file while its HMAC is computed (never held in memory), and only a
verified body is split. python-multipart's streaming parser does the
splitting: the spool is fed to it in blocks, and each file part's bytes go
straight to a file of its own, so memory stays at a few blocks whatever the
upload's size. Blocking throughout: run it in the executor.

What offload keeps around the parser, because python-multipart does not do it:
the preamble before the first delimiter, and transport padding on that
delimiter's line, are read past here (the parser expects the body to start
with the delimiter itself); a body that ends before its close delimiter is
refused (the parser's ``finalize`` does not check); a line inside a part that
starts like a delimiter but is followed by something other than a line break
is refused (the parser would keep it as data, but RFC 2046 forbids the
boundary inside a part, and such a body is more likely cut or forged than
meant); the limits on one part's header block, a field's value and the number
of parts; and the part headers are read with the standard library's email
parser, for RFC 2231 file names. python-multipart's own log lines about
malformed bodies are silenced: the webhook answers 400 and says why.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

#: Bytes read from the spool per call.
BLOCK = 1024 * 1024
#: Largest header block of one part, and largest value of a plain (non-file) field.
MAX_HEADERS = 16 * 1024
MAX_FIELD = 64 * 1024
#: A webhook form holds at most 1,000 files, a path field each, and two more fields.
MAX_PARTS = 2 * 1000 + 2
#: Longest transport padding (spaces, tabs) read past after a delimiter.
MAX_PADDING = 64

# It logs a warning for each malformed body; offload's answer already says what is wrong.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


class FormError(ValueError):
    """A body that is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class FormPart:
    """One part: a field's text value, or a file part's bytes on disk."""

    name: str
    filename: str | None
    value: str | None = None  # plain fields
    file: Path | None = None  # file parts
    size: int = 0


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart/form-data Content-Type."""
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        raise FormError("the body is not multipart/form-data")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 70:
        raise FormError("multipart/form-data needs a boundary of 1 to 70 characters")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise FormError("the multipart boundary is not ASCII") from None


def split_form(spool: Path, boundary: bytes, folder: Path) -> list[FormPart]:
    """Split the spooled body; file parts go to ``folder/part-N``."""
    with open(spool, "rb") as handle:
        rest = _after_first_delimiter(handle, boundary)
        if rest is None:
            return []  # only the close delimiter: a form without parts
        parts = _Parts(boundary, folder)
        try:
            parts.feed(b"--" + boundary + b"\r\n")
            parts.feed(rest)
            while block := handle.read(BLOCK):
                parts.feed(block)
            parts.finish()
        finally:
            parts.close()
        if not parts.complete:
            raise FormError("the multipart body ends early")
        return parts.found


def _after_first_delimiter(handle: BinaryIO, boundary: bytes) -> bytes | None:
    """Read past the preamble and the first delimiter's line, in bounded memory.

    The bytes after that line, or None when the first delimiter closes the body.
    """
    marker = b"\r\n--" + boundary
    buffer = bytearray(b"\r\n")  # so a delimiter at the very start reads like the others
    while (found := buffer.find(marker)) < 0:
        del buffer[: max(0, len(buffer) - len(marker) + 1)]
        block = handle.read(BLOCK)
        if not block:
            raise FormError("the multipart body ends early")
        buffer += block
    del buffer[: found + len(marker)]
    line = MAX_PADDING + 2
    while len(buffer) < line and (block := handle.read(BLOCK)):
        buffer += block
    if buffer.startswith(b"--"):
        return None  # an epilogue after it is ignored
    end = buffer.find(b"\r\n", 0, line)
    if end < 0 and len(buffer) < line:
        raise FormError("the multipart body ends early")
    if end < 0 or buffer[:end].strip(b" \t"):
        raise FormError("a multipart delimiter is not followed by a line break")
    return bytes(buffer[end + 2 :])


class _Parts:
    """python-multipart's callbacks: each part's headers read, its field kept, its file written."""

    def __init__(self, boundary: bytes, folder: Path) -> None:
        self.folder = folder
        self._delimiters = _DelimiterCheck(boundary)
        self._recent = bytearray()  # the last header block's bytes, for an error's excerpt
        self.found: list[FormPart] = []
        self.complete = False
        self._in_headers = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._field = bytearray()
        self._value = bytearray()
        self._name = ""
        self._filename: str | None = None
        self._data = bytearray()
        self._out: BinaryIO | None = None
        self._target: Path | None = None
        self._size = 0
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_begin": self._header_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        # The header block is limited as a whole, below, rather than per line and count.
        self._parser = MultipartParser(
            boundary, callbacks, max_header_count=sys.maxsize, max_header_size=sys.maxsize
        )

    def feed(self, data: bytes) -> None:
        self._delimiters.feed(data)
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            # The parser refuses only two things here (it gets a clean first delimiter):
            # a header line, and transport padding that runs into something else.
            if self._in_headers:
                line = _line_at(bytes(self._recent) + data[: max(exc.offset, 0)], data, exc.offset)
                raise FormError(f"a malformed multipart header line: {line!r}") from None
            raise FormError("a multipart delimiter is not followed by a line break") from None
        if self._in_headers:
            self._recent += data
            del self._recent[: max(0, len(self._recent) - MAX_HEADERS)]

    def finish(self) -> None:
        """The body has ended: judge the delimiters its last bytes held."""
        self._delimiters.finish()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _part_begin(self) -> None:
        if len(self.found) >= MAX_PARTS:
            raise FormError(f"more than {MAX_PARTS} multipart parts")
        self._recent.clear()
        self._in_headers = True
        self._headers, self._header_bytes = [], 0

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > MAX_HEADERS:
            raise FormError(f"a multipart header or field is longer than {MAX_HEADERS} bytes")

    def _header_begin(self) -> None:
        # "name: value" lines joined by CRLF: the separator and line break counted here.
        self._count_header_bytes(4 if self._headers else 2)
        self._field.clear()
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((bytes(self._field), bytes(self._value)))

    def _headers_finished(self) -> None:
        self._in_headers = False
        headers = _message(self._headers)
        if headers.get_content_disposition() != "form-data":
            raise FormError("every part needs Content-Disposition: form-data")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise FormError("a multipart part has no name")
        self._name, self._filename = name, headers.get_filename()
        self._data.clear()
        if self._filename is not None:
            self._target = self.folder / f"part-{len(self.found)}"
            self._out = open(self._target, "wb")  # noqa: SIM115 - closed at the part's end
            self._size = 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._out.write(memoryview(data)[start:end])
            self._size += end - start
            return
        if len(self._data) + end - start > MAX_FIELD:
            raise FormError(f"a multipart header or field is longer than {MAX_FIELD} bytes")
        self._data += data[start:end]

    def _part_end(self) -> None:
        if self._out is not None:
            self.close()
            self.found.append(
                FormPart(self._name, self._filename, file=self._target, size=self._size)
            )
            return
        try:
            value = self._data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError(f"field {self._name!r} is not UTF-8") from None
        self.found.append(FormPart(self._name, None, value=value))

    def _end(self) -> None:
        self.complete = True


def _message(raw: list[tuple[bytes, bytes]]) -> Message:
    message = Message()
    for field, value in raw:
        try:
            message[field.decode("utf-8").strip()] = value.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise FormError("a multipart part's headers are not UTF-8") from None
    return message


def _line_at(before: bytes, data: bytes, offset: int) -> str:
    """The header line the parser refused at ``offset`` of ``data``, as the old splitter
    showed it: at most 80 characters."""
    start = before.rfind(b"\r\n") + 2 if b"\r\n" in before else 0
    line = before[start:]
    if offset >= 0:
        end = data.find(b"\r\n", offset)
        line += data[offset : end if end >= 0 else len(data)]
    return line.decode("utf-8", "replace")[:80]


class _DelimiterCheck:
    """Refuses a line that starts like a delimiter inside a part but does not end like one.

    ``\r\n--BOUNDARY`` is a delimiter only when padding and a line break, or
    ``--``, follow it. The check looks at every block as it is fed, keeping
    the last few bytes so that a delimiter split across two blocks is judged
    whole, and stops at the close delimiter (an epilogue may hold anything).
    """

    def __init__(self, boundary: bytes) -> None:
        self._marker = b"\r\n--" + boundary
        self._needed = len(self._marker) + MAX_PADDING + 2  # marker, padding, CRLF
        self._pending = b""
        self._closed = False

    def feed(self, data: bytes) -> None:
        if self._closed:
            return
        window = self._pending + data
        ready = len(window) - self._needed + 1  # delimiters starting before this are whole
        self._judge(window, ready, ended=False)
        self._pending = window[max(0, ready) :]

    def finish(self) -> None:
        if not self._closed:
            self._judge(self._pending, len(self._pending), ended=True)

    def _judge(self, window: bytes, ready: int, *, ended: bool) -> None:
        start = 0
        while not self._closed and 0 <= (found := window.find(self._marker, start)) < ready:
            after = window[found + len(self._marker) : found + self._needed]
            if after.startswith(b"--"):
                self._closed = True
                return
            end = after.find(b"\r\n")
            if end < 0 and ended:
                return  # cut short: the parser finds the body incomplete
            if end < 0 or after[:end].strip(b" \t"):
                raise FormError("a multipart delimiter is not followed by a line break")
            start = found + 1

"""multipart/form-data from a spooled request body, split into files on disk.

The webhook signature covers the raw body, so the body is first written to a
temporary file while its HMAC is computed (never held in memory), and only a
verified body is split. Splitting reads the spool once, in blocks, and writes
each file part to its own file, so memory stays at a few blocks whatever the
upload's size. Blocking throughout: run it in the executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import BinaryIO

#: Bytes read from the spool per call.
BLOCK = 1024 * 1024
#: Largest header block of one part, and largest value of a plain (non-file) field.
MAX_HEADERS = 16 * 1024
MAX_FIELD = 64 * 1024
#: A webhook form holds at most 1,000 files, a path field each, and two more fields.
MAX_PARTS = 2 * 1000 + 2


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


class _Reader:
    """A spool file read in blocks, with a window to search for the delimiter."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.buffer = bytearray(b"\r\n")  # so the first delimiter reads like the others
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        block = self.handle.read(BLOCK)
        if not block:
            self.eof = True
            return False
        self.buffer += block
        return True

    def until(self, marker: bytes, limit: int) -> bytes:
        """Bytes up to ``marker`` (consumed, not returned), at most ``limit`` of them."""
        start = 0
        while True:
            found = self.buffer.find(marker, start)
            if found >= 0:
                if found > limit:
                    break
                data = bytes(self.buffer[:found])
                del self.buffer[: found + len(marker)]
                return data
            if len(self.buffer) > limit + len(marker):
                break
            start = max(0, len(self.buffer) - len(marker) + 1)
            if not self.fill():
                raise FormError("the multipart body ends early")
        raise FormError(f"a multipart header or field is longer than {limit} bytes")

    def copy_until(self, marker: bytes, out: BinaryIO) -> int:
        """Write bytes up to ``marker`` to ``out``; how many."""
        written = 0
        while True:
            found = self.buffer.find(marker)
            if found >= 0:
                out.write(self.buffer[:found])
                del self.buffer[: found + len(marker)]
                return written + found
            keep = len(marker) - 1
            if len(self.buffer) > keep:
                cut = len(self.buffer) - keep
                out.write(self.buffer[:cut])
                del self.buffer[:cut]
                written += cut
            if not self.fill():
                raise FormError("the multipart body ends early")


class _Discard:
    def write(self, data: bytes | bytearray) -> int:
        return len(data)


def _headers(raw: bytes) -> Message:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("a multipart part's headers are not UTF-8") from None
    message = Message()
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise FormError(f"a malformed multipart header line: {line[:80]!r}")
        message[name.strip()] = value.strip()
    return message


def split_form(spool: Path, boundary: bytes, folder: Path) -> list[FormPart]:
    """Split the spooled body; file parts go to ``folder/part-N``."""
    delimiter = b"\r\n--" + boundary
    parts: list[FormPart] = []
    with open(spool, "rb") as handle:
        reader = _Reader(handle)
        reader.copy_until(delimiter, _Discard())  # the preamble, ignored, in bounded memory
        while True:
            while len(reader.buffer) < 2 and reader.fill():
                pass
            if reader.buffer.startswith(b"--"):
                return parts  # the close delimiter; an epilogue is ignored
            # Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
            if reader.until(b"\r\n", 64).strip(b" \t"):
                raise FormError("a multipart delimiter is not followed by a line break")
            if len(parts) >= MAX_PARTS:
                raise FormError(f"more than {MAX_PARTS} multipart parts")
            headers = _headers(reader.until(b"\r\n\r\n", MAX_HEADERS))
            if headers.get_content_disposition() != "form-data":
                raise FormError("every part needs Content-Disposition: form-data")
            name = headers.get_param("name", header="content-disposition")
            filename = headers.get_filename()
            if not isinstance(name, str) or not name:
                raise FormError("a multipart part has no name")
            if filename is None:
                raw = reader.until(delimiter, MAX_FIELD)
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise FormError(f"field {name!r} is not UTF-8") from None
                parts.append(FormPart(name, None, value=value))
                continue
            target = folder / f"part-{len(parts)}"
            with open(target, "wb") as out:
                size = reader.copy_until(delimiter, out)
            parts.append(FormPart(name, filename, file=target, size=size))

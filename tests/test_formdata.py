"""multipart/form-data: bodies from real encoders, split into fields and files on disk."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
import urllib3
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from urllib3.fields import RequestField

from offload.http import formdata
from offload.http.formdata import (
    BLOCK,
    MAX_FIELD,
    MAX_HEADERS,
    MAX_PARTS,
    FormError,
    FormPart,
    boundary_of,
    split_form,
)
from offload.media.payloads import MAX_FILES

BOUNDARY = "----offloadTestBoundary7MA4YWxkTrZu0gW"
DELIMITER = b"\r\n--" + BOUNDARY.encode()


async def _encoded(form: aiohttp.FormData | aiohttp.MultipartWriter) -> tuple[bytes, bytes]:
    """The body aiohttp would send, and its boundary read back from the Content-Type."""
    writer = form() if isinstance(form, aiohttp.FormData) else form
    assert isinstance(writer, aiohttp.MultipartWriter)
    return await writer.as_bytes(), boundary_of(writer.content_type)


def _urllib3(fields: list, boundary: str = BOUNDARY) -> bytes:
    body, content_type = urllib3.encode_multipart_formdata(fields, boundary=boundary)
    assert boundary_of(content_type) == boundary.encode()
    return body


def _file_field(name: str, data: bytes, filename: str) -> RequestField:
    field = RequestField(name, data, filename=filename)
    field.make_multipart(content_type="application/octet-stream")
    return field


def _split(folder: Path, body: bytes, boundary: bytes | str = BOUNDARY) -> list[FormPart]:
    if isinstance(boundary, str):
        boundary = boundary.encode()
    spool = folder / "body"
    spool.write_bytes(body)
    parts = folder / "parts"
    parts.mkdir(exist_ok=True)
    return split_form(spool, boundary, parts)


def _contents(parts: list[FormPart]) -> list[tuple[str, str | None, str | bytes]]:
    """(name, filename, value or file bytes) of each part."""
    result: list[tuple[str, str | None, str | bytes]] = []
    for part in parts:
        if part.file is None:
            assert part.value is not None
            result.append((part.name, None, part.value))
        else:
            data = part.file.read_bytes()
            assert part.size == len(data)
            result.append((part.name, part.filename, data))
    return result


def _refused(folder: Path, body: bytes, match: str, boundary: bytes | str = BOUNDARY) -> None:
    with pytest.raises(FormError, match=match):
        _split(folder, body, boundary)


# -- the boundary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc123", b"abc123"),
        ('multipart/form-data; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data; charset=utf-8; BOUNDARY=xyz", b"xyz"),
        ("multipart/form-data;boundary=----WebKitFormBoundaryQ", b"----WebKitFormBoundaryQ"),
        ("multipart/form-data; boundary=" + "b" * 70, b"b" * 70),
    ],
)
def test_boundary_is_read_from_the_content_type(content_type, boundary):
    assert boundary_of(content_type) == boundary


async def test_boundary_of_an_aiohttp_form_is_the_one_it_wrote():
    writer = aiohttp.MultipartWriter("form-data", boundary="my-boundary")
    assert boundary_of(writer.content_type) == b"my-boundary"


@pytest.mark.parametrize(
    ("content_type", "match"),
    [
        ("", "not multipart/form-data"),
        ("application/json", "not multipart/form-data"),
        ("application/x-www-form-urlencoded", "not multipart/form-data"),
        ("multipart/mixed; boundary=abc", "not multipart/form-data"),
        ("text/plain; boundary=abc", "not multipart/form-data"),
        ("multipart/form-data", "boundary"),
        ("multipart/form-data; charset=utf-8", "boundary"),
        ('multipart/form-data; boundary=""', "boundary"),
        ("multipart/form-data; boundary=" + "b" * 71, "1 to 70"),
        ("multipart/form-data; boundary=grenzé", "not ASCII"),
    ],
)
def test_bad_content_types_are_refused(content_type, match):
    with pytest.raises(FormError, match=match):
        boundary_of(content_type)


# -- well-formed bodies ----------------------------------------------------------------


async def test_fields_and_files_from_aiohttp_are_split_in_order(tmp_path):
    form = aiohttp.FormData()
    form.add_field("attachment_id", "123")
    form.add_field("path", "2024/05/photo.jpg")
    form.add_field("file", io.BytesIO(b"\xff\xd8\xff\xe0JPEG"), filename="photo.jpg")
    form.add_field("path", "2024/05/photo-300x200.jpg")
    form.add_field("file", b"small jpeg", filename="photo-300x200.jpg", content_type="image/jpeg")
    body, boundary = await _encoded(form)
    parts = _split(tmp_path, body, boundary)
    assert _contents(parts) == [
        ("attachment_id", None, "123"),
        ("path", None, "2024/05/photo.jpg"),
        ("file", "photo.jpg", b"\xff\xd8\xff\xe0JPEG"),
        ("path", None, "2024/05/photo-300x200.jpg"),
        ("file", "photo-300x200.jpg", b"small jpeg"),
    ]
    assert parts[2].size == 8
    assert all(part.file.parent == tmp_path / "parts" for part in parts if part.file)
    assert len({part.file for part in parts if part.file}) == 2


def test_fields_and_files_from_urllib3_are_split_in_order(tmp_path):
    body = _urllib3(
        [
            ("original", "2024/05/a.jpg"),
            ("file", ("a.jpg", b"A" * 100, "image/jpeg")),
            ("file", ("b.txt", b"hello\n", "text/plain")),
        ]
    )
    assert _contents(_split(tmp_path, body)) == [
        ("original", None, "2024/05/a.jpg"),
        ("file", "a.jpg", b"A" * 100),
        ("file", "b.txt", b"hello\n"),
    ]


async def test_binary_content_with_line_breaks_and_boundary_lookalikes_is_kept_exactly(tmp_path):
    boundary = "xyz-boundary"
    tricky = b"".join(
        [
            b"\r\n--xyz-boundar",  # a delimiter cut short
            b"--xyz-boundary",  # the boundary without the CRLF before it
            b"\r\n\r\n",
            b"\n--xyz-boundary\r",  # LF only: not a delimiter
            bytes(range(256)),
            b"\r\n-",
            b"\r\n--xyz-boundar",  # ends on a partial delimiter, right before the real one
        ]
    )
    writer = aiohttp.MultipartWriter("form-data", boundary=boundary)
    for name, data in (("file", tricky), ("file", b"\r\n"), ("file", b"\r")):
        part = writer.append(data, {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name=name, filename="blob.bin")
    body, found = await _encoded(writer)
    assert [data for _, _, data in _contents(_split(tmp_path, body, found))] == [
        tricky,
        b"\r\n",
        b"\r",
    ]


async def test_field_values_with_line_breaks_are_kept_exactly(tmp_path):
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("a", "line 1\r\nline 2\n\r\n--" + BOUNDARY[:-1])
    form.add_field("b", "")
    body, boundary = await _encoded(form)
    assert _contents(_split(tmp_path, body, boundary)) == [
        ("a", None, "line 1\r\nline 2\n\r\n--" + BOUNDARY[:-1]),
        ("b", None, ""),
    ]


async def test_unicode_field_values_are_decoded_as_utf8(tmp_path):
    value = "Zürich · 東京 · 😀 · \u202e"
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("path", value)
    body, boundary = await _encoded(form)
    assert _contents(_split(tmp_path, body, boundary)) == [("path", None, value)]


async def test_empty_files_are_files_of_size_zero(tmp_path):
    form = aiohttp.FormData()
    form.add_field("file", b"", filename="empty.bin", content_type="application/octet-stream")
    form.add_field("path", "empty.bin")
    form.add_field("file", io.BytesIO(b""), filename="empty2.bin")
    body, boundary = await _encoded(form)
    parts = _split(tmp_path, body, boundary)
    assert [(p.name, p.filename, p.size) for p in parts] == [
        ("file", "empty.bin", 0),
        ("path", None, 0),
        ("file", "empty2.bin", 0),
    ]
    assert parts[0].file.read_bytes() == b""
    assert parts[2].file.read_bytes() == b""


def test_a_browsers_empty_file_input_is_a_file_part_without_a_name(tmp_path):
    body = _urllib3([_file_field("file", b"", "")])
    [part] = _split(tmp_path, body)
    assert (part.filename, part.size) == ("", 0)


async def test_preamble_and_epilogue_are_ignored(tmp_path):
    form = aiohttp.FormData()
    form.add_field("path", "a.jpg")
    form.add_field("file", b"bytes", filename="a.jpg")
    body, boundary = await _encoded(form)
    preamble = b"This is the preamble. It mentions --" + boundary + b" but not on a line.\r\n"
    epilogue = b"\r\nThis is the epilogue.\r\n--" + boundary + b"\r\nnot a part\r\n"
    parts = _split(tmp_path, preamble + body + epilogue, boundary)
    assert _contents(parts) == [("path", None, "a.jpg"), ("file", "a.jpg", b"bytes")]


def test_a_body_without_a_trailing_line_break_after_the_close_delimiter_is_complete(tmp_path):
    body = _urllib3([("a", "1")])
    assert body.endswith(b"--\r\n")
    assert _contents(_split(tmp_path, body[:-2])) == [("a", None, "1")]


@pytest.mark.parametrize("padding", [b" ", b"\t", b" \t  \t", b" " * 60])
def test_transport_padding_after_a_delimiter_is_ignored(tmp_path, padding):
    body = _urllib3([("a", "1"), ("file", ("f.bin", b"data", "application/octet-stream"))])
    line = b"--" + BOUNDARY.encode() + b"\r\n"
    padded = body.replace(line, line[:-2] + padding + b"\r\n")
    assert padded.count(padding + b"\r\n") >= 2
    assert _contents(_split(tmp_path, padded)) == [("a", None, "1"), ("file", "f.bin", b"data")]


def test_a_form_with_no_part_at_all_is_empty(tmp_path):
    assert _split(tmp_path, b"--" + BOUNDARY.encode() + b"--\r\n") == []


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ("form-data; name=\"file\"; filename*=UTF-8''caf%C3%A9%20%E6%9D%B1.jpg", "café 東.jpg"),
        ("form-data; name=\"file\"; filename*=utf-8'en'na%C3%AFve.txt", "naïve.txt"),
        ("form-data; name=\"file\"; filename*=UTF-8''100%25.jpg", "100%.jpg"),
        ('form-data; name="file"; filename="café.jpg"', "café.jpg"),  # raw UTF-8, as browsers
        ('form-data; name="file"; filename="a b;c.jpg"', "a b;c.jpg"),
        ('FORM-DATA; NAME="file"; FILENAME="up.jpg"', "up.jpg"),
        ('form-data;name="file";filename=plain.jpg', "plain.jpg"),
    ],
)
def test_file_names_are_decoded(tmp_path, disposition, filename):
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
        f"Content-Type: image/jpeg\r\n\r\nDATA\r\n--{BOUNDARY}--\r\n"
    ).encode()
    [part] = _split(tmp_path, body)
    assert (part.name, part.filename, part.file.read_bytes()) == ("file", filename, b"DATA")


def test_urllib3s_html5_file_names_survive(tmp_path):
    body = _urllib3([_file_field("file", b"x", "Zürich 東京.jpg")])
    [part] = _split(tmp_path, body)
    assert part.filename == "Zürich 東京.jpg"


# -- block boundaries ----------------------------------------------------------------

_HEAD = _urllib3([("file", ("f.bin", b"", "application/octet-stream"))]).index(b"\r\n\r\n") + 4
# 0: the delimiter starts a block; 1 to len - 1: it is cut in two; len and more: the
# line break or the next part's headers are.
_STRADDLES = [0, 1, 2, 3, len(DELIMITER) // 2, *range(len(DELIMITER) - 1, len(DELIMITER) + 4)]


@pytest.mark.parametrize("blocks", [1, 2, 3])
@pytest.mark.parametrize("before", _STRADDLES)
def test_a_delimiter_straddling_a_block_boundary_is_found(tmp_path, blocks, before):
    # The delimiter after the file starts `before` bytes ahead of a block's end.
    content = os.urandom(blocks * BLOCK - before - _HEAD)
    body = _urllib3([("file", ("f.bin", content, "application/octet-stream")), ("after", "field")])
    assert body.index(DELIMITER, _HEAD) == blocks * BLOCK - before
    parts = _split(tmp_path, body)
    assert [(p.name, p.size) for p in parts] == [("file", len(content)), ("after", 0)]
    assert parts[0].file.read_bytes() == content
    assert parts[1].value == "field"


@pytest.mark.parametrize("shift", range(-150, 4, 3))
def test_headers_fields_and_close_delimiter_straddling_a_block_boundary(tmp_path, shift):
    # The file ends `shift` bytes from the first block's end, so that the second
    # part's headers, its value and the close delimiter each fall across it once.
    length = BLOCK + shift - _HEAD
    content = ((b"\r\n-" + bytes(range(256))) * (length // 259 + 1))[:length]
    body = _urllib3([("file", ("f.bin", content, "application/octet-stream")), ("v", "x" * 20)])
    assert body.index(DELIMITER, _HEAD) == BLOCK + shift
    assert len(body) >= BLOCK
    assert _contents(_split(tmp_path, body)) == [("file", "f.bin", content), ("v", None, "x" * 20)]


_TRICKY = b"\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n\r"
_RICH = _urllib3(
    [
        ("attachment_id", "42"),
        ("path", "2024/05/ünï.jpg"),
        ("file", ("a.bin", _TRICKY, "image/jpeg")),
        ("file", ("empty.bin", b"", "application/octet-stream")),
        ("note", "x" * 300),
    ]
)


@pytest.mark.parametrize("block", [*range(1, 48), 63, 64, 65, 255, 256, 1000])
def test_any_block_size_splits_the_same_way(tmp_path, block):
    with mock.patch.object(formdata, "BLOCK", block):
        assert _contents(_split(tmp_path, b"preamble\r\n" + _RICH + b"epilogue")) == [
            ("attachment_id", None, "42"),
            ("path", None, "2024/05/ünï.jpg"),
            ("file", "a.bin", _TRICKY),
            ("file", "empty.bin", b""),
            ("note", None, "x" * 300),
        ]


_PARTS = st.lists(
    st.one_of(
        st.tuples(st.just("field"), st.text(max_size=40)),
        st.tuples(st.just("file"), st.binary(max_size=200)),
        st.tuples(
            st.just("file"),
            st.lists(st.sampled_from([b"\r", b"\n", b"-", b"\r\n--", b"b", b"\x00"])).map(b"".join),
        ),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=_PARTS, block=st.integers(min_value=1, max_value=70))
def test_random_forms_round_trip_at_any_block_size(parts, block):
    boundary = "b"
    for _, value in parts:
        data = value.encode() if isinstance(value, str) else value
        # An encoder picks a boundary that is not in the data, nor right after the
        # line break that ends the part's headers (data starting "--b").
        assume(b"\r\n--b" not in b"\r\n" + data)
    fields = [
        (f"f{i}", value) if kind == "field" else (f"f{i}", (f"n{i}", value, "x/y"))
        for i, (kind, value) in enumerate(parts)
    ]
    body, _ = urllib3.encode_multipart_formdata(fields, boundary=boundary)
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(formdata, "BLOCK", block):
        found = _contents(_split(Path(folder), body, boundary))
    assert found == [
        (f"f{i}", None if kind == "field" else f"n{i}", value)
        for i, (kind, value) in enumerate(parts)
    ]


# -- large files ---------------------------------------------------------------------


async def test_a_20_mib_file_reaches_disk_intact_with_bounded_memory(tmp_path):
    content = os.urandom(20 * 1024 * 1024)
    digest = hashlib.sha256(content).hexdigest()
    form = aiohttp.FormData()
    form.add_field("path", "2024/05/video.mp4")
    form.add_field("file", io.BytesIO(content), filename="video.mp4", content_type="video/mp4")
    body, boundary = await _encoded(form)
    spool = tmp_path / "body"
    spool.write_bytes(body)
    del body, content, form
    parts_folder = tmp_path / "parts"
    parts_folder.mkdir()
    tracemalloc.start()
    try:
        parts = split_form(spool, boundary, parts_folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(p.name, p.filename, p.size) for p in parts] == [
        ("path", None, 0),
        ("file", "video.mp4", 20 * 1024 * 1024),
    ]
    assert hashlib.sha256(parts[1].file.read_bytes()).hexdigest() == digest
    assert peak < 6 * BLOCK


def test_a_body_whose_boundary_never_appears_is_refused_with_bounded_memory(tmp_path):
    # A client that sends the wrong boundary (or a huge preamble) must not make
    # the splitter hold the whole body in memory.
    body = _urllib3([("file", ("big.bin", b"\0" * (20 * 1024 * 1024), "x/y"))])
    spool = tmp_path / "body"
    spool.write_bytes(body)
    del body
    tracemalloc.start()
    try:
        with pytest.raises(FormError):
            split_form(spool, b"another-boundary", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * BLOCK


# -- limits --------------------------------------------------------------------------


def test_a_field_of_exactly_max_field_bytes_is_accepted(tmp_path):
    value = "é" * (MAX_FIELD // 2)
    assert _contents(_split(tmp_path, _urllib3([("big", value)]))) == [("big", None, value)]


def test_a_field_longer_than_max_field_is_refused(tmp_path):
    _refused(tmp_path, _urllib3([("big", "x" * (MAX_FIELD + 1))]), f"longer than {MAX_FIELD}")


def test_a_file_part_may_be_longer_than_max_field(tmp_path):
    body = _urllib3([("file", ("f.bin", b"x" * (MAX_FIELD * 3), "x/y"))])
    assert _split(tmp_path, body)[0].size == MAX_FIELD * 3


def _with_header_block(length: int) -> bytes:
    """A one-field body whose header block (without its blank line) is ``length`` bytes."""
    disposition = b'Content-Disposition: form-data; name="a"\r\nX-Pad: '
    head = disposition + b"p" * (length - len(disposition))
    return (
        b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n\r\nv\r\n--" + BOUNDARY.encode() + b"--"
    )


def test_headers_of_exactly_max_headers_bytes_are_accepted(tmp_path):
    assert _contents(_split(tmp_path, _with_header_block(MAX_HEADERS))) == [("a", None, "v")]


def test_headers_longer_than_max_headers_are_refused(tmp_path):
    _refused(tmp_path, _with_header_block(MAX_HEADERS + 1), f"longer than {MAX_HEADERS}")


def test_headers_that_never_end_are_refused_early(tmp_path):
    body = b"--" + BOUNDARY.encode() + b"\r\nX-Pad: " + b"p" * (3 * BLOCK)
    _refused(tmp_path, body, f"longer than {MAX_HEADERS}")


def _fields(n: int) -> bytes:
    return _urllib3([(f"f{i}", str(i)) for i in range(n)])


def test_max_parts_are_accepted(tmp_path):
    parts = _split(tmp_path, _fields(MAX_PARTS))
    assert len(parts) == MAX_PARTS
    assert parts[-1] == FormPart(f"f{MAX_PARTS - 1}", None, value=str(MAX_PARTS - 1))


def test_more_than_max_parts_are_refused(tmp_path):
    _refused(tmp_path, _fields(MAX_PARTS + 1), f"more than {MAX_PARTS}")


def test_the_largest_upload_form_the_webhook_takes_is_within_max_parts(tmp_path):
    # The upload webhook takes up to MAX_FILES files, a path field for each, and
    # the attachment_id and original fields.
    fields: list = [("attachment_id", "7"), ("original", "f0.jpg")]
    for i in range(MAX_FILES):
        fields += [("path", f"f{i}.jpg"), ("file", (f"f{i}.jpg", b"x", "image/jpeg"))]
    assert len(_split(tmp_path, _urllib3(fields))) == 2 * MAX_FILES + 2


# -- malformed bodies ----------------------------------------------------------------


async def _aiohttp_body() -> tuple[bytes, bytes]:
    form = aiohttp.FormData()
    form.add_field("path", "a.jpg")
    form.add_field("file", b"0123456789" * 10, filename="a.jpg")
    return await _encoded(form)


@pytest.mark.parametrize(
    "cut",
    [
        lambda body, b: b"",
        lambda body, b: body[: len(b) + 2],  # the first delimiter only
        lambda body, b: body[: len(b) + 5],  # inside the first headers
        lambda body, b: body[: body.index(b"a.jpg")],  # inside a field
        lambda body, b: body[: body.index(b"0123")],  # right before file content
        lambda body, b: body[: body.index(b"0123") + 50],  # inside file content
        lambda body, b: body[: body.rindex(b"--" + b)],  # no close delimiter at all
        lambda body, b: body[: body.rindex(b"--" + b) + len(b) + 2],  # "--boundary"
        lambda body, b: body[: body.rindex(b"--" + b) + len(b) + 3],  # "--boundary-"
    ],
)
async def test_a_truncated_body_is_refused(tmp_path, cut):
    body, boundary = await _aiohttp_body()
    _refused(tmp_path, cut(body, boundary), "ends early", boundary)


@pytest.mark.parametrize("block", [7, 64, BLOCK])
@pytest.mark.parametrize("after", [b"zz\r\n", b"x", b" x\r\n"])
def test_a_line_that_starts_like_a_delimiter_inside_a_part_is_refused(tmp_path, block, after):
    b = BOUNDARY.encode()
    body = _one_part(
        b'Content-Disposition: form-data; name="file"; filename="a.jpg"',
        b"jpeg bytes\r\n--" + b + after + b"more bytes",
    )
    with mock.patch.object(formdata, "BLOCK", block):
        _refused(tmp_path, body, "a multipart delimiter is not followed by a line break")


def test_a_delimiter_look_alike_in_the_epilogue_is_ignored(tmp_path):
    b = BOUNDARY.encode()
    body = _one_part(b'Content-Disposition: form-data; name="a"') + b"\r\n--" + b + b"zz"
    assert [(part.name, part.value) for part in _split(tmp_path, body)] == [("a", "v")]


def test_a_malformed_header_line_is_quoted_in_the_answer(tmp_path):
    body = _one_part(b'Content-Disposition: form-data; name="a"\r\nno colon here')
    _refused(tmp_path, body, "a malformed multipart header line: 'no colon here'")


def _one_part(headers: bytes, content: bytes = b"v") -> bytes:
    b = BOUNDARY.encode()
    return b"--" + b + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n--" + b + b"--\r\n"


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        (b"Content-Type: text/plain", "Content-Disposition: form-data"),
        (b'Content-Disposition: attachment; name="a"', "Content-Disposition: form-data"),
        (b'Content-Disposition: inline; name="a"', "Content-Disposition: form-data"),
        (b"Content-Disposition: form-data", "no name"),
        (b'Content-Disposition: form-data; name=""', "no name"),
        (b'Content-Disposition: form-data; filename="a.jpg"', "no name"),
        (
            b'Content-Disposition: form-data; name="a"\r\nno colon here',
            "malformed multipart header",
        ),
        (b'Content-Disposition: form-data; name="a"\r\n: value', "malformed multipart header"),
        (b'Content-Disposition: form-data; name="a"\r\n folded', "malformed multipart header"),
        (b'Content-Disposition: form-data; name="a"; filename="caf\xe9.jpg"', "not UTF-8"),
        (b'Content-Disposition: form-data; name="\xff"', "not UTF-8"),
    ],
)
def test_malformed_part_headers_are_refused(tmp_path, headers, match):
    _refused(tmp_path, _one_part(headers), match)


@pytest.mark.parametrize("more", [b"", b'Content-Disposition: form-data; name="b"\r\n\r\nw\r\n'])
def test_a_part_without_any_header_is_refused(tmp_path, more):
    b = BOUNDARY.encode()
    body = b"--" + b + b"\r\n\r\nvalue\r\n--" + b + b"\r\n" + more + b"--" + b + b"--\r\n"
    with pytest.raises(FormError):
        _split(tmp_path, body)


def test_a_field_that_is_not_utf8_is_refused(tmp_path):
    _refused(tmp_path, _one_part(b'Content-Disposition: form-data; name="a"', b"caf\xe9"), "UTF-8")


@pytest.mark.parametrize("after", [b"X\r\n", b"-\r\n", b"garbage", b" x\r\n", b" " * 65 + b"\r\n"])
def test_a_delimiter_followed_by_anything_but_padding_and_crlf_is_refused(tmp_path, after):
    b = BOUNDARY.encode()
    body = (
        b"--" + b + after + b'Content-Disposition: form-data; name="a"\r\n\r\nv\r\n--' + b + b"--"
    )
    with pytest.raises(FormError):
        _split(tmp_path, body)


def test_a_body_with_another_boundary_is_refused(tmp_path):
    _refused(tmp_path, _urllib3([("a", "1")], boundary="one"), "ends early", boundary="two")


def test_a_boundary_that_is_a_prefix_of_the_real_one_does_not_split_the_body(tmp_path):
    with pytest.raises(FormError):
        _split(tmp_path, _urllib3([("a", "1")], boundary="abcdef"), "abc")


def test_form_error_is_a_value_error():
    assert issubclass(FormError, ValueError)

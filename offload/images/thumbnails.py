"""Thumbnails and EXIF for the Specify asset server: blocking, run in an executor.

Specify's server runs ImageMagick's ``convert SRC -resize SxS> DST``: the image
shrunk (never enlarged) to fit a ``scale`` x ``scale`` box, the first page of a
PDF (``SRC[0]``) flattened on white. Here libvips (pyvips) does the same, and
also applies the EXIF orientation, which ``convert`` did not (a phone photo's
thumbnail stands the right way up). pyvips-binary's libvips has no PDF loader,
so pypdfium2 (PDFium) renders a PDF's first page at 72 dpi, the size
ImageMagick renders it at, shrunk to fit if larger. A phone's HEIC (HEVC),
which that libvips cannot decode either, is decoded by libheif
(``offload.images.heif``).

EXIF is read with libvips too: its ``exif-ifdN-Tag`` fields become Specify's
EXIF groups (exifread's ``Image``, ``Thumbnail``, ``EXIF``, ``GPS``,
``Interoperability``) with the raw value, less the ``(formatted, type,
count, bytes)`` note libvips appends.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyvips  # type: ignore[import-untyped]

from offload.images import heif

#: libvips's EXIF directories by number, named as exifread (Specify's reader) names them.
IFD_GROUPS = {"0": "Image", "1": "Thumbnail", "2": "EXIF", "3": "GPS", "4": "Interoperability"}
_EXIF_FIELD = re.compile(r"exif-ifd(\d)-(.+)")
#: libvips writes a value as "raw (formatted, ASCII, 20 components, 20 bytes)": the raw
#: part is kept (libexif's formatted part can be "Internal error (unknown value 1)").
_NOTE = re.compile(r"(.*?) \(.*, [^,]+, \d+ components?, \d+ bytes?\)", re.DOTALL)
#: Largest side, in pixels, of a source libvips is asked to open (a decompression bomb).
MAX_PIXELS = 200_000_000


class ThumbnailError(ValueError):
    """The file is not an image (or PDF) this server can read."""


def make_thumbnail(source: Path, target: Path, scale: int, *, pdf: bool) -> None:
    """Write a thumbnail of ``source`` that fits ``scale`` x ``scale`` to ``target``.

    The format follows ``target``'s suffix. Raises ThumbnailError for a file that
    cannot be read.
    """
    try:
        if pdf:
            image = _pdf_first_page(source, scale)
        else:
            header = pyvips.Image.new_from_file(str(source))
            if header.width * header.height > MAX_PIXELS:
                raise ThumbnailError("the image is too large to make a thumbnail of")
            if heif.is_hevc(header):  # a phone's HEIC: libvips here cannot decode HEVC
                if header.width * header.height > heif.MAX_PIXELS:
                    raise ThumbnailError("the HEIC image is too large to make a thumbnail of")
                with heif.one_at_a_time():
                    picture = heif.decode(source)
                    image = picture.thumbnail_image(scale, height=scale, size="down")
                    _write(image, target)
                return
            image = pyvips.Image.thumbnail(str(source), scale, height=scale, size="down")
        _write(image, target)
    except pyvips.Error as exc:
        raise ThumbnailError(f"cannot read the file as an image: {_first_line(exc)}") from None
    except heif.HeifError as exc:
        raise ThumbnailError(str(exc)) from None


def _write(image: pyvips.Image, target: Path) -> None:
    if target.suffix.lower() in (".jpg", ".jpeg") and image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    image.write_to_file(str(target), keep="icc")


def _pdf_first_page(source: Path, scale: int) -> pyvips.Image:
    import pypdfium2  # type: ignore[import-untyped]  # only PDFs need it

    try:
        document = pypdfium2.PdfDocument(str(source))
    except pypdfium2.PdfiumError as exc:
        raise ThumbnailError(f"cannot read the file as a PDF: {exc}") from None
    try:
        if len(document) == 0:
            raise ThumbnailError("the PDF has no pages")
        page = document[0]
        width, height = page.get_size()  # points: pixels at 72 dpi
        factor = min(1.0, scale / max(width, height, 1.0))
        bitmap = page.render(scale=factor, fill_color=(255, 255, 255, 255), rev_byteorder=True)
        pixels = bytes(bitmap.buffer)
        stride_pixels = bitmap.stride // bitmap.n_channels
        image = pyvips.Image.new_from_memory(
            pixels, stride_pixels, bitmap.height, bitmap.n_channels, "uchar"
        )
        image = image.crop(0, 0, bitmap.width, bitmap.height)
        if image.bands == 4:
            image = image.flatten(background=[255, 255, 255])
        return image.copy(interpretation="srgb")
    finally:
        document.close()


def read_exif(source: Path) -> dict[str, dict[str, str]]:
    """The file's EXIF as ``{group: {tag: value}}``; empty when it has none or is no image."""
    try:
        image = pyvips.Image.new_from_file(str(source))
        names = image.get_fields()
    except pyvips.Error:
        return {}
    groups: dict[str, dict[str, str]] = {}
    for name in names:
        match = _EXIF_FIELD.fullmatch(name)
        if match is None:
            continue
        group = IFD_GROUPS.get(match[1], f"IFD{match[1]}")
        try:
            value = str(image.get(name))
        except pyvips.Error:
            continue
        noted = _NOTE.fullmatch(value)
        groups.setdefault(group, {})[match[2]] = noted[1] if noted else value
    return groups


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

"""Render one variant of an image file with libvips (pyvips), to a file.

Blocking: the server runs ``render`` in its executor, under its own bound of
transforms at once. libvips streams: ``thumbnail`` shrinks on load (a JPEG is
decoded at 1/2, 1/4 or 1/8 size when that is enough) and works in strips, so
memory follows the output size more than the input's. The result is written
to a temporary file, never held whole in memory, and its size checked against
``max_output`` before anyone stores it.

What an output is: orientation applied (EXIF), colour converted to sRGB (CMYK
and embedded ICC profiles through the profile, 16-bit to 8-bit), and every
piece of metadata dropped (EXIF with its GPS position, XMP, IPTC, comments)
except the ICC profile, which is the sRGB one after conversion.

A phone's HEIC (HEVC in HEIF), which pyvips-binary's libvips cannot decode, is
decoded by libheif (``offload.images.heif``) and then rendered the same way.

A decompression bomb (a small file that claims a huge image) is refused from
its header alone: libvips reads the header when the image is opened and
decodes nothing until pixels are asked for.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyvips  # type: ignore[import-untyped]

from offload.images import heif
from offload.images.formats import OUTPUTS
from offload.images.options import COMPASS, TransformOptions

#: libvips' operation cache would keep decoded images, and the handles of temporary
#: originals already deleted, for requests that never repeat one (each render reads a
#: file of its own); the stored variant is the cache.
pyvips.cache_set_max(0)
DEFAULT_QUALITY = {"jpeg": 80, "webp": 80, "avif": 55}
ANIMATED_FORMATS = ("gif", "webp")
_HUGE = 10_000_000  # "no limit" for the free side of a width- or height-only resize
_EDGES = {
    "center": (0.5, 0.5), "north": (0.5, 0.0), "south": (0.5, 1.0), "east": (1.0, 0.5),
    "west": (0.0, 0.5), "northeast": (1.0, 0.0), "northwest": (0.0, 0.0),
    "southeast": (1.0, 1.0), "southwest": (0.0, 1.0),
}  # fmt: skip


class RenderError(Exception):
    """An image that cannot be rendered; ``status`` is the HTTP answer."""

    status = 422


class TooLarge(RenderError):
    """The input has more pixels than allowed, or the output more bytes."""


class Unreadable(RenderError):
    """Not an image libvips reads."""

    status = 415


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    max_output: int


@dataclass(frozen=True)
class Rendered:
    """A rendered variant in a temporary file the caller removes."""

    path: Path
    content_type: str
    size: int


def render(
    source: Path, options: TransformOptions, *, fmt: str, limits: Limits, workdir: Path
) -> Rendered:
    """Render ``source`` as ``options`` say, in format ``fmt``, to a file in ``workdir``."""
    try:
        header = pyvips.Image.new_from_file(str(source))
    except pyvips.Error as exc:
        raise Unreadable("not an image offload can read") from exc
    pages = _pages(header)
    animate = options.animated is not False and pages > 1 and fmt in ANIMATED_FORMATS
    frames = pages if animate else 1
    if header.width * header.height * frames > limits.max_pixels:
        raise TooLarge(
            f"the image is {header.width}x{header.height} pixels"
            + (f" in {frames} frames" if frames > 1 else "")
            + f", over this site's limit of {limits.max_pixels}"
        )
    hevc = heif.is_hevc(header)
    try:
        with heif.one_at_a_time() if hevc else contextlib.nullcontext():
            picture = _Picture(source, animate, _decoded_heif(source, header) if hevc else None)
            image = _resize(picture, header, options)
            image = _to_srgb(image)
            image = _fit_to_format(image, options, fmt)
            return _save(image, options, fmt, limits, workdir)
    except pyvips.Error as exc:
        raise Unreadable("the image could not be decoded") from exc


@dataclass(frozen=True)
class _Picture:
    """Where the pixels come from: the file, through libvips' ``thumbnail`` (which
    shrinks on load), or a picture already decoded (HEVC HEIF, ``offload.images.heif``)."""

    source: Path
    animate: bool
    decoded: pyvips.Image | None = None

    def thumbnail(self, width: int, **options: object) -> pyvips.Image:
        if self.decoded is not None:
            return self.decoded.thumbnail_image(width, **options)
        name = f"{self.source}[n=-1]" if self.animate else str(self.source)
        return pyvips.Image.thumbnail(name, width, **options)


def _decoded_heif(source: Path, header: pyvips.Image) -> pyvips.Image:
    """The decoded picture of an HEVC HEIF (libvips cannot decode it)."""
    if header.width * header.height > heif.MAX_PIXELS:
        raise TooLarge(
            f"the HEIC image is {header.width}x{header.height} pixels, over the limit of"
            f" {heif.MAX_PIXELS} for HEIC"
        )
    try:
        return heif.decode(source)
    except heif.HeifError as exc:
        raise Unreadable(str(exc)) from None


def _pages(header: pyvips.Image) -> int:
    if header.get_typeof("n-pages"):
        return max(1, int(header.get("n-pages")))
    return 1


def _upright_size(header: pyvips.Image, picture: _Picture) -> tuple[int, int]:
    """The width and height once EXIF orientation is applied (one frame's)."""
    if picture.decoded is not None:  # decoded upright
        return picture.decoded.width, picture.decoded.height
    height = header.height
    if picture.animate and header.get_typeof("page-height"):
        height = header.get("page-height")
    orientation = header.get("orientation") if header.get_typeof("orientation") else 1
    return (height, header.width) if orientation in (5, 6, 7, 8) else (header.width, height)


def _resize(picture: _Picture, header: pyvips.Image, options: TransformOptions) -> pyvips.Image:
    scale = options.dpr or 1.0
    width = round(options.width * scale) if options.width else None
    height = round(options.height * scale) if options.height else None
    if width is None and height is None:
        return picture.thumbnail(_HUGE, height=_HUGE, size="down")
    if width is None or height is None or options.fit in (None, "inside", "contain"):
        return picture.thumbnail(width or _HUGE, height=height or _HUGE, size="down")
    # cover: exactly width x height.
    gravity = options.gravity or "center"
    if gravity in ("attention", "entropy", "center") or picture.animate:
        crop = gravity if gravity in ("attention", "entropy") else "centre"
        return picture.thumbnail(width, height=height, crop=crop, size="both")
    upright_w, upright_h = _upright_size(header, picture)
    ratio = max(width / upright_w, height / upright_h)
    scaled_w = max(width, math.ceil(upright_w * ratio))
    scaled_h = max(height, math.ceil(upright_h * ratio))
    image = picture.thumbnail(scaled_w, height=scaled_h, size="force")
    if gravity in COMPASS:
        fx, fy = _EDGES[gravity]
    else:  # fp:X:Y
        _, x, y = gravity.split(":")
        fx, fy = float(x), float(y)
    left = min(max(round(fx * image.width - width / 2), 0), image.width - width)
    top = min(max(round(fy * image.height - height / 2), 0), image.height - height)
    return image.extract_area(left, top, width, height)


def _to_srgb(image: pyvips.Image) -> pyvips.Image:
    """Through the embedded profile when there is one, else by libvips' rules; 8 bits."""
    if image.get_typeof("icc-profile-data"):
        try:
            image = image.icc_transform("srgb", embedded=True, intent="perceptual")
        except pyvips.Error:
            image = image.colourspace("srgb")  # a broken profile: convert by the numbers
    elif image.interpretation not in ("srgb", "b-w"):
        image = image.colourspace("srgb")
    if image.format != "uchar":
        target = "b-w" if image.bands <= 2 else "srgb"
        image = image.colourspace(target) if image.interpretation != target else image
        if image.format != "uchar":
            image = image.cast("uchar")
    return image


def _fit_to_format(image: pyvips.Image, options: TransformOptions, fmt: str) -> pyvips.Image:
    """Pad for ``contain``; flatten alpha for JPEG."""
    if options.fit == "contain" and options.width and options.height:
        scale = options.dpr or 1.0
        width, height = round(options.width * scale), round(options.height * scale)
        if (image.width, image.height) != (width, height) and not image.get_typeof("page-height"):
            if fmt != "jpeg" and not image.hasalpha():
                image = image.bandjoin(255)
            background = [255] * image.bands if fmt == "jpeg" else [0] * image.bands
            image = image.gravity(
                "centre", width, height, extend="background", background=background
            )
    if fmt == "jpeg" and image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    return image


def _save(
    image: pyvips.Image, options: TransformOptions, fmt: str, limits: Limits, workdir: Path
) -> Rendered:
    content_type, ext = OUTPUTS[fmt]
    handle, name = tempfile.mkstemp(suffix="." + ext, dir=workdir)
    os.close(handle)
    path = Path(name)
    kwargs: dict[str, object] = {"keep": pyvips.enums.ForeignKeep.ICC}
    if fmt in DEFAULT_QUALITY:
        kwargs["Q"] = options.quality or DEFAULT_QUALITY[fmt]
    if fmt == "avif":
        kwargs.update(compression="av1", effort=2)
    elif fmt == "webp":
        kwargs["effort"] = 2
    elif fmt == "jpeg":
        kwargs["optimize_coding"] = True
    try:
        image.write_to_file(str(path), **kwargs)
        size = path.stat().st_size
        if size > limits.max_output:
            raise TooLarge(
                f"the rendered image is {size} bytes, over the limit of {limits.max_output}"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Rendered(path, content_type, size)

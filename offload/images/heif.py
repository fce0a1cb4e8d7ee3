"""HEIF photos whose picture is HEVC (a phone's HEIC), decoded by libheif through pi-heif.

pyvips-binary's libvips reads the HEIF container (size, EXIF, ICC) but ships no
HEVC decoder, so a phone's HEIC opens and then fails on its first pixel. pi-heif
is pillow-heif's decode-only build (libheif with libde265, LGPL, and no
encoder), so those pictures are decoded by it instead, into a libvips image the
rest of the render treats like any other. AVIF (AV1 in HEIF) stays with libvips.

libheif applies the container's rotation and mirroring (``irot``/``imir``) as
it decodes, as libvips does for the HEIF it can decode, so the picture comes
out upright and EXIF's orientation is not applied again. libheif decodes a
picture whole (no shrink on load): it costs 3 bytes a pixel in memory, which is
why ``MAX_PIXELS`` bounds it below the site's own limit, and why a process holds
one decoded picture at a time. The server takes that turn on the event loop by
content type before a render slot (``Transforms.heic_turn``), so a HEIC in line
holds no slot; ``one_at_a_time``, around the whole render in its thread, is the
backstop for a HEIC stored under another type.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyvips  # type: ignore[import-untyped]

#: Largest HEVC picture decoded (in memory, whole): a 48-megapixel phone photo fits.
MAX_PIXELS = 50_000_000
#: Content types of HEIF files (a HEIC is decoded whole: callers take turns by these).
CONTENT_TYPES = frozenset(
    {"image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence"}
)
_DECODED = threading.Lock()
_BANDS = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}


class HeifError(Exception):
    """The HEVC picture could not be decoded."""


def is_heif_type(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in CONTENT_TYPES


def is_hevc(header: pyvips.Image) -> bool:
    """Whether libvips opened this as HEIF holding HEVC (which it cannot decode)."""
    return bool(header.get_typeof("heif-compression")) and header.get("heif-compression") == "hevc"


@contextmanager
def one_at_a_time() -> Iterator[None]:
    """Hold while a decoded picture is in use (blocking: run in an executor thread)."""
    with _DECODED:
        yield


def decode(path: Path) -> pyvips.Image:
    """The upright picture of an HEVC HEIF file, 8 bits a sample, its ICC profile kept."""
    import pi_heif  # type: ignore[import-untyped]  # only HEIC needs it

    try:
        heif = pi_heif.open_heif(str(path), convert_hdr_to_8bit=True)
        width, height = heif.size
        if width * height > MAX_PIXELS:
            raise HeifError(f"the HEIC picture is {width}x{height}, over {MAX_PIXELS} pixels")
        bands = _BANDS.get(heif.mode)
        if bands is None:
            raise HeifError(f"unsupported HEIC pixel layout {heif.mode}")
        data, stride = heif.data, heif.stride
        icc = heif.info.get("icc_profile")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise HeifError(f"the HEIC picture could not be decoded: {exc}") from None
    image = pyvips.Image.new_from_memory(data, stride // bands, height, bands, "uchar")
    # ``data`` is a view of memory the HeifFile owns and frees with itself (the view
    # does not keep it): pyvips passes an image's references on to every image made
    # from it, so this keeps the decoded picture alive exactly as long as it is used.
    image._references.append(heif)
    if stride // bands != width:
        image = image.crop(0, 0, width, height)
    image = image.copy(interpretation="srgb" if bands >= 3 else "b-w")
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", bytes(icc))
    return image

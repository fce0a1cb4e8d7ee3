"""Rendering variants with libvips: real images made here with pyvips, checked by pixel."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import pyvips

from offload.images.formats import output_format
from offload.images.options import parse_options
from offload.images.render import Limits, Rendered, TooLarge, Unreadable, render

LIMITS = Limits(max_pixels=50_000_000, max_output=20_000_000)
RED = (200, 30, 30)


# -- images made for the tests (shared with the other test_transforms modules) ---------


def solid(width: int, height: int, colour: tuple[int, ...] = RED) -> pyvips.Image:
    return (
        (pyvips.Image.black(width, height) + list(colour)).cast("uchar").copy(interpretation="srgb")
    )


def jpeg_bytes(width: int = 800, height: int = 600, colour: tuple[int, ...] = RED) -> bytes:
    return solid(width, height, colour).write_to_buffer(".jpg", Q=95)


def cmyk_jpeg(path: Path) -> None:
    solid(400, 300).colourspace("cmyk").write_to_file(str(path))


def png16(path: Path) -> None:
    deep = (solid(400, 300).cast("ushort") * 257).copy(interpretation="rgb16")
    deep.write_to_file(str(path), bitdepth=16)


def rotated_jpeg(path: Path) -> None:
    """A phone photo: stored 800x600 with EXIF orientation 6 (upright it is 600x800),
    the top-left stored pixel block blue, and a GPS-bearing EXIF block."""
    image = solid(800, 600).draw_rect([30, 30, 220], 0, 0, 100, 100, fill=True)
    image = image.copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd3-GPSLatitude", "52/1 31/1 0/1")
    image.write_to_file(str(path))


def animated_gif(path: Path, frames: int = 3) -> None:
    pages = [solid(100, 80, (255 * (i % 2), 0, 40 * i)) for i in range(frames)]
    image = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    image.set_type(pyvips.GValue.gint_type, "page-height", 80)
    image.set_type(pyvips.GValue.gint_type, "n-pages", frames)
    image.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    image.write_to_file(str(path))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def opened(rendered: Rendered) -> pyvips.Image:
    return pyvips.Image.new_from_file(str(rendered.path), access="sequential")


def near(pixel: list[float], colour: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


def make(tmp_path: Path, source: Path, text: str, fmt: str) -> Rendered:
    return render(source, parse_options(text), fmt=fmt, limits=LIMITS, workdir=tmp_path)


# -- the tests --------------------------------------------------------------------------


def test_a_width_alone_keeps_the_aspect_ratio_and_the_colour(tmp_path):
    source = tmp_path / "photo.jpg"
    source.write_bytes(jpeg_bytes())
    image = opened(make(tmp_path, source, "w=200", "jpeg"))
    assert (image.width, image.height) == (200, 150)
    assert near(image(100, 75), RED)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("w=200,h=200,fit=cover", (200, 200)),
        ("w=200,h=200,fit=cover,g=north", (200, 200)),
        ("w=200,h=100,fit=cover,g=fp:0.2:0.8", (200, 100)),
        ("w=200,h=200,fit=cover,g=attention", (200, 200)),
        ("w=200,h=200,fit=inside", (200, 150)),
        ("w=200,h=200", (200, 150)),
        ("w=200,h=200,fit=contain", (200, 200)),
        ("w=100,dpr=2", (200, 150)),
        ("h=60", (80, 60)),
        ("w=4000", (800, 600)),  # never enlarged
    ],
)
def test_fit_modes_give_the_dimensions_they_promise(tmp_path, text, size):
    source = tmp_path / "photo.jpg"
    source.write_bytes(jpeg_bytes())
    image = opened(make(tmp_path, source, text, "png"))
    assert (image.width, image.height) == size


def test_contain_pads_with_transparency_around_the_picture(tmp_path):
    source = tmp_path / "photo.jpg"
    source.write_bytes(jpeg_bytes())
    image = opened(make(tmp_path, source, "w=200,h=200,fit=contain", "png"))
    assert image.bands == 4
    assert image(100, 2)[3] == 0  # the band above the picture
    assert near(image(100, 100), (*RED, 255))


def test_a_cmyk_jpeg_comes_out_srgb_in_its_colour(tmp_path):
    source = tmp_path / "cmyk.jpg"
    cmyk_jpeg(source)
    assert pyvips.Image.new_from_file(str(source)).interpretation == "cmyk"
    image = opened(make(tmp_path, source, "w=100", "jpeg"))
    assert image.interpretation == "srgb"
    assert image.bands == 3
    assert near(image(50, 40), RED, tolerance=25)


def test_a_16_bit_png_comes_out_8_bit_in_its_colour(tmp_path):
    source = tmp_path / "deep.png"
    png16(source)
    assert pyvips.Image.new_from_file(str(source)).format == "ushort"
    image = opened(make(tmp_path, source, "w=100", "png"))
    assert image.format == "uchar"
    assert near(image(50, 40), RED, tolerance=2)


def test_exif_orientation_is_applied_and_metadata_stripped(tmp_path):
    source = tmp_path / "phone.jpg"
    rotated_jpeg(source)
    image = opened(make(tmp_path, source, "w=300", "jpeg"))
    assert (image.width, image.height) == (300, 400)  # upright: portrait
    # Orientation 6 turns the stored top-left corner to the top right.
    assert near(image(290, 10), (30, 30, 220), tolerance=40)
    assert near(image(10, 390), RED, tolerance=25)
    fields = image.get_fields()
    assert "exif-data" not in fields
    assert "orientation" not in fields
    assert not any("gps" in name.lower() for name in fields)


def test_an_icc_profile_is_kept_as_srgb(tmp_path):
    source = tmp_path / "cmyk.jpg"
    cmyk_jpeg(source)
    image = opened(make(tmp_path, source, "w=100", "jpeg"))
    profile = image.get("icc-profile-data")
    assert profile[16:20] == b"RGB "  # the profile's colour space (ICC header): not CMYK
    assert "sRGB" in profile.decode("utf-16-be", "ignore") + profile.decode("latin-1")


@pytest.mark.parametrize(("fmt", "pages"), [("gif", 3), ("webp", 3), ("png", 1)])
def test_an_animated_gif_keeps_its_frames_where_the_format_can(tmp_path, fmt, pages):
    source = tmp_path / "anim.gif"
    animated_gif(source)
    path = str(make(tmp_path, source, "w=50", fmt).path)
    image = pyvips.Image.new_from_file(path, **({"n": -1} if fmt != "png" else {}))
    assert (image.get("n-pages") if image.get_typeof("n-pages") else 1) == pages
    assert image.width == 50
    assert image.height == 40 * pages


def test_anim_0_takes_the_first_frame(tmp_path):
    source = tmp_path / "anim.gif"
    animated_gif(source)
    image = pyvips.Image.new_from_file(str(make(tmp_path, source, "w=50,anim=0", "gif").path), n=-1)
    assert (image.width, image.height) == (50, 40)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    source = tmp_path / "bomb.png"
    source.write_bytes(bomb_png())
    assert source.stat().st_size < 200
    with pytest.raises(TooLarge, match="100000x100000"):
        make(tmp_path, source, "w=10", "png")


def test_an_output_over_the_limit_is_refused_and_leaves_no_file(tmp_path):
    source = tmp_path / "photo.jpg"
    source.write_bytes(jpeg_bytes())
    with pytest.raises(TooLarge, match="rendered image"):
        render(
            source, parse_options("w=400"), fmt="png", limits=Limits(10**8, 100), workdir=tmp_path
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


def test_a_file_that_is_no_image_is_unreadable(tmp_path):
    source = tmp_path / "notes.jpg"
    source.write_bytes(b"just some text, no image at all")
    with pytest.raises(Unreadable):
        make(tmp_path, source, "w=10", "jpeg")


@pytest.mark.parametrize(
    ("asked", "accept", "original", "chosen"),
    [
        ("auto", "image/avif,image/webp,*/*", "image/jpeg", "avif"),
        ("auto", "image/webp,*/*", "image/jpeg", "webp"),
        ("auto", "image/avif;q=0,image/webp", "image/png", "webp"),
        ("auto", "*/*", "image/png", "png"),
        ("auto", "", "image/tiff", "jpeg"),
        (None, "image/avif", "image/gif", "gif"),
        ("webp", "", "image/jpeg", "webp"),
    ],
)
def test_f_auto_picks_avif_then_webp_then_the_originals_format(asked, accept, original, chosen):
    assert output_format(asked, accept, original) == chosen


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_every_output_format_is_written_as_itself(tmp_path, fmt):
    source = tmp_path / "photo.jpg"
    source.write_bytes(jpeg_bytes(200, 100))
    rendered = make(tmp_path, source, "w=50", fmt)
    loader = pyvips.Image.new_from_file(str(rendered.path)).get("vips-loader")
    assert loader.startswith({"jpeg": "jpeg", "png": "png", "webp": "webp", "avif": "heif"}[fmt])
    assert rendered.content_type == f"image/{fmt}"


def test_an_avif_original_is_read(tmp_path):
    source = tmp_path / "photo.avif"
    solid(300, 200).write_to_file(str(source), compression="av1", Q=90)
    image = opened(make(tmp_path, source, "w=150", "jpeg"))
    assert (image.width, image.height) == (150, 100)
    assert near(image(75, 50), RED, tolerance=20)


def test_transparency_becomes_white_in_a_jpeg(tmp_path):
    source = tmp_path / "clear.png"
    solid(200, 100).bandjoin(0).write_to_file(str(source))  # alpha 0 everywhere
    image = opened(make(tmp_path, source, "w=100", "jpeg"))
    assert image.bands == 3
    assert near(image(50, 25), (255, 255, 255), tolerance=3)


# -- HEIC: a phone's photo, HEVC in HEIF (tests/data/make_phone_heic.py made it) --------

PHONE_HEIC = Path(__file__).parent / "data" / "phone.heic"
BLUE = (30, 30, 220)


def test_a_phone_heic_comes_out_upright_in_srgb_without_its_gps(tmp_path):
    image = opened(make(tmp_path, PHONE_HEIC, "w=300", "jpeg"))
    assert (image.width, image.height) == (300, 400)  # stored 800x600, shown portrait
    assert near(image(290, 10), BLUE, tolerance=40)  # the stored top-left, turned
    assert near(image(10, 390), RED, tolerance=25)  # P3's numbers brought back to sRGB
    fields = image.get_fields()
    assert not any("gps" in name.lower() for name in fields)
    assert "exif-data" not in fields
    assert image.get("icc-profile-data")[16:20] == b"RGB "


def test_a_heic_cover_crop_at_an_edge_takes_its_upright_size(tmp_path):
    image = opened(make(tmp_path, PHONE_HEIC, "w=150,h=100,fit=cover,g=north", "webp"))
    assert (image.width, image.height) == (150, 100)
    assert near(image(145, 3), BLUE, tolerance=40)


def test_a_heic_larger_than_its_decoder_may_hold_is_refused(tmp_path, monkeypatch):
    from offload.images import heif

    monkeypatch.setattr(heif, "MAX_PIXELS", 1000)
    with pytest.raises(TooLarge, match="HEIC"):
        make(tmp_path, PHONE_HEIC, "w=100", "jpeg")


def test_a_damaged_heic_is_unreadable_not_a_crash(tmp_path):
    damaged = tmp_path / "damaged.heic"
    data = PHONE_HEIC.read_bytes()
    damaged.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(Unreadable):
        make(tmp_path, damaged, "w=100", "jpeg")


def test_a_process_holds_one_decoded_heic_at_a_time(tmp_path, monkeypatch):
    import threading
    import time

    from offload.images import heif

    decode, inside, most = heif.decode, [0], [0]
    lock = threading.Lock()

    def slow_decode(path: Path) -> pyvips.Image:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)  # a render that holds its picture a while
        picture = decode(path)
        with lock:
            inside[0] -= 1
        return picture

    monkeypatch.setattr(heif, "decode", slow_decode)
    renders = [
        threading.Thread(target=make, args=(tmp_path, PHONE_HEIC, f"w={100 + i}", "jpeg"))
        for i in range(3)
    ]
    for thread in renders:
        thread.start()
    for thread in renders:
        thread.join()
    assert most[0] == 1

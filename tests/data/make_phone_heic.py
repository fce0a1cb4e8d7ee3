"""Make ``phone.heic``, the HEIC test photo, as a phone writes one. Run by hand, once:

    python -m venv /tmp/heic && /tmp/heic/bin/pip install pillow-heif pyvips pyvips-binary
    /tmp/heic/bin/python tests/data/make_phone_heic.py

The tests need no encoder: the file is committed. What it holds, like an iPhone's HEIC:
an HEVC picture stored 800x600 that a viewer turns upright to 600x800 (orientation 6:
the stored top-left blue block ends at the top right), a Display P3 ICC profile (the
red is P3's numbers for sRGB (200, 30, 30)), and EXIF with a GPS position.
"""

from pathlib import Path

import pillow_heif  # type: ignore[import-untyped]
import pyvips  # type: ignore[import-untyped]
from PIL import Image

RED = (200, 30, 30)
BLUE = (30, 30, 220)


def main() -> None:
    srgb = (pyvips.Image.black(800, 600) + list(RED)).cast("uchar").copy(interpretation="srgb")
    srgb = srgb.draw_rect(list(BLUE), 0, 0, 100, 100, fill=True)
    p3 = srgb.icc_transform("p3", input_profile="srgb")
    profile = p3.get("icc-profile-data")
    picture = Image.frombytes("RGB", (p3.width, p3.height), p3.write_to_memory())
    exif = Image.Exif()
    exif[0x010F] = "offload"  # Make
    exif[0x0110] = "test phone"  # Model
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, 0.0)
    gps[3], gps[4] = "E", (13.0, 24.0, 0.0)
    target = Path(__file__).with_name("phone.heic")
    pillow_heif.from_pillow(picture).save(
        str(target), quality=90, icc_profile=profile, exif=exif.tobytes()
    )
    print(target, target.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

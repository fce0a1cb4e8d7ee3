"""With ``OFFLOAD_TRANSFORMS``, a real WordPress's srcsets gain widths it never made.

offload's upload answer names the original's unsigned transform widths (the
site's ``transform_widths``) and their URL; the plugin adds each width the
attachment has no size of to WordPress's srcset, and offload's origin makes it
from the original on first request. Off by default: without the constant the
srcset is WordPress's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvips

from tests.wordpress_server import WordPress
from tests.wordpress_stack import (
    Stack,
    describe,
    draw,
    fetch,
    local_bucket,
    running_stack,
    upload_through_rest,
)

pytestmark = pytest.mark.wordpress

WIDTHS = "transform_widths = [480, 640, 4000]"


@pytest.fixture(scope="module", params=["on", "off"])
def stack(
    request: pytest.FixtureRequest,
    real_wordpress: WordPress,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp(f"offload-transforms-{request.param}")
    constants = {"OFFLOAD_TRANSFORMS": "1"} if request.param == "on" else {}
    with running_stack(
        real_wordpress, folder, local_bucket(folder), site_settings=WIDTHS, constants=constants
    ) as running:
        yield running


def srcset_widths(image_html: str) -> dict[int, str]:
    """The srcset's candidates by width (``url 480w``)."""
    candidates = re.search(r'srcset="([^"]*)"', image_html)
    assert candidates, image_html
    pairs = (candidate.strip().split(" ") for candidate in candidates.group(1).split(","))
    return {int(width.rstrip("w")): url for url, width in pairs}


def test_the_srcset_gains_the_transform_widths_wordpress_did_not_make(stack, tmp_path: Path):
    photo = tmp_path / "harbour.jpg"
    draw(stack.wordpress, photo, 1200, 800)
    attachment = upload_through_rest(stack, photo)
    described = describe(stack.wordpress, attachment)
    srcset = srcset_widths(described["image"])
    made = {int(size["width"]) for size in described["meta"]["sizes"].values()} | {1200}
    transformed = {width: url for width, url in srcset.items() if "/_img/" in url}
    if "OFFLOAD_TRANSFORMS" not in stack.wordpress.constants:
        assert transformed == {}
        return
    # 480 and 640 are new; 4000 is wider than the image (never enlarged).
    assert set(transformed) == {480, 640} - made
    assert set(srcset) >= made - {150}  # WordPress's own sizes stay
    for width, url in transformed.items():
        assert f"/_img/w={width}/" in url
        status, body = fetch(url)
        assert status == 200, url
        image = pyvips.Image.new_from_buffer(body, "")
        assert (image.width, image.height) == (width, round(width * 800 / 1200))

"""The WordPress plugin in a real WordPress, against a real ``offload serve``: plain keys.

The stack (tests/wordpress_stack.py): Debian's WordPress on a private MariaDB
behind ``php -S``, the plugin ``offload render wordpress-plugin`` prints as a
must-use plugin, and ``offload serve`` whose origin stands in for the CDN, on a
local folder and on ``rclone serve s3``. WordPress is driven only through its own
code: REST requests, ``media_handle_sideload``, ``wp_get_attachment_*``,
``wp_delete_attachment``, ``the_content`` and a rendered front-end page.

The binaries are required (CI installs them, see .ci/run): without them these
tests fail, unless SKIP_REAL_WORDPRESS=1 asks to skip them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.wordpress_server import WordPress
from tests.wordpress_stack import (
    Stack,
    assert_served_from_cdn,
    attachment_files,
    describe,
    draw,
    fetch,
    http_url,
    is_named,
    local_bucket,
    rclone_bucket,
    running_stack,
    sideload,
    srcset_urls,
    upload_through_rest,
)

pytestmark = pytest.mark.wordpress


@pytest.fixture(scope="module", params=["local", pytest.param("rclone", marks=pytest.mark.rclone)])
def stack(
    request: pytest.FixtureRequest,
    real_wordpress: WordPress,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """offload serve on a bucket of each kind, and the plugin it renders installed in WordPress."""
    folder = tmp_path_factory.mktemp(f"offload-{request.param}")
    if request.param == "rclone":
        bucket = rclone_bucket(request.getfixturevalue("rclone_server"))
    else:
        bucket = local_bucket(folder)
    with running_stack(real_wordpress, folder, bucket) as running:
        yield running


# -- tests ---------------------------------------------------------------------------------


def test_a_rest_upload_puts_every_size_in_the_bucket_and_every_url_on_the_cdn(stack, tmp_path):
    photo = tmp_path / "sunset.jpg"
    draw(stack.wordpress, photo, 3000, 2000)  # above 2560 px: WordPress adds a -scaled copy
    attachment = upload_through_rest(stack, photo)
    described = describe(stack.wordpress, attachment)
    meta = described["meta"]
    assert is_named(meta["original_image"], "sunset.jpg")
    assert meta["file"].endswith("-scaled.jpg")

    files = attachment_files(meta)
    assert len(files) >= 6
    for path in files:
        local = stack.wordpress.uploads_dir / path
        assert stack.object_file(path).read_bytes() == local.read_bytes(), path

    urls = [described["url"], *described["src"].values(), *srcset_urls(described["image"])]
    assert_served_from_cdn(stack, urls)
    assert set(meta["sizes"]) <= set(described["src"])
    assert stack.wordpress.plugin_log() == []


NAMES = ("logo@2x.png", "фото.jpg", "写真.jpg")


@pytest.mark.parametrize("name", NAMES)
def test_names_with_at_signs_and_any_script_get_cdn_urls(stack, name):
    attachment = sideload(stack, name)
    described = describe(stack.wordpress, attachment)
    meta = described["meta"]
    assert is_named(os.path.basename(meta["file"]), name)  # kept as it is, unencoded
    for path in attachment_files(meta):
        local = stack.wordpress.uploads_dir / path
        assert stack.object_file(path).read_bytes() == local.read_bytes(), path
    urls = [described["url"], *described["src"].values(), *srcset_urls(described["image"])]
    assert_served_from_cdn(stack, urls)


def test_deleting_an_attachment_removes_its_objects_from_the_bucket(stack):
    attachment = sideload(stack, "to-delete.jpg", 800, 600)
    described = describe(stack.wordpress, attachment)
    files = attachment_files(described["meta"])
    assert all(stack.object_file(path).exists() for path in files)
    cdn_urls = list(described["src"].values())

    stack.wordpress.php(f"$out['deleted'] = (bool) wp_delete_attachment( {attachment}, true );")

    assert [path for path in files if stack.object_file(path).exists()] == []
    assert [url for url in cdn_urls if fetch(http_url(url))[0] != 404] == []
    assert stack.wordpress.plugin_log() == []

"""The plugin in a real WordPress on "another host": offload cannot read its uploads folder.

With ``OFFLOAD_SEND_FILES`` the plugin sends each attachment's files as the
signed multipart form offload takes. Here offload's site has no ``uploads_dir``
at all, and its working folder shares no path with WordPress's, so every byte
in the bucket came over HTTP. The stack is tests/wordpress_stack.py's.
"""

from __future__ import annotations

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
    local_bucket,
    running_stack,
    sideload,
    srcset_urls,
    upload_through_rest,
)

pytestmark = pytest.mark.wordpress


@pytest.fixture(scope="module")
def stack(real_wordpress: WordPress, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("offload-elsewhere")
    assert not folder.is_relative_to(real_wordpress.root.parent)
    with running_stack(real_wordpress, folder, local_bucket(folder), send_files=True) as s:
        yield s


def test_offload_without_the_uploads_folder_is_sent_every_file_of_a_rest_upload(stack, tmp_path):
    wp = stack.wordpress
    photo = tmp_path / "far-away.jpg"
    draw(wp, photo, 3000, 2000)
    attachment = upload_through_rest(stack, photo)
    described = describe(wp, attachment)
    files = attachment_files(described["meta"])
    assert len(files) >= 6
    for path in files:
        assert stack.object_file(path).read_bytes() == (wp.uploads_dir / path).read_bytes(), path
    urls = [described["url"], *described["src"].values(), *srcset_urls(described["image"])]
    assert_served_from_cdn(stack, urls)
    assert wp.plugin_log() == []


def test_a_sideloaded_name_in_any_script_is_sent_and_deleted(stack):
    wp = stack.wordpress
    attachment = sideload(stack, "фото@2x.png", 500, 400)
    described = describe(wp, attachment)
    files = attachment_files(described["meta"])
    assert all(stack.object_file(path).exists() for path in files)
    assert_served_from_cdn(stack, list(described["src"].values()))

    wp.php(f"$out['deleted'] = (bool) wp_delete_attachment( {attachment}, true );")
    assert [path for path in files if stack.object_file(path).exists()] == []
    assert [u for u in described["src"].values() if fetch(http_url(u))[0] != 404] == []

"""The plugin in a real WordPress with ``versioning = true``: every URL WordPress makes still works.

With versioning an attachment's files live in a version folder of the CDN
(``2026/12/1ea0a7c2/sunset-300x200.jpg``), which WordPress knows nothing of.
These tests check what it derives from such URLs: srcsets (from
``wp_get_attachment_image`` and from content holding CDN URLs), each size's
``wp_get_attachment_image_src``, both editors' crop and rotate, and a
regeneration that changes every size's bytes. Each URL is fetched from
offload's origin and compared with WordPress's own file. The stack is
tests/wordpress_stack.py's, on a local-folder bucket.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.wordpress_server import WordPress
from tests.wordpress_stack import (
    Stack,
    application_password,
    assert_served_from_cdn,
    describe,
    draw,
    local_bucket,
    running_stack,
    srcset_urls,
    upload_through_rest,
)

pytestmark = pytest.mark.wordpress


@pytest.fixture(scope="module")
def stack(real_wordpress: WordPress, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("offload-versioned")
    with running_stack(real_wordpress, folder, local_bucket(folder), versioning=True) as running:
        yield running


def every_url(described: dict) -> list[str]:
    return [described["url"], *described["src"].values(), *srcset_urls(described["image"])]


def folders(urls: list[str]) -> set[str]:
    return {os.path.dirname(url.split("?")[0]) for url in urls}


def assert_whole(stack: Stack, described: dict) -> None:
    """Every URL of the attachment is a CDN URL in one version folder, serving WordPress's bytes."""
    urls = every_url(described)
    assert_served_from_cdn(stack, urls)
    assert len(folders(urls)) == 1, folders(urls)
    version = os.path.basename(folders(urls).pop())
    assert len(version) == 8, version


@pytest.fixture
def photo(stack: Stack, tmp_path) -> int:
    source = tmp_path / "sunset.jpg"
    draw(stack.wordpress, source, 3000, 2000)
    return upload_through_rest(stack, source)


def test_an_upload_has_a_srcset_and_every_size_in_one_version_folder(stack, photo):
    described = describe(stack.wordpress, photo)
    assert len(srcset_urls(described["image"])) >= 4
    assert_whole(stack, described)


def test_content_holding_versioned_cdn_urls_keeps_its_srcset(stack, photo):
    described = describe(stack.wordpress, photo)
    medium = described["src"]["medium"]
    html = stack.wordpress.php(
        f"""
$img = '<img src="{medium}" alt="" class="wp-image-{photo}" width="300" height="200">';
$out['html'] = apply_filters( 'the_content', $img );
"""
    )["html"]
    candidates = srcset_urls(html)
    assert len(candidates) >= 4
    assert_served_from_cdn(stack, candidates)


def rest_edit(stack: Stack, attachment: int, src: str, modifiers: list[dict]) -> dict:
    """POST /wp/v2/media/ID/edit, as the block editor's crop and rotate send it."""
    wp = stack.wordpress
    token = base64.b64encode(f"admin:{application_password(wp)}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{wp.url}/wp-json/wp/v2/media/{attachment}/edit",
        data=json.dumps({"src": src, "modifiers": modifiers}).encode(),
        method="POST",
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        raise AssertionError(f"REST edit: {error.code} {error.read()[:2000]!r}") from None


def test_the_block_editors_crop_and_rotate_take_a_cdn_src(stack, photo):
    src = describe(stack.wordpress, photo)["src"]["large"]
    edited = rest_edit(
        stack,
        photo,
        src,
        [
            {"type": "rotate", "args": {"angle": 90}},
            {"type": "crop", "args": {"left": 10, "top": 10, "width": 50, "height": 50}},
        ],
    )
    assert edited["id"] != photo
    described = describe(stack.wordpress, edited["id"])
    assert "-edited" in described["meta"]["file"]
    assert_whole(stack, described)


#: The classic media editor's "rotate right, then save", as wp-admin/image-edit.php runs it.
CLASSIC_ROTATE = """
require_once ABSPATH . 'wp-admin/includes/image-edit.php';
wp_set_current_user( 1 );
$_REQUEST['history'] = wp_slash( '[{{"r":-90}}]' );
$_REQUEST['target'] = 'all';
$_REQUEST['do'] = 'save';
$_REQUEST['context'] = '';
$saved = wp_save_image( {id} );
if ( ! empty( $saved->error ) ) {{
	throw new Exception( $saved->error );
}}
$out['saved'] = $saved;
"""


def test_the_classic_editors_rotate_gives_cdn_urls_for_the_new_files(stack, photo):
    before = describe(stack.wordpress, photo)
    stack.wordpress.php(CLASSIC_ROTATE.format(id=photo))
    described = describe(stack.wordpress, photo)
    assert described["meta"]["file"] != before["meta"]["file"]
    assert "-e1" in described["meta"]["file"]  # WordPress's edit suffix: -e{13 digits}
    assert_whole(stack, described)


#: A regeneration with new bytes for every size, as "Regenerate Thumbnails" or a new
#: image editor does: from the original, with another JPEG quality.
REGENERATE = """
require_once ABSPATH . 'wp-admin/includes/image.php';
add_filter( 'wp_editor_set_quality', function () {{ return 35; }} );
$file = wp_get_original_image_path( {id} );
wp_update_attachment_metadata( {id}, wp_generate_attachment_metadata( {id}, $file ) );
"""


def test_a_regeneration_with_new_bytes_moves_every_url_to_a_folder_that_serves_them(stack, photo):
    before = describe(stack.wordpress, photo)
    old = {size: url for size, url in before["src"].items() if size != "full"}
    old_bytes = {size: stack.local_file(url).read_bytes() for size, url in old.items()}

    stack.wordpress.php(REGENERATE.format(id=photo))

    described = describe(stack.wordpress, photo)
    changed = [s for s in old if stack.local_file(described["src"][s]).read_bytes() != old_bytes[s]]
    assert changed, "the regeneration changed no size"
    assert_whole(stack, described)
    assert folders(every_url(described)) != folders(every_url(before))
    # Old pages keep working: the old folder still holds the old bytes.
    for size, url in old.items():
        assert stack.offload_bytes(url) == old_bytes[size], size

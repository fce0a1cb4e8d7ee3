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

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from offload.media.wordpress import php_string
from tests.wordpress_server import WordPress
from tests.wordpress_stack import (
    PREFIX,
    SIDELOAD,
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


def test_a_name_with_a_space_gets_cdn_urls_under_the_name_wordpress_gives_it(stack):
    attachment = sideload(stack, "写真 1.jpg")
    described = describe(stack.wordpress, attachment)
    assert is_named(os.path.basename(described["meta"]["file"]), "写真-1.jpg")
    urls = [described["url"], *described["src"].values(), *srcset_urls(described["image"])]
    assert_served_from_cdn(stack, urls)


#: A minimal PDF and MP4 that PHP's fileinfo recognises, so WordPress accepts them.
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free"


def sideload_bytes(stack: Stack, name: str, data: bytes) -> int:
    wp = stack.wordpress
    source = wp.root.parent / f"sideload-{os.urandom(4).hex()}{Path(name).suffix}"
    source.write_bytes(data)
    out = wp.php(SIDELOAD.format(name=php_string(name), tmp=php_string(str(source))))
    return int(out["id"])


#: Blocks as the block editor saves them, every uploads URL local as WordPress gave it.
BLOCKS = """<!-- wp:image {{"id":{image},"sizeSlug":"medium"}} -->
<figure class="wp-block-image size-medium">
<img src="{medium_cdn}" alt="" class="wp-image-{image}"/></figure>
<!-- /wp:image -->
<!-- wp:file {{"id":{pdf},"href":"{pdf_url}"}} -->
<div class="wp-block-file"><a href="{pdf_url}">doc</a>
<a href="{pdf_url}" class="wp-block-file__button" download>Download</a></div>
<!-- /wp:file -->
<!-- wp:video {{"id":{video}}} -->
<figure class="wp-block-video">
<video controls poster="{image_url}" src="{video_url}"></video></figure>
<!-- /wp:video -->
<!-- wp:cover {{"url":"{image_url}","id":{image},"dimRatio":50}} -->
<div class="wp-block-cover">
<span aria-hidden="true" class="wp-block-cover__background has-background-dim"></span>
<img class="wp-block-cover__image-background wp-image-{image}" alt="" src="{image_url}"/>
<div class="wp-block-cover__inner-container"><p>Cover</p></div></div>
<!-- /wp:cover -->
<!-- wp:html -->
<div style="background-image:url('{image_url}')">old cover</div>
<p><a href="{pdf_relative}">protocol-relative</a> and <a href="{pdf_path}">root-relative</a></p>
<!-- /wp:html -->"""


def uploads_urls(stack: Stack, text: str) -> list[str]:
    """Every URL of the local uploads folder left in ``text``, in any spelling."""
    host = urlsplit(stack.wordpress.url).netloc
    return re.findall(
        rf"(?:https?:)?(?://|\\/\\/){re.escape(host)}[^\s\"'<>)]*uploads[^\s\"'<>),]*", text
    ) + re.findall(r"[\"'(=]/wp-content/uploads/[^\s\"'<>),]*", text)


def test_every_uploads_url_in_blocks_excerpts_widgets_css_rest_and_pages_becomes_a_cdn_url(stack):
    wp = stack.wordpress
    image = sideload(stack, "cover.jpg", 1200, 800)
    pdf = sideload_bytes(stack, "doc.pdf", PDF)
    video = sideload_bytes(stack, "clip.mp4", MP4)
    urls = wp.php(
        f"""
remove_all_filters( 'wp_get_attachment_url' );
$out['image'] = wp_get_attachment_url( {image} );
$out['pdf'] = wp_get_attachment_url( {pdf} );
$out['video'] = wp_get_attachment_url( {video} );
"""
    )
    medium_cdn = describe(wp, image)["src"]["medium"]
    pdf_path = urlsplit(urls["pdf"]).path
    content = BLOCKS.format(
        image=image,
        pdf=pdf,
        video=video,
        medium_cdn=medium_cdn,
        image_url=urls["image"],
        pdf_url=urls["pdf"],
        video_url=urls["video"],
        pdf_relative="//" + urlsplit(urls["pdf"]).netloc + pdf_path,
        pdf_path=pdf_path,
    )
    assert len(uploads_urls(stack, content)) >= 10
    widget = '<a href="' + urls["video"] + '">clip</a>'
    made = wp.php(
        f"""
$id = wp_insert_post( array(
	'post_title'   => 'Blocks',
	'post_status'  => 'publish',
	'post_content' => wp_slash( {php_string(content)} ),
	'post_excerpt' => wp_slash( {php_string('See <a href="' + urls["pdf"] + '">the PDF</a>.')} ),
) );
wp_update_custom_css_post( {php_string("body { background: url(" + urls["image"] + "); }")} );
$post = get_post( $id );
$out['id'] = $id;
$out['content'] = apply_filters( 'the_content', $post->post_content );
$out['excerpt'] = apply_filters( 'the_excerpt', $post->post_excerpt );
$out['block_excerpt'] = get_the_excerpt( $post ); // what a block theme's Post Excerpt shows
$out['widget'] = apply_filters( 'widget_block_content', {php_string(widget)} );
$out['css'] = wp_get_custom_css();
$out['raw'] = offload_rewrite( $post->post_content );
$out['link'] = get_permalink( $id );
"""
    )
    for name in ("content", "excerpt", "block_excerpt", "widget", "css", "raw"):
        assert uploads_urls(stack, made[name]) == [], name
    assert 'wp:cover {"url":"' + stack.offload.url in made["raw"]  # JSON in block comments
    assert 'srcset="' in made["content"]
    for candidate in srcset_urls(made["content"]):
        assert candidate.startswith(stack.offload.url + "/"), candidate

    rest = json.loads(fetch(f"{wp.url}/wp-json/wp/v2/posts/{made['id']}")[1])
    assert uploads_urls(stack, rest["content"]["rendered"]) == []
    assert uploads_urls(stack, rest["excerpt"]["rendered"]) == []
    status, page = fetch(made["link"])
    assert status == 200
    page_text = page.decode()
    assert stack.offload.url + "/" + PREFIX in page_text
    assert uploads_urls(stack, page_text) == []

    found = re.findall(re.escape(stack.offload.url) + r"/[^\s\"'<>)]+", made["content"])
    assert_served_from_cdn(stack, sorted(set(found)))

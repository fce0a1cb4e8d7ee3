"""The WordPress plugin in a real WordPress, against a real ``offload serve``.

Debian's WordPress runs on a private MariaDB behind ``php -S``
(tests/wordpress_server.py) with the plugin that ``offload render
wordpress-plugin`` prints as a must-use plugin. ``offload serve`` runs as a
subprocess whose site reads WordPress's uploads folder and keeps its bucket in a
local folder; its own port is the CDN, so every CDN URL WordPress gives is
fetched from offload's origin and compared, byte for byte, with WordPress's
file. WordPress is driven only through its own code: the REST API for an
upload, ``media_handle_sideload``, ``wp_get_attachment_*`` and
``wp_delete_attachment`` in PHP snippets.

The binaries are required (CI installs them, see .ci/run): without them these
tests fail, unless SKIP_REAL_WORDPRESS=1 asks to skip them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from offload.media.wordpress import php_string
from tests.helpers import free_port, run_cli, wait_for_port
from tests.storage_servers import RcloneS3Server
from tests.wordpress_server import (
    ADMIN_USER,
    WordPress,
    require_binaries,
    running_mariadb,
    running_wordpress,
)

pytestmark = pytest.mark.wordpress

SITE = "blog"
SECRET = "real-wordpress-webhook-secret-0123456789"
PREFIX = "wp-content/uploads"


@dataclass
class Offload:
    """A running ``offload serve`` whose origin stands in for the CDN."""

    port: int
    bucket: Path  # the folder holding the bucket's objects (rclone serve s3 keeps files too)
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    wordpress: WordPress
    offload: Offload

    def uploads_path(self, url: str) -> str:
        """The path under the uploads folder that a local or CDN URL names."""
        path = unquote(urlsplit(url).path)
        marker = "/" + PREFIX + "/"
        assert marker in path, url
        return path.split(marker, 1)[1]

    def local_file(self, url: str) -> Path:
        return self.wordpress.uploads_dir / self.uploads_path(url)

    def object_file(self, path: str) -> Path:
        """Where the object of ``path`` (under the uploads folder) lies in the bucket."""
        return self.offload.bucket / PREFIX / path


@dataclass
class Bucket:
    """Where a site's objects go: its storage settings, environment and folder on disk."""

    settings: str
    folder: Path
    environ: dict[str, str]


def local_bucket(folder: Path) -> Bucket:
    (folder / "bucket").mkdir()
    return Bucket(f'storage = "{(folder / "bucket").as_uri()}"', folder / "bucket", {})


def rclone_bucket(server: RcloneS3Server) -> Bucket:
    name = f"wordpress-{os.urandom(4).hex()}"
    server.client().create_bucket(Bucket=name)
    settings = f'storage = "s3://{name}"\nendpoint_url = "{server.endpoint_url}"'
    environ = {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return Bucket(settings, server.root / name, environ)


def write_config(folder: Path, wordpress: WordPress, port: int, bucket: Bucket) -> Path:
    config = folder / "offload.toml"
    config.write_text(
        f"""port = {port}
host = "127.0.0.1"
manifest = "{folder / "manifest.sqlite3"}"

[sites.{SITE}]
{bucket.settings}
prefix = "{PREFIX}"
uploads_dir = "{wordpress.uploads_dir}"
uploads_url = "{wordpress.uploads_url}"
cdn_url = "http://127.0.0.1:{port}"
hostnames = ["*"]
webhook_secret = "{SECRET}"
"""
    )
    return config


@pytest.fixture(scope="module")
def wordpress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WordPress]:
    """MariaDB and an installed WordPress: once for the module."""
    require_binaries()
    root = tmp_path_factory.mktemp("wordpress-real")
    (root / "mariadb").mkdir()
    with running_mariadb(root / "mariadb") as database, running_wordpress(root, database) as wp:
        yield wp


@pytest.fixture(scope="module", params=["local", pytest.param("rclone", marks=pytest.mark.rclone)])
def stack(
    request: pytest.FixtureRequest,
    wordpress: WordPress,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """offload serve on a bucket of each kind, and the plugin it renders installed in WordPress."""
    folder = tmp_path_factory.mktemp(f"offload-{request.param}")
    if request.param == "rclone":
        bucket = rclone_bucket(request.getfixturevalue("rclone_server"))
    else:
        bucket = local_bucket(folder)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = write_config(folder, wordpress, port, bucket)
    code, plugin, err = run_cli(
        "render", "wordpress-plugin", "--config", config, "--endpoint", endpoint
    )
    assert code == 0, err
    wordpress.install_plugin(
        plugin, {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_ENDPOINT": endpoint}
    )
    # offload refuses unknown OFFLOAD_* variables, and the bucket brings its own AWS_* ones.
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "AWS_"))}
    environ.update(bucket.environ)
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "offload", "serve", "--config", str(config)],
        cwd=folder,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port)
        yield Stack(wordpress, Offload(port, bucket.folder, process))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# -- helpers -------------------------------------------------------------------------------

#: A JPEG or PNG drawn with GD (php-gd), so no image library is needed on the Python side.
DRAW = """
$image = imagecreatetruecolor( {width}, {height} );
for ( $x = 0; $x < {width}; $x += 10 ) {{
	$color = imagecolorallocate( $image, $x % 256, ( $x * 3 ) % 256, 128 );
	imagefilledrectangle( $image, $x, 0, $x + 9, {height}, $color );
}}
{save}( $image, {path} );
"""


def draw(wp: WordPress, path: Path, width: int, height: int) -> None:
    save = "imagepng" if path.suffix == ".png" else "imagejpeg"
    wp.php(DRAW.format(width=width, height=height, save=save, path=php_string(str(path))))


#: What WordPress says about one attachment: its files and every URL it makes for them.
DESCRIBE = """
$id = {id};
$meta = wp_get_attachment_metadata( $id );
$out['meta'] = $meta;
$out['url'] = wp_get_attachment_url( $id );
$out['src'] = array();
foreach ( array_merge( array( 'full' ), array_keys( $meta['sizes'] ) ) as $size ) {{
	$out['src'][ $size ] = wp_get_attachment_image_src( $id, $size )[0];
}}
$out['image'] = wp_get_attachment_image( $id, 'medium' );
$out['offload_urls'] = get_post_meta( $id, '_offload_urls', true );
"""


def describe(wp: WordPress, attachment_id: int) -> dict[str, Any]:
    return wp.php(DESCRIBE.format(id=int(attachment_id)))


def srcset_urls(image_html: str) -> list[str]:
    match = re.search(r'srcset="([^"]*)"', image_html)
    assert match, f"no srcset in {image_html}"
    return [candidate.strip().split(" ")[0] for candidate in match.group(1).split(",")]


def attachment_files(meta: dict[str, Any]) -> list[str]:
    """Every file of an attachment, as paths under the uploads folder."""
    folder = os.path.dirname(meta["file"])
    names = [os.path.basename(meta["file"])]
    names += [size["file"] for size in meta["sizes"].values()]
    if meta.get("original_image"):
        names.append(meta["original_image"])
    return sorted({f"{folder}/{name}" if folder else name for name in names})


def is_named(file_name: str, name: str) -> bool:
    """``file_name`` is ``name``, or ``name`` with the ``-N`` WordPress adds to a name in use."""
    stem, suffix = os.path.splitext(name)
    return re.fullmatch(re.escape(stem) + r"(-\d+)?" + re.escape(suffix), file_name) is not None


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_url(url: str) -> str:
    """A URL as a client sends it: WordPress leaves non-ASCII characters unencoded."""
    parts = urlsplit(url)
    return parts._replace(path=quote(unquote(parts.path), safe="/@")).geturl()


def assert_served_from_cdn(stack: Stack, urls: list[str]) -> None:
    """Each URL is a CDN URL whose bytes are those of WordPress's own file."""
    local = [url for url in urls if not url.startswith(stack.offload.url + "/")]
    assert local == [], "WordPress gave local URLs for offloaded files"
    for url in urls:
        status, body = fetch(http_url(url))
        assert status == 200, url
        assert body == stack.local_file(url).read_bytes(), url


def upload_through_rest(stack: Stack, path: Path) -> int:
    """POST /wp-json/wp/v2/media as the admin, with an application password."""
    wp = stack.wordpress
    created = wp.php(
        f"""
$user = get_user_by( 'login', {php_string(ADMIN_USER)} );
list( $password ) = WP_Application_Passwords::create_new_application_password(
	$user->ID, array( 'name' => 'tests ' . wp_generate_password( 8, false ) )
);
$out['password'] = $password;
"""
    )
    token = base64.b64encode(f"{ADMIN_USER}:{created['password']}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{wp.url}/wp-json/wp/v2/media",
        data=path.read_bytes(),
        method="POST",
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": "image/jpeg",
            "Content-Disposition": f'attachment; filename="{path.name}"',
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"REST upload: {error.code} {error.read()[:2000]!r}") from None
    return int(body["id"])


SIDELOAD = """
require_once ABSPATH . 'wp-admin/includes/media.php';
require_once ABSPATH . 'wp-admin/includes/file.php';
require_once ABSPATH . 'wp-admin/includes/image.php';
wp_set_current_user( 1 );
$file = array( 'name' => {name}, 'tmp_name' => {tmp} );
$id = media_handle_sideload( $file, 0 );
if ( is_wp_error( $id ) ) {{
	throw new Exception( $id->get_error_message() );
}}
$out['id'] = $id;
"""


def sideload(stack: Stack, name: str, width: int = 400, height: int = 300) -> int:
    wp = stack.wordpress
    source = wp.root.parent / f"sideload-{os.urandom(4).hex()}{Path(name).suffix}"
    draw(wp, source, width, height)
    out = wp.php(SIDELOAD.format(name=php_string(name), tmp=php_string(str(source))))
    return int(out["id"])


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

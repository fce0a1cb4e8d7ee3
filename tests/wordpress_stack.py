"""A real WordPress and a real ``offload serve`` side by side, for the real-WordPress tests.

``offload serve`` runs as a subprocess whose site reads WordPress's uploads
folder (or, in multipart mode, a folder of its own: WordPress sends the bytes)
and keeps its bucket in a local folder or in ``rclone serve s3``; its own port
is the CDN, so every CDN URL WordPress gives is fetched from offload's origin and
compared, byte for byte, with WordPress's file. The plugin is the one ``offload
render wordpress-plugin`` prints, installed as a must-use plugin. WordPress is
driven only through its own code: REST requests, ``wp-cron.php``, and PHP
snippets calling its functions (tests/wordpress_server.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from offload.media.wordpress import php_string
from tests.helpers import free_port, run_cli, wait_for_port
from tests.storage_servers import RcloneS3Server
from tests.wordpress_server import ADMIN_USER, WordPress

SITE = "blog"
SECRET = "real-wordpress-webhook-secret-0123456789"
PREFIX = "wp-content/uploads"


@dataclass
class Offload:
    """One ``offload serve`` whose origin stands in for the CDN; it can be stopped and restarted."""

    port: int
    bucket: Path  # the folder holding the bucket's objects (rclone serve s3 keeps files too)
    config: Path
    environ: dict[str, str]
    log_path: Path
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "offload", "serve", "--config", str(self.config)],
            cwd=self.config.parent,
            env=self.environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the server: its port refuses connections until start()."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server hung (SIGSTOP): connections are accepted by the kernel, never answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


@dataclass
class Stack:
    wordpress: WordPress
    offload: Offload
    versioned: bool = False

    def uploads_path(self, url: str) -> str:
        """The path under the uploads folder that a local or CDN URL names.

        A versioned CDN URL's version folder (the one holding the file) is not there locally.
        """
        path = unquote(urlsplit(url).path)
        marker = "/" + PREFIX + "/"
        assert marker in path, url
        under = path.split(marker, 1)[1]
        if self.versioned and url.startswith(self.offload.url + "/"):
            folder, name = os.path.split(under)
            under = os.path.join(os.path.dirname(folder), name)
        return under

    def local_file(self, url: str) -> Path:
        return self.wordpress.uploads_dir / self.uploads_path(url)

    def offload_bytes(self, url: str) -> bytes:
        """What the CDN (offload's origin) serves at ``url``; a failure unless 200."""
        status, body = fetch(http_url(url))
        assert status == 200, (status, url)
        return body

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


def write_config(
    folder: Path,
    wordpress: WordPress,
    port: int,
    bucket: Bucket,
    *,
    versioning: bool = False,
    send_files: bool = False,
    site_settings: str = "",
) -> Path:
    """offload's configuration: one site on WordPress's uploads folder, or, with
    ``send_files``, on none (WordPress sends the bytes; offload cannot read its files);
    ``site_settings``: more lines of the site's table."""
    uploads_dir = "" if send_files else f'uploads_dir = "{wordpress.uploads_dir}"'
    config = folder / "offload.toml"
    config.write_text(
        f"""port = {port}
host = "127.0.0.1"
manifest = "{folder / "manifest.sqlite3"}"

[sites.{SITE}]
{bucket.settings}
prefix = "{PREFIX}"
{uploads_dir}
uploads_url = "{wordpress.uploads_url}"
cdn_url = "http://127.0.0.1:{port}"
hostnames = ["*"]
webhook_secret = "{SECRET}"
versioning = {"true" if versioning else "false"}
{site_settings}
"""
    )
    return config


@contextlib.contextmanager
def running_stack(
    wordpress: WordPress,
    folder: Path,
    bucket: Bucket,
    *,
    versioning: bool = False,
    send_files: bool = False,
    constants: dict[str, str] | None = None,
    site_settings: str = "",
) -> Iterator[Stack]:
    """offload serve on ``bucket``, and the plugin it renders installed in WordPress."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = write_config(
        folder,
        wordpress,
        port,
        bucket,
        versioning=versioning,
        send_files=send_files,
        site_settings=site_settings,
    )
    code, plugin, err = run_cli(
        "render", "wordpress-plugin", "--config", config, "--endpoint", endpoint
    )
    assert code == 0, err
    defined = {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_ENDPOINT": endpoint}
    if send_files:
        defined["OFFLOAD_SEND_FILES"] = "1"
    defined.update(constants or {})
    wordpress.install_plugin(plugin, defined)
    # offload refuses unknown OFFLOAD_* variables, and the bucket brings its own AWS_* ones.
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "AWS_"))}
    environ.update(bucket.environ)
    offload = Offload(port, bucket.folder, config, environ, folder / "serve.log")
    offload.start()
    try:
        yield Stack(wordpress, offload, versioned=versioning)
    finally:
        offload.stop()


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
    assert local == [], f"WordPress gave local URLs for offloaded files: {local}"
    for url in urls:
        status, body = fetch(http_url(url))
        assert status == 200, url
        assert body == stack.local_file(url).read_bytes(), url


def application_password(wp: WordPress) -> str:
    """A new application password of the administrator, for REST requests."""
    created = wp.php(
        f"""
$user = get_user_by( 'login', {php_string(ADMIN_USER)} );
list( $password ) = WP_Application_Passwords::create_new_application_password(
	$user->ID, array( 'name' => 'tests ' . wp_generate_password( 8, false ) )
);
$out['password'] = $password;
"""
    )
    return str(created["password"])


def upload_through_rest(stack: Stack, path: Path, content_type: str = "image/jpeg") -> int:
    """POST /wp-json/wp/v2/media as the admin, with an application password."""
    wp = stack.wordpress
    token = base64.b64encode(f"{ADMIN_USER}:{application_password(wp)}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{wp.url}/wp-json/wp/v2/media",
        data=path.read_bytes(),
        method="POST",
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": content_type,
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


# -- the retry queue, WP-Cron and the admin pages -------------------------------------


def queue(wp: WordPress) -> list[dict[str, Any]]:
    """The plugin's retry queue, as rows."""
    out = wp.php(
        """
global $wpdb;
offload_install();
$table = $wpdb->prefix . 'offload_queue';
$out['rows'] = $wpdb->get_results( "SELECT * FROM {$table} ORDER BY id", ARRAY_A );
"""
    )
    return list(out["rows"])


def a_minute_passes(wp: WordPress) -> None:
    """Move the queue's retry times and the cron events one minute and a second back.

    Tests cannot wait for the clock, so its effect is played on what the
    plugin and WP-Cron read: nothing else changes.
    """
    wp.php(
        """
global $wpdb;
$wpdb->query( "UPDATE {$wpdb->prefix}offload_queue SET next_try = next_try - 61" );
$moved = array();
foreach ( _get_cron_array() as $time => $hooks ) {
	$moved[ $time - 61 ] = $hooks;
}
_set_cron_array( $moved );
"""
    )


def run_cron(wp: WordPress) -> None:
    """GET /wp-cron.php: WordPress runs each event whose time has come, as a cron job does."""
    with urllib.request.urlopen(f"{wp.url}/wp-cron.php", timeout=180) as response:  # noqa: S310
        assert response.status == 200


@dataclass
class AdminSession:
    """The administrator logged in: cookies as wp-login.php would set them."""

    wp: WordPress
    cookies: str

    def get(self, path: str) -> str:
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.wp.url}{path}", headers={"Cookie": self.cookies}
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return str(response.read().decode())

    def submit(self, page: str, action: str) -> str:
        """Submit the form of ``action`` on an admin page, with its nonce; the page it leads to."""
        html = self.get(page)
        forms = re.findall(
            r'<form method="post" action="[^"]*admin-post\.php">(.*?)</form>', html, re.S
        )
        fields: dict[str, str] = {}
        for body in forms:
            found = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', body))
            if found.get("action") == action:
                fields = found
        assert fields, f"no {action} form on {page}"
        data = "&".join(f"{quote(k)}={quote(v)}" for k, v in fields.items()).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.wp.url}/wp-admin/admin-post.php",
            data=data,
            headers={
                "Cookie": self.cookies,
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"{self.wp.url}{page}",
            },
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return str(response.read().decode())


def log_in(wp: WordPress) -> AdminSession:
    out = wp.php(
        """
$expires = time() + HOUR_IN_SECONDS;
$token   = WP_Session_Tokens::get_instance( 1 )->create( $expires );
$auth    = wp_generate_auth_cookie( 1, $expires, 'auth', $token );
$in      = wp_generate_auth_cookie( 1, $expires, 'logged_in', $token );
$out['cookies'] = AUTH_COOKIE . '=' . rawurlencode( $auth )
	. '; ' . LOGGED_IN_COOKIE . '=' . rawurlencode( $in );
"""
    )
    return AdminSession(wp, out["cookies"])


@contextlib.contextmanager
def hung_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts connections and never answers: an offload that hangs.

    Yields its URL and the connections it accepted (each one a request that waited).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = listener.accept()
                accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        listener.close()

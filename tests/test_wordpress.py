"""The WordPress plugin: valid PHP, no secret inside, and webhooks offload's server accepts.

Most tests run the rendered plugin under php-cli with small stand-ins for the
WordPress functions it calls (``STUBS``): ``wp_remote_post`` records each
request and answers from the scenario, or, for the end-to-end test, really
posts to an offload server. Any PHP notice, warning or deprecation fails the
run. php-cli is required (CI installs it): without it these tests fail rather
than skip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from offload import __version__
from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.errors import ExitCode
from offload.http.signing import content_sha256, sign_request, verify_request_signature
from offload.media.wordpress import (
    PluginError,
    check_endpoint,
    php_string,
    render_wordpress_plugin,
    site_warnings,
)
from offload.server.app import create_app
from offload.server.appkeys import MANIFEST, STORAGES

SECRET = "wp-webhook-secret-0123456789abcdef"
ENDPOINT = "https://offload.example.com"
UPLOADS_URL = "https://blog.example.com/wp-content/uploads"
CDN_URL = "https://cdn.example.com"
PREFIX = "wp-content/uploads"
FILES = ("2024/05/photo.jpg", "2024/05/photo-scaled.jpg", "2024/05/photo-300x200.jpg")
METADATA: dict[str, Any] = {
    "width": 2560,
    "height": 1707,
    "file": "2024/05/photo-scaled.jpg",
    "sizes": {
        "medium": {
            "file": "photo-300x200.jpg",
            "width": 300,
            "height": 200,
            "mime-type": "image/jpeg",
        }
    },
    "image_meta": {"caption": 'It\'s a "photo" \\ of ünïcode'},
    "original_image": "photo.jpg",
}
HOOKS = (
    "wp_generate_attachment_metadata",
    "wp_update_attachment_metadata",
    "delete_attachment",
    "wp_get_attachment_url",
    "wp_calculate_image_srcset",
    "the_content",
)


def local(path: str) -> str:
    return f"{UPLOADS_URL}/{path}"


def cdn(path: str) -> str:
    return f"{CDN_URL}/{PREFIX}/{path}"


URLS = {local(path): cdn(path) for path in FILES}


def answer(urls: dict[str, str] | None = None, *, status: int = 200) -> dict[str, Any]:
    """A recorded webhook answer in the shape offload's server gives."""
    urls = URLS if urls is None else urls
    items = [
        {"path": u.removeprefix(UPLOADS_URL + "/"), "url": c, "status": "uploaded"}
        for u, c in urls.items()
    ]
    body = {"site": "blog", "items": items, "urls": urls}
    return {"status": status, "body": json.dumps(body)}


def site(name: str = "blog", **options: Any) -> Site:
    options = {
        "storage": "file:///tmp/x",
        "uploads_url": UPLOADS_URL,
        "cdn_url": CDN_URL,
        "webhook_secret": Secret(SECRET),
        **options,
    }
    return Site(name=name, **options)


@pytest.fixture(scope="session")
def php() -> str:
    binary = shutil.which("php")
    if binary is None:
        pytest.fail("php not found: install php-cli (apt-get install php-cli); CI installs it")
    return binary


# -- running the plugin under PHP -------------------------------------------------------

STUBS = r"""<?php
// Stand-ins for the WordPress functions the plugin calls; the scenario comes on stdin.
set_error_handler( function ( $level, $message, $file, $line ) {
	throw new ErrorException( $message, 0, $level, $file, $line );
} );
$scenario = json_decode( stream_get_contents( STDIN ), true );
define( 'ABSPATH', __DIR__ . '/' );
foreach ( $scenario['constants'] as $name => $value ) {
	define( $name, $value );
}
$data        = $scenario['data'];
$meta        = $scenario['meta'];
$attachments = $scenario['attachments'];
$responses   = $scenario['responses'];
$hooks       = array();
$requests    = array();
$primed      = array();
$out         = array();

class WP_Error {
	private $message;
	public function __construct( $code, $message ) { $this->message = $message; }
	public function get_error_message() { return $this->message; }
}
function add_filter( $hook, $callback, $priority = 10, $accepted_args = 1 ) {
	$GLOBALS['hooks'][ $hook ][] = array( $callback, $priority, $accepted_args );
	return true;
}
function add_action( $hook, $callback, $priority = 10, $accepted_args = 1 ) {
	return add_filter( $hook, $callback, $priority, $accepted_args );
}
function apply_filters( $hook, $value, ...$args ) {
	foreach ( isset( $GLOBALS['hooks'][ $hook ] ) ? $GLOBALS['hooks'][ $hook ] : array() as $h ) {
		$given = array_merge( array( $value ), $args );
		$value = call_user_func_array( $h[0], array_slice( $given, 0, $h[2] ) );
	}
	return $value;
}
function do_action( $hook, ...$args ) {
	foreach ( isset( $GLOBALS['hooks'][ $hook ] ) ? $GLOBALS['hooks'][ $hook ] : array() as $h ) {
		call_user_func_array( $h[0], array_slice( $args, 0, $h[2] ) );
	}
}
function wp_slash( $value ) {
	if ( is_array( $value ) ) {
		return array_map( 'wp_slash', $value );
	}
	return is_string( $value ) ? addslashes( $value ) : $value;
}
function wp_unslash( $value ) {
	if ( is_array( $value ) ) {
		return array_map( 'wp_unslash', $value );
	}
	return is_string( $value ) ? stripslashes( $value ) : $value;
}
function get_post_meta( $id, $key, $single ) {
	return isset( $GLOBALS['meta'][ $id ][ $key ] ) ? $GLOBALS['meta'][ $id ][ $key ] : '';
}
function update_post_meta( $id, $key, $value ) {
	$GLOBALS['meta'][ $id ][ $key ] = wp_unslash( $value ); // as WordPress stores it
	return true;
}
function update_meta_cache( $type, $ids ) {
	$GLOBALS['primed'][] = $ids;
	return array();
}
function wp_get_attachment_metadata( $id ) {
	return isset( $GLOBALS['attachments'][ $id ] ) ? $GLOBALS['attachments'][ $id ] : false;
}
function wp_json_encode( $data ) { return json_encode( $data ); }
function is_wp_error( $thing ) { return $thing instanceof WP_Error; }
function current_user_can( $capability ) { return true; }
function esc_html( $text ) { return htmlspecialchars( $text, ENT_QUOTES ); }
function wp_remote_retrieve_response_code( $response ) { return $response['response']['code']; }
function wp_remote_retrieve_body( $response ) { return $response['body']; }
function wp_remote_post( $url, $args ) {
	$GLOBALS['requests'][] = array( 'url' => $url, 'args' => $args );
	if ( null === $GLOBALS['responses'] ) {
		return http_post( $url, $args );
	}
	$next = array_shift( $GLOBALS['responses'] );
	if ( isset( $next['error'] ) ) {
		return new WP_Error( 'http_request_failed', $next['error'] );
	}
	return array( 'response' => array( 'code' => $next['status'] ), 'body' => $next['body'] );
}
/** A real POST, for the end-to-end test. */
function http_post( $url, $args ) {
	$headers = '';
	foreach ( $args['headers'] as $name => $value ) {
		$headers .= "$name: $value\r\n";
	}
	$context = stream_context_create( array( 'http' => array(
		'method'        => 'POST',
		'header'        => $headers,
		'content'       => $args['body'],
		'timeout'       => $args['timeout'],
		'ignore_errors' => true,
	) ) );
	$body = file_get_contents( $url, false, $context );
	preg_match( '#^HTTP/\S+ (\d+)#', $http_response_header[0], $status );
	return array( 'response' => array( 'code' => (int) $status[1] ), 'body' => $body );
}

require $scenario['plugin'];
require $scenario['script'];

echo json_encode( array(
	'out'      => $out,
	'requests' => $requests,
	'meta'     => (object) $meta,
	'hooks'    => $hooks,
	'primed'   => $primed,
) );
"""


@dataclass
class Request:
    url: str
    timeout: int
    headers: dict[str, str]
    body: str
    data_format: str


@dataclass
class Run:
    out: dict[str, Any]
    requests: list[Request]
    meta: dict[str, Any]
    hooks: dict[str, list[Any]]
    primed: list[list[int]]
    log: str


@dataclass
class Scenario:
    """A plugin, a PHP script that drives it, and the world the stubs show it."""

    plugin: str
    script: str
    constants: dict[str, str]
    data: Any = None
    meta: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    responses: list[dict[str, Any]] | None = None  # None: really post to the endpoint

    def command(self, php: str, folder: Path) -> tuple[list[str], bytes]:
        (folder / "stubs.php").write_text(STUBS, encoding="utf-8")
        (folder / "offload.php").write_text(self.plugin, encoding="utf-8")
        (folder / "script.php").write_text("<?php\n" + self.script, encoding="utf-8")
        stdin = {
            "plugin": str(folder / "offload.php"),
            "script": str(folder / "script.php"),
            "constants": self.constants,
            "data": self.data,
            "meta": self.meta or {},
            "attachments": self.attachments or {},
            "responses": self.responses,
        }
        argv = [php, "-d", "display_errors=stderr", "-d", "log_errors=1", str(folder / "stubs.php")]
        return argv, json.dumps(stdin).encode()


def parse_run(returncode: int, stdout: bytes, stderr: bytes) -> Run:
    log = stderr.decode()
    assert returncode == 0, f"php failed ({returncode}):\n{log}\n{stdout.decode()}"
    result = json.loads(stdout)
    requests = [
        Request(
            url=r["url"],
            timeout=r["args"]["timeout"],
            headers=r["args"]["headers"],
            body=r["args"]["body"],
            data_format=r["args"]["data_format"],
        )
        for r in result["requests"]
    ]
    hooks = result["hooks"] or {}
    return Run(result["out"] or {}, requests, result["meta"], hooks, result["primed"], log)


def run_plugin(php: str, folder: Path, scenario: Scenario) -> Run:
    argv, stdin = scenario.command(php, folder)
    done = subprocess.run(argv, input=stdin, capture_output=True, timeout=60, check=False)
    return parse_run(done.returncode, done.stdout, done.stderr)


async def run_plugin_async(php: str, folder: Path, scenario: Scenario) -> Run:
    """run_plugin that leaves the event loop free to serve the plugin's requests."""
    argv, stdin = scenario.command(php, folder)
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return parse_run(process.returncode, stdout, stderr)


def scenario(script: str, *, endpoint: str = ENDPOINT, **options: Any) -> Scenario:
    constants = options.pop("constants", {"OFFLOAD_WEBHOOK_SECRET": SECRET})
    return Scenario(render_wordpress_plugin(site(), endpoint), script, constants, **options)


UPLOAD = "$out['returned'] = apply_filters( 'wp_generate_attachment_metadata', $data, 42 );"


# -- the rendered file ----------------------------------------------------------------


def test_rendered_plugin_passes_php_lint(php, tmp_path):
    plugin = tmp_path / "offload.php"
    plugin.write_text(render_wordpress_plugin(site(), ENDPOINT), encoding="utf-8")
    done = subprocess.run([php, "-l", plugin], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_plugin_starts_with_the_php_tag_so_it_prints_nothing():
    assert render_wordpress_plugin(site(), ENDPOINT).startswith(
        "<?php\n/**\n * Plugin Name: offload\n"
    )


def test_plugin_names_every_hook_the_webhooks_and_the_secret_constant():
    text = render_wordpress_plugin(site(), ENDPOINT)
    for hook in HOOKS:
        assert f"'{hook}'" in text
    assert "const OFFLOAD_PLUGIN_SITE     = 'blog';" in text
    assert f"const OFFLOAD_PLUGIN_ENDPOINT = '{ENDPOINT}';" in text
    assert "'/_offload/' . OFFLOAD_PLUGIN_SITE . '/' . $hook" in text
    assert "'uploads'" in text
    assert "'deletions'" in text
    assert "OFFLOAD_WEBHOOK_SECRET" in text
    assert "OFFLOAD_ENDPOINT" in text


def test_plugin_header_gives_version_origin_and_where_the_secret_goes():
    text = render_wordpress_plugin(site(), ENDPOINT)
    header = text.split("*/", 1)[0]
    assert f" * Version: {__version__}\n" in header
    assert "Generated by `offload render wordpress-plugin`" in header
    assert "define( 'OFFLOAD_WEBHOOK_SECRET', '...' );" in header
    assert "wp-config.php" in header


def test_plugin_never_holds_the_webhook_secret():
    secret = "only-in-wp-config-9f8e7d6c5b4a"
    text = render_wordpress_plugin(site(webhook_secret=Secret(secret)), ENDPOINT)
    assert secret not in text
    assert secret[-4:] not in text


def test_endpoint_loses_its_trailing_slash_and_keeps_its_path():
    assert check_endpoint("https://offload.example.com/") == "https://offload.example.com"
    assert check_endpoint("http://10.0.0.5:8080/media/") == "http://10.0.0.5:8080/media"
    assert check_endpoint("http://[::1]:8080") == "http://[::1]:8080"


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://x",
        "not a url",
        "offload.example.com",
        "",
        "https://",
        "https://offload.example.com/?a=1",
        "https://offload.example.com/?",
        "https://offload.example.com/#top",
        "https://user:hunter2@offload.example.com",
        "https://offload.example.com/a\\b",
        "https://offload.example.com/a b",
        'https://offload.example.com/"',
        "https://offload.example.com/\n",
        "https://offload.example.com:99999",
        "http://[::1",
        "https://user:hunter2@offload.example.com:99999/a b",
        "https://offload.example.com/%zz",
        "https://offload.example.com/_offload/blog/uploads",
        "https://médias.example.com",
    ],
)
def test_bad_endpoint_is_a_one_line_usage_error(endpoint):
    with pytest.raises(PluginError) as caught:
        render_wordpress_plugin(site(), endpoint)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_site_settings_the_plugin_needs_are_named_when_missing(tmp_path):
    assert site_warnings(site(uploads_dir=tmp_path)) == []
    assert site_warnings(Site(name="blog", storage="file:///tmp/x")) == [
        "site blog has no webhook_secret: offload answers its webhooks with 403",
        "site blog has no uploads_dir: offload cannot find the files WordPress names",
        "site blog has no uploads_url: offload's answers map no local URL to the CDN",
    ]


@pytest.mark.parametrize("name", ["it's", "Blog", "a\\b", "", "-blog", "blog/x"])
def test_site_name_that_config_would_refuse_is_a_usage_error(name):
    with pytest.raises(PluginError, match="invalid site name"):
        render_wordpress_plugin(site(name), ENDPOINT)


def test_php_string_round_trips_quotes_backslashes_and_php_syntax(php, tmp_path):
    values = [
        "it's",
        "a\\b",
        "trailing\\",
        "\\'",
        "'\\",
        "\\\\''",
        "?> <?php echo 1; ?>",
        "$name {$x} ${y}",
        "*/ /* // #",
        "line\nbreak\r\n\ttab",
        "ünïcode ✓",
        "",
    ]
    script = tmp_path / "strings.php"
    literals = ", ".join(php_string(value) for value in values)
    script.write_text(f"<?php\necho json_encode( array( {literals} ) );\n", encoding="utf-8")
    done = subprocess.run([php, script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == values


def test_quote_in_the_endpoint_path_stays_inside_its_string(php, tmp_path):
    endpoint = "https://offload.example.com/it's"
    run = run_plugin(
        php, tmp_path, scenario(UPLOAD, endpoint=endpoint, data=METADATA, responses=[answer()])
    )
    assert [r.url for r in run.requests] == [f"{endpoint}/_offload/blog/uploads"]


# -- webhooks ----------------------------------------------------------------------------


def test_upload_is_signed_the_way_offload_verifies_it(php, tmp_path):
    before = int(time.time())
    run = run_plugin(php, tmp_path, scenario(UPLOAD, data=METADATA, responses=[answer()]))
    assert run.out["returned"] == METADATA  # the filter hands WordPress its metadata unchanged
    [request] = run.requests
    assert request.url == f"{ENDPOINT}/_offload/blog/uploads"
    assert request.timeout == 30
    assert request.data_format == "body"
    assert set(request.headers) == {
        "Content-Type",
        "X-Offload-Timestamp",
        "X-Offload-Content-SHA256",
        "X-Offload-Signature",
    }
    assert request.headers["Content-Type"] == "application/json"
    timestamp = request.headers["X-Offload-Timestamp"]
    assert before <= int(timestamp) <= time.time()
    body = request.body.encode()
    digest = request.headers["X-Offload-Content-SHA256"]
    assert digest == content_sha256(body)
    target = "/_offload/blog/uploads"  # the endpoint's path as sent
    assert request.headers["X-Offload-Signature"] == sign_request(
        SECRET, timestamp, "POST", target, digest
    )
    problem = verify_request_signature(
        SECRET,
        timestamp=timestamp,
        method="POST",
        target=target,
        body_sha256=digest,
        signature=request.headers["X-Offload-Signature"],
    )
    assert problem is None
    assert json.loads(body) == {**METADATA, "attachment_id": 42}
    assert SECRET not in json.dumps(request.headers)


def test_answer_urls_are_kept_in_attachment_meta_merged_with_earlier_ones(php, tmp_path):
    earlier = {local("2023/01/old.jpg"): cdn("2023/01/old.jpg")}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD, data=METADATA, meta={"42": {"_offload_urls": earlier}}, responses=[answer()]
        ),
    )
    assert run.meta["42"]["_offload_urls"] == {**earlier, **URLS}


def test_identical_metadata_from_both_filters_is_sent_once(php, tmp_path):
    script = (
        UPLOAD
        + """
$out['updated'] = apply_filters( 'wp_update_attachment_metadata', $data, 42 );
$data['sizes']['large'] = array( 'file' => 'photo-1024x683.jpg' );
apply_filters( 'wp_update_attachment_metadata', $data, 42 );
"""
    )
    run = run_plugin(php, tmp_path, scenario(script, data=METADATA, responses=[answer(), answer()]))
    assert run.out["updated"] == METADATA
    assert len(run.requests) == 2
    assert "large" in json.loads(run.requests[1].body)["sizes"]


def test_a_502_answer_still_keeps_the_files_that_made_it_and_is_logged(php, tmp_path):
    made_it = {local(FILES[0]): cdn(FILES[0])}
    run = run_plugin(
        php, tmp_path, scenario(UPLOAD, data=METADATA, responses=[answer(made_it, status=502)])
    )
    assert run.meta["42"]["_offload_urls"] == made_it
    assert "offload: uploads of attachment 42 answered HTTP 502" in run.log
    assert SECRET not in run.log


def test_an_unreachable_server_is_logged_and_the_upload_goes_on(php, tmp_path):
    run = run_plugin(
        php,
        tmp_path,
        scenario(UPLOAD, data=METADATA, responses=[{"error": "cURL error 7: Connection refused"}]),
    )
    assert run.out["returned"] == METADATA
    assert run.meta == {}
    assert "offload: uploads of attachment 42 failed: cURL error 7: Connection refused" in run.log
    assert SECRET not in run.log


def test_a_refusal_stores_nothing(php, tmp_path):
    refused = {"status": 401, "body": json.dumps({"error": "signature: bad signature"})}
    run = run_plugin(php, tmp_path, scenario(UPLOAD, data=METADATA, responses=[refused]))
    assert run.meta == {}
    assert "answered HTTP 401: " in run.log
    assert "bad signature" in run.log


def test_a_file_without_image_metadata_is_named_from_its_attached_file(php, tmp_path):
    script = "apply_filters( 'wp_generate_attachment_metadata', array( 'filesize' => 1234 ), 7 );"
    meta = {"7": {"_wp_attached_file": "2024/05/report.pdf"}}
    run = run_plugin(php, tmp_path, scenario(script, meta=meta, responses=[answer({})]))
    assert json.loads(run.requests[0].body) == {
        "filesize": 1234,
        "file": "2024/05/report.pdf",
        "attachment_id": 7,
    }


def test_deleting_an_attachment_sends_its_metadata_to_deletions(php, tmp_path):
    script = "do_action( 'delete_attachment', 42, null );"
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php, tmp_path, scenario(script, attachments={"42": METADATA}, responses=[deleted])
    )
    [request] = run.requests
    assert request.url == f"{ENDPOINT}/_offload/blog/deletions"
    assert request.timeout == 10
    timestamp = request.headers["X-Offload-Timestamp"]
    digest = content_sha256(request.body.encode())
    assert request.headers["X-Offload-Content-SHA256"] == digest
    assert request.headers["X-Offload-Signature"] == sign_request(
        SECRET, timestamp, "POST", "/_offload/blog/deletions", digest
    )
    assert json.loads(request.body) == {**METADATA, "attachment_id": 42}


def test_offload_endpoint_constant_overrides_the_rendered_endpoint(php, tmp_path):
    constants = {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_ENDPOINT": "http://staging:8080/"}
    run = run_plugin(
        php,
        tmp_path,
        scenario(UPLOAD, constants=constants, data=METADATA, responses=[answer()]),
    )
    assert run.requests[0].url == "http://staging:8080/_offload/blog/uploads"


def test_without_the_secret_constant_nothing_is_sent_or_rewritten_and_admins_are_told(
    php, tmp_path
):
    script = (
        UPLOAD
        + """
do_action( 'delete_attachment', 42, null );
ob_start();
do_action( 'admin_notices' );
$out['notice'] = ob_get_clean();
"""
    )
    run = run_plugin(php, tmp_path, scenario(script, constants={}, data=METADATA, responses=[]))
    assert run.requests == []
    assert run.out["returned"] == METADATA
    assert "OFFLOAD_WEBHOOK_SECRET" in run.out["notice"]
    assert "OFFLOAD_WEBHOOK_SECRET is not defined" in run.log
    assert "attachment 42 was not sent to uploads" in run.log
    assert "attachment 42 was not sent to deletions" in run.log
    for hook in ("wp_get_attachment_url", "wp_calculate_image_srcset", "the_content"):
        assert hook not in run.hooks


# -- CDN URLs ----------------------------------------------------------------------------

FILTERS = """
$http = str_replace( 'https:', 'http:', $data['local'] );
$out['url']     = apply_filters( 'wp_get_attachment_url', $data['local'], 42 );
$out['http']    = apply_filters( 'wp_get_attachment_url', $http, 42 );
$out['other']   = apply_filters( 'wp_get_attachment_url', $data['elsewhere'], 42 );
$out['foreign'] = apply_filters( 'wp_get_attachment_url', $data['local'], 43 );
$size = array( 300, 200 );
$out['srcset']  = apply_filters(
	'wp_calculate_image_srcset', $data['sources'], $size, $data['local'], array(), 42
);
$out['content'] = apply_filters( 'the_content', $data['content'] );
$out['again']   = apply_filters( 'the_content', $out['content'] );
"""


def test_url_filters_give_cdn_urls_of_offloaded_files_only(php, tmp_path):
    scaled, small = local(FILES[1]), local(FILES[2])
    content = (
        f'<figure id="attachment_42"><img class="wp-image-42" src="{scaled}" '
        f'srcset="{small} 300w, {scaled} 2560w"></figure>\n'
        f'<img class="wp-image-43" src="{local("2024/05/other.jpg")}">\n'
        f'<a href="{local("2024/05/photo-300x200.jpg")}">text mentions {small}</a>'
    )
    data = {
        "local": scaled,
        "elsewhere": local("2024/05/not-offloaded.jpg"),
        "sources": {
            "300": {"url": small, "descriptor": "w", "value": 300},
            "2560": {"url": scaled, "descriptor": "w", "value": 2560},
            "640": {"url": local("2024/05/photo-640x427.jpg"), "descriptor": "w", "value": 640},
        },
        "content": content,
    }
    run = run_plugin(
        php,
        tmp_path,
        scenario(UPLOAD + FILTERS, data=data | METADATA, responses=[answer()]),
    )
    assert run.out["url"] == cdn(FILES[1])
    assert run.out["http"] == cdn(FILES[1])
    assert run.out["other"] == local("2024/05/not-offloaded.jpg")
    assert run.out["foreign"] == scaled
    assert run.out["srcset"] == {
        "300": {"url": cdn(FILES[2]), "descriptor": "w", "value": 300},
        "2560": {"url": cdn(FILES[1]), "descriptor": "w", "value": 2560},
        "640": {"url": local("2024/05/photo-640x427.jpg"), "descriptor": "w", "value": 640},
    }
    assert run.out["content"] == (
        f'<figure id="attachment_42"><img class="wp-image-42" src="{cdn(FILES[1])}" '
        f'srcset="{cdn(FILES[2])} 300w, {cdn(FILES[1])} 2560w"></figure>\n'
        f'<img class="wp-image-43" src="{local("2024/05/other.jpg")}">\n'
        f'<a href="{cdn(FILES[2])}">text mentions {cdn(FILES[2])}</a>'
    )
    assert run.out["again"] == run.out["content"]
    assert run.primed[-1] == [42, 43]


NAMES = ("2024/05/logo@2x.png", "2024/05/фото.jpg", "2024/05/写真 1.jpg")


@pytest.mark.parametrize("name", NAMES)
def test_every_spelling_of_an_offloaded_url_resolves(php, tmp_path, name):
    """offload answers with percent-encoded URLs; WordPress writes raw ones, editors either."""
    encoded = quote(name, safe="/")
    urls = {local(encoded): cdn(encoded)}
    host_path = UPLOADS_URL.removeprefix("https:")
    data = {
        "raw": local(name),
        "encoded": local(encoded),
        "http": local(name).replace("https:", "http:"),
        "content": (
            f'<img class="wp-image-42" src="{local(name)}" '
            f'srcset="{local(encoded)} 2x, {host_path}/{name} 3x, {host_path}/{encoded} 4x">'
        ),
    }
    script = """
$out['raw']     = apply_filters( 'wp_get_attachment_url', $data['raw'], 42 );
$out['encoded'] = apply_filters( 'wp_get_attachment_url', $data['encoded'], 42 );
$out['http']    = apply_filters( 'wp_get_attachment_url', $data['http'], 42 );
$out['content'] = apply_filters( 'the_content', $data['content'] );
"""
    run = run_plugin(
        php, tmp_path, scenario(script, data=data, meta={"42": {"_offload_urls": urls}})
    )
    target = cdn(encoded)
    relative = target.removeprefix("https:")
    assert (run.out["raw"], run.out["encoded"], run.out["http"]) == (target, target, target)
    assert run.out["content"] == (
        f'<img class="wp-image-42" src="{target}" '
        f'srcset="{target} 2x, {relative} 3x, {relative} 4x">'
    )


def test_content_without_attachments_is_left_alone(php, tmp_path):
    text = f'<p><img src="{local(FILES[0])}"> no attachment class</p>'
    script = "$out['content'] = apply_filters( 'the_content', $data );"
    run = run_plugin(
        php, tmp_path, scenario(script, data=text, meta={"42": {"_offload_urls": URLS}})
    )
    assert run.out["content"] == text
    assert run.primed == []


def test_gallery_data_ids_find_their_attachments(php, tmp_path):
    text = f'<img data-id="42" src="{local(FILES[2])}">'
    script = "$out['content'] = apply_filters( 'the_content', $data );"
    run = run_plugin(
        php, tmp_path, scenario(script, data=text, meta={"42": {"_offload_urls": URLS}})
    )
    assert run.out["content"] == f'<img data-id="42" src="{cdn(FILES[2])}">'


# -- end to end --------------------------------------------------------------------------


async def test_plugin_offloads_through_a_real_offload_server(php, tmp_path, aiohttp_server):
    uploads = tmp_path / "uploads"
    for path in FILES:
        (uploads / path).parent.mkdir(parents=True, exist_ok=True)
        (uploads / path).write_bytes(f"bytes of {path}".encode())
    (tmp_path / "bucket").mkdir()
    blog = Site(
        name="blog",
        storage=(tmp_path / "bucket").as_uri(),
        prefix=PREFIX,
        uploads_dir=uploads,
        uploads_url=UPLOADS_URL,
        cdn_url=CDN_URL,
        webhook_secret=Secret(SECRET),
    )
    app = create_app(Settings(manifest=tmp_path / "manifest.sqlite3", sites={"blog": blog}))
    server = await aiohttp_server(app)
    plugin = render_wordpress_plugin(blog, f"http://127.0.0.1:{server.port}/")
    constants = {"OFFLOAD_WEBHOOK_SECRET": SECRET}

    upload = Scenario(
        plugin,
        UPLOAD + "$out['url'] = apply_filters( 'wp_get_attachment_url', $data['local'], 42 );",
        constants,
        data={**METADATA, "local": local(FILES[2])},
        responses=None,
    )
    run = await run_plugin_async(php, tmp_path, upload)
    assert run.log == ""
    assert run.out["url"] == cdn(FILES[2])
    assert run.meta["42"]["_offload_urls"] == URLS
    storage = app[STORAGES]["blog"]
    for path in FILES:
        assert await storage.head(f"{PREFIX}/{path}") is not None

    # A later request: WordPress deletes the attachment.
    delete = Scenario(
        plugin,
        "do_action( 'delete_attachment', 42, null );",
        constants,
        meta=run.meta,
        attachments={"42": METADATA},
        responses=None,
    )
    run = await run_plugin_async(php, tmp_path, delete)
    assert run.log == ""
    assert [request.url.rsplit("/", 1)[1] for request in run.requests] == ["deletions"]
    for path in FILES:
        assert await storage.head(f"{PREFIX}/{path}") is None
    assert app[MANIFEST].rows("blog", attachment_id="42") == []

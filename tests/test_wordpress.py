"""The WordPress plugin: valid PHP, no secret inside, and webhooks offload's server accepts.

Most tests run the rendered plugin under php-cli with small stand-ins for the
WordPress functions it calls (``STUBS``): ``wp_remote_post`` records each
request and answers from the scenario, or, for the end-to-end tests, really
posts to an offload server. ``$wpdb`` records every statement (the retry queue's
SQL is checked as written), keeps the plugin's table of uploads path -> CDN URL,
and answers other queries only when the script says how. What a run did is
printed after the plugin's shutdown functions, so what they queue shows too.
Any PHP notice, warning or deprecation fails the run. php-cli is required (CI
installs it): without it these tests fail rather than skip. tests/test_wordpress_real.py
runs the same plugin in a real WordPress.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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
UPLOADS_DIR = "/srv/wp/wp-content/uploads"
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
# The filters whose text offload_rewrite rewrites.
REWRITTEN = (
    "the_content",
    "get_the_excerpt",
    "the_excerpt",
    "widget_text_content",
    "widget_block_content",
    "wp_get_custom_css",
)
HOOKS = (
    "wp_generate_attachment_metadata",
    "wp_update_attachment_metadata",
    "delete_attachment",
    "wp_get_attachment_url",
    "wp_calculate_image_srcset",
    "wp_calculate_image_srcset_meta",
    "wp_image_file_matches_image_meta",
    *REWRITTEN,
    "cron_schedules",
    "offload_retry",
    "offload_batch",
    "offload_backfill",
    "admin_init",
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
$data           = $scenario['data'];
$meta           = $scenario['meta'];
$attachments    = $scenario['attachments'];
$responses      = $scenario['responses'];
$upload_dir     = $scenario['upload_dir'];
$scheduled      = $scenario['scheduled'];
$hooks          = array();
$requests       = array();
$out            = array();
$current_filter = array();
$options        = array();
$answer_sql     = null; // a script may set function( $sql, $kind ): an answer, or null

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
	$GLOBALS['current_filter'][] = $hook;
	foreach ( isset( $GLOBALS['hooks'][ $hook ] ) ? $GLOBALS['hooks'][ $hook ] : array() as $h ) {
		$given = array_merge( array( $value ), $args );
		$value = call_user_func_array( $h[0], array_slice( $given, 0, $h[2] ) );
	}
	array_pop( $GLOBALS['current_filter'] );
	return $value;
}
function do_action( $hook, ...$args ) {
	$GLOBALS['current_filter'][] = $hook;
	foreach ( isset( $GLOBALS['hooks'][ $hook ] ) ? $GLOBALS['hooks'][ $hook ] : array() as $h ) {
		call_user_func_array( $h[0], array_slice( $args, 0, $h[2] ) );
	}
	array_pop( $GLOBALS['current_filter'] );
}
function current_filter() { return end( $GLOBALS['current_filter'] ); }
const MINUTE_IN_SECONDS = 60;
const HOUR_IN_SECONDS   = 3600;
const DAY_IN_SECONDS    = 86400;

/**
 * $wpdb: records every statement. The plugin's table of uploads path -> CDN URL
 * is kept (REPLACE fills it, DELETE by attachment empties it, lookups by path
 * hash read it); any other query is answered by the script's $answer_sql, or
 * finds nothing (a DELETE from the queue deletes no row unless the script says).
 * prepare() escapes as WordPress does, with backslashes.
 */
class WPDB_Stub {
	public $prefix = 'wp_';
	public $posts = 'wp_posts';
	public $postmeta = 'wp_postmeta';
	public $queries = array();
	public $urls = array(); // wp_offload_urls: path hash => row
	public function __construct( $urls ) {
		foreach ( $urls as $path => $cdn ) {
			$this->urls[ sha1( $path ) ] = array(
				'path'          => $path,
				'cdn_url'       => $cdn,
				'attachment_id' => 0,
			);
		}
	}
	public function get_charset_collate() { return ''; }
	public function prepare( $query, ...$args ) {
		$args = isset( $args[0] ) && is_array( $args[0] ) ? $args[0] : $args;
		foreach ( $args as $n => $arg ) {
			$args[ $n ] = is_string( $arg ) ? addslashes( $arg ) : $arg;
		}
		return vsprintf( str_replace( '%s', "'%s'", $query ), $args );
	}
	private function answer( $sql, $kind ) {
		$this->queries[] = $sql;
		$answer_sql = $GLOBALS['answer_sql'];
		return is_callable( $answer_sql ) ? $answer_sql( $sql, $kind ) : null;
	}
	public function query( $sql ) {
		$this->answer( $sql, 'query' );
		$string = <<<'RE'
'((?:[^'\\]|\\.)*)'
RE;
		if ( 0 === strpos( $sql, 'REPLACE INTO wp_offload_urls ' ) ) {
			$tuple = "/\\('([0-9a-f]{40})', $string, $string, (\\d+)\\)/";
			preg_match_all( $tuple, $sql, $rows, PREG_SET_ORDER );
			foreach ( $rows as $row ) {
				$this->urls[ $row[1] ] = array(
					'path'          => stripslashes( $row[2] ),
					'cdn_url'       => stripslashes( $row[3] ),
					'attachment_id' => (int) $row[4],
				);
			}
			return count( $rows );
		}
		return 0;
	}
	public function get_results( $sql ) {
		$answer = $this->answer( $sql, 'results' );
		if ( null !== $answer ) {
			return array_map( function ( $row ) { return (object) $row; }, $answer );
		}
		$found = array();
		if ( false !== strpos( $sql, 'FROM wp_offload_urls WHERE path_hash IN' ) ) {
			foreach ( $this->urls as $hash => $row ) {
				if ( false !== strpos( $sql, "'$hash'" ) ) {
					$found[] = (object) $row;
				}
			}
		}
		return $found;
	}
	public $last_error = '';
	public function esc_like( $text ) { return addcslashes( $text, '_%\\' ); }
	public function get_var( $sql ) {
		$answer = $this->answer( $sql, 'var' );
		if ( null === $answer && 0 === strpos( $sql, 'SHOW TABLES LIKE ' ) ) {
			// The plugin's tables exist.
			return str_replace( array( "'", '\\' ), '', substr( $sql, 17 ) );
		}
		return $answer;
	}
	public function get_col( $sql ) {
		$answer = $this->answer( $sql, 'col' );
		return null === $answer ? array() : $answer;
	}
	/** Rows deleted: of the table it keeps, those it had; of others, what the script says or 0. */
	public function delete( $table, $where, $formats = null ) {
		$answer = $this->answer( "DELETE FROM $table WHERE " . json_encode( $where ), 'delete' );
		if ( 'wp_offload_urls' === $table && isset( $where['attachment_id'] ) ) {
			$had = count( $this->urls );
			foreach ( $this->urls as $hash => $row ) {
				if ( $row['attachment_id'] === $where['attachment_id'] ) {
					unset( $this->urls[ $hash ] );
				}
			}
			return $had - count( $this->urls );
		}
		return null === $answer ? 0 : (int) $answer;
	}
}
$wpdb = new WPDB_Stub( $scenario['urls'] );
function get_option( $name, $default = false ) {
	return isset( $GLOBALS['options'][ $name ] ) ? $GLOBALS['options'][ $name ] : $default;
}
function update_option( $name, $value, $autoload = null ) {
	$GLOBALS['options'][ $name ] = $value;
	return true;
}
function wp_next_scheduled( $hook ) {
	return isset( $GLOBALS['scheduled'][ $hook ] ) ? $GLOBALS['scheduled'][ $hook ]['time'] : false;
}
function wp_schedule_event( $time, $recurrence, $hook ) {
	$GLOBALS['scheduled'][ $hook ] = array( 'time' => $time, 'recurrence' => $recurrence );
	return true;
}
function wp_schedule_single_event( $time, $hook ) {
	return wp_schedule_event( $time, false, $hook );
}
function wp_clear_scheduled_hook( $hook ) { unset( $GLOBALS['scheduled'][ $hook ] ); return 0; }
$doing_cron = false; // a script sets it true to be a WP-Cron run
function wp_doing_cron() { return $GLOBALS['doing_cron']; }
function wp_cache_delete( $key, $group = '' ) { return true; }
function wp_parse_url( $url, $component = -1 ) { return parse_url( $url, $component ); }
function wp_basename( $path ) { return basename( $path ); }
function untrailingslashit( $text ) { return rtrim( $text, '/\\' ); }
function wp_generate_password( $length = 12, $special = true ) {
	return substr( bin2hex( random_bytes( $length ) ), 0, $length );
}
function wp_get_upload_dir() { return $GLOBALS['upload_dir']; }
function get_post( $id ) {
	return isset( $GLOBALS['attachments'][ $id ] ) ? (object) array( 'ID' => $id ) : null;
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
function maybe_unserialize( $value ) { return $value; }
function get_post_meta( $id, $key, $single ) {
	return isset( $GLOBALS['meta'][ $id ][ $key ] ) ? $GLOBALS['meta'][ $id ][ $key ] : '';
}
function update_post_meta( $id, $key, $value ) {
	$GLOBALS['meta'][ $id ][ $key ] = wp_unslash( $value ); // as WordPress stores it
	return true;
}
function wp_get_attachment_metadata( $id ) {
	return isset( $GLOBALS['attachments'][ $id ] ) ? $GLOBALS['attachments'][ $id ] : false;
}
function wp_json_encode( $data ) { return json_encode( $data ); }
function is_wp_error( $thing ) { return $thing instanceof WP_Error; }
$capable = true; // a script sets it false to be a visitor
function current_user_can( $capability ) { return $GLOBALS['capable']; }
function wp_doing_ajax() { return false; }
function wp_list_pluck( $rows, $field ) {
	return array_map( function ( $row ) use ( $field ) { return $row->$field; }, $rows );
}
/** A persistent object cache (Redis, Memcached) as the plugin sees one: a script may prime it. */
$object_cache = array();
function wp_cache_get_multiple( $keys, $group = '' ) {
	$found = array();
	foreach ( $keys as $key ) {
		$cache         = $GLOBALS['object_cache'];
		$found[ $key ] = isset( $cache[ $group ][ $key ] ) ? $cache[ $group ][ $key ] : false;
	}
	return $found;
}
function wp_cache_set_multiple( $data, $group = '', $expire = 0 ) {
	foreach ( $data as $key => $value ) {
		$GLOBALS['object_cache'][ $group ][ $key ] = $value;
	}
	return array_fill_keys( array_keys( $data ), true );
}
function esc_html( $text ) { return htmlspecialchars( $text, ENT_QUOTES ); }
function esc_attr( $text ) { return htmlspecialchars( $text, ENT_QUOTES ); }
function esc_url( $url ) { return $url; }
function admin_url( $path = '' ) { return 'https://blog.example.com/wp-admin/' . $path; }
function check_admin_referer( $action ) { return 1; }
function wp_safe_redirect( $location ) { $GLOBALS['out']['redirect'] = $location; return true; }
function wp_die( $message, $status = 500 ) { throw new Exception( "wp_die: $message" ); }
function wp_remote_retrieve_response_code( $response ) { return $response['response']['code']; }
function wp_remote_retrieve_body( $response ) { return $response['body']; }
function wp_remote_post( $url, $args ) {
	$GLOBALS['requests'][] = array( 'url' => $url, 'args' => $args );
	if ( null === $GLOBALS['responses'] ) {
		return http_post( $url, $args );
	}
	$next = array_shift( $GLOBALS['responses'] );
	if ( null === $next ) {
		throw new LogicException( "the scenario has no answer left for $url" );
	}
	if ( isset( $next['delay'] ) ) {
		usleep( (int) ( $next['delay'] * 1000000 ) ); // offload takes this long to answer
	}
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

/** What the run did, printed after every shutdown function the plugin registered. */
function stub_report() {
	$table = array();
	foreach ( $GLOBALS['wpdb']->urls as $row ) {
		$table[ $row['path'] ] = array( $row['cdn_url'], $row['attachment_id'] );
	}
	echo json_encode( array(
		'out'       => $GLOBALS['out'],
		'requests'  => $GLOBALS['requests'],
		'meta'      => (object) $GLOBALS['meta'],
		'hooks'     => $GLOBALS['hooks'],
		'sql'       => $GLOBALS['wpdb']->queries,
		'table'     => (object) $table,
		'scheduled' => (object) $GLOBALS['scheduled'],
	) );
}
register_shutdown_function( function () {
	register_shutdown_function( 'stub_report' ); // a shutdown function added now runs last
} );

require $scenario['plugin'];
require $scenario['script'];
"""


@dataclass
class Request:
    url: str
    timeout: float
    headers: dict[str, str]
    body: str
    data_format: str | None

    @property
    def target(self) -> str:
        """The path and query as sent: what the signature covers."""
        parts = urlsplit(self.url)
        return f"{parts.path}?{parts.query}"


@dataclass
class Run:
    out: dict[str, Any]
    requests: list[Request]
    meta: dict[str, Any]
    hooks: dict[str, list[Any]]
    sql: list[str]
    table: dict[str, list[Any]]  # the offload_urls table: path -> [CDN URL, attachment id]
    scheduled: dict[str, dict[str, Any]]
    log: str

    @property
    def cron(self) -> dict[str, dict[str, Any]]:
        """The cron events, less the one-off offload_backfill that every first install schedules.

        test_installing_makes_the_tables_and_schedules_the_backfill checks that one.
        """
        return {hook: event for hook, event in self.scheduled.items() if hook != "offload_backfill"}

    def queued(self) -> list[dict[str, Any]]:
        """The retry queue's INSERT ... ON DUPLICATE KEY UPDATE statements, as their values."""
        found = []
        for statement in self.sql:
            match = QUEUED.search(statement)
            if statement.startswith("INSERT INTO wp_offload_queue"):
                assert match, statement
                assert "attempts = attempts + 1" in statement
                values = match.groupdict()
                for name in ("attachment_id", "next_try", "created"):
                    values[name] = int(values[name])
                for name in ("body", "error"):
                    values[name] = re.sub(r"\\(.)", r"\1", values[name], flags=re.DOTALL)
                found.append(values)
        return found


QUEUED = re.compile(
    r"^INSERT INTO wp_offload_queue "
    r"\(hook, attachment_id, body, state, attempts, next_try, last_error, created\)\s+"
    r"VALUES \('(?P<hook>\w+)', (?P<attachment_id>\d+), '(?P<body>(?:[^'\\]|\\.)*)', "
    r"'(?P<state>\w+)', 1, (?P<next_try>\d+), '(?P<error>(?:[^'\\]|\\.)*)', (?P<created>\d+)\)\s+"
    r"ON DUPLICATE KEY UPDATE ",
    re.DOTALL,
)


@dataclass
class Scenario:
    """A plugin, a PHP script that drives it, and the world the stubs show it."""

    plugin: str
    script: str
    constants: dict[str, Any]
    data: Any = None
    meta: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    responses: list[dict[str, Any]] | None = None  # None: really post to the endpoint
    urls: dict[str, str] | None = None  # rows of the offload_urls table: path -> CDN URL
    scheduled: dict[str, Any] | None = None  # cron events already scheduled
    upload_dir: dict[str, str] | None = None  # what wp_get_upload_dir() says
    ini: dict[str, str] | None = None  # php -d settings

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
            "urls": self.urls or {},
            "scheduled": self.scheduled or {},
            "upload_dir": self.upload_dir or {"basedir": UPLOADS_DIR, "baseurl": UPLOADS_URL},
        }
        argv = [php, "-d", "display_errors=stderr", "-d", "log_errors=1"]
        for name, value in (self.ini or {}).items():
            argv += ["-d", f"{name}={value}"]
        return [*argv, str(folder / "stubs.php")], json.dumps(stdin).encode()


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
            data_format=r["args"].get("data_format"),
        )
        for r in result["requests"]
    ]
    return Run(
        out=result["out"] or {},
        requests=requests,
        meta=result["meta"],
        hooks=result["hooks"] or {},
        sql=result["sql"],
        table=result["table"],
        scheduled=result["scheduled"],
        log=log,
    )


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


def test_uploads_are_taken_after_image_optimisers_and_no_block_costs_a_query(php, tmp_path):
    """Optimisers rewrite the files in place on these filters; render_block runs once per block."""
    run = run_plugin(php, tmp_path, scenario(""))
    late = 2**63 - 1 - 100  # PHP_INT_MAX - 100
    assert run.hooks["wp_generate_attachment_metadata"] == [["offload_upload", late, 2]]
    assert run.hooks["wp_update_attachment_metadata"] == [["offload_upload", late, 2]]
    assert run.hooks["offload_retry"] == [["offload_run_queue", 10, 1]]
    assert run.hooks["offload_backfill"] == [["offload_backfill", 10, 1]]
    assert run.hooks["admin_init"] == [["offload_keep_scheduled_for_admins", 10, 1]]
    for hook in REWRITTEN:
        assert run.hooks[hook] == [["offload_rewrite", 20, 1]]
    assert "render_block" not in run.hooks


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
    [request] = run.requests
    assert request.url.split("?")[0] == f"{endpoint}/_offload/blog/uploads"


# -- webhooks ----------------------------------------------------------------------------

BIG_BUDGET = {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_REQUEST_BUDGET": 100}


def test_upload_is_signed_for_its_path_and_a_random_query(php, tmp_path):
    before = int(time.time())
    run = run_plugin(
        php,
        tmp_path,
        scenario(UPLOAD, constants=BIG_BUDGET, data=METADATA, responses=[answer()]),
    )
    assert run.out["returned"] == METADATA  # the filter hands WordPress its metadata unchanged
    [request] = run.requests
    url = urlsplit(request.url)
    assert request.url.split("?")[0] == f"{ENDPOINT}/_offload/blog/uploads"
    assert re.fullmatch(r"request=[A-Za-z0-9]{12}", url.query), url.query
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
    target = f"/_offload/blog/uploads?{url.query}"  # path and query as sent
    assert request.target == target
    signature = request.headers["X-Offload-Signature"]
    assert signature == sign_request(SECRET, timestamp, "POST", target, digest)
    checked = {"timestamp": timestamp, "method": "POST", "body_sha256": digest}
    assert verify_request_signature(SECRET, target=target, signature=signature, **checked) is None
    # The query is signed too: without it the signature is not offload's.
    without_query = "/_offload/blog/uploads"
    assert verify_request_signature(SECRET, target=without_query, signature=signature, **checked)
    assert json.loads(body) == {**METADATA, "attachment_id": 42}
    assert SECRET not in json.dumps(request.headers)


def test_the_same_upload_sent_twice_carries_two_signatures(php, tmp_path):
    """offload refuses a signature it has seen: a resend within one second must differ."""
    requests = []
    for run_number in range(2):
        folder = tmp_path / str(run_number)
        folder.mkdir()
        run = run_plugin(php, folder, scenario(UPLOAD, data=METADATA, responses=[answer()]))
        requests += run.requests
    first, second = requests
    assert first.body == second.body
    assert first.target != second.target
    assert first.headers["X-Offload-Signature"] != second.headers["X-Offload-Signature"]


def test_one_request_waits_on_offload_for_its_budget_at_most(php, tmp_path):
    """The default budget (20 s) caps the 30 s an upload may take."""
    run = run_plugin(php, tmp_path, scenario(UPLOAD, data=METADATA, responses=[answer()]))
    [request] = run.requests
    assert 0 < request.timeout <= 20


def test_answer_urls_are_kept_in_attachment_meta_merged_with_earlier_ones(php, tmp_path):
    earlier = {local("2023/01/old.jpg"): cdn("2023/01/old.jpg")}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD,
            data=METADATA,
            meta={"42": {"_offload_urls": earlier}},
            attachments={"42": METADATA},
            responses=[answer()],
        ),
    )
    assert run.meta["42"]["_offload_urls"] == {**earlier, **URLS}


def test_answer_items_and_urls_both_give_meta_and_rows_of_the_site_wide_table(php, tmp_path):
    """Items give the raw local URL WordPress writes, `urls` the encoded one offload writes."""
    name = "2024/05/logo@2x.png"
    encoded = quote(name)
    reply = {
        "site": "blog",
        "items": [
            {"path": name, "url": cdn(encoded), "status": "uploaded"},
            {"path": FILES[0], "url": cdn(FILES[0]), "status": "unchanged"},
            {"path": FILES[2], "url": cdn(FILES[2]), "status": "failed", "error": "disk"},
        ],
        "urls": {local(encoded): cdn(encoded), local(FILES[0]): cdn(FILES[0])},
    }
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD,
            data=METADATA,
            attachments={"42": METADATA},
            responses=[{"status": 200, "body": json.dumps(reply)}],
        ),
    )
    assert run.meta["42"]["_offload_urls"] == {
        local(name): cdn(encoded),
        local(encoded): cdn(encoded),
        local(FILES[0]): cdn(FILES[0]),
    }
    # The table holds decoded paths and CDN URLs spelled as WordPress spells its own.
    assert run.table == {name: [cdn(name), 42], FILES[0]: [cdn(FILES[0]), 42]}
    [replace] = [sql for sql in run.sql if sql.startswith("REPLACE INTO wp_offload_urls ")]
    assert replace.startswith(
        "REPLACE INTO wp_offload_urls (path_hash, path, cdn_url, attachment_id) VALUES "
    )
    sha1 = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()
    assert f"('{sha1}', '{name}', '{cdn(name)}', 42)" in replace


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


GENERATE = """
// As WordPress does: wp_generate_attachment_metadata() makes the sizes one by
// one, saving the metadata after each through wp_update_attachment_metadata(),
// then hands the whole metadata to its own filter.
function wp_update_attachment_metadata( $id, $metadata ) {
	$metadata = apply_filters( 'wp_update_attachment_metadata', $metadata, $id );
	$GLOBALS['out']['saves'][] = array_keys( $metadata['sizes'] );
	return true;
}
function wp_create_image_subsizes( $id, $metadata ) {
	$sizes               = $metadata['sizes'];
	$metadata['sizes'] = array();
	wp_update_attachment_metadata( $id, $metadata );
	foreach ( $sizes as $name => $size ) {
		$metadata['sizes'][ $name ] = $size;
		wp_update_attachment_metadata( $id, $metadata );
	}
	return $metadata;
}
function wp_generate_attachment_metadata( $id, $file ) {
	$metadata = wp_create_image_subsizes( $id, $GLOBALS['data'] );
	if ( ! empty( $GLOBALS['dies'] ) ) {
		exit( 0 ); // PHP stops here: a memory or time limit while making the sizes
	}
	return apply_filters( 'wp_generate_attachment_metadata', $metadata, $id, 'create' );
}
"""
WITH_SIZES: dict[str, Any] = {
    **METADATA,
    "sizes": {
        **METADATA["sizes"],
        "large": {"file": "photo-1024x683.jpg", "width": 1024, "height": 683},
    },
}


def test_saves_while_wordpress_makes_the_sizes_wait_for_the_complete_metadata(php, tmp_path):
    script = GENERATE + "$out['returned'] = wp_generate_attachment_metadata( 42, 'photo.jpg' );"
    run = run_plugin(
        php,
        tmp_path,
        scenario(script, data=WITH_SIZES, attachments={"42": WITH_SIZES}, responses=[answer()]),
    )
    assert run.out["saves"] == [[], ["medium"], ["medium", "large"]]  # three saves were made
    assert run.out["returned"] == WITH_SIZES
    [request] = run.requests  # and one webhook, from the final filter
    assert json.loads(request.body) == {**WITH_SIZES, "attachment_id": 42}
    assert run.queued() == []  # the shutdown check found it handled
    assert run.cron == {}


def test_a_generation_php_never_finishes_is_queued_at_shutdown(php, tmp_path):
    script = GENERATE + "$dies = true;\nwp_generate_attachment_metadata( 42, 'photo.jpg' );"
    run = run_plugin(
        php,
        tmp_path,
        scenario(script, data=WITH_SIZES, attachments={"42": WITH_SIZES}, responses=[]),
    )
    assert run.requests == []
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("uploads", 42, "waiting")
    assert item["error"] == "WordPress stopped while making the sizes"
    assert set(run.cron) == {"offload_retry"}


def test_saves_while_wordpress_makes_missing_sizes_wait_for_the_complete_metadata(php, tmp_path):
    """The REST API's post-process after an upload PHP could not finish:
    wp_update_image_subsizes saves after each size, then the filter has the whole."""
    script = (
        GENERATE
        + """
function wp_update_image_subsizes( $id ) {
	return wp_create_image_subsizes( $id, $GLOBALS['data'] );
}
$metadata = wp_update_image_subsizes( 42 );
$out['sent_while_making'] = count( $requests );
apply_filters( 'wp_generate_attachment_metadata', $metadata, 42, 'update' );
"""
    )
    run = run_plugin(
        php,
        tmp_path,
        scenario(script, data=WITH_SIZES, attachments={"42": WITH_SIZES}, responses=[answer()]),
    )
    assert run.out["saves"] == [[], ["medium"], ["medium", "large"]]
    assert run.out["sent_while_making"] == 0
    [request] = run.requests
    assert json.loads(request.body) == {**WITH_SIZES, "attachment_id": 42}
    assert run.queued() == []


def test_a_502_answer_keeps_the_files_that_made_it_and_is_queued_for_retry(php, tmp_path):
    made_it = {local(FILES[0]): cdn(FILES[0])}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD,
            data=METADATA,
            attachments={"42": METADATA},
            responses=[answer(made_it, status=502)],
        ),
    )
    assert run.meta["42"]["_offload_urls"] == made_it
    assert "offload: uploads of attachment 42: HTTP 502: " in run.log
    assert run.log.rstrip().endswith("(queued for retry)")
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("uploads", 42, "waiting")
    assert item["error"].startswith("HTTP 502: ")
    assert set(run.cron) == {"offload_retry"}
    assert SECRET not in run.log


def test_an_unreachable_offload_queues_the_upload_and_schedules_the_retry(php, tmp_path):
    before = int(time.time())
    script = UPLOAD + "\n$out['schedules'] = apply_filters( 'cron_schedules', array() );"
    run = run_plugin(
        php,
        tmp_path,
        scenario(script, data=METADATA, responses=[{"error": "cURL error 7: Connection refused"}]),
    )
    assert run.out["returned"] == METADATA  # the upload goes on
    assert run.meta == {}
    assert (
        "offload: uploads of attachment 42: cURL error 7: Connection refused (queued for retry)"
        in run.log
    )
    assert SECRET not in run.log
    assert any(sql.startswith("CREATE TABLE IF NOT EXISTS wp_offload_queue") for sql in run.sql)
    [item] = run.queued()
    assert item == {
        "hook": "uploads",
        "attachment_id": 42,
        "body": "",  # a queued upload sends the attachment's metadata as it is then
        "state": "waiting",
        "next_try": item["created"] + 60,  # tried again on the next run
        "error": "cURL error 7: Connection refused",
        "created": item["created"],
    }
    assert before <= item["created"] <= time.time()
    # WP-Cron runs the queue every minute from a minute from now.
    [(hook, event)] = run.cron.items()
    assert hook == "offload_retry"
    assert event["recurrence"] == "offload_minute"
    assert before + 60 <= event["time"] <= time.time() + 60
    assert run.out["schedules"]["offload_minute"]["interval"] == 60


def test_after_one_unreachable_send_the_rest_of_the_request_is_queued_unsent(php, tmp_path):
    script = """
apply_filters( 'wp_generate_attachment_metadata', $data, 42 );
apply_filters( 'wp_generate_attachment_metadata', array( 'file' => '2024/05/other.jpg' ), 43 );
do_action( 'delete_attachment', 44 );
"""
    gone = {"file": "2024/05/gone.jpg", "sizes": {"thumbnail": {"file": "gone-150x150.jpg"}}}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            data=METADATA,
            attachments={"44": gone},
            responses=[{"error": "cURL error 28: Operation timed out"}],
        ),
    )
    [request] = run.requests  # one wait on a dead offload, not one per webhook
    assert json.loads(request.body)["attachment_id"] == 42
    queued = run.queued()
    assert [(item["hook"], item["attachment_id"]) for item in queued] == [
        ("uploads", 42),
        ("uploads", 43),
        ("deletions", 44),
    ]
    assert {item["error"] for item in queued} == {"cURL error 28: Operation timed out"}
    # A deletion is queued with the files it names: WordPress deletes them right after.
    assert json.loads(queued[2]["body"]) == {**gone, "attachment_id": 44}
    assert set(run.cron) == {"offload_retry"}


def test_an_error_answer_waits_longer_after_each_attempt(php, tmp_path):
    script = """
$answer_sql = function ( $sql, $kind ) {  // the attachment failed three times before
	return false !== strpos( $sql, 'attempts FROM wp_offload_queue' ) ? '3' : null;
};
apply_filters( 'wp_generate_attachment_metadata', $data, 42 );
"""
    busy = {"status": 503, "body": json.dumps({"error": "storage unavailable"})}
    run = run_plugin(php, tmp_path, scenario(script, data=METADATA, responses=[busy]))
    [item] = run.queued()
    assert item["error"] == "HTTP 503: storage unavailable"
    assert item["state"] == "waiting"
    assert item["next_try"] - item["created"] in (480, 481)  # 2**3 minutes after a 4th failure


def test_a_401_stores_nothing_and_is_queued_for_retry(php, tmp_path):
    refused = {"status": 401, "body": json.dumps({"error": "signature: bad signature"})}
    run = run_plugin(php, tmp_path, scenario(UPLOAD, data=METADATA, responses=[refused]))
    assert run.meta == {}
    assert run.table == {}
    assert (
        "offload: uploads of attachment 42: HTTP 401: signature: bad signature (queued for retry)"
        in run.log
    )
    assert [item["state"] for item in run.queued()] == ["waiting"]
    assert set(run.cron) == {"offload_retry"}


def test_a_refused_upload_is_kept_as_failed_and_not_scheduled(php, tmp_path):
    made_it = {local(FILES[0]): cdn(FILES[0])}
    refused = answer(made_it, status=422)
    refused["body"] = json.dumps({**json.loads(refused["body"]), "error": "photo.jpg: too large"})
    run = run_plugin(
        php,
        tmp_path,
        scenario(UPLOAD, data=METADATA, attachments={"42": METADATA}, responses=[refused]),
    )
    assert run.meta["42"]["_offload_urls"] == made_it  # the files that made it are kept
    assert "offload: uploads of attachment 42: HTTP 422: photo.jpg: too large (not retried)" in (
        run.log
    )
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("uploads", 42, "failed")
    assert run.cron == {}


def test_a_file_without_image_metadata_is_named_from_its_attached_file(php, tmp_path):
    script = "apply_filters( 'wp_generate_attachment_metadata', array( 'filesize' => 1234 ), 7 );"
    meta = {"7": {"_wp_attached_file": "2024/05/report.pdf"}}
    run = run_plugin(php, tmp_path, scenario(script, meta=meta, responses=[answer({})]))
    assert json.loads(run.requests[0].body) == {
        "filesize": 1234,
        "file": "2024/05/report.pdf",
        "attachment_id": 7,
    }


def test_deleting_an_attachment_sends_its_metadata_to_deletions_and_forgets_its_urls(php, tmp_path):
    script = "do_action( 'delete_attachment', 42, null );"
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            constants=BIG_BUDGET,
            attachments={"42": METADATA},
            responses=[deleted],
        ),
    )
    [request] = run.requests
    assert request.url.split("?")[0] == f"{ENDPOINT}/_offload/blog/deletions"
    assert request.timeout == 15
    timestamp = request.headers["X-Offload-Timestamp"]
    digest = content_sha256(request.body.encode())
    assert request.headers["X-Offload-Content-SHA256"] == digest
    assert request.target.startswith("/_offload/blog/deletions?request=")
    assert request.headers["X-Offload-Signature"] == sign_request(
        SECRET, timestamp, "POST", request.target, digest
    )
    assert json.loads(request.body) == {**METADATA, "attachment_id": 42}
    assert 'DELETE FROM wp_offload_urls WHERE {"attachment_id":42}' in run.sql
    assert 'DELETE FROM wp_offload_queue WHERE {"hook":"deletions","attachment_id":42}' in run.sql
    assert run.queued() == []


def test_a_deletion_offload_cannot_take_now_is_queued_with_its_files(php, tmp_path):
    script = "do_action( 'delete_attachment', 42, null );"
    run = run_plugin(
        php,
        tmp_path,
        scenario(script, attachments={"42": METADATA}, responses=[{"error": "cURL error 7"}]),
    )
    assert "offload: deletions of attachment 42: cURL error 7 (queued for retry)" in run.log
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("deletions", 42, "waiting")
    assert json.loads(item["body"]) == {**METADATA, "attachment_id": 42}
    assert set(run.cron) == {"offload_retry"}


def test_offload_endpoint_constant_overrides_the_rendered_endpoint(php, tmp_path):
    constants = {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_ENDPOINT": "http://staging:8080/"}
    run = run_plugin(
        php,
        tmp_path,
        scenario(UPLOAD, constants=constants, data=METADATA, responses=[answer()]),
    )
    assert run.requests[0].url.split("?")[0] == "http://staging:8080/_offload/blog/uploads"


def test_without_the_secret_constant_nothing_is_sent_or_rewritten_and_admins_are_told(
    php, tmp_path
):
    script = (
        UPLOAD
        + """
ob_start();
do_action( 'admin_notices' );
$out['notice'] = ob_get_clean();
"""
    )
    run = run_plugin(
        php,
        tmp_path,
        scenario(script, constants={}, data=METADATA, attachments={"42": METADATA}, responses=[]),
    )
    assert run.requests == []
    assert run.queued() == []  # an upload waits for no secret: the batch offloads it later
    assert run.out["returned"] == METADATA
    assert "OFFLOAD_WEBHOOK_SECRET" in run.out["notice"]
    assert "wait to reach offload" not in run.out["notice"]
    assert (
        "OFFLOAD_WEBHOOK_SECRET is not defined in wp-config.php; attachment 42 was not sent"
        in run.log
    )
    for hook in ("wp_get_attachment_url", "wp_calculate_image_srcset", *REWRITTEN):
        assert hook not in run.hooks


def test_without_the_secret_a_deletion_is_queued_until_it_can_be_sent(php, tmp_path):
    """A photo deleted for privacy leaves the bucket once the secret is in wp-config.php."""
    deletion = {**METADATA, "attachment_id": 42}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            "do_action( 'delete_attachment', 42, null );",
            constants={},
            attachments={"42": METADATA},
            responses=[],
        ),
    )
    assert run.requests == []
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("deletions", 42, "waiting")
    assert json.loads(item["body"]) == deletion  # the files, named while WordPress had them
    assert item["error"] == "OFFLOAD_WEBHOOK_SECRET is not defined in wp-config.php"
    assert set(run.cron) == {"offload_retry"}
    assert (
        "offload: deletions of attachment 42: OFFLOAD_WEBHOOK_SECRET is not defined in "
        "wp-config.php (queued for retry)" in run.log
    )

    # WP-Cron's runs before the secret is there keep it waiting: nothing is dropped.
    folder = tmp_path / "cron"
    folder.mkdir()
    rows = queue_rows((1, "deletions", 42, json.dumps(deletion), -60))
    run = run_plugin(
        php,
        folder,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            constants={},
            data={"rows": rows, "left": 1},
            responses=[],
            scheduled={"offload_retry": {"time": 1, "recurrence": "offload_minute"}},
        ),
    )
    assert run.requests == []
    [item] = run.queued()
    assert (item["hook"], item["state"]) == ("deletions", "waiting")
    assert json.loads(item["body"]) == deletion
    assert not any(sql.startswith("DELETE FROM wp_offload_queue") for sql in run.sql)
    assert set(run.cron) == {"offload_retry"}


def uploads(folder: Path, sizes: dict[str, int]) -> dict[str, str]:
    """Files of these sizes in an uploads folder; what wp_get_upload_dir() says of it."""
    for path, size in sizes.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(b"x" * size)
    return {"basedir": str(folder), "baseurl": UPLOADS_URL}


@pytest.mark.parametrize("on_disk", [True, False])
def test_a_file_wordpress_has_that_offload_did_not_find_is_retried(php, tmp_path, on_disk):
    """A 200 leaving a file "pending" that is on disk: offload looks in another folder, or a
    shared mount lags. A pending file that is not on disk (not made yet) is no reason."""
    made = FILES if on_disk else FILES[:2]
    upload_dir = uploads(tmp_path / "uploads", dict.fromkeys(made, 10))
    reply = {
        "site": "blog",
        "items": [
            {"path": FILES[0], "url": cdn(FILES[0]), "status": "uploaded"},
            {"path": FILES[1], "url": cdn(FILES[1]), "status": "unchanged"},
            {"path": FILES[2], "url": None, "status": "pending"},
            {"path": "2024/05/photo-1024x683.jpg", "url": None, "status": "pending"},
        ],
        "urls": {local(FILES[0]): cdn(FILES[0]), local(FILES[1]): cdn(FILES[1])},
    }
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD,
            data=METADATA,
            attachments={"42": METADATA},
            responses=[{"status": 200, "body": json.dumps(reply)}],
            upload_dir=upload_dir,
        ),
    )
    # The files that made it are kept either way.
    assert run.meta["42"]["_offload_urls"] == {path: URLS[path] for path in map(local, FILES[:2])}
    assert run.table == {FILES[0]: [cdn(FILES[0]), 42], FILES[1]: [cdn(FILES[1]), 42]}
    if not on_disk:
        assert run.queued() == []
        assert run.log == ""
        return
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("uploads", 42, "waiting")
    assert item["error"] == (
        "offload did not find 1 file(s) WordPress has, such as 2024/05/photo-300x200.jpg: "
        "is its uploads_dir this uploads folder?"
    )
    assert item["next_try"] - item["created"] in (60, 61)  # with backoff, as an error answer
    assert f"offload: uploads of attachment 42: {item['error']} (queued for retry)" in run.log
    assert set(run.cron) == {"offload_retry"}


def test_an_answer_for_an_attachment_deleted_meanwhile_keeps_no_url_and_deletes_again(
    php, tmp_path
):
    """WordPress deleted it while offload copied (get_post() finds nothing). No meta or row
    of the site-wide table may point at its objects, and since its deletion may have reached
    another worker before these objects had rows, a deletion by its id goes once more."""
    run = run_plugin(php, tmp_path, scenario(UPLOAD, data=METADATA, responses=[answer()]))
    assert len(run.requests) == 1
    assert run.meta == {}
    assert run.table == {}
    assert not any(sql.startswith("REPLACE INTO wp_offload_urls") for sql in run.sql)
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("deletions", 42, "waiting")
    assert json.loads(item["body"]) == {"attachment_id": 42}
    assert item["next_try"] - item["created"] in (60, 61)
    assert run.log == ""


@pytest.mark.parametrize(
    ("constants", "timeout"),
    [(BIG_BUDGET, 33), ({"OFFLOAD_WEBHOOK_SECRET": SECRET}, 20)],
    ids=["30 s and 1 per MiB", "within the budget"],
)
def test_an_uploads_timeout_grows_with_its_files(php, tmp_path, constants, timeout):
    """offload hashes and copies every file before it answers: 30 s, plus 1 s per MiB."""
    mib = 1024 * 1024
    upload_dir = uploads(tmp_path / "uploads", {FILES[0]: 2 * mib, FILES[1]: mib, FILES[2]: 0})
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD,
            constants=constants,
            data=METADATA,
            attachments={"42": METADATA},
            responses=[answer()],
            upload_dir=upload_dir,
        ),
    )
    [request] = run.requests
    assert request.timeout == timeout


@pytest.mark.parametrize("sending", [False, True], ids=["json", "multipart"])
def test_a_cron_run_gives_a_big_upload_all_the_time_it_needs(php, tmp_path, sending):
    """No one waits for WP-Cron: a 100 MiB video gets 30 s plus 1 s per MiB (2 s when its
    bytes go in the request), past the run's own budget of 50 s."""
    constants = {"OFFLOAD_WEBHOOK_SECRET": SECRET}
    if sending:
        constants["OFFLOAD_SEND_FILES"] = "1"
    script = "$GLOBALS['doing_cron'] = true;\n$out['timeout'] = offload_timeout( 100 * 1048576, "
    script += "true );" if sending else "false );"
    run = run_plugin(php, tmp_path, scenario(script, constants=constants))
    assert run.out["timeout"] == (230 if sending else 130)


def test_only_time_spent_waiting_on_offload_counts_against_the_budget(php, tmp_path):
    script = """
usleep( 400000 ); // WordPress's own work, making sizes say: not offload's
apply_filters( 'wp_generate_attachment_metadata', $data, 42 );
apply_filters( 'wp_generate_attachment_metadata', array( 'file' => '2024/05/other.jpg' ), 43 );
do_action( 'delete_attachment', 44 );
"""
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            constants={"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_REQUEST_BUDGET": 3},
            data=METADATA,
            attachments={"42": METADATA, "43": {"file": "2024/05/other.jpg"}, "44": METADATA},
            responses=[{**answer(), "delay": 0.5}, {**answer({}), "delay": 0.5}, deleted],
        ),
    )
    first, second, deletion = (request.timeout for request in run.requests)
    assert first == 3  # the 0.4 s before it are not offload's
    assert 2.3 <= second < 2.5  # 0.5 s waited on offload
    assert 1.8 <= deletion < 2  # 1 s waited: min(15, what is left)


def test_under_wp_cli_each_webhook_waits_as_long_as_it_needs(php, tmp_path):
    """An import or a regeneration of the whole library has no budget to spend."""
    constants = {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_REQUEST_BUDGET": 1, "WP_CLI": True}
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD + "\ndo_action( 'delete_attachment', 43 );",
            constants=constants,
            data=METADATA,
            attachments={"42": METADATA, "43": METADATA},
            responses=[answer(), deleted],
        ),
    )
    assert [request.timeout for request in run.requests] == [30, 15]  # not 1 and 1


def test_a_proxys_502_without_offloads_json_means_offload_is_down(php, tmp_path):
    """nginx in front of a dead offload answers with its own page: the rest of the request is
    queued unsent, and tried again on the next run, as with no connection at all."""
    script = (
        UPLOAD
        + "\napply_filters( 'wp_generate_attachment_metadata', "
        + "array( 'file' => '2024/05/other.jpg' ), 43 );"
    )
    page = "<html><head><title>502 Bad Gateway</title></head></html>"
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            data=METADATA,
            attachments={"42": METADATA, "43": {"file": "2024/05/other.jpg"}},
            responses=[{"status": 502, "body": page}],
        ),
    )
    [request] = run.requests
    assert json.loads(request.body)["attachment_id"] == 42
    queued = run.queued()
    assert [(item["attachment_id"], item["state"]) for item in queued] == [
        (42, "waiting"),
        (43, "waiting"),
    ]
    assert {item["error"] for item in queued} == {f"HTTP 502: {page}"}
    assert all(item["next_try"] - item["created"] in (60, 61) for item in queued)
    assert run.meta == {}


def test_a_404_is_retried_with_backoff_until_offload_knows_the_site(php, tmp_path):
    """The plugin went live before the site was in offload's configuration: not a refusal."""
    script = """
$answer_sql = function ( $sql, $kind ) {  // each attachment was tried twice before
	return false !== strpos( $sql, 'attempts FROM wp_offload_queue' ) ? '2' : null;
};
apply_filters( 'wp_generate_attachment_metadata', $data, 42 );
apply_filters( 'wp_generate_attachment_metadata', array( 'file' => '2024/05/other.jpg' ), 43 );
"""
    unknown = {"status": 404, "body": json.dumps({"error": "no site named blog"})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            data=METADATA,
            attachments={"42": METADATA, "43": {"file": "2024/05/other.jpg"}},
            responses=[unknown, unknown],
        ),
    )
    assert len(run.requests) == 2  # offload answered: no reason to stop sending
    queued = run.queued()
    assert [(item["attachment_id"], item["state"]) for item in queued] == [
        (42, "waiting"),
        (43, "waiting"),
    ]
    for item in queued:
        assert item["error"] == "HTTP 404: no site named blog"
        assert item["next_try"] - item["created"] in (240, 241)  # 2**2 minutes
    assert "offload: uploads of attachment 42: HTTP 404: no site named blog (queued for retry)" in (
        run.log
    )
    assert set(run.cron) == {"offload_retry"}


@pytest.mark.parametrize("then", ["taken", "refused"])
def test_a_deletion_whose_file_list_is_refused_goes_again_by_attachment_id(php, tmp_path, then):
    """By attachment_id alone, offload deletes every object it recorded for the attachment."""
    refused = {"status": 400, "body": json.dumps({"error": "file: not under the uploads folder"})}
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            "do_action( 'delete_attachment', 42 );",
            attachments={"42": METADATA},
            responses=[refused, deleted if then == "taken" else refused],
        ),
    )
    first, second = run.requests
    assert json.loads(first.body) == {**METADATA, "attachment_id": 42}
    assert json.loads(second.body) == {"attachment_id": 42}
    assert second.url.split("?")[0] == f"{ENDPOINT}/_offload/blog/deletions"
    assert second.headers["X-Offload-Content-SHA256"] == content_sha256(second.body.encode())
    if then == "taken":
        assert run.queued() == []
        assert run.log == ""
        return
    [item] = run.queued()  # kept, with the files it named, for an administrator to see
    assert (item["hook"], item["attachment_id"], item["state"]) == ("deletions", 42, "failed")
    assert json.loads(item["body"]) == {**METADATA, "attachment_id": 42}
    assert "(not retried)" in run.log


def test_a_deletion_after_an_unfinished_upload_goes_again_ten_minutes_later(php, tmp_path):
    """The upload waited in the queue (it failed or timed out): offload may still be copying it
    on another worker, and would leave what it copies after the first deletion."""
    script = """
$answer_sql = function ( $sql, $kind ) {  // the attachment's upload waits in the queue
	return 'DELETE FROM wp_offload_queue WHERE {"hook":"uploads","attachment_id":42}' === $sql
		? 1 : null;
};
do_action( 'delete_attachment', 42 );
"""
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php, tmp_path, scenario(script, attachments={"42": METADATA}, responses=[deleted])
    )
    [request] = run.requests  # sent now
    [item] = run.queued()  # and again later
    assert (item["hook"], item["attachment_id"], item["state"]) == ("deletions", 42, "waiting")
    assert item["body"] == request.body
    assert item["error"] == "sent again after an unfinished upload"
    assert item["next_try"] - item["created"] in (600, 601)
    assert set(run.cron) == {"offload_retry"}


def test_the_form_leaves_out_what_is_not_a_file_on_disk_without_a_warning(php, tmp_path):
    """A size not made yet, and a folder where a file should be: neither is opened (any
    warning fails the run), and offload is told of the file that is there."""
    folder = tmp_path / "uploads"
    upload_dir = uploads(folder, {})
    (folder / FILES[0]).parent.mkdir(parents=True)
    (folder / FILES[0]).write_bytes(b"the original's bytes")
    (folder / FILES[2]).mkdir()
    script = """
$form = offload_multipart_form( 42, $data, $data[0] );
rewind( $form['stream'] );
$out['body'] = stream_get_contents( $form['stream'] );
unset( $form['stream'] );
$out['form'] = $form;
$out['none'] = offload_multipart_form( 43, array( '2024/05/gone.jpg', '2024/05' ), null );
"""
    run = run_plugin(php, tmp_path, scenario(script, data=list(FILES), upload_dir=upload_dir))
    assert run.log == ""
    body = run.out["body"]
    assert run.out["form"]["size"] == len(body.encode())
    assert run.out["form"]["sha256"] == content_sha256(body.encode())
    boundary = run.out["form"]["type"].removeprefix("multipart/form-data; boundary=")
    parts = body.split(f"--{boundary}")
    assert parts[0] == ""
    assert parts[-1] == "--\r\n"
    fields = [re.findall(r'name="(\w+)"', part)[0] for part in parts[1:-1]]
    assert fields == ["attachment_id", "original", "path", "file"]
    assert f'name="path"\r\n\r\n{FILES[0]}\r\n' in parts[3]
    assert parts[4].endswith("\r\n\r\nthe original's bytes\r\n")
    assert run.out["none"] is None  # no file at all: nothing to send


def test_without_a_temporary_file_for_the_form_the_upload_is_queued(php, tmp_path):
    upload_dir = uploads(tmp_path / "uploads", dict.fromkeys(FILES, 10))
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD,
            constants={"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_SEND_FILES": True},
            data=METADATA,
            attachments={"42": METADATA},
            responses=[],
            upload_dir=upload_dir,
            ini={"sys_temp_dir": str(tmp_path / "no-such-folder")},  # tmpfile() fails
        ),
    )
    assert run.requests == []
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("uploads", 42, "waiting")
    assert item["error"] == "no temporary file for the form"
    assert "uploads of attachment 42: no temporary file for the form (queued for retry)" in run.log
    assert set(run.cron) == {"offload_retry"}


# -- the retry queue ---------------------------------------------------------------------

QUEUE_ROWS = r"""
$answer_sql = function ( $sql, $kind ) {
	$due = '/^SELECT \* FROM wp_offload_queue WHERE state = \'waiting\' AND '
		. '\( next_try <= (\d+) OR \( next_try <= (\d+) AND last_error <> \'([^\']*)\' \) \)\s+'
		. 'ORDER BY hook = \'deletions\' DESC, next_try, id LIMIT 50$/';
	if ( 0 === strpos( $sql, "SELECT COUNT(*) FROM wp_offload_queue WHERE state = 'waiting'" ) ) {
		// What still waits after the run; a list gives one count per query, in turn.
		$left = $GLOBALS['data']['left'];
		return (string) ( is_array( $left ) ? array_shift( $GLOBALS['data']['left'] ) : $left );
	}
	if ( false !== strpos( $sql, 'SELECT attempts FROM wp_offload_queue' ) ) {
		return isset( $GLOBALS['data']['attempts'] ) ? (string) $GLOBALS['data']['attempts'] : null;
	}
	if ( ! preg_match( $due, $sql, $until ) ) {
		return null;
	}
	// The rows the query asks for, in its order: deletions first, then by next_try, then by id.
	$rows = array_values( array_filter( $GLOBALS['data']['rows'], function ( $row ) use ( $until ) {
		$again = isset( $row['last_error'] ) && $row['last_error'] === stripslashes( $until[3] );
		$due   = $row['next_try'] <= (int) $until[1];
		return $due || ( $row['next_try'] <= (int) $until[2] && ! $again );
	} ) );
	usort( $rows, function ( $a, $b ) {
		return array( 'deletions' !== $a['hook'], $a['next_try'], $a['id'] )
			<=> array( 'deletions' !== $b['hook'], $b['next_try'], $b['id'] );
	} );
	return $rows;
};
"""


def queue_rows(*rows: tuple[int, str, int, str, int]) -> list[dict[str, Any]]:
    """Rows of the queue: (id, hook, attachment id, body, seconds until its next try)."""
    now = int(time.time())
    return [
        {"id": id_, "hook": hook, "attachment_id": attachment, "body": body, "next_try": now + wait}
        for id_, hook, attachment, body, wait in rows
    ]


def test_a_cron_run_sends_what_waits_deletions_first_and_ends_the_event(php, tmp_path):
    deletion = json.dumps({**METADATA, "attachment_id": 43})
    rows = queue_rows((2, "deletions", 43, deletion, -5), (1, "uploads", 42, "", -60))
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            data={"rows": rows, "left": 0},
            attachments={"42": METADATA},
            responses=[deleted, answer()],
            scheduled={"offload_retry": {"time": 0, "recurrence": "offload_minute"}},
        ),
    )
    assert [r.url.split("?")[0].rsplit("/", 1)[1] for r in run.requests] == [
        "deletions",
        "uploads",
    ]
    # The files the deletion named when it was made:
    assert json.loads(run.requests[0].body) == json.loads(deletion)
    assert json.loads(run.requests[1].body) == {**METADATA, "attachment_id": 42}  # as it is now
    assert 'DELETE FROM wp_offload_queue WHERE {"id":2}' in run.sql
    assert 'DELETE FROM wp_offload_queue WHERE {"id":1}' in run.sql
    assert run.meta["42"]["_offload_urls"] == URLS
    assert run.cron == {}  # nothing waits: no more runs


def test_a_cron_run_that_finds_offload_still_away_stops_at_the_first_item(php, tmp_path):
    rows = queue_rows((1, "uploads", 42, "", -60), (2, "uploads", 43, "", -5))
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS
            + "do_action( 'offload_retry' );\n"
            + "$out['left'] = wp_next_scheduled( 'offload_retry' );",
            data={"rows": rows, "left": 2},
            attachments={"42": METADATA, "43": METADATA},
            responses=[{"error": "cURL error 7: Connection refused"}],
            scheduled={"offload_retry": {"time": 1, "recurrence": "offload_minute"}},
        ),
    )
    assert len(run.requests) == 1
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == ("uploads", 42, "waiting")
    assert not any(sql.startswith("DELETE FROM wp_offload_queue") for sql in run.sql)
    assert run.out["left"] == 1  # the event stays


def test_once_offload_takes_an_item_what_waited_for_it_goes_in_the_same_run(php, tmp_path):
    """A deletion waits at most one cron run after offload is back."""
    deletion = json.dumps({**METADATA, "attachment_id": 43})
    rows = queue_rows((1, "uploads", 42, "", -60), (2, "deletions", 43, deletion, 50))
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            data={"rows": rows, "left": 0},
            attachments={"42": METADATA},
            responses=[answer(), deleted],
        ),
    )
    assert [json.loads(r.body)["attachment_id"] for r in run.requests] == [42, 43]
    assert 'DELETE FROM wp_offload_queue WHERE {"id":2}' in run.sql


def test_items_backing_off_wait_for_their_time_when_offload_answers_with_errors(php, tmp_path):
    """A 503 for the first item due sends no item whose backoff has not run out."""
    rows = queue_rows((1, "uploads", 42, "", -60), (2, "uploads", 43, "", 1800))
    busy = {"status": 503, "body": json.dumps({"error": "storage unavailable"})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            data={"rows": rows, "left": 2},
            attachments={"42": METADATA, "43": METADATA},
            responses=[busy, busy],
        ),
    )
    assert [json.loads(r.body)["attachment_id"] for r in run.requests] == [42]


def test_administrators_see_a_notice_while_items_wait(php, tmp_path):
    script = """
$answer_sql = function ( $sql, $kind ) {
	if ( false === strpos( $sql, 'GROUP BY state, hook' ) ) {
		return null;
	}
	return array(
		array( 'state' => 'waiting', 'hook' => 'uploads', 'n' => '2' ),
		array( 'state' => 'waiting', 'hook' => 'deletions', 'n' => '1' ),
		array( 'state' => 'failed', 'hook' => 'uploads', 'n' => '4' ),
	);
};
ob_start();
do_action( 'admin_notices' );
$out['notice'] = ob_get_clean();
"""
    run = run_plugin(php, tmp_path, scenario(script))
    notice = run.out["notice"]
    assert "3 upload(s) and deletion(s) wait to reach offload (1 deletion(s))" in notice
    assert "4 failed for good" in notice
    assert "upload.php?page=offload" in notice


def test_a_cron_run_sends_deletions_first_then_what_has_waited_longest(php, tmp_path):
    deletion = json.dumps({**METADATA, "attachment_id": 43})
    rows = queue_rows(
        (1, "uploads", 41, "", -5),
        (2, "uploads", 42, "", -600),
        (3, "deletions", 43, deletion, -1),
        (4, "uploads", 44, "", -600),
    )
    deleted = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            data={"rows": rows, "left": 0},
            attachments={"41": METADATA, "42": METADATA, "44": METADATA},
            responses=[deleted, answer(), answer(), answer()],
        ),
    )
    # QUEUE_ROWS answers only the query that orders so: deletions, next_try, id.
    assert [json.loads(r.body)["attachment_id"] for r in run.requests] == [43, 42, 44, 41]


def test_a_deletion_sent_again_on_purpose_waits_its_ten_minutes_though_others_go(php, tmp_path):
    """After an unfinished upload a deletion is sent once more ten minutes later; a run that
    gets through and sends everything that waited for offload leaves that one for its time."""
    again = {**METADATA, "attachment_id": 43}
    rows = queue_rows((1, "uploads", 42, "", -60), (2, "deletions", 43, json.dumps(again), 540))
    rows[1]["last_error"] = "sent again after an unfinished upload"
    done = {"status": 200, "body": json.dumps({"site": "blog", "items": [], "urls": {}})}
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            data={"rows": rows, "left": 1},
            attachments={"42": METADATA},
            responses=[done],
            scheduled={"offload_retry": {"time": 1, "recurrence": "offload_minute"}},
        ),
    )
    assert [json.loads(r.body)["attachment_id"] for r in run.requests] == [42]


def test_without_the_secret_the_batch_sends_and_queues_nothing(php, tmp_path):
    """Every attachment would fail for want of a signature: the batch waits for the secret."""
    script = (
        QUEUE_ROWS
        + """
update_option( 'offload_batch', array( 'running' => true, 'total' => 2, 'done' => 0,
	'failed' => 0, 'after' => 0, 'started' => 1.5 ) );
do_action( 'offload_batch' );
$out['batch'] = get_option( 'offload_batch' );
"""
    )
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            constants={},
            data={"rows": [], "left": 0},
            attachments={"42": METADATA, "43": METADATA},
            responses=[],
        ),
    )
    assert run.requests == []
    assert run.queued() == []
    assert run.out["batch"]["running"] is True  # it goes on once the secret is there
    assert "offload_batch" in run.cron


@pytest.mark.parametrize(
    ("hook", "error", "delay"),
    [
        (
            "uploads",
            "cURL error 28: Operation timed out after 20001 milliseconds with 0 bytes received",
            240,
        ),
        (
            "uploads",
            "cURL error 7: Failed to connect to offload.example.com port 443: Connection refused",
            60,
        ),
        ("uploads", "cURL error 28: Connection timed out after 3001 milliseconds", 60),
        (
            "deletions",
            "cURL error 28: Operation timed out after 15001 milliseconds with 0 bytes received",
            60,
        ),
    ],
    ids=["timed out", "refused", "connect timeout", "deletion timed out"],
)
def test_an_upload_that_timed_out_backs_off_but_offload_away_keeps_an_item_next(
    php, tmp_path, hook, error, delay
):
    """An upload's answer that times out may be the item's own (a video on a slow link): it
    must not keep the others waiting run after run. A refused connection, a connect timeout
    or a deletion (a tiny body) timing out is offload's: the item stays first."""
    rows = queue_rows((1, hook, 42, json.dumps({**METADATA, "attachment_id": 42}), -60))
    rows += queue_rows((2, "uploads", 43, "", -5))
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            data={"rows": rows, "left": 2, "attempts": 2},
            attachments={"42": METADATA, "43": METADATA},
            responses=[{"error": error}],
            scheduled={"offload_retry": {"time": 1, "recurrence": "offload_minute"}},
        ),
    )
    [request] = run.requests  # the run stops there either way
    assert json.loads(request.body)["attachment_id"] == 42
    [item] = run.queued()
    assert (item["hook"], item["attachment_id"], item["state"]) == (hook, 42, "waiting")
    assert item["error"] == error
    assert item["next_try"] - item["created"] in (delay, delay + 1)
    assert set(run.cron) == {"offload_retry"}


@pytest.mark.parametrize(("counts", "kept"), [([0, 1], True), ([0, 0], False)])
def test_the_retry_event_comes_back_when_an_item_arrives_as_a_run_ends(php, tmp_path, counts, kept):
    """Another request queued an item after the run counted none, but before it cleared the
    event: that request saw the event there and scheduled none."""
    before = int(time.time())
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            QUEUE_ROWS + "do_action( 'offload_retry' );",
            data={"rows": [], "left": counts},
            scheduled={"offload_retry": {"time": 1, "recurrence": "offload_minute"}},
        ),
    )
    counted = "SELECT COUNT(*) FROM wp_offload_queue WHERE state = 'waiting'"
    assert run.sql.count(counted) == 2  # counted again after clearing the event
    if not kept:
        assert run.cron == {}
        return
    event = run.cron["offload_retry"]
    assert event["recurrence"] == "offload_minute"
    assert before + 60 <= event["time"] <= time.time() + 60  # scheduled anew


@pytest.mark.parametrize(
    ("waiting", "scheduled", "expected"),
    [
        (3, None, {"offload_retry"}),
        (0, None, set()),
        (3, {"offload_retry": {"time": 1, "recurrence": "offload_minute"}}, {"offload_retry"}),
    ],
    ids=["lost while items wait", "nothing waits", "there"],
)
def test_admin_pages_put_back_a_lost_retry_event(php, tmp_path, waiting, scheduled, expected):
    """WP-Cron's list is read and written back whole: two requests at once can lose an event."""
    script = """
$answer_sql = function ( $sql, $kind ) {
	$counted = "SELECT COUNT(*) FROM wp_offload_queue WHERE state = 'waiting'" === $sql;
	return $counted ? (string) $GLOBALS['data'] : null;
};
do_action( 'admin_init' );
"""
    run = run_plugin(php, tmp_path, scenario(script, data=waiting, scheduled=scheduled))
    assert set(run.cron) == expected
    if scheduled:
        assert run.sql == []  # an admin page with the event there asks the database nothing
    elif expected:
        assert run.cron["offload_retry"]["recurrence"] == "offload_minute"


def test_an_upload_whose_original_is_gone_from_disk_is_refused_not_retried_forever(php, tmp_path):
    """offload versions every file by the original's bytes: without it every file is
    pending, and sending it again cannot help."""
    upload_dir = uploads(tmp_path / "uploads", dict.fromkeys(FILES[1:], 10))  # no original
    reply = {
        "site": "blog",
        "items": [{"path": path, "status": "pending"} for path in FILES],
        "urls": {},
    }
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            UPLOAD,
            data=METADATA,
            attachments={"42": METADATA},
            responses=[{"status": 200, "body": json.dumps(reply)}],
            upload_dir=upload_dir,
        ),
    )
    [item] = run.queued()
    assert (item["hook"], item["state"]) == ("uploads", "failed")
    assert item["error"].startswith(f"the original file {FILES[0]} is missing")
    assert "offload_retry" not in run.cron


def test_retry_now_and_the_counts_leave_a_deletion_sent_again_on_purpose_alone(php, tmp_path):
    script = """
offload_queue_counts();
offload_retry_now_action();
"""
    run = run_plugin(php, tmp_path, scenario(script))
    again = "last_error <> 'sent again after an unfinished upload'"
    counts = [sql for sql in run.sql if sql.startswith("SELECT state, hook, COUNT(*)")]
    retried = [sql for sql in run.sql if sql.startswith("UPDATE wp_offload_queue SET")]
    [count] = counts
    [retry] = retried
    assert again in count
    assert again in retry


def test_a_visitors_admin_request_asks_the_database_nothing(php, tmp_path):
    """admin-ajax.php runs admin_init for visitors too: only administrators pay the count."""
    script = "$GLOBALS['capable'] = false;\ndo_action( 'admin_init' );"
    run = run_plugin(php, tmp_path, scenario(script))
    assert run.sql == []
    assert run.cron == {}


def test_a_persistent_object_cache_spares_the_lookup_query(php, tmp_path):
    """With Redis or Memcached, a file's CDN URL is asked of the database once, not per view."""
    text = f'<img src="{local(FILES[2])}"><img src="{local(FILES[0])}">'
    script = f"""
$cache = &$GLOBALS['object_cache']['offload_urls'];
$cache[ sha1( {php_string(FILES[2])} ) ] = {php_string(cdn(FILES[2]))};
$cache[ sha1( {php_string(FILES[0])} ) ] = '';  // known to be no offloaded file
$out['text'] = offload_rewrite( $data );
$out['cache'] = $GLOBALS['object_cache'];
"""
    run = run_plugin(php, tmp_path, scenario(script, data=text))
    assert run.out["text"] == f'<img src="{cdn(FILES[2])}"><img src="{local(FILES[0])}">'
    assert not any("FROM wp_offload_urls" in sql for sql in run.sql)


def test_lookups_and_new_answers_go_to_the_object_cache(php, tmp_path):
    text = f'<img src="{local(FILES[2])}">'
    script = f"""
offload_rewrite( $data );
offload_store_paths( 42, array( {php_string(FILES[0])} => {php_string(cdn(FILES[0]))} ) );
$out['cache'] = $GLOBALS['object_cache']['offload_urls'];
"""
    run = run_plugin(php, tmp_path, scenario(script, data=text, urls={FILES[2]: cdn(FILES[2])}))
    cache = run.out["cache"]
    # The plugin's cache keys are the paths' SHA-1, as its table's (a name, not a secret).
    assert cache[hashlib.sha1(FILES[2].encode()).hexdigest()] == cdn(FILES[2])  # noqa: S324
    assert cache[hashlib.sha1(FILES[0].encode()).hexdigest()] == cdn(FILES[0])  # noqa: S324


# -- the tables and the backfill ---------------------------------------------------------


def test_installing_makes_the_tables_and_schedules_the_backfill(php, tmp_path):
    """Once per request; the backfill of attachments offloaded earlier runs in WP-Cron."""
    script = """
$out['waiting'] = offload_waiting();
offload_queue_counts();
$out['schema'] = get_option( 'offload_schema' );
$out['after']  = get_option( 'offload_backfill_after' );
"""
    before = int(time.time())
    run = run_plugin(php, tmp_path, scenario(script))
    created = [sql.split("(")[0].strip() for sql in run.sql if sql.startswith("CREATE TABLE")]
    assert created == [
        "CREATE TABLE IF NOT EXISTS wp_offload_queue",
        "CREATE TABLE IF NOT EXISTS wp_offload_urls",
    ]
    # Checked, with "_" escaped so that it matches itself only:
    assert r"SHOW TABLES LIKE 'wp\\_offload\\_queue'" in run.sql
    assert r"SHOW TABLES LIKE 'wp\\_offload\\_urls'" in run.sql
    assert (run.out["schema"], run.out["after"]) == (1, 0)
    event = run.scheduled["offload_backfill"]
    assert event["recurrence"] is False  # a single event
    assert before <= event["time"] <= time.time()
    assert not any("wp_postmeta" in sql for sql in run.sql)  # nothing backfilled in this request


def test_the_schema_is_not_marked_done_while_a_table_is_missing(php, tmp_path):
    """A database user without CREATE: the log says so, and the next request tries again."""
    script = """
$wpdb->last_error = "CREATE command denied to user 'wp'@'localhost' for table 'wp_offload_urls'";
$answer_sql = function ( $sql, $kind ) {
	return 0 === strpos( $sql, 'SHOW TABLES LIKE' ) && false !== strpos( $sql, 'urls' ) ? '' : null;
};
offload_waiting();
offload_waiting();
$out['schema'] = get_option( 'offload_schema', 'not set' );
"""
    run = run_plugin(php, tmp_path, scenario(script))
    assert run.out["schema"] == "not set"
    assert (
        "offload: the tables wp_offload_queue and wp_offload_urls cannot be created: "
        "CREATE command denied to user 'wp'@'localhost' for table 'wp_offload_urls'" in run.log
    )
    assert run.log.count("cannot be created") == 1  # once per request
    assert "offload_backfill" not in run.scheduled


@pytest.mark.parametrize("found", [500, 3])
def test_the_backfill_adds_500_attachments_a_run_and_goes_on_where_it_stopped(php, tmp_path, found):
    rows = [
        {"meta_id": 1000 + n, "post_id": n, "meta_value": {local(f"2023/01/{n}.jpg"): cdn(f"{n}")}}
        for n in range(1, found + 1)
    ]
    # Neither a URL of another host nor a value that is no URL goes into the table.
    rows[0]["meta_value"] |= {"https://elsewhere.example.org/x.jpg": cdn("x"), local("y.jpg"): 5}
    script = """
update_option( 'offload_schema', 1 ); // installed before
update_option( 'offload_backfill_after', 1000 ); // where the last run stopped
$answer_sql = function ( $sql, $kind ) {
	$chunk = 'SELECT meta_id, post_id, meta_value FROM wp_postmeta '
		. "WHERE meta_key = '_offload_urls' AND meta_id > 1000 ORDER BY meta_id LIMIT 500";
	return $chunk === $sql ? $GLOBALS['data'] : null;
};
do_action( 'offload_backfill' );
$out['after'] = get_option( 'offload_backfill_after' );
"""
    run = run_plugin(php, tmp_path, scenario(script, data=rows))
    assert run.table == {f"2023/01/{n}.jpg": [cdn(f"{n}"), n] for n in range(1, found + 1)}
    assert run.out["after"] == 1000 + found
    if found == 500:  # more may follow: the next run goes on
        assert run.scheduled["offload_backfill"]["recurrence"] is False
    else:
        assert "offload_backfill" not in run.scheduled


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
        scenario(
            UPLOAD + FILTERS,
            data=data | METADATA,
            attachments={"42": METADATA},
            responses=[answer()],
        ),
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
    # The upload filled the site-wide table the content is looked up in.
    assert run.out["content"] == (
        f'<figure id="attachment_42"><img class="wp-image-42" src="{cdn(FILES[1])}" '
        f'srcset="{cdn(FILES[2])} 300w, {cdn(FILES[1])} 2560w"></figure>\n'
        f'<img class="wp-image-43" src="{local("2024/05/other.jpg")}">\n'
        f'<a href="{cdn(FILES[2])}">text mentions {cdn(FILES[2])}</a>'
    )
    assert run.out["again"] == run.out["content"]


NAMES = ("2024/05/logo@2x.png", "2024/05/фото.jpg", "2024/05/写真-1.jpg", "2024/05/写真 1.jpg")


@pytest.mark.parametrize("name", NAMES)
def test_every_spelling_of_an_offloaded_url_resolves(php, tmp_path, name):
    """offload answers with percent-encoded URLs; WordPress writes raw ones, editors either.

    The CDN URL handed back is spelled as WordPress spells its own (logo@2x.png,
    фото.jpg), except where decoding would change its meaning: a space stays %20.
    """
    encoded = quote(name)
    target = cdn(encoded) if " " in name else cdn(name)
    relative = target.removeprefix("https:")
    host_path = UPLOADS_URL.removeprefix("https:")
    root = urlsplit(UPLOADS_URL).path
    # A space ends a URL in content (srcset separates candidates with spaces):
    # there only the encoded spellings of such a name can be found.
    spellings = [local(encoded), f"{host_path}/{encoded}", f"{root}/{encoded}"]
    if " " not in name:
        http = local(name).replace("https:", "http:")
        spellings += [local(name), http, f"{host_path}/{name}", f"{root}/{name}"]
    content = " ".join(f'<img src="{spelling}">' for spelling in spellings)
    expected = " ".join(
        f'<img src="{relative if spelling.startswith("//") else target}">' for spelling in spellings
    )
    reply = {
        "site": "blog",
        "items": [{"path": name, "url": cdn(encoded), "status": "uploaded"}],
        "urls": {local(encoded): cdn(encoded)},
    }
    data = {
        "metadata": {"file": name},
        "raw": local(name),
        "encoded": local(encoded),
        "http": local(name).replace("https:", "http:"),
        "content": content,
    }
    script = """
apply_filters( 'wp_generate_attachment_metadata', $data['metadata'], 42 );
$out['raw']     = apply_filters( 'wp_get_attachment_url', $data['raw'], 42 );
$out['encoded'] = apply_filters( 'wp_get_attachment_url', $data['encoded'], 42 );
$out['http']    = apply_filters( 'wp_get_attachment_url', $data['http'], 42 );
$out['content'] = apply_filters( 'the_content', $data['content'] );
"""
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            data=data,
            attachments={"42": data["metadata"]},
            responses=[{"status": 200, "body": json.dumps(reply)}],
        ),
    )
    assert (run.out["raw"], run.out["encoded"], run.out["http"]) == (target, target, target)
    assert run.out["content"] == expected


@pytest.mark.parametrize(
    ("answered", "handed_to_wordpress"),
    [
        ("/2024/05/logo%402x.png", "/2024/05/logo@2x.png"),
        ("/2024/05/%D1%84%D0%BE%D1%82%D0%BE.jpg", "/2024/05/фото.jpg"),
        ("/2024/05/%E5%86%99%E7%9C%9F-1.jpg", "/2024/05/写真-1.jpg"),
        ("/2024/05/3f9a2c1e/photo.jpg", "/2024/05/3f9a2c1e/photo.jpg"),
        # Decoding these would change what the URL means: they stay as offload wrote them.
        ("/2024/05/a%20b.jpg", "/2024/05/a%20b.jpg"),
        ("/2024/05/a%2Fb.jpg", "/2024/05/a%2Fb.jpg"),
        ("/2024/05/100%25.jpg", "/2024/05/100%25.jpg"),
        ("/2024/05/a%3Fb.jpg", "/2024/05/a%3Fb.jpg"),
        ("/2024/05/a%23b.jpg", "/2024/05/a%23b.jpg"),
        ("/2024/05/it%27s.jpg", "/2024/05/it%27s.jpg"),
        ("/2024/05/a%22b.jpg", "/2024/05/a%22b.jpg"),
        ("/2024/05/a%3Cb%3E.jpg", "/2024/05/a%3Cb%3E.jpg"),
        ("/2024/05/latin1-%FF.jpg", "/2024/05/latin1-%FF.jpg"),  # decoded, it is not UTF-8
    ],
)
def test_cdn_urls_are_spelled_as_wordpress_spells_its_own(
    php, tmp_path, answered, handed_to_wordpress
):
    base = f"{CDN_URL}/{PREFIX}"
    script = """
$out['absolute'] = offload_wp_url( $data[0] );
$out['relative'] = offload_wp_url( $data[1] );
$out['query']    = offload_wp_url( $data[0] . '?v=1' );
"""
    data = [base + answered, base.removeprefix("https:") + answered]
    run = run_plugin(php, tmp_path, scenario(script, data=data))
    assert run.out["absolute"] == base + handed_to_wordpress
    assert run.out["relative"] == base.removeprefix("https:") + handed_to_wordpress
    assert run.out["query"] == base + answered + "?v=1"  # a URL with a query is left as it is


VERSIONED = {
    local(path): f"{CDN_URL}/{PREFIX}/2024/05/3f9a2c1e/{path.rsplit('/', 1)[1]}" for path in FILES
}


def versioned(path: str) -> str:
    return VERSIONED[local(path)]


def test_a_versioned_cdn_src_keeps_its_srcset(php, tmp_path):
    """WordPress finds "{year}/{month}/{file}" in the src; a version folder sits in between."""
    script = """
$size = array( 300, 200 );
$image = $data['meta'];
foreach ( $data['srcs'] as $name => $src ) {
	$out['meta'][ $name ] = apply_filters(
		'wp_calculate_image_srcset_meta', $image, $size, $src, 42
	);
}
$src          = $data['srcs']['versioned'];
$out['other'] = apply_filters( 'wp_calculate_image_srcset_meta', $image, $size, $src, 43 );
// WordPress then builds the candidates under the folder the metadata names.
$out['srcset'] = apply_filters(
	'wp_calculate_image_srcset', $data['sources'], $size, $src, $out['meta']['versioned'], 42
);
"""
    in_version = f"{UPLOADS_URL}/2024/05/3f9a2c1e"
    data = {
        "meta": {"file": "2024/05/photo-scaled.jpg", "sizes": METADATA["sizes"]},
        "srcs": {
            "versioned": versioned(FILES[1]),
            "versioned_http": versioned(FILES[1]).replace("https:", "http:") + "?ver=1",
            "plain": cdn(FILES[1]),
            "local": local(FILES[1]),
            "elsewhere": "https://elsewhere.example.org/2024/05/3f9a2c1e/photo-scaled.jpg",
        },
        "sources": {
            "300": {"url": f"{in_version}/photo-300x200.jpg", "descriptor": "w", "value": 300},
            "2560": {"url": f"{in_version}/photo-scaled.jpg", "descriptor": "w", "value": 2560},
        },
    }
    run = run_plugin(
        php, tmp_path, scenario(script, data=data, meta={"42": {"_offload_urls": VERSIONED}})
    )
    meta = {name: value["file"] for name, value in run.out["meta"].items()}
    assert meta == {
        "versioned": "2024/05/3f9a2c1e/photo-scaled.jpg",
        "versioned_http": "2024/05/3f9a2c1e/photo-scaled.jpg",
        "plain": "2024/05/photo-scaled.jpg",
        "local": "2024/05/photo-scaled.jpg",
        "elsewhere": "2024/05/photo-scaled.jpg",  # not this attachment's URL
    }
    assert run.out["other"]["file"] == "2024/05/photo-scaled.jpg"  # another attachment
    assert run.out["srcset"] == {
        "300": {"url": versioned(FILES[2]), "descriptor": "w", "value": 300},
        "2560": {"url": versioned(FILES[1]), "descriptor": "w", "value": 2560},
    }


def test_the_editors_recognise_a_cdn_url_as_the_attachments_file(php, tmp_path):
    """The block editor's crop and rotate send the src they show: the CDN URL."""
    script = """
$hook = 'wp_image_file_matches_image_meta';
foreach ( $data as $name => $location ) {
	$out[ $name ] = apply_filters( $hook, false, $location, array(), 42 );
}
$out['other_attachment'] = apply_filters( $hook, false, $data['cdn'], array(), 43 );
$out['already']          = apply_filters( $hook, true, 'https://x.example/y.jpg', array(), 42 );
"""
    data = {
        "cdn": versioned(FILES[2]),
        "protocol_relative": versioned(FILES[2]).removeprefix("https:"),
        "with_query": versioned(FILES[2]) + "?resize=300",
        "elsewhere": "https://elsewhere.example.org/photo-300x200.jpg",
    }
    run = run_plugin(
        php, tmp_path, scenario(script, data=data, meta={"42": {"_offload_urls": VERSIONED}})
    )
    assert run.out == {
        "cdn": True,
        "protocol_relative": True,
        "with_query": True,
        "elsewhere": False,
        "other_attachment": False,
        "already": True,
    }


def test_a_versioned_srcset_leaves_out_sizes_offload_has_no_url_for(php, tmp_path):
    """A size still in the queue: under the version folder its local URL names nothing."""
    script = """
$size = array( 300, 200 );
foreach ( $data['srcs'] as $name => $src ) {
	$image   = apply_filters( 'wp_calculate_image_srcset_meta', $data['meta'], $size, $src, 42 );
	$folder  = dirname( $image['file'] ); // WordPress makes the candidates in the meta's folder
	$sources = array();
	foreach ( $data['sizes'] as $width => $file ) {
		$url               = $upload_dir['baseurl'] . "/$folder/$file";
		$sources[ $width ] = array( 'url' => $url, 'descriptor' => 'w', 'value' => (int) $width );
	}
	$out[ $name ] = apply_filters( 'wp_calculate_image_srcset', $sources, $size, $src, $image, 42 );
}
"""
    large = "photo-1024x683.jpg"
    meta = {"file": FILES[1], "sizes": WITH_SIZES["sizes"]}
    data = {
        "meta": meta,
        "srcs": {"versioned": versioned(FILES[1]), "local": local(FILES[1])},
        "sizes": {"300": "photo-300x200.jpg", "1024": large, "2560": "photo-scaled.jpg"},
    }
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            script,
            data=data,
            meta={"42": {"_offload_urls": VERSIONED}},  # no URL for the large size yet
            attachments={"42": meta},
        ),
    )
    small = {"url": versioned(FILES[2]), "descriptor": "w", "value": 300}
    scaled = {"url": versioned(FILES[1]), "descriptor": "w", "value": 2560}
    assert run.out["versioned"] == {"300": small, "2560": scaled}
    # With WordPress's own folder the large size's local file is there: it stays.
    assert run.out["local"] == {
        "300": small,
        "1024": {"url": local(f"2024/05/{large}"), "descriptor": "w", "value": 1024},
        "2560": scaled,
    }


# -- content ----------------------------------------------------------------------------

OFFLOADED = {
    path: cdn(path)
    for path in (*FILES, "2024/05/report.pdf", "2024/05/clip.mp4", "2024/05/cover.jpg")
}
HOST = "blog.example.com"
FOLDER = "/wp-content/uploads"


def rewrite_scenario(text: str, hook: str = "the_content") -> Scenario:
    script = f"$out['text'] = apply_filters( '{hook}', $data );\n"
    script += f"$out['again'] = apply_filters( '{hook}', $out['text'] );"
    return scenario(script, data=text, urls=OFFLOADED)


def test_content_rewrites_every_spelling_of_an_offloaded_uploads_url(php, tmp_path):
    """Looked up site-wide by path, whatever markup or attachment id is around it."""
    json_url = f"https:\\/\\/{HOST}\\/wp-content\\/uploads\\/2024\\/05\\/report.pdf"
    json_cdn = cdn("2024/05/report.pdf").replace("/", "\\/")
    text, expected = zip(
        *[
            (
                f'<!-- wp:file {{"id":50,"href":"{json_url}"}} -->',
                f'<!-- wp:file {{"id":50,"href":"{json_cdn}"}} -->',
            ),
            (
                f'<a href="https://{HOST}{FOLDER}/2024/05/report.pdf">report</a>',
                f'<a href="{cdn("2024/05/report.pdf")}">report</a>',
            ),
            (
                f'<video poster="http://{HOST}{FOLDER}/2024/05/cover.jpg" '
                f'src="//{HOST}{FOLDER}/2024/05/clip.mp4"></video>',
                f'<video poster="{cdn("2024/05/cover.jpg")}" '
                f'src="{cdn("2024/05/clip.mp4").removeprefix("https:")}"></video>',
            ),
            (
                f'<div style="background-image:url({FOLDER}/2024/05/cover.jpg)"></div>',
                f'<div style="background-image:url({cdn("2024/05/cover.jpg")})"></div>',
            ),
            (
                f"<div style=\"background:url('https://{HOST}{FOLDER}/2024/05/cover.jpg')\">",
                f"<div style=\"background:url('{cdn('2024/05/cover.jpg')}')\">",
            ),
            (
                f'<img data-id="42" src="{FOLDER}/{FILES[1]}" '
                f'srcset="https://{HOST}{FOLDER}/{FILES[2]} 300w, {local(FILES[1])} 2560w">',
                f'<img data-id="42" src="{cdn(FILES[1])}" '
                f'srcset="{cdn(FILES[2])} 300w, {cdn(FILES[1])} 2560w">',
            ),
            (
                f'<a href="{local(FILES[0])}?ver=2#top">the original ({local(FILES[0])})</a>',
                f'<a href="{cdn(FILES[0])}?ver=2#top">the original ({cdn(FILES[0])})</a>',
            ),
            (
                f'{{"url":"\\/\\/{HOST}\\/wp-content\\/uploads\\/2024\\/05\\/clip.mp4",'
                f'"src":"\\/wp-content\\/uploads\\/2024\\/05\\/clip.mp4"}}',
                '{"url":"'
                + cdn("2024/05/clip.mp4").removeprefix("https:").replace("/", "\\/")
                + '","src":"'
                + cdn("2024/05/clip.mp4").replace("/", "\\/")
                + '"}',
            ),
            (
                f'<img src="HTTPS://{HOST.upper()}{FOLDER}/{FILES[2]}">',
                f'<img src="{cdn(FILES[2])}">',
            ),
        ],
        strict=True,
    )
    run = run_plugin(php, tmp_path, rewrite_scenario("\n".join(text)))
    assert run.out["text"] == "\n".join(expected)
    assert run.out["again"] == run.out["text"]
    lookups = [sql for sql in run.sql if "FROM wp_offload_urls WHERE path_hash IN" in sql]
    assert len(lookups) == 1  # one query for the whole text, and none again for what it knows


@pytest.mark.parametrize("hook", REWRITTEN)
def test_every_text_wordpress_shows_is_rewritten(php, tmp_path, hook):
    text = f"body {{ background: url({local('2024/05/cover.jpg')}) }}"
    run = run_plugin(php, tmp_path, rewrite_scenario(text, hook))
    assert run.out["text"] == f"body {{ background: url({cdn('2024/05/cover.jpg')}) }}"


def test_urls_of_other_hosts_and_unknown_files_are_left_byte_for_byte(php, tmp_path):
    path = f"{FOLDER}/{FILES[0]}"
    text = "\n".join(
        [
            f'<img src="https://other.example.org{path}">',
            f'<img src="//other.example.org{path}">',
            f'<img src="https://cdn.{HOST}{path}">',
            f'<img src="https://{HOST}.evil.example{path}">',
            f'<img src="https://{HOST}:8443{path}">',
            f'"https:\\/\\/other.example.org\\/wp-content\\/uploads\\/{FILES[0]}"',
            f'<img src="{local("2024/05/not-offloaded.jpg")}">',
            f'<a href="{UPLOADS_URL}/">the folder</a> {UPLOADS_URL}-old/{FILES[0]}',
            f'<a href="https://{HOST}/wp-content/uploadsx/{FILES[0]}">',
        ]
    )
    run = run_plugin(php, tmp_path, rewrite_scenario(text))
    assert run.out["text"] == text


def test_a_path_in_the_query_of_another_hosts_url_is_left_alone(php, tmp_path):
    text = f'<a href="https://other.example.org/share?u={FOLDER}/{FILES[0]}">share</a>'
    run = run_plugin(php, tmp_path, rewrite_scenario(text))
    assert run.out["text"] == text


def test_a_plain_text_url_ending_a_sentence_is_rewritten(php, tmp_path):
    text = f"<p>The original is at {local(FILES[0])}.</p>"
    run = run_plugin(php, tmp_path, rewrite_scenario(text))
    assert run.out["text"] == f"<p>The original is at {cdn(FILES[0])}.</p>"


def test_content_is_looked_up_in_the_site_wide_table_not_in_attachment_meta(php, tmp_path):
    text = f'<img class="wp-image-42" src="{local(FILES[2])}">'
    script = "$out['content'] = apply_filters( 'the_content', $data );"
    run = run_plugin(
        php, tmp_path, scenario(script, data=text, meta={"42": {"_offload_urls": URLS}})
    )
    assert run.out["content"] == text  # the table knows nothing of it


def test_a_path_offload_answers_for_is_found_though_the_request_missed_it_before(php, tmp_path):
    text = f'<img src="{local(FILES[2])}">'
    script = f"""
$out['before'] = offload_rewrite( $data );
offload_store_paths( 42, array( {php_string(FILES[2])} => {php_string(cdn(FILES[2]))} ) );
$out['after'] = offload_rewrite( $data );
"""
    run = run_plugin(php, tmp_path, scenario(script, data=text))
    assert run.out["before"] == text
    assert run.out["after"] == f'<img src="{cdn(FILES[2])}">'


def test_text_without_uploads_urls_asks_the_database_nothing(php, tmp_path):
    text = '<p>No media here, only <a href="https://example.org/page">a link</a>.</p>'
    script = "$out['content'] = apply_filters( 'the_content', $data );"
    run = run_plugin(php, tmp_path, scenario(script, data=text, urls=OFFLOADED))
    assert run.out["content"] == text
    assert run.sql == []


# -- existing media ----------------------------------------------------------------------

BATCH = """
update_option( 'offload_batch', $data['batch'] );
$answer_sql = function ( $sql, $kind ) {
	if ( 'var' === $kind && 0 === strpos( $sql, 'SELECT COUNT' ) ) {
		return '7'; // the library's counts, for a batch started anew
	}
	if ( 'col' !== $kind ) {
		return null;
	}
	// The next ten attachments offload has not taken; when the run asked, and what was scheduled.
	preg_match( '/ AND p\\.ID > (\\d+) ORDER BY p\\.ID LIMIT 10$/', $sql, $after );
	$GLOBALS['out']['asked'][] = array( (int) $after[1], wp_next_scheduled( 'offload_batch' ) );
	if ( ! empty( $GLOBALS['data']['restart'] ) ) {
		offload_start_batch(); // an administrator starts the batch again while this run works
		$GLOBALS['out']['restarted'] = get_option( 'offload_batch' );
	}
	return array_shift( $GLOBALS['data']['chunks'] );
};
do_action( 'offload_batch' );
$out['batch'] = get_option( 'offload_batch' );
"""
STARTED = {"running": True, "total": 2, "done": 0, "failed": 0, "after": 0, "started": 1234.5}


def test_a_batch_run_schedules_the_next_first_and_queues_what_it_skips_as_failed(php, tmp_path):
    before = int(time.time())
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            BATCH,
            data={"batch": STARTED, "chunks": [["5", "6"], []]},
            attachments={"5": {"filesize": 10}, "6": METADATA},  # 5 names no file
            responses=[answer()],
        ),
    )
    (first, scheduled), (second, _) = run.out["asked"]
    # Before any work, so that a run PHP stops (a time or memory limit) has a successor.
    assert before + 60 <= scheduled <= time.time() + 60
    assert (first, second) == (0, 6)
    [request] = run.requests
    assert json.loads(request.body)["attachment_id"] == 6
    [item] = run.queued()  # it leaves the batch's remaining count; an administrator sees it
    assert (item["hook"], item["attachment_id"], item["state"]) == ("uploads", 5, "failed")
    assert item["error"] == "the attachment names no file"
    batch = run.out["batch"]
    assert batch == {
        **STARTED,
        "running": False,
        "done": 1,
        "failed": 1,
        "after": 6,
        "finished": batch["finished"],
    }
    assert before <= batch["finished"] <= time.time()
    assert "offload_batch" not in run.scheduled  # finished: no more runs


def test_a_batch_started_again_from_the_page_stops_the_old_run(php, tmp_path):
    before = time.time()
    run = run_plugin(
        php,
        tmp_path,
        scenario(
            BATCH,
            data={"batch": STARTED, "chunks": [["6", "7"], ["8"]], "restart": True},
            attachments={"6": METADATA, "7": METADATA, "8": METADATA},
            responses=[answer(), answer()],
        ),
    )
    assert len(run.out["asked"]) == 1  # the old run finished its ten, then noticed
    assert [json.loads(r.body)["attachment_id"] for r in run.requests] == [6, 7]
    restarted = run.out["restarted"]
    assert restarted["started"] >= before
    assert run.out["batch"] == restarted  # the old run's progress did not overwrite it
    assert restarted == {**restarted, "running": True, "total": 7, "done": 0, "after": 0}
    assert run.scheduled["offload_batch"]["time"] <= time.time()  # the new batch's first run


# -- end to end --------------------------------------------------------------------------


def real_site(tmp_path: Path, uploads: Path, *, offload_reads_uploads: bool) -> Site:
    """WordPress's uploads folder holding FILES, and the site of a real offload server for it:
    reading that folder, or (another host) without any uploads_dir."""
    for path in FILES:
        (uploads / path).parent.mkdir(parents=True, exist_ok=True)
        (uploads / path).write_bytes(f"bytes of {path}".encode())
    (tmp_path / "bucket").mkdir()
    return Site(
        name="blog",
        storage=(tmp_path / "bucket").as_uri(),
        prefix=PREFIX,
        uploads_dir=uploads if offload_reads_uploads else None,
        uploads_url=UPLOADS_URL,
        cdn_url=CDN_URL,
        webhook_secret=Secret(SECRET),
    )


async def test_plugin_offloads_through_a_real_offload_server(php, tmp_path, aiohttp_server):
    uploads = tmp_path / "uploads"
    blog = real_site(tmp_path, uploads, offload_reads_uploads=True)
    app = create_app(Settings(manifest=tmp_path / "manifest.sqlite3", sites={"blog": blog}))
    server = await aiohttp_server(app)
    plugin = render_wordpress_plugin(blog, f"http://127.0.0.1:{server.port}/")
    constants = {"OFFLOAD_WEBHOOK_SECRET": SECRET}
    upload_dir = {"basedir": str(uploads), "baseurl": UPLOADS_URL}

    upload = Scenario(
        plugin,
        UPLOAD
        + "$out['url'] = apply_filters( 'wp_get_attachment_url', $data['local'], 42 );"
        + "$out['content'] = apply_filters( 'the_content', $data['content'] );",
        constants,
        data={**METADATA, "local": local(FILES[2]), "content": f'<img src="{local(FILES[2])}">'},
        attachments={"42": METADATA},
        responses=None,
        upload_dir=upload_dir,
    )
    run = await run_plugin_async(php, tmp_path, upload)
    assert run.log == ""
    assert run.out["url"] == cdn(FILES[2])
    assert run.out["content"] == f'<img src="{cdn(FILES[2])}">'
    assert run.meta["42"]["_offload_urls"] == URLS
    assert run.table == {path: [cdn(path), 42] for path in FILES}
    assert run.queued() == []
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
        upload_dir=upload_dir,
    )
    run = await run_plugin_async(php, tmp_path, delete)
    assert run.log == ""
    assert [request.url.split("?")[0].rsplit("/", 1)[1] for request in run.requests] == [
        "deletions"
    ]
    assert run.queued() == []
    for path in FILES:
        assert await storage.head(f"{PREFIX}/{path}") is None
    assert app[MANIFEST].rows("blog", attachment_id="42") == []


async def test_plugin_sends_the_files_bytes_to_an_offload_on_another_host(
    php, tmp_path, aiohttp_server
):
    """OFFLOAD_SEND_FILES: offload has no uploads_dir; the plugin streams a signed form."""
    uploads = tmp_path / "wordpress" / "uploads"
    blog = real_site(tmp_path, uploads, offload_reads_uploads=False)
    app = create_app(Settings(manifest=tmp_path / "manifest.sqlite3", sites={"blog": blog}))
    server = await aiohttp_server(app)
    upload = Scenario(
        render_wordpress_plugin(blog, f"http://127.0.0.1:{server.port}/"),
        UPLOAD,
        {"OFFLOAD_WEBHOOK_SECRET": SECRET, "OFFLOAD_SEND_FILES": True},
        data=METADATA,
        attachments={"42": METADATA},
        responses=None,
        upload_dir={"basedir": str(uploads), "baseurl": UPLOADS_URL},
    )
    run = await run_plugin_async(php, tmp_path, upload)
    assert run.log == ""
    assert run.requests == []  # streamed by cURL, not through wp_remote_post
    assert run.queued() == []
    assert run.meta["42"]["_offload_urls"] == URLS
    bucket = tmp_path / "bucket"
    for path in FILES:
        assert (bucket / PREFIX / path).read_bytes() == f"bytes of {path}".encode()

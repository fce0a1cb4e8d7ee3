"""A real WordPress on loopback: Debian's ``wordpress`` package on a private MariaDB.

What /work/shared/TESTING.md describes, as fixtures: MariaDB runs in a folder of
its own (datadir, socket, a free loopback port), WordPress is copied from
``/usr/share/wordpress`` into a temporary folder, given a plain
``wp-config.php``, installed by a PHP script calling ``wp_install()`` and served
by ``php -S``. There is no wp-cli package, so tests drive WordPress through its
own functions: :meth:`WordPress.php` runs a snippet after ``require
'wp-load.php'`` and returns what it puts in ``$out``, as JSON.

The offload plugin goes in as a must-use plugin, exactly as ``offload render
wordpress-plugin`` renders it, with ``OFFLOAD_WEBHOOK_SECRET`` and
``OFFLOAD_ENDPOINT`` defined in wp-config.php as its header asks.

The packages are required: CI installs them (``.ci/run``), so a missing binary
fails the test with the command that installs it. Developers without them may
set ``SKIP_REAL_WORDPRESS=1`` to skip instead. PHP and offload get no
``OFFLOAD_*`` variable of the test run: offload refuses unknown ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from offload.media.wordpress import php_string
from tests.helpers import free_port, wait_for_port

WORDPRESS_SOURCE = Path("/usr/share/wordpress")
PACKAGES = "wordpress php-cli php-mysql php-gd php-curl mariadb-server"
#: Set to 1 to skip instead of fail without the packages. Not an OFFLOAD_* name: offload
#: refuses unknown OFFLOAD_* variables, so one left in a shell would break every command.
SKIP_VARIABLE = "SKIP_REAL_WORDPRESS"
#: Folders the MariaDB binaries may be in, beyond PATH (Debian puts mariadbd in /usr/sbin).
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password-for-tests"  # a throwaway local install
DB_NAME = "wordpress"
DB_USER = "wp"
DB_PASSWORD = "wp-password-for-tests"  # a throwaway local database


class PHPError(AssertionError):
    """A PHP snippet failed: its exit code, output and log are in the message."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def require_binaries() -> dict[str, str]:
    """The binaries the real WordPress needs; a clear failure (or a skip, when asked) if not."""
    names = ("php", "mariadbd", "mariadb-install-db", "mariadb")
    found = {name: _which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if not (WORDPRESS_SOURCE / "wp-load.php").is_file():
        missing.append(str(WORDPRESS_SOURCE))
    if missing:
        message = (
            f"the real-WordPress tests need {', '.join(missing)}: "
            f"apt-get install {PACKAGES} (.ci/run does)"
        )
        if os.environ.get(SKIP_VARIABLE) == "1":
            pytest.skip(f"{message}; skipped because {SKIP_VARIABLE}=1")
        pytest.fail(message)
    return {name: path for name, path in found.items() if path is not None}


def _stop(process: subprocess.Popen[Any], log: IO[bytes] | None = None) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if log is not None:
        log.close()


# -- MariaDB -------------------------------------------------------------------------------


@dataclass
class MariaDB:
    """One mariadbd with its own datadir, socket and loopback port."""

    root: Path
    port: int
    binaries: dict[str, str]
    process: subprocess.Popen[Any] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "sock"

    @property
    def log(self) -> Path:
        return self.root / "mariadbd.log"

    def start(self) -> None:
        datadir = self.root / "data"
        user = _user()
        subprocess.run(
            [
                self.binaries["mariadb-install-db"],
                "--no-defaults",
                f"--datadir={datadir}",
                f"--user={user}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binaries["mariadbd"],
                    "--no-defaults",
                    f"--datadir={datadir}",
                    f"--socket={self.socket}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-log-bin",
                    f"--user={user}",
                    f"--pid-file={self.root / 'mariadbd.pid'}",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-flush-log-at-trx-commit=0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, timeout=60)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"mariadbd did not start:\n{self.log.read_text()}") from None
        self.sql(
            f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4;"
            f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
            f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';"
        )

    def sql(self, statements: str) -> str:
        """Run SQL as the database's superuser: this OS user, by socket authentication."""
        result = subprocess.run(
            [self.binaries["mariadb"], "--no-defaults", "-S", str(self.socket), f"-u{_user()}"],
            input=statements,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise AssertionError(f"mariadb: {result.stderr}")
        return result.stdout

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@contextlib.contextmanager
def running_mariadb(root: Path) -> Iterator[MariaDB]:
    database = MariaDB(root, free_port(), require_binaries())
    database.start()
    try:
        yield database
    finally:
        database.stop()


# -- WordPress -----------------------------------------------------------------------------

WP_CONFIG = """<?php
// Written by tests/wordpress_server.py for a throwaway install on loopback.
define( 'DB_NAME', {db_name} );
define( 'DB_USER', {db_user} );
define( 'DB_PASSWORD', {db_password} );
define( 'DB_HOST', {db_host} );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
define( 'WP_HOME', {url} );
define( 'WP_SITEURL', {url} );
define( 'WP_ENVIRONMENT_TYPE', 'local' );
define( 'WP_DEBUG', true );
define( 'WP_DEBUG_LOG', {debug_log} );
define( 'WP_DEBUG_DISPLAY', false );
define( 'DISABLE_WP_CRON', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
define( 'WP_ACCESSIBLE_HOSTS', '127.0.0.1' );
{extra}
$table_prefix = 'wp_';
foreach ( array( 'AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT',
	'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT' ) as $offload_test_key ) {{
	define( $offload_test_key, 'test-' . $offload_test_key );
}}
if ( ! defined( 'ABSPATH' ) ) {{
	define( 'ABSPATH', __DIR__ . '/' );
}}
require_once ABSPATH . 'wp-settings.php';
"""

#: Runs a snippet inside WordPress: argv[1] the snippet file, argv[2] where $out goes as JSON.
RUNNER = r"""<?php
set_error_handler( function ( $level, $message, $file, $line ) {
	// WordPress 6.1's bundled libraries raise PHP 8.2 deprecations of their own.
	if ( $level & ( E_DEPRECATED | E_USER_DEPRECATED ) ) {
		return true;
	}
	throw new ErrorException( $message, 0, $level, $file, $line );
} );
$_SERVER['HTTP_HOST']   = parse_url( getenv( 'WP_TEST_URL' ), PHP_URL_HOST ) . ':'
	. parse_url( getenv( 'WP_TEST_URL' ), PHP_URL_PORT );
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['SERVER_NAME'] = '127.0.0.1';
if ( getenv( 'WP_TEST_INSTALLING' ) ) {
	define( 'WP_INSTALLING', true );
}
require __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/admin.php';
$out = array();
require $argv[1];
file_put_contents( $argv[2], wp_json_encode( $out ) );
"""

INSTALL = """
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
$result = wp_install( 'offload tests', {user}, 'admin@example.com', true, '', {password} );
update_option( 'permalink_structure', '/%postname%/' );
update_option( 'uploads_use_yearmonth_folders', 1 );
$out['user_id'] = $result['user_id'];
"""


@dataclass
class WordPress:
    """A copy of Debian's WordPress in ``root``, installed on ``database``, served on ``port``."""

    root: Path
    port: int
    database: MariaDB
    php_binary: str
    constants: dict[str, str] = field(default_factory=dict)
    server: subprocess.Popen[Any] | None = None
    server_log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "wp-content" / "uploads"

    @property
    def uploads_url(self) -> str:
        return f"{self.url}/wp-content/uploads"

    @property
    def debug_log(self) -> Path:
        return self.root.parent / "wp-debug.log"

    def copy(self) -> None:
        shutil.copytree(
            WORDPRESS_SOURCE,
            self.root,
            symlinks=True,
            # Translations (most of the package's size) are never loaded by an en_US site.
            ignore=lambda folder, names: ["languages"] if folder.endswith("wp-content") else [],
        )
        # Debian links bundled libraries (getID3 for video and audio metadata) to /usr/share/php
        # by relative paths, which lead nowhere from the copy: point them at the real files.
        for link in [path for path in self.root.rglob("*") if path.is_symlink()]:
            target = os.readlink(link)
            if not os.path.isabs(target) and not link.exists():
                source = WORDPRESS_SOURCE / link.relative_to(self.root)
                link.unlink()
                link.symlink_to(os.path.normpath(source.parent / target))
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "wp-content" / "mu-plugins").mkdir(exist_ok=True)
        (self.root / "offload-test-runner.php").write_text(RUNNER)
        self.write_config()

    def write_config(self) -> None:
        """wp-config.php, with ``self.constants`` defined (OFFLOAD_WEBHOOK_SECRET, ...)."""
        extra = "\n".join(
            f"define( {php_string(name)}, {php_string(value)} );"
            for name, value in self.constants.items()
        )
        (self.root / "wp-config.php").write_text(
            WP_CONFIG.format(
                db_name=php_string(DB_NAME),
                db_user=php_string(DB_USER),
                db_password=php_string(DB_PASSWORD),
                db_host=php_string(f"127.0.0.1:{self.database.port}"),
                url=php_string(self.url),
                debug_log=php_string(str(self.debug_log)),
                extra=extra,
            )
        )

    def install(self) -> None:
        code = INSTALL.format(user=php_string(ADMIN_USER), password=php_string(ADMIN_PASSWORD))
        self.php(code, installing=True)

    def install_plugin(self, plugin: str, constants: dict[str, str]) -> None:
        """The rendered plugin as a must-use plugin, its constants in wp-config.php."""
        (self.root / "wp-content" / "mu-plugins" / "offload.php").write_text(plugin)
        self.constants = dict(constants)
        self.write_config()

    def serve(self) -> None:
        self.server_log = (self.root.parent / "php-server.log").open("wb")
        self.server = subprocess.Popen(
            # No opcache: tests rewrite wp-config.php, and a cached copy may outlive the change.
            [
                self.php_binary,
                "-d",
                "opcache.enable=0",
                "-S",
                f"127.0.0.1:{self.port}",
                "-t",
                str(self.root),
            ],
            cwd=self.root,
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
            # Several workers, as php-fpm has: WordPress's cron and site health request the
            # site itself, which one worker busy with the calling request would never answer.
            env={**_php_environment(self.url), "PHP_CLI_SERVER_WORKERS": "4"},
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.server is not None:
            _stop(self.server, self.server_log)

    def php(self, code: str, *, installing: bool = False, timeout: float = 60) -> Any:
        """Run ``code`` inside WordPress (after ``require 'wp-load.php'``); return its ``$out``.

        The snippet fills the array ``$out``; any PHP warning or error (other than
        the bundled libraries' deprecations) fails it with PHPError.
        """
        with tempfile.TemporaryDirectory(dir=self.root.parent) as folder:
            snippet = Path(folder) / "snippet.php"
            output = Path(folder) / "out.json"
            snippet.write_text("<?php\n" + textwrap.dedent(code))
            env = _php_environment(self.url)
            if installing:
                env["WP_TEST_INSTALLING"] = "1"
            result = subprocess.run(
                [self.php_binary, "offload-test-runner.php", str(snippet), str(output)],
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if result.returncode != 0 or not output.exists():
                raise PHPError(
                    f"PHP snippet failed (exit {result.returncode}):\n{code}\n"
                    f"stdout: {result.stdout}\nstderr: {result.stderr}"
                )
            return json.loads(output.read_text())

    def plugin_log(self) -> list[str]:
        """Lines of WordPress's debug log that name the plugin (the rest is WordPress's own)."""
        if not self.debug_log.exists():
            return []
        return [line for line in self.debug_log.read_text().splitlines() if "offload" in line]


def _php_environment(url: str) -> dict[str, str]:
    """The environment for PHP: no OFFLOAD_* variables, and the site's URL for the runner."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env["WP_TEST_URL"] = url
    return env


@contextlib.contextmanager
def running_wordpress(root: Path, database: MariaDB) -> Iterator[WordPress]:
    """WordPress copied into ``root``, installed and served; stopped on exit."""
    binaries = require_binaries()
    site = WordPress(root / "wordpress", free_port(), database, binaries["php"])
    site.copy()
    site.install()
    site.serve()
    try:
        yield site
    finally:
        site.stop()

"""A real nginx on loopback ports, running the shipped ``nginx/offload.conf``.

The shipped file is an http-level include (what Debian reads from
``/etc/nginx/conf.d/``), so the test does what Debian's ``/etc/nginx/nginx.conf``
does: a small top-level ``nginx.conf`` (pid, error log, temp folders, all under
one folder) that includes it. Only these exact strings of the shipped file are
replaced, each exactly as many times as ``relocate``/``on_loopback`` expect, so an edit that would
quietly change what the tests run fails them instead (``ConfigDrift``):

===========================================  ==========================================
shipped                                       on loopback
===========================================  ==========================================
``listen 443 ssl http2;``                     ``listen 127.0.0.1:<https_port> ssl http2;``
``listen 80;``                                ``listen 127.0.0.1:<http_port>;``
``listen [::]:443 ssl http2;``, ``[::]:80``   removed (not every machine has IPv6)
``listen 127.0.0.1:8081;`` (purge server)     ``listen 127.0.0.1:<purge_port>;``
``server 127.0.0.1:8080``                     ``server 127.0.0.1:<origin_port>``
``"CHANGE-ME-origin-secret"``                 the test's secret
``/var/cache/nginx/offload``                  ``<root>/cache``
``access_log /var/log/nginx/``                ``access_log <root>/logs/``
``/etc/letsencrypt/live/origin.example.com/`` ``<root>/tls/`` (a fresh self-signed pair)
===========================================  ==========================================

Everything else (cache key, lock, stale rules, headers, locations, the purge
server's allow list, TLS settings, timeouts) runs exactly as shipped. ``nginx
-t`` binds the listening sockets, so even the syntax check needs the ports
replaced when not root. The purge server needs the cache purge module, which
Debian's ``/etc/nginx/nginx.conf`` loads from ``modules-enabled/``: the test's
``nginx.conf`` loads it with ``load_module`` (``.ci/run`` installs
``libnginx-mod-http-cache-purge``; without it the tests fail, saying so).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONF = REPO / "nginx" / "offload.conf"
#: The shipped server_name; the certificate made for the tests is valid for it.
SERVER_NAME = "origin.example.com"
SHIPPED_SECRET = "CHANGE-ME-origin-secret"
#: Folders nginx may look in, beyond PATH (Debian installs it in /usr/sbin).
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
#: Where packages put nginx's dynamic modules (Debian and Ubuntu first, then RHEL's).
MODULE_FOLDERS = ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/usr/share/nginx/modules")
PURGE_MODULE = "ngx_http_cache_purge_module.so"


class ConfigDrift(AssertionError):
    """The shipped config no longer holds a string the tests replace."""


def nginx_binary() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which("nginx", path=path)


def purge_module() -> Path:
    """The cache purge module's shared object, which the shipped purge server needs."""
    for folder in MODULE_FOLDERS:
        if (path := Path(folder) / PURGE_MODULE).is_file():
            return path
    raise RuntimeError(
        f"{PURGE_MODULE} is not in {', '.join(MODULE_FOLDERS)}:"
        " apt-get install libnginx-mod-http-cache-purge (.ci/run does)"
    )


def replace_exactly(text: str, old: str, new: str, count: int) -> str:
    found = text.count(old)
    if found != count:
        raise ConfigDrift(
            f"{SHIPPED_CONF.name}: expected {count} of {old!r}, found {found};"
            f" update the replacements in {Path(__file__).name}"
        )
    return text.replace(old, new)


def relocate(text: str, root: Path) -> str:
    """Move every file the config names (cache, logs, certificates) under ``root``."""
    text = replace_exactly(text, "/var/cache/nginx/offload", f"{root}/cache", 2)
    text = replace_exactly(text, "access_log /var/log/nginx/", f"access_log {root}/logs/", 3)
    return replace_exactly(text, f"/etc/letsencrypt/live/{SERVER_NAME}/", f"{root}/tls/", 2)


def on_loopback(
    text: str, *, https_port: int, http_port: int, purge_port: int, origin_port: int, secret: str
) -> str:
    """Listen on loopback ports, proxy to ``origin_port``, and send ``secret``."""
    text = replace_exactly(
        text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1
    )
    text = replace_exactly(text, "listen 80;", f"listen 127.0.0.1:{http_port};", 1)
    text = replace_exactly(text, "listen [::]:443 ssl http2;", "", 1)
    text = replace_exactly(text, "listen [::]:80;", "", 1)
    text = replace_exactly(text, "listen 127.0.0.1:8081;", f"listen 127.0.0.1:{purge_port};", 1)
    text = replace_exactly(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{origin_port};", 1)
    return replace_exactly(text, f'"{SHIPPED_SECRET}"', json.dumps(secret), 1)


def make_certificate(folder: Path) -> Path:
    """A self-signed pair for SERVER_NAME and 127.0.0.1, as certbot names them; returns the
    certificate, which a client can trust as its CA."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make the test certificate")
    folder.mkdir(parents=True, exist_ok=True)
    cert = folder / "fullchain.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-nodes", "-days", "2",
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-subj", f"/CN={SERVER_NAME}",
         "-addext", f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1",
         "-keyout", str(folder / "privkey.pem"), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert


def main_conf(root: Path, include: Path) -> str:
    """The top-level nginx.conf around the shipped include, everything under ``root``."""
    temp = root / "temp"
    # As root, nginx would run its workers as nobody, who cannot enter pytest's folders.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}"
        f"load_module {purge_module()};\n"
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {root}/nginx.pid;\n"
        f"error_log {root}/logs/error.log info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    client_body_temp_path {temp}/client_body;\n"
        f"    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n"
        f"    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"    access_log {root}/logs/access.log;\n"
        f"    include {include};\n"
        "}\n"
    )


@dataclass
class NginxServer:
    """nginx with the shipped config, in front of an origin on ``origin_port``."""

    binary: str
    root: Path
    origin_port: int
    secret: str
    https_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    purge_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None
    _stderr: IO[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "fullchain.pem"

    @property
    def purge_url(self) -> str:
        """What a site's ``nginx_purge_url`` says for this server."""
        return f"http://127.0.0.1:{self.purge_port}/_offload/purge"

    @property
    def access_log(self) -> Path:
        return self.root / "logs" / "offload.access.log"

    def prepare(self) -> Path:
        """Write the certificate, the rendered include and nginx.conf; return nginx.conf."""
        for folder in ("logs", "temp", "cache"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        make_certificate(self.root / "tls")
        text = relocate(SHIPPED_CONF.read_text(), self.root)
        text = on_loopback(
            text,
            https_port=self.https_port,
            http_port=self.http_port,
            purge_port=self.purge_port,
            origin_port=self.origin_port,
            secret=self.secret,
        )
        include = self.root / "offload.conf"
        include.write_text(text)
        self.conf.write_text(main_conf(self.root, include))
        return self.conf

    def command(self, *extra: str) -> list[str]:
        error_log = str(self.root / "logs" / "error.log")  # also before the config is read
        return [self.binary, "-p", str(self.root), "-c", str(self.conf), "-e", error_log, *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the prepared config."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self, timeout: float = 20.0) -> None:
        """Start nginx and return once both ports accept connections."""
        self._stderr = (self.root / "logs" / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for the kill below
        )
        deadline = time.monotonic() + timeout
        for port in (self.https_port, self.http_port, self.purge_port):
            while True:
                if self._process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"nginx exited early:\n{self.error_text()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"nginx did not listen on {port} in {timeout} s:\n{self.error_text()}"
                        ) from None
                    time.sleep(0.05)

    def stop(self) -> None:
        """Terminate nginx (fast shutdown); kill its process group if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the master and its workers
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def error_text(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            with contextlib.suppress(OSError):
                parts.append((self.root / "logs" / name).read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def log_entries(self) -> list[dict[str, Any]]:
        """The shipped JSON access log, one dict per request (subrequests included)."""
        try:
            lines = self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

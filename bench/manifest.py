"""The manifest's webhook throughput: SQLite on one host, PostgreSQL on one host and on two.

Signed upload webhooks of a small attachment (``{"files": [...]}`` of three
2 KB files, an original and two sizes, never seen before, so each webhook hashes
and writes three objects and records three rows in one transaction) through
real ``offload serve`` processes on loopback, one site on a local folder,
``purge = "none"``:

- ``sqlite, 1 host``: one ``offload serve`` with a SQLite manifest;
- ``postgresql, 1 host``: the same with ``manifest = "postgresql://..."``
  (``tests/postgres_server.py``: a real PostgreSQL on loopback, fsync off);
- ``postgresql, 2 hosts``: two ``offload serve`` processes on two ports sharing
  that database, the folder bucket and the uploads folder; the client's
  connections alternate between them.

The load generator is this script: ``--connections`` aiohttp loops, one
webhook after another each, for ``--count`` webhooks or ``--seconds``,
whichever comes first, after ``--warm-up`` webhooks that are not counted;
each case ``--repeat`` times (fresh processes, database and folders), the
order of the cases rotating, and the median taken by rate. Prints webhooks per
second, latency, the CPU the offload processes spent per
webhook, and the ratios. Everything shares the machine's cores: the client,
offload and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the servers the tests already know how to run

from bench.quiet import CpuWatch, describe, wait_quiet  # noqa: E402
from offload.http.signing import signed_request_headers  # noqa: E402
from tests.storage_servers import free_loopback_port  # noqa: E402

HOOK_SECRET = "bench-webhook-secret-0123456789abcdef"  # noqa: S105 - a test key
SITE = "bench"
FILE_BYTES = 2048
SIZES = ("", "-150x150", "-300x200")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    case: str
    webhooks: int
    seconds: float
    latencies: list[float]
    errors: dict[str, int]
    cpu: float  # seconds the offload processes spent during the timed part

    @property
    def rate(self) -> float:
        return self.webhooks / self.seconds


def write_config(home: Path, manifest: str) -> Path:
    config = home / "offload.toml"
    config.write_text(
        f'manifest = "{manifest}"\nlog_level = "warning"\n\n'
        f'[sites.{SITE}]\nstorage = "{(home / "bucket").as_uri()}"\nhostnames = ["origin"]\n'
        f'uploads_dir = "{home / "uploads"}"\n'
        'uploads_url = "https://example.com/wp-content/uploads"\n'
        f'cdn_url = "https://cdn.example.com"\nwebhook_secret = "{HOOK_SECRET}"\n'
        'prefix = "wp-content/uploads"\n'
    )
    (home / "bucket").mkdir(exist_ok=True)
    return config


def write_attachments(uploads: Path, folder: str, count: int) -> list[list[str]]:
    """``count`` attachments of three small files each, under uploads/folder."""
    (uploads / folder).mkdir(parents=True)
    attachments = []
    for i in range(count):
        files = []
        for size in SIZES:
            name = f"{folder}/a{i:06d}{size}.jpg"
            (uploads / name).write_bytes(os.urandom(FILE_BYTES))
            files.append(name)
        attachments.append(files)
    return attachments


@contextlib.contextmanager
def hosts(home: Path, config: Path, ports: list[int]) -> Iterator[list[subprocess.Popen[bytes]]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    processes = []
    try:
        for port in ports:
            with (home / f"offload-{port}.log").open("ab") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "offload", "serve", "--config", str(config),
                         "--port", str(port)],
                        cwd=home, env=environ, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(processes: list[subprocess.Popen[bytes]]) -> float:
    """User and system CPU time of these processes so far, from /proc."""
    total = 0
    for process in processes:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICK


async def wait_listening(session: aiohttp.ClientSession, ports: list[int], home: Path) -> None:
    for port in ports:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{port}/_offload/health") as response:
                    await response.read()
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"offload serve did not listen on {port}: see {home}")
            await asyncio.sleep(0.05)


async def upload(
    session: aiohttp.ClientSession, port: int, files: list[str], n: int
) -> tuple[float, str | None]:
    """One signed upload webhook: (seconds, None) or (seconds, what went wrong)."""
    target = f"/_offload/{SITE}/uploads?n={n}"
    body = json.dumps({"files": files}).encode()
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(HOOK_SECRET, "POST", target, body),
    }
    started = time.perf_counter()
    try:
        async with session.post(
            f"http://127.0.0.1:{port}{target}", data=body, headers=headers
        ) as response:
            answer = await response.read()
            if response.status != 200:
                return time.perf_counter() - started, f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return time.perf_counter() - started, type(exc).__name__
    items = json.loads(answer)["items"]
    if [item["status"] for item in items] != ["uploaded"] * len(files):
        return time.perf_counter() - started, "not uploaded"
    return time.perf_counter() - started, None


async def load(
    case: str,
    home: Path,
    manifest: str,
    host_count: int,
    args: argparse.Namespace,
) -> Result:
    folder = home / case.replace(" ", "").replace(",", "-")
    folder.mkdir(parents=True)
    config = write_config(folder, manifest)
    uploads = folder / "uploads"
    warm = write_attachments(uploads, "warm", args.warm_up)
    attachments = write_attachments(uploads, "timed", args.count)
    ports = [free_loopback_port() for _ in range(host_count)]
    connector = aiohttp.TCPConnector(limit=args.connections * 2)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        with hosts(folder, config, ports) as processes:
            await wait_listening(session, ports, folder)
            for i, files in enumerate(warm):
                _took, error = await upload(session, ports[i % host_count], files, i)
                if error:
                    raise SystemExit(f"{case}: warm-up webhook failed: {error}")
            todo = iter(enumerate(attachments, start=len(warm)))
            latencies: list[float] = []
            errors: dict[str, int] = {}
            cpu_before = cpu_seconds(processes)
            started = time.perf_counter()
            deadline = started + args.seconds

            async def loop(port: int) -> None:
                for n, files in todo:
                    took, error = await upload(session, port, files, n)
                    latencies.append(took)
                    if error:
                        errors[error] = errors.get(error, 0) + 1
                    if time.perf_counter() > deadline:
                        return

            await asyncio.gather(*(loop(ports[i % host_count]) for i in range(args.connections)))
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(processes) - cpu_before
    shutil.rmtree(folder, ignore_errors=True)
    return Result(case, len(latencies), seconds, latencies, errors, cpu)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@contextlib.contextmanager
def postgres() -> Iterator[Any]:
    from tests.postgres_server import start_postgres

    try:
        server = start_postgres()
    except RuntimeError as exc:  # not installed, or it would not start: say so, exit 2
        print(f"PostgreSQL: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        yield server
    finally:
        server.stop()


CASES = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))


def case_name(backend: str, host_count: int) -> str:
    return f"{backend}, {host_count} host" + ("s" if host_count > 1 else "")


async def run_all(home: Path, args: argparse.Namespace) -> dict[str, list[Result]]:
    """Every case ``--repeat`` times, the order rotating between repetitions."""
    results: dict[str, list[Result]] = {case_name(*case): [] for case in CASES}
    with postgres() as server:
        for repetition in range(args.repeat):
            shift = repetition % len(CASES)
            for backend, host_count in CASES[shift:] + CASES[:shift]:
                case = case_name(backend, host_count)
                if backend == "sqlite":
                    manifest = str(home / f"manifest-{repetition}.sqlite3")
                else:
                    manifest = server.fresh_database()
                result = await load(case, home / f"r{repetition}", manifest, host_count, args)
                results[case].append(result)
                print(line(result), flush=True)
    return results


def median_result(results: list[Result]) -> Result:
    """The repetition with the median rate."""
    return sorted(results, key=lambda r: r.rate)[len(results) // 2]


def line(result: Result) -> str:
    lat = result.latencies
    errors = ", ".join(f"{k} x{v}" for k, v in result.errors.items()) or "none"
    return (
        f"  {result.case:<20} {result.rate:8,.0f} webhooks/s  ({result.webhooks:,} in"
        f" {result.seconds:5.1f} s)  p50 {percentile(lat, 0.5) * 1e3:6.1f}"
        f"  p99 {percentile(lat, 0.99) * 1e3:6.1f}  mean {statistics.mean(lat) * 1e3:6.1f} ms"
        f"  offload CPU {result.cpu / result.webhooks * 1e3:5.2f} ms/webhook  errors: {errors}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000, help="timed webhooks per case (4000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="at most, per run (20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case, median (3)")
    parser.add_argument("--connections", type=int, default=16, help="client loops (16)")
    parser.add_argument("--warm-up", type=int, default=50, help="untimed webhooks first (50)")
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    wait_quiet(args.max_load, args.wait_quiet)
    versions = (
        "import aiohttp, psycopg;"
        " print('aiohttp', aiohttp.__version__, 'psycopg', psycopg.__version__)"
    )
    print(describe([[sys.executable, "-c", versions]]))
    print(
        f"\nupload webhooks of 3 x {FILE_BYTES // 1024} KB files, {args.connections} connections,"
        f" {args.count:,} webhooks or {args.seconds:g} s per run, {args.repeat} runs per case"
    )
    watch = CpuWatch("offload serve, PostgreSQL and the client")
    home = Path(tempfile.mkdtemp(prefix="offload-bench-manifest-"))
    try:
        results = asyncio.run(run_all(home, args))
        print(f"\nmedian of {args.repeat} (by rate):")
        medians = [median_result(runs) for runs in results.values()]
        for result in medians:
            print(line(result))
        sqlite, pg1, pg2 = medians
        print(
            f"\nratios: postgresql 1 host / sqlite {pg1.rate / sqlite.rate:.2f}x;"
            f" postgresql 2 hosts / 1 host {pg2.rate / pg1.rate:.2f}x;"
            f" postgresql 2 hosts / sqlite {pg2.rate / sqlite.rate:.2f}x"
        )
        print("\n" + watch.summary())
        failed = sum(sum(r.errors.values()) for runs in results.values() for r in runs)
        return 1 if failed else 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

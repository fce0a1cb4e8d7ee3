"""CDN purge: from deletion webhook to purge request, and how fast the outbox drains.

Two measurements, each through a real ``offload serve`` on loopback with one
site on a local folder, ``purge = "cloudflare"`` and ``purge_api_url`` at the
tests' fake Cloudflare (``tests/fake_cdns.py``), run here in this process and
stamped with ``time.perf_counter()`` as each request arrives:

- **latency**: ``--deletions`` files (1,000) are offloaded, then each gets its own
  signed deletion webhook; the time from sending the webhook to the fake
  receiving that file's URL, p50/p99/max, one webhook at a time and then
  ``--concurrency`` at once (the drain then batches several deletions into one
  request). The fake answers at once.
- **drain rate**: ``--entries`` URL purges (10,000) are written to the outbox
  before ``offload serve`` starts (as after an outage of the CDN's API), the fake
  answers each request after ``--api-delay`` (50 ms), and the rate is entries
  per second from the first request the fake receives to the last, on SQLite and
  on PostgreSQL (``tests/postgres_server.py``: fsync off). The same drain code is
  then run in this process (``PurgeDrain`` with the Cloudflare provider) with the
  provider's pacing widened, to show what pacing costs and what the manifest's
  own claim/complete round trips cost.
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
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the fakes and servers the tests already know how to run

from bench.manifest import postgres  # noqa: E402
from bench.quiet import CpuWatch, describe, wait_quiet  # noqa: E402
from offload.http.signing import signed_request_headers  # noqa: E402
from tests.fake_cdns import FakeCloudflare  # noqa: E402
from tests.storage_servers import free_loopback_port  # noqa: E402

HOOK_SECRET = "bench-webhook-secret-0123456789abcdef"  # noqa: S105 - a test key
TOKEN = "bench-cloudflare-token-0123456789"  # noqa: S105 - a test key
ZONE = "0123456789abcdef0123456789abcdef"
SITE = "bench"
CDN = "https://cdn.example.com"
PREFIX = "wp-content/uploads"
#: The deletion webhook's wait for its purges (the setting's default, written out).
PURGE_WAIT = 5.0


class StampedCloudflare(FakeCloudflare):
    """The fake Cloudflare, noting when each URL arrived and answering after ``delay``."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(TOKEN, ZONE)
        self.delay = delay
        self.arrived: dict[str, float] = {}
        self.requests: list[tuple[float, int]] = []  # (arrival, URLs in it)
        self.everything = asyncio.Event()
        self.expected = 0

    def record(self, request: web.Request, body: Any = None) -> None:
        now = time.perf_counter()
        super().record(request, body)
        urls = (body or {}).get("files", [])
        self.requests.append((now, len(urls)))
        for url in urls:
            self.arrived.setdefault(url, now)
        if self.expected and len(self.arrived) >= self.expected:
            self.everything.set()

    async def purge(self, request: web.Request) -> web.Response:
        answer = await super().purge(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        return answer


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> Any:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def write_config(home: Path, manifest: str, api_port: int) -> Path:
    config = home / "offload.toml"
    config.write_text(
        f'manifest = "{manifest}"\nlog_level = "warning"\npurge_wait = {PURGE_WAIT}\n\n'
        f'[sites.{SITE}]\nstorage = "{(home / "bucket").as_uri()}"\nhostnames = ["origin"]\n'
        f'uploads_dir = "{home / "uploads"}"\n'
        'uploads_url = "https://example.com/wp-content/uploads"\n'
        f'cdn_url = "{CDN}"\nwebhook_secret = "{HOOK_SECRET}"\nprefix = "{PREFIX}"\n'
        f'purge = "cloudflare"\ncloudflare_zone_id = "{ZONE}"\n'
        f'cloudflare_api_token = "{TOKEN}"\n'
        f'purge_api_url = "http://127.0.0.1:{api_port}/client/v4"\n'
    )
    (home / "bucket").mkdir(exist_ok=True)
    (home / "uploads").mkdir(exist_ok=True)
    return config


@contextlib.contextmanager
def offload_serve(home: Path, config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    log = (home / f"offload-{port}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "offload", "serve", "--config", str(config), "--port", str(port)],
        cwd=home, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_listening(session: aiohttp.ClientSession, port: int, home: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(f"http://127.0.0.1:{port}/_offload/health") as response:
                await response.read()
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"offload serve did not listen on {port}: see its log in {home}")


async def webhook(
    session: aiohttp.ClientSession, port: int, hook: str, files: list[str], n: int
) -> dict[str, Any]:
    target = f"/_offload/{SITE}/{hook}?n={n}"
    body = json.dumps({"files": files}).encode()
    headers = {
        "Content-Type": "application/json",
        **signed_request_headers(HOOK_SECRET, "POST", target, body),
    }
    async with session.post(f"http://127.0.0.1:{port}{target}", data=body, headers=headers) as r:
        answer = await r.read()
        if r.status != 200:
            raise SystemExit(f"{hook}: HTTP {r.status}: {answer[:300]!r}")
        result: dict[str, Any] = json.loads(answer)
        return result


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1e3:7.1f}  p99 {percentile(values, 0.99) * 1e3:7.1f}"
        f"  max {max(values) * 1e3:7.1f}  mean {statistics.mean(values) * 1e3:7.1f} ms"
    )


# -- latency: deletion webhook -> purge request ------------------------------------------


async def delete_all(
    session: aiohttp.ClientSession, port: int, files: list[str], concurrency: int
) -> tuple[dict[str, float], list[float]]:
    """One deletion webhook per file, ``concurrency`` in flight: when each URL's was sent,
    and each webhook's answer time."""
    sent: dict[str, float] = {}
    answered: list[float] = []
    todo = iter(files)

    async def loop() -> None:
        for file in todo:
            url = f"{CDN}/{PREFIX}/{file}"
            sent[url] = time.perf_counter()
            answer = await webhook(session, port, "deletions", [file], len(sent))
            answered.append(time.perf_counter() - sent[url])
            if answer["items"][0]["status"] != "deleted":
                raise SystemExit(f"not deleted: {answer}")

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return sent, answered


async def latency(home: Path, count: int, concurrencies: list[int]) -> None:
    fake = StampedCloudflare()
    api_port, port = free_loopback_port(), free_loopback_port()
    config = write_config(home, str(home / "manifest.sqlite3"), api_port)
    uploads = home / "uploads"
    print(f"\nlatency: deletion webhook sent -> its URL received by the fake API ({count} each)")
    async with serving(fake.app(), api_port), aiohttp.ClientSession() as session:
        with offload_serve(home, config, port):
            await wait_listening(session, port, home)
            for round_, concurrency in enumerate(concurrencies):
                folder = uploads / f"r{round_}"
                folder.mkdir()
                files = []
                for i in range(count):
                    (folder / f"f{i:05d}.jpg").write_bytes(os.urandom(512))
                    files.append(f"r{round_}/f{i:05d}.jpg")
                for start in range(0, count, 100):  # new keys: offloaded, nothing purged
                    await webhook(session, port, "uploads", files[start : start + 100], start)
                before = len(fake.requests)
                sent, answered = await delete_all(session, port, files, concurrency)
                missing = [url for url in sent if url not in fake.arrived]
                if missing:
                    raise SystemExit(f"{len(missing)} URL(s) never reached the fake: {missing[:3]}")
                delays = [fake.arrived[url] - at for url, at in sent.items()]
                requests = fake.requests[before:]
                per_request = statistics.mean(n for _, n in requests)
                print(f"  {concurrency:>2} at once: to the API     {ms(delays)}")
                print(f"  {concurrency:>2} at once: webhook answer {ms(answered)}")
                late = sum(1 for took in answered if took >= PURGE_WAIT)
                print(
                    f"  {concurrency:>2} at once: {len(requests)} API requests,"
                    f" {per_request:.2f} URLs per request; {late} webhook(s) answered after"
                    f" the whole purge_wait ({PURGE_WAIT:g} s) though their URL had been sent"
                )


# -- drain rate ---------------------------------------------------------------------------


def queue_entries(manifest_location: str, count: int) -> None:
    from offload.manifest import PurgeItem, open_manifest

    manifest = open_manifest(manifest_location)
    try:
        items = [PurgeItem(SITE, "url", f"{CDN}/{PREFIX}/q/{i:06d}.jpg") for i in range(count)]
        for start in range(0, count, 1000):
            manifest.enqueue_purges(items[start : start + 1000])
        waiting = manifest.purge_queue(site=SITE).waiting
    finally:
        manifest.close()
    if waiting != count:
        raise SystemExit(f"queued {waiting} entries, expected {count}")


def rate_line(label: str, fake: StampedCloudflare, count: int) -> str:
    """Entries a second from the first request's arrival to the last one's answer."""
    took = fake.requests[-1][0] + fake.delay - fake.requests[0][0]
    sizes = [n for _, n in fake.requests]
    return (
        f"  {label:<34} {count / took:8,.0f} entries/s   ({count:,} in"
        f" {took:6.2f} s; {len(sizes)} requests of {statistics.mean(sizes):.0f} URLs)"
    )


async def drain_served(home: Path, manifest_location: str, count: int, delay: float) -> str:
    fake = StampedCloudflare(delay)
    fake.expected = count
    api_port, port = free_loopback_port(), free_loopback_port()
    config = write_config(home, manifest_location, api_port)
    queue_entries(manifest_location, count)
    async with serving(fake.app(), api_port), aiohttp.ClientSession() as session:
        with offload_serve(home, config, port):
            await wait_listening(session, port, home)
            try:
                await asyncio.wait_for(fake.everything.wait(), timeout=max(120, count / 50))
            except TimeoutError:
                raise SystemExit(f"only {len(fake.arrived)} of {count} URLs arrived") from None
    return rate_line("offload serve (paced 800 URLs/s)", fake, count)


async def drain_in_process(home: Path, manifest_location: str, count: int, delay: float) -> str:
    """The same PurgeDrain and provider in this process, the provider's pacing widened."""
    from concurrent.futures import ThreadPoolExecutor

    from offload.config.loading import load_settings
    from offload.manifest import open_manifest
    from offload.purge.drain import PurgeDrain
    from offload.purge.providers.cloudflare import CloudflareProvider
    from offload.purge.providers.pacing import TokenBucket

    fake = StampedCloudflare(delay)
    fake.expected = count
    api_port = free_loopback_port()
    config = write_config(home, manifest_location, api_port)
    settings = load_settings(config, {})
    queue_entries(manifest_location, count)
    manifest = open_manifest(manifest_location)
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(4)

    async def run(fn: Any, *args: Any) -> Any:
        return await loop.run_in_executor(executor, fn, *args)

    try:
        async with serving(fake.app(), api_port), aiohttp.ClientSession() as session:
            provider = CloudflareProvider(settings.sites[SITE], session=session, run=run)
            provider.urls = TokenBucket(1e9, 1e9, what="URLs")
            drain = PurgeDrain(manifest, {SITE: provider}, run, give_up_after=3600)
            drain.start()
            try:
                await asyncio.wait_for(fake.everything.wait(), timeout=max(120, count / 50))
            finally:
                await drain.stop()
    finally:
        manifest.close()
        executor.shutdown()
    return rate_line("same drain in-process, unpaced", fake, count)


async def drain_rates(home: Path, count: int, delay: float, backends: list[str]) -> None:
    print(f"\ndrain: {count:,} URL purges queued, the fake API answering in {delay * 1e3:.0f} ms")
    for backend in backends:
        for variant, function in (("served", drain_served), ("in-process", drain_in_process)):
            folder = home / f"drain-{backend}-{variant}"
            folder.mkdir()
            with database(backend, folder) as location:
                line = await function(folder, location, count, delay)
            print(f"  {backend:<10}" + line[1:], flush=True)


@contextlib.contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield str(folder / "manifest.sqlite3")
        return
    with postgres() as server:
        yield server.fresh_database()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deletions", type=int, default=1000, help="deletion webhooks (1000)")
    parser.add_argument(
        "--concurrency", default="1,16", help="webhooks in flight, per latency run (1,16)"
    )
    parser.add_argument("--entries", type=int, default=10_000, help="queued purges (10000)")
    parser.add_argument("--api-delay", type=float, default=0.05, help="fake API answer (0.05 s)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="manifest backends")
    parser.add_argument("--skip", choices=("latency", "drain"), help="leave one part out")
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    wait_quiet(args.max_load, args.wait_quiet)
    print(
        describe([[sys.executable, "-c", "import aiohttp; print('aiohttp', aiohttp.__version__)"]])
    )
    watch = CpuWatch("offload serve, PostgreSQL, the fake API and the client")
    home = Path(tempfile.mkdtemp(prefix="offload-bench-purge-"))
    try:
        if args.skip != "latency":
            concurrencies = [int(n) for n in args.concurrency.split(",")]
            (home / "latency").mkdir()
            asyncio.run(latency(home / "latency", args.deletions, concurrencies))
        if args.skip != "drain":
            backends = args.backends.split(",")
            asyncio.run(drain_rates(home, args.entries, args.api_delay, backends))
        print("\n" + watch.summary())
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

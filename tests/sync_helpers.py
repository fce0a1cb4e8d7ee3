"""Helpers for the ``offload sync`` tests: trees on disk, buckets seen through boto3, peers."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tests.helpers import free_port, run_cli, wait_for_port

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
#: An hour ago, in nanoseconds: a safely "old" mtime for files written by a test.
HOUR_NS = 3600 * 10**9


@dataclass
class Target:
    """One S3 server a sync test writes to, and the handles to look at what arrived."""

    name: str  # "moto" or "rclone"
    client: Any
    bucket: str
    endpoint_url: str | None = None
    root: Path | None = None  # rclone: the bucket's folder on disk
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint_args(self) -> list[str]:
        return ["--endpoint-url", self.endpoint_url] if self.endpoint_url else []

    def url(self, prefix: str = "", bucket: str | None = None) -> str:
        name = bucket or self.bucket
        return f"s3://{name}/{prefix}" if prefix else f"s3://{name}"

    def sync(
        self, *argv: str | Path, environ: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """``offload sync ARGV --endpoint-url ...`` in-process: (exit code, stdout, stderr)."""
        return run_cli("sync", *argv, *self.endpoint_args, environ=environ)

    def new_bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def objects(self, prefix: str = "", bucket: str | None = None) -> dict[str, bytes]:
        """Every object under ``prefix`` (the prefix cut off the keys) and its bytes."""
        return bucket_objects(self.client, bucket or self.bucket, prefix)

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        return list_keys(self.client, bucket or self.bucket, prefix)

    def metadata(self, key: str, bucket: str | None = None) -> dict[str, str]:
        head = self.client.head_object(Bucket=bucket or self.bucket, Key=key)
        return {name.lower(): value for name, value in head.get("Metadata", {}).items()}

    def put(self, key: str, body: bytes, bucket: str | None = None, **extra: Any) -> None:
        self.client.put_object(Bucket=bucket or self.bucket, Key=key, Body=body, **extra)

    def uploads(self, bucket: str | None = None) -> list[dict[str, Any]]:
        return incomplete_uploads(self.client, bucket or self.bucket)


def fresh_bucket() -> str:
    return f"sync-{uuid.uuid4().hex[:16]}"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 over HTTP on a free loopback port (for subprocesses and the aws CLI too)."""
    from moto.server import ThreadedMotoServer

    quiet = logging.getLogger("werkzeug")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        quiet.setLevel(level)


def list_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """Keys under ``prefix/`` in listing order, the prefix cut off."""
    start = f"{prefix}/" if prefix else ""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        keys.extend(item["Key"][len(start) :] for item in page.get("Contents") or [])
    return keys


def bucket_objects(client: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    start = f"{prefix}/" if prefix else ""
    return {
        key: client.get_object(Bucket=bucket, Key=start + key)["Body"].read()
        for key in list_keys(client, bucket, prefix)
    }


def incomplete_uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    """Multipart uploads begun and never finished; rclone answers NoSuchUpload for none."""
    try:
        return client.list_multipart_uploads(Bucket=bucket).get("Uploads") or []
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return []
        raise


def write_tree(root: Path, files: dict[str, bytes], mtime_ns: int | None = None) -> Path:
    """Write ``files`` (relative path -> bytes) under ``root``, each dated ``mtime_ns`` if given."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative ``/`` path -> bytes)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder under ``root`` with its bytes and mtime: to prove nothing changed."""
    if not root.exists():
        return {}
    found: dict[str, tuple[bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            found[rel + "/"] = (b"", 0)
        else:
            found[rel] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def media_files(count: int, seed: int = 0) -> dict[str, bytes]:
    """``count`` small files with distinct, deterministic bytes, in a few folders."""
    return {
        f"{2024 + i % 2}/{i % 12 + 1:02d}/img-{i:04d}.jpg": (f"{seed}:{i}:".encode() * (i % 40 + 1))
        for i in range(count)
    }


def big_bytes(size: int, seed: int = 1) -> bytes:
    """``size`` bytes that are not all alike (so a part mixed up would show)."""
    block = bytes((seed * 31 + i * 7) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def subprocess_env(tmp_path: Path, credentials: dict[str, str]) -> dict[str, str]:
    """An environment for ``python -m offload`` or ``aws`` that reads nothing of this host's."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "PYTHONUTF8": "1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "OFFLOAD_SYNC_STATE": str(tmp_path / "subprocess-state" / "sync.sqlite3"),
    }
    env.update(credentials)
    return env


def offload_command(*argv: str | Path) -> list[str]:
    return [sys.executable, "-m", "offload", *(str(a) for a in argv)]


def put_in_parts(target: Target, key: str, data: bytes, metadata: dict[str, str]) -> str:
    """An object uploaded in parts (5 MiB, then the rest), as offload uploads large files."""
    client, bucket = target.client, target.bucket
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata)
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MiB), start=1):
        answer = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + 5 * MiB],
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    done = client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    return done["ETag"].strip('"')

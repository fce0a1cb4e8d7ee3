"""A real PostgreSQL for the tests: Debian's ``postgresql`` package, in a temporary folder.

``initdb`` into a fresh folder, then ``postgres`` listening on 127.0.0.1 on a
free port and nowhere else (its Unix socket stays in the folder, never in
/var/run). PostgreSQL refuses to run as root: when the tests run as root, both
run as the ``postgres`` user the package creates, and the folder is theirs.
Logins over TCP need the password (SCRAM), so the tests see the same refusals
a real server gives. Durability is switched off: a test database is thrown
away, and fsync would only make the tests slow.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

SUPERUSER = "offload"
PASSWORD = "pg-test-password-7c1e9a"
START_TIMEOUT = 30.0


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder (/usr/lib/postgresql/<version>/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda path: int(Path(path).parent.parent.name.split(".")[0]),
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    counter: int = 0

    def url(self, database: str = "postgres", *, password: str | None = PASSWORD) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """A new empty database's URL (CREATE DATABASE copies template1 in a moment)."""
        self.counter += 1
        name = f"test_{os.getpid()}_{self.counter}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')  # type: ignore[arg-type]
        return self.url(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_server_user() -> dict[str, Any]:
    """Popen arguments that run the child as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_postgres() -> PostgresServer:
    """initdb and start a server; raises RuntimeError naming what is missing or failed."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError(
            "PostgreSQL not found in /usr/lib/postgresql/*/bin: apt-get install -y postgresql"
        )
    folder = Path(tempfile.mkdtemp(prefix="offload-pg-"))  # /tmp: reachable by postgres
    run_as = _as_server_user()
    if run_as:
        os.chown(folder, run_as["user"], run_as["group"])
    data = folder / "data"
    pwfile = folder / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=folder,
            timeout=120,
            **run_as,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from None
    port = _free_port()
    log = (folder / "postgres.log").open("wb")
    process = subprocess.Popen(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(folder),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=folder,
        **run_as,
    )
    log.close()
    server = PostgresServer(folder, port, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            output = (folder / "postgres.log").read_text(errors="replace")
            server.stop()
            raise RuntimeError(f"postgres exited: {output[-2000:]}")
        with contextlib.suppress(psycopg.OperationalError):
            psycopg.connect(server.url(), connect_timeout=2).close()
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("postgres did not accept connections within 30 s")
        time.sleep(0.1)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()

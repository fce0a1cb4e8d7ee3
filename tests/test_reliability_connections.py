"""Client connections under attack, on loopback: idle keep-alive, slow headers, slowloris,
malformed request lines, absolute-form targets (issue #13, items 4 and 7).

The attacks run against the worker's own pieces (``create_app``, ``AppRunner`` and
``ConnectionGuard``, as ``supervisor._worker`` puts them together) on both event
loops, each test running its own loop; two tests run ``offload serve`` itself, with
one worker and with two. The pieces' unit tests come last, unmarked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import signed_url
from offload.server import connections
from offload.server.app import create_app
from offload.server.connections import (
    ConnectionGuard,
    Tally,
    connection_limits,
    origin_form,
    raise_open_files_limit,
    short_reason,
)
from tests.helpers import free_port, wait_for_port

RELIABILITY = pytest.mark.reliability
LOOPS = pytest.mark.parametrize(
    "loop_factory", [None, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
LOGGER = "offload.server.connections"
#: Upper bound on any wait for the server to act (a bound, never an assertion on time).
PATIENCE = 10.0
BODY = b"hello from the bucket\n"
SIGNING_SECRET = "s" * 40


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop] | None, main: Coroutine) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


# -- an in-process worker ---------------------------------------------------------------


@dataclass
class Worker:
    port: int
    guard: ConnectionGuard


def worker_settings(root: Path, **options: Any) -> Settings:
    (root / "data" / "wp").mkdir(parents=True, exist_ok=True)
    (root / "data" / "wp" / "a.txt").write_bytes(BODY)
    (root / "data" / "private").mkdir(exist_ok=True)
    (root / "data" / "private" / "doc.txt").write_bytes(BODY)
    site = Site(
        name="blog",
        storage=(root / "data").as_uri(),
        hostnames=("*",),
        signed_prefixes=("private",),
        signing_secret=Secret(SIGNING_SECRET),
    )
    return Settings(sites={"blog": site}, manifest=root / "manifest.sqlite3", **options)


@contextlib.asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    """One worker on a free loopback port, put together as ``supervisor._worker`` does."""
    runner = web.AppRunner(create_app(settings), handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(runner.server, connection_limits(settings, 1 << 20))
    listener = await guard.listen("127.0.0.1", 0)
    try:
        yield Worker(listener.sockets[0].getsockname()[1], guard)
    finally:
        listener.close()
        await runner.cleanup()
        guard.close()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(65536), PATIENCE):
            chunks.append(chunk)
    return b"".join(chunks)


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response with a Content-Length: (head, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), PATIENCE)


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await connect(port)
    writer.write(request)
    try:
        return await read_until_closed(reader)
    finally:
        await hang_up(writer)


def get(path: str, *, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: media.example.com\r\n{extra}\r\n".encode()


def records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    for _ in range(int(PATIENCE / 0.05)):
        if found := records(caplog, text):
            return found
        await asyncio.sleep(0.05)
    pytest.fail(f"no log line with {text!r}")


# -- idle and slow connections ----------------------------------------------------------


@RELIABILITY
@LOOPS
def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout(tmp_path, loop_factory):
    settings = worker_settings(tmp_path, keepalive_timeout=0.5, header_timeout=30.0)

    async def main() -> None:
        async with worker(settings) as served:
            reader, writer = await connect(served.port)
            writer.write(get("/wp/a.txt"))
            head, body = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200")
            assert body == BODY
            # The connection stays open for another request, until it has been idle too long.
            assert await read_until_closed(reader) == b""
            assert served.guard.open_connections == 0
            await hang_up(writer)

    run(loop_factory, main())


@RELIABILITY
@LOOPS
def test_partial_headers_are_dropped_after_header_timeout(tmp_path, loop_factory, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    settings = worker_settings(tmp_path, keepalive_timeout=60.0, header_timeout=0.5)

    async def main() -> None:
        async with worker(settings) as served:
            half = await exchange(served.port, b"GET /wp/a.txt HTTP/1.1\r\nHost: media.exa")
            silent = await exchange(served.port, b"")
            assert half == b""  # closed, no answer
            assert silent == b""
            [line] = await wait_for_log(caplog, "request headers took over 0.5 s")
            assert "closed 1 connection(s)" in line.getMessage()  # the silent one is not news

    run(loop_factory, main())


@RELIABILITY
@LOOPS
def test_each_request_gets_its_own_header_deadline_and_one_that_never_ends_is_dropped(
    tmp_path, loop_factory
):
    settings = worker_settings(tmp_path, keepalive_timeout=60.0, header_timeout=0.5)

    async def main() -> None:
        async with worker(settings) as served:
            reader, writer = await connect(served.port)
            for _ in range(3):  # more time in all than header_timeout, each request in time
                writer.write(get("/wp/a.txt"))
                head, body = await read_response(reader)
                assert head.startswith(b"HTTP/1.1 200")
                assert body == BODY
                await asyncio.sleep(0.3)
            writer.write(b"GET /wp/a.txt HTTP/1.1\r\n")  # then one that never ends
            assert await read_until_closed(reader) == b""
            await hang_up(writer)

    run(loop_factory, main())


@RELIABILITY
@LOOPS
def test_a_normal_client_is_answered_once_sixty_slowloris_sockets_over_the_cap_are_dropped(
    tmp_path, loop_factory, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER)
    settings = worker_settings(
        tmp_path, keepalive_timeout=60.0, header_timeout=1.0, max_client_connections=50
    )

    async def main() -> None:
        async with worker(settings) as served:
            stalled = []
            for _ in range(60):
                reader, writer = await connect(served.port)
                writer.write(b"GET /wp/a.txt HTTP/1.1\r\nHost: media.examp")
                stalled.append((reader, writer))
            await asyncio.sleep(0.2)
            assert served.guard.open_connections <= 50
            answer = b""
            for _attempt in range(int(PATIENCE / 0.1)):
                with contextlib.suppress(ConnectionError):
                    answer = await exchange(
                        served.port, get("/wp/a.txt", extra="Connection: close\r\n")
                    )
                if answer.startswith(b"HTTP/1.1 200"):
                    break
                await asyncio.sleep(0.1)
            assert answer.startswith(b"HTTP/1.1 200")
            assert answer.endswith(BODY)
            for reader, writer in stalled:
                assert await read_until_closed(reader) == b""  # dropped, never answered
                await hang_up(writer)
            [line] = await wait_for_log(caplog, "connection cap reached")
            assert line.levelno == logging.WARNING
            assert "max_client_connections = 50" in line.getMessage()
            assert "refused" in line.getMessage()

    run(loop_factory, main())


@RELIABILITY
@LOOPS
def test_at_the_cap_the_oldest_idle_keep_alive_connection_makes_room(
    tmp_path, loop_factory, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER)
    settings = worker_settings(
        tmp_path, keepalive_timeout=60.0, header_timeout=60.0, max_client_connections=20
    )

    async def main() -> None:
        async with worker(settings) as served:
            idle = []
            for _ in range(20):
                reader, writer = await connect(served.port)
                writer.write(get("/wp/a.txt"))
                await read_response(reader)
                idle.append((reader, writer))
            # The cap is full of idle connections: a new client is answered at once.
            answer = await exchange(served.port, get("/wp/a.txt", extra="Connection: close\r\n"))
            assert answer.startswith(b"HTTP/1.1 200")
            oldest_reader, _ = idle[0]
            assert await read_until_closed(oldest_reader) == b""
            [line] = await wait_for_log(caplog, "connection cap reached")
            assert "refused 0 new connection(s)" in line.getMessage()
            assert "closed 0 idle" not in line.getMessage()
            for _reader, writer in idle:
                await hang_up(writer)

    run(loop_factory, main())


# -- malformed requests and absolute-form targets ----------------------------------------


@RELIABILITY
@LOOPS
def test_a_bad_request_line_is_one_short_warning_without_a_traceback(
    tmp_path, loop_factory, caplog
):
    caplog.set_level(logging.DEBUG)
    settings = worker_settings(tmp_path)

    async def main() -> None:
        async with worker(settings) as served:
            answer = await exchange(served.port, b"GARBAGE\x1b[31m\r\n\r\n")  # 35 bytes or so
            assert answer.startswith(b"HTTP/1.0 400")
            [line] = await wait_for_log(caplog, "bad request from")

        assert line.levelno == logging.WARNING
        assert line.name == LOGGER
        assert line.getMessage() == "bad request from 127.0.0.1: Invalid method encountered"
        assert line.exc_info is None
        assert all(r.exc_info is None and r.levelno < logging.ERROR for r in caplog.records)
        assert "Traceback" not in caplog.text
        assert "GARBAGE" not in caplog.text

    run(loop_factory, main())


@RELIABILITY
@LOOPS
def test_an_absolute_form_get_is_served_as_origin_form_would_be(tmp_path, loop_factory):
    settings = worker_settings(tmp_path)
    signed = signed_url(
        "http://media.example.com", "/private/doc.txt", SIGNING_SECRET, int(time.time()) + 300
    )

    async def main() -> None:
        async with worker(settings) as served:
            close = "Connection: close\r\n"
            plain = await exchange(
                served.port, get("http://media.example.com/wp/a.txt", extra=close)
            )
            assert plain.startswith(b"HTTP/1.1 200")
            assert plain.endswith(BODY)
            ok = await exchange(served.port, get(signed, extra=close))
            assert ok.startswith(b"HTTP/1.1 200")
            assert ok.endswith(BODY)
            forged = await exchange(served.port, get(signed[:-4] + "0000", extra=close))
            assert forged.startswith(b"HTTP/1.1 403")
            dots = await exchange(served.port, get("http://h/wp/../private/doc.txt", extra=close))
            assert dots.startswith(b"HTTP/1.1 400")

    run(loop_factory, main())


# -- offload serve ----------------------------------------------------------------------


@RELIABILITY
@pytest.mark.parametrize("workers", [1, 2])
def test_offload_serve_applies_the_connection_settings_in_every_worker(tmp_path, workers):
    settings_dir = tmp_path / "site"
    settings_dir.mkdir()
    worker_settings(settings_dir)
    config = tmp_path / "offload.toml"
    config.write_text(
        "keepalive_timeout = 0.5\n"
        "header_timeout = 0.5\n"
        "max_client_connections = 40\n"
        "[sites.blog]\n"
        f'storage = "{(settings_dir / "data").as_uri()}"\n'
        'hostnames = ["*"]\n'
    )
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    argv = ["serve", "--config", str(config), "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [sys.executable, "-m", "offload", *argv],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        idle = []
        for _ in range(8):  # spread over the workers by the kernel
            sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
            sock.sendall(get("/wp/a.txt"))
            idle.append(sock)
        half = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        half.sendall(b"GET /wp/a.txt HTTP/1.1\r\nHo")
        bad = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        bad.sendall(b"GARBAGE\r\n\r\n")
        for sock in [*idle, half, bad]:
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):  # until the server closes it
                    received += chunk
            sock.close()
            if sock in idle:
                assert received.startswith(b"HTTP/1.1 200")
                assert received.endswith(BODY)
        time.sleep(1.2)  # the bad request's line is gathered for a second
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "up to 40 connections per worker" in out
    assert "idle ones closed after 0.5 s, headers due within 0.5 s" in out
    assert "bad request from 127.0.0.1: Invalid method encountered" in err
    assert "Traceback" not in err
    assert " ERROR " not in err


@pytest.mark.parametrize(("soft", "hard"), [(256, 4096), (512, 512)])
def test_offload_serve_raises_the_open_files_limit_and_keeps_the_cap_under_it(tmp_path, soft, hard):
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < hard:
        pytest.skip("the hard open-files limit here is lower than the test's")
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "offload", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    try:
        wait_for_port(port)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)]
    cap = connection_limits(Settings(), hard).max_connections
    assert f"up to {cap} connections per worker" in out
    if cap < Settings().max_client_connections:
        assert f"max_client_connections lowered to {cap} per worker" in err
        assert f"the open-files limit is {hard}" in err


# -- the pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/wp/a.txt", "/wp/a.txt"),
        ("/wp/a.txt?x=1", "/wp/a.txt?x=1"),
        ("http://media.example.com/wp/a.txt", "/wp/a.txt"),
        ("HTTPS://media.example.com:8443/wp/a%20b.txt?x=1", "/wp/a%20b.txt?x=1"),
        ("http://media.example.com/wp/../etc", "/wp/../etc"),  # as sent, never normalised
        ("http://media.example.com", "/"),
        ("http://media.example.com?x=1", "/?x=1"),
        ("ftp://media.example.com/wp/a.txt", "ftp://media.example.com/wp/a.txt"),
        ("*", "*"),
    ],
)
def test_origin_form_cuts_the_path_and_query_from_an_absolute_target(target, expected):
    assert origin_form(target) == expected


def test_short_reason_keeps_the_first_line_and_none_of_the_peers_bytes():
    exc = BadStatusLine("GARBAGE\x1b[31m\r\n")
    assert short_reason(exc).startswith("Bad status line")
    assert "\n" not in short_reason(exc)
    assert "\x1b" not in short_reason(exc)
    long = BadHttpMessage("x\u2028" + "y" * 500)
    assert len(short_reason(long)) <= connections.REASON_CHARS
    assert short_reason(long).isprintable()
    assert short_reason(long).isascii()


def test_the_connection_cap_stays_under_the_open_files_limit(tmp_path):
    settings = worker_settings(tmp_path, max_client_connections=4096, storage_threads=10)
    reserve = connections.reserved_files(settings)
    assert reserve >= connections.RESERVED_FILES + 2 * 10
    assert connection_limits(settings, 1 << 20).max_connections == 4096
    assert connection_limits(settings, 1024).max_connections == 1024 - reserve
    assert connection_limits(settings, 100).max_connections == connections.MIN_CONNECTIONS
    limits = connection_limits(worker_settings(tmp_path, keepalive_timeout=5.0), 1 << 20)
    assert limits.keepalive_timeout == 5.0
    assert limits.header_timeout == 10.0


def test_the_connection_settings_have_nginx_like_defaults():
    settings = Settings()
    assert 5 <= settings.keepalive_timeout <= 75
    assert settings.header_timeout < settings.keepalive_timeout
    assert settings.max_client_connections == 4096


def test_the_shipped_nginx_closes_its_idle_upstream_connections_before_offload_does():
    """Otherwise nginx may reuse a connection at the moment offload closes it."""
    conf = (Path(__file__).parent.parent / "nginx" / "offload.conf").read_text()
    upstream = conf[conf.index("upstream offload_origin") :].split("}", 1)[0]
    [seconds] = re.findall(r"keepalive_timeout\s+(\d+)s;", upstream)
    assert int(seconds) < Settings().keepalive_timeout


def test_the_soft_open_files_limit_is_raised_to_the_hard_limit(monkeypatch):
    limits = {resource.RLIMIT_NOFILE: (1024, 524288)}
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits[which])
    monkeypatch.setattr(resource, "setrlimit", lambda which, pair: limits.__setitem__(which, pair))
    assert raise_open_files_limit() == 524288
    assert limits[resource.RLIMIT_NOFILE] == (524288, 524288)


def test_a_refused_raise_of_the_open_files_limit_keeps_the_soft_limit(monkeypatch):
    def refuse(_which: int, _pair: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, resource.RLIM_INFINITY))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert raise_open_files_limit() == 1024


def test_a_tally_writes_a_burst_as_one_line_and_holds_the_next_for_its_window():
    lines: list[tuple[Counter[str], str]] = []

    async def main() -> None:
        written = asyncio.Event()

        def write(counts: Counter[str], detail: str) -> None:
            lines.append((counts, detail))
            written.set()

        tally = Tally(write, every=0.3, gather=0.05)
        for peer in range(5):
            tally.add("refused", detail=f"peer {peer}")
        tally.add("closed", 3)
        await asyncio.wait_for(written.wait(), PATIENCE)
        written.clear()
        tally.add("refused")  # within the window after a line: held for the next one
        assert len(lines) == 1
        await asyncio.wait_for(written.wait(), PATIENCE)
        tally.flush()  # nothing left to write

    run(None, main())
    assert lines == [(Counter(refused=5, closed=3), "peer 4"), (Counter(refused=1), "")]


@RELIABILITY
@LOOPS
def test_a_webhook_refused_from_its_headers_is_answered_and_closed_without_draining(
    tmp_path, loop_factory
):
    settings = worker_settings(tmp_path, keepalive_timeout=30.0, header_timeout=30.0)
    site = settings.sites["blog"]
    settings = Settings(
        sites={"blog": replace(site, webhook_secret=Secret("w" * 40))},
        manifest=settings.manifest,
    )
    forged = (
        b"POST /_offload/blog/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\nX-Offload-Timestamp: 1\r\n"
        b"X-Offload-Signature: sha256=00\r\n\r\n"
    )

    async def main() -> None:
        async with worker(settings) as served:
            started = asyncio.get_running_loop().time()
            reply = await exchange(served.port, forged)  # the body never comes
            assert reply.startswith(b"HTTP/1.1 401")
            # Closed at once: not kept for the 100 MB it announced, nor drained for 10 s.
            assert asyncio.get_running_loop().time() - started < 5

    run(loop_factory, main())

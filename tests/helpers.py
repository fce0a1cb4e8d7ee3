"""Small helpers the tests share: free ports, waiting for servers, running the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from offload.cli.main import Environment, main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


#: The operator's token the tests' servers are given (``admin_token``) when they need it.
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"


def get_json(url: str, timeout: float = 10.0, *, token: str | None = None) -> tuple[int, dict]:
    """GET ``url`` as JSON; ``token``: sent as ``Authorization: Bearer``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def run_cli(*argv: str | Path, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``offload`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ=dict(environ or {}))
    code = main([str(a) for a in argv], env)
    return code, out.getvalue(), err.getvalue()


class AppInThread:
    """An aiohttp app served on a free loopback port by a thread with its own event loop.

    For servers a test's subprocesses must reach (a fake CDN API) while the test
    itself is synchronous. ``with AppInThread(app) as url:``; stopped on exit.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        from aiohttp import web

        async def start() -> None:
            self._runner = web.AppRunner(self.app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(start())
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="app-in-thread", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the app in a thread did not start")
        return self.url

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

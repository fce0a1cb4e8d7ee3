"""Small helpers the tests share: free ports, waiting for servers, running the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

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

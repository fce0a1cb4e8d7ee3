"""Checks before a run: a folder source that is there, sides that do not overlap, and
endpoints that answer.

Why probe an endpoint first: awscrt's client, which lists and PUTs for a
sync, retries a refused connection with backoff for 7 to 10 seconds and then
reports ``AWS_IO_SOCKET_CONNECTION_REFUSED``. One TCP connection to the
endpoint's host and port, with a short timeout and no retry, tells within
``PROBE_TIMEOUT`` that nothing listens there, in words a person reads
("connection refused by 127.0.0.1:9"). A connection that opens says nothing
more: credentials, the bucket and TLS are the run's to find out, and it
reports them as before. The probe connects directly, as awscrt does; when the
environment names an HTTP proxy for the endpoint (boto3 would go through it),
there is nothing direct to probe and the run goes ahead; a run on boto3
alone is not probed either (``probe``). Measured here: a
refused ``offload sync`` took 8.6 to 8.9 s before, 0.34 s with the probe (the
command's start included).

Every failure here is a ``StorageUnavailable`` or ``SyncError`` (exit 4: "a
bucket or folder could not be reached"), except sides that overlap, which
the command line got wrong (``LocationError``, exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from offload.storage import StorageUnavailable
from offload.sync.context import SyncError
from offload.sync.locations import Bucket, Folder, Location, LocationError

#: Seconds the probe waits for its one connection: with the command's start (about
#: 0.5 s here) an endpoint that never answers is reported within 2 s, and a connection
#: whose first SYN was lost (Linux resends it after 1 s) still opens in time.
PROBE_TIMEOUT = 1.2

#: Calls a blocking function in the run's executor and awaits its result.
Call = Callable[..., Awaitable[Any]]


async def check_sides(src: Location, dst: Location, call: Call, *, use_crt: bool = True) -> None:
    """Raise when the run cannot start: see the module docstring.

    ``use_crt``: whether the run may use awscrt (``SyncOptions.use_crt``); a run
    on boto3 alone is not probed (see ``probe``).
    """
    if isinstance(src, Folder) and not await call(os.path.isdir, src.path):
        there = await call(os.path.exists, src.path)
        raise SyncError(f"{src.shown}: {'not a folder' if there else 'no such folder'}")
    if isinstance(src, Folder) and isinstance(dst, Folder):
        await _not_overlapping(src, dst, call)
    if not use_crt or os.environ.get("OFFLOAD_NO_CRT"):
        return
    for side in (src, dst):
        if isinstance(side, Bucket):
            await probe(side, call)


async def _not_overlapping(src: Folder, dst: Folder, call: Call) -> None:
    a = str(await call(os.path.realpath, src.path))
    b = str(await call(os.path.realpath, dst.path))
    if a == b:
        raise LocationError(f"{src.shown} and {dst.shown} are the same folder")
    if _inside(b, a) or _inside(a, b):
        raise LocationError(f"{src.shown} and {dst.shown}: one folder is inside the other")


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


async def probe(bucket: Bucket, call: Call) -> None:
    """One connection to ``bucket``'s endpoint; StorageUnavailable when none opens.

    Only for runs that use awscrt: boto3 alone (the server's runs,
    ``OFFLOAD_NO_CRT``) gives up on a refused endpoint within a second on its
    own (measured: 1.0 s, ``Could not connect to the endpoint URL``), and may be
    served by a stand-in no socket reaches (moto's in-process mock, in tests).
    """
    connection = getattr(bucket.storage, "connection", None)
    if connection is None or not bucket.storage.features.fast_client:
        return  # not an S3 endpoint (a folder standing in for a bucket)
    endpoint_url = (await call(connection)).endpoint_url
    problem = await endpoint_problem(endpoint_url)
    if problem is not None:
        raise StorageUnavailable(f"cannot reach {bucket.shown}: {problem}")


async def endpoint_problem(endpoint_url: str, seconds: float = PROBE_TIMEOUT) -> str | None:
    """Why no connection opens to ``endpoint_url``'s host and port, or None when one does."""
    parts = urlsplit(endpoint_url)
    host = parts.hostname
    if not host:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None  # the client reports a bad port itself
    if _proxied(parts.scheme, host):
        return None
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(seconds):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"no answer from {where} within {seconds:g} s"
    except socket.gaierror:
        return f"the host name {host!r} does not resolve (is the endpoint URL right?)"
    except OSError as exc:
        return _words(exc, where)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def _words(exc: OSError, where: str) -> str:
    """A failed connection in plain words; several addresses fail as one error."""
    errors = [exc, *getattr(exc, "exceptions", ())]
    numbers = {e.errno for e in errors if isinstance(e, OSError) and e.errno}
    if errno.ECONNREFUSED in numbers or "refused" in str(exc).lower():
        return f"connection refused by {where} (is the endpoint running, and is the port right?)"
    if numbers & {errno.ENETUNREACH, errno.EHOSTUNREACH}:
        return f"no route to {where}"
    return f"cannot connect to {where}: {exc.strerror or exc}"


def _proxied(scheme: str, host: str) -> bool:
    """Whether the environment sends requests for ``host`` through a proxy."""
    proxies = urllib.request.getproxies_environment()
    if scheme not in proxies:
        return False
    return not urllib.request.proxy_bypass(host)

"""Client connections: idle and header deadlines, a cap per worker, quiet parse errors.

aiohttp closes idle keep-alive connections (``keepalive_timeout``) but has no
deadline for request headers, no cap on open connections, and logs every
malformed request with a traceback at ERROR. So a thousand clients that each
send half a request line hold every file descriptor of a worker (slowloris),
and a port scan fills the log. This module adds what nginx has:

- ``header_timeout`` (nginx's ``client_header_timeout``): a connection that
  has opened, or has started a request, and not completed its headers in time
  is closed. The first request's time counts from the connection's opening,
  later ones' from their first byte; a request body is not covered.
- ``max_client_connections`` (nginx's ``worker_connections``): at the cap, the
  oldest idle keep-alive connections are closed to make room; when none is
  idle, the new connection is refused (closed at once). The cap is kept below
  the open-files limit, which ``raise_open_files_limit`` lifts at start.
- a malformed request is one WARNING line (peer and a short reason), never a
  traceback; these lines, and the cap's, are rate-limited by ``Tally``.

The hook is one ``RequestHandler`` subclass made by ``ConnectionGuard``, the
protocol factory the worker listens with: ``web.TCPSite`` always listens with
the runner's own factory, so the worker calls ``loop.create_server`` itself.
No library adds these to aiohttp's server, and aiohttp offers no hook for
them. The subclass reads three attributes aiohttp keeps private (``_waiter``:
the handler waits for a request; ``_request_count`` and ``_messages``: requests
whose headers the parser has completed); ``tests/test_reliability_connections.py``
exercises each of them, on asyncio's loop and on uvloop.

Known gap: bytes of a pipelined request that arrive in the same read as the
request before them are not seen as a new start, so such a partial request is
bounded by ``keepalive_timeout`` rather than ``header_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from offload.config.settings import Settings

log = logging.getLogger(__name__)

#: At most one line of each kind (cap hit, bad requests, slow headers) per this many seconds.
LOG_EVERY_SECONDS = 30.0
#: A burst's first line waits this long, so that it carries the burst's count.
GATHER_SECONDS = 1.0
#: Descriptors kept for everything but client connections: the listening sockets,
#: the event loop's own, log and manifest files, metrics files, pipes.
RESERVED_FILES = 256
#: Connections a worker accepts whatever the open-files limit says.
MIN_CONNECTIONS = 16
#: The soft open-files limit to aim for when the hard limit is unlimited.
UNLIMITED_TARGET = 1 << 20
#: After a scan for idle connections found none, the next one waits this long:
#: a flood of new connections at the cap costs one pass over the open ones per
#: this interval, not one per connection.
SCAN_PAUSE_SECONDS = 0.1
#: Idle connections closed per scan at most (nginx closes up to 32).
DRAIN_AT_ONCE = 32
#: Longest reason a log line repeats from a malformed request.
REASON_CHARS = 80
#: Listen backlog, as aiohttp's ``TCPSite``.
BACKLOG = 128


@dataclass(frozen=True)
class Limits:
    """What one worker allows its client connections."""

    keepalive_timeout: float
    header_timeout: float
    max_connections: int


def raise_open_files_limit() -> int:
    """Lift this process's soft open-files limit to the hard one; return the soft limit.

    Forked workers inherit it. Where the hard limit is unlimited the soft one
    goes to ``UNLIMITED_TARGET``; where the system refuses, it stays as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_TARGET
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def open_files_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft


def reserved_files(settings: Settings) -> int:
    """Descriptors kept back from clients: a fixed share, and for every storage
    thread of every site a socket to storage and a local file open at once."""
    return RESERVED_FILES + 2 * settings.storage_threads * max(1, len(settings.sites))


def connection_limits(settings: Settings, open_files: int) -> Limits:
    """The settings' limits, the cap lowered to fit under ``open_files``."""
    room = open_files - reserved_files(settings)
    return Limits(
        keepalive_timeout=settings.keepalive_timeout,
        header_timeout=settings.header_timeout,
        max_connections=max(MIN_CONNECTIONS, min(settings.max_client_connections, room)),
    )


def origin_form(target: str) -> str:
    """The path and query of a request target, as sent.

    An absolute-form target (``http://host/key?q``, RFC 9112 section 3.2.2)
    gives ``/key?q``: aiohttp takes its host for ``request.host`` already, but
    ``request.raw_path`` is then the whole target. The path is cut from the
    text as sent, never decoded or normalised, so key checks and signed URLs
    see what an origin-form request would send. Other targets are returned as
    they are.
    """
    if target.startswith("/"):
        return target
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return target
    cuts = [at for at in (rest.find("/"), rest.find("?")) if at >= 0]
    path = rest[min(cuts) :] if cuts else ""
    return path if path.startswith("/") else "/" + path


def short_reason(exc: HttpProcessingError) -> str:
    """The first line of a parse error, with the peer's bytes kept out of the log."""
    text = (exc.message or type(exc).__name__).strip().splitlines()[0].rstrip(":")
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text[:REASON_CHARS]


class Tally:
    """Counts events of one kind and writes them as one line, at most every ``every`` seconds.

    The first event is written ``gather`` seconds later, with whatever else came
    in the meantime; what follows within ``every`` seconds of a line is counted
    and written in one line when that time is up. A flood of bad requests or of
    refused connections then costs one line per window, with its count.
    """

    def __init__(
        self,
        write: Callable[[Counter[str], str], None],
        *,
        every: float = LOG_EVERY_SECONDS,
        gather: float = GATHER_SECONDS,
    ) -> None:
        self._write = write
        self._every = every
        self._gather = gather
        self._counts: Counter[str] = Counter()
        self._detail = ""  # about the latest event (e.g. its peer and reason)
        self._quiet_until = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, kind: str, count: int = 1, detail: str = "") -> None:
        self._counts[kind] += count
        self._detail = detail or self._detail
        if self._timer is None:
            loop = self._loop = self._loop or asyncio.get_running_loop()
            at = max(loop.time() + self._gather, self._quiet_until)
            self._timer = loop.call_at(at, self.flush)

    def flush(self) -> None:
        """Write what is counted now (the timer's job; also at the worker's stop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        detail, self._detail = self._detail, ""
        self._write(counts, detail)
        if self._loop is not None:
            self._quiet_until = self._loop.time() + self._every


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler with a header deadline, counted by its guard."""

    __slots__ = ("_body", "_guard", "_header_deadline", "_header_timer", "_mid_headers")

    def __init__(self, guard: ConnectionGuard, manager: web.Server, **options: Any) -> None:
        super().__init__(manager, **options)
        self._guard = guard
        self._header_deadline: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._mid_headers = False  # some bytes of a request's headers have come
        self._body: StreamReader | None = None  # the body of the last request parsed

    def is_idle(self) -> bool:
        """Waiting for a request of which no byte has come (free to close at the cap)."""
        return not self._mid_headers and self._waiting()

    def _waiting(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._guard.admit(self):
            self.force_close()
            return
        self._start_headers()  # a connection that sends nothing is held no longer

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.release(self)
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and not self._mid_headers and (self._body is None or self._body.is_eof()):
            self._mid_headers = True  # the first bytes of a request, not of a body
            self._start_headers()
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # headers complete (or refused by the parser)
            self._body = self._messages[-1][1] if self._messages else None
            self._mid_headers = False
            self._header_deadline = None

    def _start_headers(self) -> None:
        if self._header_deadline is not None:
            return  # the first request's time counts from the connection's opening
        self._header_deadline = self._loop.time() + self._guard.limits.header_timeout
        if self._header_timer is None:
            self._header_timer = self._loop.call_at(self._header_deadline, self._check_headers)

    def _check_headers(self) -> None:
        """Close the connection if its headers are overdue; otherwise look again later.

        One timer serves many requests: it is moved to the current deadline when
        it fires, rather than made and cancelled for each request.
        """
        self._header_timer = None
        deadline = self._header_deadline
        if deadline is None or self.transport is None:
            return
        now = self._loop.time()
        if now >= deadline and self._waiting():
            if self._mid_headers:
                self._guard.slow_headers.add("closed")
            self.force_close()
            return
        if now >= deadline:  # a response is still going out: the next request waits for it
            deadline = self._header_deadline = now + self._guard.limits.header_timeout
        self._header_timer = self._loop.call_at(deadline, self._check_headers)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A malformed request: one rate-limited warning, never aiohttp's traceback."""
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        self._guard.bad_requests.add("bad", detail=f"{request.remote}: {short_reason(exc)}")
        text = message or exc.message
        response = web.Response(status=status, text=text, content_type="text/plain")
        response.force_close()
        return response


class ConnectionGuard:
    """The protocol factory of one worker: makes its handlers and keeps them under the cap.

    ``server`` is the runner's ``web.Server``: it holds the app's handler, and
    the runner's clean-up closes every connection it has seen, ours included.
    """

    def __init__(
        self, server: web.Server, limits: Limits, *, access_log: logging.Logger | None = None
    ) -> None:
        self.server = server
        self.limits = limits
        self._open: dict[GuardedHandler, None] = {}  # oldest first
        self._next_scan = -math.inf
        self._options: dict[str, Any] = {
            "keepalive_timeout": limits.keepalive_timeout,
            "access_log": access_log,
            # A body left unread (a webhook refused from its headers) is not drained
            # for aiohttp's default 10 s: the connection closes after the answer.
            "lingering_time": 0,
        }
        self.cap_hits = Tally(self._write_cap)
        self.bad_requests = Tally(_write_bad_requests)
        self.slow_headers = Tally(self._write_slow_headers)

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, self.server, loop=asyncio.get_running_loop(), **self._options)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> asyncio.Server:
        """Listen on ``host:port`` with this factory (``OSError`` when it cannot)."""
        return await asyncio.get_running_loop().create_server(
            self, host, port, backlog=BACKLOG, reuse_port=reuse_port or None
        )

    def admit(self, handler: GuardedHandler) -> bool:
        if len(self._open) >= self.limits.max_connections:
            closed = self._close_idle()
            if not closed:
                self.cap_hits.add("refused")
                return False
            self.cap_hits.add("closed", closed)
        self._open[handler] = None
        return True

    def release(self, handler: GuardedHandler) -> None:
        self._open.pop(handler, None)

    def close(self) -> None:
        """Write what the tallies hold (at the worker's stop)."""
        for tally in (self.cap_hits, self.bad_requests, self.slow_headers):
            tally.flush()

    def _close_idle(self) -> int:
        now = asyncio.get_running_loop().time()
        if now < self._next_scan:
            return 0
        idle = [handler for handler in self._open if handler.is_idle()]
        if not idle:
            self._next_scan = now + SCAN_PAUSE_SECONDS
            return 0
        closing = idle[: max(1, min(DRAIN_AT_ONCE, len(idle) // 8))]
        for handler in closing:
            self.release(handler)
            handler.force_close()
        return len(closing)

    def _write_cap(self, counts: Counter[str], _detail: str) -> None:
        log.warning(
            "connection cap reached (max_client_connections = %d per worker): "
            "refused %d new connection(s), closed %d idle keep-alive connection(s)",
            self.limits.max_connections,
            counts["refused"],
            counts["closed"],
        )

    def _write_slow_headers(self, counts: Counter[str], _detail: str) -> None:
        log.info(
            "closed %d connection(s) whose request headers took over %g s (header_timeout)",
            counts["closed"],
            self.limits.header_timeout,
        )


def _write_bad_requests(counts: Counter[str], detail: str) -> None:
    if counts["bad"] == 1:
        log.warning("bad request from %s", detail)
    else:
        log.warning("%d bad requests, the last from %s", counts["bad"], detail)

"""Logs an operator can read: text or JSON lines, each request's id in them and in its answer.

Every request gets an id: the ``X-Request-Id`` a proxy or CDN sent when it is
a plain token (letters, digits, ``.``, ``_``, ``-``; at most 64), else a new
one. It is echoed in the ``X-Request-Id`` header, put in JSON error bodies, and
added to each log line written while the request runs (a context variable, so
executor threads started from the request see it too when they copy the
context). ``log_format = "json"`` writes one JSON object per line, with the
fields a line's ``extra`` names (site, hook, attachment, counts, bytes,
duration, outcome) as keys of their own, for log shippers; ``"text"`` keeps
them in the message. The standard library's logging does all of this: no
library is needed for a formatter and a filter.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import IO, Any

from aiohttp import web

HEADER = "X-Request-Id"
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_REQUEST_ID: ContextVar[str | None] = ContextVar("offload_request_id", default=None)
#: Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


def request_id() -> str | None:
    """The id of the request being answered, or None outside one."""
    return _REQUEST_ID.get()


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request id]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [{rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, log_format: str, stream: IO[str]) -> None:
    """Send the root logger's lines to ``stream`` in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_KEY = web.RequestKey("offload_request_id", str)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id, for its log lines, its error bodies and its answer's header."""
    given = request.headers.get(HEADER, "")
    rid = given if _ID.fullmatch(given) else uuid.uuid4().hex
    request[_KEY] = rid
    token = _REQUEST_ID.set(rid)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        exc.headers[HEADER] = rid
        raise
    finally:
        _REQUEST_ID.reset(token)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer, streamed ones too, carries its request's id."""
    rid = request.get(_KEY)
    if rid is not None and HEADER not in response.headers:
        response.headers[HEADER] = rid

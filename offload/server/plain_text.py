"""The origin's short plain-text answers (errors, refusals), for the origin and its transforms."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from offload.http import caching as httpcache


def text_answer(
    status: int,
    message: str,
    *,
    cache_control: str = httpcache.NO_STORE,
    retry_after: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> web.Response:
    """``message`` and a newline, with ``nosniff`` and the given Cache-Control."""
    headers = {"Cache-Control": cache_control, "X-Content-Type-Options": "nosniff", **(extra or {})}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return web.Response(status=status, text=message + "\n", headers=headers)

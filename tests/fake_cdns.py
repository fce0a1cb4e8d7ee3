"""One small aiohttp server per CDN purge API, written from the vendor's public documentation.

Each fake checks what the real API checks first (method, path, the auth header,
the body's shape and per-request limits) and answers a malformed or
unauthenticated request with the status and JSON error the vendor documents,
so a provider cannot pass its tests by sending something the vendor would
refuse. What it accepts is recorded in ``accepted``; ``fail_next`` makes the
next requests answer 429 (with Retry-After) or a 5xx, as a busy API does.
The documentation each follows is named in its class docstring; CloudFront is
tested against moto instead (it implements CreateInvalidation). ``ThreadedFake``
serves one from a thread of its own, for tests whose ``offload`` runs as a process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Accepted:
    """One purge the fake took: method, path (as sent, percent-encoding kept), query, body."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeCDN:
    """The shared part: credentials, injected failures, the record of accepted purges."""

    token: str
    zone: str
    accepted: list[Accepted] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    _failures: list[tuple[int, str | None]] = field(default_factory=list)

    def fail_next(self, count: int, status: int = 429, retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and this Retry-After)."""
        self._failures.extend([(status, retry_after)] * count)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        return app

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error(self, status: int, message: str) -> web.Response:
        """The vendor's error answer; subclasses shape the JSON like the vendor does."""
        return web.json_response({"message": message}, status=status)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._failures:
            status, retry_after = self._failures.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            response = self.error(status, "rate limited" if status == 429 else "unavailable")
            response.headers.update(headers)
            return response
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._refuse(404, "not found")
        except web.HTTPMethodNotAllowed:
            return self._refuse(405, "method not allowed")

    def _refuse(self, status: int, message: str) -> web.Response:
        self.refused.append((status, message))
        return self.error(status, message)

    def record(self, request: web.Request, body: Any = None) -> None:
        self.accepted.append(
            Accepted(request.method, request.raw_path.split("?")[0], dict(request.query), body)
        )

    @staticmethod
    async def json_body(request: web.Request, limit: int = 1 << 20) -> Any:
        """The JSON body, or None when it is not JSON (or larger than ``limit``)."""
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None


def strings(value: Any, most: int) -> bool:
    """A non-empty list of at most ``most`` non-empty strings."""
    return (
        isinstance(value, list)
        and 0 < len(value) <= most
        and all(isinstance(v, str) and v for v in value)
    )


def absolute_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class FakeCloudflare(FakeCDN):
    """``POST /client/v4/zones/{zone_id}/purge_cache``.

    From https://developers.cloudflare.com/api/resources/cache/methods/purge/ and
    https://developers.cloudflare.com/cache/how-to/purge-cache/: ``Authorization:
    Bearer``; one of files (absolute URLs), tags, hosts, prefixes (host/path, no
    scheme), purge_everything (true); at most 100 per request. Errors are
    ``{"success": false, "errors": [{"code", "message"}]}``.
    """

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/client/v4/zones/{zone}/purge_cache", self.purge)

    def error(self, status: int, message: str, code: int = 1000) -> web.Response:
        body = {"success": False, "errors": [{"code": code, "message": message}], "result": None}
        return web.json_response(body, status=status)

    async def purge(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._refuse(400, "Invalid request headers")
        if auth != f"Bearer {self.token}":
            return self._refuse(403, "Authentication error")
        if request.match_info["zone"] != self.zone:
            return self._refuse(400, "Could not route to the zone")
        body = await self.json_body(request)
        if not isinstance(body, dict) or len(body) != 1:
            return self._refuse(400, "Request must contain one of files, tags, hosts, prefixes")
        ((key, value),) = body.items()
        if key == "purge_everything":
            ok = value is True
        elif key in ("files", "tags", "hosts", "prefixes"):
            ok = strings(value, 100)
            if ok and key == "files":
                ok = all(absolute_url(v) for v in value)
            if ok and key == "prefixes":
                ok = all("://" not in v and "/" in v for v in value)
        else:
            ok = False
        if not ok:
            return self._refuse(400, f"Invalid {key}")
        self.record(request, body)
        result = {"success": True, "errors": [], "messages": [], "result": {"id": self.zone}}
        return web.json_response(result)


class FakeBunny(FakeCDN):
    """``POST /purge?url=`` and ``POST /pullzone/{id}/purgeCache``.

    From https://docs.bunny.net/reference/purgepublic_indexpost and
    https://docs.bunny.net/cdn/purge-cache: the ``AccessKey`` header; one URL
    per request in the ``url`` query parameter; an optional JSON body
    ``{"CacheTag": "..."}`` for a pull zone purge. 401 without a valid key.
    """

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/purge", self.purge_url)
        app.router.add_post("/pullzone/{zone}/purgeCache", self.purge_zone)

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"ErrorKey": "error", "Message": message}, status=status)

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        if request.headers.get("AccessKey") != self.token:
            return self._refuse(401, "Authorization has been denied for this request.")
        return None

    async def purge_url(self, request: web.Request) -> web.Response:
        if refused := self._unauthorised(request):
            return refused
        urls = request.query.getall("url", [])
        if len(urls) != 1 or not absolute_url(urls[0]):
            return self._refuse(400, "The url parameter is required: one absolute URL")
        if await request.content.read(1):
            return self._refuse(400, "Purge URL takes no body")
        self.record(request)
        return web.Response(status=200)

    async def purge_zone(self, request: web.Request) -> web.Response:
        if refused := self._unauthorised(request):
            return refused
        if request.match_info["zone"] != self.zone:
            return self._refuse(404, "The requested Pull Zone was not found")
        raw = await request.content.read(1 << 16)
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._refuse(400, "The request body is not valid JSON")
            if not (isinstance(body, dict) and set(body) == {"CacheTag"}):
                return self._refuse(400, "The body takes one CacheTag")
            if not (isinstance(body["CacheTag"], str) and body["CacheTag"]):
                return self._refuse(400, "CacheTag must be a non-empty string")
        self.record(request, body)
        return web.Response(status=204)


class FakeKeyCDN(FakeCDN):
    """``DELETE /zones/purgeurl/{id}.json`` and ``purgetag``, ``GET /zones/purge/{id}.json``.

    From https://www.keycdn.com/api: HTTP Basic with the API key as user name
    and an empty password (401 otherwise); JSON ``{"urls": [...]}`` of zone URLs
    without a scheme, or ``{"tags": [...]}``; a body over 64 KB is 413.
    Answers ``{"status": "success"|"error", "description": ...}``.
    """

    MAX_BODY = 64 * 1024

    def routes(self, app: web.Application) -> None:
        app.router.add_delete("/zones/purgeurl/{zone}.json", self.purge_urls)
        app.router.add_delete("/zones/purgetag/{zone}.json", self.purge_tags)
        app.router.add_get("/zones/purge/{zone}.json", self.purge_zone)

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"status": "error", "description": message}, status=status)

    def _check(self, request: web.Request) -> web.Response | None:
        expected = base64.b64encode(f"{self.token}:".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return self._refuse(401, "Unauthorized")
        if request.match_info["zone"] != self.zone:
            return self._refuse(404, "Zone not found")
        return None

    async def _purge(self, request: web.Request, field_name: str) -> web.Response:
        if refused := self._check(request):
            return refused
        raw = await request.content.read(self.MAX_BODY + 1)
        if len(raw) > self.MAX_BODY:
            return self._refuse(413, "Maximum body size is 64 KB")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._refuse(400, "Invalid JSON")
        if not (isinstance(body, dict) and set(body) == {field_name}):
            return self._refuse(400, f"The {field_name} parameter is required")
        values = body[field_name]
        if not strings(values, 10_000):
            return self._refuse(400, f"{field_name} must be a list of strings")
        if field_name == "urls" and any("://" in v or "/" not in v for v in values):
            return self._refuse(400, "URLs are the zone URL and path, without a scheme")
        self.record(request, body)
        return web.json_response({"status": "success", "description": "Cache has been cleared."})

    async def purge_urls(self, request: web.Request) -> web.Response:
        return await self._purge(request, "urls")

    async def purge_tags(self, request: web.Request) -> web.Response:
        return await self._purge(request, "tags")

    async def purge_zone(self, request: web.Request) -> web.Response:
        if refused := self._check(request):
            return refused
        self.record(request)
        return web.json_response({"status": "success", "description": "Cache has been cleared."})


class FakeFastly(FakeCDN):
    """``POST /service/{id}/purge``, ``/service/{id}/purge_all`` and ``POST /purge/{url}``.

    From https://www.fastly.com/documentation/reference/api/purging/: the
    ``Fastly-Key`` header (401 otherwise); a bulk purge takes
    ``{"surrogate_keys": [...]}`` (or a ``Surrogate-Key`` header), at most 256
    keys; a URL purge names the cached URL without its scheme in the path.
    """

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/service/{service}/purge", self.purge_keys)
        app.router.add_post("/service/{service}/purge_all", self.purge_all)
        app.router.add_post("/purge/{url:.+}", self.purge_url)

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"msg": message, "detail": message}, status=status)

    def _check(self, request: web.Request, service: bool = True) -> web.Response | None:
        if request.headers.get("Fastly-Key") != self.token:
            return self._refuse(401, "Provided credentials are missing or invalid")
        if service and request.match_info["service"] != self.zone:
            return self._refuse(404, "Record not found")
        return None

    async def purge_keys(self, request: web.Request) -> web.Response:
        if refused := self._check(request):
            return refused
        if header := request.headers.get("Surrogate-Key"):
            keys: Any = header.split()
        else:
            body = await self.json_body(request)
            if not (isinstance(body, dict) and set(body) == {"surrogate_keys"}):
                return self._refuse(400, 'Expected {"surrogate_keys": [...]}')
            keys = body["surrogate_keys"]
        if not strings(keys, 256):
            return self._refuse(400, "surrogate_keys: 1 to 256 keys")
        self.record(request, {"surrogate_keys": keys})
        return web.json_response({key: f"id-{i}" for i, key in enumerate(keys)})

    async def purge_all(self, request: web.Request) -> web.Response:
        if refused := self._check(request):
            return refused
        self.record(request)
        return web.json_response({"status": "ok"})

    async def purge_url(self, request: web.Request) -> web.Response:
        if refused := self._check(request, service=False):
            return refused
        target = request.raw_path.split("?")[0][len("/purge/") :]
        if "://" in target or "/" not in target or target.startswith("/"):
            return self._refuse(400, "Expected /purge/<host>/<path>")
        self.record(request)
        return web.json_response({"status": "ok", "id": "purge-id"})


FAKES: dict[str, type[FakeCDN]] = {
    "cloudflare": FakeCloudflare,
    "bunny": FakeBunny,
    "keycdn": FakeKeyCDN,
    "fastly": FakeFastly,
}


class ThreadedFake:
    """A fake vendor API served from a thread with its own event loop, on a loopback port."""

    def __init__(self, fake: FakeCDN) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedFake:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.fake.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def url(self, root: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{root}"

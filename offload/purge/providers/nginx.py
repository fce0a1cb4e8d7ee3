"""Purges for the shipped nginx front: one ``PURGE`` per cached URL at its purge server.

``nginx/offload.conf`` caches by ``$host$request_uri``: the Host the client sent
(lowercased, port dropped) and the path and query exactly as sent. Its purge
server takes ``PURGE {nginx_purge_url}/{host}{path and query}`` and has the
cache purge module (https://github.com/FRiCKLE/ngx_cache_purge, Debian's
``libnginx-mod-http-cache-purge``, separate-location syntax) delete the entry
with the key ``{host}{path and query}``. The module answers 200 when it deleted
an entry and 404 when there was none (412 in some releases of the
nginx-modules/ngx_cache_purge fork); for a URL, all three mean the URL is not
cached any more, which is what a purge asks.

Which host: nginx cached the object under whatever Host its client sent. When
nginx is the CDN, that is the host of the CDN URL; when a CDN sits in front of
it, the CDN sends the origin's host name, one of the site's ``hostnames``. A URL
is therefore purged under each of them (a host that never cached it costs one
404). A ``*`` in ``hostnames`` stands for hosts nobody listed, which cannot be
purged: list the origin's host names.

Prefixes, tags and everything: the module purges several keys at once only with
a key ending in ``*``, and only in builds that support partial keys
(nginx-modules/ngx_cache_purge 2.5 and later, which answer 200 to them).
Debian's build (FRiCKLE's 2.3) takes the ``*`` literally and answers 404, so
such a purge raises PurgeRefused saying why, rather than reporting a purge that
did nothing. A tag becomes the key prefix it stands for (the site tag: every
key; ``site:folder``: the keys under ``folder/``, see ``http.caching.cache_tags``).

Requests: nginx is local, so there is no vendor rate limit to pace to; a batch
is BATCH_ITEMS URLs, sent at most CONCURRENCY at a time over the caller's
session (whose timeout is the drain's). Keys that need a wildcard go in batches
of their own, so one refused prefix never holds back the URLs beside it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from yarl import URL

from offload.config.settings import Site
from offload.manifest import PurgeItem
from offload.purge.providers.base import Provider, PurgeRefused, PurgeRetry

#: URL items per batch: one drain step's worth of loopback requests.
BATCH_ITEMS = 50
#: Requests in flight at once per batch.
CONCURRENCY = 8
#: What the module answers when the key was not cached (404; 412 in some fork releases).
NOT_CACHED = frozenset({404, 412})
#: Bytes of an answer read for an error message; the rest is dropped with the connection.
ANSWER_BYTES = 512
#: The characters offload leaves unencoded in a key's URL (``Offloader.cdn_url``).
KEY_SAFE = "/"


@dataclass(frozen=True)
class _Target:
    """One purge request: the key ``host + uri`` in nginx's cache."""

    host: str
    uri: str  # path and query as the client sent them, starting with "/"
    wildcard: bool  # uri ends in "*": purges every key that starts with the rest

    def describe(self) -> str:
        return f"{self.host}{self.uri}"


class NginxProvider(Provider):
    """Purges one site's URLs from the shipped nginx front's cache."""

    name = "nginx"

    def __init__(self, site: Site, session: aiohttp.ClientSession) -> None:
        if not site.nginx_purge_url:
            raise ValueError(f"site {site.name!r}: purge = 'nginx' needs nginx_purge_url")
        self.site = site
        self.session = session
        self._base = site.nginx_purge_url.rstrip("/")
        # For messages: the purge URL without the user:password a basic-auth front may need.
        base = URL(self._base)
        self._shown = str(base.with_user(None))
        self._password = base.password or ""
        self._hosts = tuple(h for h in site.hostnames if h != "*")
        self._cdn = site.cdn_url.rstrip("/")

    # -- batches -----------------------------------------------------------------------

    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        """URL items in batches of BATCH_ITEMS; every other item in a batch of its own.

        A prefix, a tag, everything and a URL that is not one may each be refused
        (see the module's docstring); alone, they hold back no other item.
        """
        urls: list[PurgeItem] = []
        alone: list[list[PurgeItem]] = []
        for item in dict.fromkeys(items):  # merges duplicates, keeps the order
            if item.kind == "url" and _is_http_url(item.value):
                urls.append(item)
            else:
                alone.append([item])
        batches = [urls[i : i + BATCH_ITEMS] for i in range(0, len(urls), BATCH_ITEMS)]
        return batches + alone

    def targets(self, item: PurgeItem) -> list[_Target]:
        """The cache keys ``item`` stands for, one per host it may be cached under."""
        if item.kind == "url":
            host, uri = self._split_url(item.value)
            return [_Target(h, uri, wildcard=False) for h in self._with(host)]
        prefix = self._key_prefix(item)
        if not self._hosts and not self._cdn:
            raise PurgeRefused(
                f"site {self.site.name!r} has no host names to purge under:"
                " set its hostnames (other than '*') or cdn_url"
            )
        cdn_host = urlsplit(self._cdn).hostname if self._cdn else None
        uri = "/" + quote(prefix, safe=KEY_SAFE) + "*"
        return [_Target(h, uri, wildcard=True) for h in self._with(cdn_host)]

    def _with(self, host: str | None) -> list[str]:
        return list(dict.fromkeys([*([host] if host else []), *self._hosts]))

    def _split_url(self, url: str) -> tuple[str, str]:
        """(host, path and query as sent) of an absolute URL of the site."""
        parts = urlsplit(url)
        if not _is_http_url(url) or parts.hostname is None:
            raise PurgeRefused(f"not an absolute http(s) URL: {url[:200]!r}")
        if self._cdn and url.startswith(self._cdn + "/"):
            # cdn_url + "/" + key: the origin's path is the key, whatever cdn_url's path.
            uri = url[len(self._cdn) :].partition("#")[0]
        else:
            uri = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return parts.hostname, uri

    def _key_prefix(self, item: PurgeItem) -> str:
        """The key prefix a prefix, tag or everything item stands for."""
        if item.kind == "prefix":
            return item.value.lstrip("/")
        if item.kind == "everything":
            return ""
        if item.kind == "tag":
            site_tag = quote(self.site.name, safe="!$&'()*+=@")
            if item.value == site_tag:
                return ""
            if item.value.startswith(site_tag + ":"):
                return unquote(item.value[len(site_tag) + 1 :]) + "/"
            raise PurgeRefused(f"not a tag of site {self.site.name!r}: {item.value[:200]!r}")
        raise PurgeRefused(f"cannot purge a {item.kind!r} item")

    # -- requests ----------------------------------------------------------------------

    async def send(self, batch: list[PurgeItem]) -> None:
        targets = [target for item in batch for target in self.targets(item)]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(target: _Target) -> None:
            async with gate:
                await self._purge(target)

        results = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        # A retry may still succeed, so it wins over a refusal; anything else is a bug.
        for kind in (PurgeRetry, PurgeRefused):
            for failure in failures:
                if isinstance(failure, kind):
                    raise failure
        if failures:
            raise failures[0]

    async def _purge(self, target: _Target) -> None:
        url = URL(f"{self._base}/{target.host}{target.uri}", encoded=True)
        try:
            async with self.session.request("PURGE", url, allow_redirects=False) as response:
                status = response.status
                answer = await response.content.read(ANSWER_BYTES)
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            reason = f"{type(error).__name__}: {error}"[:300].rstrip(": ")
            if self._password:
                reason = reason.replace(self._password, "***")
            raise PurgeRetry(f"nginx purge at {self._shown} failed: {reason}") from None
        if status == 200:
            return
        what = f"nginx purge of {target.describe()[:300]} at {self._shown}"
        if status in NOT_CACHED:
            if not target.wildcard:
                return  # nothing cached under this key: nothing to purge
            raise PurgeRefused(
                f"{what}: answered {status}; this cache purge module does not purge by"
                " prefix (a key ending in '*' needs nginx-modules/ngx_cache_purge 2.5"
                " or later; Debian's build is FRiCKLE's 2.3)"
            )
        if status == 429 or status >= 500:
            raise PurgeRetry(f"{what}: answered {status}", retry_after)
        if status == 403:
            raise PurgeRefused(
                f"{what}: answered 403; allow this host's address in the purge server"
                " of nginx/offload.conf"
            )
        if status == 405:
            raise PurgeRefused(
                f"{what}: answered 405; nginx_purge_url must name the purge server's"
                " /_offload/purge location"
            )
        text = answer.decode("utf-8", "replace").strip().splitlines()
        detail = f" ({text[0][:100]})" if text else ""
        raise PurgeRefused(f"{what}: answered {status}{detail}")

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

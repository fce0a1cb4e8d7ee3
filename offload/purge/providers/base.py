"""The purge provider interface, its two errors, and ``provider_for`` (a site's provider).

A provider turns outbox items into requests to one CDN's purge API. The drain
(``offload/purge/drain.py``) owns retries and give-ups; a provider only says,
by the error it raises, whether waiting can help (``PurgeRetry``: 429, 5xx,
timeouts, refused connections) or not (``PurgeRefused``: bad credentials, an
unknown zone, a request the API will never take). Neither error's text ever
holds a token or key: they end up in logs, metrics and the status page.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from offload.errors import ConfigError

if TYPE_CHECKING:
    import aiohttp

    from offload.config.settings import Site
    from offload.manifest import PurgeItem

T = TypeVar("T")


class PurgeRetry(Exception):
    """The purge may work later: rate limited, the API is down or slow, no connection."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PurgeRefused(Exception):
    """The API refused the purge for a reason waiting will not fix (credentials, zone id)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Run(Protocol):
    """Runs a blocking call in the bounded executor and awaits its result."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


class Provider(ABC):
    """One site's purge API: ``prepare`` makes request-sized batches, ``send`` sends one."""

    name: str

    @abstractmethod
    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        """Translate kinds the API lacks, merge duplicates, split to the per-request limits."""

    @abstractmethod
    async def send(self, batch: list[PurgeItem]) -> None:
        """Send one batch from ``prepare``; raise PurgeRetry or PurgeRefused when it fails."""

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing of their own
        """Release what the provider opened (the session is the caller's)."""


#: provider name -> (module, class) under offload.purge.providers.
PROVIDERS: dict[str, tuple[str, str]] = {
    "cloudflare": ("cloudflare", "CloudflareProvider"),
    "bunny": ("bunny", "BunnyProvider"),
    "keycdn": ("keycdn", "KeyCDNProvider"),
    "fastly": ("fastly", "FastlyProvider"),
    "cloudfront": ("cloudfront", "CloudFrontProvider"),
}


def provider_for(
    site: Site, *, session: aiohttp.ClientSession, run: Run, timeout: float | None = None
) -> Provider | None:
    """The site's provider, or None when ``site.purge`` is "none".

    ``timeout`` is ``purge_timeout``, seconds allowed for each API request (None:
    the session's own timeout, and 15 s for CloudFront's boto3 client). The nginx
    provider is its own module, imported by name so it plugs in when present.
    """
    if site.purge == "none":
        return None
    if site.purge == "nginx":
        return _nginx(site, session)
    if site.purge not in PROVIDERS:
        raise ConfigError(f"sites.{site.name}.purge: no purge provider named {site.purge!r}")
    module_name, class_name = PROVIDERS[site.purge]
    module = importlib.import_module(f"offload.purge.providers.{module_name}")
    provider: Provider = getattr(module, class_name)(
        site, session=session, run=run, timeout=timeout
    )
    return provider


def _nginx(site: Site, session: aiohttp.ClientSession) -> Provider:
    try:
        module: Any = importlib.import_module("offload.purge.providers.nginx")
    except ModuleNotFoundError as exc:
        if exc.name != "offload.purge.providers.nginx":
            raise
        raise ConfigError(
            f"sites.{site.name}.purge: the nginx purge provider is not part of this build"
        ) from None
    provider: Provider = module.NginxProvider(site, session)
    return provider

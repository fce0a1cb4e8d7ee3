"""Stand-in for the providers branch's ``base.py``: the Provider interface of store_api.md.

The providers branch owns this module (with ``provider_for``); this copy holds
only what ``nginx.py`` builds on, so the nginx provider can be written and
tested before the branches meet. Theirs replaces it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from offload.manifest import PurgeItem


class PurgeRetry(Exception):
    """429, 5xx, timeout, connection refused: the same purge may succeed later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PurgeRefused(Exception):
    """A 4xx other than 429: waiting will not help (bad credentials, bad zone, bad item)."""


class Provider(ABC):
    """One CDN's purge API for one site."""

    name: str

    @abstractmethod
    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        """Request-sized batches: kinds translated, duplicates merged, limits kept."""

    @abstractmethod
    async def send(self, batch: list[PurgeItem]) -> None:
        """Send one batch; raise PurgeRetry or PurgeRefused when it fails."""

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing
        """Release what the provider holds (the session is its caller's)."""

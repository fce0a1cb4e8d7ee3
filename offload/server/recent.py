"""What the status page shows of the webhooks: the last ones answered and the files that failed.

Kept in memory, per worker, bounded (``KEEP`` of each): a restart forgets them,
the log keeps them for good.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

KEEP = 50


@dataclass(frozen=True)
class WebhookEntry:
    at: float
    site: str
    hook: str
    attachment: str
    status: int
    summary: str
    duration_ms: float


@dataclass(frozen=True)
class FailedItem:
    at: float
    site: str
    path: str
    error: str


@dataclass
class RecentWebhooks:
    """The last ``KEEP`` webhooks answered and the last ``KEEP`` files that failed."""

    webhooks: deque[WebhookEntry] = field(default_factory=lambda: deque(maxlen=KEEP))
    failed: deque[FailedItem] = field(default_factory=lambda: deque(maxlen=KEEP))

    def answered(
        self,
        site: str,
        hook: str,
        attachment: str,
        status: int,
        summary: str,
        duration_ms: float,
    ) -> None:
        self.webhooks.appendleft(
            WebhookEntry(time.time(), site, hook, attachment, status, summary, duration_ms)
        )

    def failed_file(self, site: str, path: str, error: str) -> None:
        self.failed.appendleft(FailedItem(time.time(), site, path, error))

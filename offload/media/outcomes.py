"""What a webhook answers: each file's fate, the CDN URLs, and the HTTP status they call for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offload.manifest import PurgeItem


@dataclass
class Item:
    """What happened to one file."""

    path: str
    status: str  # uploaded | unchanged | pending | failed | deleted
    key: str | None = None
    url: str | None = None
    size: int | None = None
    etag: str | None = None
    error: str | None = None
    #: A failure the request caused (a key no storage takes), not the storage's.
    refused: bool = field(default=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "key": self.key,
            "url": self.url,
            "size": self.size,
            "etag": self.etag,
            "status": self.status,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass
class Outcome:
    """The answer to one webhook."""

    site: str
    items: list[Item] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    #: The attachment the webhook named, for the log line (not in the answer).
    attachment_id: str | None = None
    #: What the change put in the purge outbox (not in the answer): the webhook
    #: waits a little for them to be sent.
    purges: list[PurgeItem] = field(default_factory=list)
    #: The original's transform widths and URL template (in the answer when set).
    transforms: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return any(item.status == "failed" for item in self.items)

    @property
    def status(self) -> int:
        """The HTTP status to answer with: 200, 422 when every failure is the
        request's own (nothing to retry), else 502 (storage failed; a retry may work)."""
        failures = [item for item in self.items if item.status == "failed"]
        if not failures:
            return 200
        return 422 if all(item.refused for item in failures) else 502

    def as_json(self) -> dict[str, Any]:
        answer = {
            "site": self.site,
            "items": [item.as_json() for item in self.items],
            "urls": self.urls,
        }
        if self.transforms is not None:
            answer["transforms"] = self.transforms
        return answer

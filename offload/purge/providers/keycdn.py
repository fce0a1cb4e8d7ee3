"""KeyCDN: ``DELETE /zones/purgeurl/{id}.json`` and ``/zones/purgetag/{id}.json``.

Followed: https://www.keycdn.com/api (Authentication, Purge Zone Cache, Purge
Zone URL, Purge Zone Tag, Rate Limiting, HTTP status codes).

- Base URL ``https://api.keycdn.com``; HTTP Basic authentication with the API
  key as the user name and an empty password.
- URLs: ``DELETE /zones/purgeurl/{keycdn_zone_id}.json`` with
  ``{"urls": ["cdn.example.com/path", ...]}`` (host and path, no scheme).
- Tags: ``DELETE /zones/purgetag/{keycdn_zone_id}.json`` with ``{"tags": [...]}``;
  KeyCDN reads them from the ``Cache-Tag`` header.
- The whole zone: ``GET /zones/purge/{keycdn_zone_id}.json``; used for
  everything and for folders only when the site sends no ``Cache-Tag`` (KeyCDN
  has no prefix purge).
- A request body is at most 64 KB (413 above): batches stay under 60,000
  bytes and 100 URLs or tags.
- Rate: 20 requests a minute per key, the lowest limit KeyCDN has published
  (a bucket of 20 refilled at one every 3 seconds).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from offload.manifest import PurgeItem
from offload.purge.providers.api import HttpProvider
from offload.purge.providers.items import (
    host_path,
    sends_tag_header,
    tag_or_everything,
    unique,
)
from offload.purge.providers.pacing import TokenBucket

MAX_PER_REQUEST = 100
MAX_BODY_BYTES = 60_000


def batch_by_size(values: list[PurgeItem], field: str) -> list[list[PurgeItem]]:
    """Split so each JSON body ``{field: [...]}`` stays under the size and count limits."""
    batches: list[list[PurgeItem]] = []
    current: list[PurgeItem] = []
    size = len(json.dumps({field: []}))
    for item in values:
        grow = len(json.dumps(item.value)) + 2
        if current and (len(current) >= MAX_PER_REQUEST or size + grow > MAX_BODY_BYTES):
            batches.append(current)
            current, size = [], len(json.dumps({field: []}))
        current.append(item)
        size += grow
    if current:
        batches.append(current)
    return batches


class KeyCDNProvider(HttpProvider):
    name = "keycdn"
    base_url = "https://api.keycdn.com"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bucket = TokenBucket(20 / 60, 20, what="API requests")
        self.tags = sends_tag_header(self.site, "Cache-Tag")

    def secret(self) -> str:
        return self.site.keycdn_api_key.reveal()

    def _auth(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.secret()}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def _translate(self, item: PurgeItem) -> PurgeItem:
        site = self.site
        if item.kind == "url":
            return PurgeItem(item.site, "url", host_path(item.value))
        return tag_or_everything(site, item, tags=self.tags)

    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        translated = unique(self._translate(item) for item in items)
        urls = [item for item in translated if item.kind == "url"]
        tags = [item for item in translated if item.kind == "tag"]
        zone = [[item] for item in translated if item.kind == "everything"]
        return zone + batch_by_size(urls, "urls") + batch_by_size(tags, "tags")

    async def send(self, batch: list[PurgeItem]) -> None:
        if not batch:
            return
        zone = self.site.keycdn_zone_id
        kind = batch[0].kind
        if kind == "everything":
            url, method, body = f"{self.api}/zones/purge/{zone}.json", "GET", None
        else:
            field, path = ("urls", "purgeurl") if kind == "url" else ("tags", "purgetag")
            url, method = f"{self.api}/zones/{path}/{zone}.json", "DELETE"
            body = {field: [item.value for item in batch]}
        await self.request(method, url, bucket=self.bucket, headers=self._auth(), body=body)

"""Cloudflare: ``POST /zones/{zone_id}/purge_cache`` with a Bearer API token.

Followed: https://developers.cloudflare.com/api/resources/cache/methods/purge/
and https://developers.cloudflare.com/cache/how-to/purge-cache/ (limits).

- Base URL ``https://api.cloudflare.com/client/v4``; header
  ``Authorization: Bearer <cloudflare_api_token>``; JSON body, one of
  ``{"files": [url, ...]}``, ``{"tags": [...]}``, ``{"prefixes": ["host/path", ...]}``,
  ``{"purge_everything": true}``; one kind per request.
- At most 100 URLs, tags or prefixes per request (every plan).
- Rate, per account: single-file (URL) purges 800 URLs a second on Free
  (the lowest plan: a bucket of 800 URL tokens refilled at 800/s); tag, prefix
  and purge-everything requests 5 a minute with a bucket of 25 (Free again).
- Tags are read from the origin's ``Cache-Tag`` header. A site whose origin
  does not send it (``cache_tag_header`` set to something else) purges folders
  by prefix and everything by the site's prefix instead.
"""

from __future__ import annotations

from typing import Any

from offload.manifest import PurgeItem
from offload.purge.providers.api import HttpProvider
from offload.purge.providers.items import (
    cdn_url,
    chunks,
    folder_of_tag,
    folder_tag,
    host_path,
    sends_tag_header,
    site_tag,
    unique,
)
from offload.purge.providers.pacing import TokenBucket

MAX_PER_REQUEST = 100
#: Body key of each request kind.
FIELDS = {"url": "files", "tag": "tags", "prefix": "prefixes"}


class CloudflareProvider(HttpProvider):
    name = "cloudflare"
    base_url = "https://api.cloudflare.com/client/v4"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.urls = TokenBucket(800, 800, what="URLs")
        self.flex = TokenBucket(5 / 60, 25, what="tag, prefix and purge-everything requests")
        self.tags = sends_tag_header(self.site, "Cache-Tag")

    def secret(self) -> str:
        return self.site.cloudflare_api_token.reveal()

    def _translate(self, item: PurgeItem) -> PurgeItem:
        """The item as this zone can purge it: a tag, a URL prefix, a URL or everything."""
        site = self.site
        if item.kind == "tag" and not self.tags:
            folder = folder_of_tag(site, item.value)
            if folder is not None:
                return self._translate(PurgeItem(item.site, "prefix", folder))
        if item.kind == "prefix":
            if not item.value.strip("/"):
                return self._translate(PurgeItem(item.site, "everything", ""))
            if self.tags:
                return PurgeItem(item.site, "tag", folder_tag(site, item.value))
            return PurgeItem(item.site, "prefix", host_path(cdn_url(site, item.value)))
        if item.kind == "everything":
            if self.tags:
                return PurgeItem(item.site, "tag", site_tag(site))
            if site.prefix:
                return PurgeItem(item.site, "prefix", host_path(cdn_url(site, site.prefix)))
        return item

    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        translated = unique(self._translate(item) for item in items)
        batches = [[item] for item in translated if item.kind == "everything"]
        for kind in ("url", "tag", "prefix"):
            same = [item for item in translated if item.kind == kind]
            batches.extend(chunks(same, MAX_PER_REQUEST))
        return batches

    async def send(self, batch: list[PurgeItem]) -> None:
        if not batch:
            return
        kind = batch[0].kind
        body: dict[str, Any]
        if kind == "everything":
            body, bucket, cost = {"purge_everything": True}, self.flex, 1
        else:
            body = {FIELDS[kind]: [item.value for item in batch]}
            bucket, cost = (self.urls, len(batch)) if kind == "url" else (self.flex, 1)
        await self.request(
            "POST",
            f"{self.api}/zones/{self.site.cloudflare_zone_id}/purge_cache",
            bucket=bucket,
            cost=cost,
            headers={"Authorization": f"Bearer {self.secret()}"},
            body=body,
        )

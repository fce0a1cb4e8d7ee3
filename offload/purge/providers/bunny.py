"""Bunny: ``POST /purge?url=...`` per URL, ``POST /pullzone/{id}/purgeCache`` per tag.

Followed: https://docs.bunny.net/reference/purgepublic_indexpost (Purge URL),
https://docs.bunny.net/cdn/purge-cache (Purge Cache by tag) and
https://docs.bunny.net/docs/cdn-api-purge-rate-limits (rate limits).

- Base URL ``https://api.bunny.net``; header ``AccessKey: <bunny_access_key>``
  (the account API key).
- One URL per request: ``POST /purge?url=<url>`` (without ``async``, so the
  answer comes once the purge is done). A URL ending in ``*`` purges every URL
  starting with it: a folder is ``cdn_url/folder/*``.
- One tag per request: ``POST /pullzone/{bunny_pull_zone_id}/purgeCache`` with
  ``{"CacheTag": tag}``. Bunny reads tags from the ``CDN-Tag`` header, so a
  site purges by tag only when it sends that header (``cache_tag_header =
  "CDN-Tag"``); otherwise folders and everything go by wildcard URL.
- Rate, per account and purge type: exact URLs 5 a second with a burst of
  120; wildcard URLs 0.5 a second with a burst of 20. Tag purges have no
  published limit of their own: they get the wildcard bucket's.
"""

from __future__ import annotations

from typing import Any

from offload.manifest import PurgeItem
from offload.purge.providers.api import HttpProvider
from offload.purge.providers.items import (
    cdn_url,
    folder_of_tag,
    folder_tag,
    sends_tag_header,
    site_tag,
    unique,
)
from offload.purge.providers.pacing import TokenBucket


class BunnyProvider(HttpProvider):
    name = "bunny"
    base_url = "https://api.bunny.net"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exact = TokenBucket(5, 120, what="exact URL purges")
        self.wildcard = TokenBucket(0.5, 20, what="wildcard and tag purges")
        self.tags = sends_tag_header(self.site, "CDN-Tag")

    def secret(self) -> str:
        return self.site.bunny_access_key.reveal()

    def _translate(self, item: PurgeItem) -> PurgeItem:
        """The item as a URL (``*`` at the end for a folder) or a tag Bunny can purge."""
        site = self.site
        if item.kind == "tag" and not self.tags:
            folder = folder_of_tag(site, item.value)
            if folder is not None:
                return self._translate(PurgeItem(item.site, "prefix", folder))
        if item.kind == "everything":
            if self.tags:
                return PurgeItem(item.site, "tag", site_tag(site))
            return self._translate(PurgeItem(item.site, "prefix", site.prefix))
        if item.kind == "prefix":
            if self.tags and item.value.strip("/"):
                return PurgeItem(item.site, "tag", folder_tag(site, item.value))
            folder = cdn_url(site, item.value)
            return PurgeItem(item.site, "url", folder + ("*" if folder.endswith("/") else "/*"))
        return item

    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        return [[item] for item in unique(self._translate(item) for item in items)]

    async def send(self, batch: list[PurgeItem]) -> None:
        headers = {"AccessKey": self.secret()}
        for item in batch:
            if item.kind == "tag":
                await self.request(
                    "POST",
                    f"{self.api}/pullzone/{self.site.bunny_pull_zone_id}/purgeCache",
                    bucket=self.wildcard,
                    headers=headers,
                    body={"CacheTag": item.value},
                )
            else:
                wild = item.value.endswith("*")
                await self.request(
                    "POST",
                    f"{self.api}/purge",
                    bucket=self.wildcard if wild else self.exact,
                    headers=headers,
                    params={"url": item.value},
                )

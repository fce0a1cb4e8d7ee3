"""Fastly: surrogate keys by ``POST /service/{id}/purge``, URLs by ``POST /purge/{url}``.

Followed: https://www.fastly.com/documentation/reference/api/purging/ and
https://docs.fastly.com/api/ (authentication and rate limiting).

- Base URL ``https://api.fastly.com``; header ``Fastly-Key: <fastly_api_token>``.
- Surrogate keys: ``POST /service/{fastly_service_id}/purge`` with
  ``{"surrogate_keys": [...]}``, at most 256 keys per request. Fastly reads
  keys from the origin's ``Surrogate-Key`` header.
- One URL per request: ``POST /purge/{host}/{path}`` (the cached URL without
  its scheme).
- Everything: ``POST /service/{fastly_service_id}/purge_all``, used only when
  the site sends no ``Surrogate-Key`` (otherwise the site's key is purged, which
  leaves other sites of the service alone).
- Rate: URL and key purges are outside the API's 1,000-an-hour limit and allowed
  100,000 an hour (a bucket of 100 refilled at 27 a second); purge-all counts
  against the 1,000 an hour (a bucket of 10 refilled at 1,000 an hour).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from offload.manifest import PurgeItem
from offload.purge.providers.api import HttpProvider
from offload.purge.providers.items import (
    chunks,
    host_path,
    sends_tag_header,
    tag_or_everything,
    unique,
)
from offload.purge.providers.pacing import TokenBucket

MAX_KEYS_PER_REQUEST = 256
#: Kept as they are in a URL path: what is already percent-encoded stays so.
PATH_SAFE = "/:@!$&'()*+,;=%~"


class FastlyProvider(HttpProvider):
    name = "fastly"
    base_url = "https://api.fastly.com"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.purges = TokenBucket(100_000 / 3600, 100, what="URL and key purges")
        self.purge_all = TokenBucket(1000 / 3600, 10, what="purge-all requests")
        self.keys = sends_tag_header(self.site, "Surrogate-Key")

    def secret(self) -> str:
        return self.site.fastly_api_token.reveal()

    def _translate(self, item: PurgeItem) -> PurgeItem:
        return tag_or_everything(self.site, item, tags=self.keys)

    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        translated = unique(self._translate(item) for item in items)
        keys = [item for item in translated if item.kind == "tag"]
        urls = [[item] for item in translated if item.kind == "url"]
        purge_all = [[item] for item in translated if item.kind == "everything"]
        return purge_all + list(chunks(keys, MAX_KEYS_PER_REQUEST)) + urls

    async def send(self, batch: list[PurgeItem]) -> None:
        if not batch:
            return
        headers = {"Fastly-Key": self.secret(), "Accept": "application/json"}
        service = f"{self.api}/service/{self.site.fastly_service_id}"
        kind = batch[0].kind
        if kind == "everything":
            await self.request(
                "POST", f"{service}/purge_all", bucket=self.purge_all, headers=headers
            )
        elif kind == "tag":
            keys = [item.value for item in batch]
            await self.request(
                "POST",
                f"{service}/purge",
                bucket=self.purges,
                headers=headers,
                body={"surrogate_keys": keys},
            )
        else:
            for item in batch:
                await self.request(
                    "POST",
                    f"{self.api}/purge/{quote(host_path(item.value), safe=PATH_SAFE)}",
                    bucket=self.purges,
                    headers=headers,
                    encoded=True,
                )

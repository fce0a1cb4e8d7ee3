"""CloudFront: ``CreateInvalidation`` on paths, through boto3 in the executor.

Followed: https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_CreateInvalidation.html
and https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/InvalidationLimits.html
(with .../invalidation-specifying-objects.html for the path rules).

- ``create_invalidation(DistributionId, InvalidationBatch={"Paths": {"Quantity",
  "Items"}, "CallerReference"})``; the CallerReference is new for every request
  (a UUID), as CloudFront requires, so a retried batch is a new invalidation.
- Paths are URL paths starting with ``/``, percent-encoded as the CDN URL has
  them; ``*`` may end a path only. A folder is ``/folder/*``; everything is
  ``/<site prefix>/*`` (``/*`` for a site with no prefix). CloudFront has no tags:
  a site tag or folder tag becomes its folder's path.
- Limits per distribution: 3,000 file paths in progress at once, and 15
  wildcard paths; batches hold at most 3,000 file paths or 15 wildcard paths.
  A batch over what is still in progress gets TooManyInvalidationsInProgress,
  which is retried after a minute (invalidations finish in minutes).
- Rate: CloudFront publishes no request rate for CreateInvalidation; a bucket
  of 5 refilled at one a second keeps a burst of batches from its throttling,
  which (``Throttling``) is retried.
- Credentials come from the standard boto3 chain; ``purge_api_url`` is the
  client's ``endpoint_url``. The client is made on first use, in the executor.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from offload.config.settings import Site
from offload.manifest import PurgeItem
from offload.purge.providers.base import Provider, PurgeRefused, PurgeRetry, Run
from offload.purge.providers.items import cdn_url, chunks, folder_of_tag, unique
from offload.purge.providers.pacing import TokenBucket

MAX_FILE_PATHS = 3000
MAX_WILDCARD_PATHS = 15
#: Error codes that waiting can fix.
RETRY_CODES = {
    "TooManyInvalidationsInProgress",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
}
#: Seconds before a batch over the in-progress limit is tried again.
IN_PROGRESS_WAIT = 60.0
PATH_SAFE = "/:@!$&'()*+,;=%~"
#: Seconds per boto3 attempt when the caller gives no purge_timeout.
DEFAULT_TIMEOUT = 15.0


def url_path(url: str) -> str:
    """The path of a CDN URL, percent-encoded (already encoded characters stay so)."""
    return quote(urlsplit(url).path or "/", safe=PATH_SAFE)


def folder_path(site: Site, folder: str) -> str:
    """``/folder/*`` under the CDN URL's own path."""
    return url_path(cdn_url(site, folder)).rstrip("/") + "/*"


class CloudFrontProvider(Provider):
    name = "cloudfront"

    def __init__(
        self,
        site: Site,
        *,
        session: aiohttp.ClientSession,
        run: Run,
        timeout: float | None = None,
    ) -> None:
        self.site, self.run = site, run
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self.bucket = TokenBucket(1, 5, what="invalidation requests")
        self._client: Any = None

    def _translate(self, item: PurgeItem) -> PurgeItem:
        site = self.site
        if item.kind == "url":
            return PurgeItem(item.site, "path", url_path(item.value))
        if item.kind == "tag":
            folder = folder_of_tag(site, item.value)
            if folder is None:
                return item  # not one of the site's tags: send() refuses it
            return self._translate(PurgeItem(item.site, "prefix", folder or site.prefix))
        if item.kind == "everything":
            return PurgeItem(item.site, "path", folder_path(site, site.prefix))
        return PurgeItem(item.site, "path", folder_path(site, item.value))

    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        translated = unique(self._translate(item) for item in items)
        files = [item for item in translated if item.kind == "path" and "*" not in item.value]
        wild = [item for item in translated if item.kind == "path" and "*" in item.value]
        other = [[item] for item in translated if item.kind != "path"]
        return list(chunks(files, MAX_FILE_PATHS)) + list(chunks(wild, MAX_WILDCARD_PATHS)) + other

    def _make_client(self) -> Any:
        config = Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"mode": "standard", "max_attempts": 2},
        )
        options = {"endpoint_url": self.site.purge_api_url} if self.site.purge_api_url else {}
        return boto3.session.Session().client("cloudfront", config=config, **options)

    async def send(self, batch: list[PurgeItem]) -> None:
        if not batch:
            return
        if any(item.kind != "path" for item in batch):
            raise PurgeRefused(f"cloudfront: cannot purge by tag: {batch[0].value[:80]!r}")
        await self.bucket.take()
        paths = [item.value for item in batch]
        await self.run(lambda: self._invalidate(paths))

    def _invalidate(self, paths: list[str]) -> None:
        try:
            if self._client is None:
                self._client = self._make_client()
            self._client.create_invalidation(
                DistributionId=self.site.cloudfront_distribution_id,
                InvalidationBatch={
                    "Paths": {"Quantity": len(paths), "Items": paths},
                    "CallerReference": f"offload-{uuid.uuid4().hex}",
                },
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            reason = f"cloudfront: {code or 'error'}: {str(error.get('Message', ''))[:150]}"
            if code in RETRY_CODES or status == 429 or status >= 500:
                wait = IN_PROGRESS_WAIT if code == "TooManyInvalidationsInProgress" else None
                raise PurgeRetry(reason, retry_after=wait) from None
            raise PurgeRefused(reason) from None
        except (NoCredentialsError, PartialCredentialsError, ParamValidationError) as exc:
            raise PurgeRefused(f"cloudfront: {exc}") from None
        except (BotoConnectionError, BotoCoreError) as exc:
            raise PurgeRetry(f"cloudfront: {type(exc).__name__}: {exc}") from None

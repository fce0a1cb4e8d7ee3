"""How the HTTP purge APIs' answers become ``PurgeRetry``, ``PurgeRefused`` or success.

One place for the mapping every vendor shares: 2xx done; 429 and 5xx, timeouts
and connection errors -> ``PurgeRetry`` (with the Retry-After seconds or
HTTP-date the API sent); any other status -> ``PurgeRefused`` with a short
reason from the vendor's JSON error. Redirects are not followed: a purge API
that redirects is misconfigured. Only the first few KiB of an error body are
read, and every reason has the provider's secret blanked out of it.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from offload.config.settings import Site
from offload.purge.providers.base import Provider, PurgeRefused, PurgeRetry, Run
from offload.purge.providers.pacing import TokenBucket

#: Bytes of an error answer read for its message.
ERROR_BODY_BYTES = 4096
#: Characters of the vendor's message kept in a reason.
REASON_CHARS = 200


def retry_after(headers: CIMultiDictProxy[str], now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP-date); None if absent or bad."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_message(body: bytes) -> str:
    """The vendor's own words from a JSON error body, or its first line of text."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message", ""))
        for key in ("message", "Message", "description", "msg", "detail", "error"):
            if data.get(key):
                return str(data[key])
    return ""


class HttpProvider(Provider):
    """A provider speaking JSON over HTTPS with one secret in a header."""

    #: The vendor's API base URL; the site's ``purge_api_url`` replaces it.
    base_url: str

    def __init__(
        self,
        site: Site,
        *,
        session: aiohttp.ClientSession,
        run: Run,
        timeout: float | None = None,
    ) -> None:
        self.site = site
        self.session = session
        self.run = run
        #: Seconds per request; None: the session's own timeout.
        self.timeout = timeout
        self.api = (site.purge_api_url or self.base_url).rstrip("/")

    def secret(self) -> str:
        """The credential this provider sends, blanked out of every reason it gives."""
        return ""

    def redact(self, text: str) -> str:
        secret = self.secret()
        text = text.replace(secret, "****") if secret else text
        text = " ".join(text.split())
        return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."

    async def request(
        self,
        method: str,
        url: str,
        *,
        bucket: TokenBucket,
        cost: float = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        encoded: bool = False,
    ) -> None:
        """One API request, paced by ``bucket``; returns on 2xx, else raises."""
        await bucket.take(cost)
        target: Any = URL(url, encoded=True) if encoded else url
        options: dict[str, Any] = {}
        if self.timeout is not None:
            options["timeout"] = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with self.session.request(
                method,
                target,
                headers=headers,
                json=body,
                params=params,
                allow_redirects=False,
                raise_for_status=False,
                **options,
            ) as response:
                if 200 <= response.status < 300:
                    return
                text = await response.content.read(ERROR_BODY_BYTES)
                self._fail(response.status, response.headers, text, bucket)
        except TimeoutError:
            total = self.timeout if self.timeout is not None else self.session.timeout.total
            within = f" within {total:g}s" if total else ""
            raise PurgeRetry(f"{self.name}: no answer{within}") from None
        except aiohttp.ClientError as exc:
            reason = self.redact(f"{self.name}: {type(exc).__name__}: {exc}")
            raise PurgeRetry(reason) from None

    def _fail(
        self, status: int, headers: CIMultiDictProxy[str], body: bytes, bucket: TokenBucket
    ) -> None:
        message = error_message(body)
        reason = self.redact(f"{self.name}: HTTP {status}" + (f": {message}" if message else ""))
        if status == 429 or status >= 500:
            wait = retry_after(headers)
            if status == 429 and wait is not None:
                bucket.pause(wait)
            raise PurgeRetry(reason, retry_after=wait)
        raise PurgeRefused(reason)

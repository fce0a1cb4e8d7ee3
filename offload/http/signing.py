"""HMAC-SHA256 signatures for signed origin URLs and signed webhook bodies.

Signed URL: ``<path>?expires=<unix seconds>&sig=<hex>``, where ``sig`` is the
HMAC of ``f"{expires}:{path}"`` and ``path`` is the URL path exactly as
requested, still percent-encoded, without the query. The link works while the
clock is before ``expires``. Only the canonical form verifies: lowercase hex,
no leading zeros or signs in ``expires``, so a CDN cannot be made to cache many
spellings of one signed link.

Signed webhook: headers ``X-Offload-Timestamp: <unix seconds>`` and
``X-Offload-Signature: sha256=<hex>``, the HMAC of ``timestamp + "." + body``.
A timestamp further than ``tolerance`` seconds from now, either way, is
rejected; inside that window a replay is possible, which is why webhook
requests are idempotent.

The verifiers return None for a valid signature, else a short reason fit for a
log line or a 401/403 body. They never raise on what a client sent, and no
returned string or exception ever contains the secret. Cheap checks come
first, so an expired link or a stale webhook costs no HMAC. Text is UTF-8
(lone surrogates pass through rather than raise).
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import re
import time

BODY_SIGNATURE_PREFIX = "sha256="

# Unix seconds as a client may send them: ASCII digits, short enough to be a date.
_MAX_TIMESTAMP_DIGITS = 20
# What may appear unescaped in a URL path (RFC 3986 pchar and "/"), plus %XX escapes.
_ENCODED_PATH = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _require_secret(secret: str) -> None:
    if not secret:
        raise ValueError("the signing secret is empty")


def _hmac_hex(secret: str, *parts: bytes) -> str:
    """Fed in parts, so a large body is hashed where it lies rather than copied."""
    _require_secret(secret)
    mac = hmac.new(_utf8(secret), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.hexdigest()


def _unix_seconds(text: object) -> int | None:
    """The value of a decimal timestamp as sent, or None when it is not one."""
    if (
        isinstance(text, str)
        and 0 < len(text) <= _MAX_TIMESTAMP_DIGITS
        and text.isascii()
        and text.isdigit()
    ):
        return int(text)
    return None


def _same_digest(expected: str, given: object) -> bool:
    # compare_digest raises TypeError on non-ASCII str, so such junk is simply unequal.
    return isinstance(given, str) and given.isascii() and hmac.compare_digest(expected, given)


# -- signed URLs -------------------------------------------------------------------


def sign_url_path(secret: str, path: str, expires: int) -> str:
    """The hex signature of ``path`` (percent-encoded, no query) valid until ``expires``."""
    expires = operator.index(expires)
    if expires < 0:
        raise ValueError(f"expires must be a Unix time in seconds, not {expires}")
    return _hmac_hex(secret, _utf8(f"{expires}:{path}"))


def signed_url(base_url: str, path: str, secret: str, expires: int) -> str:
    """``base_url + path + "?expires=...&sig=..."``.

    ``base_url`` is the scheme and host the link goes to (the CDN or the
    origin); ``path`` is the percent-encoded URL path the origin will see, with
    a leading "/" added when missing. Quote a raw key first, e.g. with
    ``urllib.parse.quote(key)``: a path with spaces, "?", "#" or non-ASCII
    text is a ValueError, because a client would not send it as it was signed.
    """
    if not path.startswith("/"):
        path = "/" + path
    if not _ENCODED_PATH.fullmatch(path):
        raise ValueError(f"the path is not percent-encoded (use urllib.parse.quote): {path!r}")
    sig = sign_url_path(secret, path, expires)
    return f"{base_url.rstrip('/')}{path}?expires={operator.index(expires)}&sig={sig}"


def verify_url_signature(
    secret: str, path: str, expires: str | None, sig: str | None, *, now: float | None = None
) -> str | None:
    """None when ``sig`` signs ``path`` until ``expires`` and that time is still ahead.

    Otherwise one of "missing signature" (either parameter absent or empty),
    "malformed expires", "expired", "bad signature". An empty secret is a
    ValueError: it is a configuration mistake, not a client's.
    """
    _require_secret(secret)
    if not expires or not sig:
        return "missing signature"
    deadline = _unix_seconds(expires)
    if deadline is None:
        return "malformed expires"
    if (time.time() if now is None else now) >= deadline:
        return "expired"
    # Signed over the text as sent: "0017..." is not the same link as "17...".
    expected = _hmac_hex(secret, _utf8(f"{expires}:{path}"))
    return None if _same_digest(expected, sig) else "bad signature"


# -- signed webhook bodies -----------------------------------------------------------


def sign_body(secret: str, timestamp: str, body: bytes) -> str:
    """``"sha256=<hex>"``: the HMAC of ``timestamp + "." + body``."""
    return BODY_SIGNATURE_PREFIX + _hmac_hex(secret, _utf8(timestamp), b".", body)


def verify_body_signature(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = 300,
) -> str | None:
    """None when ``signature`` signs ``timestamp`` and ``body`` and the timestamp is fresh.

    Otherwise one of "missing timestamp", "missing signature", "malformed
    timestamp", "stale timestamp" (more than ``tolerance`` seconds from now,
    either way), "bad signature". An empty secret is a ValueError.
    """
    verifier = BodyVerifier(secret, timestamp, signature, now=now, tolerance=tolerance)
    if verifier.problem is None:
        verifier.update(body)
    return verifier.result()


class BodyVerifier:
    """``verify_body_signature`` for a body that arrives in chunks (a streamed upload).

    The headers are checked at once, so ``problem`` says before any byte is
    read whether the request can still be valid; ``update`` feeds the body and
    ``result`` gives the verdict.
    """

    def __init__(
        self,
        secret: str,
        timestamp: str | None,
        signature: str | None,
        *,
        now: float | None = None,
        tolerance: int = 300,
    ) -> None:
        _require_secret(secret)
        self._signature = signature
        self._mac = hmac.new(_utf8(secret), digestmod=hashlib.sha256)
        self.problem: str | None = None
        sent = _unix_seconds(timestamp)
        if not timestamp:
            self.problem = "missing timestamp"
        elif not signature:
            self.problem = "missing signature"
        elif sent is None:
            self.problem = "malformed timestamp"
        elif abs((time.time() if now is None else now) - sent) > tolerance:
            self.problem = "stale timestamp"
        else:
            self._mac.update(_utf8(timestamp) + b".")

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._mac.update(chunk)

    def result(self) -> str | None:
        if self.problem is not None:
            return self.problem
        expected = BODY_SIGNATURE_PREFIX + self._mac.hexdigest()
        return None if _same_digest(expected, self._signature) else "bad signature"

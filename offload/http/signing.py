"""HMAC-SHA256 signatures for signed origin URLs and signed webhook bodies.

Signed URL: ``<path>?expires=<unix seconds>&sig=<hex>``, where ``sig`` is the
HMAC of ``f"{expires}:{path}"`` and ``path`` is the URL path exactly as
requested, still percent-encoded, without the query. The link works while the
clock is before ``expires``. Only the canonical form verifies: lowercase hex,
no leading zeros or signs in ``expires``, so a CDN cannot be made to cache many
spellings of one signed link.

Signed webhook request (scheme v2): headers ``X-Offload-Timestamp: <unix
seconds>``, ``X-Offload-Content-SHA256: <hex SHA-256 of the raw body>`` and
``X-Offload-Signature: sha256=<hex>``, the HMAC of
``{timestamp}.{METHOD}.{target}.{content sha256}``, where ``target`` is the
request target as sent (path and query). The signature binds the request to
its endpoint, site, query and body, yet can be checked from the headers alone,
before a byte of the body is read; the body is then checked against the
declared hash as it streams (``ContentDigest``). A timestamp further than
``tolerance`` seconds from now, either way, is rejected; inside that window the
server keeps the signatures it has taken, so a captured request is taken once.

Scheme v1, ``timestamp + "." + body``, is kept for CMS plugins in the field
(``webhook_signature = "v1"`` on a site): it binds neither the endpoint nor
the query, and the body must be read before it can be checked.

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

TIMESTAMP_HEADER = "X-Offload-Timestamp"
SIGNATURE_HEADER = "X-Offload-Signature"
CONTENT_SHA256_HEADER = "X-Offload-Content-SHA256"
#: Seconds a webhook timestamp may differ from the server's clock, either way.
WEBHOOK_TOLERANCE = 300

# Unix seconds as a client may send them: ASCII digits, short enough to be a date.
_MAX_TIMESTAMP_DIGITS = 20
# A SHA-256 digest as ``hashlib`` and ``openssl dgst`` write it.
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
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


# -- signed webhook requests (v2) --------------------------------------------------------


def content_sha256(body: bytes) -> str:
    """The hex SHA-256 a client sends in ``X-Offload-Content-SHA256``."""
    return hashlib.sha256(body).hexdigest()


def sign_request(secret: str, timestamp: str, method: str, target: str, body_sha256: str) -> str:
    """``"sha256=<hex>"``: the HMAC of ``{timestamp}.{METHOD}.{target}.{body_sha256}``.

    ``target`` is the path and query exactly as the request line will carry
    them (percent-encoded), e.g. ``/_offload/blog/rewrite?reverse=1``.
    """
    text = f"{timestamp}.{method.upper()}.{target}.{body_sha256}"
    return BODY_SIGNATURE_PREFIX + _hmac_hex(secret, _utf8(text))


def signed_request_headers(
    secret: str, method: str, target: str, body: bytes = b"", *, timestamp: str | None = None
) -> dict[str, str]:
    """The three headers that sign a webhook request (for clients and tests)."""
    stamp = str(int(time.time())) if timestamp is None else timestamp
    digest = content_sha256(body)
    return {
        TIMESTAMP_HEADER: stamp,
        CONTENT_SHA256_HEADER: digest,
        SIGNATURE_HEADER: sign_request(secret, stamp, method, target, digest),
    }


def _stale(timestamp: str | None, now: float | None, tolerance: int) -> str | None:
    """Why the timestamp is not usable, or None when it is fresh."""
    sent = _unix_seconds(timestamp)
    if not timestamp:
        return "missing timestamp"
    if sent is None:
        return "malformed timestamp"
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return "stale timestamp"
    return None


def verify_request_signature(
    secret: str,
    *,
    timestamp: str | None,
    method: str,
    target: str,
    body_sha256: str | None,
    signature: str | None,
    now: float | None = None,
    tolerance: int = WEBHOOK_TOLERANCE,
) -> str | None:
    """None when ``signature`` signs this request's headers and the timestamp is fresh.

    Otherwise one of "missing timestamp", "missing signature", "missing
    content hash", "malformed timestamp", "malformed content hash" (not 64
    lowercase hex digits), "stale timestamp", "bad signature". The body is
    not needed: check it afterwards with ``ContentDigest``.
    """
    _require_secret(secret)
    if not signature:
        return "missing signature" if timestamp else "missing timestamp"
    problem = _stale(timestamp, now, tolerance)
    if problem is not None:
        return problem
    if not body_sha256:
        return "missing content hash"
    if not _SHA256_HEX.fullmatch(body_sha256):
        return "malformed content hash"
    assert timestamp is not None  # _stale said so
    expected = sign_request(secret, timestamp, method, target, body_sha256)
    return None if _same_digest(expected, signature) else "bad signature"


class ContentDigest:
    """The SHA-256 of a body as it streams in, to compare with the declared one."""

    def __init__(self, declared: str) -> None:
        self.declared = declared
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._hash.update(chunk)

    def matches(self) -> bool:
        # Not secret (the client sent both), but constant time costs nothing here.
        return hmac.compare_digest(self._hash.hexdigest(), self.declared)


# -- signed webhook bodies (v1) -------------------------------------------------------


def sign_body(secret: str, timestamp: str, body: bytes) -> str:
    """``"sha256=<hex>"``: the v1 HMAC of ``timestamp + "." + body``."""
    return BODY_SIGNATURE_PREFIX + _hmac_hex(secret, _utf8(timestamp), b".", body)


def verify_body_signature(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = WEBHOOK_TOLERANCE,
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
        tolerance: int = WEBHOOK_TOLERANCE,
    ) -> None:
        _require_secret(secret)
        self._signature = signature
        self._mac = hmac.new(_utf8(secret), digestmod=hashlib.sha256)
        self.problem: str | None = None
        if not timestamp:
            self.problem = "missing timestamp"
        elif not signature:
            self.problem = "missing signature"
        else:
            self.problem = _stale(timestamp, now, tolerance)
        if self.problem is None:
            assert timestamp is not None
            self._mac.update(_utf8(timestamp) + b".")

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._mac.update(chunk)

    def result(self) -> str | None:
        if self.problem is not None:
            return self.problem
        expected = BODY_SIGNATURE_PREFIX + self._mac.hexdigest()
        return None if _same_digest(expected, self._signature) else "bad signature"

    @property
    def signature(self) -> str:
        """The signature as sent (what the replay cache remembers)."""
        return self._signature or ""

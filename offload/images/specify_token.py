"""Specify's web-asset-server access tokens.

Followed from ``specify/web-asset-server``'s ``server.py`` (``generate_token``,
``validate_token``, ``require_token``): a token is
``hex(HMAC-MD5(KEY, str(timestamp) + filename)) + ":" + str(timestamp)``, the
timestamp in whole Unix seconds, and it is good while ``abs(now - timestamp) <
TIME_TOLERANCE`` (strictly). MD5 is Specify's choice, kept for compatibility:
Specify signs with it and offload must check what Specify sends.

Two differences, both on the side of refusing: the MAC is compared in constant
time (Specify compares the strings), and a site with no key refuses every token
(Specify's ``KEY = None`` turns checking off; offload has no such mode). The
messages are Specify's, and never hold the key or the expected MAC.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def make_token(key: str, filename: str, timestamp: int | None = None) -> str:
    """The token Specify sends for ``filename`` at ``timestamp`` (default: now)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(key.encode(), (stamp + filename).encode(), hashlib.md5)
    return f"{mac.hexdigest()}:{stamp}"


def token_problem(
    key: str, token: str, filename: str, *, tolerance: int, now: float | None = None
) -> str | None:
    """What is wrong with ``token`` for ``filename``, in Specify's words; None when good."""
    if not key:
        return "Auth token cannot be checked: the asset server has no key."
    if token == "":
        return "Auth token is missing."
    if token.count(":") != 1:
        return "Auth token is malformed."
    mac_in, stamp = token.split(":")
    if not stamp.isascii() or not stamp.lstrip("-").isdigit() or len(stamp) > 20:
        return "Auth token is malformed."
    timestamp = int(stamp)
    current = int(time.time() if now is None else now)
    if not abs(current - timestamp) < tolerance:
        return f"Auth token timestamp out of range: {timestamp} vs {current}"
    expected = make_token(key, filename, timestamp).partition(":")[0]
    same = hmac.compare_digest(expected.encode(), mac_in.encode("utf-8", "replace"))
    if not same or stamp != str(timestamp):  # Specify compares the whole token
        return "Auth token is invalid."
    return None

"""Object keys: the one place that decides whether a key is safe.

Every layer that takes a key from outside (an HTTP path, a webhook body, a
config prefix, a storage call) checks it here, so the rules cannot drift apart
between the origin, the webhooks and the storage backends.
"""

from __future__ import annotations

import re

MAX_KEY_BYTES = 1024

# C0 controls, DEL and C1 controls: invisible in logs, dangerous in headers and file names.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class UnsafeKey(ValueError):
    """A key that could escape its prefix or root, or that no backend can store faithfully."""


def key_problem(key: str) -> str | None:
    """Say what is wrong with ``key``, or None when it is safe."""
    if not key:
        return "the key is empty"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "the key is not valid Unicode"
    if size > MAX_KEY_BYTES:
        return f"the key is {size} bytes long; the limit is {MAX_KEY_BYTES}"
    if "\\" in key:
        return "the key contains a backslash"
    if _CONTROL.search(key):
        return "the key contains a control character"
    for segment in key.split("/"):
        if segment == "":
            return "the key has an empty segment (a leading, trailing or doubled '/')"
        if segment in (".", ".."):
            return f"the key has a '{segment}' segment"
    return None


def validate_key(key: str) -> str:
    """Return ``key`` unchanged when it is safe, else raise UnsafeKey saying why."""
    problem = key_problem(key)
    if problem is not None:
        raise UnsafeKey(f"{problem}: {key[:80]!r}")
    return key


# The folder a versioned attachment's files share: 8 hex digits of the original's
# content hash. One with no letter is taken for a date folder (20240501), never
# for a version: at worst a version is then cached like any other key.
_VERSION_SEGMENT = re.compile(r"(?=[0-9]*[a-f])[0-9a-f]{8}\Z")


def is_versioned_key(key: str) -> bool:
    """Whether the key's last folder is a version segment (``.../2024/05/3f9a2c1e/a.jpg``).

    Such keys never change content (a new upload gets a new segment), so they
    are served ``immutable``.
    """
    folders = key.split("/")[:-1]
    return bool(folders) and _VERSION_SEGMENT.match(folders[-1]) is not None


def join_key(prefix: str, key: str) -> str:
    """Put ``key`` under ``prefix`` (either may be empty) with exactly one '/' between."""
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix and key else prefix or key

"""Object keys: the one place that decides whether a key is safe.

Every layer that takes a key from outside (an HTTP path, a webhook body, a
config prefix, a storage call) checks it here, so the rules cannot drift apart
between the origin, the webhooks and the storage backends.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

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


# -- upload paths -> keys ----------------------------------------------------------------


def upload_path_problem(path: str) -> str | None:
    """Say what is wrong with a path a CMS sent (relative to ``uploads_dir``), or None.

    The same rules as keys, and no absolute paths: a path is only ever a name
    under ``uploads_dir``.
    """
    if path.startswith("/"):
        return "the path is absolute"
    return key_problem(path)


def version_segment(sha256_hex: str) -> str:
    """The version folder for content with this SHA-256: 8 hex digits with a letter.

    The first window of 8 digits that holds a letter, so that
    ``is_versioned_key`` never takes it for a date folder. Every SHA-256 has one
    in practice (64 digits without a letter has a probability of 1e-13); for
    that case the first digit becomes ``a``.
    """
    digest = sha256_hex.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a SHA-256 in hex: {sha256_hex!r}")
    for start in range(len(digest) - 7):
        window = digest[start : start + 8]
        if _VERSION_SEGMENT.match(window):
            return window
    return "a" + digest[1:8]


def changed_version_segment(base: str, files: Iterable[tuple[str, str]]) -> str:
    """The one folder of an attachment whose files changed while its original did not.

    ``base`` is the original's version segment and ``files`` the (path, SHA-256)
    of every file the attachment has now. The same content set gives the same
    folder on any host, in any order; any other set gives another. The set is
    hashed as JSON (``[base, [[path, sha256], ...]]`` sorted by path), whose
    escaping makes the encoding unambiguous whatever the names hold.
    """
    pairs = sorted((path, sha256.lower()) for path, sha256 in files)
    encoded = json.dumps([base, pairs], ensure_ascii=True, separators=(",", ":"))
    return version_segment(hashlib.sha256(encoded.encode("ascii")).hexdigest())


def upload_key(prefix: str, path: str, version: str | None = None) -> str:
    """The key of the file at ``path`` under ``uploads_dir``.

    ``prefix + path``, with the version folder just before the file name when
    the site versions its keys: ``2024/05/photo.jpg`` -> ``2024/05/3f9a2c1e/photo.jpg``.
    """
    if version is not None:
        folder, _, name = path.rpartition("/")
        path = f"{folder}/{version}/{name}" if folder else f"{version}/{name}"
    return validate_key(join_key(prefix, path))


def upload_path_of(prefix: str, key: str, *, versioned: bool) -> str | None:
    """The inverse of ``upload_key``: the path under ``uploads_dir``, or None if outside prefix."""
    prefix = prefix.strip("/")
    if prefix:
        if not key.startswith(prefix + "/"):
            return None
        key = key[len(prefix) + 1 :]
    if versioned and is_versioned_key(key):
        folders = key.split("/")
        key = "/".join(folders[:-2] + folders[-1:])
    return None if upload_path_problem(key) is not None else key

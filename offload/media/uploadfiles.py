"""An upload's files on disk: where each one really is, and its SHA-256, size and mtime.

Both are blocking (file system calls): the offloader runs them in its executor.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from offload.media.payloads import PayloadError

#: Bytes read per call while hashing a file.
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int
    mtime_ns: int | None


def hash_file(path: Path, *, with_mtime: bool = True) -> FileFacts:
    """SHA-256, size and mtime of one file, read in chunks (blocking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
        size = handle.tell()
    return FileFacts(digest.hexdigest(), size, st.st_mtime_ns if with_mtime else None)


def resolve_upload(uploads_dir: Path, path: str) -> Path | None:
    """The real file behind ``path`` under ``uploads_dir``, or None when it is missing.

    ``path`` has passed ``keys.upload_path_problem`` (relative, no ``..``). A
    symlink that leads outside ``uploads_dir``, or anything but a regular file,
    is a PayloadError (blocking: run it in the executor).
    """
    root = uploads_dir.resolve()
    try:
        real = (root / path).resolve(strict=True)
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise PayloadError(f"{path!r} cannot be resolved: {exc}") from None
    if not real.is_relative_to(root):
        raise PayloadError(f"{path!r} leads outside uploads_dir")
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PayloadError(f"{path!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise PayloadError(f"{path!r} is not a regular file")
    return real

"""A local tree as one sorted stream of files, for merging with a bucket listing.

S3 lists keys in the order of their UTF-8 bytes. The walk yields paths in
that same order without sorting the whole tree: inside each folder it sorts
the entries, a folder as its name plus ``/``, so ``a-b`` (``-`` is 0x2D) comes
before everything in ``a/`` (``/`` is 0x2F) as it does in a listing. Code
point order of Python strings is UTF-8 byte order, so comparing names is
enough. Memory holds one folder's entries per level, never the tree.

Awkward files, each a warning (through ``warn``) and never a crash:

- symlinks are followed; a link to a folder already on the current path is a
  loop and is skipped; a link to nothing is skipped;
- a name that is not valid UTF-8 cannot become a key: skipped;
- FIFOs, sockets and devices are skipped;
- a file or folder that vanishes while the walk runs is skipped;
- names are kept exactly as the file system has them: two names that differ
  only in Unicode normalisation stay two files.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

#: Told (relative path, why) of each file the walk skips.
Warn = Callable[[str, str], None]

#: Names of downloads in progress (``offload sync`` renames them into place);
#: never listed, and the ones a killed run left behind are reported to ``leftover``.
PARTIAL_PREFIX = ".offload-partial-"


@dataclass(frozen=True, slots=True)
class LocalFile:
    """One regular file: its path relative to the root (``/``-separated)."""

    rel: str
    path: str
    size: int
    mtime_ns: int


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes of a non-UTF-8 name
        return False
    return True


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def walk(
    root: str,
    warn: Warn,
    leftover: Callable[[str], None] | None = None,
    *,
    confined: bool = False,
) -> Iterator[LocalFile]:
    """Every regular file under ``root`` in key order (see the module docstring).

    ``confined``: a symlink whose target lies outside ``root`` is skipped with a
    warning instead of followed (nothing outside the folder reaches a bucket).
    """
    try:
        top = os.stat(root)
    except OSError as exc:
        raise FileNotFoundError(f"{root}: {exc.strerror}") from None
    if not stat.S_ISDIR(top.st_mode):
        raise NotADirectoryError(f"{root} is not a folder")
    inside = os.path.realpath(root) if confined else None
    yield from _walk(
        root, "", {(top.st_dev, top.st_ino)}, warn, leftover or (lambda _path: None), inside
    )


def _walk(
    folder: str,
    prefix: str,
    ancestors: set[tuple[int, int]],
    warn: Warn,
    leftover: Callable[[str], None],
    inside: str | None,
) -> Iterator[LocalFile]:
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except FileNotFoundError:
        warn(prefix, f"skipping {_printable(folder)}: the folder vanished")
        return
    except OSError as exc:
        warn(prefix, f"skipping {_printable(folder)}: {exc.strerror}")
        return
    named: list[tuple[str, os.DirEntry[str], os.stat_result]] = []
    for entry in entries:
        rel = prefix + entry.name
        if not _utf8(entry.name):
            warn(rel, f"skipping {_printable(entry.path)}: the name is not valid UTF-8")
            continue
        if entry.name.startswith(PARTIAL_PREFIX):
            leftover(entry.path)
            continue
        if inside is not None and entry.is_symlink():
            target = os.path.realpath(entry.path)
            if target != inside and not target.startswith(inside + os.sep):
                warn(rel, f"skipping {entry.path}: the link leads outside {inside}")
                continue
        try:
            st = entry.stat(follow_symlinks=True)
        except FileNotFoundError:
            if entry.is_symlink():
                warn(rel, f"skipping {entry.path}: broken symbolic link")
            continue  # vanished since the folder was read
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link that leads back to itself
                warn(rel, f"skipping {entry.path}: symbolic link loop")
            else:
                warn(rel, f"skipping {entry.path}: {exc.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            named.append((rel + "/", entry, st))
        elif stat.S_ISREG(st.st_mode):
            named.append((rel, entry, st))
        else:
            kind = _kind(st.st_mode)
            warn(rel, f"skipping {entry.path}: it is a {kind}, not a file")
    named.sort(key=lambda item: item[0])
    for rel, entry, st in named:
        if rel.endswith("/"):
            identity = (st.st_dev, st.st_ino)
            if identity in ancestors:
                warn(rel.rstrip("/"), f"skipping {entry.path}: symbolic link loop")
                continue
            ancestors.add(identity)
            try:
                yield from _walk(entry.path, rel, ancestors, warn, leftover, inside)
            finally:
                ancestors.discard(identity)
        else:
            yield LocalFile(rel, entry.path, st.st_size, st.st_mtime_ns)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"

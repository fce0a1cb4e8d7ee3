"""When a file is transferred: the rules, side by side with ``aws s3 sync``.

Default (``aws s3 sync`` transfers when sizes differ, or when the source is
newer than the destination's LastModified):

- sizes differ: transfer;
- else, when the object carries the source's ``mtime`` (offload writes it on
  every upload): transfer when the file's mtime differs from it, compared
  exactly at the stored precision. So an edit that leaves an *older* mtime is
  still uploaded (aws skips it), and a file dated in the future is not
  uploaded again on every run (aws uploads it every time);
- else fall back to aws's rule: upload when the file is newer than
  LastModified; download when LastModified is newer than the file (a download
  then sets the file's mtime to the stored mtime, or to LastModified, so the
  next run finds them equal). In the default mode the engine (``decide``)
  settles these times by content first, when they differ at all;
- bucket to bucket: same size and same ETag is the same object; otherwise
  the stored mtimes decide when both have one, else the newer LastModified.

``--size-only``: sizes alone. ``--checksum``: content hashes (the file's MD5
against a single-part ETag; a multipart object's stored ``md5`` or
``sha256``), decided by the engine, which reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass

from offload.storage.objectmeta import parse_mtime_ns

DEFAULT = "default"
SIZE_ONLY = "size-only"
CHECKSUM = "checksum"
#: ``--mode merge``: each side's newer copy wins, like ``rsync --update``.
NEWER = "newer"


@dataclass(frozen=True, slots=True)
class Side:
    """One side's facts about a path: a local file or an object."""

    size: int
    mtime_ns: int | None = None  # a local file's
    last_modified_ns: int | None = None  # an object's LastModified
    etag: str | None = None  # an object's
    stored_mtime: str | None = None  # an object's x-amz-meta-mtime, when known


def same_mtime(mtime_ns: int, stored: str) -> bool:
    """Whether ``stored`` equals ``mtime_ns`` to the digits it was written with."""
    parsed = parse_mtime_ns(stored)
    if parsed is None:
        return False
    _, _, decimals = stored.strip().partition(".")
    scale = 10 ** (9 - min(len(decimals), 9))
    return mtime_ns // scale == parsed // scale


def _seconds(ns: int) -> int:
    return ns // 10**9


def _object_mtime_ns(obj: Side) -> int | None:
    """The object's file time: the stored mtime, else LastModified."""
    stored = parse_mtime_ns(obj.stored_mtime)
    return stored if stored is not None else obj.last_modified_ns


def _file_and_object_differ(file: Side, obj: Side, mode: str, *, file_is_source: bool) -> bool:
    """The one rule for both directions between a local file and an object."""
    assert file.mtime_ns is not None
    if mode == NEWER:
        theirs = _object_mtime_ns(obj)
        if theirs is None:
            return file_is_source
        source, destination = (file.mtime_ns, theirs) if file_is_source else (theirs, file.mtime_ns)
        return source // 10**9 > destination // 10**9 or (
            file.size != obj.size and source > destination
        )
    if file.size != obj.size:
        return True
    if mode == SIZE_ONLY:
        return False
    if obj.stored_mtime is not None and parse_mtime_ns(obj.stored_mtime) is not None:
        return not same_mtime(file.mtime_ns, obj.stored_mtime)
    assert obj.last_modified_ns is not None
    if file_is_source:
        return _seconds(file.mtime_ns) > _seconds(obj.last_modified_ns)
    return _seconds(obj.last_modified_ns) > _seconds(file.mtime_ns)


def upload_needed(local: Side, obj: Side | None, mode: str = DEFAULT) -> bool:
    """A local file against the object at its key (``--checksum`` is decided elsewhere)."""
    return obj is None or _file_and_object_differ(local, obj, mode, file_is_source=True)


def download_needed(obj: Side, local: Side | None, mode: str = DEFAULT) -> bool:
    """An object against the local file at its path."""
    return local is None or _file_and_object_differ(local, obj, mode, file_is_source=False)


def copy_needed(src: Side, dst: Side | None, mode: str = DEFAULT) -> bool:
    """An object against the object at the same path in another bucket."""
    if dst is None or src.size != dst.size:
        return True
    if mode == SIZE_ONLY:
        return False
    if src.etag and src.etag == dst.etag:
        return False
    src_mtime = parse_mtime_ns(src.stored_mtime)
    dst_mtime = parse_mtime_ns(dst.stored_mtime)
    if src_mtime is not None and dst_mtime is not None:
        return src_mtime != dst_mtime
    assert src.last_modified_ns is not None
    assert dst.last_modified_ns is not None
    return _seconds(src.last_modified_ns) > _seconds(dst.last_modified_ns)


def file_copy_needed(src: Side, dst: Side | None, mode: str = DEFAULT) -> bool:
    """A file against the file at the same path in another folder (rsync's quick check).

    Sizes, then modification times to the nanosecond: a copy is given its
    source's mtime exactly, so equal times mean "copied and not touched since".
    ``NEWER``: only a source newer than the destination. ``CHECKSUM`` settles
    equal sizes by content, before this is asked.
    """
    if dst is None or src.size != dst.size:
        return True
    if mode in (SIZE_ONLY, CHECKSUM):
        return False
    assert src.mtime_ns is not None
    assert dst.mtime_ns is not None
    if mode == NEWER:
        return src.mtime_ns > dst.mtime_ns
    return src.mtime_ns != dst.mtime_ns


def single_part_md5(etag: str | None) -> str | None:
    """The MD5 an ETag is, when the object went up in one part (32 hex digits, no '-')."""
    if etag and len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower()):
        return etag.lower()
    return None


def needs_stored_mtime(mode: str, src_is_local: bool, dst_is_local: bool) -> bool:
    """Whether equal sizes must be settled with the object's stored mtime."""
    return mode == DEFAULT and src_is_local != dst_is_local

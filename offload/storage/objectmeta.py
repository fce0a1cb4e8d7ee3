"""The object metadata offload writes, shared by the webhooks and ``offload sync``.

S3 sends each as ``x-amz-meta-<name>``. ``mtime`` is the source file's
modification time as seconds since the epoch with exactly nine decimals
(``1714550400.123456789``), so it round-trips a file's nanoseconds and two
runs compare it as text, exactly. rclone writes the same name, as a decimal
with fewer digits: ``parse_mtime_ns`` reads both.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

#: Seconds from the epoch to the year 10000: no stored mtime beyond it is taken.
_YEAR_10000 = 253402300800

SHA256 = "sha256"
MD5 = "md5"
SOURCE = "source"
MTIME = "mtime"
ATTACHMENT_ID = "attachment-id"


def format_mtime(mtime_ns: int) -> str:
    """Seconds since the epoch with nanoseconds, exact: ``1714550400.123456789``."""
    seconds, nanos = divmod(mtime_ns, 10**9)
    return f"{seconds}.{nanos:09d}"


def parse_mtime_ns(text: str | None) -> int | None:
    """Nanoseconds since the epoch from a stored ``mtime``, or None if it is not one."""
    if not text:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or not 0 <= value < _YEAR_10000:
        return None  # no file system can hold it: as if there were none
    return int(value * 10**9)

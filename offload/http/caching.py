"""HTTP caching rules for the origin: validators, preconditions, ranges, Cache-Control, tags.

Pure functions over header values (RFC 9110 sections 5.6.7, 8.8, 13 and 14), so the
origin handler stays a thin adapter and every rule is tested here without a server.
``headers`` is any mapping the handler holds; aiohttp's case-insensitive
``CIMultiDictProxy`` works as is, and list fields sent on several lines are joined.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

NO_STORE = "no-store"
ONE_YEAR = 31_536_000
# Fastly and Cloudflare refuse longer tags; a small tag header also keeps all response
# headers inside nginx's default proxy_buffer_size (4 KB), past which it answers 502.
MAX_TAG_BYTES = 1024
MAX_TAGS_BYTES = 2048

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = {name: number for number, name in enumerate(_MONTHS, 1)}
_D, _M = "|".join(_DAYS), "|".join(_MONTHS)
_LONG_D = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF = re.compile(rf"(?:{_D}), ([0-9]{{2}}) ({_M}) ([0-9]{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"(?:{_LONG_D}), ([0-9]{{2}})-({_M})-([0-9]{{2}}) {_TIME} GMT")
_ASCTIME = re.compile(rf"(?:{_D}) ({_M}) ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})")

_ETAGC = r"[\x21\x23-\x7e\x80-\U0010ffff]*"  # obs-text: any non-ASCII character
_ENTITY_TAG = re.compile(rf'(W/)?"({_ETAGC})"')
_LIST_MEMBER = re.compile(rf'[ \t]*(?:(W/)?"({_ETAGC})")?[ \t]*(?:,|\Z)')
_OPAQUE = re.compile(_ETAGC)
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")
_BOUNDARY = re.compile(r"[0-9A-Za-z'+_.\-]{1,70}")  # bchars a header needs no quotes for
# RFC 3986 pchar minus ',' and ';': a tag reads like the key in a URL path, and no
# usual tag separator (space, comma, semicolon) can ever split it.
_TAG_SAFE = "/:@!$&'()*+="
_VISIBLE = re.compile(r"[\x21-\x7e]+")
_HEADER_TEXT = re.compile(r"[\x20-\x7e]+")


def _utc_seconds(when: datetime) -> datetime:
    """``when`` as aware UTC without fractions (naive values are taken to be UTC)."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.replace(microsecond=0)


def http_date(when: datetime) -> str:
    """IMF-fixdate in GMT, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT`` (locale-independent)."""
    t = _utc_seconds(when)
    return (
        f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"
    )


def _make_date(year: int, month: str, day: str, h: str, m: str, s: str) -> datetime | None:
    try:  # a leap second (60) is kept as :59; impossible dates such as 31 Feb are invalid
        return datetime(year, _MONTH[month], int(day), int(h), int(m), min(int(s), 59), tzinfo=UTC)
    except ValueError:
        return None


@functools.lru_cache(maxsize=512)
def _parse_fixed_forms(value: str) -> datetime | None:
    if match := _IMF.fullmatch(value):
        day, month, year, h, m, s = match.groups()
        return _make_date(int(year), month, day, h, m, s)
    if match := _ASCTIME.fullmatch(value):
        month, day, h, m, s, year = match.groups()
        return _make_date(int(year), month, day, h, m, s)
    return None


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date in any of the three forms of RFC 9110 §5.6.7, as aware UTC.

    None when absent or invalid. The forms are case-sensitive as the RFC says; the
    weekday name is not checked against the date. A two-digit RFC 850 year more than
    50 years ahead of now is taken to be in the previous century.
    """
    if not value:
        return None
    value = value.strip(" \t")
    if match := _RFC850.fullmatch(value):
        day, month, yy, h, m, s = match.groups()
        this_year = datetime.now(UTC).year
        year = this_year - this_year % 100 + int(yy)
        return _make_date(year - 100 if year > this_year + 50 else year, month, day, h, m, s)
    return _parse_fixed_forms(value)


def quote_etag(etag: str) -> str:
    """A strong entity tag for a storage etag: ``abc`` -> ``"abc"`` (already quoted: as is)."""
    if _ENTITY_TAG.fullmatch(etag):
        return etag
    if not _OPAQUE.fullmatch(etag):
        raise ValueError(f"cannot be an entity tag: {etag!r}")
    return f'"{etag}"'


def _own_tag(etag: str) -> tuple[bool, str]:
    """(weak, opaque-tag) of the representation's own etag, quoted or not."""
    match = _ENTITY_TAG.fullmatch(quote_etag(etag))
    assert match is not None
    return match[1] is not None, match[2]


def _field(headers: Mapping[str, str], name: str) -> str | None:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values = getall(name, ())
        return ", ".join(values) if values else None
    return headers.get(name)


def _tags_match(field: str, etag: str, *, strong: bool) -> bool:
    """Whether If-Match/If-None-Match ``field`` names ``etag``.

    An invalid field (not ``*`` nor a comma list of entity tags) matches nothing.
    """
    if field.strip(" \t") == "*":
        return True
    own_weak, own = _own_tag(etag)
    found, position = False, 0
    while position < len(field):  # a comma may sit inside a quoted tag: scan, do not split
        member = _LIST_MEMBER.match(field, position)
        if member is None:
            return False
        if member[2] == own and not (strong and (member[1] or own_weak)):
            found = True
        position = member.end()
    return found


def precondition(
    method: str,
    headers: Mapping[str, str],
    etag: str,
    last_modified: datetime,
    *,
    now: datetime | None = None,
) -> int | None:
    """412, 304, or None to go on, by the evaluation order of RFC 9110 §13.2.2.

    Call only for an existing representation. ``now`` (default: the clock) decides
    which If-Modified-Since dates lie in the future and are therefore ignored.
    """
    modified = _utc_seconds(last_modified)
    if (if_match := _field(headers, "If-Match")) is not None:
        if not _tags_match(if_match, etag, strong=True):
            return 412
    elif (since := parse_http_date(headers.get("If-Unmodified-Since"))) and modified > since:
        return 412
    if (if_none_match := _field(headers, "If-None-Match")) is not None:
        if _tags_match(if_none_match, etag, strong=False):
            return 304 if method in ("GET", "HEAD") else 412
    elif method in ("GET", "HEAD"):
        since = parse_http_date(headers.get("If-Modified-Since"))
        if since and since <= (now or datetime.now(UTC)) and modified <= since:
            return 304
    return None


@dataclass(frozen=True, slots=True)
class RangeSelection:
    """What to send: 200 the whole body, 206 these inclusive byte ranges, or 416."""

    status: int
    ranges: tuple[tuple[int, int], ...] = ()


WHOLE = RangeSelection(200)
UNSATISFIABLE = RangeSelection(416)


def _parse_range(value: str) -> list[tuple[int | None, int | None]] | None:
    """(first, last) specs of a ``bytes`` Range, first None for a suffix; None if invalid."""
    unit, equals, spec_list = value.strip(" \t").partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    specs: list[tuple[int | None, int | None]] = []
    for spec in spec_list.split(","):
        spec = spec.strip(" \t")
        if not spec:
            continue
        if (match := _RANGE_SPEC.fullmatch(spec)) is None:
            return None
        first, last, suffix = match.groups()
        if len(spec) > 40:  # past any real offset, and past what int() parses quickly
            return None
        if suffix is not None:
            specs.append((None, int(suffix)))
        elif last and int(last) < int(first):
            return None
        else:
            specs.append((int(first), int(last) if last else None))
    return specs or None


def _if_range_holds(value: str, etag: str, last_modified: datetime) -> bool:
    value = value.strip(" \t")
    if value.startswith(('"', "W/")):
        own_weak, own = _own_tag(etag)
        match = _ENTITY_TAG.fullmatch(value)
        return match is not None and match[1] is None and not own_weak and match[2] == own
    return parse_http_date(value) == _utc_seconds(last_modified)


def select_ranges(
    headers: Mapping[str, str],
    size: int,
    etag: str,
    last_modified: datetime,
    *,
    max_ranges: int = 16,
) -> RangeSelection:
    """Apply Range and If-Range (RFC 9110 §13.1.5, §14.2) to a body of ``size`` bytes.

    Call for GET only (other methods ignore Range) and after ``precondition``. Ranges
    come back sorted and coalesced; ``max_ranges=1`` never asks for multipart. An empty
    body has no byte to send: ``bytes=-n`` on it gets the (empty) 200, any other 416.
    """
    if size < 0:
        raise ValueError(f"size must not be negative: {size}")
    value = headers.get("Range")
    specs = _parse_range(value) if value else None
    if specs is None:
        return WHOLE
    if (if_range := headers.get("If-Range")) is not None and not _if_range_holds(
        if_range, etag, last_modified
    ):
        return WHOLE
    if size == 0:
        return WHOLE if any(first is None and last for first, last in specs) else UNSATISFIABLE
    wanted: list[tuple[int, int]] = []
    for first, last in specs:
        if first is None:
            if last:  # -0 selects nothing
                wanted.append((max(0, size - last), size - 1))
        elif first < size:
            wanted.append((first, size - 1 if last is None else min(last, size - 1)))
    if not wanted:
        return UNSATISFIABLE
    if sum(last - first + 1 for first, last in wanted) > size:
        return WHOLE  # overlapping ranges asking for more than the body: amplification
    wanted.sort()
    merged = [wanted[0]]
    for first, last in wanted[1:]:
        if first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    if len(merged) > max_ranges:
        return WHOLE
    return RangeSelection(206, tuple(merged))


def content_range(first: int, last: int, size: int) -> str:
    """``bytes 0-9/100``."""
    return f"bytes {first}-{last}/{size}"


def unsatisfied_range(size: int) -> str:
    """``bytes */100``, for a 416."""
    return f"bytes */{size}"


def multipart_frames(
    ranges: Sequence[tuple[int, int]], content_type: str, size: int, boundary: str
) -> tuple[list[bytes], bytes]:
    """The bytes around each part of a multipart/byteranges body (RFC 9110 §14.6).

    Send ``heads[i]``, then range i, for each range, then ``tail``; the lengths add up
    to the Content-Length, so a streaming handler needs no body in memory.
    """
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"not a valid multipart boundary: {boundary!r}")
    heads = []
    for index, (first, last) in enumerate(ranges):
        if not 0 <= first <= last < size:
            raise ValueError(f"range {first}-{last} is outside a body of {size} bytes")
        head = (
            f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Range: {content_range(first, last, size)}\r\n\r\n"
        )
        heads.append((head if index == 0 else "\r\n" + head).encode("latin-1"))
    return heads, f"\r\n--{boundary}--\r\n".encode("latin-1")


def multipart_byteranges(
    body: bytes,
    ranges: Sequence[tuple[int, int]],
    content_type: str,
    *,
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """(Content-Type value, whole multipart/byteranges body) for ``ranges`` of ``body``.

    The boundary is 32 random hex digits unless given.
    """
    boundary = boundary or secrets.token_hex(16)
    heads, tail = multipart_frames(ranges, content_type, len(body), boundary)
    pieces: list[bytes] = []
    for head, (first, last) in zip(heads, ranges, strict=True):
        pieces += (head, body[first : last + 1])
    pieces.append(tail)
    return f"multipart/byteranges; boundary={boundary}", b"".join(pieces)


def cache_control(
    *,
    max_age: int,
    stale_while_revalidate: int,
    stale_if_error: int,
    s_maxage: int | None = None,
    versioned: bool = False,
) -> str:
    """The Cache-Control of a 200/206/304; versioned keys never change, so cache them a year."""
    if versioned:
        return f"public, max-age={ONE_YEAR}, immutable"
    lifetimes = (max_age, stale_while_revalidate, stale_if_error, s_maxage or 0)
    if min(lifetimes) < 0:
        raise ValueError(f"cache lifetimes must not be negative: {lifetimes}")
    parts = ["public", f"max-age={max_age}"]
    if stale_while_revalidate:
        parts.append(f"stale-while-revalidate={stale_while_revalidate}")
    if stale_if_error:
        parts.append(f"stale-if-error={stale_if_error}")
    if s_maxage is not None:
        parts.append(f"s-maxage={s_maxage}")
    return ", ".join(parts)


def negative_cache_control(ttl: int) -> str:
    """The Cache-Control of a 404: cached briefly, so a purge storm cannot hammer storage."""
    if ttl < 0:
        raise ValueError(f"negative_ttl must not be negative: {ttl}")
    return f"public, max-age={ttl}"


def cache_tags(site: str, key: str) -> list[str]:
    """Purge tags: the site, then ``site:folder`` for each folder of ``key``, shallow first.

    Each part is percent-encoded like a URL path (UTF-8), keeping ``/``, ``:``, ``@``
    and ``!$&'()*+=``; ``%``, space, ``,``, ``;``, quotes, controls and non-ASCII are
    encoded, so a tag is visible ASCII and never splits on a space, comma or semicolon.
    Tags longer than MAX_TAG_BYTES, and the deepest ones past MAX_TAGS_BYTES in all,
    are left out.
    """
    tags = [quote(site, safe="!$&'()*+=@")]
    budget = MAX_TAGS_BYTES - len(tags[0])
    folders = key.split("/")[:-1]
    for depth in range(1, len(folders) + 1):
        tag = f"{tags[0]}:{quote('/'.join(folders[:depth]), safe=_TAG_SAFE)}"
        budget -= len(tag) + 2
        if len(tag) > MAX_TAG_BYTES or budget < 0:
            break
        tags.append(tag)
    return tags


def tag_header_value(tags: Sequence[str], separator: str) -> str:
    """``tags`` joined by ``separator`` (``" "`` for Surrogate-Key, ``","`` for Cache-Tag).

    Raises ValueError when a tag is empty, not visible ASCII, or holds the separator.
    """
    if not _HEADER_TEXT.fullmatch(separator):
        raise ValueError(f"not a usable tag separator: {separator!r}")
    mark = separator.strip(" ")
    for tag in tags:
        if not _VISIBLE.fullmatch(tag) or (mark and mark in tag):
            raise ValueError(f"cannot put tag {tag!r} in a header separated by {separator!r}")
    return separator.join(tags)

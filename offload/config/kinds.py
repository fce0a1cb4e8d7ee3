"""How each type of setting is read, checked and shown: the kinds behind ``settings``.

A ``Kind`` parses a TOML value (or its reading of an environment string) and
either returns the setting's value or raises ``ValueError("must be ..., got
...")``; ``loading`` adds where the value came from. ``Secret`` is here too: a
string that masks itself wherever it could be printed or logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from offload.keys import key_problem


class Secret:
    """A string that masks itself wherever it could be printed or logged."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: str | bytes) -> bool:
        """Compare in constant time; an empty secret matches nothing."""
        if isinstance(candidate, str):
            candidate = candidate.encode()
        return bool(self._value) and hmac.compare_digest(self._value.encode(), candidate)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        if not self._value:
            return ""
        return "****" + self._value[-4:] if len(self._value) >= 16 else "****"

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


def mask_password(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:****@h/db`` (a ``password=`` too)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(//[^/@:]*:)[^@/]*@", r"\1****@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":****"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "****" if k.lower() == "password" else v) for k, v in pairs]
        query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str) -> str | None:
    """The password a URL holds, to scrub from a driver's messages."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return parts.password
        for key, value in parse_qsl(parts.query):
            if key.lower() == "password" and value:
                return value
    except ValueError:
        pass
    return None


class DatabaseUrl(str):
    """A ``postgresql://`` URL that remembers the folder it was configured in.

    It is the URL itself (libpq reads it as it is); its ``repr`` masks the
    password, so a logged Settings never shows it. ``folder`` is where files
    that sit beside a SQLite manifest go instead (the config file's folder).
    """

    folder: Path

    def __new__(cls, url: str, folder: Path) -> DatabaseUrl:
        made = super().__new__(cls, url)
        made.folder = folder
        return made

    def __repr__(self) -> str:
        return repr(mask_password(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (DatabaseUrl, (str(self), self.folder))  # pickled and copied with its folder


DATABASE_SCHEMES = ("postgresql", "postgres")


# -- kinds: how one type of value is read, checked and shown --------------------------


def show_value(value: Any) -> str:
    """A value as TOML would spell it, secrets masked."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path | Secret):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


def fail(what: str, value: Any) -> NoReturn:
    got = repr(value) if isinstance(value, str) else show_value(value)
    raise ValueError(f"must be {what}, got {got if len(got) <= 80 else got[:77] + '...'}")


@dataclass(frozen=True)
class Kind:
    """``parse(value, base)`` takes a TOML value (or ``from_text``'s reading of an
    environment string) and the folder relative paths resolve against; it returns
    the setting's value or raises ValueError("must be ..., got ...")."""

    name: str
    parse: Callable[[Any, Path], Any]
    from_text: Callable[[str], Any] = str
    show: Callable[[Any], str] = show_value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_kind(lo: int, hi: int | None = None, *, optional: bool = False) -> Kind:
    what = f"an integer from {lo} to {hi}" if hi else f"an integer >= {lo}"

    def parse(value: Any, base: Path) -> int | None:
        if optional and value is None:
            return None
        if not is_int(value) or value < lo or (hi is not None and value > hi):
            fail(what + (" (or unset)" if optional else ""), value)
        return value

    def from_text(text: str) -> Any:
        if optional and text.strip().lower() in ("", "none"):
            return None
        return int(text) if re.fullmatch(r"\s*[+-]?\d+\s*", text) else text

    return Kind("int or unset" if optional else "int", parse, from_text)


def parse_seconds(value: Any, base: Path) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        fail("a number of seconds > 0", value)
    if not math.isfinite(value) or value <= 0:
        fail("a number of seconds > 0", value)
    return float(value)


def float_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def parse_bool(value: Any, base: Path) -> bool:
    if not isinstance(value, bool):
        fail("true or false", value)
    return value


BOOL_TEXT = dict.fromkeys(("true", "1", "yes", "on"), True)
BOOL_TEXT |= dict.fromkeys(("false", "0", "no", "off"), False)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", re.IGNORECASE)


def human_size(n: int) -> str:
    """``8388608`` -> ``8MiB``: the largest binary unit that divides ``n`` exactly."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def size_kind(lo: int, hi: int) -> Kind:
    what = f"a byte size from {human_size(lo)} to {human_size(hi)} like 8MiB or 5 MB"

    def parse(value: Any, base: Path) -> int:
        n = value if is_int(value) else None
        if isinstance(value, str) and (m := _SIZE.fullmatch(value)):
            n = int(Fraction(m[1]) * _UNITS[(m[2] or "").lower()])
        if n is None or not lo <= n <= hi:
            fail(what, value)
        return n

    return Kind("byte size", parse, show=lambda n: show_value(human_size(n)))


def text_kind(pattern: str = ".*", what: str = "a string", *, upper: bool = False) -> Kind:
    def parse(value: Any, base: Path) -> str:
        text = value.upper() if upper and isinstance(value, str) else value
        if not isinstance(text, str) or not re.fullmatch(pattern, text):
            fail(what, value)
        return text

    return Kind("str", parse)


def choice_kind(*options: str) -> Kind:
    def parse(value: Any, base: Path) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            fail("one of " + ", ".join(options), value)
        return value.lower()

    return Kind("|".join(options), parse)


def resolve_path(value: str, base: Path) -> Path:
    return Path(os.path.normpath(base / Path(value).expanduser()))


def path_kind(*, optional: bool) -> Kind:
    def parse(value: Any, base: Path) -> Path | None:
        value = str(value) if isinstance(value, Path) else "" if value is None else value
        if not isinstance(value, str) or "\x00" in value or not (value or optional):
            fail("a path" if optional else "a non-empty path", value)
        return resolve_path(value, base) if value else None

    return Kind("path", parse)


def _split(value: Any) -> SplitResult | None:
    try:
        parts = urlsplit(value)
        return parts if parts.port != 0 else None  # .port raises on a bad port
    except (TypeError, ValueError, AttributeError):
        return None


def http_url(value: Any, base: Path) -> str:
    if value == "":
        return ""
    parts = _split(value) if isinstance(value, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
        fail("an http(s) URL", value)
    if parts.query or parts.fragment:
        fail("an http(s) URL without a query or fragment", value)
    return value.rstrip("/")


def storage_url_kind(*, optional: bool) -> Kind:
    what = "a storage URL (file:///abs/path, s3://bucket, s3://bucket/prefix) or a path"

    def parse(value: Any, base: Path) -> str:
        if not isinstance(value, str) or "\x00" in value or not (value or optional):
            fail(what, value)
        parts = _split(value)
        if not value or (parts and not parts.scheme):  # empty, or a plain path
            return resolve_path(value, base).as_uri() if value else ""
        if parts and parts.scheme == "s3":
            prefix = parts.path.strip("/")
            if not parts.netloc:
                fail("an s3:// URL with a bucket name", value)
            if parts.query or parts.fragment or (prefix and key_problem(prefix)):
                fail("s3://bucket or s3://bucket/prefix with a safe prefix", value)
            return f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}"
        if parts and parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                fail("an absolute file:///path URL", value)
            return "file://" + (parts.path.rstrip("/") or "/")
        fail(what, value)

    return Kind("storage URL", parse)


def parse_prefix(value: Any, base: Path) -> str:
    if not isinstance(value, str):
        fail("a string", value)
    prefix = value.strip("/")
    if prefix and (problem := key_problem(prefix)):
        raise ValueError(f"must be a safe key prefix ({problem}), got {value!r}")
    return prefix


def hostname(item: str) -> str | None:
    """A host name, or '*' for the site that takes every host no other site claims."""
    if item == "*":
        return item
    host = item.lower().rstrip(".")
    ok = re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host) and ".." not in host
    return host if ok else None


def cors_origin(item: str) -> str | None:
    origin = item.rstrip("/")
    try:
        ok = origin == "*" or (http_url(origin, Path()) and not urlsplit(origin).path)
    except ValueError:
        ok = False
    return origin if ok else None


def list_kind(item: Callable[[str], str | None], what: str) -> Kind:
    def parse(value: Any, base: Path) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            fail("a list of strings", value)
        items: dict[str, None] = {}
        for v in value:
            if (norm := item(v)) is None:
                fail(f"a list of {what}", v)
            items[norm] = None
        return tuple(items)  # in order, without repeats

    def from_text(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    return Kind("list of str", parse, from_text)


def parse_secret(value: Any, base: Path) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string (value not shown)")
    if re.search(r"[\x00-\x1f\x7f]", value) or value != value.strip():
        raise ValueError("must not hold control characters or edge spaces (value not shown)")
    return Secret(value)


BOOL = Kind("bool", parse_bool, lambda text: BOOL_TEXT.get(text.strip().lower(), text))
HTTP_URL = Kind("http(s) URL", http_url)
SECRET = Kind("secret", parse_secret)
SECONDS = int_kind(0)
ANY_TEXT = text_kind()
HEADER_NAME = text_kind(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", "an HTTP header name")
OPTIONAL_HEADER_NAME = text_kind(
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]*", "an HTTP header name, or empty for none"
)
TAG_SEPARATOR = text_kind(r"[, ;|]", "one of ',', ' ', ';' or '|'")


def key_prefix(item: str) -> str | None:
    """A key prefix for a list setting: no leading or trailing '/', safe as a key."""
    prefix = item.strip("/")
    return prefix if prefix and key_problem(prefix) is None else None


KEY_PREFIXES = list_kind(key_prefix, "key prefixes such as private/ or members/videos")


def ip_network_item(item: str) -> str | None:
    """An IP address or network (``10.0.0.0/8``, ``::1``) for a list setting, normalised."""
    try:
        return str(ipaddress.ip_network(item.strip(), strict=False))
    except ValueError:
        return None


IP_NETWORKS = list_kind(ip_network_item, "IP addresses or networks such as 10.0.0.0/8 or ::1")
STORAGE_CLASS = text_kind(r"[A-Z0-9_]*", "a storage class like STANDARD_IA", upper=True)
HOSTNAMES = list_kind(hostname, "host names (no scheme or port)")
CORS_ORIGINS = list_kind(cors_origin, "'*' or http(s) origins (no path)")
ADDRESSING = choice_kind("auto", "virtual", "path")
LOG_LEVEL = choice_kind("debug", "info", "warning", "error")
EVENT_LOOP = choice_kind("auto", "uvloop", "asyncio")


def parse_manifest(value: Any, base: Path) -> Path | DatabaseUrl:
    if isinstance(value, str) and urlsplit(value).scheme.lower() in DATABASE_SCHEMES:
        parts = _split(value)
        if not parts:
            fail("a postgresql://user@host/db URL", mask_password(value))
        return DatabaseUrl(value, base)
    parsed = path_kind(optional=False).parse(value, base)
    assert isinstance(parsed, Path)
    return parsed


def show_manifest(value: Any) -> str:
    return show_value(mask_password(value) if isinstance(value, str) else value)


MANIFEST = Kind("path or postgresql:// URL", parse_manifest, show=show_manifest)

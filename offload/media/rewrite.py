"""The URL rewriting engine: upload URLs in HTML, CSS and JSON -> CDN URLs, and back.

Pure text in, text out: no I/O. The caller says which files are offloaded
through ``lookup`` (path under ``uploads_dir`` -> key, or None), usually backed
by the manifest; each call asks it at most once per path.

A URL is recognised by its form, wherever it stands (``src``, ``srcset``
candidates, CSS ``url()``, JSON values, inline scripts, plain text): the site's
``uploads_url`` host and path after ``https://``, ``http://`` or ``//``, also in
the JSON-escaped form ``https:\\/\\/host\\/path\\/``. Scheme and host match in
any case, the path exactly and only up to a ``/`` (``/wp-content/uploads-old/``
is not ``/wp-content/uploads``). A URL that continues a word or a path
(``xhttps://``, ``ftp://``, an archive's ``.../web/2024/https://...``) is not
one. Its path ends at whitespace, a quote, ``<``, ``>``, ``)``, a backtick, one
of ``[]{}|^&?#``, a backslash other than JSON's ``\\/`` and ``\\uXXXX`` escapes
(so at ``\\"``), and a comma not followed by more URL (the ``, `` between
``srcset`` candidates). A raw ``&`` ends it because it separates query
parameters and CMSs strip it from file names (``%26`` works); HTML entities are
not decoded, so ``&quot;`` ends a URL and ``&#x2F;`` slashes hide one.

The path is decoded once (JSON escapes, then percent-encoding) to ask the
lookup; a path that is not a safe key (``..``, empty segments, invalid UTF-8,
lone surrogates) is never asked about. When the lookup does not know a path
ending in ``.``, ``:``, ``;`` or ``!`` (a link at the end of a sentence), it is
asked again without them. Only the scheme, host and path are replaced: the query
and fragment stay as they are, and are searched like any other text. A new URL
keeps the old one's form: ``//host`` gives ``//cdn-host``, the escaped form
stays escaped, ``http`` and ``https`` give ``cdn_url`` as configured; the key is
percent-encoded as a URL path (``quote(key, safe="/")``), so it is plain ASCII.

Rewriting twice equals rewriting once, since a CDN URL is not an upload URL.
When ``cdn_url`` shares the host and a path prefix with ``uploads_url``
(``cdn_url = https://example.com`` in front of ``/wp-content/uploads``), a CDN
URL can read as an upload URL: one whose key ``reverse_lookup`` knows is then
taken as rewritten already. Without ``reverse_lookup``, idempotence there rests
on the lookup not knowing the versioned paths it hands out (a manifest keyed by
local path does not).

With ``uploads_url`` or ``cdn_url`` empty, both directions are the identity.
``reverse`` writes ``uploads_url``'s own scheme and a percent-encoded path, so a
round trip restores URLs written that way exactly and others (``http://``, raw
``é``, upper-case hosts) as equivalent URLs.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from offload.config.settings import Site
from offload.keys import key_problem

#: Path relative to ``uploads_dir`` (decoded) -> its object key, or None when not offloaded.
Lookup = Callable[[str], str | None]
#: Object key -> path relative to ``uploads_dir``, or None when unknown.
ReverseLookup = Callable[[str], str | None]

# One character of a URL path (the query and fragment are not part of a match).
_STOPS = r"""\s"'<>)\\`\[\]{}|^"""
_PLAIN = rf"[^{_STOPS},&?#]"
_COMMA = rf",(?=[^{_STOPS},])"
# JSON escapes: \/ and \uXXXX, except those of a character that ends a URL.
_ESCAPE = r"\\(?:/|u(?!00(?:2[027]|29|3[cCeE]|5[cC]|60))[0-9a-fA-F]{4})"
_PATH_CHAR = f"(?:{_PLAIN}|{_COMMA}|{_ESCAPE})"
# Where a URL starts: "http(s):" not continuing a word ("xhttps:") or a path (an
# archive's ".../web/2020/https://..."), or "//" (or "\/\/") not continuing a word, a
# path or another URL ("ftp://"). The first character is consumed before the
# lookbehinds check what precedes it, so that the pattern opens with a character
# set and re scans for it in C: about 6x faster than leading lookbehinds.
_START = r"[hH/\\](?<![\w+.\-/\\][hH])(?<![\w+.\-:/\\][/\\])(?:(?<=[hH])(?i:ttps?):)?"
# The "//" after a scheme, or the "/" after a leading "/"; escaped: "\/" or "/" after "\".
_SLASHES = r"(?:(?<=:)/|(?<=/))/"
_ESCAPED_SLASHES = r"(?:(?<=:)\\|(?<=\\))/\\/"
_SENTENCE_END = re.compile(r"[.:;!]+\Z")


@dataclass(frozen=True)
class _Base:
    """A base URL (``uploads_url`` or ``cdn_url``) to match and to write."""

    url: str  # as configured, without a trailing slash
    netloc: str
    path: str  # "" or "/wp-content/uploads"

    @classmethod
    def parse(cls, url: str, setting: str) -> _Base | None:
        url = url.rstrip("/")
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{setting} must be an http(s) URL, not {url!r}")
        return cls(url, parts.netloc, parts.path)

    def patterns(self) -> tuple[re.Pattern[str], re.Pattern[str]]:
        """Every form of a URL under this base, capturing the path after it; and the
        same without the path: where such a URL starts."""

        def prefix(slash: str) -> str:
            host = f"(?i:{re.escape(self.netloc)})"
            segments = [host] + [re.escape(s) for s in self.path.split("/")[1:]]
            return "".join(segment + slash for segment in segments)

        plain, escaped = prefix("/"), prefix(r"\\/")
        start = f"{_START}(?:{_SLASHES}{plain}|(?P<esc>{_ESCAPED_SLASHES}{escaped}))"
        return re.compile(f"{start}(?P<path>{_PATH_CHAR}++)"), re.compile(start)

    def write(self, path: str, like: re.Match[str]) -> str:
        """This base's URL of ``path`` in the form of the matched URL (scheme, escaping)."""
        head = self.url if like[0][0] in "hH" else "//" + self.netloc + self.path
        url = f"{head}/{quote(path, safe='/')}"
        return url.replace("/", "\\/") if like["esc"] else url


def _decode(raw: str) -> str | None:
    """The path a matched URL names: JSON escapes, then percent-encoding, undone once."""
    if "\\" in raw:
        try:
            raw = json.loads(f'"{raw}"', strict=False)
        except ValueError:
            return None
    if "%" in raw:
        try:
            raw = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return None
    return raw


def _translate(
    text: str,
    patterns: tuple[re.Pattern[str], re.Pattern[str]],
    target: _Base,
    resolve: Callable[[str], str | None],
) -> str:
    """Replace each URL of ``patterns`` whose path ``resolve`` maps, by ``target``'s URL.

    The query and fragment are searched like any text, so a URL in them is found
    whether the URL before it was replaced or not; that keeps rewriting idempotent
    and reversible. So is a URL in the path of one that is not replaced
    (``https://cdn/x=https://...``): only the last can be replaced, as the path of
    every other holds its "//", so the search goes on from there, in linear time.
    """
    urls, starts = patterns
    cache: dict[str, str | None] = {}

    def resolved(raw: str) -> str | None:
        path = _decode(raw)
        if path is None or key_problem(path) is not None:
            return None
        if path not in cache:
            cache[path] = resolve(path)
        return cache[path]

    out: list[str] = []
    done = 0  # text[:done] is in out
    at = 0
    while match := urls.search(text, at):
        raw = match["path"]
        new = resolved(raw)
        if new is None and (end := _SENTENCE_END.search(raw)):
            raw = raw[: end.start()]
            new = resolved(raw) if raw else None
        if new is None:
            last = deque(starts.finditer(text, match.start("path"), match.end()), maxlen=1)
            at = last[0].start() if last else match.end()
            continue
        out += (text[done : match.start()], target.write(new, match))
        done = at = match.start("path") + len(raw)
    out.append(text[done:])
    return "".join(out)


class Rewriter:
    """Rewrites one site's upload URLs to its CDN URLs, and back."""

    def __init__(
        self, site: Site, lookup: Lookup, reverse_lookup: ReverseLookup | None = None
    ) -> None:
        self.site = site
        self._lookup = lookup
        self._reverse_lookup = reverse_lookup
        uploads = _Base.parse(site.uploads_url, "uploads_url")
        cdn = _Base.parse(site.cdn_url, "cdn_url")
        self._uploads: _Base | None = uploads if uploads and cdn else None
        self._cdn: _Base | None = cdn if uploads and cdn else None
        self._upload_urls = uploads.patterns() if uploads and cdn else None
        self._cdn_urls = cdn.patterns() if uploads and cdn else None
        # Where an upload URL can also read as a CDN URL: the path that reaches cdn_url's.
        self._shared_root: str | None = None
        if uploads and cdn and uploads.netloc.lower() == cdn.netloc.lower():
            up, down = uploads.path + "/", cdn.path + "/"
            if up.startswith(down) or down.startswith(up):
                self._shared_root = down

    def rewrite(self, text: str) -> str:
        """Upload URLs of offloaded files -> CDN URLs; every other character as it was."""
        if self._upload_urls is None or self._cdn is None:
            return text
        return _translate(text, self._upload_urls, self._cdn, self._key_of)

    def reverse(self, text: str) -> str:
        """CDN URLs of known keys -> upload URLs (for leaving the CDN)."""
        if self._reverse_lookup is None:
            raise ValueError("Rewriter.reverse needs a reverse_lookup")
        if self._cdn_urls is None or self._uploads is None:
            return text
        return _translate(text, self._cdn_urls, self._uploads, self._reverse_lookup)

    def rewrite_bytes(self, body: bytes, charset: str = "utf-8") -> bytes:
        """``rewrite`` on a body; bytes that do not decode pass through untouched."""
        text = body.decode(charset, errors="surrogateescape")
        return self.rewrite(text).encode(charset, errors="surrogateescape")

    def reverse_bytes(self, body: bytes, charset: str = "utf-8") -> bytes:
        """``reverse`` on a body; bytes that do not decode pass through untouched."""
        text = body.decode(charset, errors="surrogateescape")
        return self.reverse(text).encode(charset, errors="surrogateescape")

    def _key_of(self, path: str) -> str | None:
        if self._shared_root is not None and self._reverse_lookup is not None:
            assert self._uploads is not None
            url_path = f"{self._uploads.path}/{path}"
            root = self._shared_root
            if url_path.startswith(root) and self._reverse_lookup(url_path[len(root) :]):
                return None  # already a CDN URL
        return self._lookup(path)


def text_charset(charset: str) -> bool:
    """A text encoding that keeps ASCII as ASCII (URLs are ASCII): not idna, utf-16..."""
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        return False
    if not getattr(codec, "_is_text_encoding", True) or codec.name in ("idna", "punycode"):
        return False  # host-name codecs, not body encodings
    try:
        return "https://a/b".encode(codec.name) == b"https://a/b"
    except (UnicodeError, ValueError):
        return False

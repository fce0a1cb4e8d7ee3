"""Bucket naming rules, per storage provider, as a list of violations.

Pure: no I/O. The linter (``offload.buckets.lint``), the CLI and the config
loader all ask this module, so a name is judged the same way everywhere. It sits
in ``storage``, below both ``config`` and ``buckets``, so both may ask it.

How names are judged:

- ``validate`` reports every rule a name breaks, in the order of ``RULES``. A
  rule id appears at most once; its message lists each offending character with
  its ``repr`` and index. The one exception is ``invalid_char``, which a
  profile's reserved-word check (``gcs``: ``goog``/``google``; ``b2``: ``b2-``;
  ``minio``: ``minio``) can add a second time, since the contract has no
  rule id of its own for those.
- Every character falls under exactly one rule: any non-ASCII character is
  ``non_ascii`` (full-width digits and non-ASCII spaces included), ASCII
  space/tab/newline/CR/VT/FF is ``whitespace``, A-Z is ``uppercase``, ``_`` is
  ``underscore``, and any other ASCII outside ``[a-z0-9.-]`` (NUL and the other
  control characters too) is ``invalid_char``. In the profiles that forbid
  periods (``aws-directory``, ``r2``, ``b2``) a ``.`` is ``invalid_char`` as
  well, whatever ``allow_dots`` says, and the period-placement rules and
  ``dot_breaks_wildcard_tls`` do not apply there.
- "Begin and end with a letter or digit" is reported through the rule for the
  character that is there: ``leading_hyphen``, ``trailing_period`` and so on
  (or ``uppercase``, ``underscore``, ...).
- Length counts the characters of the name as given (``len(name)``).
- Reserved prefixes and suffixes are matched case-insensitively, so
  ``XN--Foo`` is told about ``xn--`` in the same run as its capitals. A name
  starting with ``sthree-configurator`` gets ``prefix_sthree_configurator``
  only: the more general ``prefix_sthree`` would say the same thing twice.
- ``ip_address``: any four dot-separated groups of ASCII digits
  (``1.2.3.256`` and ``01.02.03.04`` included; ``1.2.3`` and ``1.2.3.4.5`` not).
  AWS only says "formatted as an IP address"; this is the reading MinIO's server
  uses, and the safe one.
- ``dot_breaks_wildcard_tls``: ``https://media.example.com.s3.amazonaws.com``
  does not match the ``*.s3.amazonaws.com`` certificate, because a wildcard
  covers exactly one label (RFC 6125 §6.4.3, https://www.rfc-editor.org/rfc/rfc6125#section-6.4.3).
  An error by default, a warning with ``allow_dots=True`` (for sites that use
  path-style addressing behind a CDN).
- ``hyphen_next_to_period`` (``a-.b``, ``a.-b``) is not in AWS's current list,
  but such a label is not a valid hostname, so virtual-hosted requests fail; the
  older AWS rules forbade it ("use dashes adjacent to periods",
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-s3-bucket-naming-requirements.html)
  and MinIO's server still does. An error wherever periods are allowed, except
  in ``gcs`` (see there).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: a stable id from ``RULES``, a one-line message, a severity."""

    rule: str
    message: str
    severity: Severity


RULES: dict[str, str] = {
    "too_short": "Name is shorter than the provider's minimum length.",
    "too_long": "Name (or one dot-separated part) is longer than the provider allows.",
    "uppercase": "Name contains an uppercase ASCII letter.",
    "underscore": "Name contains an underscore (or begins/ends with one, where allowed).",
    "whitespace": "Name contains a space, tab, newline or other ASCII whitespace.",
    "non_ascii": "Name contains a non-ASCII character (accented letter, full-width digit, ...).",
    "invalid_char": "Name contains a character the provider does not allow, or a word it reserves.",
    "leading_hyphen": "Name begins with a hyphen.",
    "trailing_hyphen": "Name ends with a hyphen.",
    "leading_period": "Name begins with a period.",
    "trailing_period": "Name ends with a period.",
    "adjacent_periods": "Name contains two periods in a row.",
    "hyphen_next_to_period": "Name has a hyphen next to a period ('-.' or '.-').",
    "ip_address": "Name is formatted as an IPv4 address.",
    "prefix_xn": "Name starts with 'xn--' (reserved for Punycode domain names).",
    "prefix_sthree": "Name starts with 'sthree-' (reserved by Amazon S3).",
    "prefix_sthree_configurator": "Name starts with 'sthree-configurator' (reserved by Amazon S3).",
    "prefix_amzn_s3_demo": "Name starts with 'amzn-s3-demo-' (reserved for AWS examples).",
    "suffix_s3alias": "Name ends with '-s3alias' (reserved for access point aliases).",
    "suffix_ol_s3": "Name ends with '--ol-s3' (reserved for Object Lambda access point aliases).",
    "suffix_mrap": "Name ends with '.mrap' (reserved for Multi-Region Access Points).",
    "suffix_x_s3": "Name ends with '--x-s3' (directory buckets only); or lacks it.",
    "suffix_table_s3": "Name ends with '--table-s3' (reserved for S3 table buckets).",
    "dot_breaks_wildcard_tls": "Name contains a period, which breaks virtual-hosted HTTPS.",
}

# rule -> (the reserved text, what it is reserved for)
_AFFIXES: dict[str, tuple[str, str]] = {
    "prefix_xn": ("xn--", "Punycode-encoded (internationalized) domain names"),
    "prefix_sthree": ("sthree-", "Amazon S3's own use"),
    "prefix_sthree_configurator": ("sthree-configurator", "Amazon S3's own use"),
    "prefix_amzn_s3_demo": ("amzn-s3-demo-", "AWS documentation examples"),
    "suffix_s3alias": ("-s3alias", "access point aliases"),
    "suffix_ol_s3": ("--ol-s3", "Object Lambda Access Point aliases"),
    "suffix_mrap": (".mrap", "Multi-Region Access Points"),
    "suffix_x_s3": ("--x-s3", "directory buckets (profile aws-directory)"),
    "suffix_table_s3": ("--table-s3", "S3 table buckets"),
}
_PREFIXES = ("prefix_xn", "prefix_sthree", "prefix_sthree_configurator", "prefix_amzn_s3_demo")
_SUFFIXES = ("suffix_s3alias", "suffix_ol_s3", "suffix_mrap", "suffix_x_s3", "suffix_table_s3")

_LOWER_DIGITS_HYPHEN = frozenset(string.ascii_lowercase + string.digits + "-")
_ASCII_SPACE = frozenset(" \t\n\r\v\f")
_CLEAN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?", re.ASCII)  # shown as is in messages
_DOT_RUN = re.compile(r"[.-]*\.[.-]*")
_IPV4 = re.compile(r"[0-9]+(?:\.[0-9]+){3}", re.ASCII)
_DIRECTORY = re.compile(r"(?P<base>.+)--[a-z0-9]+(?:-[a-z0-9]+)+--x-s3", re.ASCII | re.IGNORECASE)
_GOOGLE = re.compile(r"g[o0][o0]gle", re.ASCII | re.IGNORECASE)

Check = Callable[[str], list[Violation]]


@dataclass(frozen=True)
class Profile:
    """A provider's naming rules; ``source`` is the page they come from."""

    name: str
    title: str
    source: str
    allowed: str  # the allowed characters, in words, for messages
    min_length: int = 3
    max_length: int = 63
    dotted_max_length: int = 63  # gcs: names with periods may be longer
    dots: bool = True
    uppercase: bool = False
    underscore: bool = False
    ip_rule: bool = True
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    vhost: str = "s3.amazonaws.com"  # the wildcard host named in the dot message
    severities: Mapping[str, Severity] = field(default_factory=dict, hash=False)
    extra: tuple[Check, ...] = ()  # profile-specific checks


def _error(rule: str, message: str) -> Violation:
    return Violation(rule, message, "error")


def _directory_suffix(name: str) -> list[Violation]:
    match = _DIRECTORY.fullmatch(name)
    if match is None:
        what = "zone id" if name.lower().endswith("--x-s3") else "suffix"
        form = "'base--zone-id--x-s3', e.g. 'my-bucket--usw2-az1--x-s3'"
        return [_error("suffix_x_s3", f"the name lacks the {what}: directory buckets are {form}")]
    if match["base"].endswith("-"):
        return [_error("trailing_hyphen", "the base name before '--zone-id--x-s3' ends with '-'")]
    return []


def _gcs_words(name: str) -> list[Violation]:
    problems = ["begin with 'goog'"] if name.lower().startswith("goog") else []
    if google := _GOOGLE.search(name):
        where = f"{google.group()!r} at index {google.start()}"
        problems.append(f"contain 'google' or a close misspelling ({where})")
    if not problems:
        return []
    return [_error("invalid_char", f"GCS bucket names cannot {' or '.join(problems)}")]


def _b2_prefix(name: str) -> list[Violation]:
    if name.lower().startswith("b2-"):
        return [_error("invalid_char", "names starting with 'b2-' are reserved for Backblaze")]
    return []


def _minio_reserved(name: str) -> list[Violation]:
    if name == "minio":
        return [_error("invalid_char", "'minio' is a bucket name MinIO reserves for itself")]
    return []


AWS = Profile(
    "aws",
    "Amazon S3",
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
    "lowercase letters, digits, periods and hyphens",
    prefixes=_PREFIXES,
    suffixes=_SUFFIXES,
)
"""Amazon S3 general purpose buckets, as listed today: 3-63 characters of
[a-z0-9.-], begin and end with a letter or digit, no '..', not an IP address,
no prefix xn--/sthree-/sthree-configurator/amzn-s3-demo-, no suffix
-s3alias/--ol-s3/.mrap/--x-s3/--table-s3.
Source: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
Not checked: the '-an' suffix that only account-regional-namespace buckets may
use (no rule id for it; such names are legitimate in that namespace)."""

AWS_DIRECTORY = Profile(
    "aws-directory",
    "Amazon S3 directory",
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/directory-bucket-naming-rules.html",
    "lowercase letters, digits and hyphens",
    dots=False,
    ip_rule=False,
    prefixes=_PREFIXES,
    suffixes=("suffix_s3alias", "suffix_ol_s3"),
    extra=(_directory_suffix,),
)
"""Amazon S3 directory buckets (S3 Express One Zone): 'base--zone-id--x-s3',
3-63 characters including the suffix, [a-z0-9-] only (a period is
invalid_char), same reserved prefixes as general purpose buckets. A missing or
malformed '--zone-id--x-s3' suffix is reported as suffix_x_s3; a zone id is
taken to be two or more hyphen-joined [a-z0-9] groups (usw2-az1, use1-atl2-az1).
Source: https://docs.aws.amazon.com/AmazonS3/latest/userguide/directory-bucket-naming-rules.html"""

GCS = Profile(
    "gcs",
    "Google Cloud Storage",
    "https://cloud.google.com/storage/docs/buckets#naming",
    "lowercase letters, digits, hyphens, underscores and periods",
    dotted_max_length=222,
    underscore=True,
    vhost="storage.googleapis.com",
    severities={"adjacent_periods": "warning", "hyphen_next_to_period": "warning"},
    extra=(_gcs_words,),
)
"""Google Cloud Storage: [a-z0-9_.-], begin and end with a letter or digit
(a leading or trailing '_' is reported as underscore), 3-63 characters, or up
to 222 with periods with each period-separated part at most 63 (too_long), not
an IP address; cannot begin with 'goog' or contain 'google' or a close
misspelling (matched as g[o0][o0]gle) — both reported as invalid_char. Google
does not list '..' or a hyphen next to a period, but a dotted GCS name must be
a domain you verified and no domain has such labels: warnings here.
Source: https://cloud.google.com/storage/docs/buckets#naming"""

R2 = Profile(
    "r2",
    "Cloudflare R2",
    "https://developers.cloudflare.com/r2/buckets/create-buckets/",
    "lowercase letters, digits and hyphens",
    dots=False,
    ip_rule=False,
    vhost="r2.cloudflarestorage.com",
)
"""Cloudflare R2: 3-63 characters of [a-z0-9-], not beginning or ending with a
hyphen. A period is invalid_char.
Source: https://developers.cloudflare.com/r2/buckets/create-buckets/"""

SPACES = Profile(
    "spaces",
    "DigitalOcean Spaces",
    "https://docs.digitalocean.com/products/spaces/details/limits/",
    "lowercase letters, digits, periods and hyphens",
    vhost="nyc3.digitaloceanspaces.com",
)
"""DigitalOcean Spaces: 3-63 characters of lowercase letters, digits and
hyphens, beginning and ending with a letter or digit. DigitalOcean's limits
page speaks of bucket names that contain a period (the wildcard certificate
will not match them; path-style requests work), so periods are accepted here
with the same placement rules and dot_breaks_wildcard_tls as Amazon S3, and an
IP-shaped name is refused as on S3.
Sources: https://docs.digitalocean.com/products/spaces/how-to/create/ and
https://docs.digitalocean.com/products/spaces/details/limits/"""

WASABI = Profile(
    "wasabi",
    "Wasabi",
    "https://docs.wasabi.com/docs/bucket-naming-conventions",
    "lowercase letters, digits, periods and hyphens",
    prefixes=("prefix_xn", "prefix_sthree", "prefix_amzn_s3_demo"),
    suffixes=("suffix_s3alias", "suffix_ol_s3", "suffix_mrap", "suffix_x_s3"),
    vhost="s3.wasabisys.com",
)
"""Wasabi: Amazon S3's general purpose rules, minus what Wasabi does not list
(the sthree-configurator prefix, already covered by sthree-, and the
--table-s3 suffix).
Source: https://docs.wasabi.com/docs/bucket-naming-conventions"""

B2 = Profile(
    "b2",
    "Backblaze B2",
    "https://www.backblaze.com/docs/cloud-storage-buckets",
    "letters, digits and hyphens",
    min_length=6,
    dots=False,
    uppercase=True,
    ip_rule=False,
    vhost="s3.us-west-004.backblazeb2.com",
    severities={"leading_hyphen": "warning", "trailing_hyphen": "warning"},
    extra=(_b2_prefix,),
)
"""Backblaze B2: 6-63 characters of letters, digits and hyphens; upper-case
letters are allowed (names are case-insensitive); names starting with 'b2-'
are reserved (invalid_char). Backblaze does not forbid a leading or trailing
hyphen, but such a name is not a valid hostname for B2's S3-compatible
virtual-hosted endpoint: warnings.
Source: https://www.backblaze.com/docs/cloud-storage-buckets"""

MINIO = Profile(
    "minio",
    "MinIO",
    "https://github.com/minio/minio/blob/master/cmd/object-api-utils.go",
    "lowercase letters, digits, periods and hyphens",
    vhost="minio.example.com",
    extra=(_minio_reserved,),
)
"""MinIO: the server's IsValidBucketName — 3-63 characters, period-separated
labels of [a-z0-9-] that are non-empty and neither begin nor end with a hyphen,
not four all-digit labels; the name 'minio' is reserved (invalid_char). MinIO
does not enforce Amazon's reserved prefixes and suffixes, so neither does this.
Source: https://github.com/minio/minio/blob/master/cmd/object-api-utils.go"""

PROFILES: dict[str, Profile] = {
    p.name: p for p in (AWS, AWS_DIRECTORY, GCS, R2, SPACES, WASABI, B2, MINIO)
}
_ORDER = {rule: index for index, rule in enumerate(RULES)}


def _where(hits: list[tuple[int, str]], *, names: bool = False) -> str:
    shown = []
    for index, char in hits[:5]:
        label = f" ({unicodedata.name(char, f'U+{ord(char):04X}')})" if names else ""
        shown.append(f"{char!r}{label} at index {index}")
    return ", ".join(shown) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")


def _char_rule(char: str, p: Profile) -> str | None:
    if char in _LOWER_DIGITS_HYPHEN:
        return None
    if char == ".":
        return None if p.dots else "invalid_char"
    if not char.isascii():
        return "non_ascii"
    if "A" <= char <= "Z":
        return None if p.uppercase else "uppercase"
    if char == "_":
        return None if p.underscore else "underscore"
    return "whitespace" if char in _ASCII_SPACE else "invalid_char"


def _characters(name: str, p: Profile) -> list[Violation]:
    hits: dict[str, list[tuple[int, str]]] = {}
    for index, char in enumerate(name):
        if rule := _char_rule(char, p):
            hits.setdefault(rule, []).append((index, char))
    if p.underscore:  # allowed, but not first or last
        ends = {0, len(name) - 1}
        hits["underscore"] = [(i, "_") for i in sorted(ends) if name[i : i + 1] == "_"]
    messages = {
        "uppercase": "uppercase letters are not allowed: {}; use lowercase",
        "underscore": "underscores are not allowed: {}; use hyphens instead",
        "whitespace": "whitespace is not allowed: {}",
        "non_ascii": f"non-ASCII characters are not allowed: {{}}; use ASCII {p.allowed}",
        "invalid_char": f"{{}} not allowed: {p.title} bucket names may contain only {p.allowed}",
    }
    if p.underscore:
        messages["underscore"] = "the name must begin and end with a letter or digit, not {}"
    found = []
    for rule, rule_hits in hits.items():
        text = _where(rule_hits, names=rule == "non_ascii")
        if rule == "invalid_char":
            text += " is" if len(rule_hits) == 1 else " are"
        if rule_hits:
            found.append(_error(rule, messages[rule].format(text)))
    return found


def _length(name: str, p: Profile) -> list[Violation]:
    size, limit = len(name), p.dotted_max_length if "." in name else p.max_length
    if size < p.min_length:
        return [
            _error("too_short", f"the name has {size} characters; the minimum is {p.min_length}")
        ]
    if size > limit:
        longer = f" ({p.dotted_max_length} with periods)" if limit < p.dotted_max_length else ""
        return [_error("too_long", f"the name has {size} characters; the limit is {limit}{longer}")]
    start = 0
    for part in name.split(".") if p.dots else ():
        if len(part) > p.max_length:
            message = (
                f"the part at index {start} has {len(part)} characters; the limit is {p.max_length}"
            )
            return [_error("too_long", message)]
        start += len(part) + 1
    return []


def _placement(name: str, p: Profile) -> list[Violation]:
    begin, end = "; begin with a letter or digit", "; end with a letter or digit"
    checks = [
        ("leading_hyphen", name.startswith("-"), "the name begins with a hyphen" + begin),
        ("trailing_hyphen", name.endswith("-"), "the name ends with a hyphen" + end),
    ]
    if p.dots:
        label = ", which makes an invalid hostname label"
        pair = min((i for i in (name.find("-."), name.find(".-")) if i >= 0), default=-1)
        checks += [
            ("leading_period", name.startswith("."), "the name begins with a period" + begin),
            ("trailing_period", name.endswith("."), "the name ends with a period" + end),
            ("adjacent_periods", ".." in name, f"two periods in a row at index {name.find('..')}"),
            (
                "hyphen_next_to_period",
                pair >= 0,
                f"a hyphen next to a period at index {pair}{label}",
            ),
        ]
    if p.ip_rule and _IPV4.fullmatch(name):
        checks.append(("ip_address", True, "the name is formatted as an IPv4 address (a.b.c.d)"))
    return [_error(rule, message) for rule, broken, message in checks if broken]


def _affixes(name: str, p: Profile) -> list[Violation]:
    lowered = name.lower()
    found = [rule for rule in p.prefixes if lowered.startswith(_AFFIXES[rule][0])]
    if "prefix_sthree_configurator" in found and "prefix_sthree" in found:
        found.remove("prefix_sthree")  # the specific rule says it all
    found += [rule for rule in p.suffixes if lowered.endswith(_AFFIXES[rule][0])]
    return [
        _error(
            rule,
            f"the name {'starts' if rule.startswith('prefix') else 'ends'} with "
            f"{_AFFIXES[rule][0]!r}, a {rule.split('_')[0]} reserved for {_AFFIXES[rule][1]}",
        )
        for rule in found
    ]


def _dots(name: str, p: Profile, allow_dots: bool) -> list[Violation]:
    if not p.dots or "." not in name:
        return []
    clean = _CLEAN.fullmatch(name) is not None
    shown = name if clean else "NAME"
    instead = f" ('{_DOT_RUN.sub('-', name)}')" if clean else ""
    message = (
        f"a period breaks virtual-hosted HTTPS: '{shown}.{p.vhost}' does not match the "
        f"'*.{p.vhost}' wildcard certificate, because a wildcard covers exactly one label "
        f"(RFC 6125 §6.4.3); use hyphens instead{instead}, "
        "or path-style addressing with a CDN in front"
    )
    return [Violation("dot_breaks_wildcard_tls", message, "warning" if allow_dots else "error")]


def validate(name: str, profile: str = "aws", *, allow_dots: bool = False) -> list[Violation]:
    """Every rule ``name`` breaks under ``profile``, in ``RULES`` order; [] when it is fine."""
    if not isinstance(name, str):
        raise TypeError(f"a bucket name is a str, not {type(name).__name__}")
    if profile not in PROFILES:
        choices = ", ".join(PROFILES)
        raise ValueError(f"unknown bucket profile {profile!r}; choose from {choices}")
    p = PROFILES[profile]
    found = _length(name, p) + _characters(name, p) + _placement(name, p) + _affixes(name, p)
    for check in p.extra:
        found += check(name)
    found = [Violation(v.rule, v.message, p.severities.get(v.rule, v.severity)) for v in found]
    found += _dots(name, p, allow_dots)
    return sorted(found, key=lambda v: _ORDER[v.rule])


# endpoint host (or a parent domain of it) -> profile, for profile_for
_HOSTS = {
    "amazonaws.com": "aws",
    "amazonaws.com.cn": "aws",
    "storage.googleapis.com": "gcs",
    "r2.cloudflarestorage.com": "r2",
    "digitaloceanspaces.com": "spaces",
    "wasabisys.com": "wasabi",
    "backblazeb2.com": "b2",
}


def profile_for(endpoint_url: str | None, bucket: str = "") -> str:
    """The profile for a bucket at ``endpoint_url`` (None: Amazon S3), judged by its host.

    A bucket ending in ``--x-s3`` on Amazon S3 is a directory bucket. An endpoint
    this module does not know (MinIO, Ceph, a local test server) gets ``aws``: the
    rules S3-compatible servers are written against, and the strictest common set.
    """
    host = "amazonaws.com"
    if endpoint_url:
        url = endpoint_url if "//" in endpoint_url else f"//{endpoint_url}"
        host = urlsplit(url).hostname or ""
    known = [
        name for domain, name in _HOSTS.items() if host.endswith(f".{domain}") or host == domain
    ]
    profile = known[0] if known else "aws"
    if known == ["aws"] and bucket.lower().endswith("--x-s3"):
        return "aws-directory"
    return profile


def is_valid(name: str, profile: str = "aws", *, allow_dots: bool = False) -> bool:
    """True when ``name`` breaks no error-severity rule (warnings are allowed)."""
    return not any(v.severity == "error" for v in validate(name, profile, allow_dots=allow_dots))


def tls_wildcard_safe(name: str, profile: str = "aws") -> bool:
    """True when ``name`` is valid for ``profile`` and has no period, so HTTPS works."""
    return "." not in name and is_valid(name, profile)

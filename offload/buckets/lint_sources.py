"""Where bucket names hide in a file's text: one small extractor per kind of source.

Each extractor yields a ``Candidate``: the character offset of the name's first
character and the name exactly as written, so invalid characters (upper case,
underscores, spaces inside quotes) reach the validator instead of being cut off.
Values that stand for a name rather than being one (``${var.x}``, ``<Bucket>``,
``!Ref``, ``$BUCKET``) are candidates too; ``is_placeholder`` tells them apart so
the linter can count them. ``candidates(filename, text)`` picks the extractors
for a file by its name; the ``s3://`` and ARN scans run on every text file.
Extractors run most specific first, and the caller keeps the first candidate at
each offset, so one name at one position is reported once.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable, Iterator
from typing import NamedTuple

from offload.storage import bucketname


class Candidate(NamedTuple):
    offset: int
    value: str
    placeholder: bool = False  # known from the syntax (``!Ref X``, ``var.x``)
    profile: str | None = None  # set by the file itself (an offload site's bucket_profile)
    allow_dots: bool = False  # set by the file itself (a site with path-style addressing)


_PLACEHOLDER = re.compile(
    r"""[<>{}*]                     # <BucketName>, {{ bucket }}, ${var.x}, {env}, wildcards
    | \$[A-Za-z0-9_{(]              # $BUCKET, $1, $(command)
    | %[A-Za-z_][A-Za-z0-9_]*%      # %BUCKET%
    | %(?:\([A-Za-z_]\w*\))?[sd]    # printf-style %s, %(bucket)s
    """,
    re.X | re.A,
)


# Documentation spells a name to fill in as BUCKET, NAME, MY_BUCKET or
# DOC-EXAMPLE-BUCKET, or leaves it out as "...": no real AWS bucket has
# capitals, so such a name is taken for a placeholder rather than a typo.
_STAND_IN = re.compile(r"[A-Z][A-Z0-9_-]*[A-Z0-9]|\.\.\.|\u2026", re.A)


def is_placeholder(value: str) -> bool:
    """True when ``value`` stands for a name (a template, variable, wildcard or stand-in)."""
    return _PLACEHOLDER.search(value) is not None or _STAND_IN.fullmatch(value) is not None


# -- s3:// URLs and ARNs, in any text file ------------------------------------
#
# Every pattern here starts with a literal ("3://", "arn:", "bucket",
# "BucketName") so the regex engine can skip ahead quickly; what must come
# before the literal is checked by hand. That makes the scan about ten times
# faster than leading look-behinds do (bench/lint_buckets.py).

# A name runs to a slash, whitespace, a quote or a closing delimiter of the text
# around it (Markdown's "(s3://media)" and "<s3://media>"). Openers such as '<', '(', '{'
# stay in the name: "<bucket>", "$(cmd)", "${var}" are placeholders.
_NAME = r"[^\s/'\"`\\>)\],;|&?#]*"
_S3_URL = re.compile(r"3[AaNn]?://(" + _NAME + ")", re.A)  # s3://, S3://, s3a://, s3n://
_S3_ARN = re.compile(
    r"arn:(?:aws[a-z-]*|\$\{[^}\s]*\}):s3:::(" + _NAME + ")", re.A
)  # arn:aws:s3:::NAME, other partitions, CloudFormation's arn:${AWS::Partition}:s3:::
_SCHEME_CHARS = frozenset(string.ascii_letters + string.digits + "+.-")
_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_PROSE_SUFFIXES = (".md", ".markdown", ".rst", ".txt", ".adoc")


def _is_s3_scheme(text: str, start: int) -> bool:
    """True when the "3://" at ``start`` ends a whole "s3" scheme (not "xs3://")."""
    return (
        start > 0
        and text[start - 1] in "Ss"
        and (start < 2 or text[start - 2] not in _SCHEME_CHARS)
    )


def _urls(text: str, prose: bool) -> Iterator[Candidate]:
    for pattern in (_S3_URL, _S3_ARN):
        for match in pattern.finditer(text):
            start = match.start()
            if pattern is _S3_URL and not _is_s3_scheme(text, start):
                continue
            if pattern is _S3_ARN and start > 0 and text[start - 1] in _WORD_CHARS:
                continue
            name = match.group(1)
            if prose and not text.startswith("/", match.end(1)):
                name = name.rstrip(".:!")  # a full stop ends the sentence, not the name
            if name:
                yield Candidate(match.start(1), name)


# -- settings: PHP, Python, .env and shell ------------------------------------

# A key is [A-Za-z0-9_]* then BUCKET, BUCKET_NAME or BucketName, in any case:
# S3_BUCKET, AWS_STORAGE_BUCKET_NAME, bucket, bucket_name. The patterns match
# from "bucket" on; _key_start walks back over the rest of the key.
_STRING = r"""[rRuUbBfF]{0,2}(?:"(?P<dq>[^"\\\n]*)"|'(?P<sq>[^'\\\n]*)')"""
_SETTINGS = re.compile(
    rf"""BUCKET(?:_?NAME)?
    (?:(?P<kq>["'])[ \t]*(?:\][ \t]*=|=>|:|(?P<comma>,)[ \t]*(?:default[ \t]*=)?)  # 'bucket' =>
      |\b[ \t]*=)                                                       # S3_BUCKET =
    [ \t]*{_STRING}""",
    re.X | re.A | re.I,
)  # $settings['s3_bucket'] = '...'; define('AS3CF_BUCKET', '...'); 'bucket' => '...';
# $bucket = '...'; AWS_S3_BUCKET = '...'; {"bucket_name": "..."}; getenv("S3_BUCKET", "...")
_ENV = re.compile(
    r"""BUCKET(?:_?NAME)?[ \t]*=[ \t]*
    (?:"(?P<dq>[^"\n]*)"|'(?P<sq>[^'\n]*)'|(?P<bare>[^\s"'`;]+))""",
    re.X | re.A | re.I,
)
_ENV_LEAD = re.compile(  # what may come before the key on its line
    r"[ \t]*(?:(?:export|local|readonly|declare|typeset)(?:[ \t]+-[A-Za-z]+)*[ \t]+)?[A-Za-z0-9_]*",
    re.A,
)
_SHEBANG = re.compile(r"#![^\n]*\b(?:ba|da|z|k)?sh\b", re.A)
_QUOTED_KEY_CHARS = _WORD_CHARS | {".", "-"}  # 's3fs.bucket'


def _key_start(text: str, end: int, chars: frozenset[str]) -> int:
    while end > 0 and text[end - 1] in chars:
        end -= 1
    return end


def _setting_value(match: re.Match[str]) -> Iterator[Candidate]:
    for group in ("dq", "sq", "bare"):
        value = match.groupdict().get(group)
        if value is not None:
            # A URL is not a name (an s3:// one is the URL scan's); nor is an ARN.
            if value.strip() and "://" not in value and not value.startswith("arn:"):
                yield Candidate(match.start(group), value)
            return


def _settings(text: str) -> Iterator[Candidate]:
    for match in _SETTINGS.finditer(text):
        quote = match["kq"]
        if quote is not None:  # the key must open with the quote it closes with
            chars = _WORD_CHARS if match["comma"] else _QUOTED_KEY_CHARS
            start = _key_start(text, match.start(), chars)
            if start == 0 or text[start - 1] != quote:
                continue
            # "KEY", "value" is a setting only as a call's first two arguments,
            # define('AS3CF_BUCKET', ...) or getenv("S3_BUCKET", ...): not a tuple.
            if match["comma"] and not text[: start - 1].rstrip(" \t").endswith("("):
                continue
        yield from _setting_value(match)


def _env(text: str) -> Iterator[Candidate]:
    for match in _ENV.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if _ENV_LEAD.fullmatch(text, line_start, match.start()):
            yield from _setting_value(match)


# -- CloudFormation: BucketName in YAML or JSON -------------------------------

_CFN = re.compile(
    r"""BucketName(?P<kq>["']?)[ \t]*:[ \t]*
    (?:(?P<tag>![A-Za-z:]+)[ \t]*)?
    (?:"(?P<dq>[^"\\\n]*)"|'(?P<sq>[^'\n]*)'
    |(?P<intrinsic>\{[ \t]*["']?(?:Ref|Fn::\w+)["']?[ \t]*:)
    |(?P<bare>[^\s'"{\[\#&*|>,!][^\n,{}\[\]]*?)(?=[ \t]+\#|[ \t]*(?:[,}\]]|\r?\n|\Z))
    |[ \t]*(?:\#[^\n]*)?\r?\n(?P<nested>[ \t]*(?:Ref|Fn::\w+)[ \t]*:|[ \t]*!))?""",
    re.X | re.A,
)
# Before the key: the line's indentation and a YAML list dash, or a JSON/flow "{" or ",".
_CFN_LEAD = re.compile(r"[ \t]*(?:-[ \t]+)?|.*[{,][ \t]*", re.A)
_YAML_NON_STRINGS = frozenset({"null", "Null", "NULL", "~", "true", "false", "True", "False"})


def _cloudformation(text: str) -> Iterator[Candidate]:
    for match in _CFN.finditer(text):
        lead_end = match.start() - len(match["kq"])
        if match["kq"] and text[lead_end : match.start()] != match["kq"]:
            continue
        if not _CFN_LEAD.fullmatch(text, text.rfind("\n", 0, lead_end) + 1, lead_end):
            continue
        value_group = next((g for g in ("dq", "sq", "bare") if match[g] is not None), None)
        tag = match["tag"]
        if match["intrinsic"] or match["nested"] or (tag and (tag != "!Sub" or not value_group)):
            start = match.start("tag" if tag else "intrinsic" if match["intrinsic"] else "nested")
            yield Candidate(start, match[0][start - match.start() :].strip(), placeholder=True)
        elif value_group and match[value_group] and match[value_group] not in _YAML_NON_STRINGS:
            yield Candidate(match.start(value_group), match[value_group])


# -- Terraform: bucket = "..." in aws_s3_bucket* blocks, and the s3 backend ---

_TF_BLOCK = re.compile(
    r"""^[ \t]*(?:(?:resource|data)[ \t]+(?:"aws_s3_bucket\w*"|aws_s3_bucket\w*)
    [ \t]+(?:"[^"\n]*"|[\w-]+)|backend[ \t]+"s3")[ \t]*\{""",
    re.X | re.A | re.M,
)
_TF_BUCKET = re.compile(r'[ \t]*bucket[ \t]*=[ \t]*(?:"(?P<dq>[^"\n]*)"|(?P<expr>[^\s#/]))', re.A)
_TF_REFERENCE = re.compile(r"(?:var|local|module|data|each|count)\.|[A-Za-z_]\w*\(", re.A)
_HCL_SPECIAL = re.compile(r'[\n"#/{}<]')
_HEREDOC = re.compile(r"<<-?([A-Za-z_]\w*)\r?\n", re.A)


def _skip_string(text: str, i: int) -> int:
    """From an opening quote to just past its closing one (HCL: one line, ${} nests)."""
    n = len(text)
    i += 1
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
        elif char == '"':
            return i + 1
        elif char == "\n":
            return i
        elif char in "$%" and text.startswith("{", i + 1):
            i = _block_lines(text, i + 2)[1]
        else:
            i += 1
    return n


def _block_lines(text: str, i: int) -> tuple[list[int], int]:
    """Offsets where a line starts at the block's own depth, and the offset past its '}'.

    Strings, comments and heredocs are skipped, so braces inside them do not count.
    """
    starts, depth, n = [i], 1, len(text)
    while (match := _HCL_SPECIAL.search(text, i)) is not None:
        i, char = match.start(), match.group()
        if char == '"':
            i = _skip_string(text, i)
            continue
        if char == "#" or text.startswith("//", i):
            i = n if (end := text.find("\n", i)) < 0 else end
            continue
        if text.startswith("/*", i):
            i = n if (end := text.find("*/", i + 2)) < 0 else end + 2
            continue
        if char == "<" and (heredoc := _HEREDOC.match(text, i)) is not None:
            closing = re.compile(rf"^[ \t]*{heredoc[1]}[ \t]*\r?$", re.M)
            end_match = closing.search(text, heredoc.end())
            i = n if end_match is None else end_match.end()
            continue
        if char == "\n" and depth == 1:
            starts.append(i + 1)
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return starts, i + 1
        i += 1
    return starts, n


def _terraform(text: str) -> Iterator[Candidate]:
    for block in _TF_BLOCK.finditer(text):
        for start in _block_lines(text, block.end())[0]:
            match = _TF_BUCKET.match(text, start)
            if match is None:
                continue
            if match["dq"] is not None:
                if match["dq"] and not match["dq"].startswith("arn:"):
                    yield Candidate(match.start("dq"), match["dq"])
            elif _TF_REFERENCE.match(text, match.start("expr")):
                # var.x, local.x, format(...): the name is decided elsewhere.
                # A reference to another resource (aws_s3_bucket.x.id) is linted there.
                line_end = text.find("\n", match.start("expr"))
                expr = text[match.start("expr") : None if line_end < 0 else line_end]
                yield Candidate(match.start("expr"), expr.strip(), placeholder=True)


# -- offload's own config: a site's storage and backup, with its own rules ----

_TOML_TABLE = re.compile(r"""^[ \t]*\[[ \t]*([^\]\n]*?)[ \t]*\]""", re.M)
_TOML_SITE = re.compile(r"""sites[ \t]*\.[ \t]*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\Z""")
_TOML_URL = re.compile(r"""^[ \t]*(?:storage|backup)[ \t]*=[ \t]*["'][Ss]3://""", re.M)


def _site_rules(site: dict[str, object]) -> tuple[str | None, bool]:
    """The profile and dot tolerance a site's own settings ask for (as config loading does)."""
    profile = site.get("bucket_profile")
    if not isinstance(profile, str) or profile not in bucketname.PROFILES:
        profile = None
    return profile, site.get("addressing_style") == "path"


def _offload_toml(text: str) -> Iterator[Candidate]:
    if "[sites" not in text:
        return
    try:
        sites = tomllib.loads(text).get("sites")
    except tomllib.TOMLDecodeError:
        return  # the generic s3:// scan still sees its URLs
    if not isinstance(sites, dict):
        return
    tables = list(_TOML_TABLE.finditer(text))
    for match in _TOML_URL.finditer(text):
        table = next((t for t in reversed(tables) if t.start() < match.start()), None)
        site_key = None if table is None else _TOML_SITE.match(table[1])
        if site_key is None:
            continue
        site = sites.get(next(g for g in site_key.groups() if g is not None))
        rules = _site_rules(site) if isinstance(site, dict) else (None, False)
        url = _S3_URL.match(text, match.end() - 4)
        if url is not None and url[1]:
            yield Candidate(url.start(1), url[1], profile=rules[0], allow_dots=rules[1])


# -- which extractors read which file -----------------------------------------

Extractor = Callable[[str], Iterator[Candidate]]
_BY_SUFFIX: dict[str, tuple[Extractor, ...]] = {
    ".toml": (_offload_toml,),
    ".tf": (_terraform,),
    ".json": (_cloudformation,),
    ".yaml": (_cloudformation,),
    ".yml": (_cloudformation,),
    ".template": (_cloudformation,),
    ".php": (_settings,),
    ".inc": (_settings,),
    ".module": (_settings,),
    ".py": (_settings,),
    ".sh": (_env,),
    ".bash": (_env,),
    ".zsh": (_env,),
    ".env": (_env,),
    ".envrc": (_env,),
}


def extractors_for(filename: str, text: str) -> tuple[Extractor, ...]:
    """The specific extractors for a file, judged by its name (and a shell shebang)."""
    name = filename.lower()
    suffix = name[name.rfind(".") :] if "." in name else ""
    if name.startswith(".env"):  # .env, .env.production, .env.example
        return (_env,)
    found = _BY_SUFFIX.get(suffix, ())
    if not found and text.startswith("#!") and _SHEBANG.match(text):
        found = (_env,)
    return found


def candidates(filename: str, text: str) -> Iterator[Candidate]:
    """Every candidate name in ``text``, most specific extractors first."""
    for extract in extractors_for(filename, text):
        yield from extract(text)
    yield from _urls(text, prose=filename.lower().endswith(_PROSE_SUFFIXES))

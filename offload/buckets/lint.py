"""Find bucket names in files and folders, judge them, and print the result.

``lint_paths`` walks files and folders, reads every text file and asks
``lint_sources`` for the names in it; ``bucketname`` judges each name. Every name
found is a ``Finding``, valid ones too, so the JSON output is an inventory of a
repository's buckets. Placeholders (``${var.x}``, ``<Bucket>``, ``$BUCKET``) are
counted, not judged. Four formatters print findings: ``text`` for people,
``json`` for scripts, ``github`` (workflow commands that annotate a pull request)
and ``sarif`` (for code-scanning UIs).

Choices a caller may want to know:

- Skipped while walking: ``.git``, ``.hg``, ``.svn``, ``node_modules``,
  ``__pycache__``, ``.tox``, ``.terraform``, ``.venv``, ``venv`` and any folder
  holding a ``pyvenv.cfg``; symlinked folders (no loops); binary files (a NUL
  byte in the first 8 KiB); files over 5 MiB; files that cannot be read. A path
  given on the command line is always read, whatever its name.
- A file reached twice (overlapping arguments) is read once.
- Text is UTF-8 (a BOM is dropped) with undecodable bytes replaced; lines are
  counted at ``\\n`` and columns in characters, both from 1.
- Paths are shown relative to the current folder when under it, else as given,
  with ``/`` separators.
- In text, github and sarif output a message starts with the name's repr
  (``'Media_Prod': uppercase letters are not allowed: ...``): the validator's
  messages speak of indexes into the name. JSON keeps the validator's message.
- ``exit_code``: a warning (a dotted name with ``allow_dots``) does not fail.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from offload import __version__
from offload.buckets import lint_sources as lintsources
from offload.errors import ExitCode
from offload.storage import bucketname
from offload.storage.bucketname import Violation

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".tox",
        ".terraform",
        ".venv",
        "venv",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".hypothesis",
    }
)
MAX_FILE_BYTES = 5 * 1024 * 1024
_SNIFF_BYTES = 8192
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/offload/"


@dataclass(frozen=True)
class Finding:
    """One bucket name at one place (``file`` is None for a name given directly)."""

    name: str
    file: str | None
    line: int | None
    column: int | None
    profile: str
    violations: tuple[Violation, ...]

    @property
    def valid(self) -> bool:
        return not any(v.severity == "error" for v in self.violations)

    @property
    def tls_safe(self) -> bool:
        return bucketname.tls_wildcard_safe(self.name, self.profile)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name}
        if self.file is not None:
            data |= {"file": self.file, "line": self.line, "column": self.column}
        return data | {
            "profile": self.profile,
            "valid": self.valid,
            "tls_safe": self.tls_safe,
            "violations": [
                {"rule": v.rule, "message": v.message, "severity": v.severity}
                for v in self.violations
            ],
        }


@dataclass(frozen=True)
class LintReport:
    """What ``lint_paths`` found: every name, sorted by place, and what it skipped."""

    findings: list[Finding]
    placeholders: int  # names that were templates or variables, not judged
    files: int  # text files read


@functools.lru_cache(maxsize=4096)
def _violations(name: str, profile: str, allow_dots: bool) -> tuple[Violation, ...]:
    return tuple(bucketname.validate(name, profile, allow_dots=allow_dots))


def check_names(
    names: Iterable[str], profile: str = "aws", allow_dots: bool = False
) -> list[Finding]:
    """A finding per name, in the order given (``offload check-bucket``)."""
    return [
        Finding(name, None, None, None, profile, _violations(name, profile, allow_dots))
        for name in names
    ]


def lint_paths(
    paths: Sequence[Path],
    profile: str = "aws",
    allow_dots: bool = False,
    *,
    exclude: Sequence[str] = (),
) -> LintReport:
    """Every bucket name in ``paths`` (files or folders, recursively).

    ``exclude`` holds glob patterns matched against a file's or folder's name and
    against its shown path (``docs``, ``*.md``, ``tests/fixtures/*``).
    Raises ``FileNotFoundError`` (with ``filename`` set) for a path that does not exist.
    """
    for path in paths:  # all of them before any work, so a typo fails fast
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    cwd = Path.cwd()
    findings: list[Finding] = []
    placeholders = files = 0
    seen: set[str] = set()
    for path in paths:
        for file, name, shown in _walk(Path(path), cwd, exclude):
            if shown in seen:
                continue
            seen.add(shown)
            text = _read_text(file)
            if text is None:
                continue
            files += 1
            found, skipped = _lint_text(text, name, shown, profile, allow_dots)
            findings += found
            placeholders += skipped
    findings.sort(key=lambda f: (f.file or "", f.line or 0, f.column or 0))
    return LintReport(findings, placeholders, files)


def _lint_text(
    text: str, filename: str, shown: str, profile: str, allow_dots: bool
) -> tuple[list[Finding], int]:
    findings, placeholders, offsets = [], 0, set()
    for candidate in lintsources.candidates(filename, text):
        if candidate.offset in offsets:
            continue  # one name at one position is reported once
        offsets.add(candidate.offset)
        if candidate.placeholder or lintsources.is_placeholder(candidate.value):
            placeholders += 1
            continue
        line = text.count("\n", 0, candidate.offset) + 1
        column = candidate.offset - text.rfind("\n", 0, candidate.offset)
        name_profile = candidate.profile or profile
        dots = allow_dots or candidate.allow_dots
        violations = _violations(candidate.value, name_profile, dots)
        findings.append(Finding(candidate.value, shown, line, column, name_profile, violations))
    return findings, placeholders


def _excluded(name: str, shown: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(shown, p) for p in exclude)


def _walk(root: Path, cwd: Path, exclude: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    """(path to open, file name, path to show) of every file to read under ``root``.

    Plain strings, not Path objects: on a big tree pathlib costs a third of the run.
    """
    top, shown_top = str(root), _shown(root, cwd)
    if not root.is_dir():
        if root.is_file():
            yield top, root.name, shown_top
        return
    prefix = "" if shown_top == "." else shown_top.rstrip("/") + "/"
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError:
            continue
        for entry in entries:
            shown = prefix + entry.path[len(top) :].replace(os.sep, "/").lstrip("/")
            if exclude and _excluded(entry.name, shown, exclude):
                continue
            if entry.is_dir(follow_symlinks=False):
                venv = os.path.exists(os.path.join(entry.path, "pyvenv.cfg"))
                if entry.name not in SKIP_DIRS and not venv:
                    stack.append(entry.path)
            elif entry.is_file():  # follows a symlink to a file; no FIFOs or sockets
                yield entry.path, entry.name, shown


def _read_text(path: str) -> str | None:
    """The file's text, or None for a binary, oversized or unreadable file."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
                return None
            head = handle.read(_SNIFF_BYTES)
            if b"\0" in head:
                return None
            data = head + handle.read(MAX_FILE_BYTES)
    except OSError:
        return None
    return data.decode("utf-8-sig", errors="replace")


def _shown(path: Path, cwd: Path) -> str:
    if path.is_absolute():
        try:
            return path.relative_to(cwd).as_posix()
        except ValueError:
            pass
    return path.as_posix()


# -- output ------------------------------------------------------------------


def _findings(results: LintReport | Iterable[Finding]) -> list[Finding]:
    return results.findings if isinstance(results, LintReport) else list(results)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _summary(findings: list[Finding], files: int | None, placeholders: int) -> str:
    where = "" if files is None else f" in {_plural(files, 'file')}"
    text = f"{_plural(len(findings), 'bucket name')}{where}"
    invalid = sum(not f.valid for f in findings)
    warned = sum(f.valid and bool(f.violations) for f in findings)
    if findings:
        parts = [f"{invalid} invalid"] if invalid else []
        parts += [f"{warned} with {'a warning' if warned == 1 else 'warnings'}"] if warned else []
        text += ": " + (", ".join(parts) or "all valid")
    if placeholders:
        text += f"; {_plural(placeholders, 'placeholder')} skipped"
    return text


def _message(finding: Finding, violation: Violation) -> str:
    return f"{finding.name!r}: {violation.message}"


def _plain(name: str) -> str:
    """The name as typed, or its repr when spaces, a colon or a control character would
    make the line ambiguous (or break it in two)."""
    plain = name.isprintable() and not any(c.isspace() or c == ":" for c in name)
    return name if plain and name else repr(name)


def format_text(results: LintReport | Iterable[Finding]) -> str:
    """``file:line:col: rule: message`` per violation (a given name: ``name: rule: message``,
    or ``name: ok``), then a one-line summary."""
    findings = _findings(results)
    lines = []
    for finding in findings:
        if finding.file is None:
            shown = _plain(finding.name)
            lines += [f"{shown}: {v.rule}: {v.message}" for v in finding.violations]
            lines += [] if finding.violations else [f"{shown}: ok"]
            continue
        place = f"{finding.file}:{finding.line}:{finding.column}"
        lines += [f"{place}: {v.rule}: {_message(finding, v)}" for v in finding.violations]
    if isinstance(results, LintReport):
        lines.append(_summary(findings, results.files, results.placeholders))
    else:
        lines.append(_summary(findings, None, 0))
    return "\n".join(lines) + "\n"


def format_json(results: LintReport | Iterable[Finding]) -> str:
    """A JSON list of ``Finding.to_json()`` objects."""
    return json.dumps([f.to_json() for f in _findings(results)], indent=2) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(results: LintReport | Iterable[Finding]) -> str:
    """GitHub Actions workflow commands (``::error file=...::...``), one per violation."""
    lines = []
    for finding in _findings(results):
        for violation in finding.violations:
            props = {"file": finding.file, "line": finding.line, "col": finding.column}
            props["title"] = violation.rule
            shown = ",".join(
                f"{key}={_escape_property(str(value))}"
                for key, value in props.items()
                if value is not None
            )
            message = _escape_data(_message(finding, violation))
            lines.append(f"::{violation.severity} {shown}::{message}")
    return "".join(line + "\n" for line in lines)


def _sarif_uri(file: str) -> str:
    path = Path(file)
    return path.as_uri() if path.is_absolute() else quote(file, safe="/")


def format_sarif(results: LintReport | Iterable[Finding]) -> str:
    """A SARIF 2.1.0 log with one run; columns count Unicode code points."""
    rule_ids = list(bucketname.RULES)
    sarif_results = []
    for finding in _findings(results):
        for violation in finding.violations:
            result: dict[str, object] = {
                "ruleId": violation.rule,
                "ruleIndex": rule_ids.index(violation.rule),
                "level": violation.severity,
                "message": {"text": _message(finding, violation)},
            }
            if finding.file is not None:
                region = {"startLine": finding.line, "startColumn": finding.column}
                region["endColumn"] = (finding.column or 1) + len(finding.name)
                location = {"artifactLocation": {"uri": _sarif_uri(finding.file)}}
                result["locations"] = [{"physicalLocation": {**location, "region": region}}]
            sarif_results.append(result)
    driver = {
        "name": "offload",
        "informationUri": INFORMATION_URI,
        "version": __version__,
        "rules": [
            {"id": rule, "shortDescription": {"text": text}}
            for rule, text in bucketname.RULES.items()
        ],
    }
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": driver},
                "columnKind": "unicodeCodePoints",
                "results": sarif_results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def exit_code(results: LintReport | Iterable[Finding]) -> int:
    """1 (``ExitCode.FAILED``) when any name breaks an error-severity rule, else 0."""
    failed = any(not f.valid for f in _findings(results))
    return ExitCode.FAILED if failed else ExitCode.OK

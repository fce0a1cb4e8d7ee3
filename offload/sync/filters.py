"""``--exclude`` / ``--include`` with ``aws s3 sync`` semantics.

Each pattern is a shell-style pattern (``*``, ``?``, ``[...]``) matched against
the whole path relative to the source root (and the same relative path at the
destination), where ``*`` also matches ``/``. Every path starts included; the
filters are tried in the order given and the last one that matches decides.
So ``--exclude '*' --include '*.jpg'`` keeps exactly the JPEGs at any depth.
``--exclude-from FILE`` / ``--include-from FILE`` add one pattern per line of
FILE at that point of the order, skipping blank lines and ``#`` comments.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from offload.errors import ExitCode, OffloadError

INCLUDE = "include"
EXCLUDE = "exclude"


class FilterError(OffloadError):
    """A filter file that cannot be read as patterns."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Rule:
    kind: str  # INCLUDE or EXCLUDE
    pattern: str

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile(fnmatch.translate(self.pattern), re.DOTALL)


class Filters:
    """An ordered list of rules; ``included(path)`` applies the last match."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules = tuple(rules)
        self._compiled = [(rule.kind == INCLUDE, rule.regex) for rule in self.rules]

    def included(self, path: str) -> bool:
        verdict = True
        for include, regex in self._compiled:
            if regex.match(path):
                verdict = include
        return verdict

    def __bool__(self) -> bool:
        return bool(self.rules)


def read_patterns(path: Path) -> list[str]:
    """Patterns of a ``--*-from`` file: one a line, no blank lines, no ``#`` comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FilterError(f"cannot read filter file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise FilterError(f"filter file {path} is not UTF-8 text") from None
    patterns = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            patterns.append(stripped)
    return patterns


def build_filters(options: Sequence[tuple[str, str]]) -> Filters:
    """Rules from the command line's ``(option, value)`` pairs, in their order.

    Options: ``exclude``, ``include``, ``exclude-from``, ``include-from``.
    """
    rules: list[Rule] = []
    for option, value in options:
        if option in (EXCLUDE, INCLUDE):
            rules.append(Rule(option, value))
        elif option in ("exclude-from", "include-from"):
            kind = EXCLUDE if option == "exclude-from" else INCLUDE
            rules.extend(Rule(kind, pattern) for pattern in read_patterns(Path(value)))
        else:
            raise ValueError(f"not a filter option: {option}")
    return Filters(rules)

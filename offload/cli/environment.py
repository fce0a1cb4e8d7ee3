"""Everything the CLI takes from outside: its streams and environment variables.

A leaf module, as httpie's ``context.py``: the command modules import it
without importing the parser, and tests hand in their own.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO, cast


@dataclass
class Environment:
    """Everything the CLI takes from outside, so tests can hand in their own."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def warn(self, text: str) -> None:
        print(f"offload: {text}", file=self.stderr, flush=True)


def silence(stream: TextIO) -> None:
    """Point a standard stream whose reader has gone at /dev/null.

    Python ignores SIGPIPE, so every later write, and the interpreter's own
    flush at exit, would raise again and print "Exception ignored"; this is the
    recipe in the ``signal`` module's documentation. A stream that is not one
    of the process's own (a test's) is left alone.
    """
    if stream is not sys.stdout and stream is not sys.stderr:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        pass


class _Spillway:
    """A text stream that drops what it is given once its reader has gone."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.reader_gone = True
        silence(self.stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def spillway(stream: TextIO) -> TextIO:
    """``stream``, made to drop its output quietly once its reader has gone.

    For commands whose work matters more than their output (``sync``,
    ``backup``): ``offload sync ... | head`` still finishes the sync and exits
    with the run's own code, where a write that raised would have failed the
    transfer it reported.
    """
    return cast(TextIO, _Spillway(stream))

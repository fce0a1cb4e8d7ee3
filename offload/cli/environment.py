"""Everything the CLI takes from outside: its streams and environment variables.

A leaf module, as httpie's ``context.py``: the command modules import it
without importing the parser, and tests hand in their own.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TextIO


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

"""Exit codes and the errors the CLI turns into one-line messages.

Every error a user can cause by what they type or configure derives from
``OffloadError`` and carries the exit code to leave with, so the CLI has one
place that turns an error into a message (and a traceback only on request).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What ``offload`` exits with; scripts and CI depend on these numbers."""

    OK = 0
    FAILED = 1  # the command ran and found a problem (a failed check, a failed transfer)
    USAGE = 2  # the command line is wrong
    CONFIG = 3  # the configuration file or environment is invalid
    STORAGE = 4  # a bucket or folder could not be reached or refused the request
    WARNINGS = 5  # finished, but skipped some files with warnings (offload sync)
    INTERNAL = 70  # a bug in offload (sysexits' EX_SOFTWARE): run again with --traceback
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
    BROKEN_PIPE = 141  # the reader of our output went away (128 + SIGPIPE), as `git log | head`


class OffloadError(Exception):
    """An error with a message fit to show a user as it is."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(OffloadError):
    """The command line asks for something that cannot be done."""

    exit_code = ExitCode.USAGE


class ConfigError(OffloadError):
    """The configuration is invalid; each problem is one line naming where and what."""

    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

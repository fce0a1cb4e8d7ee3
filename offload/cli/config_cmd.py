"""``offload config init | get | set | unset``: write a first config, read or change one key.

As ``git config`` and ``drush config:get/set``: one key at a time, by its dotted
name (``port``, ``sites.blog.cdn_url``), without opening an editor. The file is
``--config``, else ``$OFFLOAD_CONFIG``, else ``./offload.toml``. Parsing and
printing only: the editing is in ``offload.config.editing``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offload.cli.configargs import config_path
from offload.config import editing
from offload.config.example import example_config
from offload.config.loading import load_settings
from offload.config.settings import SITE_NAME, Site, declared_fields
from offload.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from offload.cli.environment import Environment

DEFAULT_PATH = Path("offload.toml")
DEFAULT_SITE = "blog"
#: Where a new site's files go when no storage is given: beside the config file.
DEFAULT_STORAGE = "offload-data"

#: ``init``'s questions: (flag destination, setting, question).
QUESTIONS = (
    ("storage", "storage", "Storage (s3://bucket/prefix, or a folder)"),
    ("uploads_dir", "uploads_dir", "The CMS's uploads folder (empty: none yet)"),
    ("uploads_url", "uploads_url", "Public URL of that folder (empty: none)"),
    ("cdn_url", "cdn_url", "CDN base URL (empty: none)"),
)


def add_commands(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """Register ``offload config`` and its subcommands on the main parser."""
    config = commands.add_parser(
        "config",
        parents=[common],
        help="write a first config file, or read or change one setting in it",
        description="The file is --config, else $OFFLOAD_CONFIG, else ./offload.toml.",
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    actions.required = True

    init = actions.add_parser(
        "init",
        parents=[common],
        help="write a commented config file: asks on a terminal, else takes flags",
    )
    init.add_argument("--site", help=f"the site's name (default: {DEFAULT_SITE})")
    init.add_argument(
        "--storage", help=f"bucket or folder (default: {DEFAULT_STORAGE} beside the file)"
    )
    init.add_argument("--uploads-dir", dest="uploads_dir", metavar="DIR")
    init.add_argument("--uploads-url", dest="uploads_url", metavar="URL")
    init.add_argument("--cdn-url", dest="cdn_url", metavar="URL")
    init.add_argument(
        "--from-env",
        action="store_true",
        help="take the settings and sites from the OFFLOAD_* environment variables",
    )
    init.add_argument("--no-input", action="store_true", help="never ask, even on a terminal")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(run=cmd_init)

    get = actions.add_parser(
        "get",
        parents=[common],
        help="print the value of one setting offload runs with (secrets masked)",
    )
    get.add_argument("key", metavar="KEY", help="port, or sites.NAME.SETTING")
    get.add_argument("--reveal", action="store_true", help="print a secret in full")
    get.set_defaults(run=cmd_get)

    set_ = actions.add_parser(
        "set", parents=[common], help="set one setting in the file, keeping its comments"
    )
    set_.add_argument("key", metavar="KEY", help="port, or sites.NAME.SETTING")
    set_.add_argument("value", metavar="VALUE", help="as an OFFLOAD_* variable would give it")
    set_.set_defaults(run=cmd_set)

    unset = actions.add_parser(
        "unset", parents=[common], help="remove one setting from the file (back to its default)"
    )
    unset.add_argument("key", metavar="KEY", help="port, or sites.NAME.SETTING")
    unset.set_defaults(run=cmd_unset)


def _path(args: argparse.Namespace, env: Environment) -> Path:
    return config_path(args, env) or DEFAULT_PATH


@contextlib.contextmanager
def _usage() -> Iterator[None]:
    """A wrong key or value is the command line's mistake: exit 2 with its message."""
    try:
        yield
    except editing.EditError as exc:
        raise UsageError(str(exc)) from None


# -- get, set, unset -----------------------------------------------------------------


def cmd_get(args: argparse.Namespace, env: Environment) -> int:
    with _usage():
        key = editing.resolve_key(args.key)
        settings = load_settings(_path(args, env), env.environ)
        value = editing.effective_value(settings, key)
    shown = editing.show_plain(key, value, reveal=args.reveal)
    if shown is None:
        return ExitCode.FAILED  # unset, as `git config` says of a missing key
    env.say(shown)
    return ExitCode.OK


def cmd_set(args: argparse.Namespace, env: Environment) -> int:
    path = _path(args, env)
    with _usage():
        key = editing.resolve_key(args.key)
        settings = editing.set_value(path, key, args.value)
    if settings is not None:
        shown = editing.show_plain(key, editing.effective_value(settings, key))
        env.say(f"{key.dotted} = {shown}")
    _warn_overridden(key, env)
    return ExitCode.OK


def cmd_unset(args: argparse.Namespace, env: Environment) -> int:
    path = _path(args, env)
    with _usage():
        key = editing.resolve_key(args.key)
        done = editing.unset_value(path, key)
    if not done:
        env.warn(f"{key.dotted} is not set in {path}")
        return ExitCode.FAILED
    _warn_overridden(key, env)
    return ExitCode.OK


def _warn_overridden(key: editing.KeyPath, env: Environment) -> None:
    variable = editing.env_variable(key)
    if variable in env.environ:
        env.warn(f"warning: {variable} is set in the environment and wins over the file")


# -- init ------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, env: Environment) -> int:
    path = _path(args, env)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; pass --force to replace it")
    given = [name for name, *_ in QUESTIONS if getattr(args, name) is not None]
    if args.from_env and (given or args.site):
        raise UsageError("--from-env takes every value from the environment: give no other flags")
    if args.from_env:
        text = _from_env(env, path)
    else:
        if not (given or args.site or args.no_input) and _on_a_terminal():
            _ask(args, env)
        text = _from_answers(args)
    with _usage():
        editing.write_new(path, text, force=args.force)
    env.say(f"wrote {path} (mode 0600: it holds the webhook secret)")
    env.say(f"next: offload check-config --config {path}")
    return ExitCode.OK


def _on_a_terminal() -> bool:
    return sys.stdin.isatty()


def _ask(args: argparse.Namespace, env: Environment) -> None:
    """Ask the questions on stderr, reading stdin; an empty answer keeps the default."""
    args.site = _question(env, "Site name (in webhook URLs)", DEFAULT_SITE)
    for name, _setting, question in QUESTIONS:
        default = DEFAULT_STORAGE if name == "storage" else ""
        answer = _question(env, question, default)
        # The default storage stays relative: beside the file, wherever it is read from.
        setattr(args, name, None if name == "storage" and answer == default else answer)


def _question(env: Environment, question: str, default: str) -> str:
    env.stderr.write(f"{question}" + (f" [{default}]" if default else "") + ": ")
    env.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise UsageError("no answer (end of input); give the values as flags instead")
    return line.strip() or default


def _from_answers(args: argparse.Namespace) -> str:
    site = args.site or DEFAULT_SITE
    if not SITE_NAME.fullmatch(site):
        raise UsageError(
            f"--site: a site name is 1-63 of a-z 0-9 - _, starting a-z or 0-9, got {site!r}"
        )
    fields = {f.name: f for f in declared_fields(Site)}
    values: dict[str, Any] = {"storage": args.storage or DEFAULT_STORAGE, "hostnames": ["*"]}
    for name, setting, _question_text in QUESTIONS[1:]:
        if getattr(args, name):
            values[setting] = getattr(args, name)
    # A folder typed here is meant from the current folder; the file would read
    # it from its own, so it is written absolute (the default storage is not).
    typed = [s for s in ("storage", "uploads_dir") if getattr(args, s)]
    for setting in typed:
        if "://" not in values[setting]:
            values[setting] = os.path.abspath(os.path.expanduser(values[setting]))
    for setting, value in values.items():
        try:
            fields[setting].metadata["kind"].parse(value, Path.cwd())
        except ValueError as exc:
            flag = "--" + setting.replace("_", "-")
            raise UsageError(f"{flag}: {exc}") from None
    values["webhook_secret"] = secrets.token_hex(32)
    return editing.fill_example(example_config({}), site, {}, values)


def _from_env(env: Environment, path: Path) -> str:
    """The settings and sites the ``OFFLOAD_*`` variables give, as the loader reads them.

    Relative paths were resolved against the current folder, where the variables
    were set, so they are written out absolute; a site without a webhook secret
    gets a new one.
    """
    settings = load_settings(None, env.environ)
    if not settings.sites:
        raise UsageError(
            "no site in the environment: set OFFLOAD_SITES__<SITE>__STORAGE (and others)"
        )
    cwd = Path.cwd()
    globals_ = editing.changed_settings(settings, cwd)
    sites = [(name, editing.changed_settings(site, cwd)) for name, site in settings.sites.items()]
    for _name, values in sites:
        values.setdefault("webhook_secret", secrets.token_hex(32))
    (first, first_values), *others = sites
    text = editing.fill_example(example_config({}), first, globals_, first_values)
    return text + "".join(editing.extra_site_table(name, values) for name, values in others)

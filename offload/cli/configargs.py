"""Which settings and which site a command runs with: shared by every CLI module."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from offload.config.embedded import SITE_NAME as EMBEDDED_SITE
from offload.config.embedded import Embedded, embedded_settings
from offload.config.loading import load_settings
from offload.config.settings import Settings, Site
from offload.errors import UsageError

if TYPE_CHECKING:
    from offload.cli.environment import Environment


def config_path(args: argparse.Namespace, env: Environment) -> Path | None:
    if "config" in args:
        return args.config
    from_env = env.environ.get("OFFLOAD_CONFIG")
    return Path(from_env) if from_env else None


def load_settings_for(
    args: argparse.Namespace, env: Environment, *, may_create_default: bool = False
) -> tuple[Settings, Embedded | None]:
    """The settings to run with: the file's, or the embedded default's when there is none.

    Only ``serve`` (``may_create_default``) makes the embedded default's folder and
    secret. Any other command runs on the embedded default only where ``serve``
    already made it, and never when it names a site the default does not have: a
    user who forgot ``--config`` learns how to give one, and the folder they ran the
    command in stays as it was.
    """
    path = config_path(args, env)
    settings = load_settings(path, env.environ)
    for warning in settings.warnings:
        env.warn(f"warning: {warning}")
    data_dir = getattr(args, "data_dir", None)
    if path is not None or settings.sites:
        if data_dir is not None:
            raise UsageError("--data-dir is for the embedded default; set storage in the config")
        return settings, None
    if not may_create_default:
        _check_the_default_will_do(args, Path(data_dir or settings.data_dir))
    embedded = embedded_settings(settings, data_dir)
    return embedded.settings, embedded


_NO_CONFIG = (
    "give the configuration file with --config PATH or OFFLOAD_CONFIG=PATH "
    "(offload settings --example > offload.toml starts one)"
)


def _check_the_default_will_do(args: argparse.Namespace, data_dir: Path) -> None:
    """Refuse, before anything is written, a command the embedded default cannot serve."""
    named = named_sites(args)
    strangers = [name for name in named if name != EMBEDDED_SITE]
    if strangers:
        raise UsageError(f"site {strangers[0]!r} needs a configuration file: {_NO_CONFIG}")
    if not data_dir.is_dir():
        raise UsageError(
            f"no configuration: {_NO_CONFIG}; without one, only offload serve runs, "
            f"on the embedded default in {data_dir}"
        )


def named_sites(args: argparse.Namespace) -> list[str]:
    """The sites a command line names, by ``--site NAME`` or a ``site:NAME`` argument."""
    names = [args.site] if getattr(args, "site", None) else []
    for side in ("src", "dst"):
        value = getattr(args, side, None)
        if isinstance(value, str) and value.startswith("site:"):
            names.append(value[len("site:") :])
    return names


def pick_site(settings: Settings, name: str | None) -> Site:
    if name is not None:
        if name not in settings.sites:
            raise UsageError(f"no site {name!r}; the sites are {', '.join(settings.sites)}")
        return settings.sites[name]
    if len(settings.sites) != 1:
        raise UsageError(f"name a site with --site: {', '.join(settings.sites)}")
    return next(iter(settings.sites.values()))

"""Which settings and which site a command runs with: shared by every CLI module."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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
    args: argparse.Namespace, env: Environment
) -> tuple[Settings, Embedded | None]:
    """The settings to run with: the file's, or the embedded default's when there is none."""
    path = config_path(args, env)
    settings = load_settings(path, env.environ)
    for warning in settings.warnings:
        env.warn(f"warning: {warning}")
    data_dir = getattr(args, "data_dir", None)
    if path is not None or settings.sites:
        if data_dir is not None:
            raise UsageError("--data-dir is for the embedded default; set storage in the config")
        return settings, None
    embedded = embedded_settings(settings, data_dir)
    return embedded.settings, embedded


def pick_site(settings: Settings, name: str | None) -> Site:
    if name is not None:
        if name not in settings.sites:
            raise UsageError(f"no site {name!r}; the sites are {', '.join(settings.sites)}")
        return settings.sites[name]
    if len(settings.sites) != 1:
        raise UsageError(f"name a site with --site: {', '.join(settings.sites)}")
    return next(iter(settings.sites.values()))

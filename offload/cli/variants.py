"""``offload variants``: the stored variants of images on demand (``--prune``).

Parsing and printing only: the work is ``offload.images.variants.prune``.
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from offload.cli.configargs import load_settings_for, pick_site
from offload.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from offload.cli.environment import Environment
    from offload.config.settings import Settings, Site


def add_commands(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """Register ``variants`` on the main parser's subcommands."""
    variants = commands.add_parser(
        "variants",
        parents=[common],
        help="manage stored image variants (images on demand)",
        description="With --prune, delete the stored variants whose original is gone.",
    )
    variants.add_argument("--site", help="the site (needed when the config has several)")
    variants.add_argument(
        "--prune", action="store_true", help="delete variants whose original is gone"
    )
    variants.add_argument(
        "--dry-run", action="store_true", help="say what --prune would delete, delete nothing"
    )
    variants.set_defaults(run=cmd_variants)


def cmd_variants(args: argparse.Namespace, env: Environment) -> int:
    if not args.prune:
        raise UsageError("say what to do: --prune")
    settings, _ = load_settings_for(args, env)
    site = pick_site(settings, args.site)
    doomed = asyncio.run(_prune(settings, site, args.dry_run))
    for key in doomed:
        env.say(f"{'(dryrun) ' if args.dry_run else ''}delete: {key}")
    verb = "would delete" if args.dry_run else "deleted"
    env.say(f"# {len(doomed)} variant(s) {verb} in site {site.name}")
    return ExitCode.OK


async def _prune(settings: Settings, site: Site, dry_run: bool) -> list[str]:
    from offload.config.sites import open_site_storage
    from offload.images.variants import prune

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=settings.storage_threads) as pool:
        storage = await loop.run_in_executor(pool, open_site_storage, settings, site, pool)
        try:
            return await prune(site, storage, dry_run=dry_run)
        finally:
            await storage.close()

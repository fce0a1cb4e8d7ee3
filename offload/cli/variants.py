"""``offload variants``: the stored variants of images on demand (``--prune``).

Parsing and printing only: the work is ``offload.images.variants.prune``. A
prune queues the CDN purges of what it deletes in the manifest's outbox, where
``offload serve`` (which a site's CDN origin runs anyway) sends them.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

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
        description=(
            "With --prune, delete the stored variants whose original is gone, and purge"
            " their transform URLs where the site purges."
        ),
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
    """The variants pruned. A dry run opens no manifest: it writes nothing at all."""
    from offload.config.sites import open_site_storage
    from offload.images.variants import prune
    from offload.manifest import open_manifest

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=settings.storage_threads) as pool:

        async def run(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        storage = await run(open_site_storage, settings, site, pool)
        manifest = None if dry_run else open_manifest(settings.manifest)
        try:
            return await prune(site, storage, manifest, run, dry_run=dry_run)
        finally:
            await storage.close()
            if manifest is not None:
                await run(manifest.close)

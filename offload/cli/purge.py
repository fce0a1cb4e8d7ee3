"""``offload purge``: purge a site's CDN by hand, and show the purge outbox.

Parsing and printing only: the items come from ``offload.purge.targets``, the
sending from ``offload.purge.manual`` (through the outbox, so nothing asked for
is lost when the CDN API is down).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from pathlib import Path
from typing import TYPE_CHECKING

from offload.cli.configargs import load_settings_for, pick_site
from offload.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from offload.cli.environment import Environment
    from offload.config.settings import Site
    from offload.manifest import PurgeItem, PurgeQueue


def add_commands(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
) -> None:
    purge = commands.add_parser(
        "purge",
        parents=[common],
        help="purge keys, URLs, tags or prefixes from a site's CDN, or show the purge queue",
        description="Purge from the site's CDN (its purge setting). Each purge goes to "
        "the outbox first, so one the CDN API does not take now is sent later by "
        "offload serve. --status shows the outbox instead.",
    )
    purge.add_argument("targets", nargs="*", metavar="KEY|URL", help="object keys or CDN URLs")
    purge.add_argument("--site", help="the site (needed when the config has several)")
    purge.add_argument("--tag", action="append", default=[], help="purge a cache tag (repeatable)")
    purge.add_argument(
        "--prefix", action="append", default=[], help="purge every key under a prefix (repeatable)"
    )
    purge.add_argument(
        "--everything", action="store_true", help="purge the whole site (needs --force)"
    )
    purge.add_argument("--force", action="store_true", help="confirm --everything")
    purge.add_argument(
        "--dry-run", action="store_true", help="print what would be purged; send nothing"
    )
    purge.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the CDN API before leaving the rest to offload serve "
        "(default: 30)",
    )
    purge.add_argument(
        "--status", action="store_true", help="show the purge outbox (waiting and given up)"
    )
    purge.set_defaults(run=cmd_purge)


def cmd_purge(args: argparse.Namespace, env: Environment) -> int:
    settings, _ = load_settings_for(args, env)
    from offload.manifest import open_manifest
    from offload.manifest.opening import is_database_url

    if args.status:
        if args.targets or args.tag or args.prefix or args.everything:
            raise UsageError("--status takes no keys, URLs, --tag, --prefix or --everything")
        site_name = pick_site(settings, args.site).name if args.site else None
        if not is_database_url(settings.manifest) and not Path(settings.manifest).exists():
            # Opening a SQLite manifest creates it: a look at the outbox writes nothing.
            env.say(f"no manifest yet at {settings.manifest}: no purges queued")
            env.say("waiting: 0 (0 being sent now)")
            env.say("given up: 0")
            return ExitCode.OK
        manifest = open_manifest(settings.manifest)
        try:
            queue = manifest.purge_queue(site=site_name, limit=50)
        finally:
            manifest.close()
        _print_queue(env, queue)
        return ExitCode.OK

    site = pick_site(settings, args.site)
    items = _items(args, site)
    if site.purge == "none" and not args.dry_run:
        raise UsageError(f'site {site.name!r} has purge = "none": set purge to a CDN provider')
    if args.dry_run:
        for item in items:
            env.say(f"(dryrun) purge: {_shown(item)}")
        return ExitCode.OK
    if args.wait < 0:
        raise UsageError("--wait must not be negative")
    from offload.purge.manual import purge_now

    manifest = open_manifest(settings.manifest)
    try:
        result = asyncio.run(purge_now(settings, site, manifest, items, wait=args.wait))
    finally:
        manifest.close()
    for item in result.sent:
        env.say(f"purge: {_shown(item)}")
    for item, error in result.waiting.items():
        why = f": {error}" if error else ""
        env.warn(f"purge waiting: {_shown(item)}{why} (offload serve sends it)")
    for item, error in result.given_up.items():
        env.warn(f"purge given up: {_shown(item)}: {error} (purge_give_up_after has passed)")
    return ExitCode.FAILED if result.waiting or result.given_up else ExitCode.OK


def _items(args: argparse.Namespace, site: Site) -> list[PurgeItem]:
    from offload.manifest import PurgeItem
    from offload.purge.targets import PurgeTargetError, purge_for_prefix, purge_for_text

    if args.everything and not args.force:
        raise UsageError("--everything empties the site's whole CDN cache: add --force")
    if not (args.targets or args.tag or args.prefix or args.everything):
        raise UsageError("name what to purge: KEY|URL..., --tag, --prefix or --everything")
    items: list[PurgeItem] = []
    try:
        items += [purge_for_text(site, text) for text in args.targets]
        items += [purge_for_prefix(site, prefix) for prefix in args.prefix]
    except PurgeTargetError as exc:
        raise UsageError(str(exc)) from None
    for tag in args.tag:
        if not tag or any(c.isspace() or c == "," for c in tag) or not tag.isprintable():
            raise UsageError(f"--tag {tag!r}: a tag is visible text without spaces or commas")
        items.append(PurgeItem(site.name, "tag", tag))
    if args.everything:
        items.append(PurgeItem(site.name, "everything", ""))
    return list(dict.fromkeys(items))


def _shown(item: PurgeItem) -> str:
    return item.value if item.kind == "url" else f"{item.kind} {item.value}".rstrip()


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_queue(env: Environment, queue: PurgeQueue) -> None:
    now = time.time()
    oldest = f", oldest {now - queue.oldest:.0f} s old" if queue.oldest is not None else ""
    env.say(f"waiting: {queue.waiting} ({queue.claimed} being sent now){oldest}")
    for site, count in sorted(queue.by_site.items()):
        env.say(f"  site {site}: {count}")
    for entry in queue.entries:
        error = f"  last error: {entry.last_error}" if entry.last_error else ""
        env.say(
            f"  {entry.item.site}  {_shown(entry.item)}  attempts {entry.attempts}"
            f"  next {_when(entry.next_at)}{error}"
        )
    env.say(f"given up: {queue.given_up}")
    for give_up in queue.recent_give_ups:
        env.say(
            f"  {give_up.item.site}  {_shown(give_up.item)}  {_when(give_up.gave_up_at)}"
            f"  after {give_up.attempts} attempts: {give_up.error}"
        )

"""The media commands: ``rewrite`` (URLs in HTML/JSON from the shell) and ``reindex``.

Parsing and printing only: rewriting is ``offload.media.rewrite.Rewriter`` over
the manifest (``offloader.manifest_rewriter``), rebuilding is
``offload.media.reindex.reindex_site``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from offload.cli.configargs import load_settings_for, pick_site
from offload.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from offload.cli.environment import Environment


def add_commands(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """Register the media commands on the main parser's subcommands."""
    rewrite = commands.add_parser(
        "rewrite",
        parents=[common],
        help="rewrite upload URLs of offloaded files in HTML or JSON to CDN URLs",
        description="Read FILE (or - for standard input), write it to standard output with "
        "the upload URLs of offloaded files (as the manifest knows them) replaced by CDN "
        "URLs; every other byte stays as it was.",
    )
    rewrite.add_argument("file", metavar="FILE", help="the HTML or JSON file, or - for stdin")
    rewrite.add_argument("--site", help="the site (needed when the config has several)")
    rewrite.add_argument("--reverse", action="store_true", help="map CDN URLs back to upload URLs")
    rewrite.add_argument(
        "--charset", default="utf-8", help="the text encoding of FILE (default: utf-8)"
    )
    rewrite.set_defaults(run=cmd_rewrite)

    rebuild = commands.add_parser(
        "reindex",
        parents=[common],
        help="rebuild a site's manifest from its bucket listing and object metadata",
    )
    rebuild.add_argument("--site", help="the site (needed when the config has several)")
    rebuild.set_defaults(run=cmd_reindex)


def cmd_rewrite(args: argparse.Namespace, env: Environment) -> int:
    settings, _ = load_settings_for(args, env)
    site = pick_site(settings, args.site)
    from offload.manifest import open_manifest
    from offload.media.offloader import manifest_rewriter
    from offload.media.rewrite import text_charset

    if not text_charset(args.charset):
        raise UsageError(f"--charset: unknown encoding {args.charset!r}")
    if not (site.uploads_url and site.cdn_url):
        env.warn(f"warning: site {site.name} needs uploads_url and cdn_url: nothing is rewritten")
    body = _read(args.file)
    manifest = open_manifest(settings.manifest)
    try:
        rewriter = manifest_rewriter(site, manifest)
        if args.reverse:
            result = rewriter.reverse_bytes(body, args.charset)
        else:
            result = rewriter.rewrite_bytes(body, args.charset)
    finally:
        manifest.close()
    out = getattr(env.stdout, "buffer", None)
    if out is not None:
        env.stdout.flush()
        out.write(result)
        out.flush()
    else:  # a text-only stream (tests): the bytes decoded as they were read
        env.stdout.write(result.decode(args.charset, errors="surrogateescape"))
    return ExitCode.OK


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None


def cmd_reindex(args: argparse.Namespace, env: Environment) -> int:
    settings, _ = load_settings_for(args, env)
    site = pick_site(settings, args.site)
    started = time.monotonic()
    from offload.media.reindex import reindex_site

    report = asyncio.run(reindex_site(settings, site))
    env.say(
        f"site {site.name}: {report.objects} objects in the manifest "
        f"({report.with_metadata} with offload's metadata), "
        f"{report.completed} completed from the rows it had, "
        f"{time.monotonic() - started:.1f} s"
    )
    return ExitCode.OK

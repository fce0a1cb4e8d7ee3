"""The sync commands: ``sync``, ``backup``, ``archive`` and ``check-layout``.

``sync`` and ``backup`` parse their arguments, check their flags, call
``offload.sync.runner.run_sync`` and print what it says. ``archive`` and
``check-layout`` likewise call ``offload.buckets.archive.archive_bucket`` and
``offload.buckets.layout.check_bucket_layout``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from offload.cli.configargs import load_settings_for, pick_site
from offload.cli.environment import spillway
from offload.config.settings import Settings, Site
from offload.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from offload.cli.environment import Environment
    from offload.sync.filters import Filters
    from offload.sync.locations import S3Options
    from offload.sync.report import Refusal, Reporter, Summary
    from offload.sync.runner import SyncJob

#: tarball compressions of `offload archive` (offload.buckets.archive.MODES).
ARCHIVE_FORMATS = ("gz", "tar", "xz")

#: Transfers at the same time unless --jobs says otherwise: enough to hide an
#: S3 round trip behind others, few enough for a small machine. Measured on 5,040
#: files into a local ``rclone serve s3`` on 2 cores: 48 and 128 were slower than
#: 64, and 32 was 6 % slower (a busier server answers each request for less CPU).
DEFAULT_JOBS = 64
DEFAULT_MAX_DELETE = 1000
#: Seconds a sync into a purging site waits at its end for the CDN to take its purges.
PURGE_WAIT = 30.0


class _Filter(argparse.Action):
    """Keep --exclude/--include/--*-from in the order given: the last match wins."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        rules = list(getattr(namespace, "filters", None) or [])
        rules.append((self.dest, values))
        namespace.filters = rules


def add_commands(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
) -> None:
    sync = commands.add_parser(
        "sync",
        parents=[common],
        help="make DST hold what SRC holds (folders and buckets, like aws s3 sync)",
        description="Sync SRC to DST. Each is a folder (or file:///abs/path), "
        "s3://bucket/prefix or site:NAME; two folders are synced as rsync does. "
        "Files are transferred when sizes or modification times differ (see --size-only "
        "and --checksum); nothing is deleted without --delete.",
    )
    sync.add_argument("src", metavar="SRC")
    sync.add_argument("dst", metavar="DST")
    s3 = sync.add_argument_group("S3")
    s3.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint (default: AWS)")
    s3.add_argument("--profile", help="AWS profile for credentials")
    s3.add_argument("--region", help="S3 region")
    s3.add_argument("--storage-class", metavar="CLASS", help="storage class of new objects")
    s3.add_argument("--cache-control", metavar="VALUE", help="Cache-Control of new objects")
    s3.add_argument(
        "--content-type", metavar="TYPE", help="Content-Type of new objects (default: by extension)"
    )
    compare = sync.add_mutually_exclusive_group()
    compare.add_argument("--size-only", action="store_true", help="compare sizes only")
    compare.add_argument(
        "--checksum", action="store_true", help="compare content hashes (reads every file)"
    )
    filters = sync.add_argument_group("filters (the last one that matches wins)")
    for name, what in (
        ("exclude", "leave out paths matching PATTERN (* also matches /)"),
        ("include", "take paths matching PATTERN back in"),
        ("exclude-from", "--exclude each pattern in FILE (one a line, # comments)"),
        ("include-from", "--include each pattern in FILE"),
    ):
        filters.add_argument(
            f"--{name}",
            dest=name,
            action=_Filter,
            metavar="FILE" if name.endswith("-from") else "PATTERN",
            help=what,
        )
    sync.add_argument(
        "--delete", action="store_true", help="delete what DST holds and SRC does not"
    )
    sync.add_argument(
        "--max-delete",
        type=int,
        default=DEFAULT_MAX_DELETE,
        metavar="N",
        help=f"refuse to delete more than N files (default {DEFAULT_MAX_DELETE})",
    )
    sync.add_argument(
        "--force", action="store_true", help="delete even past --max-delete or from an empty SRC"
    )
    sync.add_argument(
        "--mode",
        choices=("mirror", "merge"),
        help="mirror: as --delete; merge: push folder to bucket, then pull back, deleting nothing",
    )
    sync.add_argument("--dry-run", action="store_true", help="say what would happen; write nothing")
    sync.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"transfers at the same time (default {DEFAULT_JOBS})",
    )
    output = sync.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print nothing")
    output.add_argument(
        "--only-show-errors", action="store_true", help="print only failures and warnings"
    )
    output.add_argument(
        "--json", action="store_true", help="one JSON object per action, then a summary"
    )
    sync.set_defaults(run=cmd_sync, filters=[])

    backup = commands.add_parser(
        "backup",
        parents=[common],
        help="copy each site's bucket to its backup target (for cron)",
        description="Sync each site's storage to its `backup` storage, bucket to bucket, "
        "by size only, printing only errors. Nothing is deleted from the backup.",
    )
    backup.add_argument("--site", help="only this site")
    backup.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N")
    backup.set_defaults(run=cmd_backup)

    bucket_options = argparse.ArgumentParser(add_help=False)
    bucket_options.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint (default: AWS)")
    bucket_options.add_argument("--profile", help="AWS profile for credentials")
    bucket_options.add_argument("--region", help="S3 region")

    archive = commands.add_parser(
        "archive",
        parents=[common, bucket_options],
        help="stream a tarball of a bucket prefix (.tar.gz, .tar.xz, or - for stdout)",
    )
    archive.add_argument("src", metavar="SRC", help="s3://bucket/prefix or site:NAME")
    archive.add_argument("out", metavar="OUT", help="OUT.tar.gz, OUT.tar.xz, OUT.tar or -")
    archive.add_argument(
        "--format", choices=ARCHIVE_FORMATS, help="compression (default: from OUT's name; gz for -)"
    )
    archive.set_defaults(run=cmd_archive)

    layout = commands.add_parser(
        "check-layout",
        parents=[common, bucket_options],
        help="check that an asset layout's folders exist and hold only allowed file types",
    )
    layout.add_argument("src", metavar="SRC", help="s3://bucket/prefix or site:NAME")
    layout.add_argument(
        "--require",
        required=True,
        metavar="FOLDERS",
        help="comma-separated folders that must hold files, e.g. originals,thumbnails",
    )
    layout.add_argument(
        "--types",
        action="append",
        default=[],
        metavar="FOLDER=EXTS",
        help="allowed extensions in a folder, e.g. originals=jpg,png,tif (repeatable)",
    )
    layout.set_defaults(run=cmd_check_layout)


def _reporter(args: argparse.Namespace, env: Environment) -> Reporter:
    from offload.sync.report import JsonReporter, Reporter

    stdout = spillway(env.stdout)  # `offload sync ... | head` still finishes the sync
    if getattr(args, "json", False):
        return JsonReporter(stdout, env.stderr, words=_refusal_words)
    isatty = getattr(env.stderr, "isatty", lambda: False)
    quiet = getattr(args, "quiet", False)
    only_errors = getattr(args, "only_show_errors", False)
    return Reporter(
        stdout,
        env.stderr,
        quiet=quiet,
        only_errors=only_errors,
        progress=bool(isatty()) and not only_errors,
        words=_refusal_words,
    )


def _refusal_words(refusal: Refusal) -> str:
    """A refusal to delete, with the flags that lift its guard."""
    from offload.sync.report import EMPTY_SOURCE, TOO_MANY

    if refusal.guard == EMPTY_SOURCE:
        return f"{refusal} (use --force to empty the destination)"
    if refusal.guard == TOO_MANY:
        return (
            f"{refusal.count} files would go, more than --max-delete {refusal.limit}"
            " (use --force, or raise --max-delete)"
        )
    return str(refusal)


def cmd_sync(args: argparse.Namespace, env: Environment) -> int:
    from offload.sync.compare import CHECKSUM, DEFAULT, SIZE_ONLY
    from offload.sync.context import SyncOptions
    from offload.sync.filters import build_filters
    from offload.sync.locations import S3Options, is_bucket_argument
    from offload.sync.runner import SyncJob, run_sync

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.max_delete < 0:
        raise UsageError("--max-delete must not be negative")
    for side in (args.src, args.dst):
        if not side:
            raise UsageError("SRC and DST must not be empty")
    if args.mode == "merge" and (is_bucket_argument(args.src) == is_bucket_argument(args.dst)):
        raise UsageError("--mode merge needs a folder and a bucket")
    if args.endpoint_url is not None:
        check_endpoint_url(args.endpoint_url)
    settings: Settings | None = None
    if args.src.startswith("site:") or args.dst.startswith("site:"):
        settings, _ = load_settings_for(args, env)
    compare = SIZE_ONLY if args.size_only else CHECKSUM if args.checksum else DEFAULT
    options = SyncOptions(
        compare=compare,
        delete=args.delete or args.mode == "mirror",
        dry_run=args.dry_run,
        max_delete=args.max_delete,
        force=args.force,
        jobs=args.jobs,
        filters=_without_variants(build_filters(args.filters), args, settings),
        cache_control=args.cache_control,
        content_type=args.content_type,
    )
    s3 = S3Options(
        endpoint_url=args.endpoint_url,
        region=args.region,
        profile=args.profile,
        storage_class=args.storage_class,
        threads=args.jobs,
    )
    job = SyncJob.between(
        args.src, args.dst, options, s3=s3, settings=settings, merge=args.mode == "merge"
    )
    reporter = _reporter(args, env)
    site = _destination_site(args, settings)
    if site is None or settings is None:
        summary = asyncio.run(run_sync(job, reporter))
    else:
        summary = asyncio.run(_sync_into_site(job, reporter, settings, site, env))
    reporter.finished(summary)
    return summary.exit_code


def _without_variants(
    filters: Filters, args: argparse.Namespace, settings: Settings | None
) -> Filters:
    """The filters, with the variants folder of a ``site:NAME`` side left out of the run."""
    from offload.images.sync_variants import variants_excluded

    for side in (args.src, args.dst):
        if settings is not None and side.startswith("site:"):
            site = settings.sites.get(side[len("site:") :])
            if site is not None:
                filters = variants_excluded(site, filters)
    return filters


def _destination_site(args: argparse.Namespace, settings: Settings | None) -> Site | None:
    """The site this run writes into (it purges and cascades to variants), if any."""
    if settings is None or args.dry_run or not args.dst.startswith("site:"):
        return None
    return settings.sites.get(args.dst[len("site:") :])


async def _sync_into_site(
    job: SyncJob, reporter: Reporter, settings: Settings, site: Site, env: Environment
) -> Summary:
    """The run into a site: its purges queued as it goes and sent at its end (at most
    PURGE_WAIT seconds more), and the variants of what it deleted or replaced deleted."""
    from offload.config.sites import open_site_storage
    from offload.images.sync_variants import VariantCascade
    from offload.manifest import open_manifest
    from offload.purge.manual import send_queued
    from offload.sync.purging import PurgeNotes
    from offload.sync.runner import run_sync

    loop = asyncio.get_running_loop()
    manifest = open_manifest(settings.manifest)
    with ThreadPoolExecutor(4, thread_name_prefix="offload-site") as executor:

        async def run(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(executor, fn, *args)

        storage = await run(open_site_storage, settings, site, executor)
        try:
            cascade = VariantCascade(reporter, site, storage, manifest, run)
            notes = PurgeNotes(cascade, site, manifest, run)
            async with notes.flushing():
                summary = await run_sync(job, notes)
            await cascade.finish()
            if site.purge != "none" and (notes.queued or cascade.deleted):
                left = await send_queued(settings, site, manifest, wait=PURGE_WAIT)
                if left:
                    env.warn(
                        f"warning: {left} CDN purge(s) of site {site.name} wait in the outbox"
                        " (offload serve sends them; offload purge --status lists them)"
                    )
        finally:
            await storage.close()
            await run(manifest.close)
    return summary


def cmd_backup(args: argparse.Namespace, env: Environment) -> int:
    from offload.sync.report import Reporter
    from offload.sync.runner import SyncJob, run_sync

    settings, _ = load_settings_for(args, env)
    sites = [pick_site(settings, args.site)] if args.site else list(settings.sites.values())
    sites = [site for site in sites if site.backup]
    if not sites:
        raise UsageError('no site has a backup target (set backup = "s3://..." on a site)')
    reporter = Reporter(spillway(env.stdout), env.stderr, only_errors=True, words=_refusal_words)
    summary = asyncio.run(run_sync(SyncJob.backups(settings, sites, jobs=args.jobs), reporter))
    reporter.finished(summary)
    return summary.exit_code


def check_endpoint_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--endpoint-url must be an http(s) URL, got {url!r}")


# -- archive and check-layout ------------------------------------------------------------


def _bucket_side(args: argparse.Namespace, env: Environment) -> tuple[S3Options, Settings | None]:
    """The S3 options and settings that ``archive`` and ``check-layout`` open SRC with."""
    from offload.sync.locations import S3Options, is_bucket_argument

    if args.endpoint_url is not None:
        check_endpoint_url(args.endpoint_url)
    if not is_bucket_argument(args.src):
        raise UsageError(f"{args.src}: name a bucket (s3://bucket/prefix or site:NAME)")
    settings = load_settings_for(args, env)[0] if args.src.startswith("site:") else None
    s3 = S3Options(endpoint_url=args.endpoint_url, region=args.region, profile=args.profile)
    return s3, settings


def cmd_archive(args: argparse.Namespace, env: Environment) -> int:
    from offload.buckets.archive import archive_bucket

    compression = _archive_format(args.out, args.format)
    if args.out != "-" and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise UsageError(f"{args.out}: its folder does not exist")
    out: IO[bytes] | None = getattr(env.stdout, "buffer", None)
    if args.out == "-" and out is None:
        raise UsageError("standard output cannot take bytes here; name a file")
    # Written to only when OUT is -; an archive to a file needs no standard output.
    stdout = out if out is not None else io.BytesIO()

    s3, settings = _bucket_side(args, env)
    env.stdout.flush()
    warn = lambda text: env.warn(f"warning: {text}")  # noqa: E731
    report = asyncio.run(
        archive_bucket(args.src, s3, settings, args.out, compression, stdout, warn)
    )
    if args.out != "-":
        env.say(f"archived {report.objects} objects ({report.bytes} bytes) to {args.out}")
    return ExitCode.WARNINGS if report.skipped else ExitCode.OK


def cmd_check_layout(args: argparse.Namespace, env: Environment) -> int:
    from offload.buckets.layout import check_bucket_layout

    required = _parse_folders(args.require)
    types = _parse_types(args.types)

    s3, settings = _bucket_side(args, env)
    report = asyncio.run(check_bucket_layout(args.src, s3, settings, required, types))
    for problem in report.problems:
        env.say(problem)
    counts = ", ".join(f"{folder}/ {count}" for folder, count in report.counts.items())
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    env.say(f"{verdict}: {report.objects} objects ({counts})")
    return ExitCode.OK if report.ok else ExitCode.FAILED


def _archive_format(target: str, requested: str | None) -> str:
    """The compression: ``requested``, else from the file name, else gz (for ``-``)."""
    if requested:
        return requested
    name = target.lower()
    if name.endswith((".tar.xz", ".txz")):
        return "xz"
    if name.endswith((".tar.gz", ".tgz")):
        return "gz"
    if name.endswith(".tar"):
        return "tar"
    if target == "-":
        return "gz"
    raise UsageError(f"{target}: name it .tar.gz, .tgz, .tar.xz, .txz or .tar, or give --format")


def _parse_types(values: Sequence[str]) -> dict[str, frozenset[str]]:
    """``["originals=jpg,png", ...]`` -> {"originals": {"jpg", "png"}}."""
    types: dict[str, frozenset[str]] = {}
    for value in values:
        folder, equals, extensions = value.partition("=")
        folder = folder.strip().strip("/")
        allowed = frozenset(
            ext.strip().lower().lstrip(".") for ext in extensions.split(",") if ext.strip()
        )
        if not equals or not folder or not allowed:
            raise UsageError(f"--types {value!r}: write FOLDER=ext,ext (e.g. originals=jpg,png)")
        types[folder] = types.get(folder, frozenset()) | allowed
    return types


def _parse_folders(value: str) -> list[str]:
    folders = [part.strip().strip("/") for part in value.split(",") if part.strip().strip("/")]
    if not folders:
        raise UsageError(f"--require {value!r}: name one or more folders, comma-separated")
    return folders

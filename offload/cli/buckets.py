"""The bucket commands: ``check-bucket``, ``lint-buckets`` and ``render`` (policies, plugin).

Parsing and printing only: the rules live in ``offload.storage.bucketname``, the
finding of names in ``offload.buckets.lint``, the policies in
``offload.buckets.policies`` and its templates, the WordPress plugin in
``offload.media.wordpress``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from offload.cli.configargs import load_settings_for, pick_site
from offload.errors import ExitCode, UsageError
from offload.storage.bucketname import PROFILES

if TYPE_CHECKING:
    from offload.cli.environment import Environment

#: ``--format`` values; each is ``lint.format_<name>``. The modules that do the
#: work are imported by the command that needs them: ``offload sync`` starts
#: faster without the linter, the policies and the plugin templates.
FORMATS = ("text", "json", "github", "sarif")


def add_commands(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """Register the bucket commands on the main parser's subcommands."""
    rules = argparse.ArgumentParser(add_help=False)
    rules.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="aws",
        help="naming rules of this provider (default: aws)",
    )
    rules.add_argument(
        "--allow-dots",
        action="store_true",
        help="report dotted names as a warning, not an error (they break wildcard TLS)",
    )

    check = commands.add_parser(
        "check-bucket",
        parents=[common, rules],
        help="check bucket names: exit 0 when all pass, 1 when any fails",
    )
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.add_argument("names", nargs="+", metavar="NAME")
    check.set_defaults(run=cmd_check_bucket)

    find = commands.add_parser(
        "lint-buckets",
        parents=[common, rules],
        help="find bucket names in files and folders and check them (for CI)",
    )
    find.add_argument("--format", choices=sorted(FORMATS), default="text")
    find.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files and folders whose name or path matches (repeatable)",
    )
    find.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    find.set_defaults(run=cmd_lint_buckets)

    dots = argparse.ArgumentParser(add_help=False)
    dots.add_argument(
        "--allow-dots",
        action="store_true",
        help='take a dotted bucket name (only for a bucket used with addressing_style = "path")',
    )

    render = commands.add_parser(
        "render",
        parents=[common],
        help="print a bucket policy, IAM policy, public access block or WordPress plugin",
    )
    kinds = render.add_subparsers(dest="policy", metavar="POLICY", parser_class=parser_class)
    kinds.required = True
    bucket_policy = kinds.add_parser(
        "bucket-policy",
        parents=[common, dots],
        help="grant another account access to a bucket or one prefix of it",
    )
    bucket_policy.add_argument("--bucket", required=True)
    bucket_policy.add_argument("--prefix", default="")
    bucket_policy.add_argument(
        "--principal", required=True, help="an IAM ARN, or a 12-digit account id"
    )
    bucket_policy.add_argument(
        "--actions",
        default="get,put,delete,list",
        help="comma-separated, from get,put,delete,list (default: all)",
    )
    bucket_policy.set_defaults(run=cmd_render_bucket_policy)
    iam = kinds.add_parser(
        "iam-policy", parents=[common, dots], help="the least-privilege policy offload itself needs"
    )
    iam.add_argument("--bucket", required=True)
    iam.add_argument("--prefix", default="")
    iam.set_defaults(run=cmd_render_iam_policy)
    block = kinds.add_parser(
        "public-access-block",
        parents=[common],
        help="block all public access (the CDN reads through offload)",
    )
    block.set_defaults(run=cmd_render_public_access_block)
    plugin = kinds.add_parser(
        "wordpress-plugin",
        parents=[common],
        help="a must-use plugin that sends a site's uploads to offload and uses CDN URLs",
    )
    plugin.add_argument("--site", help="the site (needed when the config has several)")
    plugin.add_argument(
        "--endpoint",
        required=True,
        metavar="URL",
        help="offload's base URL as WordPress reaches it, e.g. https://offload.example.com",
    )
    plugin.set_defaults(run=cmd_render_wordpress_plugin)


def cmd_check_bucket(args: argparse.Namespace, env: Environment) -> int:
    from offload.buckets import lint

    findings = lint.check_names(args.names, args.profile, allow_dots=args.allow_dots)
    text = lint.format_json(findings) if args.format == "json" else lint.format_text(findings)
    env.stdout.write(text)
    return lint.exit_code(findings)


def cmd_lint_buckets(args: argparse.Namespace, env: Environment) -> int:
    from offload.buckets import lint

    try:
        report = lint.lint_paths(
            args.paths, args.profile, allow_dots=args.allow_dots, exclude=args.exclude
        )
    except FileNotFoundError as exc:
        raise UsageError(f"no such file or folder: {exc.filename or exc}") from exc
    formatter = getattr(lint, f"format_{args.format}")
    env.stdout.write(formatter(report) if args.format == "text" else formatter(report.findings))
    return lint.exit_code(report.findings)


def cmd_render_bucket_policy(args: argparse.Namespace, env: Environment) -> int:
    from offload.buckets import policies

    actions = [a.strip() for a in args.actions.split(",") if a.strip()]
    with _dots_hint(policies.DottedBucket):
        text = policies.bucket_policy(
            args.bucket, args.principal, args.prefix, actions, allow_dots=args.allow_dots
        )
    env.stdout.write(text)
    return ExitCode.OK


def cmd_render_iam_policy(args: argparse.Namespace, env: Environment) -> int:
    from offload.buckets import policies

    with _dots_hint(policies.DottedBucket):
        text = policies.iam_policy(args.bucket, args.prefix, allow_dots=args.allow_dots)
    env.stdout.write(text)
    return ExitCode.OK


@contextlib.contextmanager
def _dots_hint(dotted: type[Exception]) -> Iterator[None]:
    """Name the flag that takes a dotted bucket, which the library cannot know of."""
    try:
        yield
    except dotted as exc:
        raise UsageError(f"{exc}; give --allow-dots for such a bucket") from exc


def cmd_render_public_access_block(args: argparse.Namespace, env: Environment) -> int:
    from offload.buckets import policies

    env.stdout.write(policies.public_access_block())
    return ExitCode.OK


def cmd_render_wordpress_plugin(args: argparse.Namespace, env: Environment) -> int:
    from offload.media import wordpress

    settings, _ = load_settings_for(args, env)
    site = pick_site(settings, args.site)
    text = wordpress.render_wordpress_plugin(site, args.endpoint)
    for warning in wordpress.site_warnings(site):
        env.warn(f"warning: {warning}")
    env.stdout.write(text)
    return ExitCode.OK

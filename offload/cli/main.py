"""The ``offload`` command: argument parsing and printing only; the work is in the library.

Every error a user can cause ends as one line on stderr and a named exit code
(``offload.errors.ExitCode``); a Python traceback shows only with ``--traceback``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from offload import __version__
from offload.cli import buckets as cli_buckets
from offload.cli import config_cmd as cli_config
from offload.cli import media as cli_media
from offload.cli import purge as cli_purge
from offload.cli import sync as cli_sync
from offload.cli import variants as cli_variants
from offload.cli.configargs import load_settings_for, pick_site
from offload.cli.environment import Environment, silence
from offload.config.checks import MIN_SECRET_BYTES, config_warnings, weak_secrets
from offload.config.example import example_config
from offload.config.settings import Settings, Site, declared_settings, describe_settings
from offload.errors import ConfigError, ExitCode, OffloadError, UsageError
from offload.keys import key_problem


class _Parser(argparse.ArgumentParser):
    """argparse that exits with ExitCode.USAGE and a one-line hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="configuration file (default: $OFFLOAD_CONFIG; none = the embedded default)",
    )
    common.add_argument(
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the Python traceback of an error (for bug reports)",
    )

    parser = _Parser(
        prog="offload",
        description="Media offload service and CDN origin for CMS sites.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"offload {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    serve_cmd = commands.add_parser(
        "serve",
        parents=[common],
        help="run the webhook and origin server",
        description="Run the server. With no configuration file it serves the embedded "
        "default: one site whose bucket is a local folder.",
    )
    serve_cmd.add_argument("--host", help="address to listen on (setting: host)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (setting: port)")
    serve_cmd.add_argument(
        "--workers", type=int, help="processes sharing the port (setting: workers)"
    )
    serve_cmd.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="folder of the embedded default's bucket (setting: data_dir)",
    )
    serve_cmd.set_defaults(run=cmd_serve)

    sign = commands.add_parser(
        "sign-url", parents=[common], help="make a signed URL for a key under a signed prefix"
    )
    sign.add_argument("key", metavar="KEY", help="the object key (the URL path)")
    sign.add_argument("--site", help="the site (needed when the config has several)")
    sign.add_argument(
        "--expires-in",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="how long the URL works (default: 3600)",
    )
    sign.add_argument(
        "--transform",
        metavar="OPTIONS",
        help="make a transform URL (/_img/OPTIONS/KEY) signed with the site's signing_secret,"
        " e.g. w=480,h=320,fit=cover,f=webp; it does not expire",
    )
    sign.set_defaults(run=cmd_sign_url)

    settings = commands.add_parser(
        "settings", parents=[common], help="list every setting with its type, default and help"
    )
    settings.add_argument(
        "--example", action="store_true", help="print an example offload.toml instead"
    )
    settings.set_defaults(run=cmd_settings)

    check = commands.add_parser(
        "check-config",
        parents=[common],
        help="validate the configuration and print the effective values (secrets masked)",
    )
    check.add_argument(
        "--allow-weak-secret",
        action="store_true",
        help="accept webhook secrets shorter than 32 bytes (a warning, not an error)",
    )
    check.set_defaults(run=cmd_check_config)

    cli_buckets.add_commands(commands, common, _Parser)
    cli_config.add_commands(commands, common, _Parser)
    cli_media.add_commands(commands, common, _Parser)
    cli_purge.add_commands(commands, common, _Parser)
    cli_sync.add_commands(commands, common, _Parser)
    cli_variants.add_commands(commands, common, _Parser)
    return parser


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    try:
        try:
            args = build_parser().parse_args(argv)
        finally:
            env.stdout.flush()  # --help and --version: a closed pipe shows here, not at exit
        code = _run(args, env)
        env.stdout.flush()
        return code
    except BrokenPipeError:
        return _reader_gone(env)


def _run(args: argparse.Namespace, env: Environment) -> int:
    show_traceback = getattr(args, "traceback", False)
    try:
        return int(args.run(args, env))
    except KeyboardInterrupt:
        env.warn("interrupted")
        return ExitCode.INTERRUPTED
    except ConfigError as exc:
        for problem in exc.problems:
            env.warn(problem)
        _maybe_traceback(show_traceback, env)
        return exc.exit_code
    except OffloadError as exc:
        env.warn(f"error: {exc}")
        _maybe_traceback(show_traceback, env)
        return exc.exit_code
    except BrokenPipeError:
        raise  # the reader went away: not a bug, see _reader_gone
    except Exception as exc:
        env.warn(
            f"internal error: {type(exc).__name__}: {exc} "
            "(run again with --traceback to see where; please report it)"
        )
        _maybe_traceback(show_traceback, env)
        return ExitCode.INTERNAL


def _reader_gone(env: Environment) -> int:
    """The reader of our output has gone (``offload settings | head -1``): end quietly.

    Python ignores SIGPIPE, so a write to a closed pipe raises where git or
    coreutils would die of the signal; the shell reports those as 141 (128 +
    SIGPIPE), and so does ``offload``, with no message: ``head`` closing the pipe
    is what the user asked for. SIGPIPE is not restored to its default instead,
    because a closed S3 connection would then kill a sync.
    """
    silence(env.stdout)
    silence(env.stderr)
    return ExitCode.BROKEN_PIPE


def _maybe_traceback(wanted: bool, env: Environment) -> None:
    if wanted:
        traceback.print_exc(file=env.stderr)


# -- serve ---------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, env: Environment) -> int:
    settings, embedded = load_settings_for(args, env, may_create_default=True)
    port = settings.port if args.port is None else args.port
    if not 0 < port < 65536:
        raise UsageError(f"--port must be from 1 to 65535, got {port}")
    workers = settings.workers if args.workers is None else args.workers
    if not 0 < workers <= 64:
        raise UsageError(f"--workers must be from 1 to 64, got {workers}")
    from offload.server import logs
    from offload.server import supervisor as serve  # aiohttp: only for the commands that serve

    logs.configure(settings.log_level, settings.log_format, env.stderr)

    plan = serve.Plan(
        settings=settings,
        embedded=embedded,
        host=args.host or settings.host,
        port=port,
        workers=workers,
        debug=getattr(args, "traceback", False),
    )
    _answer_sigint()
    return serve.run(plan, env)


def _answer_sigint() -> None:
    """Stop on SIGINT (exit 130) however the server was started.

    A shell starts a script's background jobs with SIGINT ignored, and Python
    then leaves it ignored: such a server could be stopped neither with Ctrl-C
    nor with ``kill -INT``. A server answers SIGINT whoever started it (as
    aiohttp's ``run_app`` and gunicorn do), so it gets Python's own handler back,
    which raises KeyboardInterrupt; forked workers inherit it.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def cmd_sign_url(args: argparse.Namespace, env: Environment) -> int:
    settings, _ = load_settings_for(args, env)
    site = pick_site(settings, args.site)
    if not site.signing_secret:
        raise UsageError(f"site {site.name} has no signing_secret to sign with")
    key = args.key.lstrip("/")
    if problem := key_problem(key):
        raise UsageError(f"cannot sign {args.key!r}: {problem}")
    if args.transform is not None:
        return _sign_transform(args, env, settings, site, key)
    if not site.needs_signature(key):
        # The origin checks no signature there: a signed URL would only mislead.
        prefixes = ", ".join(site.signed_prefixes) or "none are set"
        raise UsageError(
            f"cannot sign {key!r}: it is under none of site {site.name}'s signed_prefixes "
            f"({prefixes})"
        )
    if args.expires_in <= 0:
        raise UsageError("--expires-in must be a positive number of seconds")
    from offload.http.signing import signed_url
    from offload.server.supervisor import url_host

    base = site.cdn_url or f"http://{url_host(settings.host)}:{settings.port}"
    expires = int(time.time()) + args.expires_in
    path = "/" + quote(key, safe="/")
    env.say(signed_url(base, path, site.signing_secret.reveal(), expires))
    return ExitCode.OK


def _sign_transform(
    args: argparse.Namespace, env: Environment, settings: Settings, site: Site, key: str
) -> int:
    from offload.images.options import OptionsError, parse_options, url_segment
    from offload.server.supervisor import url_host

    if not site.transform_prefix:
        raise UsageError(f"site {site.name} has transforms off (transform_prefix is empty)")
    try:
        options = parse_options(args.transform)
    except OptionsError as exc:
        raise UsageError(f"--transform: {exc}") from None
    base = site.cdn_url or f"http://{url_host(settings.host)}:{settings.port}"
    segment = url_segment(site, options, key)
    env.say(f"{base.rstrip('/')}/{site.transform_prefix}/{segment}/{quote(key, safe='/')}")
    return ExitCode.OK


# -- settings and check-config -------------------------------------------------------


def cmd_settings(args: argparse.Namespace, env: Environment) -> int:
    rows = declared_settings()
    if args.example:
        env.stdout.write(example_config())
        return ExitCode.OK
    header = ("SCOPE", "NAME", "TYPE", "DEFAULT", "HELP")
    table = [header, *((r.scope, r.name, r.type, r.default, r.help) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        env.say("  ".join([*cells, row[4]]).rstrip())
    return ExitCode.OK


def cmd_check_config(args: argparse.Namespace, env: Environment) -> int:
    settings, _ = load_settings_for(args, env)
    weak = weak_secrets(settings)
    if weak and not args.allow_weak_secret:
        raise ConfigError(
            f"{', '.join(weak)}: shorter than {MIN_SECRET_BYTES} bytes, easy to guess;"
            " use a longer one (python3 -c 'import secrets; print(secrets.token_hex(32))')"
            " or pass --allow-weak-secret"
        )
    warnings = config_warnings(settings) + [f"{name}: shorter than 32 bytes" for name in weak]
    for warning in warnings:
        env.warn(f"warning: {warning}")
    env.say(f"# {settings.source}: valid" + (f", {len(warnings)} warning(s)" if warnings else ""))
    for name, shown in describe_settings(settings):
        env.say(f"{name} = {shown}")
    return ExitCode.OK

"""The WordPress must-use plugin of one site, from ``templates/wordpress/offload.php.j2``.

The plugin holds the site's name and the offload server's URL, never the
webhook secret: WordPress reads that from ``OFFLOAD_WEBHOOK_SECRET`` in
wp-config.php, so the rendered file can go into a repository or a deploy
artifact like any other code. Every value reaches the template already written
as a PHP single-quoted string literal, so a site name or URL cannot end its
string and turn into code, whatever it holds.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from offload import __version__
from offload.config.render import render
from offload.config.settings import SITE_NAME, Site
from offload.errors import ExitCode, OffloadError

TEMPLATE = "wordpress/offload.php.j2"

# Characters a URL may hold as it is (RFC 3986): no spaces, quotes, backslashes or non-ASCII.
_URL_TEXT = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# "scheme://user@host" or "scheme://user:password@host": credentials do not belong in a plugin.
_USERINFO = re.compile(r"[^/?#]*//[^/?#]*@")
# What the version may look like where the plugin header shows it outside a string.
_VERSION = re.compile(r"[0-9A-Za-z.+!-]+")


class PluginError(OffloadError):
    """A site name or endpoint that cannot go into the plugin."""

    exit_code = ExitCode.USAGE


def render_wordpress_plugin(site: Site, endpoint: str) -> str:
    """The plugin file that sends ``site``'s uploads to the offload server at ``endpoint``.

    ``endpoint`` is the server's base URL as WordPress reaches it, e.g.
    ``https://offload.example.com``; the webhooks are under
    ``{endpoint}/_offload/{site}/``. A bad site name or endpoint is a PluginError.
    """
    if not SITE_NAME.fullmatch(site.name):
        raise PluginError(
            f"invalid site name {_shown(site.name)}: use lowercase letters, digits, '-' and '_'"
        )
    if not _VERSION.fullmatch(__version__):
        raise RuntimeError(f"offload's version {__version__!r} cannot go into a plugin header")
    return render(
        TEMPLATE,
        site_literal=php_string(site.name),
        endpoint_literal=php_string(check_endpoint(endpoint)),
        version=__version__,
    )


def site_warnings(site: Site) -> list[str]:
    """What in ``site``'s settings keeps the plugin from working, worth saying when rendering it.

    None of these stops the rendering: the configuration may be fixed later.
    """
    warnings = []
    if not site.webhook_secret:
        warnings.append(
            f"site {site.name} has no webhook_secret: offload answers its webhooks with 403"
        )
    if site.uploads_dir is None:
        warnings.append(
            f"site {site.name} has no uploads_dir: offload cannot find the files WordPress names"
        )
    if not site.uploads_url:
        warnings.append(
            f"site {site.name} has no uploads_url: offload's answers map no local URL to the CDN"
        )
    return warnings


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` without its trailing '/', once it is a plain http(s) base URL."""
    example = "an http(s) URL such as https://offload.example.com"
    if not isinstance(endpoint, str):
        raise PluginError(f"the endpoint must be {example}, got {_shown(endpoint)}")
    if _USERINFO.match(endpoint):  # checked first: no message may show a password
        raise PluginError("the endpoint must not hold a user name or password")
    if not _URL_TEXT.fullmatch(endpoint):
        raise PluginError(
            f"the endpoint must be {example} (ASCII; no spaces, quotes or backslashes), "
            f"got {_shown(endpoint)}"
        )
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise PluginError(f"the endpoint must be {example}, got {_shown(endpoint)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PluginError(f"the endpoint must be {example}, got {_shown(endpoint)}")
    if "?" in endpoint or "#" in endpoint:
        raise PluginError(f"the endpoint must have no query or fragment, got {_shown(endpoint)}")
    if _BAD_PERCENT.search(endpoint):
        raise PluginError(f"the endpoint has a '%' that starts no %XX escape: {_shown(endpoint)}")
    if "_offload" in parts.path.split("/"):
        raise PluginError(
            f"the endpoint is the server's base URL, without /_offload/...: {_shown(endpoint)}"
        )
    return endpoint.rstrip("/")


def php_string(value: str) -> str:
    """``value`` as a PHP single-quoted string literal.

    Inside single quotes PHP gives meaning to two escapes only, ``\\\\`` and
    ``\\'``; every other byte (``$``, newlines, ``?>``) stands for itself.
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _shown(value: object) -> str:
    """A value for a one-line message: escapes visible, long ones cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

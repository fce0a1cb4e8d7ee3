"""What a change of keys needs purged: the public URL of each key, for the site's CDN.

A URL purge is the one kind every provider takes, and it is exact: it drops
that object and nothing else, where a folder tag would empty a whole month of
uploads from the edge. So changes purge by URL; tags, prefixes and everything
are for ``offload purge`` by hand. The URL is the one pages link to and the CDN
caches under: ``cdn_url + "/" + key`` (spelled as the webhooks answer it), or,
with no ``cdn_url``, the site's first hostname that is not a wildcard (the
origin is the public host); with neither, there is no URL to purge.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from offload.config.settings import Site
from offload.keys import UnsafeKey, validate_key
from offload.manifest import PurgeItem
from offload.purge.providers.items import cdn_url as key_url
from offload.purge.providers.items import public_base


class PurgeTargetError(ValueError):
    """A key or URL given by hand that is not the site's."""


def purges_enabled(site: Site) -> bool:
    return site.purge != "none"


def purges_for_keys(site: Site, keys: Iterable[str]) -> list[PurgeItem]:
    """URL purges for these changed or deleted keys; none when the site does not purge."""
    if not purges_enabled(site) or not public_base(site):
        return []
    seen: dict[str, None] = {}
    for key in keys:
        seen.setdefault(key_url(site, key), None)
    return [PurgeItem(site.name, "url", url) for url in seen]


def purge_for_text(site: Site, text: str) -> PurgeItem:
    """``offload purge KEY|URL``: a URL is taken as it is; a key becomes the site's URL of it.

    A URL on another host, or a key outside the site's prefix, is refused: purging
    it would say "done" while the object stays cached where pages find it.
    """
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PurgeTargetError(f"{text!r} is not an http(s) URL")
        hosts = {urlsplit(public_base(site)).netloc, *site.hostnames}
        if parts.netloc not in hosts:
            known = ", ".join(sorted(hosts))
            raise PurgeTargetError(
                f"{text!r} is not a URL of site {site.name!r} (its hosts: {known})"
            )
        key = unquote(parts.path.lstrip("/"))
    else:
        key = text.lstrip("/")
    _check_key(site, key)
    return PurgeItem(site.name, "url", key_url(site, key))


def purge_for_prefix(site: Site, prefix: str) -> PurgeItem:
    """``offload purge --prefix P``: a key prefix inside the site's prefix."""
    prefix = prefix.strip("/")
    _check_key(site, prefix)
    return PurgeItem(site.name, "prefix", prefix)


def _check_key(site: Site, key: str) -> None:
    try:
        validate_key(key)
    except UnsafeKey as exc:
        raise PurgeTargetError(f"{key!r}: {exc}") from None
    base = site.prefix.strip("/")
    if base and key != base and not key.startswith(base + "/"):
        outside = f"{key!r} is outside the prefix {base + '/'!r}"
        raise PurgeTargetError(f"{outside} of site {site.name!r}")

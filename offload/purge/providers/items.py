"""What the providers share in ``prepare``: the site's tags, CDN URLs, merging and splitting.

The origin tags each object with the site's tag and one ``site:folder`` tag per
folder of its key (``offload.http.caching.cache_tags``), so a key prefix (a
folder: ``2024/05`` means every key under ``2024/05/``) maps to one tag, and
"everything" to the site's tag. A tag-capable API therefore never needs its
purge-all, which would also empty what other sites share the zone with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

from offload.config.settings import Site
from offload.http.caching import cache_tags
from offload.manifest import PurgeItem

T = TypeVar("T")


def site_tag(site: Site) -> str:
    """The tag every object of the site carries."""
    return cache_tags(site.name, "x")[0]


def folder_tag(site: Site, prefix: str) -> str:
    """The tag of the folder ``prefix``; when it is too long to be sent, the deepest ancestor's.

    The origin leaves out tags past its length budget, so the deepest tag it does
    send for a key in the folder covers the folder (and perhaps more: safe).
    """
    folder = prefix.strip("/")
    return cache_tags(site.name, f"{folder}/x" if folder else "x")[-1]


def folder_of_tag(site: Site, tag: str) -> str | None:
    """The folder a tag of this site stands for ("" for the site's tag); None for other tags."""
    own = site_tag(site)
    if tag == own:
        return ""
    if tag.startswith(own + ":") and len(tag) > len(own) + 1:
        return unquote(tag[len(own) + 1 :])
    return None


def sends_tag_header(site: Site, header: str) -> bool:
    """Whether the origin sends the site's tags in ``header``, the one a CDN reads them from."""
    names = (site.cache_tag_header.lower(), site.surrogate_key_header.lower())
    return header.lower() in names


def public_base(site: Site) -> str:
    """The base of the site's public URLs: ``cdn_url``, else its first host name.

    The same rule as the URLs the outbox is given (``offload.purge.targets``): with
    no ``cdn_url`` the CDN sits in front of the origin's own host names.
    """
    if site.cdn_url:
        return site.cdn_url.rstrip("/")
    hosts = [host for host in site.hostnames if "*" not in host]  # no wildcard is a URL
    return f"https://{hosts[0]}" if hosts else ""


def cdn_url(site: Site, path: str = "") -> str:
    """The public URL of a key or folder, percent-encoded as the webhooks spell it."""
    return f"{public_base(site)}/{quote(path.strip('/'), safe='/')}"


def host_path(url: str) -> str:
    """``https://cdn.example.com/a/b.jpg`` -> ``cdn.example.com/a/b.jpg`` (as the URL has it)."""
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.netloc + rest


def tag_or_everything(site: Site, item: PurgeItem, *, tags: bool) -> PurgeItem:
    """The item for an API that purges URLs, tags and the whole zone, but no prefix.

    ``tags``: the origin sends the header this API reads tags from. Then a folder
    is its tag and everything the site's tag; without it, both are the whole
    zone, and so is a tag of this site's (the CDN would know of no such tag).
    """
    if item.kind == "tag" and not tags and folder_of_tag(site, item.value) is not None:
        return PurgeItem(item.site, "everything", "")
    if item.kind == "prefix":
        if tags and item.value.strip("/"):
            return PurgeItem(item.site, "tag", folder_tag(site, item.value))
        return tag_or_everything(site, PurgeItem(item.site, "everything", ""), tags=tags)
    if item.kind == "everything" and tags:
        return PurgeItem(item.site, "tag", site_tag(site))
    return item


def unique(items: Iterable[PurgeItem]) -> list[PurgeItem]:
    """The items without repeats, first seen first."""
    return list(dict.fromkeys(items))


def chunks(seq: Sequence[T], size: int) -> Iterator[list[T]]:
    """``seq`` in lists of at most ``size``."""
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])

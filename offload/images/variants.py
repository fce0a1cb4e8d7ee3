"""Where variants live in the bucket, and how they go when their original goes.

A variant of ``{prefix}/{path}`` is stored at
``{prefix}/{transform_variants_prefix}/{path}/{canonical options}.{ext}``:
one folder per original, so one listing finds every variant of an original
(to delete them with it) and the original's key can be read back from a
variant's (to prune variants whose original is gone). The canonical option
text names the file, so the transform URL of a stored variant can be derived
from its key alone, and purged.

``f=auto`` keeps ``f=auto`` in the name and the negotiated format in the
extension (``w=480,f=auto.webp``): one URL, several stored answers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from urllib.parse import quote

from offload.config.settings import Site
from offload.images.formats import extension
from offload.images.options import OptionsError, TransformOptions, parse_options, url_segment
from offload.keys import key_problem
from offload.manifest import PurgeItem
from offload.purge.providers.items import public_base
from offload.purge.targets import purges_enabled
from offload.storage import Storage

log = logging.getLogger(__name__)
#: Metadata on a stored variant: the ETag of the original it was made from.
META_SOURCE_ETAG = "offload-source-etag"


def _root(site: Site) -> str:
    """The variants' folder, with its trailing '/'."""
    return f"{site.prefix}/{site.transform_variants_prefix}/".lstrip("/")


def is_variant_key(site: Site, key: str) -> bool:
    return key.startswith(_root(site))


def variant_folder(site: Site, key: str) -> str:
    """The folder (trailing '/') that holds every variant of the original ``key``."""
    relative = key[len(site.prefix) + 1 :] if site.prefix else key
    return f"{_root(site)}{relative}/"


def variant_key(site: Site, key: str, options: TransformOptions, fmt: str) -> str:
    """The stored variant of ``key`` for these options, written in format ``fmt``."""
    return f"{variant_folder(site, key)}{options.canonical()}.{extension(fmt)}"


def parse_variant_key(site: Site, variant: str) -> tuple[str, TransformOptions] | None:
    """(original key, options) of a stored variant's key; None for anything else."""
    root = _root(site)
    if not variant.startswith(root):
        return None
    folder, _, name = variant[len(root) :].rpartition("/")
    canonical = name.rpartition(".")[0]
    if not folder or not canonical:
        return None
    original = f"{site.prefix}/{folder}" if site.prefix else folder
    try:
        options = parse_options(canonical)
    except OptionsError:
        return None
    if options.canonical() != canonical or key_problem(original):
        return None
    return original, options


def transform_paths(site: Site, variants: Iterable[str]) -> list[str]:
    """The URL paths (no leading '/') that serve these stored variants: the canonical
    options (signed when they must be) and each preset that stands for the same options.
    The purge of a deleted variant names them (``purges_for_keys`` takes paths)."""
    if not site.transform_prefix:
        return []
    by_canonical: dict[str, list[str]] = {}
    for name, text in site.transforms:
        try:
            by_canonical.setdefault(parse_options(text).canonical(), []).append(name)
        except OptionsError:
            continue
    paths: dict[str, None] = {}
    for variant in variants:
        parsed = parse_variant_key(site, variant)
        if parsed is None:
            continue
        original, options = parsed
        segments = list(by_canonical.get(options.canonical(), []))
        # Signed options on a site with no secret: no such URL works, nothing to purge.
        with contextlib.suppress(ValueError):
            segments.append(url_segment(site, options, original))
        for segment in segments:
            paths.setdefault(f"{site.transform_prefix}/{segment}/{original}", None)
    return list(paths)


def variant_purges(site: Site, variants: Iterable[str]) -> list[PurgeItem]:
    """URL purges of the transform URLs of these stored variants (none when the site
    does not purge). Spelled as sign-url and pages write them: '=', ',' and ':' bare in
    the options, the key quoted as in every CDN URL."""
    base = public_base(site)
    if not purges_enabled(site) or not base:
        return []
    head = site.transform_prefix + "/"
    items = []
    for path in transform_paths(site, variants):
        segment, _, key = path[len(head) :].partition("/")
        # The key spelled as every CDN URL of offload spells it (cdn_url, sign-url).
        spelled = f"{quote(head, safe='/')}{quote(segment, safe='=,:')}/{quote(key, safe='/')}"
        items.append(PurgeItem(site.name, "url", f"{base}/{spelled}"))
    return items


async def find_variants(site: Site, storage: Storage, keys: Iterable[str]) -> list[str]:
    """The stored variants of these originals (one listing per original)."""
    found: list[str] = []
    for key in keys:
        if is_variant_key(site, key):
            continue
        folder = variant_folder(site, key)
        async for info in storage.list(folder):
            if "/" not in info.key[len(folder) :]:  # not a variant of the key a/b.jpg/c.jpg
                found.append(info.key)
    return found


async def delete_variants(site: Site, storage: Storage, keys: Iterable[str]) -> list[str]:
    """Delete every variant of these originals; the deleted variant keys."""
    found = await find_variants(site, storage, keys)
    if found:
        await storage.delete(found)
    return found


async def prune(site: Site, storage: Storage, *, dry_run: bool = False) -> list[str]:
    """Delete the variants whose original is gone: the keys deleted (or, with
    ``dry_run``, that would be). A key under the variants folder that is not a
    variant's is left alone: offload did not write it."""
    doomed: list[str] = []
    present: dict[str, bool] = {}
    async for info in storage.list(_root(site)):
        parsed = parse_variant_key(site, info.key)
        if parsed is None:
            continue
        original = parsed[0]
        if original not in present:
            present[original] = await storage.head(original) is not None
        if not present[original]:
            doomed.append(info.key)
    if doomed and not dry_run:
        await storage.delete(doomed)
    log.info("site %s: %d variants pruned", site.name, len(doomed))
    return doomed

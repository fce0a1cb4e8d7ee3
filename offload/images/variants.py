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

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

from offload.config.settings import Site
from offload.images.formats import extension
from offload.images.options import OptionsError, TransformOptions, parse_options, url_segment
from offload.keys import key_problem
from offload.manifest import Manifest, ManifestError, PurgeItem
from offload.purge.providers.items import public_base
from offload.purge.targets import purges_enabled, purges_for_keys
from offload.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)
#: Metadata on a stored variant: the ETag of the original it was made from.
META_SOURCE_ETAG = "offload-source-etag"
#: Seconds after which a variant deletion's purge goes out even if the deletion's own
#: (due at once) was never queued: well after the deletion it guards, as the
#: offloader's ``UNRECORDED_PURGE_AFTER``.
PURGE_SAFETY_DELAY = 120.0
#: A blocking call -> awaitable, run in an executor.
Run = Callable[..., Awaitable[Any]]


def is_stale(made: ObjectInfo, original: ObjectInfo) -> bool:
    """Whether a stored variant (or asset-server thumbnail) was made from another
    version of the original: by the ETag it recorded, or when the storage kept no
    metadata (a restarted ``rclone serve s3``, a file put in the folder by hand), by
    being older than the original."""
    made_from = (made.metadata or {}).get(META_SOURCE_ETAG)
    if made_from is not None:
        return made_from != original.etag
    return made.last_modified < original.last_modified


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
    """The stored variants of these originals, in the order of ``keys``.

    ``a/b.jpg``'s variants are the objects right in its folder, never those of
    ``a/b.jpg/c.jpg`` below it. Listings run ``LISTINGS_AT_ONCE`` at a time (a
    sync deleting 100,000 originals must not make 100,000 listings in a row),
    and where ``SHARED_FOLDER_AT`` or more of the keys share one parent folder
    (a month of uploads), that folder's variants subtree is listed once instead
    of once per key. Such a listing gives up after ``_budget`` objects and falls
    back to one listing per key: a subtree far larger than the keys' own
    variants (a site's whole variants folder, under a prefix-less site's top
    keys) costs no more than the per-key listings would have.
    """
    folders: dict[str, None] = {}
    for key in keys:
        if not is_variant_key(site, key):
            folders.setdefault(variant_folder(site, key), None)
    if not folders:
        return []
    shared: dict[str, list[str]] = {}
    for folder in folders:
        shared.setdefault(folder[: folder.rstrip("/").rfind("/") + 1], []).append(folder)
    jobs: list[tuple[str, list[str]]] = []
    for parent, members in shared.items():
        if len(members) >= SHARED_FOLDER_AT:
            jobs.append((parent, members))
        else:
            jobs.extend((folder, [folder]) for folder in members)
    found: dict[str, list[str]] = {folder: [] for folder in folders}

    async def listing(prefix: str, members: list[str]) -> None:
        if len(members) > 1 and await _list_into(storage, prefix, members, found):
            return
        for folder in members:
            await _list_into(storage, folder, [folder], found, whole=True)

    await _bounded(LISTINGS_AT_ONCE, (listing(prefix, members) for prefix, members in jobs))
    return [variant for folder in folders for variant in found[folder]]


#: Listings ``find_variants`` runs at once.
LISTINGS_AT_ONCE = 8
#: Keys of one parent folder from which ``find_variants`` lists the folder's subtree once.
SHARED_FOLDER_AT = 20


def _budget(members: list[str]) -> int:
    """Objects a shared listing may pass before per-key listings are cheaper: a
    listing page holds 1,000 keys, and the per-key way costs a request per key."""
    return 1000 * len(members)


async def _list_into(
    storage: Storage,
    prefix: str,
    folders: list[str],
    found: dict[str, list[str]],
    *,
    whole: bool = False,
) -> bool:
    """List ``prefix`` once and add each object right in one of ``folders`` (the variant
    folders of some originals) to ``found[that folder]``. Unless ``whole``, give up past
    ``_budget(folders)`` objects: False, and nothing added."""
    wanted = set(folders)
    budget = None if whole else _budget(folders)
    taken: list[tuple[str, str]] = []
    seen = 0
    async for info in storage.list(prefix):
        seen += 1
        if budget is not None and seen > budget:
            return False
        folder = info.key[: info.key.rfind("/") + 1]
        if folder in wanted:
            taken.append((folder, info.key))
    for folder, key in taken:
        found[folder].append(key)
    return True


async def _bounded(limit: int, jobs: Iterator[Awaitable[None]]) -> None:
    """Await ``jobs`` with at most ``limit`` running at once (the first failure cancels
    the rest and is raised). Workers pull from the iterator, so 100,000 jobs are never
    100,000 tasks."""

    async def worker() -> None:
        for job in jobs:
            await job

    workers = [asyncio.create_task(worker()) for _ in range(limit)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


async def delete_purged(
    site: Site,
    storage: Storage,
    variants: list[str],
    manifest: Manifest,
    run: Run,
    *,
    others: Sequence[str] = (),
    also: Sequence[PurgeItem] = (),
) -> list[PurgeItem]:
    """Delete these variants (and the plain keys ``others``) and queue the purge of
    their URLs (and of ``also``, a change made just before); the purges.

    The order is the offloader's (``Offloader._purge_if_unrecorded``): the purges
    are queued first, due in ``PURGE_SAFETY_DELAY`` seconds, then the keys
    are deleted, then the purges are queued again due now (they merge into the
    first). A process that dies between the deletion and the second queueing
    still purges, later; a deletion that fails leaves a purge of URLs that still
    answer, which costs a cache miss. Raises ManifestError before storage is
    touched, and the storage's errors; a failure of the second queueing is only
    logged (the first stands). ``run``: a blocking call -> awaitable, in an
    executor (the manifest's calls block).
    """
    items = [*purges_for_keys(site, others), *variant_purges(site, variants), *also]
    if items:
        later = time.time() + PURGE_SAFETY_DELAY
        await run(functools.partial(manifest.enqueue_purges, items, not_before=later))
    doomed = [*others, *variants]
    if doomed:
        await storage.delete(doomed)
    if items:
        try:
            await run(functools.partial(manifest.enqueue_purges, items))
        except ManifestError as exc:
            log.warning(
                "site %s: %d purge(s) of deleted objects go out in %d s, not now: %s",
                site.name,
                len(items),
                PURGE_SAFETY_DELAY,
                exc,
            )
    return items


async def prune(
    site: Site,
    storage: Storage,
    manifest: Manifest | None,
    run: Run,
    *,
    dry_run: bool = False,
) -> list[str]:
    """Delete the variants whose original is gone, purging them (``delete_purged``): the
    keys deleted (or, with ``dry_run``, that would be). A key under the variants folder
    that is not a variant's is left alone: offload did not write it.

    Raises StorageMissing when the storage itself is not there: a missing folder
    holds no variants, and "0 deleted" would hide the wrong storage URL.
    ``manifest``: where the purges are queued; None only with ``dry_run``, which
    writes nothing anywhere.
    """
    if manifest is None and not dry_run:
        raise ValueError("a prune that deletes needs the manifest to queue its purges")
    await storage.check()
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
    if doomed and manifest is not None and not dry_run:
        await delete_purged(site, storage, doomed, manifest, run)
    log.info("site %s: %d variants pruned", site.name, len(doomed))
    return doomed

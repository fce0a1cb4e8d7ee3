"""Stand-in for the store branch's ``offload/manifest/base.py``: only ``PurgeItem``.

The nginx branch needs the purge item of /work/briefs/store_api.md to build its
provider against; the store branch's module (the whole manifest interface)
replaces this file when the branches meet.
"""

from __future__ import annotations

from dataclasses import dataclass

PURGE_KINDS = ("url", "tag", "prefix", "everything")


@dataclass(frozen=True)
class PurgeItem:
    """One thing to purge from a site's CDN: an absolute URL, a tag, a key prefix, or all."""

    site: str
    kind: str  # one of PURGE_KINDS
    value: str  # the absolute URL, the tag, the key prefix; "" for everything

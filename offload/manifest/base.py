"""The manifest's shared types: what a purge is, as the outbox stores it.

Only ``PurgeItem`` lives here for now; the store interface lands beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

PURGE_KINDS = ("url", "tag", "prefix", "everything")


@dataclass(frozen=True)
class PurgeItem:
    """One thing to purge for a site: an absolute URL, a tag, a key prefix, or everything."""

    site: str
    kind: str  # one of PURGE_KINDS
    value: str  # the absolute URL, the tag, the key prefix; "" for everything

"""The manifest database: what is offloaded, the purge outbox and the sync runs' records."""

from offload.manifest.base import (
    PURGE_KINDS,
    Manifest,
    ManifestError,
    ManifestRow,
    PurgeEntry,
    PurgeGiveUp,
    PurgeItem,
    PurgeQueue,
    SyncRunRecord,
)
from offload.manifest.opening import open_manifest

__all__ = [
    "PURGE_KINDS",
    "Manifest",
    "ManifestError",
    "ManifestRow",
    "PurgeEntry",
    "PurgeGiveUp",
    "PurgeItem",
    "PurgeQueue",
    "SyncRunRecord",
    "open_manifest",
]

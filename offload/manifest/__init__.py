"""The manifest database: what is offloaded, the purge outbox and the sync runs' records."""

from offload.manifest.base import PURGE_KINDS, PurgeItem

__all__ = ["PURGE_KINDS", "PurgeItem"]

"""Purging CDN caches: what to purge for a change, the providers, and the outbox drain."""

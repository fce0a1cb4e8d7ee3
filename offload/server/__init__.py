"""The aiohttp server: webhooks, the CDN origin, health, metrics and background syncs.

``app`` builds one application per process with no globals (shared objects
live under the typed keys of ``appkeys``); ``supervisor`` runs one process or
forks several sharing a port. The handlers are ``webhooks`` (uploads,
deletions, rewrites, syncs), ``origin`` (with ``origin_cache`` and
``origin_metrics``), ``health`` and ``metrics``; ``sync_runs`` keeps the
background sync runs a webhook starts.
"""

"""Opening a site's storage with the process-wide pool and transfer settings.

The server, ``offload sync site:NAME`` and ``offload reindex`` all open a
site's storage here, so the three use the same options.
"""

from __future__ import annotations

from concurrent.futures import Executor

from offload.config.settings import Settings, Site
from offload.storage import Storage, open_storage


def open_site_storage(settings: Settings, site: Site, executor: Executor) -> Storage:
    """The site's storage with the global pool and transfer settings (blocking)."""
    return open_storage(
        site.storage,
        executor=executor,
        threads=settings.storage_threads,
        connect_timeout=settings.storage_timeout,
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        multipart_concurrency=settings.multipart_concurrency,
        **site.storage_options(),
    )

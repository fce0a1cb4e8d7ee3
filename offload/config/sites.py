"""Opening a site's storage with its pool and the process-wide transfer settings.

The server, ``offload sync site:NAME`` and ``offload reindex`` all open a
site's storage here, so the three use the same options.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

from offload.config.settings import Settings, Site
from offload.errors import ConfigError
from offload.storage import S3Config, Storage, open_storage, parse_storage_url
from offload.storage.local import LocalStorage
from offload.storage.uploadmarks import UploadMarks


def site_s3_config(settings: Settings, site: Site) -> S3Config:
    """The S3 options of a site: its own endpoint and the like, the global transfer settings.

    A value S3Config refuses (a blank region, say) is the site's configuration error.
    """
    try:
        return _s3_config(settings, site)
    except ValueError as exc:
        raise ConfigError(f"sites.{site.name}: {exc}") from None


def _s3_config(settings: Settings, site: Site) -> S3Config:
    return S3Config(
        max_connections=settings.storage_threads,
        connect_timeout=settings.storage_timeout,
        read_timeout=settings.storage_read_timeout,
        max_attempts=settings.storage_attempts,
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        multipart_concurrency=settings.multipart_concurrency,
        endpoint_url=site.endpoint_url or None,
        region=site.region or None,
        profile=site.profile or None,
        addressing_style=site.addressing_style or None,
        storage_class=site.storage_class or None,
    )


def open_site_storage(settings: Settings, site: Site, executor: Executor) -> Storage:
    """The site's storage on ``executor`` with the global transfer settings (blocking).

    The server gives each site a pool of its own, so a hung endpoint holds only
    its threads. A folder is fenced at the site's ``signed_prefixes``: no link in
    it leads a key into or out of one, so nothing signed is ever served through
    an alias.
    """
    scheme, location, _ = parse_storage_url(site.storage)
    if scheme == "file":
        return LocalStorage(Path(location), executor=executor, fences=site.signed_prefixes)
    storage = open_storage(site.storage, executor=executor, config=site_s3_config(settings, site))
    # Multipart uploads are noted in the server's sync state file, where the next
    # background sync's cleanup finds those a kill cut short.
    storage.use_upload_marks(UploadMarks(server_sync_state(settings)))
    return storage


def server_sync_state(settings: Settings) -> Path:
    """The sync state file of the server's background syncs, in ``manifest_folder``.

    The server's own data folder, writable by it wherever it runs (a service
    user may have no home); ``offload sync`` from a shell uses its own
    (``$OFFLOAD_SYNC_STATE`` names this one to share it).
    """
    return manifest_folder(settings) / "sync-state.sqlite3"


def manifest_folder(settings: Settings) -> Path:
    """The folder for the server's own small files (sync state, webhook replays).

    Beside a SQLite manifest; with the manifest on PostgreSQL, the config
    file's folder (the working directory when it came from the environment).
    """
    location = settings.manifest
    if isinstance(location, Path):
        return location.parent
    return getattr(location, "folder", None) or Path.cwd()

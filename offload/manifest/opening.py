"""One way in: a ``postgresql://`` URL opens PostgreSQL, anything else is a SQLite file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from offload.manifest.base import Manifest
from offload.manifest.sqlite import SqliteManifest

SCHEMES = ("postgresql", "postgres")


def is_database_url(location: str | Path) -> bool:
    return isinstance(location, str) and urlsplit(location).scheme.lower() in SCHEMES


def open_manifest(location: str | Path, *, pool_size: int | None = None) -> Manifest:
    """The store at ``location``; nothing connects or is created until first use.

    ``pool_size``: connections a PostgreSQL store may hold, sized to the threads
    that call it (the default suits a command-line run).
    """
    if is_database_url(location):
        # Imported here: a SQLite user never loads psycopg.
        from offload.manifest.postgres import DEFAULT_POOL_SIZE, PostgresManifest

        return PostgresManifest(str(location), pool_size=pool_size or DEFAULT_POOL_SIZE)
    return SqliteManifest(Path(location))

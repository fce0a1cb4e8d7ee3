"""The embedded default: one site on a local folder, for trying offload with no cloud account.

With no config file, ``offload serve`` serves the site ``default`` from
``data_dir`` (``./offload-data/``), answering for any host name. Its webhook
secret is generated once and kept in ``<data_dir>/.offload/webhook-secret``
with mode 0600: inside the folder's reserved area, which the storage never
lists or serves, and never printed in full.

Its ``uploads_dir`` is an ``uploads/`` folder beside ``data_dir``, made on the
first run, so the README's first JSON webhook works as written: a site without
one refuses JSON bodies, which name files offload must read itself. It is beside
the bucket folder, never inside it, so the origin serves only what was offloaded.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import stat
from pathlib import Path

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.errors import ConfigError
from offload.storage.local import RESERVED

SITE_NAME = "default"
UPLOADS_DIR_NAME = "uploads"
SECRET_FILE_NAME = "webhook-secret"  # noqa: S105 - a file name, not a secret
DEFAULT_MANIFEST = "offload-manifest.sqlite3"


@dataclasses.dataclass(frozen=True)
class Embedded:
    settings: Settings
    data_dir: Path
    secret_file: Path
    uploads_dir: Path


def embedded_settings(settings: Settings, data_dir: Path | None = None) -> Embedded:
    """``settings`` with the default site added, its folder and secret made if missing."""
    folder = Path(os.path.abspath(data_dir or settings.data_dir))
    uploads = folder.parent / UPLOADS_DIR_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        secret_file = folder / RESERVED / SECRET_FILE_NAME
        secret = _load_or_create_secret(secret_file)
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot use {folder}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{secret_file}: the webhook secret is not ASCII text") from exc
    try:
        uploads.mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot make {uploads} beside it: {exc.strerror}") from exc
    site = Site(
        name=SITE_NAME,
        storage=folder.as_uri(),
        hostnames=("*",),
        webhook_secret=Secret(secret),
        uploads_dir=uploads,
    )
    changes: dict[str, object] = {"sites": {SITE_NAME: site}, "source": "embedded default"}
    if settings.manifest == Path.cwd() / DEFAULT_MANIFEST:  # not set: keep it with the data
        changes["manifest"] = folder / RESERVED / "manifest.sqlite3"
    return Embedded(
        dataclasses.replace(settings, **changes),  # type: ignore[arg-type]
        folder,
        secret_file,
        uploads,
    )


def _load_or_create_secret(path: Path) -> str:
    """Read the secret, or create it readable by this user alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)  # a copied folder may have loosened it
        value = path.read_text(encoding="ascii").strip()
        if len(value) < 32:
            raise ConfigError(f"{path}: the webhook secret is shorter than 32 characters") from None
        return value
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value

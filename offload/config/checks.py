"""What ``offload check-config`` warns about: settings that load but will not work as meant.

Loading checks each value on its own; these look at what they mean together
and on this machine: a storage folder or uploads folder that is not there, a
site whose webhooks are off, a configuration with no site, and a webhook secret
too short to resist guessing (an error unless the operator says it is meant).
Each is one line, naming the setting to change.
"""

from __future__ import annotations

from pathlib import Path

from offload.config.settings import Settings
from offload.storage import parse_storage_url

#: Bytes a webhook secret needs: 256 bits, as `offload` generates them.
MIN_SECRET_BYTES = 32


def config_warnings(settings: Settings) -> list[str]:
    """One line per setting that loads but will not work as meant (blocking: it stats folders)."""
    if not settings.sites:
        return ["no [sites.NAME] table: offload serves nothing and takes no webhook"]
    warnings: list[str] = []
    for name, site in settings.sites.items():
        where = f"sites.{name}"
        try:
            scheme, folder, _prefix = parse_storage_url(site.storage)
        except ValueError:
            scheme, folder = "", ""
        if scheme == "file" and not Path(folder).is_dir():
            warnings.append(
                f"{where}.storage: the folder {folder} does not exist: the origin answers 503"
                " until it is made"
            )
        if not site.webhook_secret:
            warnings.append(f"{where}.webhook_secret is empty: its webhooks are off (403)")
        if site.uploads_dir is None:
            warnings.append(
                f"{where}.uploads_dir is unset: JSON webhooks are refused; set it to the CMS's"
                " uploads folder, or send the files as multipart/form-data"
            )
        elif not site.uploads_dir.is_dir():
            warnings.append(
                f"{where}.uploads_dir: the folder {site.uploads_dir} does not exist: every file"
                " a webhook names stays pending"
            )
    return warnings


def weak_secrets(settings: Settings) -> list[str]:
    """The webhook secrets shorter than MIN_SECRET_BYTES, by setting name (never the value)."""
    return [
        f"sites.{name}.webhook_secret"
        for name, site in settings.sites.items()
        if site.webhook_secret and len(site.webhook_secret.reveal().encode()) < MIN_SECRET_BYTES
    ]

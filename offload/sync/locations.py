"""What ``SRC`` and ``DST`` name: a local folder, ``s3://bucket/prefix``, or ``site:NAME``.

A folder is plain files (no sidecars: what a web server or a CMS sees). A
bucket is a ``Storage`` plus a key prefix inside it: ``s3://bucket/prefix``
opens S3 with the command line's endpoint, region, profile and storage class;
``site:NAME`` is the site's storage from the config under the site's
``prefix``, so ``offload sync /var/www/wp-content/uploads site:blog`` writes
the same keys the webhooks write. ``file:///abs/path`` is a folder, as the
``storage`` setting reads it (a site's ``file://`` storage, named as
``site:NAME``, is a bucket: a folder with its metadata sidecars). A trailing
slash changes nothing.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import Executor
from dataclasses import dataclass

from offload.config.settings import Settings, Site
from offload.errors import ExitCode, OffloadError
from offload.keys import key_problem
from offload.storage import S3Config, Storage, open_storage, parse_storage_url


class LocationError(OffloadError):
    """A ``SRC`` or ``DST`` that names no folder, bucket or site offload can open."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Folder:
    """A local folder: ``root`` as the user wrote it (shown in output) and its real path."""

    shown: str  # with a trailing "/" unless empty
    path: str
    #: Skip symlinks that lead outside ``path`` (the server's syncs of uploads_dir).
    confined: bool = False

    def display(self, rel: str) -> str:
        return f"{self.shown}{rel}"


@dataclass(frozen=True)
class Bucket:
    """Keys under ``prefix`` in ``storage``; ``shown`` is how output names the prefix."""

    storage: Storage
    prefix: str  # "" or "a/b" (no trailing slash)
    shown: str  # "s3://bucket/a/b/"
    endpoint: str  # where the storage lives, for "same endpoint" decisions

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str | None:
        if not self.prefix:
            return key
        return key[len(self.prefix) + 1 :] if key.startswith(self.prefix + "/") else None

    def display(self, rel: str) -> str:
        return f"{self.shown}{rel}"

    @property
    def list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""


Location = Folder | Bucket


@dataclass(frozen=True)
class S3Options:
    """The command line's S3 options for ``s3://`` arguments; the rest are ``S3Config``'s.

    ``threads``: connections to the endpoint. A command runs more requests at
    once than the server's storage pool, hence its own default.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    storage_class: str | None = None
    threads: int = 32

    def config(self) -> S3Config:
        return S3Config(
            endpoint_url=self.endpoint_url,
            region=self.region,
            profile=self.profile,
            storage_class=self.storage_class,
            max_connections=self.threads,
        )


_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def is_bucket_argument(text: str) -> bool:
    return text.startswith(("s3://", "site:"))


def open_location(
    text: str,
    options: S3Options,
    settings: Settings | None,
    executor: Executor,
    *,
    whole: bool = False,
) -> Location:
    """Open one side (blocking: S3 clients read config files).

    ``whole``: a ``site:NAME`` side covers the site's whole storage, not only
    its ``prefix`` (backups).
    """
    if text.startswith("site:"):
        return _site(text[len("site:") :], settings, executor, whole=whole)
    if text.startswith("s3://"):
        try:
            _scheme, bucket, prefix = parse_storage_url(text)
        except ValueError as exc:
            raise LocationError(str(exc)) from None
        if not _BUCKET.fullmatch(bucket):
            raise LocationError(f"{text}: {bucket!r} is not a bucket name")
        if prefix and key_problem(prefix):
            raise LocationError(f"{text}: the prefix is not a safe key: {key_problem(prefix)}")
        try:
            config = options.config()
        except ValueError as exc:
            raise LocationError(f"{text}: {exc}") from None
        storage = open_storage(f"s3://{bucket}", executor=executor, config=config)
        shown = f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
        return Bucket(storage, prefix, shown, _endpoint(storage, options.endpoint_url))
    if text.startswith("file:"):
        try:
            scheme, path, _ = parse_storage_url(text)
        except ValueError as exc:
            raise LocationError(str(exc)) from None
        if scheme != "file":
            raise LocationError(f"{text!r}: use file:///abs/path")
        return Folder(text if text.endswith("/") else f"{text}/", os.path.abspath(path))
    if "://" in text:
        raise LocationError(
            f"{text!r}: use a folder path, file:///abs/path, s3://bucket/prefix or site:NAME"
        )
    shown = text.rstrip("/")
    shown = f"{shown}/" if shown else "/"
    return Folder(shown if text not in ("", ".") else "./", os.path.abspath(text))


def _site(name: str, settings: Settings | None, executor: Executor, *, whole: bool) -> Bucket:
    from offload.config.sites import open_site_storage  # the same storage options as the server

    if settings is None or name not in settings.sites:
        known = ", ".join(settings.sites) if settings and settings.sites else "none"
        raise LocationError(f"site:{name}: no such site in the configuration (sites: {known})")
    site = settings.sites[name]
    return site_bucket(site, open_site_storage(settings, site, executor), whole=whole)


def site_bucket(site: Site, storage: Storage, *, whole: bool = False) -> Bucket:
    """A site's storage as a sync side: under its ``prefix``, or all of it (``whole``)."""
    prefix = "" if whole else site.prefix.strip("/")
    base = site.storage.rstrip("/")
    shown = f"{base}/{prefix}/" if prefix else f"{base}/"
    return Bucket(storage, prefix, shown, _endpoint(storage, site.endpoint_url))


def _endpoint(storage: Storage, configured: str | None) -> str:
    """Where a storage lives, for the sync state cache's keys (no client is built)."""
    return configured or storage.endpoint

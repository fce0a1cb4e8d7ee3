"""Settings and Site: one TOML file plus ``OFFLOAD_*`` variables, validated up front.

Every setting is declared once, as a dataclass field made by ``setting()`` with
its default, help and ``Kind`` (how a value is read from TOML or from an
environment string, checked and shown). Loading, ``offload settings`` and
``check-config`` all walk those declarations, so they cannot drift apart.
Relative paths in the file resolve against the file's folder; relative paths in
the environment resolve against the current folder, where the variable was set.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offload.config.kinds import (
    ADDRESSING,
    ANY_TEXT,
    BOOL,
    CORS_ORIGINS,
    EVENT_LOOP,
    HEADER_NAME,
    HOSTNAMES,
    HTTP_URL,
    KEY_PREFIXES,
    LOG_LEVEL,
    OPTIONAL_HEADER_NAME,
    SECONDS,
    SECRET,
    STORAGE_CLASS,
    TAG_SEPARATOR,
    Kind,
    Secret,
    choice_kind,
    float_text,
    int_kind,
    parse_prefix,
    parse_seconds,
    path_kind,
    size_kind,
    storage_url_kind,
    text_kind,
)
from offload.errors import ConfigError
from offload.storage.bucketname import PROFILES, profile_for, validate

SECONDS_FLOAT = Kind("float", parse_seconds, float_text)

SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: ``OFFLOAD_*`` variables that are not settings (the CLI reads them itself).
RESERVED_ENV = frozenset({"OFFLOAD_CONFIG", "OFFLOAD_SYNC_STATE", "OFFLOAD_NO_CRT"})
#: The default of a setting that has none: leaving it out is a problem.
REQUIRED: Any = dataclasses.MISSING


def setting(default: Any, help: str, kind: Kind) -> Any:
    """Declare one setting: the dataclass field carries its help and its kind.

    pyproject.toml tells ruff (RUF009) that this makes a field, not a shared default.
    """
    return field(default=default, metadata={"help": help, "kind": kind})


# -- the declarations -----------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One CMS site: where its files live and how the origin and webhooks treat it."""

    name: str
    storage: str = setting(
        REQUIRED,
        "Bucket or folder: file:///abs/path, s3://bucket, s3://bucket/prefix or a folder path.",
        storage_url_kind(optional=False),
    )
    prefix: str = setting(
        "",
        "First part of every key (the origin's URL path), e.g. wp-content/uploads.",
        Kind("key prefix", parse_prefix),
    )
    uploads_dir: Path | None = setting(
        None,
        "The CMS's local uploads folder; webhook paths are under it.",
        path_kind(optional=True),
    )
    uploads_url: str = setting(
        "", "Public URL of uploads_dir, e.g. https://example.com/wp-content/uploads.", HTTP_URL
    )
    cdn_url: str = setting("", "CDN base URL; a file's CDN URL is cdn_url + '/' + key.", HTTP_URL)
    hostnames: tuple[str, ...] = setting(
        (),
        "Host names the origin serves this site on; '*' = any host no other site claims.",
        HOSTNAMES,
    )
    versioning: bool = setting(
        False, "Put a content-hash segment in keys and serve them as immutable.", BOOL
    )
    max_age: int = setting(86400, "Cache-Control max-age in seconds (browsers).", SECONDS)
    s_maxage: int | None = setting(
        None,
        "Cache-Control s-maxage in seconds (CDNs); unset = not sent.",
        int_kind(0, optional=True),
    )
    stale_while_revalidate: int = setting(
        86400, "Cache-Control stale-while-revalidate in seconds.", SECONDS
    )
    stale_if_error: int = setting(604800, "Cache-Control stale-if-error in seconds.", SECONDS)
    negative_ttl: int = setting(60, "Seconds a 404 answer may be cached.", SECONDS)
    cors_origins: tuple[str, ...] = setting(
        (), "Origins allowed by CORS, e.g. https://example.com; '*' for any.", CORS_ORIGINS
    )
    webhook_secret: Secret = setting(
        Secret(), "HMAC key that signs webhooks; empty = webhooks disabled.", SECRET
    )
    origin_secret: Secret = setting(
        Secret(), "Value the CDN must send in origin_secret_header; empty = not required.", SECRET
    )
    origin_secret_header: str = setting(
        "X-Origin-Secret", "Request header that carries origin_secret.", HEADER_NAME
    )
    backup: str = setting(
        "", "Storage URL that backups go to; empty = no backup.", storage_url_kind(optional=True)
    )
    endpoint_url: str = setting(
        "", "S3 endpoint of a non-AWS provider; empty = AWS or AWS_ENDPOINT_URL_S3.", HTTP_URL
    )
    region: str = setting("", "S3 region; empty = from the AWS configuration.", ANY_TEXT)
    profile: str = setting("", "AWS profile for credentials; empty = the default chain.", ANY_TEXT)
    addressing_style: str = setting(
        "auto", "S3 addressing: virtual (bucket.host), path (host/bucket) or auto.", ADDRESSING
    )
    storage_class: str = setting(
        "",
        "Class of new objects: STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR, ...;"
        " empty = the provider's default.",
        STORAGE_CLASS,
    )
    bucket_profile: str = setting(
        "auto",
        "Bucket naming rules to check the bucket against: aws, aws-directory, gcs, r2, spaces,"
        " wasabi, b2, minio; auto = from endpoint_url (no endpoint: aws).",
        choice_kind("auto", *PROFILES),
    )
    cdn_max_age: int | None = setting(
        None,
        "Send CDN-Cache-Control with this max-age (CDNs only); unset = not sent.",
        int_kind(0, optional=True),
    )
    cache_tag_header: str = setting(
        "Cache-Tag",
        "Header with purge tags (site and key folders), KeyCDN/Cloudflare style; empty = off.",
        OPTIONAL_HEADER_NAME,
    )
    cache_tag_separator: str = setting(",", "Separator of tags in cache_tag_header.", TAG_SEPARATOR)
    surrogate_key_header: str = setting(
        "Surrogate-Key",
        "Header with the same tags, Fastly style; empty = off.",
        OPTIONAL_HEADER_NAME,
    )
    surrogate_key_separator: str = setting(
        " ", "Separator of tags in surrogate_key_header.", TAG_SEPARATOR
    )
    signed_prefixes: tuple[str, ...] = setting(
        (),
        "Key prefixes served only with a valid ?expires=&sig= signature (offload sign-url).",
        KEY_PREFIXES,
    )
    signing_secret: Secret = setting(
        Secret(), "HMAC key of signed URLs; required when signed_prefixes is set.", SECRET
    )

    def needs_signature(self, key: str) -> bool:
        """Whether ``key`` lies under one of ``signed_prefixes``."""
        return any(key.startswith(prefix + "/") for prefix in self.signed_prefixes)

    def storage_options(self) -> dict[str, str]:
        """Keyword options for ``open_storage(site.storage, **options)``: the set ones."""
        options = {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "profile": self.profile,
            "addressing_style": "" if self.addressing_style == "auto" else self.addressing_style,
            "storage_class": self.storage_class,
        }
        return {name: value for name, value in options.items() if value}


@dataclass(frozen=True)
class Settings:
    """Global settings and the sites; ``source`` says where they were read from."""

    host: str = setting(
        "127.0.0.1", "Address the server listens on.", text_kind(".+", "an address")
    )
    port: int = setting(8080, "TCP port the server listens on.", int_kind(1, 65535))
    data_dir: Path = setting(
        Path("offload-data"),
        "Folder that is the bucket of the embedded default site (used with no sites).",
        path_kind(optional=False),
    )
    storage_threads: int = setting(
        16, "Size of the bounded thread pool for blocking storage calls.", int_kind(1)
    )
    storage_timeout: float = setting(
        5.0, "Seconds allowed for storage start-up and health checks.", SECONDS_FLOAT
    )
    multipart_threshold: int = setting(
        8 * 2**20, "Uploads this large or larger go multipart.", size_kind(1, 5 * 2**40)
    )
    multipart_chunksize: int = setting(
        8 * 2**20, "Part size of multipart uploads (5MiB to 5GiB).", size_kind(5 * 2**20, 5 * 2**30)
    )
    multipart_concurrency: int = setting(
        4, "Parts of one upload sent at the same time.", int_kind(1)
    )
    log_level: str = setting("info", "Least severe log level written.", LOG_LEVEL)
    access_log: bool = setting(
        False,
        "Log every request at info level; the CDN and nginx keep access logs already.",
        BOOL,
    )
    event_loop: str = setting(
        "auto",
        "Event loop of the server: uvloop (faster; auto = when installed) or asyncio.",
        EVENT_LOOP,
    )
    workers: int = setting(
        1, "Server processes sharing the port (SO_REUSEPORT); more use more cores.", int_kind(1, 64)
    )
    client_timeout: float = setting(
        60.0,
        "Seconds a client may take to accept each chunk of a response before it is dropped.",
        SECONDS_FLOAT,
    )
    meta_cache_ttl: float = setting(
        10.0, "Seconds object metadata is trusted before storage is asked again.", SECONDS_FLOAT
    )
    meta_cache_entries: int = setting(
        100_000, "Objects whose metadata the origin keeps in memory.", int_kind(0)
    )
    negative_cache_entries: int = setting(
        100_000, "Missing keys the origin remembers (for the site's negative_ttl).", int_kind(0)
    )
    body_cache_bytes: int = setting(
        256 * 2**20, "Memory for small objects' bodies, in total.", size_kind(0, 64 * 2**30)
    )
    body_cache_max_object: int = setting(
        1 * 2**20, "Largest object whose body is kept in memory.", size_kind(0, 2**30)
    )
    manifest: Path = setting(
        Path("offload-manifest.sqlite3"),
        "SQLite file recording what is offloaded (relative: to the config file's folder).",
        path_kind(optional=False),
    )
    max_upload_size: int = setting(
        1 * 2**30,
        "Largest multipart/form-data webhook body; larger ones get 413.",
        size_kind(1, 5 * 2**40),
    )
    upload_concurrency: int = setting(
        8, "Files of one webhook copied to storage at the same time.", int_kind(1, 256)
    )
    sites: dict[str, Site] = field(default_factory=dict)
    source: str = "defaults"
    #: Things worth saying once at start-up that do not stop offload.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SettingInfo:
    """One row of ``offload settings``."""

    scope: str  # "global" or "site"
    name: str
    type: str
    default: str  # spelled as in TOML; "(required)" or "(unset)" when there is none
    help: str


def _declared(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "kind" in f.metadata]


def declared_settings() -> list[SettingInfo]:
    """Every setting, globals first, in declaration order."""
    return [
        SettingInfo(
            scope,
            f.name,
            f.metadata["kind"].name,
            "(required)" if f.default is REQUIRED else f.metadata["kind"].show(f.default),
            f.metadata["help"],
        )
        for scope, cls in (("global", Settings), ("site", Site))
        for f in _declared(cls)
    ]


def describe_settings(settings: Settings) -> list[tuple[str, str]]:
    """Effective values as (dotted name, shown value) rows; secrets stay masked."""
    scopes = [("", settings)] + [(f"sites.{n}.", s) for n, s in settings.sites.items()]
    return [
        (prefix + f.name, f.metadata["kind"].show(getattr(obj, f.name)))
        for prefix, obj in scopes
        for f in _declared(type(obj))
    ]


# -- loading --------------------------------------------------------------------------

#: A value waiting to be parsed: (TOML or env reading, where to blame, base folder).
_Raw = tuple[Any, str, Path]


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _unknown(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        problem = "config file not found"
    except IsADirectoryError:
        problem = "is a folder, not a config file"
    except OSError as e:
        problem = f"cannot read the config file: {e.strerror or type(e).__name__}"
    except UnicodeDecodeError as e:
        problem = f"is not UTF-8 text (bad byte at offset {e.start})"
    except tomllib.TOMLDecodeError as e:
        problem = "invalid TOML: " + " ".join(str(e).split()).replace("(at line", "(line")
    raise ConfigError(f"{path}: {problem}")


def _read_file(
    doc: dict[str, Any], file: str, base: Path, problems: list[str]
) -> tuple[dict[str, _Raw], dict[str, dict[str, _Raw]]]:
    global_names = [f.name for f in _declared(Settings)]
    site_names = [f.name for f in _declared(Site)]
    raw: dict[str, _Raw] = {}
    sites: dict[str, dict[str, _Raw]] = {}
    for key, value in doc.items():
        if key in global_names:
            raw[key] = (value, f"{file}: {key}", base)
        elif key != "sites":
            problem = _unknown(key, [*global_names, "sites"])
            if key in site_names:
                problem = "is a site setting: it belongs in a [sites.NAME] table"
            problems.append(f"{file}: {_key(key)}: {problem}")
    tables = doc.get("sites", {})
    if not isinstance(tables, dict):
        problems.append(f"{file}: sites: must be [sites.NAME] tables")
        tables = {}
    for site, table in tables.items():
        where = f"{file}: sites.{_key(site)}"
        if not SITE_NAME.fullmatch(site):
            problems.append(f"{where}: a site name is 1-63 of a-z 0-9 - _, starting a-z or 0-9")
        elif not isinstance(table, dict):
            problems.append(f"{where}: must be a [sites.{site}] table")
        else:
            sites[site] = {}
            for key, value in table.items():
                if key in site_names:
                    sites[site][key] = (value, f"{where}.{key}", base)
                else:
                    problem = _unknown(key, site_names)
                    if key in global_names:
                        problem = "is a global setting: it belongs above the first [sites.*] table"
                    problems.append(f"{where}.{_key(key)}: {problem}")
    return raw, sites


_ENV_FORM = "OFFLOAD_SITES__<SITE>__<NAME>"


def _env_site(name: str) -> str:
    return name.upper().replace("-", "_")


def _read_env(
    environ: Mapping[str, str],
    cwd: Path,
    raw: dict[str, _Raw],
    sites: dict[str, dict[str, _Raw]],
    problems: list[str],
) -> bool:
    by_var = {f"OFFLOAD_{f.name.upper()}": f for f in _declared(Settings)}
    site_fields = {f.name.upper(): f for f in _declared(Site)}
    by_env_site: dict[str, list[str]] = {}
    for site in sites:
        by_env_site.setdefault(_env_site(site), []).append(site)
    used = False
    for var in sorted(v for v in environ if v.startswith("OFFLOAD_") and v not in RESERVED_ENV):
        where, parts = f"environment: {var}", var.split("__")
        env_site, name = (_env_site(parts[1]), parts[2]) if len(parts) == 3 else ("", "")
        matches = by_env_site.get(env_site, [])
        if var in by_var:
            f, into = by_var[var], raw
        elif var.startswith("OFFLOAD_SITE") and not (parts[0] == "OFFLOAD_SITES" and env_site):
            problems.append(f"{where}: unknown setting (site settings are {_ENV_FORM})")
            continue
        elif not var.startswith("OFFLOAD_SITES__"):
            problem = _unknown(var, list(by_var))
            if var[8:] in site_fields:
                problem = f"is a site setting: use OFFLOAD_SITES__<SITE>__{var[8:]}"
            problems.append(f"{where}: {problem}")
            continue
        elif name not in site_fields:
            problem = _unknown(var, [f"OFFLOAD_SITES__{env_site}__{n}" for n in site_fields])
            if f"OFFLOAD_{name}" in by_var:
                problem = f"is a global setting: use OFFLOAD_{name}"
            problems.append(f"{where}: {problem}")
            continue
        elif len(matches) > 1:
            problems.append(f"{where}: matches sites {' and '.join(map(repr, matches))}")
            continue
        elif not matches and not SITE_NAME.fullmatch(env_site.lower()):
            problems.append(f"{where}: {env_site.lower()!r} is not a valid site name")
            continue
        else:
            site = matches[0] if matches else env_site.lower()
            by_env_site[env_site] = [site]
            f, into = site_fields[name], sites.setdefault(site, {})
        into[f.name] = (f.metadata["kind"].from_text(environ[var]), where, cwd)
        used = True
    return used


def _parse(
    cls: type,
    raw: dict[str, _Raw],
    blame: Callable[[str], str],
    base: Path,
    problems: list[str],
    note: str = "",
) -> dict[str, Any]:
    values = {}
    for f in _declared(cls):
        if f.name in raw:
            value, where, folder = raw[f.name]
        elif f.default is REQUIRED:
            problems.append(f"{blame(f.name)}: required setting is missing{note}")
            continue
        else:
            value, where, folder = f.default, blame(f.name), base
        try:
            values[f.name] = f.metadata["kind"].parse(value, folder)
        except ValueError as e:
            problems.append(f"{where}: {e}")
    return values


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read ``path`` (None: no file), apply ``OFFLOAD_*`` overrides, validate it all.

    Raises ConfigError listing every problem, one line each (a file that cannot be
    read or parsed is the only problem reported). With no sites the result has
    none: the caller decides on the embedded default.
    """
    file = str(path) if path is not None else "environment"
    base = Path(path).absolute().parent if path is not None else Path.cwd()
    problems: list[str] = []
    warnings: list[str] = []
    raw, raw_sites = _read_file(_read_toml(path) if path is not None else {}, file, base, problems)
    in_file = set(raw_sites)
    env_used = _read_env(environ, Path.cwd(), raw, raw_sites, problems)
    values = _parse(Settings, raw, lambda key: f"{file}: {key}", base, problems)
    sites: dict[str, Site] = {}
    claimed: dict[str, str] = {}
    for name, site_raw in raw_sites.items():

        def blame(key: str, name: str = name) -> str:
            if name in in_file:
                return f"{file}: sites.{name}.{key}"
            return f"environment: OFFLOAD_SITES__{_env_site(name)}__{key.upper()}"

        note = "" if name in in_file else f" (site {name!r} comes only from the environment)"
        site_values = _parse(Site, site_raw, blame, base, problems, note)
        for host in site_values.get("hostnames", ()):
            if host in claimed:
                where = site_raw["hostnames"][1]
                problems.append(
                    f"{where}: {host!r} is claimed by sites {claimed[host]!r} and {name!r}"
                )
            claimed.setdefault(host, name)
        if site_values.get("signed_prefixes") and not site_values.get("signing_secret"):
            problems.append(f"{blame('signing_secret')}: required when signed_prefixes is set")
        if "storage" in site_values:
            sites[name] = site = Site(name=name, **site_values)
            for setting_name in ("storage", "backup"):
                where = site_raw[setting_name][1] if setting_name in site_raw else ""
                _check_bucket(site, setting_name, where, problems, warnings)
    if problems:
        raise ConfigError(problems)
    source = [str(path)] if path is not None else []
    return Settings(
        **values,
        sites=sites,
        source=" + ".join(source + ["environment"] * env_used) or "defaults",
        warnings=tuple(warnings),
    )


def _check_bucket(
    site: Site, setting_name: str, where: str, problems: list[str], warnings: list[str]
) -> None:
    """Refuse a bucket its provider would refuse; warn of a dotted one used path-style.

    A dotted name breaks virtual-hosted HTTPS (the wildcard certificate covers
    one label), so it passes only with ``addressing_style = "path"``.
    """
    url = getattr(site, setting_name)
    if not url.startswith("s3://"):
        return
    bucket = url[len("s3://") :].split("/", 1)[0]
    profile = site.bucket_profile
    if profile == "auto":
        profile = profile_for(site.endpoint_url, bucket)
    path_style = site.addressing_style == "path"
    for violation in validate(bucket, profile, allow_dots=path_style):
        if violation.severity == "error":
            problems.append(
                f"{where}: bucket {bucket!r} breaks the {profile} rule {violation.rule}: "
                f"{violation.message}"
            )
        elif violation.rule == "dot_breaks_wildcard_tls":
            warnings.append(
                f"{where}: bucket {bucket!r} has dots; it works only path-style, as set "
                "(virtual-hosted HTTPS would fail the wildcard certificate)"
            )
        else:
            warnings.append(f"{where}: bucket {bucket!r}: {violation.message}")

"""Settings and Site: every setting declared once, with its default, help and kind.

Each setting is a dataclass field made by ``setting()`` with its default, help
and ``Kind`` (how a value is read from TOML or from an environment string,
checked and shown). Loading (``loading.py``), ``offload settings`` and
``check-config`` all walk these declarations, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import re
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
    IP_NETWORKS,
    KEY_PREFIXES,
    LOG_LEVEL,
    MANIFEST,
    OPTIONAL_HEADER_NAME,
    SECONDS,
    SECRET,
    STORAGE_CLASS,
    TAG_SEPARATOR,
    DatabaseUrl,
    Kind,
    Secret,
    choice_kind,
    fail,
    float_text,
    int_kind,
    is_int,
    parse_prefix,
    parse_seconds,
    path_kind,
    size_kind,
    storage_url_kind,
    text_kind,
)
from offload.config.transform_options import MAX_DIMENSION, preset_problems
from offload.keys import key_problem
from offload.storage.bucketname import PROFILES
from offload.storage.s3config import DEFAULTS as S3_DEFAULTS
from offload.storage.s3config import MAX_PART_SIZE, MIN_PART_SIZE

SECONDS_FLOAT = Kind("float", parse_seconds, float_text)
_PRESET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def parse_presets(value: Any, base: Path) -> tuple[tuple[str, str], ...]:
    """``{name = "w=150,h=150,fit=cover"}`` -> sorted (name, options) pairs (hashable, as a
    frozen Site must be). Each preset is checked here, as the transform route would read
    it, so a bad one stops the config instead of being a 400 on every request."""
    if isinstance(value, tuple):  # the default, or pairs already parsed
        value = dict(value)
    if isinstance(value, bool):  # `transforms = true`: the switch is WordPress's, not ours
        raise ValueError(
            f'must be a table of presets ([sites.NAME.transforms] thumb = "w=150"), got'
            f" {str(value).lower()}: transforms are on for every site with a transform_prefix;"
            " for WordPress srcsets, define OFFLOAD_TRANSFORMS as true in wp-config.php"
        )
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        fail("a table of preset names to option strings", value)
    problems = dict(preset_problems(value.items()))
    for name in value:
        if name not in problems and not _PRESET_NAME.fullmatch(name):
            problems[name] = "a preset name is letters, digits, '_' and '-', starting with a letter"
    if problems:
        raise ValueError(
            "; ".join(f"preset {name!r}: {problem}" for name, problem in sorted(problems.items()))
        )
    return tuple(sorted(value.items()))


def presets_from_text(text: str) -> dict[str, str]:
    """``thumb:w=150,h=150;card:w=600`` (environment variables)."""
    pairs = (part.partition(":") for part in text.split(";") if part.strip())
    return {name.strip(): options.strip() for name, _, options in pairs}


def show_presets(value: Any) -> str:
    return "{" + ", ".join(f"{name} = {json.dumps(text)}" for name, text in value) + "}"


def parse_widths(value: Any, base: Path) -> tuple[int, ...]:
    """Bounded by the transform route's own cap on ``w`` (one constant), so a listed
    width is one the route serves."""
    if not isinstance(value, list | tuple) or not all(
        is_int(v) and 1 <= v <= MAX_DIMENSION for v in value
    ):
        fail(f"a list of widths in pixels from 1 to {MAX_DIMENSION}", value)
    return tuple(sorted(set(value)))


PRESETS = Kind("table", parse_presets, presets_from_text, show_presets)
WIDTHS = Kind(
    "list of int",
    parse_widths,
    lambda text: [int(p) if p.strip().isdigit() else p for p in text.split(",") if p.strip()],
)


def parse_api_id(value: Any, base: Path) -> str:
    """A vendor's zone, service or distribution id: letters, digits, '-' and '_' (or a number)."""
    if is_int(value) and value >= 0:
        return str(value)
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{0,128}", value):
        fail("an id of letters, digits, '-' and '_' (or empty)", value)
    return value


API_ID = Kind("id", parse_api_id)


def parse_asset_collections(value: Any, base: Path) -> tuple[tuple[str, str], ...]:
    """``{coll = "folder"}``: each Specify collection's folder under the site's prefix."""
    if isinstance(value, tuple):  # the default, or a Site made in code
        value = dict(value)
    if not isinstance(value, dict):
        fail('a table of collection = "folder"', value)
    pairs: dict[str, str] = {}
    for coll, folder in value.items():
        # A name the request side refuses (asset_server.parse_asset) could never be used.
        if not isinstance(coll, str) or "/" in coll or key_problem(coll):
            fail("collection names without '/', '..', '\\' or control characters", coll)
        if not isinstance(folder, str):
            fail('a folder such as "botany", or "" for the prefix itself', folder)
        pairs[coll] = parse_prefix(folder, base)
    return tuple(pairs.items())


def _collections_from_text(text: str) -> dict[str, str]:
    """``coll=folder,coll2=folder2`` from an environment variable."""
    pairs = (part.partition("=") for part in text.split(",") if part.strip())
    return {coll.strip(): folder.strip() for coll, _, folder in pairs}


def _show_collections(value: Any) -> str:
    return "{" + ", ".join(f"{json.dumps(c)} = {json.dumps(f)}" for c, f in value) + "}"


ASSET_COLLECTIONS = Kind(
    "table", parse_asset_collections, _collections_from_text, _show_collections
)


def asset_server_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) for what an asset-server site lacks to be usable.

    Without ``asset_server_key`` every token check fails, so Specify can neither
    upload nor delete; without host names no request reaches the site (the
    protocol's paths find their site by Host). A collection folder inside the
    variants folder would hold files that offload deletes as variants when an
    original of a matching key goes.
    """
    problems = []
    variants = values.get("transform_variants_prefix")
    for coll, folder in values.get("asset_collections", ()):
        if variants and (folder == variants or folder.startswith(variants + "/")):
            problems.append(
                (
                    "asset_collections",
                    f"collection {coll!r}: the folder {folder!r} is inside"
                    f" transform_variants_prefix ({variants!r}), where offload deletes what it"
                    " takes for variants",
                )
            )
    if not values.get("asset_server"):
        return problems
    when = "required when asset_server = true"
    if not values.get("asset_server_key"):
        problems.append(
            (
                "asset_server_key",
                f"{when}: Specify's KEY, which signs every upload, deletion and testkey",
            )
        )
    if not values.get("hostnames"):
        problems.append(
            (
                "hostnames",
                f"{when}: the asset server answers only on its site's host names (or '*')",
            )
        )
    return problems


#: The purge providers; "none" sends no purge.
PURGE_PROVIDERS = ("none", "cloudflare", "bunny", "keycdn", "fastly", "cloudfront", "nginx")
#: The site settings each provider cannot work without (checked when the config loads).
PURGE_REQUIRES: dict[str, tuple[str, ...]] = {
    "none": (),
    "cloudflare": ("cloudflare_zone_id", "cloudflare_api_token"),
    "bunny": ("bunny_pull_zone_id", "bunny_access_key"),
    "keycdn": ("keycdn_zone_id", "keycdn_api_key"),
    "fastly": ("fastly_service_id", "fastly_api_token"),
    "cloudfront": ("cloudfront_distribution_id",),
    "nginx": ("nginx_purge_url",),
}
#: Providers that purge public URLs, which need cdn_url or a host name to make them.
PURGE_BY_PUBLIC_URL = frozenset({"cloudflare", "bunny", "keycdn", "fastly", "cloudfront"})

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
    webhook_signature: str = setting(
        "v2",
        "Webhook signature scheme: v2 (binds method, path, query and body hash; checked"
        " before the body is read) or v1 (timestamp.body; deprecated, for old plugins).",
        choice_kind("v2", "v1"),
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
    purge: str = setting(
        "none",
        "CDN purge when an object changes or goes: none, cloudflare, bunny, keycdn, fastly,"
        " cloudfront or nginx; each needs its own settings below.",
        choice_kind(*PURGE_PROVIDERS),
    )
    cloudflare_zone_id: str = setting("", "Cloudflare zone id (purge = cloudflare).", API_ID)
    cloudflare_api_token: Secret = setting(
        Secret(), "Cloudflare API token with the Cache Purge permission.", SECRET
    )
    bunny_pull_zone_id: str = setting("", "Bunny pull zone id (purge = bunny).", API_ID)
    bunny_access_key: Secret = setting(Secret(), "Bunny account API key (AccessKey).", SECRET)
    keycdn_zone_id: str = setting("", "KeyCDN zone id (purge = keycdn).", API_ID)
    keycdn_api_key: Secret = setting(Secret(), "KeyCDN API key.", SECRET)
    fastly_service_id: str = setting("", "Fastly service id (purge = fastly).", API_ID)
    fastly_api_token: Secret = setting(
        Secret(), "Fastly API token with the purge_select (and purge_all) scope.", SECRET
    )
    cloudfront_distribution_id: str = setting(
        "",
        "CloudFront distribution id (purge = cloudfront); credentials: the boto3 chain.",
        API_ID,
    )
    nginx_purge_url: str = setting(
        "", "Base URL of the nginx front's purge location (purge = nginx).", HTTP_URL
    )
    purge_api_url: str = setting(
        "",
        "Base URL of the purge API instead of the vendor's (a proxy, a regional endpoint,"
        " a test server); empty = the vendor's.",
        HTTP_URL,
    )
    # -- Specify web-asset-server protocol (offload/images/asset_server.py) --------------
    asset_server: bool = setting(
        False,
        "Answer Specify's web-asset-server protocol (/fileget, /fileupload, ...) on this"
        " site's host names.",
        BOOL,
    )
    asset_server_key: Secret = setting(
        Secret(),
        "Specify's asset server KEY: signs its tokens; required when asset_server = true.",
        SECRET,
    )
    asset_time_tolerance: int = setting(
        150,
        "Seconds an asset token's timestamp may differ from this host's clock.",
        int_kind(1),
    )
    asset_require_key_for_get: bool = setting(
        False, "Require a token for /fileget and /getmetadata too (REQUIRE_KEY_FOR_GET).", BOOL
    )
    asset_collections: tuple[tuple[str, str], ...] = setting(
        (),
        'Specify collection -> folder under the prefix, e.g. {KUFish = "ichthyology"};'
        " a collection not listed lives in a folder of its own name.",
        ASSET_COLLECTIONS,
    )

    # -- images on demand (offload.images, offload.server.transforms) --------------
    transform_prefix: str = setting(
        "_img",
        "First path segment of transform URLs (/_img/{options}/{key}); empty = transforms off.",
        text_kind(
            r"(?:[A-Za-z0-9_.~-]+)?", "a path segment of letters, digits, '_', '.', '~', '-'"
        ),
    )
    transforms: tuple[tuple[str, str], ...] = setting(
        (),
        'Named presets served unsigned, e.g. [sites.X.transforms] thumb = "w=150,h=150,fit=cover".',
        PRESETS,
    )
    transform_widths: tuple[int, ...] = setting(
        (), "Widths served unsigned as /_img/w=WIDTH/{key} (width alone).", WIDTHS
    )
    transform_variants_prefix: str = setting(
        "_variants",
        "Folder under the site's prefix where rendered variants are stored.",
        text_kind(r"[A-Za-z0-9_.~-]+", "a folder name of letters, digits, '_', '.', '~', '-'"),
    )
    transform_max_pixels: int = setting(
        100_000_000,
        "Largest input image in pixels (all frames); larger ones get 422 before decoding.",
        int_kind(1),
    )
    transform_max_output: int = setting(
        20 * 10**6, "Largest rendered variant in bytes; larger ones get 422.", size_kind(1, 2**31)
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
    # The storage defaults are S3Config's: one declaration for the settings,
    # the command line and the storage itself.
    storage_threads: int = setting(
        S3_DEFAULTS.max_connections,
        "Size of the bounded thread pool for blocking storage calls.",
        int_kind(1),
    )
    storage_timeout: float = setting(
        S3_DEFAULTS.connect_timeout,
        "Seconds allowed to connect to storage, and for the start-up check.",
        SECONDS_FLOAT,
    )
    storage_read_timeout: float = setting(
        S3_DEFAULTS.read_timeout,
        "Seconds S3 may take to send any part of an answer before the try fails.",
        SECONDS_FLOAT,
    )
    storage_attempts: int = setting(
        S3_DEFAULTS.max_attempts, "Tries of each S3 request, the first included.", int_kind(1, 10)
    )
    storage_deadline: float = setting(
        5.0,
        "Seconds the origin waits for one storage call before it answers stale or 503.",
        SECONDS_FLOAT,
    )
    multipart_threshold: int = setting(
        S3_DEFAULTS.multipart_threshold,
        "Uploads larger than this go multipart.",
        size_kind(1, 5 * 2**40),
    )
    multipart_chunksize: int = setting(
        S3_DEFAULTS.multipart_chunksize,
        "Part size of multipart uploads (5MiB to 5GiB).",
        size_kind(MIN_PART_SIZE, MAX_PART_SIZE),
    )
    multipart_concurrency: int = setting(
        S3_DEFAULTS.multipart_concurrency, "Parts of one upload sent at the same time.", int_kind(1)
    )
    log_level: str = setting("info", "Least severe log level written.", LOG_LEVEL)
    log_format: str = setting(
        "text",
        "How log lines are written: text, or json (one object per line, for log shippers).",
        choice_kind("text", "json"),
    )
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
    keepalive_timeout: float = setting(
        75.0,
        "Seconds an idle keep-alive connection stays open: a minute or so, as nginx's 75; "
        "longer than the upstream keepalive_timeout of nginx/offload.conf (60).",
        SECONDS_FLOAT,
    )
    header_timeout: float = setting(
        10.0,
        "Seconds a client has to send a request's headers (from connecting, for the first).",
        SECONDS_FLOAT,
    )
    max_client_connections: int = setting(
        4096,
        "Open client connections per worker (kept under the open-files limit); "
        "at the cap idle ones close first, else new ones are refused.",
        int_kind(1),
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
    manifest: Path | DatabaseUrl = setting(
        Path("offload-manifest.sqlite3"),
        "Where offload records what is offloaded, its purge outbox and its sync runs: a SQLite"
        " file (relative: to the config file's folder), or a postgresql://user@host/db URL that"
        " several hosts share (the password in the URL, or from PGPASSWORD or ~/.pgpass).",
        MANIFEST,
    )
    max_upload_size: int = setting(
        1 * 2**30,
        "Largest multipart/form-data webhook body; larger ones get 413.",
        size_kind(1, 5 * 2**40),
    )
    webhook_body_timeout: float = setting(
        60.0,
        "Seconds a signed webhook body may take to arrive, plus one per MiB of it; slower: 408.",
        SECONDS_FLOAT,
    )
    admin_token: Secret = setting(
        Secret(),
        "Bearer token for operator pages: /_offload/metrics and the detail of /_offload/health.",
        SECRET,
    )
    admin_allow: tuple[str, ...] = setting(
        (),
        "Client addresses (IPs or networks) that see operator pages without the admin_token;"
        " behind a proxy every request comes from the proxy's address.",
        IP_NETWORKS,
    )
    webhook_bodies_per_peer: int = setting(
        16,
        "Webhook bodies one client address may send at once; more get 503 (behind a proxy"
        " every request shares its address).",
        int_kind(1),
    )
    upload_concurrency: int = setting(
        8, "Files of one webhook copied to storage at the same time.", int_kind(1, 256)
    )
    purge_give_up_after: float = setting(
        86400.0,
        "Seconds a CDN purge keeps being retried before it is given up (logged and counted).",
        SECONDS_FLOAT,
    )
    purge_wait: float = setting(
        5.0,
        "Seconds a deletion webhook waits for its purge to be sent before it answers.",
        SECONDS_FLOAT,
    )
    purge_timeout: float = setting(
        15.0, "Seconds allowed for each request to a CDN's purge API.", SECONDS_FLOAT
    )
    # -- images on demand ----------------------------------------------------------
    transform_concurrency: int = setting(
        2,
        "Images rendered at once per worker process; more wait briefly, then get 503.",
        int_kind(1, 256),
    )
    sites: dict[str, Site] = field(default_factory=dict)
    source: str = "defaults"
    #: Things worth saying once at start-up that do not stop offload.
    warnings: tuple[str, ...] = ()


def purge_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) for each setting a site's ``purge`` provider needs and lacks.

    A CDN's purges name public URLs: ``cdn_url + "/" + key``, or with no
    ``cdn_url`` the first of ``hostnames`` (a CDN in front of the origin's host).
    """
    purge = values.get("purge", "none")
    when = f"required when purge = {purge!r}"
    problems = [(name, when) for name in PURGE_REQUIRES.get(purge, ()) if not values.get(name)]
    hosts = [host for host in values.get("hostnames", ()) if host != "*"]
    if purge in PURGE_BY_PUBLIC_URL and not (values.get("cdn_url") or hosts):
        problems.insert(0, ("cdn_url", f"{when} (or a host name in hostnames)"))
    return problems


@dataclass(frozen=True)
class SettingInfo:
    """One row of ``offload settings``."""

    scope: str  # "global" or "site"
    name: str
    type: str
    default: str  # spelled as in TOML; "(required)" or "(unset)" when there is none
    help: str


def declared_fields(cls: type) -> list[dataclasses.Field[Any]]:
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
        for f in declared_fields(cls)
    ]


def describe_settings(settings: Settings) -> list[tuple[str, str]]:
    """Effective values as (dotted name, shown value) rows; secrets stay masked."""
    scopes = [("", settings)] + [(f"sites.{n}.", s) for n, s in settings.sites.items()]
    return [
        (prefix + f.name, f.metadata["kind"].show(getattr(obj, f.name)))
        for prefix, obj in scopes
        for f in declared_fields(type(obj))
    ]

"""Settings and sites: TOML + OFFLOAD_* variables, every problem one line."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest

from offload.config.kinds import Secret, human_size
from offload.config.loading import load_settings
from offload.config.settings import (
    RESERVED_ENV,
    Settings,
    Site,
    declared_settings,
    describe_settings,
)
from offload.errors import ConfigError

MiB = 2**20
GLOBAL_NAMES = {f.name for f in dataclasses.fields(Settings)} - {"sites", "source", "warnings"}
ENV_FORM = "OFFLOAD_SITES__<SITE>__<NAME>"
LONG_SECRET = "wh-7f3a9c1e5b2d8a4f6e0c"  # 23 characters: shown as ****6e0c


def write(folder: Path, text: str, name: str = "offload.toml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return info.value.problems


def with_setting(tmp_path: Path, name: str, literal: str) -> tuple[Path, str]:
    """A config setting ``name = literal`` (globally or in site ``s``) and its dotted name."""
    if name in GLOBAL_NAMES:
        return write(
            tmp_path, f'{name} = {literal}\n[sites.s]\nstorage = "s3://media-bucket"\n'
        ), name
    storage = "" if name == "storage" else 'storage = "s3://media-bucket"\n'
    return write(tmp_path, f"[sites.s]\n{storage}{name} = {literal}\n"), f"sites.s.{name}"


def value_of(settings: Settings, dotted: str) -> Any:
    if dotted.startswith("sites."):
        _, site, name = dotted.split(".")
        return getattr(settings.sites[site], name)
    return getattr(settings, dotted)


FULL_EXAMPLE = f"""\
    host = "::"
    port = 9000
    data_dir = "/var/lib/offload"
    storage_threads = 32
    storage_timeout = 2.5
    multipart_threshold = "16MiB"
    multipart_chunksize = "5 MiB"
    multipart_concurrency = 8
    log_level = "warning"

    [sites.blog]
    storage = "s3://media-bucket/tenant-a/"
    prefix = "/wp-content/uploads/"
    uploads_dir = "/var/www/html/wp-content/uploads"
    uploads_url = "https://example.com/wp-content/uploads/"
    cdn_url = "https://cdn.example.com/"
    hostnames = ["origin.example.com", "Origin2.Example.com."]
    versioning = true
    max_age = 3600
    s_maxage = 86400
    stale_while_revalidate = 60
    stale_if_error = 3600
    negative_ttl = 30
    cors_origins = ["https://example.com"]
    webhook_secret = "{LONG_SECRET}"
    origin_secret = "pull-zone-key"
    origin_secret_header = "X-Pull"
    backup = "s3://media-backup/blog"
    endpoint_url = "https://s3.eu-central-1.wasabisys.com"
    region = "eu-central-1"
    profile = "media"
    addressing_style = "path"
    storage_class = "STANDARD_IA"

    [sites.docs]
    storage = "file:///srv/docs-media"
"""


# -- loading and defaults -------------------------------------------------------------


def test_a_full_example_loads_every_setting_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_EXAMPLE)
    settings = load_settings(path, {})

    assert (settings.host, settings.port, settings.data_dir) == (
        "::",
        9000,
        Path("/var/lib/offload"),
    )
    assert (settings.storage_threads, settings.storage_timeout) == (32, 2.5)
    assert (settings.multipart_threshold, settings.multipart_chunksize) == (16 * MiB, 5 * MiB)
    assert (settings.multipart_concurrency, settings.log_level) == (8, "warning")
    assert list(settings.sites) == ["blog", "docs"]
    blog = settings.sites["blog"]
    assert blog == Site(
        name="blog",
        storage="s3://media-bucket/tenant-a",
        prefix="wp-content/uploads",
        uploads_dir=Path("/var/www/html/wp-content/uploads"),
        uploads_url="https://example.com/wp-content/uploads",
        cdn_url="https://cdn.example.com",
        hostnames=("origin.example.com", "origin2.example.com"),
        versioning=True,
        max_age=3600,
        s_maxage=86400,
        stale_while_revalidate=60,
        stale_if_error=3600,
        negative_ttl=30,
        cors_origins=("https://example.com",),
        webhook_secret=Secret(LONG_SECRET),
        origin_secret=Secret("pull-zone-key"),
        origin_secret_header="X-Pull",
        backup="s3://media-backup/blog",
        endpoint_url="https://s3.eu-central-1.wasabisys.com",
        region="eu-central-1",
        profile="media",
        addressing_style="path",
        storage_class="STANDARD_IA",
    )
    assert settings.sites["docs"] == Site(name="docs", storage="file:///srv/docs-media")
    assert settings.source == str(path)


def test_no_file_and_no_environment_gives_the_defaults_and_no_sites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, {"HOME": "/root", "PATH": "/bin"})

    assert settings.sites == {}
    assert settings.source == "defaults"
    assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 8080, "info")
    assert settings.data_dir == tmp_path / "offload-data"
    assert (settings.storage_threads, settings.storage_timeout) == (16, 5.0)
    assert settings.multipart_threshold == settings.multipart_chunksize == 8 * MiB
    assert settings.multipart_concurrency == 4


def test_a_site_gets_the_declared_defaults(tmp_path: Path) -> None:
    site = load_settings(write(tmp_path, '[sites.s]\nstorage = "s3://media-bucket"\n'), {}).sites[
        "s"
    ]

    assert site == Site(name="s", storage="s3://media-bucket")
    assert (site.prefix, site.uploads_dir, site.uploads_url, site.cdn_url) == ("", None, "", "")
    assert (site.hostnames, site.cors_origins, site.versioning) == ((), (), False)
    assert (site.max_age, site.s_maxage, site.stale_while_revalidate) == (86400, None, 86400)
    assert (site.stale_if_error, site.negative_ttl) == (604800, 60)
    assert not site.webhook_secret
    assert not site.origin_secret
    assert (site.origin_secret_header, site.backup, site.addressing_style) == (
        "X-Origin-Secret",
        "",
        "auto",
    )
    assert (site.endpoint_url, site.region, site.profile, site.storage_class) == ("", "", "", "")


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[sites.s]\nstorage = "s3://media-bucket"\n'), {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sites["s"].cdn_url = "https://x"  # type: ignore[misc]


# -- each kind: good and bad values ---------------------------------------------------

GOOD_VALUES = [
    ("host", '"10.0.0.5"', "10.0.0.5"),
    ("port", "1", 1),
    ("port", "65535", 65535),
    ("storage_threads", "1", 1),
    ("storage_timeout", "0.25", 0.25),
    ("storage_timeout", "2", 2.0),
    ("multipart_threshold", "1", 1),
    ("multipart_threshold", '"8MiB"', 8 * MiB),
    ("multipart_chunksize", '"5 MiB"', 5 * MiB),
    ("multipart_chunksize", '"5GiB"', 5 * 2**30),
    ("multipart_concurrency", "10", 10),
    ("log_level", '"DEBUG"', "debug"),
    ("storage", '"s3://bucket"', "s3://bucket"),
    ("storage", '"file:///srv/media/"', "file:///srv/media"),
    ("prefix", '"/wp-content/uploads/"', "wp-content/uploads"),
    ("prefix", '"media"', "media"),
    ("uploads_dir", '"/var/www/uploads"', Path("/var/www/uploads")),
    ("uploads_dir", '""', None),
    ("uploads_url", '"http://localhost:8000/uploads/"', "http://localhost:8000/uploads"),
    ("cdn_url", '"https://cdn.example.com/"', "https://cdn.example.com"),
    ("cdn_url", '""', ""),
    (
        "hostnames",
        '["Media.Example.com.", "media.example.com", "localhost"]',
        ("media.example.com", "localhost"),
    ),
    ("hostnames", "[]", ()),
    ("versioning", "true", True),
    ("max_age", "0", 0),
    ("s_maxage", "0", 0),
    ("s_maxage", "3600", 3600),
    ("negative_ttl", "5", 5),
    (
        "cors_origins",
        '["https://example.com/", "*", "http://localhost:3000"]',
        ("https://example.com", "*", "http://localhost:3000"),
    ),
    ("webhook_secret", '"s3cret"', Secret("s3cret")),
    ("origin_secret_header", '"CDN-Token"', "CDN-Token"),
    ("backup", '"s3://backups/blog/"', "s3://backups/blog"),
    ("backup", '""', ""),
    (
        "endpoint_url",
        '"https://s3.us-west-004.backblazeb2.com/"',
        "https://s3.us-west-004.backblazeb2.com",
    ),
    ("region", '"auto"', "auto"),
    ("profile", '"media"', "media"),
    ("addressing_style", '"Virtual"', "virtual"),
    ("storage_class", '"intelligent_tiering"', "INTELLIGENT_TIERING"),
    ("storage_class", '"GLACIER_IR"', "GLACIER_IR"),
]


@pytest.mark.parametrize(("name", "literal", "expected"), GOOD_VALUES)
def test_a_good_value_is_read_and_normalised(
    tmp_path: Path, name: str, literal: str, expected: Any
) -> None:
    path, dotted = with_setting(tmp_path, name, literal)
    assert value_of(load_settings(path, {}), dotted) == expected


BAD_VALUES = [
    ("port", "0", "must be an integer from 1 to 65535, got 0"),
    ("port", "65536", "must be an integer from 1 to 65535, got 65536"),
    ("port", '"8080"', "must be an integer from 1 to 65535, got '8080'"),
    ("port", "true", "must be an integer from 1 to 65535, got true"),
    ("host", '""', "must be an address, got ''"),
    ("data_dir", '""', "must be a non-empty path, got ''"),
    ("storage_threads", "0", "must be an integer >= 1, got 0"),
    ("storage_timeout", "0", "must be a number of seconds > 0, got 0"),
    ("storage_timeout", "nan", "must be a number of seconds > 0, got nan"),
    ("storage_timeout", "false", "must be a number of seconds > 0, got false"),
    (
        "multipart_threshold",
        '"8M"',
        "must be a byte size from 1 to 5TiB like 8MiB or 5 MB, got '8M'",
    ),
    ("multipart_threshold", "0", "must be a byte size from 1 to 5TiB like 8MiB or 5 MB, got 0"),
    (
        "multipart_chunksize",
        '"4MiB"',
        "must be a byte size from 5MiB to 5GiB like 8MiB or 5 MB, got '4MiB'",
    ),
    (
        "multipart_chunksize",
        '"5 MB"',
        "must be a byte size from 5MiB to 5GiB like 8MiB or 5 MB, got '5 MB'",
    ),
    ("multipart_concurrency", "1.5", "must be an integer >= 1, got 1.5"),
    ("log_level", '"verbose"', "must be one of debug, info, warning, error, got 'verbose'"),
    ("cdn_url", '"ftp://x"', "must be an http(s) URL, got 'ftp://x'"),
    ("cdn_url", '"cdn.example.com"', "must be an http(s) URL, got 'cdn.example.com'"),
    (
        "cdn_url",
        '"https://cdn.example.com/?v=2"',
        "must be an http(s) URL without a query or fragment, got 'https://cdn.example.com/?v=2'",
    ),
    (
        "uploads_url",
        '"https://example.com:99999/"',
        "must be an http(s) URL, got 'https://example.com:99999/'",
    ),
    ("endpoint_url", "1", "must be an http(s) URL, got 1"),
    ("prefix", '"a/../b"', "must be a safe key prefix (the key has a '..' segment), got 'a/../b'"),
    (
        "prefix",
        '"a//b"',
        "must be a safe key prefix (the key has an empty segment"
        " (a leading, trailing or doubled '/')), got 'a//b'",
    ),
    ("hostnames", '"example.com"', "must be a list of strings, got 'example.com'"),
    ("hostnames", "[1]", "must be a list of strings, got [1]"),
    (
        "hostnames",
        '["https://example.com"]',
        "must be a list of host names (no scheme or port), got 'https://example.com'",
    ),
    (
        "hostnames",
        '["example.com:8080"]',
        "must be a list of host names (no scheme or port), got 'example.com:8080'",
    ),
    ("versioning", '"yes"', "must be true or false, got 'yes'"),
    ("versioning", "1", "must be true or false, got 1"),
    ("max_age", "-1", "must be an integer >= 0, got -1"),
    ("max_age", "true", "must be an integer >= 0, got true"),
    ("s_maxage", '"never"', "must be an integer >= 0 (or unset), got 'never'"),
    (
        "cors_origins",
        '["https://example.com/app"]',
        "must be a list of '*' or http(s) origins (no path), got 'https://example.com/app'",
    ),
    ("origin_secret_header", '"X Origin"', "must be an HTTP header name, got 'X Origin'"),
    ("addressing_style", '"dns"', "must be one of auto, virtual, path, got 'dns'"),
    (
        "storage_class",
        '"standard-ia"',
        "must be a storage class like STANDARD_IA, got 'standard-ia'",
    ),
    ("region", "1", "must be a string, got 1"),
]


@pytest.mark.parametrize(("name", "literal", "message"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_file_the_key_and_the_value(
    tmp_path: Path, name: str, literal: str, message: str
) -> None:
    path, dotted = with_setting(tmp_path, name, literal)
    assert problems_of(path) == [f"{path}: {dotted}: {message}"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8MiB", 8 * MiB),
        ("8 MiB", 8 * MiB),
        ("8mib", 8 * MiB),
        ("5 MB", 5_000_000),
        ("512KiB", 512 * 1024),
        ("512 KB", 512_000),
        ("1GB", 10**9),
        ("1 GiB", 2**30),
        ("1.5MiB", 3 * MiB // 2),
        ("1000", 1000),
        ("1000 B", 1000),
    ],
)
def test_byte_sizes_take_decimal_and_binary_units(tmp_path: Path, text: str, size: int) -> None:
    path = write(tmp_path, f'multipart_threshold = "{text}"\n')
    assert load_settings(path, {}).multipart_threshold == size


@pytest.mark.parametrize(
    ("size", "shown"), [(8 * MiB, "8MiB"), (5 * 2**30, "5GiB"), (1536, "1536"), (2048, "2KiB")]
)
def test_human_size_uses_the_largest_unit_that_divides_exactly(size: int, shown: str) -> None:
    assert human_size(size) == shown


STORAGE_URLS = [
    ("s3://bucket", "s3://bucket"),
    ("s3://bucket/", "s3://bucket"),
    ("s3://bucket/tenant-a/", "s3://bucket/tenant-a"),
    ("S3://bucket/a/b", "s3://bucket/a/b"),
    ("file:///srv/media", "file:///srv/media"),
    ("file:///srv/media/", "file:///srv/media"),
    ("file://localhost/srv/media", "file:///srv/media"),
    ("/srv/media", "file:///srv/media"),
    ("/srv/../srv/media/", "file:///srv/media"),
]


@pytest.mark.parametrize(("url", "expected"), STORAGE_URLS)
def test_storage_takes_file_and_s3_urls_and_plain_paths(
    tmp_path: Path, url: str, expected: str
) -> None:
    path = write(tmp_path, f'[sites.s]\nstorage = "{url}"\n')
    assert load_settings(path, {}).sites["s"].storage == expected


BAD_STORAGE = [
    ("s3://", "must be an s3:// URL with a bucket name, got 's3://'"),
    ("s3:///prefix", "must be an s3:// URL with a bucket name, got 's3:///prefix'"),
    (
        "s3://bucket/a/../b",
        "must be s3://bucket or s3://bucket/prefix with a safe prefix, got 's3://bucket/a/../b'",
    ),
    ("file://media/x", "must be an absolute file:///path URL, got 'file://media/x'"),
    ("file:media", "must be an absolute file:///path URL, got 'file:media'"),
    (
        "gs://bucket",
        "must be a storage URL (file:///abs/path, s3://bucket, s3://bucket/prefix) or a path, got 'gs://bucket'",
    ),
    (
        "",
        "must be a storage URL (file:///abs/path, s3://bucket, s3://bucket/prefix)"
        " or a path, got ''",
    ),
]


@pytest.mark.parametrize(("url", "message"), BAD_STORAGE)
def test_storage_rejects_other_schemes_and_incomplete_urls(
    tmp_path: Path, url: str, message: str
) -> None:
    path = write(tmp_path, f'[sites.s]\nstorage = "{url}"\n')
    assert problems_of(path) == [f"{path}: sites.s.storage: {message}"]


def test_a_long_bad_value_is_cut_short_in_the_message(tmp_path: Path) -> None:
    path = write(tmp_path, f'[sites.s]\nstorage = "s3://media-bucket"\ncdn_url = "{"x" * 500}"\n')
    [problem] = problems_of(path)
    assert problem.endswith("...")
    assert len(problem) < len(str(path)) + 150


# -- structure: unknown keys, site names, syntax, files ---------------------------------


def test_an_unknown_global_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "prot = 8080\n")
    assert problems_of(path) == [f"{path}: prot: unknown setting (did you mean port?)"]


def test_an_unknown_site_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[sites.blog]\nstorage = "s3://media-bucket"\ncdn_ulr = "https://x"\ncolour = 1\n'
    )
    assert problems_of(path) == [
        f"{path}: sites.blog.cdn_ulr: unknown setting (did you mean cdn_url?)",
        f"{path}: sites.blog.colour: unknown setting",
    ]


def test_a_setting_in_the_wrong_scope_says_where_it_belongs(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'cdn_url = "https://x"\n[sites.blog]\nstorage = "s3://media-bucket"\nport = 1\n'
    )
    assert problems_of(path) == [
        f"{path}: cdn_url: is a site setting: it belongs in a [sites.NAME] table",
        f"{path}: sites.blog.port: is a global setting: it belongs above the first [sites.*] table",
    ]


def test_a_site_without_storage_is_incomplete(tmp_path: Path) -> None:
    path = write(tmp_path, '[sites.blog]\ncdn_url = "https://cdn.example.com"\n')
    assert problems_of(path) == [f"{path}: sites.blog.storage: required setting is missing"]


@pytest.mark.parametrize("name", ["a", "0", "blog-2", "my_site", "a" * 63])
def test_good_site_names_are_accepted(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f'[sites.{name}]\nstorage = "s3://media-bucket"\n')
    assert list(load_settings(path, {}).sites) == [name]


@pytest.mark.parametrize(
    ("key", "shown"),
    [("Blog", "Blog"), ("-blog", "-blog"), ("_x", "_x"), ("a" * 64, "a" * 64), ('"a.b"', '"a.b"')],
)
def test_bad_site_names_are_rejected(tmp_path: Path, key: str, shown: str) -> None:
    path = write(tmp_path, f'[sites.{key}]\nstorage = "s3://media-bucket"\n')
    assert problems_of(path) == [
        f"{path}: sites.{shown}: a site name is 1-63 of a-z 0-9 - _, starting a-z or 0-9"
    ]


def test_sites_must_be_tables(tmp_path: Path) -> None:
    assert problems_of(path := write(tmp_path, "sites = 5\n")) == [
        f"{path}: sites: must be [sites.NAME] tables"
    ]
    assert problems_of(path := write(tmp_path, "[sites]\nblog = 1\n")) == [
        f"{path}: sites.blog: must be a [sites.blog] table"
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        port = 0
        colour = "red"
        [sites.blog]
        storage = "ftp://x"
        cdn_url = "ftp://x"
        """,
    )
    problems = problems_of(path, {"OFFLOAD_LOG_LEVEL": "loud"})
    assert len(problems) == 5
    assert all(problem.count("\n") == 0 for problem in problems)


def test_a_toml_syntax_error_is_one_line_with_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 80\n\n[sites.x\nstorage = 1\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}: invalid TOML: ")
    assert problem.endswith("(line 3, column 9)")
    assert "\n" not in problem
    assert "TOMLDecodeError" not in problem


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert problems_of(path) == [f"{path}: config file not found"]


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == [f"{tmp_path}: is a folder, not a config file"]


def test_an_unreadable_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "port = 80\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert problems_of(path) == [f"{path}: cannot read the config file: Permission denied"]


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "offload.toml"
    path.write_bytes(b"port = 80\n# caf\xe9\n")
    assert problems_of(path) == [f"{path}: is not UTF-8 text (bad byte at offset 15)"]


def test_a_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "offload.toml"
    path.write_bytes(b"\xef\xbb\xbfport = 81\n")
    assert load_settings(path, {}).port == 81


# -- environment ----------------------------------------------------------------------


def test_the_environment_overrides_a_global_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 8000\nlog_level = 'debug'\n")
    settings = load_settings(path, {"OFFLOAD_PORT": "9000"})
    assert (settings.port, settings.log_level) == (9000, "debug")
    assert settings.source == f"{path} + environment"


def test_the_environment_overrides_a_site_setting_by_its_normalised_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sites.my-blog]\nstorage = "s3://media-bucket"\ncdn_url = "https://old.example"\n',
    )
    env = {"OFFLOAD_SITES__MY_BLOG__CDN_URL": "https://new.example/"}
    site = load_settings(path, env).sites["my-blog"]
    assert (site.cdn_url, site.storage) == ("https://new.example", "s3://media-bucket")


def test_a_lowercase_site_segment_in_the_environment_matches_too(tmp_path: Path) -> None:
    path = write(tmp_path, '[sites.blog]\nstorage = "s3://media-bucket"\n')
    settings = load_settings(path, {"OFFLOAD_SITES__blog__MAX_AGE": "5"})
    assert settings.sites["blog"].max_age == 5


def test_the_environment_can_create_a_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "OFFLOAD_SITES__SHOP__STORAGE": "s3://shop-media",
        "OFFLOAD_SITES__SHOP__HOSTNAMES": "a.example, b.example",
    }
    settings = load_settings(None, env)
    assert settings.sites == {
        "shop": Site(name="shop", storage="s3://shop-media", hostnames=("a.example", "b.example"))
    }
    assert settings.source == "environment"


def test_a_site_created_by_the_environment_must_be_complete(tmp_path: Path) -> None:
    path = write(tmp_path, '[sites.blog]\nstorage = "s3://media-bucket"\n')
    assert problems_of(path, {"OFFLOAD_SITES__SHOP__CDN_URL": "https://cdn.shop"}) == [
        "environment: OFFLOAD_SITES__SHOP__STORAGE: required setting is missing"
        " (site 'shop' comes only from the environment)"
    ]


@pytest.mark.parametrize(
    ("var", "text", "dotted", "expected"),
    [
        ("OFFLOAD_PORT", "9000", "port", 9000),
        ("OFFLOAD_PORT", " 9000 ", "port", 9000),
        ("OFFLOAD_HOST", "::", "host", "::"),
        ("OFFLOAD_STORAGE_TIMEOUT", "2.5", "storage_timeout", 2.5),
        ("OFFLOAD_MULTIPART_CHUNKSIZE", "16MiB", "multipart_chunksize", 16 * MiB),
        ("OFFLOAD_MULTIPART_CHUNKSIZE", "6 MB", "multipart_chunksize", 6_000_000),
        ("OFFLOAD_MULTIPART_THRESHOLD", "1048576", "multipart_threshold", MiB),
        ("OFFLOAD_LOG_LEVEL", "ERROR", "log_level", "error"),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "true", "sites.blog.versioning", True),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "TRUE", "sites.blog.versioning", True),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "1", "sites.blog.versioning", True),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "yes", "sites.blog.versioning", True),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "on", "sites.blog.versioning", True),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "false", "sites.blog.versioning", False),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "0", "sites.blog.versioning", False),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "no", "sites.blog.versioning", False),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "off", "sites.blog.versioning", False),
        (
            "OFFLOAD_SITES__BLOG__HOSTNAMES",
            "a.example, b.example,",
            "sites.blog.hostnames",
            ("a.example", "b.example"),
        ),
        ("OFFLOAD_SITES__BLOG__HOSTNAMES", "", "sites.blog.hostnames", ()),
        ("OFFLOAD_SITES__BLOG__CORS_ORIGINS", "*", "sites.blog.cors_origins", ("*",)),
        ("OFFLOAD_SITES__BLOG__S_MAXAGE", "600", "sites.blog.s_maxage", 600),
        ("OFFLOAD_SITES__BLOG__S_MAXAGE", "", "sites.blog.s_maxage", None),
        ("OFFLOAD_SITES__BLOG__S_MAXAGE", "none", "sites.blog.s_maxage", None),
        ("OFFLOAD_SITES__BLOG__PREFIX", "/media/", "sites.blog.prefix", "media"),
        (
            "OFFLOAD_SITES__BLOG__STORAGE_CLASS",
            "glacier_ir",
            "sites.blog.storage_class",
            "GLACIER_IR",
        ),
    ],
)
def test_environment_strings_are_read_per_kind(
    tmp_path: Path, var: str, text: str, dotted: str, expected: Any
) -> None:
    path = write(tmp_path, '[sites.blog]\nstorage = "s3://media-bucket"\n')
    assert value_of(load_settings(path, {var: text}), dotted) == expected


@pytest.mark.parametrize(
    ("var", "text", "message"),
    [
        ("OFFLOAD_PORT", "abc", "must be an integer from 1 to 65535, got 'abc'"),
        ("OFFLOAD_PORT", "", "must be an integer from 1 to 65535, got ''"),
        ("OFFLOAD_STORAGE_TIMEOUT", "soon", "must be a number of seconds > 0, got 'soon'"),
        ("OFFLOAD_STORAGE_TIMEOUT", "inf", "must be a number of seconds > 0, got inf"),
        ("OFFLOAD_SITES__BLOG__VERSIONING", "maybe", "must be true or false, got 'maybe'"),
        ("OFFLOAD_SITES__BLOG__MAX_AGE", "1.5", "must be an integer >= 0, got '1.5'"),
        (
            "OFFLOAD_SITES__BLOG__HOSTNAMES",
            "a b",
            "must be a list of host names (no scheme or port), got 'a b'",
        ),
    ],
)
def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, var: str, text: str, message: str
) -> None:
    path = write(tmp_path, '[sites.blog]\nstorage = "s3://media-bucket"\n')
    assert problems_of(path, {var: text}) == [f"environment: {var}: {message}"]


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ("OFFLOAD_PROT", "unknown setting (did you mean OFFLOAD_PORT?)"),
        (
            "OFFLOAD_SITES__BLOG__CDNURL",
            "unknown setting (did you mean OFFLOAD_SITES__BLOG__CDN_URL?)",
        ),
        ("OFFLOAD_SITES", f"unknown setting (site settings are {ENV_FORM})"),
        ("OFFLOAD_SITES_BLOG_PORT", f"unknown setting (site settings are {ENV_FORM})"),
        ("OFFLOAD_SITES____PORT", f"unknown setting (site settings are {ENV_FORM})"),
        ("OFFLOAD_SITES__BLOG__PORT", "is a global setting: use OFFLOAD_PORT"),
        ("OFFLOAD_CDN_URL", "is a site setting: use OFFLOAD_SITES__<SITE>__CDN_URL"),
        ("OFFLOAD_SITES__-X__STORAGE", "'_x' is not a valid site name"),
    ],
)
def test_an_unknown_offload_variable_is_rejected(tmp_path: Path, var: str, message: str) -> None:
    path = write(tmp_path, '[sites.blog]\nstorage = "s3://media-bucket"\n')
    assert problems_of(path, {var: "1"}) == [f"environment: {var}: {message}"]


def test_offload_config_and_other_variables_are_not_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 81\n")
    env = {"OFFLOAD_CONFIG": str(path), "HOME": "/root", "offload_port": "1", "AWS_REGION": "x"}
    assert "OFFLOAD_CONFIG" in RESERVED_ENV
    assert load_settings(path, env).port == 81


def test_an_environment_site_name_matching_two_sites_is_ambiguous(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sites.a-b]\nstorage = "s3://media-bucket"\n[sites.a_b]\nstorage = "s3://other-bucket"\n',
    )
    assert problems_of(path, {"OFFLOAD_SITES__A_B__MAX_AGE": "1"}) == [
        "environment: OFFLOAD_SITES__A_B__MAX_AGE: matches sites 'a-b' and 'a_b'"
    ]


# -- paths ----------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    conf = tmp_path / "conf"
    write(
        conf,
        """\
        data_dir = "data"
        [sites.blog]
        storage = "media"
        uploads_dir = "../www/uploads"
        backup = "./backups/"
        """,
    )
    settings = load_settings(Path("../conf/offload.toml"), {})
    site = settings.sites["blog"]
    assert settings.data_dir == conf / "data"
    assert site.storage == (conf / "media").as_uri()
    assert site.uploads_dir == tmp_path / "www" / "uploads"
    assert site.backup == (conf / "backups").as_uri()


def test_the_default_data_dir_is_next_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path / "conf", "port = 81\n")
    assert load_settings(path, {}).data_dir == tmp_path / "conf" / "offload-data"


def test_relative_paths_from_the_environment_resolve_against_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "conf", '[sites.blog]\nstorage = "s3://media-bucket"\n')
    monkeypatch.chdir(tmp_path)
    env = {"OFFLOAD_DATA_DIR": "data", "OFFLOAD_SITES__BLOG__STORAGE": "media"}
    settings = load_settings(path, env)
    assert settings.data_dir == tmp_path / "data"
    assert settings.sites["blog"].storage == (tmp_path / "media").as_uri()


def test_a_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path / "conf", 'data_dir = "~/offload"\n')
    assert load_settings(path, {}).data_dir == tmp_path / "offload"


# -- cross-field rules ----------------------------------------------------------------


def test_two_sites_claiming_one_hostname_is_an_error_naming_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [sites.blog]
        storage = "s3://blog-media"
        hostnames = ["media.example.com", "blog.example.com"]
        [sites.shop]
        storage = "s3://media-bucket"
        hostnames = ["Media.Example.com"]
        """,
    )
    assert problems_of(path) == [
        f"{path}: sites.shop.hostnames: 'media.example.com' is claimed by sites 'blog' and 'shop'"
    ]


def test_a_hostname_repeated_within_one_site_is_kept_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sites.s]\nstorage = "s3://media-bucket"\nhostnames = ["a.example", "A.example"]\n',
    )
    assert load_settings(path, {}).sites["s"].hostnames == ("a.example",)


def test_storage_options_hold_only_the_s3_options_that_are_set(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL_EXAMPLE), {})
    assert settings.sites["blog"].storage_options() == {
        "endpoint_url": "https://s3.eu-central-1.wasabisys.com",
        "region": "eu-central-1",
        "profile": "media",
        "addressing_style": "path",
        "storage_class": "STANDARD_IA",
    }
    assert settings.sites["docs"].storage_options() == {}


# -- secrets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [("", ""), ("s3cret", "****"), ("x" * 15, "****"), ("0123456789abcdef", "****cdef")],
)
def test_a_secret_is_masked_in_str_repr_and_format(value: str, shown: str) -> None:
    secret = Secret(value)
    assert str(secret) == shown
    assert repr(secret) == f"Secret({shown!r})"
    assert f"{secret}" == shown
    assert f"{secret:>20}" == shown.rjust(20)
    assert "%s" % secret == shown  # noqa: UP031 - the old formatting path too


def test_a_secret_reveals_its_value_and_is_true_when_set() -> None:
    assert Secret(LONG_SECRET).reveal() == LONG_SECRET
    assert Secret("x")
    assert not Secret("")
    assert Secret("x") == Secret("x")
    assert Secret("x") != Secret("y")


@pytest.mark.parametrize(
    ("secret", "candidate", "matches"),
    [
        ("s3cret", "s3cret", True),
        ("s3cret", b"s3cret", True),
        ("s3cret", "s3cre", False),
        ("s3cret", b"S3CRET", False),
        ("pässwörd", "pässwörd", True),
        ("", "", False),
        ("", b"", False),
    ],
)
def test_secret_matches_compares_in_constant_time_and_empty_matches_nothing(
    secret: str, candidate: str | bytes, matches: bool
) -> None:
    assert Secret(secret).matches(candidate) is matches


def test_secrets_stay_masked_in_settings_repr_and_describe_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL_EXAMPLE), {})
    rows = dict(describe_settings(settings))
    assert rows["sites.blog.webhook_secret"] == '"****6e0c"'
    assert rows["sites.blog.origin_secret"] == '"****"'
    assert rows["sites.docs.webhook_secret"] == '""'
    shown = repr(settings) + str(rows)
    assert LONG_SECRET not in shown
    assert "pull-zone-key" not in shown


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("12345678", "must be a string (value not shown)"),
        (
            '" hunter2-hunter2 "',
            "must not hold control characters or edge spaces (value not shown)",
        ),
        (
            '"hunter2\\nhunter2"',
            "must not hold control characters or edge spaces (value not shown)",
        ),
    ],
)
def test_a_bad_secret_is_reported_without_its_value(
    tmp_path: Path, literal: str, message: str
) -> None:
    path = write(tmp_path, f'[sites.s]\nstorage = "s3://media-bucket"\norigin_secret = {literal}\n')
    problems = problems_of(path)
    assert problems == [f"{path}: sites.s.origin_secret: {message}"]
    assert "hunter2" not in str(problems)
    assert "12345678" not in str(problems)


def test_secrets_never_appear_in_error_messages(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        [sites.blog]
        storage = "ftp://nope"
        webhook_secret = "{LONG_SECRET}"
        webhook_secrett = "typo-secret-value"
        """,
    )
    env = {"OFFLOAD_SITES__BLOG__ORIGIN_SECRET": "\tenv-secret-value"}
    problems = problems_of(path, env)
    assert len(problems) == 3
    message = "\n".join(problems)
    for secret in (LONG_SECRET, "typo-secret-value", "env-secret-value"):
        assert secret not in message


# -- declarations: the single source of truth -----------------------------------------


def test_declared_settings_cover_every_dataclass_field_exactly_once() -> None:
    declared = [(info.scope, info.name) for info in declared_settings()]
    fields = [("global", f.name) for f in dataclasses.fields(Settings)]
    fields += [("site", f.name) for f in dataclasses.fields(Site)]
    structural = {
        ("global", "sites"),
        ("global", "source"),
        ("global", "warnings"),
        ("site", "name"),
    }
    assert declared == [pair for pair in fields if pair not in structural]
    assert len(set(declared)) == len(declared)


@pytest.mark.parametrize("cls", [Settings, Site])
def test_every_setting_has_help_and_a_kind(cls: type) -> None:
    for f in dataclasses.fields(cls):
        if f.name in ("sites", "source", "warnings", "name"):
            continue
        assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name} has no help"
        assert "kind" in f.metadata, f"{cls.__name__}.{f.name} has no kind"


def test_every_default_is_a_value_its_own_kind_accepts() -> None:
    for cls in (Settings, Site):
        for f in dataclasses.fields(cls):
            if "kind" not in f.metadata or f.default is dataclasses.MISSING:
                continue
            parsed = f.metadata["kind"].parse(f.default, Path("/base"))
            expected = Path("/base") / f.default if isinstance(f.default, Path) else f.default
            assert parsed == expected, f.name


def test_declared_settings_show_type_default_and_help() -> None:
    rows = {(info.scope, info.name): info for info in declared_settings()}
    assert rows["global", "port"].type == "int"
    assert rows["global", "port"].default == "8080"
    assert rows["global", "multipart_chunksize"].default == '"8MiB"'
    assert rows["global", "log_level"].type == "debug|info|warning|error"
    assert rows["site", "storage"].default == "(required)"
    assert rows["site", "s_maxage"].default == "(unset)"
    assert rows["site", "webhook_secret"].type == "secret"
    assert rows["site", "hostnames"].default == "[]"


def test_describe_settings_lists_the_globals_then_each_site(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL_EXAMPLE), {})
    names = [name for name, _ in describe_settings(settings)]
    site_names = [info.name for info in declared_settings() if info.scope == "site"]
    assert names == [
        *(info.name for info in declared_settings() if info.scope == "global"),
        *(f"sites.blog.{name}" for name in site_names),
        *(f"sites.docs.{name}" for name in site_names),
    ]
    rows = dict(describe_settings(settings))
    assert rows["port"] == "9000"
    assert rows["sites.blog.hostnames"] == '["origin.example.com", "origin2.example.com"]'
    assert rows["sites.blog.versioning"] == "true"
    assert rows["sites.docs.uploads_dir"] == "(unset)"


# -- bucket names are checked with the same validator as check-bucket ------------------


def site_config(tmp_path: Path, body: str) -> Path:
    return write(tmp_path, "[sites.blog]\n" + body)


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ('storage = "s3://My_Bucket/blog"\n', "uppercase"),
        ('storage = "s3://ab"\n', "too_short"),
        ('storage = "s3://media.example.com"\n', "dot_breaks_wildcard_tls"),
        ('storage = "s3://ok-bucket"\nbackup = "s3://xn--backup"\n', "prefix_xn"),
        (
            'storage = "s3://media.example.com"\naddressing_style = "virtual"\n',
            "dot_breaks_wildcard_tls",
        ),
    ],
)
def test_a_bucket_name_its_provider_refuses_stops_the_config(
    tmp_path: Path, body: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(site_config(tmp_path, body), {})
    problems = caught.value.problems
    assert any(f"the aws rule {rule}: " in problem for problem in problems), problems
    assert all(p.startswith(f"{tmp_path / 'offload.toml'}: sites.blog.") for p in problems)


def test_a_dotted_bucket_with_path_style_loads_with_one_warning(tmp_path: Path) -> None:
    body = 'storage = "s3://media.example.com"\naddressing_style = "path"\n'
    settings = load_settings(site_config(tmp_path, body), {})
    (warning,) = settings.warnings
    assert warning.startswith(f"{tmp_path / 'offload.toml'}: sites.blog.storage: ")
    assert "has dots; it works only path-style" in warning


@pytest.mark.parametrize(
    ("endpoint", "bucket", "loads"),
    [
        ("https://abc123.r2.cloudflarestorage.com", "media_bucket", False),
        ("https://storage.googleapis.com", "media_bucket", True),  # gcs allows underscores
        ("", "media_bucket", False),
    ],
)
def test_bucket_profile_auto_follows_the_endpoint(
    tmp_path: Path, endpoint: str, bucket: str, loads: bool
) -> None:
    body = f'storage = "s3://{bucket}"\nendpoint_url = "{endpoint}"\n'
    path = site_config(tmp_path, body)
    if loads:
        assert load_settings(path, {}).sites["blog"].storage == f"s3://{bucket}"
    else:
        with pytest.raises(ConfigError, match="underscore"):
            load_settings(path, {})


def test_an_explicit_bucket_profile_wins_over_the_endpoint(tmp_path: Path) -> None:
    body = 'storage = "s3://media_bucket"\nbucket_profile = "gcs"\n'
    assert load_settings(site_config(tmp_path, body), {}).sites["blog"].bucket_profile == "gcs"


def test_local_storage_has_no_bucket_to_check(tmp_path: Path) -> None:
    body = 'storage = "file:///srv/Media_Folder.old"\n'
    assert load_settings(site_config(tmp_path, body), {}).warnings == ()


@pytest.mark.parametrize(
    ("key", "signed"),
    [("private/a.pdf", True), ("private/deep/a.pdf", True), ("privately/a.pdf", False),
     ("private", False), ("public/private/a.pdf", False)],
)  # fmt: skip
def test_a_key_needs_a_signature_only_under_a_signed_prefix(key: str, signed: bool) -> None:
    site = Site(name="blog", storage="file:///srv/media", signed_prefixes=("private",))
    assert site.needs_signature(key) is signed

"""The purge settings: a provider per site, its credentials masked, from file or environment."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from offload.config.loading import load_settings
from offload.config.settings import PURGE_REQUIRES, describe_settings
from offload.errors import ConfigError

TOKEN = "cf-token-0123456789abcdef"


def write(folder: Path, text: str) -> Path:
    path = folder / "offload.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return info.value.problems


SITE = """\
    [sites.blog]
    storage = "s3://media-bucket"
    cdn_url = "https://cdn.example.com"
"""


def test_purge_is_none_by_default_and_the_globals_have_their_defaults(tmp_path):
    settings = load_settings(write(tmp_path, SITE), {})
    assert settings.sites["blog"].purge == "none"
    assert (settings.purge_give_up_after, settings.purge_wait, settings.purge_timeout) == (
        86400.0,
        5.0,
        15.0,
    )


def test_a_cloudflare_site_loads_with_its_zone_and_token_and_the_token_is_masked(tmp_path):
    path = write(
        tmp_path,
        SITE
        + f"""\
    purge = "Cloudflare"
    cloudflare_zone_id = "023e105f4ecef8ad9ca31a8372d0c353"
    cloudflare_api_token = "{TOKEN}"
    purge_api_url = "http://127.0.0.1:9999/client/v4/"
""",
    )
    settings = load_settings(path, {})
    site = settings.sites["blog"]
    assert site.purge == "cloudflare"
    assert site.cloudflare_api_token.reveal() == TOKEN
    assert site.purge_api_url == "http://127.0.0.1:9999/client/v4"
    shown = dict(describe_settings(settings))
    assert shown["sites.blog.cloudflare_api_token"] == '"****cdef"'
    assert TOKEN not in repr(settings)
    assert all(TOKEN not in value for value in shown.values())


def test_a_token_can_come_from_the_environment(tmp_path):
    path = write(
        tmp_path, SITE + '    purge = "fastly"\n    fastly_service_id = "SU1Z0isxPaozGVKXdv0eY"\n'
    )
    settings = load_settings(path, {"OFFLOAD_SITES__BLOG__FASTLY_API_TOKEN": TOKEN})
    assert settings.sites["blog"].fastly_api_token.reveal() == TOKEN
    assert settings.source == f"{path} + environment"


def test_a_numeric_zone_id_is_read_as_text(tmp_path):
    path = write(
        tmp_path,
        SITE + '    purge = "bunny"\n    bunny_pull_zone_id = 12345\n    bunny_access_key = "k"\n',
    )
    assert load_settings(path, {}).sites["blog"].bunny_pull_zone_id == "12345"


@pytest.mark.parametrize("provider", sorted(set(PURGE_REQUIRES) - {"none"}))
def test_a_provider_without_its_settings_is_refused_naming_each_missing_one(tmp_path, provider):
    path = write(tmp_path, f'[sites.blog]\nstorage = "s3://media-bucket"\npurge = "{provider}"\n')
    when = f"required when purge = {provider!r}"
    expected = [f"{path}: sites.blog.{name}: {when}" for name in PURGE_REQUIRES[provider]]
    if provider != "nginx":
        expected.insert(0, f"{path}: sites.blog.cdn_url: {when} (or a host name in hostnames)")
    assert problems_of(path) == expected


def test_a_cdn_in_front_of_the_origins_host_needs_no_cdn_url(tmp_path):
    path = write(
        tmp_path,
        """\
        [sites.blog]
        storage = "s3://media-bucket"
        hostnames = ["www.example.com"]
        purge = "cloudfront"
        cloudfront_distribution_id = "EDFDVBD6EXAMPLE"
        """,
    )
    assert load_settings(path, {}).sites["blog"].purge == "cloudfront"


def test_a_missing_setting_of_an_environment_site_names_its_variable(tmp_path):
    problems = problems_of(
        write(tmp_path, ""),
        {
            "OFFLOAD_SITES__SHOP__STORAGE": "s3://media-bucket",
            "OFFLOAD_SITES__SHOP__CDN_URL": "https://cdn.example.com",
            "OFFLOAD_SITES__SHOP__PURGE": "cloudfront",
        },
    )
    assert problems == [
        "environment: OFFLOAD_SITES__SHOP__CLOUDFRONT_DISTRIBUTION_ID:"
        " required when purge = 'cloudfront'"
    ]


def test_an_unknown_provider_and_a_bad_id_are_refused(tmp_path):
    path = write(tmp_path, SITE + '    purge = "akamai"\n    keycdn_zone_id = "12/34"\n')
    problems = problems_of(path)
    assert problems[0].startswith(f"{path}: sites.blog.purge: must be one of none, cloudflare")
    assert problems[1].startswith(f"{path}: sites.blog.keycdn_zone_id: must be an id of")

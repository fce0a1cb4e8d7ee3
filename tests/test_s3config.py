"""S3Config: every S3 option declared once with its default, and checked when it is made."""

from __future__ import annotations

import dataclasses

import pytest

from offload.config.settings import Settings, Site
from offload.config.sites import site_s3_config
from offload.errors import ConfigError, ExitCode
from offload.storage.s3config import DEFAULTS, MiB, S3Config
from offload.sync.locations import S3Options


def test_the_server_settings_start_from_the_storage_defaults() -> None:
    settings = Settings()
    assert settings.multipart_threshold == DEFAULTS.multipart_threshold
    assert settings.multipart_chunksize == DEFAULTS.multipart_chunksize
    assert settings.multipart_concurrency == DEFAULTS.multipart_concurrency
    assert settings.storage_threads == DEFAULTS.max_connections
    assert settings.storage_timeout == DEFAULTS.connect_timeout


def test_a_sites_config_carries_its_own_options_and_the_global_transfer_settings() -> None:
    settings = Settings(multipart_threshold=16 * MiB, multipart_concurrency=8, storage_threads=4)
    site = Site(
        name="blog",
        storage="s3://media/blog",
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        addressing_style="auto",
        storage_class="STANDARD_IA",
    )
    config = site_s3_config(settings, site)
    assert (config.multipart_threshold, config.multipart_concurrency) == (16 * MiB, 8)
    assert (config.max_connections, config.endpoint_url) == (4, "http://127.0.0.1:9000")
    assert (config.region, config.storage_class) == ("eu-west-1", "STANDARD_IA")
    assert config.addressing_style is None  # "auto" is botocore's own choice
    assert config.profile is None


@pytest.mark.parametrize("option", ["region", "profile"])
def test_a_blank_site_option_is_a_configuration_error_naming_the_site(option: str) -> None:
    site = Site(name="blog", storage="s3://media/blog", **{option: " "})
    with pytest.raises(ConfigError, match=f"^sites.blog: {option} ") as caught:
        site_s3_config(Settings(), site)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_the_command_lines_options_leave_the_transfer_defaults_alone() -> None:
    config = S3Options(endpoint_url="http://s3.test", threads=64).config()
    assert config.max_connections == 64
    assert config.endpoint_url == "http://s3.test"
    fields = ("multipart_threshold", "multipart_chunksize", "multipart_concurrency")
    assert [getattr(config, name) for name in fields] == [getattr(DEFAULTS, n) for n in fields]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"multipart_chunksize": 4 * MiB}, "multipart_chunksize must be from 5242880"),
        ({"multipart_chunksize": 6 * 2**30}, "multipart_chunksize must be from"),
        ({"multipart_threshold": 0}, "multipart_threshold must be an integer >= 1, got 0"),
        ({"multipart_concurrency": 0}, "multipart_concurrency must be an integer >= 1"),
        ({"multipart_concurrency": True}, "multipart_concurrency must be an integer"),
        ({"max_connections": 0}, "max_connections must be an integer >= 1"),
        ({"copy_threshold": 6 * 2**30}, "copy_threshold must be from 1 to"),
        ({"connect_timeout": 0}, "connect_timeout must be a number of seconds above 0"),
        ({"read_timeout": -1.0}, "read_timeout must be a number of seconds above 0"),
        ({"addressing_style": "sideways"}, "addressing_style must be one of auto, path, virtual"),
        ({"endpoint_url": ""}, "endpoint_url must be a non-empty string or None"),
        ({"storage_class": "  "}, "storage_class must be a non-empty string or None"),
    ],
)
def test_values_s3_could_never_take_are_refused_when_the_config_is_made(
    changes: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        S3Config(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=problem):
        DEFAULTS.replace(**changes)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ValueError, match=r"max_connections.*; multipart_concurrency"):
        S3Config(max_connections=0, multipart_concurrency=0)


def test_a_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.multipart_threshold = 1  # type: ignore[misc]

"""The embedded default: a local folder as the bucket and a private webhook secret."""

from __future__ import annotations

import stat

import pytest

from offload.config.embedded import embedded_settings
from offload.config.settings import Settings
from offload.errors import ConfigError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_default_site_is_a_local_folder_answering_any_host(tmp_path):
    embedded = embedded_settings(Settings(), tmp_path / "data")
    site = embedded.settings.sites["default"]
    assert site.storage == (tmp_path / "data").as_uri()
    assert site.hostnames == ("*",)
    assert embedded.settings.source == "embedded default"
    assert (tmp_path / "data").is_dir()


def test_the_secret_file_is_created_once_with_mode_0600(tmp_path):
    first = embedded_settings(Settings(), tmp_path)
    second = embedded_settings(Settings(), tmp_path)
    assert first.secret_file == tmp_path / ".offload" / "webhook-secret"
    assert mode(first.secret_file) == 0o600
    secret = first.settings.sites["default"].webhook_secret
    assert len(secret.reveal()) == 64
    assert second.settings.sites["default"].webhook_secret == secret
    assert secret.reveal() not in repr(first.settings)


def test_a_secret_file_readable_by_others_is_made_private_again(tmp_path):
    secret_file = embedded_settings(Settings(), tmp_path).secret_file
    secret_file.chmod(0o644)
    embedded_settings(Settings(), tmp_path)
    assert mode(secret_file) == 0o600


def test_a_short_secret_in_the_file_is_refused(tmp_path):
    (tmp_path / ".offload").mkdir()
    (tmp_path / ".offload" / "webhook-secret").write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 32 characters"):
        embedded_settings(Settings(), tmp_path)


def test_a_data_dir_that_cannot_be_made_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="data_dir: cannot use"):
        embedded_settings(Settings(), blocker / "data")


def test_a_secret_file_that_is_not_ascii_is_a_config_error(tmp_path):
    (tmp_path / ".offload").mkdir()
    (tmp_path / ".offload" / "webhook-secret").write_bytes(b"\xff" * 40)
    with pytest.raises(ConfigError, match="not ASCII text"):
        embedded_settings(Settings(), tmp_path)

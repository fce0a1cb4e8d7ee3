"""``offload config init | get | set | unset``: one key at a time, the file's comments kept."""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from offload.cli import config_cmd
from offload.config.loading import load_settings
from offload.errors import ExitCode
from tests.helpers import run_cli

SECRET = "0123456789abcdef0123456789abcdef-secret"

CONFIG = f"""\
# The server's port: keep it behind nginx.
port = 8081  # the staging port

# Our blog.
[sites.blog]
storage = "file:///srv/media"   # the bucket
# Where WordPress keeps uploads.
uploads_dir = "/var/www/uploads"
cdn_url = "https://cdn.example.com"
webhook_secret = "{SECRET}"

[sites.shop]
storage = "s3://shop-media"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "offload.toml"
    path.write_text(CONFIG)
    path.chmod(0o640)
    return path


def setting_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"#? ?[a-z_]+ = ", line)]


# -- init -------------------------------------------------------------------------------


def test_init_writes_a_config_from_flags_that_loads(tmp_path):
    path = tmp_path / "offload.toml"
    code, out, err = run_cli(
        "config", "init", "--config", path, "--no-input", "--site", "shop",
        "--storage", "s3://shop-media/site", "--uploads-dir", str(tmp_path),
        "--uploads-url", "https://shop.example.com/uploads", "--cdn-url", "https://cdn.example.com",
    )  # fmt: skip
    assert code == ExitCode.OK, err
    settings = load_settings(path, {})
    site = settings.sites["shop"]
    assert site.storage == "s3://shop-media/site"
    assert site.uploads_dir == tmp_path
    assert site.uploads_url == "https://shop.example.com/uploads"
    assert site.cdn_url == "https://cdn.example.com"
    assert re.fullmatch(r"[0-9a-f]{64}", site.webhook_secret.reveal())
    assert site.webhook_secret.reveal() not in out + err


def test_init_file_is_commented_and_stays_valid_with_every_line_uncommented(tmp_path):
    path = tmp_path / "offload.toml"
    assert run_cli("config", "init", "--config", path, "--no-input")[0] == ExitCode.OK
    text = path.read_text()
    commented = [line for line in text.splitlines() if re.match(r"# [a-z_]+ = ", line)]
    assert len(commented) > 30  # every setting not given is shown, under its help
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", text)
    tomllib.loads(uncommented)
    (tmp_path / "all.toml").write_text(uncommented)
    load_settings(tmp_path / "all.toml", {})


def test_init_file_is_readable_by_its_owner_alone(tmp_path):
    path = tmp_path / "offload.toml"
    assert run_cli("config", "init", "--config", path, "--no-input")[0] == ExitCode.OK
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_default_storage_is_a_folder_beside_the_file(tmp_path):
    path = tmp_path / "offload.toml"
    assert run_cli("config", "init", "--config", path, "--no-input")[0] == ExitCode.OK
    site = load_settings(path, {}).sites["blog"]
    assert site.storage == (tmp_path / "offload-data").as_uri()


def test_init_refuses_to_overwrite_an_existing_file_unless_forced(config):
    before = config.read_bytes()
    code, _, err = run_cli("config", "init", "--config", config, "--no-input")
    assert code == ExitCode.USAGE
    assert "--force" in err
    assert config.read_bytes() == before
    code, _, err = run_cli("config", "init", "--config", config, "--no-input", "--force")
    assert code == ExitCode.OK, err
    assert list(load_settings(config, {}).sites) == ["blog"]


def test_init_refuses_a_bad_flag_value_and_writes_nothing(tmp_path):
    path = tmp_path / "offload.toml"
    code, _, err = run_cli("config", "init", "--config", path, "--cdn-url", "cdn.example.com")
    assert code == ExitCode.USAGE
    assert "--cdn-url: must be an http(s) URL" in err
    assert list(tmp_path.iterdir()) == []


def test_init_asks_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(config_cmd, "_on_a_terminal", lambda: True)
    answers = "news\n\n/srv/uploads\nhttps://news.example.com/uploads\nhttps://cdn.example.com\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    path = tmp_path / "offload.toml"
    code, _, err = run_cli("config", "init", "--config", path)
    assert code == ExitCode.OK, err
    assert "Site name" in err
    assert "CDN base URL" in err
    site = load_settings(path, {}).sites["news"]
    assert site.storage == (tmp_path / "offload-data").as_uri()  # the default, kept
    assert site.uploads_dir == Path("/srv/uploads")
    assert site.cdn_url == "https://cdn.example.com"


def test_init_on_a_terminal_stops_cleanly_at_end_of_input(tmp_path, monkeypatch):
    monkeypatch.setattr(config_cmd, "_on_a_terminal", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO("news\n"))
    path = tmp_path / "offload.toml"
    code, _, err = run_cli("config", "init", "--config", path)
    assert code == ExitCode.USAGE
    assert "end of input" in err
    assert not path.exists()


def test_init_from_env_takes_the_offload_variables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {
        "OFFLOAD_PORT": "9000",
        "OFFLOAD_SITES__NEWS__STORAGE": "s3://news-media",
        "OFFLOAD_SITES__NEWS__CDN_URL": "https://cdn.example.com",
        "OFFLOAD_SITES__NEWS__WEBHOOK_SECRET": SECRET,
        "OFFLOAD_SITES__NEWS__HOSTNAMES": "a.example.com,b.example.com",
        "OFFLOAD_SITES__ARCHIVE__STORAGE": "archive-folder",
    }
    path = tmp_path / "offload.toml"
    code, out, err = run_cli("config", "init", "--config", path, "--from-env", environ=environ)
    assert code == ExitCode.OK, err
    assert SECRET not in out + err
    settings = load_settings(path, {})
    assert settings.port == 9000
    assert settings.sites["news"].storage == "s3://news-media"
    assert settings.sites["news"].hostnames == ("a.example.com", "b.example.com")
    assert settings.sites["news"].webhook_secret.reveal() == SECRET
    assert settings.sites["archive"].storage == (tmp_path / "archive-folder").as_uri()
    assert len(settings.sites["archive"].webhook_secret.reveal()) == 64  # generated


def test_init_from_env_reports_a_bad_variable(tmp_path):
    path = tmp_path / "offload.toml"
    environ = {"OFFLOAD_SITES__NEWS__STORAGE": "s3://news-media", "OFFLOAD_PORT": "x"}
    code, _, err = run_cli("config", "init", "--config", path, "--from-env", environ=environ)
    assert code == ExitCode.CONFIG
    assert "OFFLOAD_PORT" in err
    assert not path.exists()


# -- get --------------------------------------------------------------------------------


def test_get_prints_one_global_or_site_value(config):
    assert run_cli("config", "get", "port", "--config", config) == (ExitCode.OK, "8081\n", "")
    code, out, _ = run_cli("config", "get", "sites.blog.cdn_url", "--config", config)
    assert (code, out) == (ExitCode.OK, "https://cdn.example.com\n")
    code, out, _ = run_cli("config", "get", "sites.blog.max_age", "--config", config)
    assert (code, out) == (ExitCode.OK, "86400\n")  # the default, as offload runs with it


def test_get_shows_what_the_environment_overrides(config):
    code, out, _ = run_cli(
        "config", "get", "port", "--config", config, environ={"OFFLOAD_PORT": "9001"}
    )
    assert (code, out) == (ExitCode.OK, "9001\n")


def test_get_masks_secrets_unless_revealed(config):
    code, out, _ = run_cli("config", "get", "sites.blog.webhook_secret", "--config", config)
    assert code == ExitCode.OK
    assert SECRET not in out
    assert out == "****" + SECRET[-4:] + "\n"
    code, out, _ = run_cli(
        "config", "get", "sites.blog.webhook_secret", "--reveal", "--config", config
    )
    assert (code, out) == (ExitCode.OK, SECRET + "\n")


def test_get_of_an_unset_value_prints_nothing_and_exits_1(config):
    code, out, _ = run_cli("config", "get", "sites.blog.s_maxage", "--config", config)
    assert (code, out) == (ExitCode.FAILED, "")


def test_get_of_an_unknown_key_suggests_the_close_one(config):
    code, _, err = run_cli("config", "get", "prot", "--config", config)
    assert code == ExitCode.USAGE
    assert "did you mean port?" in err
    code, _, err = run_cli("config", "get", "sites.blog.cdn_ulr", "--config", config)
    assert code == ExitCode.USAGE
    assert "did you mean sites.blog.cdn_url?" in err
    code, _, err = run_cli("config", "get", "cdn_url", "--config", config)
    assert code == ExitCode.USAGE
    assert "sites.NAME.cdn_url" in err


def test_get_of_a_site_that_is_not_there_names_the_sites(config):
    code, _, err = run_cli("config", "get", "sites.nope.cdn_url", "--config", config)
    assert code == ExitCode.USAGE
    assert "blog, shop" in err


def test_get_without_a_file_is_a_config_error(tmp_path):
    code, _, err = run_cli("config", "get", "port", "--config", tmp_path / "none.toml")
    assert code == ExitCode.CONFIG
    assert "not found" in err


def test_config_file_defaults_to_offload_config_then_offload_toml(config, monkeypatch):
    environ = {"OFFLOAD_CONFIG": str(config)}
    assert run_cli("config", "get", "port", environ=environ)[1] == "8081\n"
    monkeypatch.chdir(config.parent)
    assert run_cli("config", "get", "port")[1] == "8081\n"


# -- set and unset ----------------------------------------------------------------------


def test_set_changes_one_key_and_keeps_comments_and_order(config):
    code, out, err = run_cli("config", "set", "port", "9000", "--config", config)
    assert code == ExitCode.OK, err
    assert out == "port = 9000\n"
    assert config.read_text() == CONFIG.replace("port = 8081", "port = 9000")
    code, _, err = run_cli("config", "set", "sites.blog.max_age", "600", "--config", config)
    assert code == ExitCode.OK, err
    secret_line = f'webhook_secret = "{SECRET}"\n'
    expected = CONFIG.replace("port = 8081", "port = 9000")
    assert config.read_text() == expected.replace(secret_line, secret_line + "max_age = 600\n")
    assert load_settings(config, {}).sites["blog"].max_age == 600


def test_set_parses_the_value_with_the_setting_kind(config):
    for key, value in [
        ("sites.blog.versioning", "yes"),
        ("sites.blog.hostnames", "a.example.com, b.example.com"),
        ("sites.shop.cors_origins", '["https://a.example.com"]'),
        ("multipart_chunksize", "16MiB"),
        ("storage_timeout", "2.5"),
    ]:
        code, _, err = run_cli("config", "set", key, value, "--config", config)
        assert code == ExitCode.OK, (key, err)
    settings = load_settings(config, {})
    assert settings.sites["blog"].versioning is True
    assert settings.sites["blog"].hostnames == ("a.example.com", "b.example.com")
    assert settings.sites["shop"].cors_origins == ("https://a.example.com",)
    assert settings.multipart_chunksize == 16 * 2**20
    assert settings.storage_timeout == 2.5


def test_set_refuses_an_invalid_value_without_touching_the_file(config):
    before, mtime = config.read_bytes(), config.stat().st_mtime_ns
    code, _, err = run_cli("config", "set", "port", "70000", "--config", config)
    assert code == ExitCode.USAGE
    assert "port: must be an integer from 1 to 65535" in err
    code, _, err = run_cli("config", "set", "sites.blog.cdn_url", "ftp://x", "--config", config)
    assert code == ExitCode.USAGE
    assert "sites.blog.cdn_url: must be an http(s) URL" in err
    assert config.read_bytes() == before
    assert config.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in config.parent.iterdir()) == ["offload.toml"]


def test_set_refuses_a_change_the_loader_would_refuse_as_a_whole(config):
    before = config.read_bytes()
    code, _, err = run_cli(
        "config", "set", "sites.shop.signed_prefixes", "private", "--config", config
    )
    assert code == ExitCode.CONFIG
    assert "sites.shop.signing_secret: required when signed_prefixes is set" in err
    assert str(config) in err
    assert ".tmp" not in err
    assert config.read_bytes() == before
    assert sorted(p.name for p in config.parent.iterdir()) == ["offload.toml"]


def test_set_of_an_unknown_key_suggests_and_leaves_the_file(config):
    before = config.read_bytes()
    code, _, err = run_cli(
        "config", "set", "sites.blog.cnd_url", "https://x.com", "--config", config
    )
    assert code == ExitCode.USAGE
    assert "unknown setting (did you mean sites.blog.cdn_url?)" in err
    assert config.read_bytes() == before


def test_set_never_echoes_a_bad_secret(config):
    code, _, err = run_cli(
        "config", "set", "sites.blog.webhook_secret", " leaked secret ", "--config", config
    )
    assert code == ExitCode.USAGE
    assert "leaked" not in err


def test_set_keeps_the_file_mode_and_replaces_the_file_whole(config):
    inode = config.stat().st_ino
    assert run_cli("config", "set", "port", "9000", "--config", config)[0] == ExitCode.OK
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert config.stat().st_ino != inode  # a new file renamed over the old: never half written
    assert sorted(p.name for p in config.parent.iterdir()) == ["offload.toml"]


def test_set_through_a_symlink_changes_the_file_and_keeps_the_link(config):
    link = config.parent / "link.toml"
    link.symlink_to(config)
    assert run_cli("config", "set", "port", "9000", "--config", link)[0] == ExitCode.OK
    assert link.is_symlink()
    assert load_settings(config, {}).port == 9000


def test_set_uncomments_the_line_an_initialised_file_shows(tmp_path):
    path = tmp_path / "offload.toml"
    assert run_cli("config", "init", "--config", path, "--no-input")[0] == ExitCode.OK
    before = path.read_text().splitlines()
    at = before.index("# port = 8080")
    assert run_cli("config", "set", "port", "9000", "--config", path)[0] == ExitCode.OK
    after = path.read_text().splitlines()
    assert after == [*before[:at], "port = 9000", *before[at + 1 :]]


def test_set_a_new_site_storage_creates_its_table(config):
    code, _, err = run_cli(
        "config", "set", "sites.news.storage", "s3://news-media", "--config", config
    )
    assert code == ExitCode.OK, err
    assert load_settings(config, {}).sites["news"].storage == "s3://news-media"
    assert config.read_text().startswith(CONFIG)


def test_set_warns_when_the_environment_wins(config):
    code, _, err = run_cli(
        "config", "set", "port", "9000", "--config", config, environ={"OFFLOAD_PORT": "1"}
    )
    assert code == ExitCode.OK
    assert "OFFLOAD_PORT" in err


def test_unset_removes_one_key_and_keeps_the_rest(config):
    code, _, err = run_cli("config", "unset", "sites.blog.cdn_url", "--config", config)
    assert code == ExitCode.OK, err
    assert config.read_text() == CONFIG.replace('cdn_url = "https://cdn.example.com"\n', "")
    assert load_settings(config, {}).sites["blog"].cdn_url == ""


def test_unset_of_a_key_not_in_the_file_exits_1(config):
    before = config.read_bytes()
    code, _, err = run_cli("config", "unset", "sites.blog.s_maxage", "--config", config)
    assert code == ExitCode.FAILED
    assert "not set" in err
    assert config.read_bytes() == before


def test_unset_of_a_required_setting_is_refused(config):
    before = config.read_bytes()
    code, _, err = run_cli("config", "unset", "sites.shop.storage", "--config", config)
    assert code == ExitCode.CONFIG
    assert "required setting is missing" in err
    assert config.read_bytes() == before


def test_set_mends_a_file_that_was_already_wrong_elsewhere(config):
    config.write_text(CONFIG.replace("port = 8081", "port = 0"))
    code, _, err = run_cli("config", "set", "sites.blog.max_age", "60", "--config", config)
    assert code == ExitCode.OK, err
    code, _, err = run_cli("config", "set", "port", "8081", "--config", config)
    assert code == ExitCode.OK, err
    assert load_settings(config, {}).sites["blog"].max_age == 60


def test_set_of_a_file_that_is_not_toml_is_a_config_error(tmp_path):
    path = tmp_path / "offload.toml"
    path.write_text("port = = 1\n")
    code, _, err = run_cli("config", "set", "port", "9000", "--config", path)
    assert code == ExitCode.CONFIG
    assert "invalid TOML" in err
    assert path.read_text() == "port = = 1\n"
    assert os.listdir(tmp_path) == ["offload.toml"]


def test_init_writes_a_folder_typed_relative_to_the_current_folder_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "offload.toml"
    code, _, err = run_cli(
        "config", "init", "--config", path, "--no-input", "--storage", "media",
        "--uploads-dir", "uploads",
    )  # fmt: skip
    assert code == ExitCode.OK, err
    site = load_settings(path, {}).sites["blog"]
    assert site.storage == (tmp_path / "media").as_uri()
    assert site.uploads_dir == tmp_path / "uploads"


def test_set_in_a_file_whose_sites_is_not_a_table_is_a_config_error(tmp_path):
    path = tmp_path / "offload.toml"
    path.write_text("sites = 1\n")
    code, _, err = run_cli("config", "set", "sites.blog.storage", "s3://media", "--config", path)
    assert code == ExitCode.CONFIG
    assert "sites: must be [sites.NAME] tables" in err

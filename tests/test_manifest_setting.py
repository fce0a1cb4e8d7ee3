"""The ``manifest`` setting: a SQLite path as before, or a postgresql:// URL shown masked."""

from __future__ import annotations

from pathlib import Path

from offload.config.loading import load_settings
from offload.config.sites import manifest_folder, server_sync_state
from offload.server.app import REPLAYS_FILE, create_app
from offload.server.appkeys import REPLAYS
from tests.helpers import run_cli

URL = "postgresql://offload:s3cret-pass-1234@db.internal:5432/media"
MASKED = "postgresql://offload:****@db.internal:5432/media"


def write(tmp_path: Path, manifest: str) -> Path:
    config = tmp_path / "conf" / "offload.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(f'manifest = "{manifest}"\n\n[sites.blog]\nstorage = "{tmp_path}"\n')
    return config


def test_a_manifest_path_is_still_a_file_beside_the_config(tmp_path):
    settings = load_settings(write(tmp_path, "state/m.sqlite3"), {})
    assert settings.manifest == tmp_path / "conf" / "state" / "m.sqlite3"
    assert manifest_folder(settings) == tmp_path / "conf" / "state"


def test_a_postgresql_url_is_kept_as_the_url(tmp_path):
    settings = load_settings(write(tmp_path, URL), {})
    assert settings.manifest == URL
    assert "s3cret" not in repr(settings)


def test_a_url_from_the_environment_is_taken(tmp_path):
    settings = load_settings(None, {"OFFLOAD_MANIFEST": "postgres://web@db/media"})
    assert settings.manifest == "postgres://web@db/media"
    assert manifest_folder(settings) == Path.cwd()


def test_the_password_is_masked_where_settings_are_shown(tmp_path):
    config = write(tmp_path, URL)
    code, out, err = run_cli("config", "get", "manifest", "--config", config)
    assert (code, out, err) == (0, MASKED + "\n", "")
    code, out, _ = run_cli("check-config", "--config", config)
    assert code == 0
    assert f'manifest = "{MASKED}"' in out
    assert "s3cret" not in out


def test_files_beside_the_manifest_go_to_the_config_folder_when_it_is_on_postgresql(tmp_path):
    settings = load_settings(write(tmp_path, URL), {})
    assert manifest_folder(settings) == tmp_path / "conf"
    assert server_sync_state(settings) == tmp_path / "conf" / "sync-state.sqlite3"
    app = create_app(settings)
    assert app[REPLAYS].path == tmp_path / "conf" / REPLAYS_FILE


def test_the_settings_table_says_where_a_password_may_come_from():
    code, out, _ = run_cli("settings")
    assert code == 0
    line = next(line for line in out.splitlines() if " manifest " in line)
    assert "postgresql://" in line
    assert "PGPASSWORD" in line


def test_a_url_setting_survives_pickling_with_its_folder(tmp_path):
    import pickle

    settings = load_settings(write(tmp_path, URL), {})
    again = pickle.loads(pickle.dumps(settings))  # noqa: S301 - our own bytes
    assert again.manifest == URL
    assert manifest_folder(again) == tmp_path / "conf"

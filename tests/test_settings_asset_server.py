"""An asset-server site is checked when the config loads for what it needs to be usable.

Without its key every token check fails; without host names no request reaches it; a
tolerance of 0 refuses every token; a collection the requests can never name, or a
folder inside the variants folder, is a mistake the operator hears of at once. The
key is a secret: messages name the setting, never the value.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from offload.config.loading import load_settings
from offload.errors import ConfigError, ExitCode
from offload.images.asset_server import Asset, original_key
from tests.helpers import run_cli
from tests.test_settings_transforms import no_server
from tests.test_settings_transforms import problems_of as load_problems

KEY = "specify-key-0123456789abcdef-SECRET"


def write(tmp_path: Path, lines: str) -> Path:
    path = tmp_path / "offload.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [sites.museum]
            storage = "{tmp_path.as_uri()}"
            prefix = "specify"
            """
        )
        + textwrap.dedent(lines)
    )
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """The load's problems, which never show the key."""
    problems = load_problems(path, environ)
    assert KEY not in "\n".join(problems)
    return problems


def test_a_complete_asset_server_site_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        hostnames = ["assets.example.org"]
        asset_server = true
        asset_server_key = "{KEY}"
        asset_collections = {{ KUFishvoucher = "ichthyology", KUFishtissue = "ichthyology" }}
        """,
    )
    site = load_settings(path, {}).sites["museum"]
    assert (
        original_key(site, Asset("KUFishtissue", "a.jpg")) == "specify/ichthyology/originals/a.jpg"
    )


def test_an_asset_server_without_its_key_stops_the_load_naming_the_setting(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, 'hostnames = ["assets.example.org"]\nasset_server = true\n')
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: sites.museum.asset_server_key: required when asset_server")


def test_a_site_that_is_no_asset_server_needs_no_key(tmp_path: Path) -> None:
    load_settings(write(tmp_path, "asset_server = false\n"), {})


def test_check_config_and_serve_refuse_an_asset_server_without_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'hostnames = ["*"]\nasset_server = true\n')
    no_server(monkeypatch)
    for command in ("check-config", "serve"):
        code, out, err = run_cli(command, "--config", path)
        assert code == ExitCode.CONFIG, command
        assert "sites.museum.asset_server_key: required when asset_server = true" in err
        assert "Traceback" not in err + out


def test_an_environment_site_without_its_key_names_the_variable(tmp_path: Path) -> None:
    environ = {
        "OFFLOAD_SITES__ARCHIVE__STORAGE": tmp_path.as_uri(),
        "OFFLOAD_SITES__ARCHIVE__HOSTNAMES": "archive.example.org",
        "OFFLOAD_SITES__ARCHIVE__ASSET_SERVER": "true",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ)
    assert info.value.problems == [
        "environment: OFFLOAD_SITES__ARCHIVE__ASSET_SERVER_KEY: required when asset_server ="
        " true: Specify's KEY, which signs every upload, deletion and testkey"
    ]


def test_an_asset_server_without_host_names_stops_the_load(tmp_path: Path) -> None:
    path = write(tmp_path, f'asset_server = true\nasset_server_key = "{KEY}"\n')
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: sites.museum.hostnames: required when asset_server = true")


def test_an_asset_time_tolerance_of_zero_is_refused(tmp_path: Path) -> None:
    (line,) = problems_of(write(tmp_path, "asset_time_tolerance = 0\n"))
    assert line == (
        f"{tmp_path / 'offload.toml'}: sites.museum.asset_time_tolerance:"
        " must be an integer >= 1, got 0"
    )


@pytest.mark.parametrize("coll", ["..", ".", "a\\\\b"])
def test_a_collection_name_no_request_can_use_is_refused(tmp_path: Path, coll: str) -> None:
    (line,) = problems_of(write(tmp_path, f'asset_collections = {{ "{coll}" = "fish" }}\n'))
    assert "sites.museum.asset_collections: must be collection names without '/'" in line


@pytest.mark.parametrize("folder", ["_variants", "_variants/fish"])
def test_a_collection_folder_inside_the_variants_folder_is_refused(
    tmp_path: Path, folder: str
) -> None:
    (line,) = problems_of(write(tmp_path, f'asset_collections = {{ KUFish = "{folder}" }}\n'))
    assert line == (
        f"{tmp_path / 'offload.toml'}: sites.museum.asset_collections: collection 'KUFish':"
        f" the folder {folder!r} is inside transform_variants_prefix ('_variants'), where"
        " offload deletes what it takes for variants"
    )


def test_a_collection_folder_beside_the_variants_folder_loads(tmp_path: Path) -> None:
    path = write(tmp_path, 'asset_collections = { KUFish = "_variants2", All = "" }\n')
    assert load_settings(path, {}).sites["museum"].asset_collections == (
        ("KUFish", "_variants2"),
        ("All", ""),
    )

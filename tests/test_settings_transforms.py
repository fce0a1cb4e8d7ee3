"""Transform settings are checked when the config loads, as the transform route reads them.

A preset the route cannot read, or a width past its cap, loads no more: it would be
a 400 on every request for it. The problem names the site, the preset and what is
wrong, as every bad setting does (``check-config`` and ``serve`` refuse to go on).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from offload.config.loading import load_settings
from offload.errors import ConfigError, ExitCode
from offload.images import options
from offload.images.options import MAX_DIMENSION, preset_problems, resolve
from tests.helpers import run_cli

KEY = "media/photo.jpg"


def write(tmp_path: Path, site: str = "", presets: str = "") -> Path:
    path = tmp_path / "offload.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [sites.blog]
            storage = "{tmp_path.as_uri()}"
            prefix = "media"
            hostnames = ["*"]
            {site}
            [sites.blog.transforms]
            {presets}
            """
        )
    )
    return path


def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the config load, ``serve`` returns at once instead of serving for ever."""
    from offload.server import supervisor

    monkeypatch.setattr(supervisor, "run", lambda plan, env: ExitCode.OK)


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return info.value.problems


@pytest.mark.parametrize(
    ("preset", "problem"),
    [
        ('thumb = "w=150,h=150,fit=squash"', "fit must be one of cover, contain, inside"),
        ('thumb = "w=99999"', f"w must be a whole number from 1 to {MAX_DIMENSION}"),
        ('thumb = "width=150"', "unknown option 'width'"),
        ('thumb = "w=150,fit=cover"', "fit=cover needs both w and h"),
        ('thumb = "w=150,w=200"', "option 'w' given twice"),
    ],
)
def test_a_preset_that_is_not_valid_options_stops_the_load_naming_site_and_preset(
    tmp_path: Path, preset: str, problem: str
) -> None:
    path = write(tmp_path, presets=f'{preset}\ncard = "w=600"')
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: sites.blog.transforms: preset 'thumb': {problem}")
    assert "'card'" not in line  # the good preset is not blamed


def test_an_empty_preset_stops_the_load(tmp_path: Path) -> None:
    (line,) = problems_of(write(tmp_path, presets='thumb = "  "'))
    assert "sites.blog.transforms: preset 'thumb': the preset is empty" in line


def test_a_preset_named_like_options_stops_the_load_saying_why(tmp_path: Path) -> None:
    (line,) = problems_of(write(tmp_path, presets='"w=150" = "w=150"'))
    assert "sites.blog.transforms: preset 'w=150': a preset name with '=' would be read" in line


def test_every_bad_preset_of_a_site_is_named_at_once(tmp_path: Path) -> None:
    (line,) = problems_of(write(tmp_path, presets='a = ""\nb = "q=0"\nc = "w=1"'))
    assert "preset 'a': the preset is empty" in line
    assert "preset 'b': q must be a whole number from 1 to 100" in line
    assert "preset 'c'" not in line


def test_a_bad_preset_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path)
    var = "OFFLOAD_SITES__BLOG__TRANSFORMS"
    (line,) = problems_of(path, {var: "thumb:w=150;card:f=gif"})
    assert line.startswith(f"environment: {var}: preset 'card': f must be one of")


def test_good_presets_load_and_the_route_serves_each(tmp_path: Path) -> None:
    path = write(tmp_path, presets='thumb = "w=150,h=150,fit=cover"\ncard = "f=webp,w=600"')
    site = load_settings(path, {}).sites["blog"]
    assert preset_problems(site) == []
    assert resolve(site, "thumb", KEY).canonical() == "w=150,h=150,fit=cover"
    assert resolve(site, "card", KEY).canonical() == "w=600,f=webp"


def test_check_config_and_serve_refuse_a_bad_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, presets='thumb = "w=150,fit=squash"')
    no_server(monkeypatch)
    for command in ("check-config", "serve"):
        code, out, err = run_cli(command, "--config", path)
        assert code == ExitCode.CONFIG, command
        assert "sites.blog.transforms: preset 'thumb': fit must be one of" in err
        assert "Traceback" not in err + out


# -- transform_widths ----------------------------------------------------------------


def test_transform_widths_are_bounded_by_the_routes_own_cap(tmp_path: Path) -> None:
    path = write(tmp_path, site=f"transform_widths = [480, {MAX_DIMENSION}]")
    site = load_settings(path, {}).sites["blog"]
    assert site.transform_widths == (480, MAX_DIMENSION)
    assert resolve(site, f"w={MAX_DIMENSION}", KEY).width == MAX_DIMENSION  # served unsigned


def test_a_width_past_the_routes_cap_stops_the_load(tmp_path: Path) -> None:
    path = write(tmp_path, site=f"transform_widths = [480, {MAX_DIMENSION + 1}]")
    assert problems_of(path) == [
        f"{path}: sites.blog.transform_widths: must be a list of widths in pixels from 1 to"
        f" {MAX_DIMENSION}, got [480, {MAX_DIMENSION + 1}]"
    ]


def test_the_width_cap_has_one_definition() -> None:
    from offload.config import transform_options

    assert options.MAX_DIMENSION is transform_options.MAX_DIMENSION
    assert options.parse_options is transform_options.parse_options


def test_transforms_true_says_where_the_wordpress_switch_is(tmp_path: Path) -> None:
    path = tmp_path / "offload.toml"
    path.write_text(f'[sites.blog]\nstorage = "{tmp_path.as_uri()}"\ntransforms = true\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert "sites.blog.transforms" in message
    assert "OFFLOAD_TRANSFORMS" in message

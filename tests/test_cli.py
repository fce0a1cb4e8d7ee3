"""The command line: messages, exit codes, and never a traceback unless asked."""

from __future__ import annotations

import re
import time
import tomllib
from urllib.parse import parse_qs, urlsplit

import pytest

from offload.cli import main as cli
from offload.config.loading import load_settings
from offload.config.settings import declared_settings
from offload.errors import ExitCode
from offload.http.signing import verify_url_signature
from tests.helpers import run_cli

SECRET = "s3cr3t-0123456789abcdef-0123456789"


def write_config(tmp_path, text: str):
    path = tmp_path / "offload.toml"
    path.write_text(text)
    return path


def test_version_prints_the_package_version():
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args(["--version"])
    assert done.value.code == 0


def test_settings_lists_every_declared_setting_with_type_default_and_help():
    code, out, _ = run_cli("settings")
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["SCOPE", "NAME", "TYPE", "DEFAULT"]
    for info in declared_settings():
        row = next(line for line in lines if line.split()[:2] == [info.scope, info.name])
        assert info.help in row
        assert info.default in row


def test_settings_example_is_a_valid_config_naming_every_setting(tmp_path):
    code, out, _ = run_cli("settings", "--example")
    assert code == ExitCode.OK
    tomllib.loads(out)
    for info in declared_settings():
        assert f"{info.name} = " in out, info.name
    settings = load_settings(write_config(tmp_path, out), {})
    assert list(settings.sites) == ["blog"]


def test_check_config_prints_effective_values_with_secrets_masked(tmp_path):
    config = write_config(
        tmp_path,
        f'[sites.blog]\nstorage = "file:///srv/media"\nwebhook_secret = "{SECRET}"\n',
    )
    code, out, err = run_cli("check-config", "--config", config)
    assert code == ExitCode.OK, err
    assert "sites.blog.storage = " in out
    assert SECRET not in out
    assert SECRET[-4:] in out


def test_offload_config_variable_names_the_file(tmp_path):
    config = write_config(tmp_path, 'port = 9123\n[sites.blog]\nstorage = "file:///srv/m"\n')
    code, out, _ = run_cli("check-config", environ={"OFFLOAD_CONFIG": str(config)})
    assert code == ExitCode.OK
    assert "port = 9123" in out


def test_a_bad_config_is_one_line_per_problem_and_exit_code_3(tmp_path):
    config = write_config(
        tmp_path,
        'port = "eighty"\ncolour = "blue"\n[sites.blog]\nstorage = "file:///srv/m"\n'
        f'webhook_secret = "{SECRET}\\n"\n',
    )
    code, out, err = run_cli("check-config", "--config", config)
    assert code == ExitCode.CONFIG
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"offload: {config}") for line in lines), lines
    assert any(": port: " in line for line in lines)
    assert any(": colour: " in line for line in lines)
    assert any(": sites.blog.webhook_secret: " in line for line in lines)
    assert SECRET not in err
    assert "Traceback" not in err
    assert out == ""


def test_a_missing_config_file_is_a_config_error(tmp_path):
    code, _, err = run_cli("serve", "--config", tmp_path / "nope.toml")
    assert code == ExitCode.CONFIG
    assert "nope.toml" in err
    assert "Traceback" not in err


def test_traceback_flag_adds_the_python_traceback(tmp_path):
    config = write_config(tmp_path, "port = 0\n")
    _, _, plain = run_cli("check-config", "--config", config)
    _, _, verbose = run_cli("check-config", "--config", config, "--traceback")
    assert "Traceback" not in plain
    assert "Traceback" in verbose


@pytest.mark.parametrize(
    "argv", [[], ["no-such-command"], ["serve", "--port", "eighty"], ["settings", "--bogus"]]
)
def test_usage_errors_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == ExitCode.USAGE
    assert "usage: offload" in capsys.readouterr().err


def test_serve_refuses_an_out_of_range_port(tmp_path):
    code, _, err = run_cli("serve", "--port", "70000", "--data-dir", tmp_path)
    assert code == ExitCode.USAGE
    assert "--port must be from 1 to 65535" in err


def test_ctrl_c_exits_with_code_130(monkeypatch):
    def interrupted(args, env):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_settings", interrupted)
    code, _, err = run_cli("settings")
    assert code == ExitCode.INTERRUPTED == 130
    assert "Traceback" not in err


def test_an_unexpected_error_is_one_line_and_exit_code_70(monkeypatch):
    def broken(args, env):
        raise RuntimeError("something odd")

    monkeypatch.setattr(cli, "cmd_settings", broken)
    code, _, err = run_cli("settings")
    assert code == ExitCode.INTERNAL == 70
    assert err.strip() == (
        "offload: internal error: RuntimeError: something odd "
        "(run again with --traceback to see where; please report it)"
    )


def signing_config(tmp_path, extra: str = "") -> str:
    return str(
        write_config(
            tmp_path,
            "[sites.blog]\n"
            'storage = "file:///srv/media"\n'
            'cdn_url = "https://cdn.example.com"\n'
            'signed_prefixes = ["private"]\n'
            f'signing_secret = "{SECRET}"\n' + extra,
        )
    )


def test_sign_url_prints_a_url_the_origin_accepts(tmp_path):
    code, out, err = run_cli(
        "sign-url", "--config", signing_config(tmp_path), "--expires-in", "600",
        "private/Annual report.pdf",
    )  # fmt: skip
    assert code == ExitCode.OK, err
    url = urlsplit(out.strip())
    assert f"{url.scheme}://{url.netloc}" == "https://cdn.example.com"
    assert url.path == "/private/Annual%20report.pdf"
    query = parse_qs(url.query)
    expires = int(query["expires"][0])
    assert 590 <= expires - time.time() <= 610
    assert verify_url_signature(SECRET, url.path, query["expires"][0], query["sig"][0]) is None
    assert SECRET not in out + err


def test_sign_url_refuses_a_key_that_needs_no_signature(tmp_path):
    code, out, err = run_cli("sign-url", "--config", signing_config(tmp_path), "public/a.jpg")
    assert code == ExitCode.USAGE
    assert "under none of site blog's signed_prefixes" in err
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--site", "shop"], "no site 'shop'"),
        (["--expires-in", "0"], "--expires-in must be a positive number"),
    ],
)
def test_sign_url_refuses_bad_requests_with_exit_code_2(tmp_path, argv, message):
    code, out, err = run_cli("sign-url", "--config", signing_config(tmp_path), *argv, "private/a")
    assert code == ExitCode.USAGE
    assert message in err
    assert out == ""


def test_sign_url_needs_a_site_with_a_signing_secret(tmp_path):
    config = write_config(tmp_path, '[sites.blog]\nstorage = "file:///srv/media"\n')
    code, _, err = run_cli("sign-url", "--config", config, "private/a.pdf")
    assert code == ExitCode.USAGE
    assert "site blog has no signing_secret" in err


def test_sign_url_asks_which_site_when_there_are_several(tmp_path):
    extra = '[sites.shop]\nstorage = "file:///srv/shop"\n'
    code, _, err = run_cli("sign-url", "--config", signing_config(tmp_path, extra), "private/a")
    assert code == ExitCode.USAGE
    assert "name a site with --site: blog, shop" in err


def test_check_config_warns_of_what_loads_but_will_not_work(tmp_path):
    config = write_config(
        tmp_path,
        f'[sites.blog]\nstorage = "{(tmp_path / "missing").as_uri()}"\n'
        f'uploads_dir = "{tmp_path / "no-uploads"}"\n'
        f'[sites.shop]\nstorage = "{tmp_path.as_uri()}"\nwebhook_secret = "{SECRET}"\n',
    )
    code, out, err = run_cli("check-config", "--config", config)
    assert code == ExitCode.OK, err
    assert "valid, 4 warning(s)" in out
    warnings = err.splitlines()
    assert any(f"sites.blog.storage: the folder {tmp_path / 'missing'}" in w for w in warnings)
    assert any("sites.blog.webhook_secret is empty: its webhooks are off" in w for w in warnings)
    assert any(
        f"sites.blog.uploads_dir: the folder {tmp_path / 'no-uploads'}" in w for w in warnings
    )
    assert any("sites.shop.uploads_dir is unset" in w for w in warnings)


def test_check_config_refuses_a_short_webhook_secret_unless_told(tmp_path):
    config = write_config(
        tmp_path, f'[sites.blog]\nstorage = "{tmp_path.as_uri()}"\nwebhook_secret = "q7Zx"\n'
    )
    code, out, err = run_cli("check-config", "--config", config)
    assert code == ExitCode.CONFIG
    assert "sites.blog.webhook_secret: shorter than 32 bytes" in err
    assert "q7Zx" not in err + out  # the secret is named, never shown
    code, _out, err = run_cli("check-config", "--config", config, "--allow-weak-secret")
    assert code == ExitCode.OK
    assert "sites.blog.webhook_secret: shorter than 32 bytes" in err


def test_check_config_warns_of_a_configuration_without_sites(tmp_path):
    code, _out, err = run_cli("check-config", "--config", write_config(tmp_path, "port = 8081\n"))
    assert code == ExitCode.OK
    assert "no [sites.NAME] table" in err


def test_every_line_of_the_example_config_can_be_uncommented_and_still_loads(tmp_path):
    code, example, err = run_cli("settings", "--example")
    assert code == ExitCode.OK, err
    lines = example.splitlines()
    settable = [i for i, line in enumerate(lines) if re.fullmatch(r"# [a-z_]+ = .+", line)]
    assert len(settable) > 30
    for index in settable:
        edited = list(lines)
        edited[index] = edited[index][2:]  # uncomment this one line
        config = tmp_path / "offload.toml"
        config.write_text("\n".join(edited) + "\n")
        code, _out, err = run_cli("check-config", "--config", config, "--allow-weak-secret")
        assert code == ExitCode.OK, f"{lines[index]!r}: {err}"

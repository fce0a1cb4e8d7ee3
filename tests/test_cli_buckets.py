"""check-bucket, lint-buckets and render as a user and a CI job run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offload.errors import ExitCode
from tests.helpers import run_cli


def test_check_bucket_passes_good_names_with_exit_code_0():
    code, out, err = run_cli("check-bucket", "media-bucket", "backups-2024")
    assert code == ExitCode.OK, out + err


def test_check_bucket_fails_a_dotted_name_with_exit_code_1_and_says_why():
    code, out, _ = run_cli("check-bucket", "media.example.com")
    assert code == ExitCode.FAILED
    assert "media.example.com: dot_breaks_wildcard_tls: " in out
    assert "*.s3.amazonaws.com" in out


def test_allow_dots_makes_a_dotted_name_a_warning_that_passes():
    code, out, _ = run_cli("check-bucket", "--allow-dots", "media.example.com")
    assert code == ExitCode.OK
    assert "dot_breaks_wildcard_tls" in out


def test_check_bucket_reports_every_rule_a_name_breaks_as_json():
    code, out, _ = run_cli("check-bucket", "--format", "json", "My_Bucket.", "fine-name")
    assert code == ExitCode.FAILED
    bad, good = json.loads(out)
    assert set(bad) == {"name", "profile", "valid", "tls_safe", "violations"}
    assert bad["name"] == "My_Bucket."
    assert bad["valid"] is False
    assert {v["rule"] for v in bad["violations"]} >= {
        "uppercase",
        "underscore",
        "trailing_period",
        "dot_breaks_wildcard_tls",
    }
    assert good == {
        "name": "fine-name",
        "profile": "aws",
        "valid": True,
        "tls_safe": True,
        "violations": [],
    }


def test_a_name_that_looks_like_an_option_goes_after_a_double_dash():
    code, out, _ = run_cli("check-bucket", "--", "-leading-hyphen")
    assert code == ExitCode.FAILED
    assert "leading_hyphen" in out


def test_check_bucket_follows_the_chosen_profile():
    assert run_cli("check-bucket", "--profile", "gcs", "media_bucket")[0] == ExitCode.OK
    assert run_cli("check-bucket", "--profile", "aws", "media_bucket")[0] == ExitCode.FAILED


@pytest.mark.parametrize(
    "argv",
    [
        ["check-bucket"],
        ["check-bucket", "--profile", "azure", "media"],
        ["check-bucket", "--format", "sarif", "media"],
        ["lint-buckets"],
        ["render"],
        ["render", "bucket-policy", "--bucket", "media-bucket"],
    ],
)
def test_bucket_command_usage_errors_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        run_cli(*argv)
    assert done.value.code == ExitCode.USAGE


def test_lint_buckets_finds_names_in_a_tree_and_fails_on_a_bad_one(tmp_path):
    (tmp_path / "deploy.sh").write_text("aws s3 sync ./media s3://media.example.com/uploads\n")
    (tmp_path / "ok.sh").write_text("aws s3 ls s3://media-bucket/\n")
    code, out, _ = run_cli("lint-buckets", tmp_path)
    assert code == ExitCode.FAILED
    assert f"{tmp_path / 'deploy.sh'}:1:26: dot_breaks_wildcard_tls: " in out
    assert "media-bucket" not in out.split("\n")[0]


def test_lint_buckets_passes_a_clean_tree(tmp_path):
    (tmp_path / "ok.sh").write_text("aws s3 ls s3://media-bucket/\n")
    code, _, _ = run_cli("lint-buckets", tmp_path)
    assert code == ExitCode.OK


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_lint_buckets_machine_formats_are_json(tmp_path, fmt):
    (tmp_path / "deploy.sh").write_text("aws s3 cp a s3://Media/a\n")
    code, out, _ = run_cli("lint-buckets", "--format", fmt, tmp_path)
    assert code == ExitCode.FAILED
    json.loads(out)


def test_lint_buckets_github_format_writes_workflow_commands(tmp_path):
    (tmp_path / "deploy.sh").write_text("aws s3 cp a s3://Media/a\n")
    code, out, _ = run_cli("lint-buckets", "--format", "github", tmp_path)
    assert code == ExitCode.FAILED
    assert out.startswith("::error file=")


def test_lint_buckets_on_a_missing_path_is_a_usage_error(tmp_path):
    code, _, err = run_cli("lint-buckets", tmp_path / "nope")
    assert code == ExitCode.USAGE
    assert "no such file or folder" in err
    assert "Traceback" not in err


def test_render_iam_policy_prints_json_limited_to_the_prefix():
    code, out, _ = run_cli("render", "iam-policy", "--bucket", "media-bucket", "--prefix", "blog")
    assert code == ExitCode.OK
    policy = json.loads(out)
    resources = [s["Resource"] for s in policy["Statement"]]
    assert "arn:aws:s3:::media-bucket/blog/*" in resources


def test_render_bucket_policy_takes_a_principal_and_actions():
    code, out, _ = run_cli(
        "render",
        "bucket-policy",
        "--bucket",
        "media-bucket",
        "--principal",
        "123456789012",
        "--actions",
        "get,list",
    )
    assert code == ExitCode.OK
    statements = json.loads(out)["Statement"]
    assert statements[0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statements[0]["Action"] in ("s3:GetObject", ["s3:GetObject"])


def test_render_public_access_block_blocks_everything():
    code, out, _ = run_cli("render", "public-access-block")
    assert code == ExitCode.OK
    assert set(json.loads(out).values()) == {True}


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "iam-policy", "--bucket", "Bad_Bucket"],
        ["render", "bucket-policy", "--bucket", "media-bucket", "--principal", "not-an-arn"],
        [
            "render",
            "bucket-policy",
            "--bucket",
            "media-bucket",
            "--principal",
            "123456789012",
            "--actions",
            "get,fly",
        ],
        ["render", "iam-policy", "--bucket", "media-bucket", "--prefix", "a/../b"],
    ],
)
def test_render_refuses_bad_input_with_one_line_and_exit_code_2(argv):
    code, out, err = run_cli(*argv)
    assert code == ExitCode.USAGE
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_lint_buckets_skips_what_exclude_names(tmp_path):
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "old.sh").write_text("aws s3 ls s3://Old_Bucket/\n")
    (tmp_path / "ok.sh").write_text("aws s3 ls s3://media-bucket/\n")
    assert run_cli("lint-buckets", tmp_path)[0] == ExitCode.FAILED
    assert run_cli("lint-buckets", "--exclude", "legacy", tmp_path)[0] == ExitCode.OK


def test_offloads_own_code_and_docs_pass_its_bucket_linter():
    """The tests are left out: they hold bad names on purpose."""
    root = Path(__file__).resolve().parent.parent
    shipped = ["offload", "templates", "bench", "README.md", "pyproject.toml"]
    code, out, _ = run_cli("lint-buckets", *(root / name for name in shipped))
    assert code == ExitCode.OK, out


def test_render_wordpress_plugin_prints_the_plugin_without_the_secret(tmp_path):
    config = tmp_path / "offload.toml"
    config.write_text(
        "[sites.blog]\n"
        f'storage = "{tmp_path.as_uri()}"\n'
        f'uploads_dir = "{tmp_path}"\n'
        'uploads_url = "https://blog.example.com/wp-content/uploads"\n'
        'webhook_secret = "secret-only-in-wp-config-0123"\n'
    )
    code, out, err = run_cli(
        "render",
        "wordpress-plugin",
        "--config",
        config,
        "--endpoint",
        "https://offload.example.com/",
    )
    assert code == ExitCode.OK, err
    assert err == ""
    assert out.startswith("<?php\n")
    assert "const OFFLOAD_PLUGIN_ENDPOINT = 'https://offload.example.com';" in out
    assert "secret-only-in-wp-config-0123" not in out


def test_render_wordpress_plugin_warns_about_settings_the_plugin_needs(tmp_path):
    config = tmp_path / "offload.toml"
    config.write_text(f'[sites.blog]\nstorage = "{tmp_path.as_uri()}"\n')
    code, out, err = run_cli(
        "render",
        "wordpress-plugin",
        "--config",
        config,
        "--site",
        "blog",
        "--endpoint",
        "https://offload.example.com",
    )
    assert code == ExitCode.OK
    assert "<?php" in out
    assert "offload: warning: site blog has no webhook_secret" in err


def test_render_wordpress_plugin_refuses_a_bad_endpoint_with_one_line(tmp_path):
    config = tmp_path / "offload.toml"
    config.write_text(f'[sites.blog]\nstorage = "{tmp_path.as_uri()}"\n')
    code, out, err = run_cli(
        "render", "wordpress-plugin", "--config", config, "--endpoint", "ftp://offload.example.com"
    )
    assert code == ExitCode.USAGE
    assert out == ""
    assert err.strip().splitlines() == [
        "offload: error: the endpoint must be an http(s) URL such as "
        "https://offload.example.com, got 'ftp://offload.example.com'"
    ]


def test_the_parser_offers_exactly_the_formats_and_actions_the_modules_implement():
    # The parser names them without importing lint and policies (a faster start).
    from offload.buckets import lint, policies
    from offload.cli import buckets as cli_buckets
    from offload.cli.main import build_parser

    assert all(callable(getattr(lint, f"format_{name}", None)) for name in cli_buckets.FORMATS)
    assert {n[len("format_") :] for n in dir(lint) if n.startswith("format_")} == set(
        cli_buckets.FORMATS
    )
    render = build_parser()._subparsers._group_actions[0].choices["render"]  # type: ignore[union-attr]
    policy = render._subparsers._group_actions[0].choices["bucket-policy"]
    (actions,) = [a for a in policy._actions if "--actions" in a.option_strings]
    assert f"from {','.join(policies.ACTIONS)} " in actions.help

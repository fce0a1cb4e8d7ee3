"""The bucket-name linter: where names are found, exactly, and how findings are printed.

Golden files (``tests/golden/lint.*``) hold the github and sarif output over
``tests/fixtures/lint``; after a deliberate change, regenerate them with
``OFFLOAD_UPDATE_GOLDEN=1 pytest tests/test_lint.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from offload.buckets import lint
from offload.buckets import lint_sources as lintsources
from offload.buckets.lint import Finding, LintReport
from offload.errors import ExitCode
from offload.storage import bucketname
from offload.storage.bucketname import Violation

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path("tests/fixtures/lint")  # relative: the outputs show it so
GOLDEN = ROOT / "tests" / "golden"

# file -> ([(line, column, name), ...], placeholders skipped)
EXPECTED = {
    "deploy.sh": (
        [
            (4, 18, "media-prod"),  # export S3_BUCKET=...
            (5, 16, "Media_Backups"),  # BACKUP_BUCKET="..."
            (6, 35, "media-prod"),  # s3://media-prod/uploads
            (9, 27, "db.example.com"),  # 's3://db.example.com/nightly/'
        ],
        2,  # s3://${S3_BUCKET}/..., s3://$BACKUP_BUCKET
    ),
    "crontab": ([(3, 40, "media-archive"), (4, 40, "Weekly_Media")], 0),
    "Makefile": ([(4, 26, "static-site-prod")], 1),  # s3://$(BUCKET)/
    "README.md": (
        [
            (3, 25, "media-prod"),  # in backticks
            (4, 30, "media-thumbs"),  # a Markdown link target
            (5, 25, "legacy.exports"),  # the sentence's full stop is not part of it
            (6, 19, "café-photos"),  # columns count characters, not bytes
        ],
        1,  # s3://<your-bucket>/
    ),
    "policy.json": ([(7, 34, "media-prod"), (7, 66, "media-cn"), (12, 33, "Media-Prod")], 1),
    "policy.yaml": ([(6, 22, "media-prod"), (7, 29, "gov.media")], 1),
    "main.tf": (
        [
            (3, 15, "tf-state-prod"),  # backend "s3"
            (9, 13, "media.example.com"),
            (31, 13, "media-policy-target"),  # aws_s3_bucket_policy
            (47, 48, "Uploads_2024"),  # a one-line block
        ],
        3,  # "${var.project}-logs", var.assets_bucket, the heredoc's arn:...${...}
    ),
    "template.yaml": (
        [
            (10, 19, "media-cfn-prod"),
            (14, 20, "Logs_Bucket"),
            (26, 25, "static.example.org"),  # !Sub with no ${}: a literal
            (40, 56, "media-cfn-prod"),  # arn:${AWS::Partition}:s3:::media-cfn-prod/*
        ],
        3,  # !Sub "${...}", !Ref, a nested Fn::Join; the BucketName parameter is neither
    ),
    "template.json": ([(6, 37, "media-json-prod"), (23, 24, "-media-json-")], 2),
    "wp-config.php": (
        [(4, 18, "wp-media-prod"), (7, 25, "WP_Media"), (8, 41, "drupal-files")],
        1,  # "media-{$env}"; the empty '' is no name at all
    ),
    "settings.py": (
        [
            (3, 28, "django-media-prod"),
            (4, 18, "Django_Static"),
            (6, 43, "media-default"),  # os.getenv("MEDIA_BUCKET", "media-default")
            (10, 37, "django.media.example"),  # {"bucket_name": ...}
            (15, 20, "exports-prod"),  # an s3:// URL in a setting that is not a bucket
        ],
        1,  # f"reports-{...}"
    ),
    ".env": (
        [
            (2, 11, "env-media-prod"),
            (3, 18, "Env_Media"),
            (4, 9, "env.media.example"),
            (8, 20, "env-url-bucket"),
        ],
        2,  # ${S3_BUCKET}-backup, %ASSETS_BUCKET%
    ),
    "offload.toml": (
        [
            (4, 17, "blog-media"),
            (5, 16, "Blog_Backups"),
            (8, 17, "shop.media.example"),
            (12, 17, "gallery_assets"),
        ],
        0,
    ),
}


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


def names_in(tmp_path: Path, filename: str, text: str | bytes) -> tuple[list[tuple], int]:
    path = tmp_path / filename
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    report = lint.lint_paths([path])
    return [(f.line, f.column, f.name) for f in report.findings], report.placeholders


# -- where names are found -----------------------------------------------------


def test_every_source_kind_has_a_fixture():
    assert sorted(EXPECTED) == sorted(p.name for p in (ROOT / FIXTURES).iterdir())


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_each_fixture_yields_exactly_the_expected_names_and_placeholders(in_root, filename):
    report = lint.lint_paths([FIXTURES / filename])
    found = [(f.file, f.line, f.column, f.name) for f in report.findings]
    names, placeholders = EXPECTED[filename]
    assert found == [(f"{FIXTURES.as_posix()}/{filename}", *name) for name in names]
    assert report.placeholders == placeholders
    assert report.files == 1


def test_the_fixture_tree_reports_every_name_sorted_by_file_line_and_column(in_root):
    report = lint.lint_paths([FIXTURES])
    expected = sorted(
        (f"{FIXTURES.as_posix()}/{filename}", *name)
        for filename, (names, _) in EXPECTED.items()
        for name in names
    )
    assert [(f.file, f.line, f.column, f.name) for f in report.findings] == expected
    assert report.placeholders == sum(count for _, count in EXPECTED.values())
    assert report.files == len(EXPECTED)


def test_column_points_at_the_first_character_of_the_name(in_root):
    for finding in lint.lint_paths([FIXTURES]).findings:
        text = (ROOT / finding.file).read_text(encoding="utf-8")
        line = text.split("\n")[finding.line - 1]
        assert line[finding.column - 1 :].startswith(finding.name), finding


def test_offload_config_judges_a_site_by_its_own_profile_and_addressing_style(in_root):
    report = lint.lint_paths([FIXTURES / "offload.toml"])
    by_name = {f.name: f for f in report.findings}
    assert by_name["gallery_assets"].profile == "gcs"  # bucket_profile = "gcs"
    assert by_name["gallery_assets"].valid
    dotted = by_name["shop.media.example"]  # addressing_style = "path": a warning only
    assert [(v.rule, v.severity) for v in dotted.violations] == [
        ("dot_breaks_wildcard_tls", "warning")
    ]
    assert dotted.valid
    assert not dotted.tls_safe
    assert by_name["blog-media"].profile == "aws"


def test_a_name_two_extractors_find_at_one_position_is_reported_once(tmp_path):
    text = '[sites.blog]\nstorage = "s3://blog-media/x"\n'
    assert len(list(lintsources.candidates("offload.toml", text))) == 2  # toml and s3:// scans
    assert names_in(tmp_path, "offload.toml", text) == ([(2, 17, "blog-media")], 0)


@pytest.mark.parametrize(
    ("filename", "text", "names"),
    [
        # s3:// URLs: a name runs to a slash, whitespace, a quote or a closing delimiter
        ("run.sh", "aws s3 ls s3://Media_Prod\n", ["Media_Prod"]),
        ("notes.txt", "<s3://media-prod> and (s3://media-two)", ["media-prod", "media-two"]),
        ("notes.txt", "s3://media-prod?versionId=3 s3://media-two#x", ["media-prod", "media-two"]),
        ("notes.txt", "S3://media-prod/x s3a://media-hadoop/y", ["media-prod", "media-hadoop"]),
        ("notes.txt", "mys3://not-a-bucket aws s3 ls s3://\n", []),
        ("notes.md", "Copy it to s3://media-prod.\n", ["media-prod"]),
        ("run.sh", "aws s3 ls s3://media-prod.\n", ["media-prod."]),  # not prose: a typo
        ("notes.txt", 'x = "s3://media prod"', ["media"]),
        # ARNs
        ("p.json", '"arn:aws:s3:::media-prod/*"', ["media-prod"]),
        ("p.json", '"arn:aws-us-gov:s3:::media-gov"', ["media-gov"]),
        ("p.json", '"arn:aws:s3:us-east-1:123456789012:accesspoint/ap"', []),
        ("p.json", '"arn:aws:s3express:us-east-1:1:bucket/b--use1-az4--x-s3"', []),
        # Python and PHP settings
        ("s.py", 'AWS_STORAGE_BUCKET_NAME = "media"\n', ["media"]),
        ("s.py", 'client.put_object(Bucket="uploads-prod", Key=key)\n', ["uploads-prod"]),
        ("s.py", 'if bucket == "media-x":\n    BUCKET_REGION = "eu-west-1"\n', []),
        ("s.py", 'BUCKET = "https://cdn.example.com"\nBUCKET = ""\n', []),
        ("s.py", 'BUCKET = "arn:aws:s3:::arn-bucket"\n', ["arn-bucket"]),  # via the ARN scan
        ("c.php", "'bucket' => env('AWS_BUCKET', 'laravel-media'),\n", ["laravel-media"]),
        ("c.php", "$settings['s3_bucket'] = 'Drupal_Media';\n", ["Drupal_Media"]),
        ("notes.txt", 'AWS_STORAGE_BUCKET_NAME = "not-a-setting-file"\n', []),
        # .env and shell
        ("prod.env", "S3_BUCKET=media-prod # the main one\n", ["media-prod"]),
        (".env.production", "export AWS_BUCKET_NAME='media-prod'\n", ["media-prod"]),
        ("deploy", "#!/usr/bin/env bash\nreadonly BUCKET=media-prod\n", ["media-prod"]),
        ("deploy", "#!/usr/bin/env python3\nBUCKET=media-prod\n", []),
        ("notes.txt", "BUCKET=media-prod\n", []),
        # Terraform: only `bucket`, only in aws_s3_bucket* blocks, only at the block's depth
        ("m.tf", 'resource "aws_s3_bucket" "a" {\n  bucket_prefix = "media-"\n}\n', []),
        (
            "m.tf",
            'data "aws_s3_bucket" "a" {\n  bucket = "existing-media"\n}\n',
            ["existing-media"],
        ),
        ("m.tf", 'resource "aws_instance" "a" {\n  bucket = "not-a-bucket"\n}\n', []),
        ("m.tf", 'resource "aws_s3_bucket" "a" {\n  /* bucket = "x"\n */\n}\n', []),
        # CloudFormation
        ("t.yaml", "BucketName: media-prod # the bucket\n", ["media-prod"]),
        ("t.yaml", "BucketName: media-prod\r\nOther: x\r\n", ["media-prod"]),
        ("t.yaml", "BucketName: null\nBucketName: ''\n", []),
        ("t.json", '{"BucketName":"media-min","X":1}', ["media-min"]),
    ],
)
def test_names_are_found_exactly_where_written(tmp_path, filename, text, names):
    assert [name for _, _, name in names_in(tmp_path, filename, text)[0]] == names


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("m.tf", 'resource "aws_s3_bucket" "a" {\n  bucket = var.bucket\n}\n'),
        ("m.tf", 'resource "aws_s3_bucket" "a" {\n  bucket = local.name\n}\n'),
        ("m.tf", 'resource "aws_s3_bucket" "a" {\n  bucket = format("m-%s", var.env)\n}\n'),
        ("t.yaml", "BucketName: !GetAtt Other.Name\n"),
        ("t.yaml", 'BucketName: !Sub ["${A}-media", {A: x}]\n'),
        ("t.yaml", "BucketName:\n  !Join ['-', [a, b]]\n"),
        ("run.sh", 'aws s3 cp x "s3://{{ bucket }}/x"\n'),
        ("x.sh", 'local bucket="media-$1"\n'),
    ],
)
def test_references_in_place_of_a_name_are_counted_as_placeholders(tmp_path, filename, text):
    assert names_in(tmp_path, filename, text) == ([], 1)


def test_a_reference_to_another_resource_is_neither_a_name_nor_a_placeholder(tmp_path):
    text = 'resource "aws_s3_bucket_policy" "a" {\n  bucket = aws_s3_bucket.media.id\n}\n'
    assert names_in(tmp_path, "m.tf", text) == ([], 0)


@pytest.mark.parametrize(
    "value",
    [
        "<BucketName>",
        "<your-bucket",
        "${var.name}",
        "media-${env}",
        "${AWS::AccountId}-media",
        "{{ bucket }}",
        "media-{env}",
        "$BUCKET",
        "$1",
        "$(cat name)",
        "%BUCKET%",
        "media-%s",
        "media-%(env)s",
        "*",
        "media-*",
    ],
)
def test_placeholders_are_recognised(value):
    assert lintsources.is_placeholder(value)


@pytest.mark.parametrize(
    "value", ["media-prod", "Media_Prod", "media.example.com", "100%", "a$", "var.x", "média"]
)
def test_names_are_not_mistaken_for_placeholders(value):
    assert not lintsources.is_placeholder(value)


def test_lines_and_columns_count_characters_after_a_bom_and_with_crlf(tmp_path):
    text = "\ufeffS3_BUCKET=media-prod\r\n# café ☕\r\nBUCKET=Ünïcode_bucket # ☕☕\r\n"
    names, _ = names_in(tmp_path, ".env", text.encode("utf-8"))
    assert names == [(1, 11, "media-prod"), (3, 8, "Ünïcode_bucket")]


def test_undecodable_bytes_are_replaced_not_fatal(tmp_path):
    names, _ = names_in(tmp_path, "run.sh", b"# \xff\xfe latin-1\naws s3 ls s3://media-prod\n")
    assert names == [(2, 16, "media-prod")]


# -- which files are read ------------------------------------------------------


def make_tree(root: Path) -> None:
    files = {
        "keep.sh": "aws s3 ls s3://kept-bucket\n",
        ".git/config": "url = s3://git-bucket\n",
        ".hg/hgrc": "s3://hg-bucket\n",
        ".svn/entries": "s3://svn-bucket\n",
        "node_modules/pkg/README.md": "s3://node-bucket\n",
        "env311/pyvenv.cfg": "home = /usr/bin\n",
        "env311/lib/site.py": "X = 's3://venv-bucket'\n",
        ".venv/lib/a.py": "X = 's3://dotvenv-bucket'\n",
        "venv/lib/a.py": "X = 's3://venv2-bucket'\n",
        "__pycache__/a.txt": "s3://pycache-bucket\n",
        ".tox/py311/a.txt": "s3://tox-bucket\n",
        ".terraform/modules/a.tf": "s3://terraform-bucket\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_vcs_dependency_and_virtualenv_folders_are_not_scanned(tmp_path):
    make_tree(tmp_path)
    report = lint.lint_paths([tmp_path])
    assert [f.name for f in report.findings] == ["kept-bucket"]
    assert report.files == 1


def test_a_skipped_folder_named_on_the_command_line_is_scanned(tmp_path):
    make_tree(tmp_path)
    report = lint.lint_paths([tmp_path / "node_modules"])
    assert [f.name for f in report.findings] == ["node-bucket"]


def test_binary_and_oversized_files_are_skipped(tmp_path, monkeypatch):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\x00 s3://binary-bucket/x")
    (tmp_path / "big.sh").write_text("s3://big-bucket\n" + "#" * 100)
    (tmp_path / "small.sh").write_text("s3://small-bucket\n")
    monkeypatch.setattr(lint, "MAX_FILE_BYTES", 50)
    report = lint.lint_paths([tmp_path])
    assert [f.name for f in report.findings] == ["small-bucket"]
    assert report.files == 1


def test_a_file_reached_twice_is_read_once(tmp_path):
    make_tree(tmp_path)
    report = lint.lint_paths([tmp_path, tmp_path / "keep.sh"])
    assert [f.name for f in report.findings] == ["kept-bucket"]
    assert report.files == 1


def test_exclude_patterns_match_names_and_shown_paths(in_root):
    report = lint.lint_paths([FIXTURES], exclude=["*.md", f"{FIXTURES.as_posix()}/main.tf"])
    files = {Path(f.file).name for f in report.findings}
    assert "README.md" not in files
    assert "main.tf" not in files
    assert "crontab" in files


def test_a_missing_path_raises_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError) as caught:
        lint.lint_paths([tmp_path, missing])
    assert caught.value.filename == str(missing)


def test_paths_are_shown_relative_to_the_current_folder_when_under_it(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.sh").write_text("s3://media-prod\n")
    monkeypatch.chdir(tmp_path)
    assert lint.lint_paths([tmp_path / "sub"]).findings[0].file == "sub/run.sh"
    assert lint.lint_paths([Path(".")]).findings[0].file == "sub/run.sh"
    assert lint.lint_paths([Path("./sub/")]).findings[0].file == "sub/run.sh"
    monkeypatch.chdir(tmp_path / "sub")
    outside = lint.lint_paths([Path("../sub")]).findings[0].file
    assert outside == "../sub/run.sh"  # as given
    monkeypatch.chdir(ROOT)
    assert (
        lint.lint_paths([tmp_path / "sub"]).findings[0].file == f"{tmp_path.as_posix()}/sub/run.sh"
    )


# -- findings, check_names and exit codes --------------------------------------


def test_check_names_gives_a_finding_per_name_in_the_order_given():
    findings = lint.check_names(["Media_Prod", "media-prod"])
    assert [(f.name, f.file, f.line, f.column) for f in findings] == [
        ("Media_Prod", None, None, None),
        ("media-prod", None, None, None),
    ]
    assert findings[0].violations == tuple(bucketname.validate("Media_Prod"))


def test_check_names_json_leaves_out_file_line_and_column():
    data = lint.check_names(["media.example.com"], "aws", allow_dots=True)[0].to_json()
    assert list(data) == ["name", "profile", "valid", "tls_safe", "violations"]
    assert data["valid"] is True
    assert data["tls_safe"] is False
    assert data["violations"] == [
        {
            "rule": "dot_breaks_wildcard_tls",
            "message": data["violations"][0]["message"],
            "severity": "warning",
        }
    ]


def test_a_found_name_json_has_exactly_the_documented_keys(in_root):
    finding = lint.lint_paths([FIXTURES / "crontab"]).findings[1]
    assert finding.to_json() == {
        "name": "Weekly_Media",
        "file": "tests/fixtures/lint/crontab",
        "line": 4,
        "column": 40,
        "profile": "aws",
        "valid": False,
        "tls_safe": False,
        "violations": [
            {"rule": v.rule, "message": v.message, "severity": v.severity}
            for v in bucketname.validate("Weekly_Media")
        ],
    }


def test_the_profile_is_passed_to_the_validator():
    assert lint.check_names(["media_assets"], "gcs")[0].valid
    assert not lint.check_names(["media_assets"], "aws")[0].valid


@pytest.mark.parametrize(
    ("names", "allow_dots", "code"),
    [
        ([], False, ExitCode.OK),
        (["media-prod"], False, ExitCode.OK),
        (["media-prod", "Media"], False, ExitCode.FAILED),
        (["media.example.com"], False, ExitCode.FAILED),
        (["media.example.com"], True, ExitCode.OK),  # a warning does not fail
    ],
)
def test_exit_code_is_1_only_when_a_name_breaks_an_error_rule(names, allow_dots, code):
    findings = lint.check_names(names, allow_dots=allow_dots)
    assert lint.exit_code(findings) == code
    assert lint.exit_code(LintReport(findings, 0, 1)) == code


# -- output ------------------------------------------------------------------------


def test_text_output_is_one_line_per_violation_then_a_summary(in_root):
    report = lint.lint_paths([FIXTURES / "crontab", FIXTURES / "offload.toml"])
    lines = lint.format_text(report).splitlines()
    weekly = bucketname.validate("Weekly_Media")
    assert (
        lines[0]
        == f"tests/fixtures/lint/crontab:4:40: uppercase: 'Weekly_Media': {weekly[0].message}"
    )
    assert lines[1].startswith("tests/fixtures/lint/crontab:4:40: underscore: 'Weekly_Media': ")
    assert lines[-1] == "6 bucket names in 2 files: 2 invalid, 1 with a warning"
    assert len(lines) == 2 + 2 + 1 + 1  # Weekly_Media, Blog_Backups, shop.media.example


def test_text_output_for_given_names_is_name_rule_message_or_ok():
    findings = lint.check_names(["media-prod", "Media", "a\tb", "a: b"])
    assert lint.format_text(findings).splitlines() == [
        "media-prod: ok",
        f"Media: uppercase: {bucketname.validate('Media')[0].message}",
        *[f"'a\\tb': {v.rule}: {v.message}" for v in bucketname.validate("a\tb")],
        *[f"'a: b': {v.rule}: {v.message}" for v in bucketname.validate("a: b")],
        "4 bucket names: 3 invalid",
    ]


@pytest.mark.parametrize(
    ("names", "files", "placeholders", "summary"),
    [
        ([], 0, 0, "0 bucket names in 0 files"),
        (["media-prod"], 1, 1, "1 bucket name in 1 file: all valid; 1 placeholder skipped"),
        (
            ["a.b.c", "x.y"],
            3,
            2,
            "2 bucket names in 3 files: 2 with warnings; 2 placeholders skipped",
        ),
        (["A", "media-prod"], 2, 0, "2 bucket names in 2 files: 1 invalid"),
    ],
)
def test_the_summary_counts_names_files_and_placeholders(names, files, placeholders, summary):
    report = LintReport(lint.check_names(names, allow_dots=True), placeholders, files)
    assert lint.format_text(report).splitlines()[-1] == summary


def test_json_output_is_the_list_of_findings(in_root):
    report = lint.lint_paths([FIXTURES])
    assert json.loads(lint.format_json(report.findings)) == [f.to_json() for f in report.findings]
    assert lint.format_json([]) == "[]\n"


def test_github_output_escapes_messages_and_properties():
    violation = Violation("uppercase", "50% off\r\nnext line", "error")
    finding = Finding("Media", "dir,a/b:c.sh", 3, 7, "aws", (violation,))
    assert lint.format_github([finding]) == (
        "::error file=dir%2Ca/b%3Ac.sh,line=3,col=7,title=uppercase::"
        "'Media': 50%25 off%0D%0Anext line\n"
    )


def test_github_output_uses_warning_for_warnings_and_omits_a_missing_file():
    finding = lint.check_names(["media.example.com"], allow_dots=True)[0]
    assert lint.format_github([finding]).startswith(
        "::warning title=dot_breaks_wildcard_tls::'media.example.com': a period"
    )
    assert lint.format_github([]) == ""


def test_sarif_output_is_sarif_2_1_0_with_known_rules_and_relative_locations(in_root):
    report = lint.lint_paths([FIXTURES])
    log = json.loads(lint.format_sarif(report.findings))
    assert log["version"] == "2.1.0"
    assert "sarif-2.1.0" in log["$schema"]
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "offload"
    assert driver["informationUri"].startswith("https://")
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert rule_ids == list(bucketname.RULES)
    assert all(rule["shortDescription"]["text"] for rule in driver["rules"])
    assert run["columnKind"] == "unicodeCodePoints"
    assert len(run["results"]) == sum(len(f.violations) for f in report.findings)
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("error", "warning")
        (location,) = result["locations"]
        uri = location["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.startswith("tests/fixtures/lint/")
        assert location["physicalLocation"]["region"]["startLine"] >= 1


def test_sarif_uris_are_percent_encoded_or_file_uris(tmp_path):
    violation = Violation("uppercase", "m", "error")
    relative = Finding("A", "my docs/a#1.md", 1, 1, "aws", (violation,))
    absolute = Finding("A", (tmp_path / "x.sh").as_posix(), 1, 1, "aws", (violation,))
    results = json.loads(lint.format_sarif([relative, absolute]))["runs"][0]["results"]
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results]
    assert uris == ["my%20docs/a%231.md", (tmp_path / "x.sh").as_uri()]


def test_sarif_results_for_given_names_have_no_location():
    results = json.loads(lint.format_sarif(lint.check_names(["Media"])))["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["uppercase"]
    assert "locations" not in results[0]


def _sarif_without_version(text: str) -> str:
    """The driver's version changes with every release; the golden file holds a stand-in."""
    log = json.loads(text)
    log["runs"][0]["tool"]["driver"]["version"] = "<offload version>"
    return json.dumps(log, indent=2) + "\n"


@pytest.mark.parametrize(
    ("golden", "render"),
    [
        ("lint.github.txt", lint.format_github),
        ("lint.sarif.json", lambda findings: _sarif_without_version(lint.format_sarif(findings))),
    ],
)
def test_output_over_the_fixture_tree_matches_the_golden_file(in_root, golden, render):
    actual = render(lint.lint_paths([FIXTURES]).findings)
    path = GOLDEN / golden
    if os.environ.get("OFFLOAD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
    assert path.exists(), f"{path} is missing: run with OFFLOAD_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{golden} differs: review, then OFFLOAD_UPDATE_GOLDEN=1 pytest"

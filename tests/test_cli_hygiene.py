"""The rough edges a new user hits first: closed pipes, a forgotten --config, empty archives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from offload.config.embedded import embedded_settings
from offload.config.settings import Settings
from offload.errors import ExitCode
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parent.parent


def write_config(folder: Path, text: str) -> Path:
    path = folder / "offload.toml"
    path.write_text(text)
    return path


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# -- a closed pipe ---------------------------------------------------------------------


def run_into_a_closed_pipe(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``offload`` with its standard output a pipe nobody reads any more.

    The reading end is closed before the command starts, so its first write
    fails, as ``offload settings | head -1`` does once ``head`` has its line.
    """
    read_end, write_end = os.pipe()
    os.close(read_end)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    try:
        return subprocess.run(
            [sys.executable, "-m", "offload", *map(str, argv)],
            cwd=cwd,
            env={**environ, "PYTHONPATH": str(REPO)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "argv",
    [
        ["settings"],
        ["settings", "--example"],
        ["check-config", "--config", "offload.toml"],
        ["render", "iam-policy", "--bucket", "media-bucket"],
        ["check-bucket", "media-bucket"],
    ],
)
def test_a_closed_pipe_ends_the_command_quietly_with_141_as_git_and_coreutils(tmp_path, argv):
    (tmp_path / "media").mkdir()
    write_config(
        tmp_path,
        f'[sites.blog]\nstorage = "{(tmp_path / "media").as_uri()}"\n'
        f'uploads_dir = "{tmp_path / "media"}"\nwebhook_secret = "{"s" * 40}"\n',
    )  # nothing to warn about: stderr must stay empty
    result = run_into_a_closed_pipe(*argv, cwd=tmp_path)
    assert result.stderr == ""
    assert result.returncode == ExitCode.BROKEN_PIPE == 141


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_is_not_reported_as_an_internal_error():
    from offload.cli.environment import Environment
    from offload.cli.main import main

    err = io.StringIO()
    code = main(["settings"], Environment(stdout=_ClosedPipe(), stderr=err, environ={}))
    assert code == ExitCode.BROKEN_PIPE
    assert err.getvalue() == ""


def test_sync_into_a_closed_pipe_still_finishes_and_exits_with_its_own_code(
    aws_env, tmp_path, monkeypatch
):
    from offload.cli.environment import Environment
    from offload.cli.main import main
    from tests.storage_servers import s3_client
    from tests.sync_helpers import moto_server

    monkeypatch.setenv("OFFLOAD_SYNC_STATE", str(tmp_path / "state.sqlite3"))
    source = tmp_path / "src"
    source.mkdir()
    for n in range(20):
        (source / f"f{n}.txt").write_text(str(n))
    with moto_server() as url:
        client = s3_client(endpoint_url=url)
        client.create_bucket(Bucket="closed-pipe")
        err = io.StringIO()
        code = main(
            ["sync", str(source), "s3://closed-pipe/x", "--endpoint-url", url],
            Environment(stdout=_ClosedPipe(), stderr=err, environ={}),
        )
        listed = client.list_objects_v2(Bucket="closed-pipe", Prefix="x/")["KeyCount"]
    assert (code, err.getvalue()) == (ExitCode.OK, "")
    assert listed == 20  # every upload done, none reported as failed for want of a reader


# -- a forgotten --config ----------------------------------------------------------------


@pytest.fixture
def empty_folder(tmp_path, monkeypatch):
    """An empty working folder with neither --config nor OFFLOAD_CONFIG."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "post.html").write_text('<img src="https://blog.example.com/a.jpg">')
    monkeypatch.chdir(folder)
    return folder


SITE_COMMANDS = [
    ["rewrite", "--site", "blog", "post.html"],
    ["sign-url", "--site", "blog", "private/a.pdf"],
    ["reindex", "--site", "blog"],
    ["backup", "--site", "blog"],
    ["sync", "site:blog", "restore"],
    ["sync", ".", "site:blog"],
    ["archive", "site:blog", "blog.tar.gz"],
    ["check-layout", "site:blog", "--require", "originals"],
    ["render", "wordpress-plugin", "--site", "blog", "--endpoint", "https://offload.example"],
]


@pytest.mark.parametrize("argv", SITE_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_a_command_naming_a_site_without_a_config_says_how_to_give_one_and_writes_nothing(
    empty_folder, argv
):
    before = tree(empty_folder)
    code, out, err = run_cli(*argv)
    assert code == ExitCode.USAGE
    assert "site 'blog' needs a configuration file" in err
    assert "--config PATH" in err
    assert "OFFLOAD_CONFIG=PATH" in err
    assert out == ""
    assert tree(empty_folder) == before  # no ./offload-data/.offload/webhook-secret


def test_a_site_command_with_no_config_and_no_embedded_default_yet_writes_nothing(empty_folder):
    code, _out, err = run_cli("rewrite", "post.html")
    assert code == ExitCode.USAGE
    assert "--config PATH or OFFLOAD_CONFIG=PATH" in err
    assert "only offload serve runs, on the embedded default" in err
    assert tree(empty_folder) == ["post.html"]


def test_a_site_command_runs_on_the_embedded_default_that_serve_made(empty_folder):
    embedded_settings(Settings(), empty_folder / "offload-data")  # what `offload serve` makes
    before = tree(empty_folder)
    code, out, _err = run_cli("rewrite", "post.html")
    assert code == ExitCode.OK
    assert out == '<img src="https://blog.example.com/a.jpg">'
    assert tree(empty_folder) == before


def test_a_config_file_still_names_the_site(empty_folder):
    config = write_config(empty_folder, '[sites.blog]\nstorage = "file:///srv/media"\n')
    code, _out, err = run_cli("rewrite", "post.html", environ={"OFFLOAD_CONFIG": str(config)})
    assert code == ExitCode.OK, err


# -- sign-url outside signed_prefixes ---------------------------------------------------------


def test_sign_url_outside_the_signed_prefixes_is_an_error_and_prints_no_url(tmp_path):
    config = write_config(
        tmp_path,
        '[sites.blog]\nstorage = "file:///srv/media"\ncdn_url = "https://cdn.example.com"\n'
        'signed_prefixes = ["private"]\nsigning_secret = "s3cr3t-0123456789abcdef-0123456789"\n',
    )
    code, out, err = run_cli("sign-url", "--config", config, "public/a.jpg")
    assert code == ExitCode.USAGE
    assert out == ""
    assert err == (
        "offload: error: cannot sign 'public/a.jpg': it is under none of site blog's "
        "signed_prefixes (private)\n"
    )


# -- archive of nothing -------------------------------------------------------------------


@pytest.fixture
def archive_config(tmp_path):
    store = tmp_path / "store"
    (store / "media" / "2024").mkdir(parents=True)
    (store / "media" / "2024" / "a.jpg").write_bytes(b"jpeg")
    return write_config(
        tmp_path,
        f'[sites.blog]\nstorage = "{store.as_uri()}"\nprefix = "media"\n'
        f'[sites.typo]\nstorage = "{store.as_uri()}"\nprefix = "meida"\n',
    )


def test_archive_of_a_prefix_with_nothing_in_it_exits_1_says_so_and_writes_no_archive(
    tmp_path, archive_config
):
    out = tmp_path / "out" / "typo.tar.gz"
    out.parent.mkdir()
    code, stdout, err = run_cli("archive", "--config", archive_config, "site:typo", out)
    assert code == ExitCode.FAILED
    assert stdout == ""
    assert "nothing to archive" in err
    assert "/store/meida/ holds no objects" in err
    assert list(out.parent.iterdir()) == []  # neither the archive nor a partial file


def test_archive_of_nothing_to_stdout_writes_not_a_byte(archive_config):
    raw = io.BytesIO()
    from offload.cli.environment import Environment
    from offload.cli.main import main

    err = io.StringIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8")
    code = main(
        ["archive", "--config", str(archive_config), "site:typo", "-"],
        Environment(stdout=stdout, stderr=err, environ={}),
    )
    assert code == ExitCode.FAILED
    assert "nothing to archive" in err.getvalue()
    assert raw.getvalue() == b""


def test_archive_of_a_prefix_with_objects_still_succeeds(tmp_path, archive_config):
    out = tmp_path / "blog.tar.gz"
    code, stdout, err = run_cli("archive", "--config", archive_config, "site:blog", out)
    assert (code, err) == (ExitCode.OK, "")
    assert stdout == f"archived 1 objects (4 bytes) to {out}\n"


# -- render and dotted buckets -----------------------------------------------------------------


RENDERS = [
    ["render", "iam-policy"],
    ["render", "bucket-policy", "--principal", "123456789012"],
]


@pytest.mark.parametrize("argv", RENDERS, ids=lambda argv: argv[1])
def test_render_refuses_a_dotted_bucket_as_config_does(argv):
    code, out, err = run_cli(*argv, "--bucket", "media.example.com")
    assert code == ExitCode.USAGE
    assert out == ""
    assert "invalid bucket name 'media.example.com'" in err
    assert 'addressing_style = "path"' in err
    assert "--allow-dots" in err


@pytest.mark.parametrize("argv", RENDERS, ids=lambda argv: argv[1])
def test_render_takes_a_dotted_bucket_with_allow_dots(argv):
    code, out, err = run_cli(*argv, "--bucket", "media.example.com", "--allow-dots")
    assert (code, err) == (ExitCode.OK, "")
    assert "arn:aws:s3:::media.example.com" in out


def test_the_rendered_iam_policy_lets_sync_list_incomplete_uploads():
    code, out, _err = run_cli("render", "iam-policy", "--bucket", "media-bucket", "--prefix", "b")
    assert code == ExitCode.OK
    uploads = [
        s for s in json.loads(out)["Statement"] if s["Action"] == "s3:ListBucketMultipartUploads"
    ]
    assert uploads == [
        {
            "Sid": "ListIncompleteUploads",
            "Effect": "Allow",
            "Action": "s3:ListBucketMultipartUploads",
            "Resource": "arn:aws:s3:::media-bucket",
        }
    ]

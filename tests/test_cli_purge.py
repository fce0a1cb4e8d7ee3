"""``offload purge`` as a user runs it, against a fake Cloudflare on a loopback port.

The command runs its own event loop (``asyncio.run``), so the fake runs in a
thread with a loop of its own (``tests.fake_cdns.ThreadedFake``); tests/test_sync_purge.py
uses the same.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload.config.loading import load_settings
from offload.errors import ExitCode
from offload.manifest import PurgeItem, open_manifest
from offload.purge.providers.items import folder_tag
from tests.fake_cdns import FakeCDN, FakeCloudflare, ThreadedFake
from tests.helpers import free_port, run_cli

TOKEN = "cdn-token-0123456789abcdef-SECRET"
ZONE = "zone42"
PREFIX = "wp-content/uploads"
CDN_URL = "https://cdn.example.com"


def cloudflare_files(fake: FakeCDN) -> list[str]:
    """Every URL the fake Cloudflare purged, in order, repeats kept."""
    return [url for a in fake.accepted if "files" in (a.body or {}) for url in a.body["files"]]


@pytest.fixture
def cloudflare() -> Iterator[ThreadedFake]:
    with ThreadedFake(FakeCloudflare(token=TOKEN, zone=ZONE)) as served:
        yield served


def write_config(tmp_path: Path, api_url: str, settings: str = "") -> Path:
    (tmp_path / "bucket").mkdir(exist_ok=True)
    config = tmp_path / "offload.toml"
    config.write_text(
        f'manifest = "{tmp_path / "manifest.sqlite3"}"\n'
        f"{settings}\n"
        "[sites.blog]\n"
        f'storage = "{(tmp_path / "bucket").as_uri()}"\n'
        f'prefix = "{PREFIX}"\n'
        f'cdn_url = "{CDN_URL}"\n'
        'hostnames = ["media.example.com"]\n'
        'purge = "cloudflare"\n'
        f'purge_api_url = "{api_url}"\n'
        f'cloudflare_zone_id = "{ZONE}"\n'
        f'cloudflare_api_token = "{TOKEN}"\n'
        "\n"
        "[sites.shop]\n"
        f'storage = "{(tmp_path / "bucket").as_uri()}"\n'
        'prefix = "shop"\n'
        'cdn_url = "https://cdn.shop.example"\n'
    )
    return config


@pytest.fixture
def config(tmp_path: Path, cloudflare: ThreadedFake) -> Path:
    return write_config(tmp_path, cloudflare.url("/client/v4"))


def purge(config: Path, *args: str) -> tuple[int, str, str]:
    code, out, err = run_cli("purge", "--config", config, "--site", "blog", *args)
    assert TOKEN not in out + err
    return code, out, err


def waiting(config: Path) -> int:
    manifest = open_manifest(config.parent / "manifest.sqlite3")
    try:
        return manifest.purge_queue().waiting
    finally:
        manifest.close()


def cdn(key: str) -> str:
    return f"{CDN_URL}/{PREFIX}/{key}"


# -- what it purges --------------------------------------------------------------------


def test_a_key_and_a_url_are_purged_by_their_cdn_url(config, cloudflare):
    code, out, err = purge(
        config, f"{PREFIX}/2024/05/a.jpg", cdn("2024/05/b.jpg"),
        f"https://media.example.com/{PREFIX}/2024/05/c%20d.jpg",
    )  # fmt: skip
    assert (code, err) == (ExitCode.OK, "")
    urls = [cdn("2024/05/a.jpg"), cdn("2024/05/b.jpg"), cdn("2024/05/c%20d.jpg")]
    assert out.splitlines() == [f"purge: {url}" for url in urls]
    assert cloudflare_files(cloudflare.fake) == urls  # one request, each once
    assert len(cloudflare.fake.accepted) == 1
    assert waiting(config) == 0


def test_a_tag_and_a_prefix_are_purged(config, cloudflare):
    code, out, err = purge(config, "--tag", "summer-sale", "--prefix", f"{PREFIX}/2024/06")
    assert (code, err) == (ExitCode.OK, "")
    assert sorted(out.splitlines()) == [
        f"purge: prefix {PREFIX}/2024/06",
        "purge: tag summer-sale",
    ]
    # The origin sends Cache-Tag, so the folder goes as the tag its objects carry.
    folder = folder_tag(load_settings(config, {}).sites["blog"], f"{PREFIX}/2024/06")
    bodies = [accepted.body for accepted in cloudflare.fake.accepted]
    assert [sorted(body["tags"]) for body in bodies] == [sorted([folder, "summer-sale"])]
    assert waiting(config) == 0


def test_everything_is_refused_without_force_and_sent_with_it(config, cloudflare):
    code, out, err = purge(config, "--everything")
    assert code == ExitCode.USAGE
    assert "--force" in err
    assert out == ""
    assert cloudflare.fake.accepted == []
    assert waiting(config) == 0

    code, out, err = purge(config, "--everything", "--force")
    assert (code, err) == (ExitCode.OK, "")
    assert out.splitlines() == ["purge: everything"]
    assert len(cloudflare.fake.accepted) == 1
    assert waiting(config) == 0


def test_a_dry_run_says_what_it_would_purge_and_sends_and_writes_nothing(config, cloudflare):
    code, out, err = purge(config, "--dry-run", f"{PREFIX}/a.jpg", "--tag", "t", "--everything",
                           "--force")  # fmt: skip
    assert (code, err) == (ExitCode.OK, "")
    assert out.splitlines() == [
        f"(dryrun) purge: {cdn('a.jpg')}",
        "(dryrun) purge: tag t",
        "(dryrun) purge: everything",
    ]
    assert cloudflare.fake.accepted == []
    assert waiting(config) == 0


# -- what it refuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("https://elsewhere.example.com/wp-content/uploads/a.jpg", "is not a URL of site 'blog'"),
        ("other/a.jpg", "is outside the prefix 'wp-content/uploads/' of site 'blog'"),
        (f"{PREFIX}/../secret", "'wp-content/uploads/../secret'"),
    ],
)
def test_a_url_of_another_host_or_a_key_outside_the_prefix_is_refused(
    config, cloudflare, target, says
):
    code, out, err = purge(config, cdn("fine.jpg"), target)
    assert code == ExitCode.USAGE
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert says in err
    assert "Traceback" not in err
    assert cloudflare.fake.accepted == []  # nothing, not even the good one
    assert waiting(config) == 0


def test_a_site_that_does_not_purge_is_refused(config, cloudflare):
    code, out, err = run_cli("purge", "--config", config, "--site", "shop", "shop/a.jpg")
    assert code == ExitCode.USAGE
    assert out == ""
    assert "site 'shop' has purge = \"none\"" in err
    assert cloudflare.fake.accepted == []
    assert waiting(config) == 0


# -- when the API is down -----------------------------------------------------------------


def test_with_the_api_down_the_purge_waits_in_the_outbox_and_a_later_run_sends_it(
    tmp_path, cloudflare
):
    down = write_config(tmp_path, f"http://127.0.0.1:{free_port()}/client/v4")
    code, out, err = purge(down, "--wait", "0.5", f"{PREFIX}/a.jpg")
    assert code == ExitCode.FAILED
    assert out == ""
    assert f"purge waiting: {cdn('a.jpg')}" in err
    assert "offload serve sends it" in err

    code, out, err = purge(down, "--status")
    assert (code, err) == (ExitCode.OK, "")
    assert out.splitlines()[0].startswith("waiting: 1 (0 being sent now)")
    assert f"blog  {cdn('a.jpg')}  attempts 1" in out
    assert "last error: cloudflare" in out

    # The API is back; the entry's backoff is over; a later run sends it with its own.
    up = write_config(tmp_path, cloudflare.url("/client/v4"))
    with sqlite3.connect(tmp_path / "manifest.sqlite3") as db:
        db.execute("UPDATE purge_outbox SET next_at = 0")
    db.close()
    code, out, err = purge(up, f"{PREFIX}/b.jpg")
    assert (code, err) == (ExitCode.OK, "")
    assert sorted(cloudflare_files(cloudflare.fake)) == [cdn("a.jpg"), cdn("b.jpg")]
    assert waiting(up) == 0


def test_a_refused_token_is_said_at_once_without_the_token(tmp_path, cloudflare):
    cloudflare.fake.token = "the-right-token-0123456789abcdef"
    config = write_config(tmp_path, cloudflare.url("/client/v4"))
    # A refusal is tried again in 5 minutes, after --wait ends: said at once.
    code, out, err = purge(config, "--wait", "200", f"{PREFIX}/a.jpg")
    assert code == ExitCode.FAILED
    assert out == ""
    assert f"purge waiting: {cdn('a.jpg')}: cloudflare: HTTP 403" in err
    assert "Authentication error" in err
    assert "the-right-token" not in err


def test_status_lists_waiting_and_given_up_entries(tmp_path, cloudflare):
    config = write_config(tmp_path, cloudflare.url("/client/v4"), "purge_give_up_after = 0.001")
    manifest = open_manifest(tmp_path / "manifest.sqlite3")
    manifest.enqueue_purges([PurgeItem("blog", "url", cdn("later.jpg"))])
    manifest.close()
    with sqlite3.connect(tmp_path / "manifest.sqlite3") as db:  # not due for an hour
        db.execute("UPDATE purge_outbox SET next_at = strftime('%s','now') + 3600")
    db.close()
    cloudflare.fake.fail_next(100, 503)

    code, out, err = purge(config, "--wait", "5", f"{PREFIX}/gone.jpg")

    assert code == ExitCode.FAILED
    assert f"purge given up: {cdn('gone.jpg')}" in err
    assert "503" in err
    assert out == ""
    code, out, err = purge(config, "--status")
    assert (code, err) == (ExitCode.OK, "")
    lines = out.splitlines()
    assert lines[0].startswith("waiting: 1 (0 being sent now)")
    assert f"  blog  {cdn('later.jpg')}  attempts 0" in out
    assert "given up: 1" in lines
    (given_up,) = [line for line in lines if cdn("gone.jpg") in line]
    assert "after 1 attempts: cloudflare: HTTP 503" in given_up


def test_status_without_a_manifest_says_so_and_creates_no_file(tmp_path):
    config = write_config(tmp_path, "http://127.0.0.1:9/client/v4")
    before = sorted(p.name for p in tmp_path.iterdir())

    code, out, err = purge(config, "--status")

    assert (code, err) == (ExitCode.OK, "")
    assert out.splitlines() == [
        f"no manifest yet at {tmp_path / 'manifest.sqlite3'}: no purges queued",
        "waiting: 0 (0 being sent now)",
        "given up: 0",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before

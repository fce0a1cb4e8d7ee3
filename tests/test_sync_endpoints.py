"""``offload sync``'s sides and endpoints: an endpoint that refuses is said at once and
in plain words, a missing source folder exits 4, and a folder syncs to a folder
(``file:///abs/path`` too) with the same flags as a bucket."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import pytest

from offload.storage import crt
from tests.helpers import run_cli
from tests.sync_helpers import (
    HOUR_NS,
    write_tree,
)

# Each test's own sync state cache, and its tmp_path as the working folder.
pytestmark = pytest.mark.usefixtures("sync_state")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path, with its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def age(path: Path, ns: int = HOUR_NS) -> None:
    """Date ``path`` ``ns`` in the past (as a file untouched for a while)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns - ns, stat.st_mtime_ns - ns))


# -- an endpoint that refuses ---------------------------------------------------------------


def test_a_refused_endpoint_is_said_in_plain_words_with_exit_4_before_any_crt_client(
    aws_env, monkeypatch: pytest.MonkeyPatch
):
    write_tree(Path("data"), {"a.jpg": b"a"})
    built: list[object] = []
    real = crt.for_storage
    monkeypatch.setattr(crt, "for_storage", lambda *a, **k: built.append(a) or real(*a, **k))
    port = closed_port()
    code, out, err = run_cli(
        "sync", "data", "s3://bucket-x/p", "--endpoint-url", f"http://127.0.0.1:{port}"
    )
    assert code == 4
    assert out == ""
    assert err.count("\n") == 1
    assert f"connection refused by 127.0.0.1:{port}" in err
    assert "AWS_IO" not in err
    assert built == []  # awscrt, which retries for seconds, was never asked


def test_a_refused_endpoint_stops_a_download_too(aws_env):
    port = closed_port()
    code, out, err = run_cli(
        "sync", "s3://bucket-x", "restore", "--endpoint-url", f"http://127.0.0.1:{port}"
    )
    assert (code, out) == (4, "")
    assert f"connection refused by 127.0.0.1:{port}" in err
    assert not Path("restore").exists()


def test_the_probe_is_one_connection_bounded_by_a_timeout_under_two_seconds():
    from offload.sync import preflight

    accepted: list[int] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def accept() -> None:
            connection, _ = server.accept()
            accepted.append(1)
            connection.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        assert asyncio.run(preflight.endpoint_problem(f"http://127.0.0.1:{port}")) is None
        thread.join(5)
    assert accepted == [1]
    assert 0 < preflight.PROBE_TIMEOUT < 2


def test_an_endpoint_that_never_answers_is_given_up_after_the_probe_timeout(
    monkeypatch: pytest.MonkeyPatch,
):
    from offload.sync import preflight

    attempts: list[tuple[str, int]] = []

    async def hangs(host: str, port: int, **_: object) -> None:
        attempts.append((host, port))
        await asyncio.Event().wait()

    monkeypatch.setattr(asyncio, "open_connection", hangs)
    problem = asyncio.run(preflight.endpoint_problem("https://s3.example.test", seconds=0.05))
    assert problem == "no answer from s3.example.test:443 within 0.05 s"
    assert attempts == [("s3.example.test", 443)]  # one attempt, no retry


def test_an_endpoint_behind_a_proxy_is_not_probed(monkeypatch: pytest.MonkeyPatch):
    from offload.sync import preflight

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert asyncio.run(preflight.endpoint_problem(f"http://192.0.2.1:{closed_port()}")) is None


# -- a source folder that is not there ------------------------------------------------------


@pytest.mark.parametrize("dst", ["s3://bucket-x/p", "elsewhere"])
def test_a_missing_source_folder_exits_4_as_the_exit_code_table_says(dst: str):
    code, out, err = run_cli("sync", "missing", dst, "--endpoint-url", "http://127.0.0.1:9")
    assert (code, out) == (4, "")
    assert err == "offload: error: missing/: no such folder\n"


def test_a_source_that_is_a_file_exits_4():
    Path("a.txt").write_text("a")
    code, _out, err = run_cli("sync", "a.txt", "there")
    assert code == 4
    assert "not a folder" in err


# -- folder to folder -----------------------------------------------------------------------


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write_tree(root, {"a.jpg": b"aa", "2024/05/b.png": b"bbb", "notes.txt": b"n"})
    for path in root.rglob("*"):
        if path.is_file():
            age(path)
    return root


def test_a_folder_syncs_to_a_folder_with_mtimes_kept_and_nothing_on_a_second_run(src: Path):
    code, out, err = run_cli("sync", "src", "dst")
    assert (code, err) == (0, "")
    assert sorted(out.splitlines()) == [
        "copy: src/2024/05/b.png to dst/2024/05/b.png",
        "copy: src/a.jpg to dst/a.jpg",
        "copy: src/notes.txt to dst/notes.txt",
    ]
    dst = Path("dst")
    assert tree(dst) == tree(src)
    for rel in tree(src):
        assert (dst / rel).stat().st_mtime_ns == (src / rel).stat().st_mtime_ns
    assert run_cli("sync", "src", "dst") == (0, "", "")


def test_folder_to_folder_copies_what_changed_and_deletes_only_with_delete(src: Path):
    assert run_cli("sync", "src", "dst")[0] == 0
    (src / "a.jpg").write_bytes(b"AA")  # same size, new mtime
    (Path("dst") / "extra.txt").write_text("x")
    assert run_cli("sync", "src", "dst") == (0, "copy: src/a.jpg to dst/a.jpg\n", "")
    assert (Path("dst") / "extra.txt").exists()
    assert run_cli("sync", "src", "dst", "--delete") == (0, "delete: dst/extra.txt\n", "")
    assert tree(Path("dst")) == tree(src)


def test_folder_to_folder_takes_dry_run_exclude_and_size_only(src: Path):
    code, out, _ = run_cli("sync", "src", "dst", "--dry-run")
    assert code == 0
    assert "(dryrun) copy: src/a.jpg to dst/a.jpg" in out.splitlines()
    assert not Path("dst").exists()

    assert run_cli("sync", "src", "dst", "--exclude", "*.txt")[0] == 0
    assert sorted(tree(Path("dst"))) == ["2024/05/b.png", "a.jpg"]

    (src / "a.jpg").write_bytes(b"AA")  # same size: --size-only leaves it
    assert run_cli("sync", "src", "dst", "--size-only", "--exclude", "*.txt") == (0, "", "")
    assert (Path("dst") / "a.jpg").read_bytes() == b"aa"


def test_folder_to_folder_checksum_compares_content_not_times(src: Path):
    assert run_cli("sync", "src", "dst")[0] == 0
    copied = Path("dst") / "a.jpg"
    copied.write_bytes(b"zz")  # same size, different bytes
    os.utime(copied, ns=((src / "a.jpg").stat().st_atime_ns, (src / "a.jpg").stat().st_mtime_ns))
    assert run_cli("sync", "src", "dst") == (0, "", "")  # the quick check sees no change
    assert run_cli("sync", "src", "dst", "--checksum") == (0, "copy: src/a.jpg to dst/a.jpg\n", "")
    assert copied.read_bytes() == b"aa"


def test_a_file_url_is_a_folder_on_either_side(src: Path, tmp_path: Path):
    url = (tmp_path / "dst").as_uri()
    code, out, err = run_cli("sync", src.as_uri(), url)
    assert (code, err) == (0, "")
    assert f"copy: {src.as_uri()}/a.jpg to {url}/a.jpg" in out.splitlines()
    assert tree(tmp_path / "dst") == tree(src)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sync", "src", "src/2024"], "inside"),
        (["sync", "src/2024", "src"], "inside"),
        (["sync", "src", "./src/"], "same folder"),
        (["sync", "src", "file:relative/path"], "absolute path"),
        (["sync", "src", "file://host/x"], "no host"),
    ],
)
def test_overlapping_folders_and_bad_file_urls_are_usage_errors(src: Path, argv, says):
    code, out, err = run_cli(*argv)
    assert (code, out) == (2, "")
    assert says in err
    assert err.count("\n") == 1

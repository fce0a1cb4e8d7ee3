"""The local walk of ``offload sync``: S3 key order, symlinks, and every awkward file kind."""

from __future__ import annotations

import os
import socket
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload.sync.walk import PARTIAL_PREFIX, walk


class Warnings:
    """Collects what the walk warns about: (relative path, message)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, rel: str, text: str) -> None:
        self.seen.append((rel, text))

    @property
    def paths(self) -> list[str]:
        return [rel for rel, _ in self.seen]


def rels(root: Path, warnings: Warnings | None = None) -> list[str]:
    return [f.rel for f in walk(str(root), warnings or Warnings())]


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walk_yields_tricky_names_in_s3_key_order(tmp_path):
    names = ["a-b", "a/b", "a0", "é", "Z", "_", "a.b/c", "a/b/c", "A", "a b", "~"]
    # "a/b" and "a/b/c" cannot both be files: keep the deeper one as a file under a/b/.
    files = [n for n in names if n != "a/b"] + ["a/b/d"]
    for name in files:
        touch(tmp_path / name)
    walked = rels(tmp_path)
    assert walked == sorted(files, key=lambda s: s.encode("utf-8"))
    assert walked.index("a-b") < walked.index("a/b/c") < walked.index("a0")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sets(
        st.lists(
            st.text(
                st.characters(
                    codec="utf-8",
                    exclude_characters="/\x00",
                    exclude_categories=("Cs",),
                ),
                min_size=1,
                max_size=4,
            ).filter(lambda s: s not in (".", "..")),
            min_size=1,
            max_size=3,
        ).map(tuple),
        min_size=1,
        max_size=8,
    )
)
def test_walk_order_is_utf8_byte_order_for_any_names(tmp_path_factory, paths):
    root = tmp_path_factory.mktemp("walk")
    written: set[str] = set()
    for parts in paths:
        rel = "/".join(parts)
        # A path cannot be both a file and a folder: skip whichever comes second.
        if any(other.startswith(rel + "/") or rel.startswith(other + "/") for other in written):
            continue
        touch(root.joinpath(*parts))
        written.add(rel)
    assert rels(root) == sorted(written, key=lambda s: s.encode("utf-8"))


def test_walk_reports_size_mtime_and_path_of_each_file(tmp_path):
    path = touch(tmp_path / "sub" / "a.jpg", b"12345")
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    [found] = walk(str(tmp_path), Warnings())
    assert (found.rel, found.size, found.mtime_ns) == ("sub/a.jpg", 5, 1_700_000_000_123_456_789)
    assert found.path == str(path)


def test_walk_follows_symlinks_to_files_and_to_folders(tmp_path):
    outside = tmp_path / "outside"
    touch(outside / "deep" / "x.jpg", b"deep")
    touch(outside / "file.jpg", b"file")
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked-folder").symlink_to(outside / "deep")
    (root / "linked-file.jpg").symlink_to(outside / "file.jpg")
    warnings = Warnings()
    files = {f.rel: f for f in walk(str(root), warnings)}
    assert sorted(files) == ["linked-file.jpg", "linked-folder/x.jpg"]
    assert files["linked-file.jpg"].size == 4
    assert warnings.seen == []


def test_walk_skips_a_link_to_an_ancestor_folder_as_a_loop_and_goes_on(tmp_path):
    touch(tmp_path / "a" / "b" / "file.jpg")
    touch(tmp_path / "z.jpg")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "root").symlink_to(tmp_path)
    warnings = Warnings()
    assert rels(tmp_path, warnings) == ["a/b/file.jpg", "z.jpg"]
    assert sorted(warnings.paths) == ["a/b/up", "a/root"]
    assert all("loop" in text for _, text in warnings.seen)


def test_walk_follows_a_link_to_a_sibling_folder_that_is_no_loop(tmp_path):
    touch(tmp_path / "a" / "x.jpg")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    warnings = Warnings()
    assert rels(tmp_path, warnings) == ["a/x.jpg", "b/x.jpg"]
    assert warnings.seen == []


def test_walk_warns_of_a_broken_link_and_a_link_to_itself(tmp_path):
    touch(tmp_path / "ok.jpg")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "self").symlink_to(tmp_path / "self")
    warnings = Warnings()
    assert rels(tmp_path, warnings) == ["ok.jpg"]
    messages = dict(warnings.seen)
    assert "broken symbolic link" in messages["broken.jpg"]
    assert "loop" in messages["self"]


def test_walk_skips_a_name_that_is_not_utf8_with_a_printable_warning(tmp_path):
    touch(tmp_path / "good.jpg")
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    os.close(os.open(bad, os.O_CREAT | os.O_WRONLY, 0o644))
    bad_folder = os.path.join(os.fsencode(tmp_path), b"dir\xff")
    os.mkdir(bad_folder)
    os.close(os.open(os.path.join(bad_folder, b"inside.jpg"), os.O_CREAT | os.O_WRONLY, 0o644))
    warnings = Warnings()
    assert rels(tmp_path, warnings) == ["good.jpg"]
    assert len(warnings.seen) == 2
    for _, text in warnings.seen:
        assert "not valid UTF-8" in text
        text.encode("utf-8")  # printable: no lone surrogates


def test_walk_skips_a_fifo_and_a_socket_with_warnings_without_blocking(tmp_path):
    touch(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "sock"))
        warnings = Warnings()
        assert rels(tmp_path, warnings) == ["a.jpg"]
    messages = dict(warnings.seen)
    assert "FIFO" in messages["pipe"]
    assert "socket" in messages["sock"]


def test_walk_skips_a_device_with_a_warning(tmp_path):
    if not os.path.exists("/dev/null"):
        pytest.fail("/dev/null is missing")
    (tmp_path / "null").symlink_to("/dev/null")
    warnings = Warnings()
    assert rels(tmp_path, warnings) == []
    assert "device" in dict(warnings.seen)["null"]


def test_walk_keeps_names_that_differ_only_in_unicode_normalisation_apart(tmp_path):
    nfc = unicodedata.normalize("NFC", "café.jpg")
    nfd = unicodedata.normalize("NFD", "café.jpg")
    assert nfc != nfd
    touch(tmp_path / nfc, b"composed")
    touch(tmp_path / nfd, b"decomposed!")
    files = {f.rel: f.size for f in walk(str(tmp_path), Warnings())}
    assert files == {nfc: len(b"composed"), nfd: len(b"decomposed!")}


def test_walk_warns_and_goes_on_when_a_folder_vanishes_midway(tmp_path):
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "b" / "x.jpg")
    touch(tmp_path / "c.jpg")
    warnings = Warnings()
    files = walk(str(tmp_path), warnings)
    assert next(files).rel == "a.jpg"
    (tmp_path / "b" / "x.jpg").unlink()
    (tmp_path / "b").rmdir()
    assert [f.rel for f in files] == ["c.jpg"]
    assert "vanished" in dict(warnings.seen)["b/"]


def test_walk_leaves_out_partial_downloads_and_reports_them_as_leftovers(tmp_path):
    touch(tmp_path / "a.jpg")
    partial = touch(tmp_path / "sub" / f"{PARTIAL_PREFIX}1234abcd-a.jpg")
    leftovers: list[str] = []
    warnings = Warnings()
    assert [f.rel for f in walk(str(tmp_path), warnings, leftovers.append)] == ["a.jpg"]
    assert leftovers == [str(partial)]
    assert warnings.seen == []


def test_walk_of_a_missing_root_or_a_file_raises_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        list(walk(str(tmp_path / "missing"), Warnings()))
    touch(tmp_path / "file")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        list(walk(str(tmp_path / "file"), Warnings()))

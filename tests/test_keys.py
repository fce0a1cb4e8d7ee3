"""Key safety: the one rule set every layer uses."""

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from offload.keys import (
    MAX_KEY_BYTES,
    UnsafeKey,
    is_versioned_key,
    join_key,
    key_problem,
    upload_key,
    upload_path_of,
    upload_path_problem,
    validate_key,
    version_segment,
)


@pytest.mark.parametrize(
    "key",
    [
        "photo.jpg",
        "wp-content/uploads/2024/05/photo-300x200.jpg",
        "a b/c+d%20e#f?g&h.jpg",
        "Zürich/東京/😀.png",
        ".well-known/file",
        "a/.hidden",
        "x" * MAX_KEY_BYTES,
    ],
)
def test_safe_keys_are_accepted_unchanged(key):
    assert validate_key(key) == key
    assert key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "empty"),
        ("../etc/passwd", "'..' segment"),
        ("a/../b", "'..' segment"),
        ("a/./b", "'.' segment"),
        (".", "'.' segment"),
        ("/abs", "empty segment"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a\\b", "backslash"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\x7fb", "control character"),
        ("a\x85b", "control character"),
        ("x" * (MAX_KEY_BYTES + 1), "1025 bytes"),
        ("é" * 513, "1026 bytes"),
        ("a\udcffb", "not valid Unicode"),
    ],
)
def test_unsafe_keys_are_refused_with_the_reason(key, problem):
    assert problem in key_problem(key)
    with pytest.raises(UnsafeKey) as caught:
        validate_key(key)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("prefix", "key", "joined"),
    [
        ("", "a.jpg", "a.jpg"),
        ("uploads", "a.jpg", "uploads/a.jpg"),
        ("/uploads/", "a.jpg", "uploads/a.jpg"),
        ("uploads", "", "uploads"),
    ],
)
def test_join_key_puts_exactly_one_slash_between_prefix_and_key(prefix, key, joined):
    assert join_key(prefix, key) == joined


@pytest.mark.parametrize(
    ("key", "versioned"),
    [
        ("wp-content/uploads/2024/05/3f9a2c1e/photo-300x200.jpg", True),
        ("2024/05/0000000a/photo.jpg", True),
        ("uploads/20240501/photo.jpg", False),  # a date folder, not a version
        ("uploads/3f9a2c1/photo.jpg", False),  # seven digits
        ("uploads/3f9a2c1e0/photo.jpg", False),  # nine
        ("uploads/3F9A2C1E/photo.jpg", False),  # versions are lower case
        ("3f9a2c1e", False),  # no folder at all
        ("3f9a2c1e/photo.jpg", True),
    ],
)
def test_a_version_folder_is_eight_hex_digits_with_a_letter(key, versioned):
    assert is_versioned_key(key) is versioned


# -- upload paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["photo.jpg", "2024/05/photo-300x200.jpg", "Zürich/東京/😀.png", "a/.hidden"]
)
def test_relative_upload_paths_are_fine(path):
    assert upload_path_problem(path) is None


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/var/www/uploads/a.jpg", "absolute"),
        ("/", "absolute"),
        ("//cdn/a.jpg", "absolute"),
        ("", "empty"),
        ("2024/../../wp-config.php", "'..' segment"),
        ("./a.jpg", "'.' segment"),
        ("a//b.jpg", "empty segment"),
        ("a/", "empty segment"),
        ("a\\b.jpg", "backslash"),
        ("C:\\uploads\\a.jpg", "backslash"),
        ("a\tb.jpg", "control character"),
        ("a\u009bb.jpg", "control character"),
        ("x" * (MAX_KEY_BYTES + 1), "bytes long"),
    ],
)
def test_unsafe_upload_paths_say_why(path, problem):
    assert problem in upload_path_problem(path)


# -- version segments ----------------------------------------------------------------

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("digest", "segment"),
    [
        (EMPTY_SHA256, "e3b0c442"),
        (EMPTY_SHA256.upper(), "e3b0c442"),
        ("20240501" + "1" * 12 + "f" + "0" * 43, "1111111f"),  # the first window with a letter
        ("0" * 63 + "a", "0000000a"),
        ("0123456789" * 6 + "0123", "a1234567"),  # no letter at all: the first digit becomes a
        ("9" * 64, "a9999999"),
    ],
)
def test_version_segment_is_the_first_eight_digit_window_with_a_letter(digest, segment):
    assert version_segment(digest) == segment


@pytest.mark.parametrize(
    "digest",
    [
        "",
        EMPTY_SHA256[:-1],
        EMPTY_SHA256 + "0",
        EMPTY_SHA256[:-1] + "g",
        EMPTY_SHA256[:-1] + " ",
        "0x" + EMPTY_SHA256[2:],
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # SHA-1 of nothing
        "d41d8cd98f00b204e9800998ecf8427e",  # MD5 of nothing
        EMPTY_SHA256[:-1] + "٣",  # a non-ASCII digit
    ],
)
def test_version_segment_refuses_anything_but_a_sha256_in_hex(digest):
    with pytest.raises(ValueError, match="not a SHA-256"):
        version_segment(digest)


@given(st.binary(max_size=64))
def test_version_segment_of_any_content_is_recognised_in_its_key(content):
    digest = hashlib.sha256(content).hexdigest()
    segment = version_segment(digest)
    assert segment == version_segment(digest)  # deterministic
    assert segment in digest
    assert is_versioned_key(upload_key("wp-content/uploads", "2024/05/a.jpg", segment))
    assert is_versioned_key(upload_key("", "a.jpg", segment))


@given(st.text(alphabet="0123456789a", min_size=64, max_size=64))
def test_version_segment_of_digit_heavy_digests_is_still_a_version(digest):
    segment = version_segment(digest)
    assert len(segment) == 8
    assert is_versioned_key(f"x/{segment}/a.jpg")


# -- upload keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "path", "version", "key"),
    [
        ("wp-content/uploads", "2024/05/a.jpg", None, "wp-content/uploads/2024/05/a.jpg"),
        ("/wp-content/uploads/", "2024/05/a.jpg", None, "wp-content/uploads/2024/05/a.jpg"),
        ("", "2024/05/a.jpg", None, "2024/05/a.jpg"),
        ("uploads", "2024/05/a.jpg", "3f9a2c1e", "uploads/2024/05/3f9a2c1e/a.jpg"),
        ("uploads", "a.jpg", "3f9a2c1e", "uploads/3f9a2c1e/a.jpg"),
        ("", "a.jpg", "3f9a2c1e", "3f9a2c1e/a.jpg"),
        ("", "Zürich/東京.jpg", "0000000a", "Zürich/0000000a/東京.jpg"),
    ],
)
def test_upload_key_is_prefix_path_and_version_folder(prefix, path, version, key):
    assert upload_key(prefix, path, version) == key


@pytest.mark.parametrize(
    ("prefix", "path", "version"),
    [
        ("uploads", "../secret.jpg", None),
        ("uploads", "/etc/passwd", None),
        ("", "/etc/passwd", None),
        ("uploads", "a\\b.jpg", None),
        ("uploads", "a.jpg", ".."),
        ("uploads", "a.jpg", ""),
        ("uploads", "2024/a.jpg", "x/y/../.."),
        ("up//loads", "a.jpg", None),
        ("uploads", "x" * MAX_KEY_BYTES, None),
    ],
)
def test_upload_key_refuses_unsafe_results(prefix, path, version):
    with pytest.raises(UnsafeKey):
        upload_key(prefix, path, version)


@pytest.mark.parametrize(
    ("prefix", "key", "versioned", "path"),
    [
        ("wp-content/uploads", "wp-content/uploads/2024/05/a.jpg", False, "2024/05/a.jpg"),
        ("/wp-content/uploads/", "wp-content/uploads/2024/05/a.jpg", False, "2024/05/a.jpg"),
        ("uploads", "uploads/2024/05/3f9a2c1e/a.jpg", True, "2024/05/a.jpg"),
        ("uploads", "uploads/3f9a2c1e/a.jpg", True, "a.jpg"),
        ("uploads", "uploads/2024/05/3f9a2c1e/a.jpg", False, "2024/05/3f9a2c1e/a.jpg"),
        ("uploads", "uploads/20240501/a.jpg", True, "20240501/a.jpg"),  # a date, not a version
        ("", "2024/05/3f9a2c1e/a.jpg", True, "2024/05/a.jpg"),
        ("", "a.jpg", True, "a.jpg"),
        ("3f9a2c1e", "3f9a2c1e/a.jpg", True, "a.jpg"),  # the prefix is never taken for a version
    ],
)
def test_upload_path_of_undoes_upload_key(prefix, key, versioned, path):
    assert upload_path_of(prefix, key, versioned=versioned) == path


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("uploads", "other/a.jpg"),
        ("uploads", "uploadsX/a.jpg"),
        ("uploads", "uploads"),
        ("uploads", "Uploads/a.jpg"),
        ("wp-content/uploads", "wp-content/a.jpg"),
    ],
)
def test_upload_path_of_a_key_outside_the_prefix_is_none(prefix, key):
    assert upload_path_of(prefix, key, versioned=False) is None
    assert upload_path_of(prefix, key, versioned=True) is None


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("uploads", "uploads/../secret/a.jpg"),
        ("uploads", "uploads/2024/../../a.jpg"),
        ("uploads", "uploads/"),
        ("uploads", "uploads//etc/passwd"),
        ("", "../a.jpg"),
        ("", "/etc/passwd"),
    ],
)
def test_upload_path_of_never_answers_an_unsafe_path(prefix, key):
    # Keys in a bucket listing can be anything; a path answered here is used under uploads_dir.
    path = upload_path_of(prefix, key, versioned=False)
    assert path is None or upload_path_problem(path) is None


_SEGMENT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda segment: segment not in (".", ".."))
_PATH = st.lists(_SEGMENT, min_size=1, max_size=6).map("/".join)
_PREFIX = st.sampled_from(
    ["", "uploads", "wp-content/uploads", "/sites/default/files/", "3f9a2c1e"]
)


@given(prefix=_PREFIX, path=_PATH, content=st.binary(max_size=16))
def test_upload_path_of_inverts_upload_key_for_safe_paths(prefix, path, content):
    assume(upload_path_problem(path) is None)
    version = version_segment(hashlib.sha256(content).hexdigest())
    assume(key_problem(join_key(prefix, f"{version}/{path}")) is None)
    assert upload_path_of(prefix, upload_key(prefix, path), versioned=False) == path
    assert upload_path_of(prefix, upload_key(prefix, path, version), versioned=True) == path

"""Key safety: the one rule set every layer uses."""

import pytest

from offload.keys import (
    MAX_KEY_BYTES,
    UnsafeKey,
    is_versioned_key,
    join_key,
    key_problem,
    validate_key,
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

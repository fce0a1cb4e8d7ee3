"""Webhook bodies -> Attachment: every accepted shape, and every refusal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from offload.keys import MAX_KEY_BYTES
from offload.media.payloads import (
    MAX_FILES,
    MAX_ID_LENGTH,
    Attachment,
    PayloadError,
    parse_attachment,
)

UPLOADS_URL = "https://example.com/wp-content/uploads"
BASE = UPLOADS_URL + "/2024/05/"

_IMAGE_META = {
    "aperture": "0",
    "credit": "",
    "camera": "",
    "caption": "",
    "created_timestamp": "0",
    "copyright": "",
    "focal_length": "0",
    "iso": "0",
    "shutter_speed": "0",
    "title": "",
    "orientation": "1",
    "keywords": [],
}


def _size(file: str, width: int, height: int, mime: str = "image/jpeg") -> dict[str, Any]:
    return {"file": file, "width": width, "height": height, "mime-type": mime, "filesize": 1234}


# _wp_attachment_metadata of a big JPEG that WordPress scaled down (5.3+).
WP_SCALED: dict[str, Any] = {
    "width": 2560,
    "height": 1707,
    "file": "2024/05/photo-scaled.jpg",
    "filesize": 512345,
    "sizes": {
        "medium": _size("photo-300x200.jpg", 300, 200),
        "large": _size("photo-1024x683.jpg", 1024, 683),
        "thumbnail": _size("photo-150x150.jpg", 150, 150),
        "medium_large": _size("photo-768x512.jpg", 768, 512),
        "1536x1536": _size("photo-1536x1024.jpg", 1536, 1024),
        "2048x2048": _size("photo-2048x1365.jpg", 2048, 1365),
    },
    "image_meta": _IMAGE_META,
    "original_image": "photo.jpg",
}

# A REST /wp/v2/media object for the same upload (trimmed to the fields that matter).
REST_MEDIA: dict[str, Any] = {
    "id": 123,
    "date": "2024-05-02T10:11:12",
    "slug": "photo",
    "type": "attachment",
    "link": "https://example.com/photo/",
    "title": {"rendered": "photo"},
    "author": 1,
    "media_type": "image",
    "mime_type": "image/jpeg",
    "media_details": {
        "width": 2560,
        "height": 1707,
        "file": "2024/05/photo-scaled.jpg",
        "filesize": 512345,
        "sizes": {
            "medium": {
                "file": "photo-300x200.jpg",
                "width": 300,
                "height": 200,
                "filesize": 12345,
                "mime_type": "image/jpeg",
                "source_url": BASE + "photo-300x200.jpg",
            },
            "thumbnail": {
                "file": "photo-150x150.jpg",
                "width": 150,
                "height": 150,
                "filesize": 4567,
                "mime_type": "image/jpeg",
                "source_url": BASE + "photo-150x150.jpg",
            },
            "full": {
                "file": "photo-scaled.jpg",
                "width": 2560,
                "height": 1707,
                "mime_type": "image/jpeg",
                "source_url": BASE + "photo-scaled.jpg",
            },
        },
        "image_meta": _IMAGE_META,
        "original_image": "photo.jpg",
    },
    "source_url": BASE + "photo-scaled.jpg",
}


def _rest(source_url: str, *size_urls: str) -> dict[str, Any]:
    sizes = {f"s{i}": {"source_url": url} for i, url in enumerate(size_urls)}
    return {"id": 7, "source_url": source_url, "media_details": {"sizes": sizes}}


def _refused(body: Any, match: str | None = None, **kwargs: Any) -> PayloadError:
    with pytest.raises(PayloadError, match=match) as caught:
        parse_attachment(body, **kwargs)
    return caught.value


# -- WordPress attachment metadata -----------------------------------------------------


def test_scaled_wordpress_upload_lists_original_then_main_file_then_sizes():
    attachment = parse_attachment({**WP_SCALED, "attachment_id": 123})
    assert attachment == Attachment(
        paths=(
            "2024/05/photo.jpg",
            "2024/05/photo-scaled.jpg",
            "2024/05/photo-300x200.jpg",
            "2024/05/photo-1024x683.jpg",
            "2024/05/photo-150x150.jpg",
            "2024/05/photo-768x512.jpg",
            "2024/05/photo-1536x1024.jpg",
            "2024/05/photo-2048x1365.jpg",
        ),
        original="2024/05/photo.jpg",
        attachment_id="123",
    )


def test_wordpress_upload_without_original_image_is_its_own_original():
    body = {"file": "2024/05/logo.png", "sizes": {"thumbnail": _size("logo-150x150.png", 150, 150)}}
    attachment = parse_attachment(body)
    assert attachment.paths == ("2024/05/logo.png", "2024/05/logo-150x150.png")
    assert attachment.original == "2024/05/logo.png"
    assert attachment.attachment_id is None


def test_sizes_sharing_a_file_name_it_once():
    body = copy.deepcopy(WP_SCALED)
    body["sizes"]["post-thumbnail"] = _size("photo-300x200.jpg", 300, 200)
    body["sizes"]["woocommerce_thumbnail"] = _size("photo-150x150.jpg", 150, 150)
    body["sizes"]["full-copy"] = _size("photo-scaled.jpg", 2560, 1707)
    paths = parse_attachment(body).paths
    assert len(paths) == len(set(paths)) == 8
    assert paths[:2] == ("2024/05/photo.jpg", "2024/05/photo-scaled.jpg")


@pytest.mark.parametrize("empty", [[], {}, None])
def test_php_empty_sizes_array_means_only_the_main_file(empty):
    body = {"width": 120, "height": 80, "file": "2024/05/icon.png", "sizes": empty}
    assert parse_attachment(body).paths == ("2024/05/icon.png",)


def test_metadata_without_sizes_key_names_the_main_file():
    assert parse_attachment({"file": "2024/05/doc.pdf"}).paths == ("2024/05/doc.pdf",)


def test_uploads_not_organised_in_month_folders_stay_at_the_root():
    body = {
        "file": "photo-scaled.jpg",
        "original_image": "photo.jpg",
        "sizes": {"medium": _size("photo-300x200.jpg", 300, 200)},
    }
    assert parse_attachment(body).paths == ("photo.jpg", "photo-scaled.jpg", "photo-300x200.jpg")


def test_webp_sources_of_each_size_are_offloaded_with_it():
    body = copy.deepcopy(WP_SCALED)
    body["sizes"] = {
        "medium": {
            **_size("photo-300x200.jpg", 300, 200),
            "sources": {
                "image/jpeg": {"file": "photo-300x200.jpg", "filesize": 12345},
                "image/webp": {"file": "photo-300x200-jpg.webp", "filesize": 6789},
            },
        },
        "thumbnail": {
            **_size("photo-150x150.jpg", 150, 150),
            "sources": {
                "image/jpeg": {"file": "photo-150x150.jpg", "filesize": 4567},
                "image/webp": {"file": "photo-150x150-jpg.webp", "filesize": 2345},
            },
        },
    }
    assert parse_attachment(body).paths == (
        "2024/05/photo.jpg",
        "2024/05/photo-scaled.jpg",
        "2024/05/photo-300x200.jpg",
        "2024/05/photo-300x200-jpg.webp",
        "2024/05/photo-150x150.jpg",
        "2024/05/photo-150x150-jpg.webp",
    )


def test_webp_sources_of_the_full_size_image_are_offloaded_too():
    # Performance Lab's "Modern Image Formats" keeps the full size's other
    # formats in a top-level `sources`, next to `file`.
    body = {
        "file": "2024/05/photo.jpg",
        "sizes": {"medium": _size("photo-300x200.jpg", 300, 200)},
        "sources": {
            "image/jpeg": {"file": "photo.jpg", "filesize": 98765},
            "image/webp": {"file": "photo-jpg.webp", "filesize": 45678},
        },
    }
    assert "2024/05/photo-jpg.webp" in parse_attachment(body).paths


def test_a_size_without_a_file_adds_nothing():
    body = {"file": "2024/05/a.jpg", "sizes": {"odd": {"width": 10, "height": 10}}}
    assert parse_attachment(body).paths == ("2024/05/a.jpg",)


def test_non_ascii_wordpress_names_are_kept_as_they_are():
    body = {
        "file": "2024/05/Zürich-東京-😀.jpg",
        "sizes": {"thumbnail": _size("Zürich-東京-😀-150x150.jpg", 150, 150)},
    }
    assert parse_attachment(body).paths == (
        "2024/05/Zürich-東京-😀.jpg",
        "2024/05/Zürich-東京-😀-150x150.jpg",
    )


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"file": "2024/05/../../wp-config.php"}, "file"),
        ({"file": "/var/www/wp-content/uploads/2024/05/a.jpg"}, "file"),
        ({"file": "2024\\05\\a.jpg"}, "file"),
        ({"file": "2024/05/a\x00.jpg"}, "file"),
        ({"file": "2024//a.jpg"}, "file"),
        ({"file": ""}, "file"),
        ({"file": 42}, "file"),
        ({"file": None}, "file"),
        ({"original_image": "../photo.jpg"}, "original_image"),
        ({"original_image": "sub/photo.jpg"}, "original_image"),
        ({"original_image": ".."}, "original_image"),
        ({"original_image": ["photo.jpg"]}, "original_image"),
        ({"sizes": {"medium": {"file": "../../x.jpg"}}}, "sizes.medium.file"),
        ({"sizes": {"medium": {"file": "other/x.jpg"}}}, "sizes.medium.file"),
        ({"sizes": {"medium": {"file": "/x.jpg"}}}, "sizes.medium.file"),
        ({"sizes": {"medium": {"file": "a\\b.jpg"}}}, "sizes.medium.file"),
        ({"sizes": {"medium": {"file": "a\nb.jpg"}}}, "sizes.medium.file"),
        ({"sizes": {"medium": {"file": ""}}}, "sizes.medium.file"),
        ({"sizes": {"medium": {"file": 300}}}, "sizes.medium.file"),
        ({"sizes": {"medium": "photo-300x200.jpg"}}, "sizes.medium"),
        ({"sizes": ["photo-300x200.jpg"]}, "sizes"),
        ({"sizes": "photo-300x200.jpg"}, "sizes"),
        (
            {
                "sizes": {
                    "medium": {"file": "a.jpg", "sources": {"image/webp": {"file": "../a.webp"}}}
                }
            },
            "sizes.medium.sources.image/webp.file",
        ),
    ],
)
def test_unsafe_or_malformed_wordpress_metadata_is_refused_naming_the_field(change, what):
    body = {**WP_SCALED, **change}
    assert what in str(_refused(body))


# -- WordPress REST media objects ------------------------------------------------------


def test_rest_media_object_lists_original_then_main_file_then_sizes():
    attachment = parse_attachment(REST_MEDIA, uploads_url=UPLOADS_URL)
    assert attachment == Attachment(
        paths=(
            "2024/05/photo.jpg",
            "2024/05/photo-scaled.jpg",
            "2024/05/photo-300x200.jpg",
            "2024/05/photo-150x150.jpg",
        ),
        original="2024/05/photo.jpg",
        attachment_id="123",
    )


def test_rest_webp_sources_of_sizes_are_offloaded_too():
    # Performance Lab adds each size's other formats, with their URLs, to the REST object.
    body = copy.deepcopy(REST_MEDIA)
    body["media_details"]["sizes"]["medium"]["sources"] = {
        "image/jpeg": {"file": "photo-300x200.jpg", "source_url": BASE + "photo-300x200.jpg"},
        "image/webp": {
            "file": "photo-300x200-jpg.webp",
            "source_url": BASE + "photo-300x200-jpg.webp",
        },
    }
    assert "2024/05/photo-300x200-jpg.webp" in parse_attachment(body, uploads_url=UPLOADS_URL).paths


def test_rest_media_without_sizes_names_its_source_url():
    body = {"id": 9, "source_url": BASE + "doc.pdf", "media_details": []}
    assert parse_attachment(body, uploads_url=UPLOADS_URL) == Attachment(
        ("2024/05/doc.pdf",), "2024/05/doc.pdf", "9"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/wp-content/uploads/2024/05/a.jpg",
        "https://example.com/wp-content/uploads/2024/05/a.jpg",
        "//example.com/wp-content/uploads/2024/05/a.jpg",
        "https://EXAMPLE.com/wp-content/uploads/2024/05/a.jpg",
        "https://example.com/wp-content/uploads/2024/05/a.jpg?ver=2#top",
    ],
)
def test_rest_urls_of_any_scheme_and_host_case_map_to_the_same_path(url):
    assert parse_attachment(_rest(url), uploads_url=UPLOADS_URL).paths == ("2024/05/a.jpg",)


@pytest.mark.parametrize(
    "uploads_url", [UPLOADS_URL + "/", "http://Example.COM/wp-content/uploads"]
)
def test_uploads_url_with_trailing_slash_or_other_case_host_still_matches(uploads_url):
    body = _rest(BASE + "a.jpg")
    assert parse_attachment(body, uploads_url=uploads_url).paths == ("2024/05/a.jpg",)


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("caf%C3%A9.jpg", "café.jpg"),
        ("café.jpg", "café.jpg"),
        ("my%20photo.jpg", "my photo.jpg"),
        ("100%2525.jpg", "100%25.jpg"),  # decoded once, not twice
        ("a+b.jpg", "a+b.jpg"),  # '+' is not a space in a path
        ("%E6%9D%B1%E4%BA%AC.jpg", "東京.jpg"),
    ],
)
def test_rest_url_paths_are_percent_decoded_exactly_once(encoded, decoded):
    body = _rest(BASE + encoded)
    assert parse_attachment(body, uploads_url=UPLOADS_URL).paths == ("2024/05/" + decoded,)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/wp-content/uploads/2024/05/a.jpg",
        "https://example.com.evil.example/wp-content/uploads/2024/05/a.jpg",
        "https://example.com/wp-content/themes/x/a.jpg",
        "https://example.com/wp-content/uploads-old/2024/05/a.jpg",
        "https://example.com/wp-content/uploads",
        "ftp://example.com/wp-content/uploads/2024/05/a.jpg",
        "javascript://example.com/wp-content/uploads/a.jpg",
        "2024/05/a.jpg",
        "/wp-content/uploads/2024/05/a.jpg",
    ],
)
def test_rest_urls_outside_uploads_url_are_refused(url):
    assert "source_url" in str(_refused(_rest(url), uploads_url=UPLOADS_URL))


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1/wp-content/uploads/2024/05/a.jpg",
        "https://exa\uff03mple.com/wp-content/uploads/2024/05/a.jpg",
    ],
)
def test_rest_urls_that_cannot_be_parsed_are_a_payload_error(url):
    _refused(_rest(url), uploads_url=UPLOADS_URL)


@pytest.mark.parametrize(
    "tail",
    [
        "../../wp-config.php",
        "2024/%2e%2e/%2E%2E/wp-config.php",
        "2024/05/a%5Cb.jpg",
        "2024/05/a%00.jpg",
        "2024/05/a%0A.jpg",
        "2024/05/%C2%85.jpg",
        "2024//a.jpg",
        "2024/05/",
        "",
    ],
)
def test_rest_urls_naming_unsafe_paths_once_decoded_are_refused(tail):
    _refused(_rest(UPLOADS_URL + "/" + tail), uploads_url=UPLOADS_URL)


def test_rest_url_that_is_not_utf8_once_decoded_is_refused():
    _refused(_rest(BASE + "a%FF.jpg"), match="not UTF-8", uploads_url=UPLOADS_URL)


def test_a_bad_size_url_is_refused_naming_the_size():
    body = _rest(BASE + "a.jpg", BASE + "a-150x150.jpg", "https://evil.example/x.jpg")
    assert "media_details.sizes.s1.source_url" in str(_refused(body, uploads_url=UPLOADS_URL))


def test_rest_media_needs_the_sites_uploads_url():
    _refused(REST_MEDIA, match="uploads_url")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"source_url": 5}, "source_url"),
        ({"source_url": None, "media_details": {}}, "source_url"),
        ({"media_details": {"sizes": {}}}, "source_url"),
        ({"source_url": BASE + "a.jpg", "media_details": "x"}, "media_details"),
        ({"source_url": BASE + "a.jpg", "media_details": {"sizes": ["x"]}}, "sizes"),
        ({"source_url": BASE + "a.jpg", "media_details": {"sizes": {"m": {}}}}, "sizes.m"),
        ({"source_url": BASE + "a.jpg", "media_details": {"sizes": {"m": "x"}}}, "sizes.m"),
        (
            {"source_url": BASE + "a.jpg", "media_details": {"original_image": "../a.jpg"}},
            "original_image",
        ),
        (
            {"source_url": BASE + "a.jpg", "media_details": {"original_image": "x/a.jpg"}},
            "original_image",
        ),
    ],
)
def test_malformed_rest_media_objects_are_refused(body, match):
    _refused(body, match=match, uploads_url=UPLOADS_URL)


# -- generic bodies --------------------------------------------------------------------


def test_generic_files_without_original_each_version_themselves():
    body = {"files": ["docs/a.pdf", "docs/b.pdf"]}
    assert parse_attachment(body) == Attachment(("docs/a.pdf", "docs/b.pdf"), None, None)


def test_generic_files_keep_their_order_and_duplicates_collapse():
    body = {"files": ["b.jpg", "a.jpg", "b.jpg", "c.jpg", "a.jpg"], "attachment_id": "u-1"}
    assert parse_attachment(body) == Attachment(("b.jpg", "a.jpg", "c.jpg"), None, "u-1")


def test_generic_original_missing_from_files_is_added_in_front():
    body = {"files": ["2024/05/a-300x200.jpg"], "original": "2024/05/a.jpg"}
    attachment = parse_attachment(body)
    assert attachment.paths == ("2024/05/a.jpg", "2024/05/a-300x200.jpg")
    assert attachment.original == "2024/05/a.jpg"


def test_generic_original_already_in_files_is_named_once():
    body = {"files": ["a.jpg", "a-1x1.jpg"], "original": "a.jpg"}
    assert parse_attachment(body) == Attachment(("a.jpg", "a-1x1.jpg"), "a.jpg", None)


def test_files_take_precedence_over_other_shapes_in_one_body():
    body = {"files": ["x.jpg"], "file": "2024/05/y.jpg", "source_url": BASE + "z.jpg"}
    assert parse_attachment(body, uploads_url=UPLOADS_URL).paths == ("x.jpg",)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"files": "a.jpg"}, "files must be a list"),
        ({"files": {"a.jpg": 1}}, "files must be a list"),
        ({"files": ["a.jpg", 5]}, r"files\[1\] must be a string"),
        ({"files": ["a.jpg", None]}, r"files\[1\]"),
        ({"files": [["a.jpg"]]}, r"files\[0\]"),
        ({"files": ["../a.jpg"]}, r"files\[0\].*'\.\.' segment"),
        ({"files": ["/etc/passwd"]}, "absolute"),
        ({"files": ["a\\b.jpg"]}, "backslash"),
        ({"files": ["a\x1fb.jpg"]}, "control character"),
        ({"files": ["a\x7f.jpg"]}, "control character"),
        ({"files": ["a\u0085.jpg"]}, "control character"),
        ({"files": ["a//b.jpg"]}, "empty segment"),
        ({"files": ["a/"]}, "empty segment"),
        ({"files": ["./a.jpg"]}, "'.' segment"),
        ({"files": [""]}, "empty"),
        ({"files": ["x" * (MAX_KEY_BYTES + 1)]}, "bytes long"),
        ({"files": ["a\udcff.jpg"]}, "not valid Unicode"),
        ({"files": ["a.jpg"], "original": "../a.jpg"}, "original"),
        ({"files": ["a.jpg"], "original": 3}, "original must be a string"),
    ],
)
def test_unsafe_or_malformed_generic_paths_are_refused(body, match):
    _refused(body, match=match)


def test_an_unsafe_path_is_quoted_short_in_the_message():
    message = str(_refused({"files": ["../" + "x" * 5000]}))
    assert len(message) < 300


def test_exactly_max_files_are_accepted():
    files = [f"2024/05/f{i}.jpg" for i in range(MAX_FILES)]
    assert len(parse_attachment({"files": files}).paths) == MAX_FILES


def test_more_than_max_files_are_refused():
    files = [f"2024/05/f{i}.jpg" for i in range(MAX_FILES + 1)]
    _refused({"files": files}, match=f"limit is {MAX_FILES}")


def test_max_files_counts_distinct_paths():
    files = [f"f{i % MAX_FILES}.jpg" for i in range(MAX_FILES * 3)]
    assert len(parse_attachment({"files": files}).paths) == MAX_FILES


def test_generic_original_beyond_max_files_is_refused():
    files = [f"f{i}.jpg" for i in range(MAX_FILES)]
    _refused({"files": files, "original": "orig.jpg"}, match="limit")


def test_wordpress_metadata_with_more_than_max_files_sizes_is_refused():
    sizes = {f"s{i}": {"file": f"a-{i}x{i}.jpg"} for i in range(MAX_FILES)}
    _refused({"file": "2024/05/a.jpg", "sizes": sizes}, match="limit")


def test_rest_media_with_more_than_max_files_sizes_is_refused():
    urls = [BASE + f"a-{i}x{i}.jpg" for i in range(MAX_FILES)]
    _refused(_rest(BASE + "a.jpg", *urls), match="limit", uploads_url=UPLOADS_URL)


# -- attachment ids --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123, "123"),
        (0, "0"),
        ("123", "123"),
        ("0b5e9f0e-3c2a-4d1f-9a8b-7c6d5e4f3a2b", "0b5e9f0e-3c2a-4d1f-9a8b-7c6d5e4f3a2b"),
        ("x" * MAX_ID_LENGTH, "x" * MAX_ID_LENGTH),
        ("", None),
        (None, None),
    ],
)
def test_attachment_ids_are_kept_as_text(value, expected):
    assert parse_attachment({"files": ["a.jpg"], "attachment_id": value}).attachment_id == expected


def test_rest_id_is_the_attachment_id():
    assert parse_attachment(REST_MEDIA, uploads_url=UPLOADS_URL).attachment_id == "123"


def test_attachment_id_wins_over_id():
    body = {"files": ["a.jpg"], "attachment_id": 5, "id": 6}
    assert parse_attachment(body).attachment_id == "5"


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        1.5,
        {"id": 1},
        [1],
        "x" * (MAX_ID_LENGTH + 1),
        10**MAX_ID_LENGTH,  # 65 digits
        "a\nb",
        "a\x00",
    ],
)
def test_bad_attachment_ids_are_refused(value):
    _refused({"files": ["a.jpg"], "attachment_id": value}, match="attachment_id")


def test_bad_rest_id_is_refused():
    _refused({**REST_MEDIA, "id": True}, match="attachment_id", uploads_url=UPLOADS_URL)


# -- deletions and refusals of the whole body ------------------------------------------


@pytest.mark.parametrize("body", [{"attachment_id": 42}, {"id": 42}, {"attachment_id": "42"}])
def test_a_deletion_may_name_only_the_attachment(body):
    assert parse_attachment(body, deletion=True) == Attachment((), None, "42")


def test_a_deletion_with_no_file_but_an_attachment_id_is_accepted():
    assert parse_attachment({"files": [], "attachment_id": 7}, deletion=True) == Attachment(
        (), None, "7"
    )


def test_a_deletion_may_also_name_its_files():
    attachment = parse_attachment(WP_SCALED, deletion=True)
    assert attachment.original == "2024/05/photo.jpg"
    assert len(attachment.paths) == 8


@pytest.mark.parametrize("body", [{"attachment_id": 42}, {"id": 42}])
def test_an_upload_that_names_only_an_attachment_id_is_refused(body):
    _refused(body, match="must be WordPress attachment metadata")


@pytest.mark.parametrize("body", [{}, {"attachment_id": ""}, {"attachment_id": None}])
def test_a_deletion_naming_nothing_is_refused(body):
    _refused(body, deletion=True)


@pytest.mark.parametrize("deletion", [False, True])
def test_an_empty_file_list_without_attachment_id_is_refused(deletion):
    _refused({"files": []}, match="names no file", deletion=deletion)


@pytest.mark.parametrize("body", [[], ["a.jpg"], "a.jpg", 5, None, True, b"{}"])
def test_a_body_that_is_not_an_object_is_refused(body):
    _refused(body, match="JSON object")


@pytest.mark.parametrize("body", [{}, {"path": "a.jpg"}, {"filename": "a.jpg"}, {"url": "x"}])
def test_a_body_of_unknown_shape_is_refused_naming_the_shapes(body):
    message = str(_refused(body))
    assert "source_url" in message
    assert "files" in message


def test_payload_error_is_a_value_error():
    assert issubclass(PayloadError, ValueError)

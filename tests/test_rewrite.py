"""URL rewriting: upload URLs of offloaded files -> CDN URLs in HTML, CSS and JSON, and back."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload.config.settings import Site
from offload.media.rewrite import Rewriter

SITE = Site(
    name="blog",
    storage="file:///srv/media",
    prefix="wp-content/uploads",
    uploads_url="https://example.com/wp-content/uploads",
    cdn_url="https://cdn.example.com",
    versioning=True,
)
# An upload folder and the CDN folder its attachment was offloaded to (versioned).
UP = "https://example.com/wp-content/uploads/2024/05/"
CDN = "https://cdn.example.com/wp-content/uploads/2024/05/3f9a2c1e/"
# The same, JSON-escaped and protocol-relative.
UP_ESC = UP.replace("/", "\\/")
CDN_ESC = CDN.replace("/", "\\/")
UP_REL = UP.removeprefix("https:")
CDN_REL = CDN.removeprefix("https:")

OFFLOADED = {
    f"2024/05/{name}": f"wp-content/uploads/2024/05/3f9a2c1e/{name}"
    for name in [
        "photo.jpg",
        "photo-300x200.jpg",
        "photo-1024x683.jpg",
        "a b.jpg",
        "café.jpg",
        "100%.jpg",
        "😀.jpg",
        "a&b.jpg",
    ]
}
KEYS = {key: path for path, key in OFFLOADED.items()}


def rewriter(**changes: object) -> Rewriter:
    return Rewriter(dataclasses.replace(SITE, **changes), OFFLOADED.get, KEYS.get)


def rewrite(text: str, **changes: object) -> str:
    return rewriter(**changes).rewrite(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'<img src="{UP}photo.jpg">', f'<img src="{CDN}photo.jpg">'),
        (f"<a href='{UP}photo.jpg'>", f"<a href='{CDN}photo.jpg'>"),
        (f"<img src={UP}photo.jpg alt=x>", f"<img src={CDN}photo.jpg alt=x>"),
        (f"<img src={UP}photo.jpg>", f"<img src={CDN}photo.jpg>"),
        (f'<img data-src="{UP}photo.jpg">', f'<img data-src="{CDN}photo.jpg">'),
        (f'<video poster="{UP}photo.jpg">', f'<video poster="{CDN}photo.jpg">'),
        (
            f'<div style="background:url({UP}photo.jpg)">',
            f'<div style="background:url({CDN}photo.jpg)">',
        ),
        (
            f"<div style=\"background:url('{UP}photo.jpg')\">",
            f"<div style=\"background:url('{CDN}photo.jpg')\">",
        ),
        (
            f'<style>.a{{background:url("{UP}photo.jpg")}}</style>',
            f'<style>.a{{background:url("{CDN}photo.jpg")}}</style>',
        ),
        (f'{{"src":"{UP}photo.jpg","id":7}}', f'{{"src":"{CDN}photo.jpg","id":7}}'),
        (
            f"<script>var a = '{UP}photo.jpg';</script>",
            f"<script>var a = '{CDN}photo.jpg';</script>",
        ),
        (f"<script>f(`{UP}photo.jpg`)</script>", f"<script>f(`{CDN}photo.jpg`)</script>"),
        (f"see {UP}photo.jpg\nor not", f"see {CDN}photo.jpg\nor not"),
        (f"[img]{UP}photo.jpg[/img]", f"[img]{CDN}photo.jpg[/img]"),
        (f"![a photo]({UP}photo.jpg)", f"![a photo]({CDN}photo.jpg)"),
        (UP + "photo.jpg", CDN + "photo.jpg"),
    ],
)
def test_an_upload_url_is_rewritten_wherever_it_stands(text, expected):
    assert rewrite(text) == expected


def pair(template: str) -> tuple[str, str]:
    """(text, expected): {up}, {esc} and {rel} are upload folders that turn into CDN ones;
    {gone} is an upload folder whose files are not offloaded."""
    return (
        template.format(up=UP, esc=UP_ESC, rel=UP_REL, gone=UP),
        template.format(up=CDN, esc=CDN_ESC, rel=CDN_REL, gone=UP),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pair(template)
        for template in [
            'srcset="{up}photo-300x200.jpg 300w, {up}photo-1024x683.jpg 1024w"',
            'srcset="{up}photo.jpg 1x, {up}photo-1024x683.jpg 2x"',
            'srcset="{up}photo.jpg"',
            'srcset="{up}photo.jpg, {up}photo-300x200.jpg"',
            'srcset="{up}photo.jpg 1x,{up}photo-300x200.jpg 2x"',
            'srcset="{up}photo.jpg,\n  {up}photo-300x200.jpg 300w"',
            'srcset="{gone}gone-300x200.jpg 300w, {up}photo.jpg 600w"',
            'srcset="{up}photo.jpg 300w, https://other.org/a.jpg 600w"',
            'srcset="{rel}photo.jpg 300w, {up}photo-300x200.jpg 600w"',
            'data-srcset="{up}photo.jpg 300w, {up}photo-1024x683.jpg 1024w"',
            'srcset="{up}photo.jpg?ver=2 300w, {up}photo-300x200.jpg?ver=2 2x"',
        ]
    ],
)
def test_every_srcset_candidate_is_rewritten_and_descriptors_are_kept(text, expected):
    assert rewrite(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[
            pair(template)
            for template in [
                '{{"url":"{esc}photo.jpg"}}',
                '{{"url":"{esc}photo.jpg","sizes":["{esc}photo-300x200.jpg"]}}',
                '"<img src=\\"{esc}photo.jpg\\">"',
                '"<img src=\\"{up}photo.jpg\\">"',
                '{{"u":"{esc}photo.jpg?a=1\\u0026b=2"}}',
                '{{"u":"{esc}photo.jpg\\u0022}}',
                '<div data-img="{{&quot;src&quot;:&quot;{up}photo.jpg&quot;}}">',
                "<div data-img='{{&#39;src&#39;:&#39;{up}photo.jpg&#39;}}'>",
            ]
        ],
        (
            '{"u":"' + UP_ESC.removeprefix("https:") + 'photo.jpg"}',
            '{"u":"' + CDN_ESC.removeprefix("https:") + 'photo.jpg"}',
        ),
        ('{"u":"' + UP_ESC + 'caf\\u00e9.jpg"}', '{"u":"' + CDN_ESC + 'caf%C3%A9.jpg"}'),
        ('{"u":"' + UP + 'caf\\u00e9.jpg"}', '{"u":"' + CDN + 'caf%C3%A9.jpg"}'),
        ('{"u":"' + UP_ESC + '\\ud83d\\ude00.jpg"}', '{"u":"' + CDN_ESC + '%F0%9F%98%80.jpg"}'),
    ],
)
def test_json_and_entity_encoded_urls_are_rewritten_keeping_their_escaping(text, expected):
    assert rewrite(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pair(template)
        for template in [
            "{gone}gone.jpg?u={up}photo.jpg",
            "{up}photo.jpg?u={up}photo-300x200.jpg#{up}photo.jpg",
            "https://other.org/share?u={up}photo.jpg&amp;media={up}photo-300x200.jpg",
            "{gone}x={up}photo.jpg",
            "https://cdn.example.com/x={up}photo.jpg",
            "https://web.archive.org/web/2024/{gone}photo.jpg",
        ]
    ],
)
def test_a_url_inside_another_is_rewritten_unless_it_continues_a_path(text, expected):
    assert rewrite(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'src="{UP_REL}photo.jpg"', f'src="{CDN_REL}photo.jpg"'),
        (f'src="{UP.replace("https", "http")}photo.jpg"', f'src="{CDN}photo.jpg"'),
        (f'src="{UP.replace("https", "HTTPS")}photo.jpg"', f'src="{CDN}photo.jpg"'),
        (f'src="{UP.replace("example.com", "EXAMPLE.Com")}photo.jpg"', f'src="{CDN}photo.jpg"'),
        (f'src="{UP_REL.replace("example", "Example")}photo.jpg"', f'src="{CDN_REL}photo.jpg"'),
    ],
)
def test_scheme_and_host_match_in_any_form_and_case(text, expected):
    assert rewrite(text) == expected


def test_an_http_uploads_url_also_matches_https_urls():
    assert rewrite(f"{UP}photo.jpg", uploads_url="http://example.com/wp-content/uploads/") == (
        f"{CDN}photo.jpg"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{UP}a%20b.jpg", f"{CDN}a%20b.jpg"),
        (f"{UP}caf%C3%A9.jpg", f"{CDN}caf%C3%A9.jpg"),
        (f"{UP}caf%c3%a9.jpg", f"{CDN}caf%C3%A9.jpg"),
        (f"{UP}café.jpg", f"{CDN}caf%C3%A9.jpg"),
        (f"{UP}100%25.jpg", f"{CDN}100%25.jpg"),
        (f"{UP}a%26b.jpg", f"{CDN}a%26b.jpg"),
        (f"{UP}a&amp;b.jpg", f"{UP}a&amp;b.jpg"),  # a raw "&" ends the path
        (f"{UP}100%2525.jpg", f"{UP}100%2525.jpg"),  # decoded once: "100%25.jpg"
        (f"{UP}cafe\u0301.jpg", f"{UP}cafe\u0301.jpg"),  # NFD is another name than NFC
        (f"{UP}caf%E9.jpg", f"{UP}caf%E9.jpg"),  # Latin-1 percent-encoding is not UTF-8
    ],
)
def test_encoded_and_non_ascii_names_are_decoded_once_and_written_percent_encoded(text, expected):
    assert rewrite(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{UP}photo.jpg?ver=2#x", f"{CDN}photo.jpg?ver=2#x"),
        (f"{UP}photo.jpg#top", f"{CDN}photo.jpg#top"),
        (f"{UP}photo.jpg?", f"{CDN}photo.jpg?"),
        (f'"{UP}photo.jpg?a=1&amp;b=2,3"', f'"{CDN}photo.jpg?a=1&amp;b=2,3"'),
        (f'"{UP}photo.jpg?a=1&#038;b=%2F"', f'"{CDN}photo.jpg?a=1&#038;b=%2F"'),
        (f"Photo: {UP}photo.jpg. Next", f"Photo: {CDN}photo.jpg. Next"),
        (f"({UP}photo.jpg!)", f"({CDN}photo.jpg!)"),
        (f"{UP}photo.jpg:", f"{CDN}photo.jpg:"),
    ],
)
def test_query_fragment_and_trailing_punctuation_are_kept(text, expected):
    assert rewrite(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        f'<img src="{UP}not-offloaded.jpg">',
        f'<img src="{UP}photo-768x512.jpg">',  # another size is another file
        f'<source srcset="{UP}photo.jpg.webp">',  # photo.jpg is offloaded, this is not
        f'<img src="{UP}photo.JPG">',
        '<img src="https://other.org/wp-content/uploads/2024/05/photo.jpg">',
        '<img src="https://notexample.com/wp-content/uploads/2024/05/photo.jpg">',
        '<img src="https://example.com.evil.org/wp-content/uploads/2024/05/photo.jpg">',
        '<img src="https://example.com:8443/wp-content/uploads/2024/05/photo.jpg">',
        '<img src="https://example.com/wp-content/uploads-old/2024/05/photo.jpg">',
        '<img src="https://example.com/wp-content/uploadsx/2024/05/photo.jpg">',
        '<img src="https://example.com/WP-CONTENT/uploads/2024/05/photo.jpg">',
        '<img src="https://example.com/other/wp-content/uploads/2024/05/photo.jpg">',
        '<img src="https://example.com/wp-content/2024/05/photo.jpg">',
        '<a href="https://example.com/wp-content/uploads/">uploads</a>',
        '<a href="https://example.com/wp-content/uploads">uploads</a>',
        '<a href="ftp://example.com/wp-content/uploads/2024/05/photo.jpg">',
        '<a href="xhttps://example.com/wp-content/uploads/2024/05/photo.jpg">',
        '<a href="https://other.org//example.com/wp-content/uploads/2024/05/photo.jpg">',
        f'<img src="{UP}../05/photo.jpg">',
        '{"u":"' + UP_ESC + '\\ud83d.jpg"}',  # a lone surrogate is no name
        f'<img src="{UP}.//photo.jpg">',
        f'<img src="{UP.replace("/2024/", "//2024/")}photo.jpg">',
        f'<img src="{UP.replace("/", "&#x2F;")}photo.jpg">',  # entity-encoded slashes
        f'<img src="{CDN}photo.jpg">',
        "<p>No URL at all, just text with // and https: and wp-content/uploads/.</p>",
        "",
    ],
)
def test_other_urls_and_files_not_offloaded_are_left_byte_for_byte(text):
    assert rewrite(text) == text


def test_a_versioned_site_gets_the_versioned_key_from_the_lookup():
    keys = {"2024/05/photo.jpg": "wp-content/uploads/2024/05/0badc0de/photo.jpg"}
    assert Rewriter(SITE, keys.get).rewrite(f"{UP}photo.jpg") == (
        "https://cdn.example.com/wp-content/uploads/2024/05/0badc0de/photo.jpg"
    )


def test_the_lookup_gets_each_decoded_path_once_per_call():
    asked: list[str] = []

    def lookup(path: str) -> str | None:
        asked.append(path)
        return OFFLOADED.get(path)

    text = f"{UP}photo.jpg {UP_REL}photo.jpg {UP}a%20b.jpg {UP}a%20b.jpg?x {UP}no.png. {UP}no.png"
    out = Rewriter(SITE, lookup).rewrite(text)
    assert out.count("cdn.example.com") == 4
    assert asked == ["2024/05/photo.jpg", "2024/05/a b.jpg", "2024/05/no.png.", "2024/05/no.png"]
    Rewriter(SITE, lookup).rewrite(f"{UP}photo.jpg")
    assert asked[-1] == "2024/05/photo.jpg"  # the cache lives for one call only


@pytest.mark.parametrize(
    ("uploads_url", "cdn_url", "text", "expected"),
    [
        (
            "https://media.example.com",
            "https://cdn.example.com",
            "https://media.example.com/2024/05/photo.jpg",
            "https://cdn.example.com/wp-content/uploads/2024/05/3f9a2c1e/photo.jpg",
        ),
        (
            "https://example.com/wp-content/uploads",
            "https://cdn.example.com/media/",
            f"{UP}photo.jpg",
            "https://cdn.example.com/media/wp-content/uploads/2024/05/3f9a2c1e/photo.jpg",
        ),
        (
            "http://localhost:8080/wp-content/uploads",
            "http://localhost:9000",
            "//localhost:8080/wp-content/uploads/2024/05/photo.jpg",
            "//localhost:9000/wp-content/uploads/2024/05/3f9a2c1e/photo.jpg",
        ),
        (
            "https://example.com/files/my+uploads",
            "https://cdn.example.com",
            "https://example.com/files/my+uploads/2024/05/photo.jpg",
            "https://cdn.example.com/wp-content/uploads/2024/05/3f9a2c1e/photo.jpg",
        ),
    ],
)
def test_base_urls_may_have_a_path_a_port_or_none(uploads_url, cdn_url, text, expected):
    assert rewrite(text, uploads_url=uploads_url, cdn_url=cdn_url) == expected


def test_a_key_is_percent_encoded_as_a_url_path():
    key = "wp-content/uploads/a b/c#d?e%f+g&h'i(j),k;l=m~n_o.p-q/é.jpg"
    out = Rewriter(SITE, lambda path: key).rewrite(f"{UP}x.jpg")
    assert out == (
        "https://cdn.example.com/wp-content/uploads/"
        "a%20b/c%23d%3Fe%25f%2Bg%26h%27i%28j%29%2Ck%3Bl%3Dm~n_o.p-q/%C3%A9.jpg"
    )


PAGE = (
    '<!-- wp:image {"id":7} -->\n'
    f'<figure><a href="{UP}photo.jpg"><img src="{UP}photo-1024x683.jpg?ver=2" '
    f'srcset="{UP}photo-1024x683.jpg 1024w, {UP}photo-300x200.jpg 300w, '
    f'{UP}gone-768x512.jpg 768w" alt="Photo, at dusk"></a></figure>\n'
    f"<div style=\"background-image:url('{UP_REL}a%20b.jpg')\"></div>\n"
    f'<p>Old: <a href="https://example.com/wp-content/uploads-old/x.jpg">x</a>. '
    f"Raw: {UP}photo.jpg.</p>\n"
    '<script>var g = {"items":[{"src":"' + UP_ESC + 'photo-300x200.jpg"},'
    '{"src":"' + UP_ESC + 'gone.jpg"}]};</script>\n'
)


def test_rewriting_twice_equals_rewriting_once():
    once = rewrite(PAGE)
    assert once != PAGE
    assert rewrite(once) == once


def test_rewriting_then_reversing_gives_back_the_original_page():
    r = rewriter()
    assert r.reverse(r.rewrite(PAGE)) == PAGE


def test_reverse_leaves_cdn_urls_of_unknown_keys_alone():
    text = f'<img src="{CDN}unknown.jpg"> <img src="https://cdn.example.com/x/photo.jpg">'
    assert rewriter().reverse(text) == text


def test_reverse_restores_the_uploads_url_scheme_and_percent_encoding():
    r = rewriter()
    out = r.reverse(r.rewrite(f"{UP.replace('https', 'http')}café.jpg"))
    assert out == f"{UP}caf%C3%A9.jpg"


def test_reverse_needs_a_reverse_lookup():
    with pytest.raises(ValueError, match="reverse_lookup"):
        Rewriter(SITE, OFFLOADED.get).reverse(PAGE)


@pytest.mark.parametrize(
    "cdn_url", ["https://example.com", "https://example.com/wp-content", "http://EXAMPLE.com/"]
)
def test_rewriting_is_idempotent_when_the_cdn_shares_the_uploads_host(cdn_url):
    # Pathological on purpose: this lookup versions any path, even a versioned one.
    def lookup(path: str) -> str:
        return "wp-content/uploads/" + path.replace("2024/05/", "2024/05/3f9a2c1e/")

    def reverse_lookup(key: str) -> str | None:
        if "/3f9a2c1e/" not in key:
            return None
        return key.removeprefix("wp-content/uploads/").replace("/3f9a2c1e", "")

    site = dataclasses.replace(SITE, cdn_url=cdn_url)
    r = Rewriter(site, lookup, reverse_lookup)
    once = r.rewrite(f'<img src="{UP}photo.jpg">')
    assert "/2024/05/3f9a2c1e/photo.jpg" in once
    assert r.rewrite(once) == once


def test_a_cdn_on_the_uploads_host_without_versioning_changes_nothing_but_the_scheme():
    site = dataclasses.replace(SITE, cdn_url="https://example.com", versioning=False)
    r = Rewriter(site, lambda path: f"wp-content/uploads/{path}")
    assert r.rewrite(f"{UP}photo.jpg {UP.replace('https', 'http')}x.jpg") == (
        f"{UP}photo.jpg {UP}x.jpg"
    )


@pytest.mark.parametrize(
    "changes",
    [{"uploads_url": ""}, {"cdn_url": ""}, {"uploads_url": "", "cdn_url": ""}],
)
def test_without_uploads_url_or_cdn_url_both_directions_are_the_identity(changes):
    r = rewriter(**changes)
    assert r.rewrite(PAGE) == PAGE
    assert r.reverse(rewrite(PAGE)) == rewrite(PAGE)


def test_a_base_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="uploads_url must be an http"):
        rewriter(uploads_url="example.com/wp-content/uploads")


def test_rewrite_bytes_keeps_bytes_that_are_not_utf8():
    body = b'\xff\xfe<p>caf\xe9</p><img src="' + UP.encode() + b'photo.jpg">\x80'
    expected = b'\xff\xfe<p>caf\xe9</p><img src="' + CDN.encode() + b'photo.jpg">\x80'
    assert rewriter().rewrite_bytes(body) == expected


def test_rewrite_bytes_decodes_with_the_given_charset():
    body = f'<img src="{UP}café.jpg" alt="é">'.encode("latin-1")
    assert rewriter().rewrite_bytes(body, "latin-1") == (
        f'<img src="{CDN}caf%C3%A9.jpg" alt="é">'.encode("latin-1")
    )


def test_an_invalid_byte_inside_a_url_leaves_that_url_alone():
    body = b'<img src="' + UP.encode() + b'caf\xe9.jpg">'
    assert rewriter().rewrite_bytes(body) == body


# -- properties ----------------------------------------------------------------------

# Pieces that make and break URLs: every form of the uploads base and a few near
# misses, names, folders, tails, descriptors and what ends a URL.
PREFIXES = [
    "https://example.com/wp-content/uploads/",
    "//example.com/wp-content/uploads/",
    "https:\\/\\/example.com\\/wp-content\\/uploads\\/",
    "\\/\\/example.com\\/wp-content\\/uploads\\/",
    "https://example.com/wp-content/uploads-old/",
    "https://other.org/wp-content/uploads/",
    "https://cdn.example.com/",
]
NAMES = ["photo.jpg", "photo-300x200.jpg", "photo.jpg.webp", "a%20b.jpg", "caf%C3%A9.jpg", "x"]
NOISE = [" ", '"', "'", "<", ">", "(", ")", ",", ", ", " 300w, ", '\\"', "&quot;", "&amp;"]
NOISE += ["url(", "src=", ".", ":", "!", "?ver=2", "#x", "\n", "=", "😀", "\\"]
TAILS = ["", "", "?ver=2", "#x", "?a=1&amp;b=2"]
# Whole URLs often, so that most texts hold some; loose pieces to join them in odd ways.
URLS = st.builds("".join, st.tuples(*map(st.sampled_from, [PREFIXES, NAMES, TAILS])))
ROUND_TRIP_TEXTS = st.lists(
    st.one_of(URLS, st.sampled_from(PREFIXES + NAMES + NOISE)), max_size=20
).map("".join)
EXTRA_PIECES = ["2024/05/", "2024\\/05\\/", "http://EXAMPLE.COM/wp-content/uploads/", "caf\\u00e9"]
EXTRA_PIECES += ["é", "café.jpg", "%", "%FF", "../", "\udcff", "\x00"]
TEXTS = st.one_of(
    st.lists(
        st.one_of(URLS, st.sampled_from(PREFIXES + NAMES + NOISE + EXTRA_PIECES)), max_size=20
    ).map("".join),
    st.text(max_size=200),
)
# A path is canonical when percent-encoding its decoded form gives it back.
CANONICAL = re.compile(r"[A-Za-z0-9._~ é/-]+")


def versioned(path: str) -> str | None:
    """Offload every canonical path (so that a round trip can be exact)."""
    return f"wp-content/uploads/0badc0de/{path}" if CANONICAL.fullmatch(path) else None


def unversioned(key: str) -> str | None:
    path = key.removeprefix("wp-content/uploads/0badc0de/")
    return path if versioned(path) == key else None


@settings(max_examples=500, deadline=None)
@given(TEXTS)
def test_with_nothing_offloaded_any_text_comes_back_unchanged(text):
    assert Rewriter(SITE, lambda path: None).rewrite(text) == text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_with_nothing_offloaded_any_bytes_come_back_unchanged(body):
    assert Rewriter(SITE, lambda path: None).rewrite_bytes(body) == body


@settings(max_examples=500, deadline=None)
@given(ROUND_TRIP_TEXTS)
def test_rewriting_changes_only_urls_so_reversing_restores_any_text(text):
    # reverse touches CDN URLs only: if any other character had changed, it would show here.
    r = Rewriter(SITE, versioned, unversioned)
    assert r.reverse(r.rewrite(text)) == text


@settings(max_examples=500, deadline=None)
@given(TEXTS)
def test_rewriting_any_text_twice_equals_rewriting_it_once(text):
    r = Rewriter(SITE, versioned, unversioned)
    once = r.rewrite(text)
    assert r.rewrite(once) == once

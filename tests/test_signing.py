"""HMAC signatures for origin URLs and webhook bodies: round trips, tampering, junk."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest

from offload.http.signing import (
    ContentDigest,
    content_sha256,
    sign_body,
    sign_request,
    sign_url_path,
    signed_request_headers,
    signed_url,
    verify_body_signature,
    verify_request_signature,
    verify_url_signature,
)

SECRET = "k3y-for-tests"
PATH = "/wp-content/uploads/2024/05/photo.jpg"
EXPIRES = 1_700_000_000
BEFORE = EXPIRES - 60  # a moment when a link expiring at EXPIRES still works
BODY = b'{"files":["a.jpg"]}'
TIMESTAMP = "1700000000"
# 1700000000 in Arabic-Indic digits: str.isdigit() says yes, the wire format says no.
ARABIC_INDIC_DIGITS = "\u0661\u0667" + "\u0660" * 8


def good_sig(path: str = PATH, expires: int = EXPIRES) -> str:
    return sign_url_path(SECRET, path, expires)


# -- signed URLs ------------------------------------------------------------------


def test_a_url_signature_matches_an_independent_hmac():
    expected = hmac.new(SECRET.encode(), f"{EXPIRES}:{PATH}".encode(), hashlib.sha256).hexdigest()
    assert sign_url_path(SECRET, PATH, EXPIRES) == expected
    # Computed with: printf '1700000000:<PATH>' | openssl dgst -sha256 -hmac 'k3y-for-tests'
    assert expected == "1f2de44a618bc9ea50a63def222ea5b7cca2f8e6c6b74d5641ca41fb7186bab3"


def test_a_signed_url_verifies_from_its_own_path_and_query():
    url = signed_url("https://cdn.example.com", PATH, SECRET, EXPIRES)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}" == "https://cdn.example.com"
    assert parts.path == PATH
    assert list(query) == ["expires", "sig"]
    assert query["expires"] == [str(EXPIRES)]
    reason = verify_url_signature(
        SECRET, parts.path, query["expires"][0], query["sig"][0], now=BEFORE
    )
    assert reason is None


def test_a_signed_url_is_base_path_and_two_parameters():
    assert signed_url("https://cdn.example.com/", PATH, SECRET, EXPIRES) == (
        f"https://cdn.example.com{PATH}?expires={EXPIRES}&sig={good_sig()}"
    )


def test_a_signed_url_adds_the_leading_slash_the_request_will_have():
    url = signed_url("https://o.example", PATH.lstrip("/"), SECRET, EXPIRES)
    assert url == signed_url("https://o.example", PATH, SECRET, EXPIRES)


def test_a_percent_encoded_path_is_signed_as_encoded():
    path = "/uploads/my%20photo%C3%A9.jpg"
    url = signed_url("https://o.example", path, SECRET, EXPIRES)
    assert urlsplit(url).path == path
    assert verify_url_signature(SECRET, path, str(EXPIRES), good_sig(path), now=BEFORE) is None
    decoded = "/uploads/my photoé.jpg"
    assert verify_url_signature(SECRET, decoded, str(EXPIRES), good_sig(path), now=BEFORE) == (
        "bad signature"
    )


@pytest.mark.parametrize(
    "path",
    ["/my photo.jpg", "/a.jpg?x=1", "/a.jpg#top", "/photoé.jpg", "/a%zz.jpg", "/a\n.jpg"],
    ids=["space", "query", "fragment", "non-ascii", "bad-escape", "newline"],
)
def test_a_path_that_is_not_percent_encoded_cannot_make_a_signed_url(path):
    with pytest.raises(ValueError, match="percent-encoded") as raised:
        signed_url("https://o.example", path, SECRET, EXPIRES)
    assert SECRET not in str(raised.value)


def test_the_link_works_until_just_before_it_expires():
    sig = good_sig()
    assert verify_url_signature(SECRET, PATH, str(EXPIRES), sig, now=EXPIRES - 0.001) is None
    assert verify_url_signature(SECRET, PATH, str(EXPIRES), sig, now=EXPIRES) == "expired"
    assert verify_url_signature(SECRET, PATH, str(EXPIRES), sig, now=EXPIRES + 86400) == ("expired")


def test_the_clock_defaults_to_now():
    assert verify_url_signature(SECRET, PATH, str(EXPIRES), good_sig()) == "expired"
    far = 4_000_000_000
    assert verify_url_signature(SECRET, PATH, str(far), good_sig(expires=far)) is None


@pytest.mark.parametrize(
    ("path", "expires", "sig"),
    [
        ("/wp-content/uploads/2024/05/other.jpg", str(EXPIRES), good_sig()),
        (PATH + "/", str(EXPIRES), good_sig()),
        (PATH.upper(), str(EXPIRES), good_sig()),
        (PATH, str(EXPIRES + 3600), good_sig()),
        (PATH, "0" + str(EXPIRES), good_sig()),
        (PATH, str(EXPIRES), good_sig()[:-1] + ("0" if good_sig()[-1] != "0" else "1")),
        (PATH, str(EXPIRES), good_sig().upper()),
        (PATH, str(EXPIRES), good_sig() + "00"),
        (PATH, str(EXPIRES), good_sig()[:32]),
        (PATH, str(EXPIRES), sign_url_path("another secret", PATH, EXPIRES)),
    ],
    ids=[
        "other-path",
        "trailing-slash",
        "path-case",
        "later-expiry",
        "leading-zero-expiry",
        "one-digit-changed",
        "uppercase-hex",
        "too-long",
        "truncated",
        "other-secret",
    ],
)
def test_a_tampered_url_has_a_bad_signature(path, expires, sig):
    assert verify_url_signature(SECRET, path, expires, sig, now=BEFORE) == "bad signature"


@pytest.mark.parametrize(
    ("expires", "sig"),
    [(None, "ab"), (str(EXPIRES), None), ("", "ab"), (str(EXPIRES), ""), (None, None)],
)
def test_a_url_without_both_parameters_is_missing_its_signature(expires, sig):
    assert verify_url_signature(SECRET, PATH, expires, sig, now=BEFORE) == "missing signature"


@pytest.mark.parametrize(
    "expires",
    [
        "soon",
        "-5",
        "+1700000000",
        "1700000000.0",
        "1e10",
        " 1700000000",
        "1700000000\n",
        "0x10",
        ARABIC_INDIC_DIGITS,
        "²",
        "9" * 21,
        "9" * 100_000,  # past int()'s digit limit: must not raise
        "1_700_000_000",
    ],
)
def test_a_malformed_expiry_is_rejected_without_raising(expires):
    assert verify_url_signature(SECRET, PATH, expires, good_sig(), now=BEFORE) == (
        "malformed expires"
    )


@pytest.mark.parametrize(
    "sig",
    [
        "not hex at all",
        "z" * 64,
        "é" * 64,  # compare_digest raises TypeError on non-ASCII str
        "\x00" * 64,
        "\udc80" * 64,
        "sha256=" + "0" * 64,
        " " + "0" * 63,
    ],
    ids=["words", "non-hex", "non-ascii", "nul", "surrogate", "prefixed", "space"],
)
def test_a_junk_signature_is_bad_without_raising(sig):
    assert verify_url_signature(SECRET, PATH, str(EXPIRES), sig, now=BEFORE) == "bad signature"


@pytest.mark.parametrize(
    "path", ["/photoé.jpg", "/\udc80.jpg", "/\x00", "", "/" + "a" * 100_000], ids=repr
)
def test_any_path_can_be_signed_and_verified_without_raising(path):
    assert verify_url_signature(SECRET, path, str(EXPIRES), good_sig(path), now=BEFORE) is None
    assert verify_url_signature(SECRET, path, str(EXPIRES), good_sig(), now=BEFORE) == (
        "bad signature"
    )


def test_a_far_future_expiry_still_needs_a_good_signature():
    expires = 10**19
    sig = sign_url_path(SECRET, PATH, expires)
    assert verify_url_signature(SECRET, PATH, str(expires), sig, now=BEFORE) is None
    assert verify_url_signature(SECRET, PATH, str(expires), good_sig(), now=BEFORE) == (
        "bad signature"
    )


@pytest.mark.parametrize("expires", [-1, 1.5, "1700000000", None])
def test_an_expiry_must_be_a_whole_non_negative_number_to_sign(expires):
    with pytest.raises((TypeError, ValueError)):
        sign_url_path(SECRET, PATH, expires)


# -- signed webhook bodies -------------------------------------------------------------


def test_a_body_signature_matches_an_independent_hmac():
    expected = hmac.new(SECRET.encode(), TIMESTAMP.encode() + b"." + BODY, hashlib.sha256)
    assert sign_body(SECRET, TIMESTAMP, BODY) == "sha256=" + expected.hexdigest()
    # Computed with: printf '1700000000.<BODY>' | openssl dgst -sha256 -hmac 'k3y-for-tests'
    assert sign_body(SECRET, TIMESTAMP, BODY) == (
        "sha256=64cd548c65bc01bbbccf607f5ba14026904589c7111e4faebbb31c830712617a"
    )


@pytest.mark.parametrize(
    "body", [BODY, b"", bytes(range(256)) * 4096], ids=["json", "empty", "1MB"]
)
def test_a_signed_body_verifies(body):
    signature = sign_body(SECRET, TIMESTAMP, body)
    assert verify_body_signature(SECRET, TIMESTAMP, signature, body, now=EXPIRES) is None


@pytest.mark.parametrize(
    ("timestamp", "signature", "body"),
    [
        (TIMESTAMP, sign_body(SECRET, TIMESTAMP, BODY), BODY + b" "),
        (TIMESTAMP, sign_body(SECRET, TIMESTAMP, BODY), b""),
        ("1700000001", sign_body(SECRET, TIMESTAMP, BODY), BODY),
        ("01700000000", sign_body(SECRET, TIMESTAMP, BODY), BODY),
        (TIMESTAMP, sign_body("another secret", TIMESTAMP, BODY), BODY),
        (TIMESTAMP, sign_body(SECRET, TIMESTAMP, BODY).upper(), BODY),
        (TIMESTAMP, sign_body(SECRET, TIMESTAMP, BODY).removeprefix("sha256="), BODY),
        (TIMESTAMP, "sha1=" + sign_body(SECRET, TIMESTAMP, BODY)[7:], BODY),
        (TIMESTAMP, "sha256=" + "é" * 64, BODY),
        (TIMESTAMP, "sha256=", BODY),
    ],
    ids=[
        "body-changed",
        "body-dropped",
        "timestamp-changed",
        "timestamp-zero-padded",
        "other-secret",
        "uppercase",
        "no-prefix",
        "sha1-prefix",
        "non-ascii",
        "prefix-only",
    ],
)
def test_a_tampered_webhook_has_a_bad_signature(timestamp, signature, body):
    assert verify_body_signature(SECRET, timestamp, signature, body, now=EXPIRES) == (
        "bad signature"
    )


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_a_webhook_within_the_tolerance_either_way_is_fresh(offset):
    signature = sign_body(SECRET, TIMESTAMP, BODY)
    assert verify_body_signature(SECRET, TIMESTAMP, signature, BODY, now=EXPIRES + offset) is None


@pytest.mark.parametrize("offset", [-301, 301, -86400, 10**12])
def test_a_webhook_outside_the_tolerance_either_way_is_stale(offset):
    signature = sign_body(SECRET, TIMESTAMP, BODY)
    assert verify_body_signature(SECRET, TIMESTAMP, signature, BODY, now=EXPIRES + offset) == (
        "stale timestamp"
    )


def test_the_tolerance_is_adjustable():
    signature = sign_body(SECRET, TIMESTAMP, BODY)
    verify = verify_body_signature
    assert verify(SECRET, TIMESTAMP, signature, BODY, now=EXPIRES + 30, tolerance=30) is None
    assert verify(SECRET, TIMESTAMP, signature, BODY, now=EXPIRES + 31, tolerance=30) == (
        "stale timestamp"
    )


def test_a_webhook_without_headers_says_which_is_missing():
    signature = sign_body(SECRET, TIMESTAMP, BODY)
    assert verify_body_signature(SECRET, None, signature, BODY, now=EXPIRES) == (
        "missing timestamp"
    )
    assert verify_body_signature(SECRET, "", signature, BODY, now=EXPIRES) == "missing timestamp"
    assert verify_body_signature(SECRET, TIMESTAMP, None, BODY, now=EXPIRES) == (
        "missing signature"
    )
    assert verify_body_signature(SECRET, TIMESTAMP, "", BODY, now=EXPIRES) == "missing signature"


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "-1700000000",
        "1700000000.5",
        "1.7e9",
        ARABIC_INDIC_DIGITS,
        "9" * 100_000,
        "\udc80",
    ],
)
def test_a_malformed_webhook_timestamp_is_rejected_without_raising(timestamp):
    signature = sign_body(SECRET, TIMESTAMP, BODY)
    assert verify_body_signature(SECRET, timestamp, signature, BODY, now=EXPIRES) == (
        "malformed timestamp"
    )


# -- both ----------------------------------------------------------------------------


def test_signatures_are_compared_with_compare_digest(monkeypatch):
    calls = []
    original = hmac.compare_digest

    def recording_compare_digest(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording_compare_digest)
    sig = good_sig()
    assert verify_url_signature(SECRET, PATH, str(EXPIRES), sig, now=BEFORE) is None
    assert verify_url_signature(SECRET, PATH, str(EXPIRES), "0" * 64, now=BEFORE)
    signature = sign_body(SECRET, TIMESTAMP, BODY)
    assert verify_body_signature(SECRET, TIMESTAMP, signature, BODY, now=EXPIRES) is None
    assert verify_body_signature(SECRET, TIMESTAMP, "sha256=00", BODY, now=EXPIRES)
    assert calls == [(sig, sig), (sig, "0" * 64), (signature, signature), (signature, "sha256=00")]


def test_the_secret_never_appears_in_what_is_returned():
    secret = "0123456789abcdef"  # hex-looking, so a leak would hide well in a digest
    results = [
        sign_url_path(secret, PATH, EXPIRES),
        signed_url("https://o.example", PATH, secret, EXPIRES),
        sign_body(secret, TIMESTAMP, BODY),
        verify_url_signature(secret, PATH, str(EXPIRES), "00", now=BEFORE),
        verify_url_signature(secret, PATH, "x", "00", now=BEFORE),
        verify_url_signature(secret, PATH, str(EXPIRES), "00", now=EXPIRES),
        verify_body_signature(secret, TIMESTAMP, "sha256=00", BODY, now=EXPIRES),
        verify_body_signature(secret, TIMESTAMP, "sha256=00", BODY, now=0),
    ]
    for result in results:
        assert secret not in result


@pytest.mark.parametrize(
    "call",
    [
        lambda: sign_url_path("", PATH, EXPIRES),
        lambda: signed_url("https://o.example", PATH, "", EXPIRES),
        lambda: sign_body("", TIMESTAMP, BODY),
        lambda: verify_url_signature("", PATH, str(EXPIRES), good_sig(), now=BEFORE),
        lambda: verify_body_signature("", TIMESTAMP, "sha256=00", BODY, now=EXPIRES),
    ],
    ids=["sign_url_path", "signed_url", "sign_body", "verify_url", "verify_body"],
)
def test_an_empty_secret_is_refused_rather_than_used(call):
    with pytest.raises(ValueError, match="secret is empty"):
        call()


# -- signed webhook requests (v2) ------------------------------------------------------

TARGET = "/_offload/blog/uploads"
DIGEST = hashlib.sha256(BODY).hexdigest()


def v2(**changes: object) -> str | None:
    """verify_request_signature of a good request, with ``changes`` to what arrives."""
    sent: dict[str, object] = {
        "timestamp": TIMESTAMP,
        "method": "POST",
        "target": TARGET,
        "body_sha256": DIGEST,
        "signature": sign_request(SECRET, TIMESTAMP, "POST", TARGET, DIGEST),
        "now": int(TIMESTAMP),
    }
    sent.update(changes)
    return verify_request_signature(SECRET, **sent)  # type: ignore[arg-type]


def test_a_request_signature_matches_an_independent_hmac_of_the_four_parts():
    text = f"{TIMESTAMP}.POST.{TARGET}.{DIGEST}".encode()
    expected = "sha256=" + hmac.new(SECRET.encode(), text, hashlib.sha256).hexdigest()
    assert sign_request(SECRET, TIMESTAMP, "POST", TARGET, DIGEST) == expected
    assert content_sha256(BODY) == DIGEST


def test_a_good_request_signature_verifies_without_the_body():
    assert v2() is None


@pytest.mark.parametrize(
    "change",
    [
        {"method": "GET"},
        {"target": "/_offload/blog/deletions"},
        {"target": "/_offload/shop/uploads"},
        {"target": TARGET + "?reverse=1"},
        {"body_sha256": hashlib.sha256(b"{}").hexdigest()},
        {"timestamp": str(int(TIMESTAMP) + 1)},
    ],
)
def test_a_request_signed_for_one_endpoint_site_query_or_body_fails_on_any_other(change):
    assert v2(**change) == "bad signature"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"timestamp": None}, "missing timestamp"),
        ({"timestamp": None, "signature": None}, "missing timestamp"),
        ({"signature": ""}, "missing signature"),
        ({"body_sha256": None}, "missing content hash"),
        ({"body_sha256": DIGEST.upper()}, "malformed content hash"),
        ({"body_sha256": DIGEST[:-1]}, "malformed content hash"),
        ({"timestamp": ARABIC_INDIC_DIGITS}, "malformed timestamp"),
        ({"now": int(TIMESTAMP) + 301}, "stale timestamp"),
        ({"now": int(TIMESTAMP) - 301}, "stale timestamp"),
        ({"signature": "sha256=" + "é" * 64}, "bad signature"),
    ],
)
def test_a_broken_request_signature_names_its_problem(change, reason):
    assert v2(**change) == reason


def test_signed_request_headers_are_the_three_a_server_checks():
    headers = signed_request_headers(SECRET, "post", TARGET, BODY, timestamp=TIMESTAMP)
    assert headers == {
        "X-Offload-Timestamp": TIMESTAMP,
        "X-Offload-Content-SHA256": DIGEST,
        "X-Offload-Signature": sign_request(SECRET, TIMESTAMP, "POST", TARGET, DIGEST),
    }


def test_a_content_digest_matches_only_the_declared_bytes_however_they_are_chunked():
    digest = ContentDigest(DIGEST)
    for index in range(len(BODY)):
        digest.update(BODY[index : index + 1])
    assert digest.matches()
    other = ContentDigest(DIGEST)
    other.update(BODY + b" ")
    assert not other.matches()

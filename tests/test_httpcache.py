"""HTTP caching rules: dates, entity tags, preconditions, ranges, multipart, Cache-Control, tags."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from offload.http.caching import (
    MAX_TAGS_BYTES,
    NO_STORE,
    RangeSelection,
    cache_control,
    cache_tags,
    content_range,
    http_date,
    multipart_byteranges,
    multipart_frames,
    negative_cache_control,
    parse_http_date,
    precondition,
    quote_etag,
    select_ranges,
    tag_header_value,
    unsatisfied_range,
)

ETAG = "abc-3"
# Stored with a fraction of a second, as S3 and file systems report it.
MODIFIED = datetime(2024, 5, 1, 12, 0, 0, 750_000, tzinfo=UTC)
MODIFIED_HTTP = "Wed, 01 May 2024 12:00:00 GMT"
EARLIER_HTTP = "Wed, 01 May 2024 11:59:59 GMT"
LATER_HTTP = "Wed, 01 May 2024 12:00:01 GMT"
NOW = datetime(2024, 6, 1, tzinfo=UTC)
FUTURE_HTTP = "Sat, 01 Jun 2024 00:00:01 GMT"

# -- dates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param(
            datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC),
            "Sun, 06 Nov 1994 08:49:37 GMT",
            id="the RFC example",
        ),
        pytest.param(MODIFIED, MODIFIED_HTTP, id="fractions of a second are dropped"),
        pytest.param(
            datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            "Wed, 01 May 2024 12:00:00 GMT",
            id="another zone is converted to GMT",
        ),
        pytest.param(datetime(2024, 5, 1, 12, 0), MODIFIED_HTTP, id="a naive time is taken as UTC"),
        pytest.param(
            datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
            "Wed, 02 Jan 0999 03:04:05 GMT",
            id="the year has four digits",
        ),
    ],
)
def test_http_date_writes_imf_fixdate_in_gmt(when, expected):
    assert http_date(when) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT", (1994, 11, 6, 8, 49, 37), id="IMF-fixdate"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", (1994, 11, 6, 8, 49, 37), id="RFC 850"),
        pytest.param("Wednesday, 01-May-24 12:00:00 GMT", (2024, 5, 1, 12, 0, 0), id="RFC 850 now"),
        pytest.param("Sun Nov  6 08:49:37 1994", (1994, 11, 6, 8, 49, 37), id="asctime"),
        pytest.param("Wed May 01 12:00:00 2024", (2024, 5, 1, 12, 0, 0), id="asctime 2 digits"),
        pytest.param(" Sun, 06 Nov 1994 08:49:37 GMT\t", (1994, 11, 6, 8, 49, 37), id="OWS"),
        pytest.param("Mon, 06 Nov 1994 08:49:37 GMT", (1994, 11, 6, 8, 49, 37), id="wrong day"),
        pytest.param("Sat, 31 Dec 2016 23:59:60 GMT", (2016, 12, 31, 23, 59, 59), id="leap second"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("garbage", None, id="garbage"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 UTC", None, id="a zone other than GMT"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 +0000", None, id="a numeric zone"),
        pytest.param("Sun, 06 Nov 1994 08:49:37", None, id="no zone"),
        pytest.param("sun, 06 nov 1994 08:49:37 GMT", None, id="lower case"),
        pytest.param("Sun, 6 Nov 1994 08:49:37 GMT", None, id="a one-digit day"),
        pytest.param("Sun, 06 Nov 94 08:49:37 GMT", None, id="a two-digit IMF year"),
        pytest.param("Thu, 30 Feb 2024 08:49:37 GMT", None, id="30 February"),
        pytest.param("Sun, 06 Nov 1994 24:00:00 GMT", None, id="hour 24"),
        pytest.param("Sun, 06 Nov 0000 08:49:37 GMT", None, id="year zero"),
        pytest.param("Sun, 06-Nov-94 08:49:37 GMT", None, id="RFC 850 with a short day"),
        pytest.param("Sun Nov  6 08:49:37 1994 GMT", None, id="asctime with a zone"),
        pytest.param("1994-11-06T08:49:37Z", None, id="ISO 8601"),
        pytest.param("784111777", None, id="a Unix time"),
        pytest.param("Sun, \u0660\u0666 Nov 1994 08:49:37 GMT", None, id="Arabic-Indic digits"),
    ],
)
def test_parse_http_date_reads_the_three_forms_and_nothing_else(value, expected):
    parsed = parse_http_date(value)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == datetime(*expected, tzinfo=UTC)
        assert parsed.tzinfo is UTC


def test_a_two_digit_year_more_than_50_years_ahead_is_in_the_last_century():
    yy = (datetime.now(UTC).year + 60) % 100
    parsed = parse_http_date(f"Sunday, 06-Nov-{yy:02d} 08:49:37 GMT")
    assert parsed is not None
    assert datetime.now(UTC).year - 40 <= parsed.year <= datetime.now(UTC).year


@given(st.datetimes(min_value=datetime(1, 1, 1), timezones=st.just(UTC)))
def test_http_date_reads_back_to_the_same_second(when):
    assert parse_http_date(http_date(when)) == when.replace(microsecond=0)


# -- entity tags -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etag", "expected"),
    [
        ("d41d8cd98f00b204e9800998ecf8427e", '"d41d8cd98f00b204e9800998ecf8427e"'),
        ("abc-3", '"abc-3"'),
        ("", '""'),
        ('"abc"', '"abc"'),
        ('W/"abc"', 'W/"abc"'),
    ],
)
def test_quote_etag_makes_a_strong_entity_tag_once(etag, expected):
    assert quote_etag(etag) == expected


@pytest.mark.parametrize("etag", ['a"b', "a b", "a\r\nSet-Cookie: x", '"abc'])
def test_quote_etag_refuses_what_cannot_be_an_entity_tag(etag):
    with pytest.raises(ValueError, match="entity tag"):
        quote_etag(etag)


# -- preconditions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        pytest.param("GET", {}, None, id="no condition goes on"),
        # If-None-Match: weak comparison
        pytest.param("GET", {"If-None-Match": '"abc-3"'}, 304, id="INM same strong tag"),
        pytest.param("GET", {"If-None-Match": 'W/"abc-3"'}, 304, id="INM weak tag matches weakly"),
        pytest.param("GET", {"If-None-Match": '"other"'}, None, id="INM another tag goes on"),
        pytest.param("GET", {"If-None-Match": '"x", W/"abc-3"'}, 304, id="INM list holding it"),
        pytest.param("GET", {"If-None-Match": '"x","y" , "z"'}, None, id="INM list without it"),
        pytest.param("GET", {"If-None-Match": ' , "abc-3" ,'}, 304, id="INM empty list elements"),
        pytest.param("GET", {"If-None-Match": '"a,b", "abc-3"'}, 304, id="INM comma in a tag"),
        pytest.param("GET", {"If-None-Match": '"abc-3,x"'}, None, id="INM tag with a comma"),
        pytest.param("GET", {"If-None-Match": "*"}, 304, id="INM star"),
        pytest.param("GET", {"If-None-Match": "abc-3"}, None, id="INM unquoted is garbage"),
        pytest.param("GET", {"If-None-Match": '"abc-3" junk'}, None, id="INM trailing junk"),
        pytest.param("GET", {"If-None-Match": '*, "abc-3"'}, None, id="INM star in a list"),
        pytest.param("GET", {"If-None-Match": '"abc-3'}, None, id="INM unclosed quote"),
        pytest.param("GET", {"If-None-Match": ""}, None, id="INM empty"),
        pytest.param("GET", {"If-None-Match": '"ABC-3"'}, None, id="INM is case-sensitive"),
        pytest.param("HEAD", {"If-None-Match": '"abc-3"'}, 304, id="INM on HEAD is 304"),
        pytest.param("POST", {"If-None-Match": '"abc-3"'}, 412, id="INM on POST is 412"),
        pytest.param("DELETE", {"If-None-Match": "*"}, 412, id="INM star on DELETE is 412"),
        pytest.param("OPTIONS", {"If-None-Match": '"other"'}, None, id="INM miss on OPTIONS"),
        # If-Modified-Since
        pytest.param("GET", {"If-Modified-Since": MODIFIED_HTTP}, 304, id="IMS same second"),
        pytest.param("GET", {"If-Modified-Since": LATER_HTTP}, 304, id="IMS later"),
        pytest.param("GET", {"If-Modified-Since": EARLIER_HTTP}, None, id="IMS earlier goes on"),
        pytest.param(
            "GET",
            {"If-Modified-Since": "Wednesday, 01-May-24 12:00:00 GMT"},
            304,
            id="IMS in RFC 850",
        ),
        pytest.param(
            "GET", {"If-Modified-Since": "Wed May  1 12:00:00 2024"}, 304, id="IMS in asctime"
        ),
        pytest.param("HEAD", {"If-Modified-Since": MODIFIED_HTTP}, 304, id="IMS on HEAD"),
        pytest.param("POST", {"If-Modified-Since": MODIFIED_HTTP}, None, id="IMS not on POST"),
        pytest.param("GET", {"If-Modified-Since": "yesterday"}, None, id="IMS invalid ignored"),
        pytest.param("GET", {"If-Modified-Since": FUTURE_HTTP}, None, id="IMS future ignored"),
        pytest.param(
            "GET",
            {"If-None-Match": '"other"', "If-Modified-Since": LATER_HTTP},
            None,
            id="IMS ignored when INM present",
        ),
        pytest.param(
            "GET",
            {"If-None-Match": "garbage", "If-Modified-Since": LATER_HTTP},
            None,
            id="IMS ignored even when INM is garbage",
        ),
        pytest.param(
            "GET",
            {"If-None-Match": '"abc-3"', "If-Modified-Since": EARLIER_HTTP},
            304,
            id="INM match wins over a stale IMS",
        ),
        # If-Match: strong comparison
        pytest.param("GET", {"If-Match": '"abc-3"'}, None, id="IM same tag goes on"),
        pytest.param("GET", {"If-Match": 'W/"abc-3"'}, 412, id="IM weak tag never matches"),
        pytest.param("GET", {"If-Match": "*"}, None, id="IM star goes on"),
        pytest.param("GET", {"If-Match": '"other"'}, 412, id="IM another tag is 412"),
        pytest.param("GET", {"If-Match": '"x", "abc-3"'}, None, id="IM list holding it"),
        pytest.param("GET", {"If-Match": "abc-3"}, 412, id="IM garbage is 412"),
        pytest.param("HEAD", {"If-Match": '"other"'}, 412, id="IM miss on HEAD is 412"),
        # If-Unmodified-Since
        pytest.param("GET", {"If-Unmodified-Since": EARLIER_HTTP}, 412, id="IUS earlier is 412"),
        pytest.param("GET", {"If-Unmodified-Since": MODIFIED_HTTP}, None, id="IUS same second"),
        pytest.param("GET", {"If-Unmodified-Since": LATER_HTTP}, None, id="IUS later goes on"),
        pytest.param("GET", {"If-Unmodified-Since": "soon"}, None, id="IUS invalid ignored"),
        # the order of RFC 9110 §13.2.2
        pytest.param(
            "GET",
            {"If-Match": '"other"', "If-None-Match": '"abc-3"'},
            412,
            id="a failed IM beats a matching INM",
        ),
        pytest.param(
            "GET",
            {"If-Match": '"abc-3"', "If-None-Match": '"abc-3"'},
            304,
            id="a passed IM goes on to INM",
        ),
        pytest.param(
            "GET",
            {"If-Match": '"abc-3"', "If-Unmodified-Since": EARLIER_HTTP},
            None,
            id="IUS ignored when IM present",
        ),
        pytest.param(
            "GET",
            {"If-Unmodified-Since": EARLIER_HTTP, "If-None-Match": '"abc-3"'},
            412,
            id="a failed IUS beats a matching INM",
        ),
        pytest.param(
            "GET",
            {"If-Match": '"other"', "If-Modified-Since": LATER_HTTP},
            412,
            id="a failed IM beats a matching IMS",
        ),
    ],
)
def test_precondition_follows_rfc_9110(method, headers, expected):
    assert precondition(method, headers, ETAG, MODIFIED, now=NOW) == expected


def test_precondition_ignores_a_modified_since_date_past_the_clock():
    headers = {"If-Modified-Since": "Fri, 31 Dec 9999 23:59:59 GMT"}
    assert precondition("GET", headers, ETAG, MODIFIED) is None


def test_precondition_accepts_a_quoted_etag_from_storage():
    assert precondition("GET", {"If-None-Match": '"abc-3"'}, '"abc-3"', MODIFIED) == 304


def test_a_weak_own_etag_never_passes_if_match():
    assert precondition("GET", {"If-Match": 'W/"abc-3"'}, 'W/"abc-3"', MODIFIED) == 412
    assert precondition("GET", {"If-None-Match": '"abc-3"'}, 'W/"abc-3"', MODIFIED) == 304


def test_precondition_reads_aiohttp_headers_case_insensitively_across_lines():
    headers = CIMultiDictProxy(
        CIMultiDict([("if-none-match", '"x"'), ("IF-NONE-MATCH", '"abc-3"')])
    )
    assert precondition("GET", headers, ETAG, MODIFIED) == 304
    headers = CIMultiDictProxy(CIMultiDict([("if-modified-since", MODIFIED_HTTP)]))
    assert precondition("GET", headers, ETAG, MODIFIED) == 304


# -- ranges ----------------------------------------------------------------------------


def r(*ranges: tuple[int, int]) -> RangeSelection:
    return RangeSelection(206, ranges)


WHOLE = RangeSelection(200, ())
UNSATISFIABLE = RangeSelection(416, ())
SEVENTEEN = ",".join(f"{i * 3}-{i * 3}" for i in range(17))
SIXTEEN = ",".join(f"{i * 3}-{i * 3}" for i in range(16))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, WHOLE, id="no Range sends the whole body"),
        pytest.param({"Range": "bytes=0-9"}, r((0, 9)), id="a-b"),
        pytest.param({"Range": "bytes=5-5"}, r((5, 5)), id="a single byte"),
        pytest.param({"Range": "bytes=90-"}, r((90, 99)), id="a- to the end"),
        pytest.param({"Range": "bytes=0-"}, r((0, 99)), id="0- is all of it as 206"),
        pytest.param({"Range": "bytes=-10"}, r((90, 99)), id="-n the last n bytes"),
        pytest.param({"Range": "bytes=-1000"}, r((0, 99)), id="-n longer than the body"),
        pytest.param({"Range": "bytes=-0"}, UNSATISFIABLE, id="-0 is unsatisfiable"),
        pytest.param({"Range": "bytes=50-1000"}, r((50, 99)), id="last past the end is clamped"),
        pytest.param({"Range": "bytes=99-99"}, r((99, 99)), id="the last byte"),
        pytest.param({"Range": "bytes=100-"}, UNSATISFIABLE, id="first at the end is 416"),
        pytest.param({"Range": "bytes=100-200"}, UNSATISFIABLE, id="first past the end is 416"),
        pytest.param(
            {"Range": "bytes=0-99999999999999999999"}, r((0, 99)), id="a huge last is clamped"
        ),
        pytest.param({"Range": "bytes=0-" + "9" * 40}, WHOLE, id="absurd digits are ignored"),
        pytest.param({"Range": "Bytes=0-9"}, r((0, 9)), id="the unit is case-insensitive"),
        pytest.param({"Range": " bytes=0-9 "}, r((0, 9)), id="surrounding spaces"),
        # invalid -> ignored
        pytest.param({"Range": "bytes=9-0"}, WHOLE, id="first after last is invalid"),
        pytest.param({"Range": "items=0-9"}, WHOLE, id="another unit is ignored"),
        pytest.param({"Range": "bytes 0-9"}, WHOLE, id="no equals sign"),
        pytest.param({"Range": "bytes = 0-9"}, WHOLE, id="spaces around the equals sign"),
        pytest.param({"Range": "bytes="}, WHOLE, id="no range"),
        pytest.param({"Range": "bytes=,"}, WHOLE, id="only an empty list"),
        pytest.param({"Range": "bytes=-"}, WHOLE, id="a lone dash"),
        pytest.param({"Range": "bytes=abc"}, WHOLE, id="letters"),
        pytest.param({"Range": "bytes=1-2-3"}, WHOLE, id="two dashes"),
        pytest.param({"Range": "bytes=+1-2"}, WHOLE, id="a sign"),
        pytest.param({"Range": "bytes=0 - 9"}, WHOLE, id="spaces inside a range"),
        pytest.param({"Range": "bytes=\u0660-\u0669"}, WHOLE, id="Arabic-Indic digits"),
        pytest.param({"Range": "bytes=0-9, x"}, WHOLE, id="one bad range spoils the header"),
        pytest.param({"Range": "bytes=0-9,9-0"}, WHOLE, id="one reversed range spoils it"),
        pytest.param({"Range": ""}, WHOLE, id="empty"),
        # several ranges
        pytest.param({"Range": "bytes=0-9, 20-29"}, r((0, 9), (20, 29)), id="two ranges"),
        pytest.param({"Range": "bytes=0-9,,20-29,"}, r((0, 9), (20, 29)), id="empty elements"),
        pytest.param({"Range": "bytes=20-29,0-9"}, r((0, 9), (20, 29)), id="sorted"),
        pytest.param({"Range": "bytes=0-9,5-14"}, r((0, 14)), id="overlapping coalesce"),
        pytest.param({"Range": "bytes=0-9,10-19"}, r((0, 19)), id="adjacent coalesce"),
        pytest.param({"Range": "bytes=0-9,11-19"}, r((0, 9), (11, 19)), id="a gap stays"),
        pytest.param({"Range": "bytes=10-19,-5,0-9"}, r((0, 19), (95, 99)), id="suffix mixed"),
        pytest.param({"Range": "bytes=0-9,200-300"}, r((0, 9)), id="unsatisfiable ones dropped"),
        pytest.param({"Range": "bytes=-0,0-9"}, r((0, 9)), id="-0 dropped from a list"),
        pytest.param({"Range": "bytes=200-,-0"}, UNSATISFIABLE, id="none satisfiable is 416"),
        pytest.param({"Range": "bytes=0-,0-"}, WHOLE, id="the body twice is amplification"),
        pytest.param({"Range": "bytes=0-59,40-99"}, WHOLE, id="more bytes than the body"),
        pytest.param(
            {"Range": f"bytes={SIXTEEN}"}, r(*((i * 3, i * 3) for i in range(16))), id="16"
        ),
        pytest.param({"Range": f"bytes={SEVENTEEN}"}, WHOLE, id="17 ranges are too many"),
        pytest.param(
            {"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(40))},
            r((0, 39)),
            id="many that coalesce into one",
        ),
        # If-Range
        pytest.param({"Range": "bytes=0-9", "If-Range": '"abc-3"'}, r((0, 9)), id="IR same tag"),
        pytest.param({"Range": "bytes=0-9", "If-Range": '"other"'}, WHOLE, id="IR another tag"),
        pytest.param({"Range": "bytes=0-9", "If-Range": 'W/"abc-3"'}, WHOLE, id="IR weak tag"),
        pytest.param({"Range": "bytes=0-9", "If-Range": "abc-3"}, WHOLE, id="IR unquoted tag"),
        pytest.param({"Range": "bytes=0-9", "If-Range": '"abc-3'}, WHOLE, id="IR unclosed"),
        pytest.param({"Range": "bytes=0-9", "If-Range": MODIFIED_HTTP}, r((0, 9)), id="IR date"),
        pytest.param(
            {"Range": "bytes=0-9", "If-Range": "Wednesday, 01-May-24 12:00:00 GMT"},
            r((0, 9)),
            id="IR date in RFC 850",
        ),
        pytest.param({"Range": "bytes=0-9", "If-Range": EARLIER_HTTP}, WHOLE, id="IR older date"),
        pytest.param({"Range": "bytes=0-9", "If-Range": LATER_HTTP}, WHOLE, id="IR later date"),
        pytest.param({"Range": "bytes=0-9", "If-Range": "never"}, WHOLE, id="IR invalid date"),
        pytest.param({"If-Range": '"abc-3"'}, WHOLE, id="IR without Range"),
        pytest.param(
            {"Range": "bytes=200-", "If-Range": '"abc-3"'}, UNSATISFIABLE, id="IR holds then 416"
        ),
        pytest.param(
            {"Range": "bytes=200-", "If-Range": '"other"'}, WHOLE, id="IR fails before 416"
        ),
        pytest.param(
            {"Range": "bytes=0-9,20-29", "If-Range": '"abc-3"'},
            r((0, 9), (20, 29)),
            id="IR with several ranges",
        ),
    ],
)
def test_select_ranges_on_a_100_byte_body(headers, expected):
    assert select_ranges(headers, 100, ETAG, MODIFIED) == expected


@pytest.mark.parametrize(
    ("range_", "expected"),
    [
        pytest.param("bytes=0-", UNSATISFIABLE, id="0- is unsatisfiable"),
        pytest.param("bytes=0-0", UNSATISFIABLE, id="0-0 is unsatisfiable"),
        pytest.param("bytes=-0", UNSATISFIABLE, id="-0 is unsatisfiable"),
        pytest.param("bytes=-5", WHOLE, id="-5 is satisfiable but empty, so the empty 200"),
        pytest.param("bytes=0-,-5", WHOLE, id="-5 in a list still the empty 200"),
        pytest.param("bytes=9-0", WHOLE, id="an invalid header is still ignored"),
    ],
)
def test_select_ranges_on_an_empty_body(range_, expected):
    assert select_ranges({"Range": range_}, 0, ETAG, MODIFIED) == expected


def test_max_ranges_one_never_asks_for_multipart():
    headers = {"Range": "bytes=0-9,20-29"}
    assert select_ranges(headers, 100, ETAG, MODIFIED, max_ranges=1) == WHOLE
    headers = {"Range": "bytes=0-9,5-29"}
    assert select_ranges(headers, 100, ETAG, MODIFIED, max_ranges=1) == r((0, 29))


def test_select_ranges_refuses_a_negative_size():
    with pytest.raises(ValueError, match="negative"):
        select_ranges({"Range": "bytes=0-1"}, -1, ETAG, MODIFIED)


@st.composite
def single_ranges(draw):
    bound = st.integers(min_value=0, max_value=10**12)
    kind = draw(st.sampled_from(["a-b", "a-", "-n"]))
    if kind == "-n":
        return f"-{draw(bound)}"
    first = draw(bound)
    if kind == "a-":
        return f"{first}-"
    return f"{first}-{first + draw(bound)}"


@given(size=st.integers(min_value=0, max_value=10**12), spec=single_ranges())
def test_a_206_range_always_lies_inside_the_body(size, spec):
    selection = select_ranges({"Range": f"bytes={spec}"}, size, ETAG, MODIFIED)
    assert selection.status in (200, 206, 416)
    if selection.status == 206:
        ((first, last),) = selection.ranges
        assert 0 <= first <= last < size
    else:
        assert selection.ranges == ()


# -- Content-Range and multipart ----------------------------------------------------


def test_content_range_strings():
    assert content_range(0, 9, 100) == "bytes 0-9/100"
    assert content_range(99, 99, 100) == "bytes 99-99/100"
    assert unsatisfied_range(100) == "bytes */100"
    assert unsatisfied_range(0) == "bytes */0"


def test_multipart_byteranges_is_exactly_the_rfc_layout():
    body = b"0123456789abcdefghij"
    content_type, payload = multipart_byteranges(
        body, [(0, 3), (15, 19)], "image/jpeg", boundary="THIS_STRING_SEPARATES"
    )
    assert content_type == "multipart/byteranges; boundary=THIS_STRING_SEPARATES"
    assert payload == (
        b"--THIS_STRING_SEPARATES\r\n"
        b"Content-Type: image/jpeg\r\n"
        b"Content-Range: bytes 0-3/20\r\n"
        b"\r\n"
        b"0123\r\n"
        b"--THIS_STRING_SEPARATES\r\n"
        b"Content-Type: image/jpeg\r\n"
        b"Content-Range: bytes 15-19/20\r\n"
        b"\r\n"
        b"fghij\r\n"
        b"--THIS_STRING_SEPARATES--\r\n"
    )


def test_multipart_parts_parse_back_byte_for_byte_with_the_email_parser():
    body = bytes(range(256)) + b"line\r\nnext\nbare\rend\r\n\r\n--" * 20
    ranges = [(0, 0), (2, 300), (301, 301), (400, len(body) - 1)]
    content_type, payload = multipart_byteranges(body, ranges, "font/woff2")
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + payload, policy=email.policy.HTTP
    )
    assert message.get_content_type() == "multipart/byteranges"
    parts = list(message.iter_parts())
    assert len(parts) == len(ranges)
    for part, (first, last) in zip(parts, ranges, strict=True):
        assert part.get_content_type() == "font/woff2"
        assert part["Content-Range"] == f"bytes {first}-{last}/{len(body)}"
        assert part.get_payload(decode=True) == body[first : last + 1]


def test_the_default_boundary_is_random_hex():
    first, _ = multipart_byteranges(b"abcdef", [(0, 1), (4, 5)], "text/plain")
    second, _ = multipart_byteranges(b"abcdef", [(0, 1), (4, 5)], "text/plain")
    assert re.fullmatch(r"multipart/byteranges; boundary=[0-9a-f]{32}", first)
    assert first != second


def test_multipart_frames_add_up_to_the_body_for_a_streaming_handler():
    body = bytes(1000)
    ranges = [(0, 99), (500, 999)]
    heads, tail = multipart_frames(ranges, "video/mp4", len(body), "b0undary")
    _, payload = multipart_byteranges(body, ranges, "video/mp4", boundary="b0undary")
    length = sum(map(len, heads)) + sum(b - a + 1 for a, b in ranges) + len(tail)
    assert length == len(payload)
    assert payload.startswith(heads[0])
    assert payload.endswith(tail)


@pytest.mark.parametrize("boundary", ["", "a b", "a\r\nb", "x" * 71, 'q"uote'])
def test_multipart_refuses_a_boundary_that_needs_quoting(boundary):
    with pytest.raises(ValueError, match="boundary"):
        multipart_frames([(0, 1)], "text/plain", 10, boundary)


@pytest.mark.parametrize("ranges", [[(0, 10)], [(5, 4)], [(-1, 3)]])
def test_multipart_refuses_a_range_outside_the_body(ranges):
    with pytest.raises(ValueError, match="outside"):
        multipart_byteranges(bytes(10), ranges, "text/plain")


# -- Cache-Control -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {"max_age": 3600, "stale_while_revalidate": 60, "stale_if_error": 86400},
            "public, max-age=3600, stale-while-revalidate=60, stale-if-error=86400",
            id="the usual policy",
        ),
        pytest.param(
            {"max_age": 3600, "stale_while_revalidate": 60, "stale_if_error": 0},
            "public, max-age=3600, stale-while-revalidate=60",
            id="stale-if-error 0 is left out",
        ),
        pytest.param(
            {"max_age": 3600, "stale_while_revalidate": 0, "stale_if_error": 0},
            "public, max-age=3600",
            id="both stale directives 0 are left out",
        ),
        pytest.param(
            {"max_age": 0, "stale_while_revalidate": 0, "stale_if_error": 0},
            "public, max-age=0",
            id="max-age 0 is kept",
        ),
        pytest.param(
            {"max_age": 60, "stale_while_revalidate": 30, "stale_if_error": 600, "s_maxage": 0},
            "public, max-age=60, stale-while-revalidate=30, stale-if-error=600, s-maxage=0",
            id="s-maxage when given, even 0",
        ),
        pytest.param(
            {"max_age": 60, "stale_while_revalidate": 30, "stale_if_error": 600, "versioned": True},
            "public, max-age=31536000, immutable",
            id="versioned keys are immutable for a year",
        ),
        pytest.param(
            {
                "max_age": 60,
                "stale_while_revalidate": 0,
                "stale_if_error": 0,
                "s_maxage": 9,
                "versioned": True,
            },
            "public, max-age=31536000, immutable",
            id="versioned ignores s-maxage",
        ),
    ],
)
def test_cache_control_strings(kwargs, expected):
    assert cache_control(**kwargs) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_age": -1, "stale_while_revalidate": 0, "stale_if_error": 0},
        {"max_age": 1, "stale_while_revalidate": -1, "stale_if_error": 0},
        {"max_age": 1, "stale_while_revalidate": 0, "stale_if_error": -1},
        {"max_age": 1, "stale_while_revalidate": 0, "stale_if_error": 0, "s_maxage": -1},
    ],
)
def test_cache_control_refuses_negative_lifetimes(kwargs):
    with pytest.raises(ValueError, match="negative"):
        cache_control(**kwargs)


def test_negative_and_error_cache_control():
    assert negative_cache_control(60) == "public, max-age=60"
    assert negative_cache_control(0) == "public, max-age=0"
    assert NO_STORE == "no-store"
    with pytest.raises(ValueError, match="negative"):
        negative_cache_control(-1)


# -- purge tags -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site", "key", "expected"),
    [
        pytest.param(
            "blog",
            "wp-content/uploads/2024/05/a.jpg",
            [
                "blog",
                "blog:wp-content",
                "blog:wp-content/uploads",
                "blog:wp-content/uploads/2024",
                "blog:wp-content/uploads/2024/05",
            ],
            id="one tag per folder, shallow first",
        ),
        pytest.param("blog", "a.jpg", ["blog"], id="a key with no folder has the site only"),
        pytest.param(
            "blog", "my photos/x.jpg", ["blog", "blog:my%20photos"], id="spaces are encoded"
        ),
        pytest.param("blog", "a,b/x.jpg", ["blog", "blog:a%2Cb"], id="commas are encoded"),
        pytest.param("blog", "a;b/x.jpg", ["blog", "blog:a%3Bb"], id="semicolons are encoded"),
        pytest.param("blog", "100%/x.jpg", ["blog", "blog:100%25"], id="percent is encoded"),
        pytest.param(
            "blog",
            "Zürich/東京/x.jpg",
            ["blog", "blog:Z%C3%BCrich", "blog:Z%C3%BCrich/%E6%9D%B1%E4%BA%AC"],
            id="non-ASCII is UTF-8 percent-encoded",
        ),
        pytest.param(
            "blog",
            "a+b/(c)/d'e:f@g=h&i!/x.jpg",
            ["blog", "blog:a+b", "blog:a+b/(c)", "blog:a+b/(c)/d'e:f@g=h&i!"],
            id="URL-path characters stay as they are",
        ),
        pytest.param(
            "my site", "a/x.jpg", ["my%20site", "my%20site:a"], id="the site name is encoded too"
        ),
        pytest.param("a:b", "c/x.jpg", ["a%3Ab", "a%3Ab:c"], id="a colon in a site is encoded"),
    ],
)
def test_cache_tags(site, key, expected):
    assert cache_tags(site, key) == expected


def test_cache_tags_leave_out_the_deepest_folders_past_the_budget():
    key = "/".join(["folder-with-a-long-name"] * 200) + "/x.jpg"
    tags = cache_tags("blog", key)
    assert 1 < len(tags) < 200
    assert sum(len(tag) + 2 for tag in tags) <= MAX_TAGS_BYTES
    assert tags[1] == "blog:folder-with-a-long-name"


def test_a_folder_longer_than_a_tag_may_be_is_left_out():
    assert cache_tags("blog", "x" * 1100 + "/a.jpg") == ["blog"]


@given(site=st.text(min_size=1, max_size=20), key=st.text(max_size=200))
def test_cache_tags_are_always_header_safe(site, key):
    for tag in cache_tags(site, key):
        assert re.fullmatch(r"[\x21-\x7e]+", tag)
        assert not set(tag) & {",", ";", " ", '"'}


@pytest.mark.parametrize(
    ("separator", "expected"),
    [
        (" ", "blog blog:a blog:a/b"),
        (",", "blog,blog:a,blog:a/b"),
        (", ", "blog, blog:a, blog:a/b"),
    ],
)
def test_tag_header_value_joins_with_the_configured_separator(separator, expected):
    assert tag_header_value(["blog", "blog:a", "blog:a/b"], separator) == expected


@pytest.mark.parametrize(
    ("tags", "separator"),
    [
        pytest.param(["a b"], ",", id="a space in a tag"),
        pytest.param(["a,b"], ",", id="the separator in a tag"),
        pytest.param(["a|b"], "|", id="another separator in a tag"),
        pytest.param([""], " ", id="an empty tag"),
        pytest.param(["Zürich"], " ", id="non-ASCII"),
        pytest.param(["a\r\nX-Evil: 1"], " ", id="a line break in a tag"),
        pytest.param(["a"], "\r\n", id="a line break as separator"),
        pytest.param(["a"], "", id="an empty separator"),
    ],
)
def test_tag_header_value_refuses_what_would_split_or_break_the_header(tags, separator):
    with pytest.raises(ValueError, match="tag"):
        tag_header_value(tags, separator)

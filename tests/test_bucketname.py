"""Bucket names: each provider's rules, and every rule a name breaks."""

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload.storage.bucketname import (
    PROFILES,
    RULES,
    is_valid,
    profile_for,
    tls_wildcard_safe,
    validate,
)

ALL_PROFILES = ["aws", "aws-directory", "gcs", "r2", "spaces", "wasabi", "b2", "minio"]


def rules(name, profile="aws", **options):
    return [v.rule for v in validate(name, profile, **options)]


def only(name, rule, profile="aws"):
    [violation] = validate(name, profile)
    assert violation.rule == rule
    return violation


def is_dns_label(text):
    """RFC 1123 host label, checked without regular expressions: LDH, 1-63, no edge hyphen."""
    allowed = set(string.ascii_letters + string.digits + "-")
    return (
        1 <= len(text) <= 63
        and all(char in allowed for char in text)
        and text[0] != "-"
        and text[-1] != "-"
    )


def test_rules_lists_exactly_the_24_stable_ids_in_order():
    assert list(RULES) == [
        "too_short",
        "too_long",
        "uppercase",
        "underscore",
        "whitespace",
        "non_ascii",
        "invalid_char",
        "leading_hyphen",
        "trailing_hyphen",
        "leading_period",
        "trailing_period",
        "adjacent_periods",
        "hyphen_next_to_period",
        "ip_address",
        "prefix_xn",
        "prefix_sthree",
        "prefix_sthree_configurator",
        "prefix_amzn_s3_demo",
        "suffix_s3alias",
        "suffix_ol_s3",
        "suffix_mrap",
        "suffix_x_s3",
        "suffix_table_s3",
        "dot_breaks_wildcard_tls",
    ]
    assert all(isinstance(text, str) and text.endswith(".") for text in RULES.values())


def test_every_provider_has_a_profile_that_cites_its_source():
    assert list(PROFILES) == ALL_PROFILES
    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.source.startswith("https://")


@pytest.mark.parametrize(
    "name",
    ["abc", "a" * 63, "my-bucket", "bucket1", "123", "0abc9", "a--b", "xn-bucket", "sthree"],
)
def test_good_aws_names_break_no_rule_and_are_tls_safe(name):
    assert validate(name) == []
    assert is_valid(name)
    assert tls_wildcard_safe(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", ["too_short"]),
        ("a", ["too_short"]),
        ("ab", ["too_short"]),
        ("abc", []),
        ("a" * 63, []),
        ("a" * 64, ["too_long"]),
        ("a" * 1000, ["too_long"]),
    ],
)
def test_aws_names_must_be_3_to_63_characters(name, expected):
    assert rules(name) == expected


def test_length_messages_give_the_count_and_the_limit():
    assert only("ab", "too_short").message == "the name has 2 characters; the minimum is 3"
    assert only("a" * 64, "too_long").message == "the name has 64 characters; the limit is 63"


@pytest.mark.parametrize(
    ("name", "rule", "where"),
    [
        ("Bucket", "uppercase", "'B' at index 0"),
        ("myBuckeT", "uppercase", "'B' at index 2, 'T' at index 7"),
        ("my_bucket", "underscore", "'_' at index 2"),
        ("my bucket", "whitespace", "' ' at index 2"),
        ("bucket\n", "whitespace", r"'\n' at index 6"),
        ("bu\tcket", "whitespace", r"'\t' at index 2"),
        ("bucket\r", "whitespace", r"'\r' at index 6"),
        ("buck\x00et", "invalid_char", r"'\x00' at index 4"),
        ("bucket\x1b", "invalid_char", r"'\x1b' at index 6"),
        ("bucket\x7f", "invalid_char", r"'\x7f' at index 6"),
        ("my@bucket", "invalid_char", "'@' at index 2"),
        ("my/bucket", "invalid_char", "'/' at index 2"),
        ("bücket", "non_ascii", "'ü' (LATIN SMALL LETTER U WITH DIAERESIS) at index 1"),
        ("\uff11\uff12\uff13", "non_ascii", "'\uff11' (FULLWIDTH DIGIT ONE) at index 0"),
        ("bucket\u0663", "non_ascii", "'\u0663' (ARABIC-INDIC DIGIT THREE) at index 6"),
        ("\uff41\uff42\uff43", "non_ascii", "'\uff41' (FULLWIDTH LATIN SMALL LETTER A) at index 0"),
        ("bucket\u00a0", "non_ascii", r"'\xa0' (NO-BREAK SPACE) at index 6"),
        ("bucket\u202e", "non_ascii", r"'\u202e' (RIGHT-TO-LEFT OVERRIDE) at index 6"),
    ],
)
def test_each_bad_character_is_reported_under_one_rule_with_its_index(name, rule, where):
    assert where in only(name, rule).message


def test_a_long_run_of_bad_characters_is_summarised():
    message = only("a" + "_" * 8, "underscore").message
    assert "'_' at index 5 and 3 more" in message


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("name", ["bucket\n", "bucket\r\n", "\tbucket", "bucket\x00", ""])
def test_no_profile_accepts_a_trailing_newline_a_tab_a_nul_or_the_empty_string(profile, name):
    assert not is_valid(name, profile)


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize(
    "name", ["\uff11\uff12\uff13\uff14\uff15\uff16", "bucket\u0663\u0664\u0665", "bucketé"]
)
def test_no_profile_takes_non_ascii_digits_or_letters_for_ascii_ones(profile, name):
    assert "non_ascii" in rules(name, profile)
    assert not is_valid(name, profile)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("-bucket", "leading_hyphen"),
        ("bucket-", "trailing_hyphen"),
        (".bucket", "leading_period"),
        ("bucket.", "trailing_period"),
        ("my..bucket", "adjacent_periods"),
        ("my-.bucket", "hyphen_next_to_period"),
        ("my.-bucket", "hyphen_next_to_period"),
    ],
)
def test_names_must_begin_and_end_with_a_letter_or_digit_and_keep_periods_apart(name, rule):
    assert rule in rules(name)
    assert not is_valid(name, allow_dots=True)


@pytest.mark.parametrize(
    "name",
    ["192.168.5.4", "255.0.0.0", "1.2.3.256", "999.999.999.999", "01.02.03.04"],
)
def test_four_groups_of_digits_are_an_ip_address(name):
    assert rules(name) == ["ip_address", "dot_breaks_wildcard_tls"]
    assert not is_valid(name, allow_dots=True)


@pytest.mark.parametrize(
    "name",
    [
        "192.168.5",
        "192.168.5.4.5",
        "192.168.5.a",
        "a192.168.5.4",
        "192-168-5-4",
        "\uff11.\uff12.\uff13.\uff14",
    ],
)
def test_near_misses_are_not_an_ip_address(name):
    assert "ip_address" not in rules(name)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("xn--bucket", "prefix_xn"),
        ("sthree-bucket", "prefix_sthree"),
        ("sthree-configurator", "prefix_sthree_configurator"),
        ("sthree-configurator-bucket", "prefix_sthree_configurator"),
        ("amzn-s3-demo-bucket", "prefix_amzn_s3_demo"),
        ("bucket-s3alias", "suffix_s3alias"),
        ("bucket--ol-s3", "suffix_ol_s3"),
        ("bucket--x-s3", "suffix_x_s3"),
        ("bucket--table-s3", "suffix_table_s3"),
    ],
)
def test_every_reserved_prefix_and_suffix_is_its_own_rule(name, rule):
    violation = only(name, rule)
    assert violation.severity == "error"
    assert "reserved" in violation.message


def test_the_mrap_suffix_is_reserved_and_dotted():
    assert rules("bucket.mrap", allow_dots=True) == ["suffix_mrap", "dot_breaks_wildcard_tls"]


def test_sthree_configurator_is_reported_once_under_its_specific_rule():
    assert rules("sthree-configurator-x") == ["prefix_sthree_configurator"]


@pytest.mark.parametrize(
    "name",
    [
        "xn-bucket",
        "my-xn--bucket",
        "sthree",
        "sthreebucket",
        "amzn-s3-demo",
        "amzn-s3-bucket",
        "bucket-s3aliases",
        "bucket-ol-s3",
        "bucketmrap",
        "bucket-x-s3",
        "bucket-table-s3",
    ],
)
def test_near_misses_of_reserved_affixes_are_fine(name):
    assert validate(name) == []


def test_reserved_affixes_are_matched_whatever_the_case():
    assert rules("XN--Bucket") == ["uppercase", "prefix_xn"]
    assert rules("bucket--X-S3") == ["uppercase", "suffix_x_s3"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("My_Bucket.", ["uppercase", "underscore", "trailing_period", "dot_breaks_wildcard_tls"]),
        ("-My Bucket-", ["uppercase", "whitespace", "leading_hyphen", "trailing_hyphen"]),
        ("xn--é", ["non_ascii", "prefix_xn"]),
        ("A", ["too_short", "uppercase"]),
        (
            ".x..y-.",
            [
                "leading_period",
                "trailing_period",
                "adjacent_periods",
                "hyphen_next_to_period",
                "dot_breaks_wildcard_tls",
            ],
        ),
        ("sthree-" + "A" * 60, ["too_long", "uppercase", "prefix_sthree"]),
    ],
)
def test_a_name_breaking_several_rules_gets_all_of_them_in_rules_order(name, expected):
    assert rules(name) == expected


def test_a_dotted_name_is_an_error_that_explains_why_and_what_to_do():
    [violation] = validate("media.example.com")
    assert violation.rule == "dot_breaks_wildcard_tls"
    assert violation.severity == "error"
    for part in (
        "'media.example.com.s3.amazonaws.com'",
        "'*.s3.amazonaws.com' wildcard certificate",
        "exactly one label",
        "RFC 6125 §6.4.3",
        "use hyphens instead ('media-example-com')",
        "path-style addressing with a CDN in front",
    ):
        assert part in violation.message
    assert not is_valid("media.example.com")
    assert not tls_wildcard_safe("media.example.com")


def test_allow_dots_turns_the_dot_error_into_a_warning_and_nothing_else():
    [violation] = validate("media.example.com", allow_dots=True)
    assert (violation.rule, violation.severity) == ("dot_breaks_wildcard_tls", "warning")
    assert is_valid("media.example.com", allow_dots=True)
    assert not tls_wildcard_safe("media.example.com")
    assert not is_valid("Media.example.com", allow_dots=True)


def test_the_dot_message_does_not_echo_a_name_with_odd_characters():
    [*_, violation] = validate("Bad\nName.x")
    assert "'NAME.s3.amazonaws.com'" in violation.message


def test_an_unknown_profile_is_a_value_error_naming_the_choices():
    message = (
        "unknown bucket profile 'azure'; "
        "choose from aws, aws-directory, gcs, r2, spaces, wasabi, b2, minio"
    )
    with pytest.raises(ValueError, match=f"^{message}$"):
        validate("bucket", "azure")
    with pytest.raises(ValueError, match="unknown bucket profile"):
        is_valid("bucket", "AWS")


def test_a_name_that_is_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="a bucket name is a str"):
        validate(b"bucket")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my-bucket--usw2-az1--x-s3", []),
        ("b--use1-atl2-az1--x-s3", []),
        ("my-bucket", ["suffix_x_s3"]),
        ("my-bucket--x-s3", ["suffix_x_s3"]),
        ("my-bucket--usw2-az1", ["suffix_x_s3"]),
        ("my-bucket---usw2-az1--x-s3", ["trailing_hyphen"]),
        ("my.bucket--usw2-az1--x-s3", ["invalid_char"]),
        ("My-bucket--usw2-az1--x-s3", ["uppercase"]),
        ("xn--b--usw2-az1--x-s3", ["prefix_xn"]),
        ("sthree-b--usw2-az1--x-s3", ["prefix_sthree"]),
        ("b" * 48 + "--usw2-az1--x-s3", ["too_long"]),
    ],
)
def test_directory_buckets_need_the_zone_suffix_and_no_periods(name, expected):
    assert rules(name, "aws-directory") == expected


def test_allow_dots_cannot_make_a_dotted_directory_bucket_valid():
    assert not is_valid("my.bucket--usw2-az1--x-s3", "aws-directory", allow_dots=True)
    message = only("my-bucket", "suffix_x_s3", "aws-directory").message
    assert "'my-bucket--usw2-az1--x-s3'" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my_bucket", []),
        ("a" * 63, []),
        ("a" * 64, ["too_long"]),
        ("_bucket", ["underscore"]),
        ("bucket_", ["underscore"]),
        ("goog-bucket", ["invalid_char"]),
        ("googbucket", ["invalid_char"]),
        ("my-google-bucket", ["invalid_char"]),
        ("my-g00gle-bucket", ["invalid_char"]),
        ("Google", ["uppercase", "invalid_char"]),
        ("gooogle", []),
        ("192.168.5.4", ["ip_address", "dot_breaks_wildcard_tls"]),
    ],
)
def test_gcs_allows_underscores_and_reserves_goog_and_google(name, expected):
    assert rules(name, "gcs") == expected


def test_gcs_reports_begin_with_goog_and_contain_google_in_one_message():
    [violation] = validate("google-bucket", "gcs")
    assert violation.message == (
        "GCS bucket names cannot begin with 'goog' or contain 'google' "
        "or a close misspelling ('google' at index 0)"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (".".join(["a" * 63] * 3) + "." + "a" * 30, []),  # 222 characters
        (".".join(["a" * 63] * 3) + "." + "a" * 31, ["too_long"]),  # 223
        ("a" * 64 + ".example.com", ["too_long"]),
        ("media.example.com", []),
    ],
)
def test_gcs_names_with_periods_may_reach_222_with_parts_of_at_most_63(name, expected):
    assert rules(name, "gcs", allow_dots=True) == [*expected, "dot_breaks_wildcard_tls"]


def test_gcs_names_the_part_that_is_too_long():
    [too_long, _] = validate("ab." + "a" * 64, "gcs")
    assert too_long.message == "the part at index 3 has 64 characters; the limit is 63"


def test_gcs_only_warns_about_period_placement_google_does_not_list():
    found = {v.rule: v.severity for v in validate("a..b-.c", "gcs", allow_dots=True)}
    assert found == {
        "adjacent_periods": "warning",
        "hyphen_next_to_period": "warning",
        "dot_breaks_wildcard_tls": "warning",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my-bucket", []),
        ("my.bucket", ["invalid_char"]),
        ("My-bucket", ["uppercase"]),
        ("my_bucket", ["underscore"]),
        ("-bucket", ["leading_hyphen"]),
        ("bucket-", ["trailing_hyphen"]),
        ("a" * 64, ["too_long"]),
        ("ab", ["too_short"]),
        ("xn--bucket", []),
    ],
)
def test_r2_takes_lowercase_letters_digits_and_hyphens_only(name, expected):
    assert rules(name, "r2", allow_dots=True) == expected


def test_a_period_in_an_r2_name_is_an_invalid_character_not_a_tls_warning():
    violation = only("my.bucket", "invalid_char", "r2")
    assert "'.' at index 2 is not allowed: Cloudflare R2 bucket names" in violation.message
    assert not is_valid("my.bucket", "r2", allow_dots=True)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my-bucket", []),
        ("my.bucket", ["dot_breaks_wildcard_tls"]),
        ("My-bucket", ["uppercase"]),
        ("my_bucket", ["underscore"]),
        ("192.168.5.4", ["ip_address", "dot_breaks_wildcard_tls"]),
        ("xn--bucket", []),
    ],
)
def test_spaces_follows_digitaloceans_rules(name, expected):
    assert rules(name, "spaces") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my-bucket", []),
        ("sthree-configurator", ["prefix_sthree"]),
        ("amzn-s3-demo-x", ["prefix_amzn_s3_demo"]),
        ("bucket--x-s3", ["suffix_x_s3"]),
        ("bucket--table-s3", []),
        ("my-.bucket", ["hyphen_next_to_period", "dot_breaks_wildcard_tls"]),
    ],
)
def test_wasabi_follows_the_amazon_rules_it_lists(name, expected):
    assert rules(name, "wasabi") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MyBucket", []),
        ("abcdef", []),
        ("abcde", ["too_short"]),
        ("a" * 64, ["too_long"]),
        ("b2-bucket", ["invalid_char"]),
        ("B2-Bucket", ["invalid_char"]),
        ("b2bucket", []),
        ("my.bucket", ["invalid_char"]),
        ("my_bucket", ["underscore"]),
    ],
)
def test_b2_takes_six_to_63_letters_digits_and_hyphens_in_either_case(name, expected):
    assert rules(name, "b2", allow_dots=True) == expected


def test_b2_only_warns_about_edge_hyphens_backblaze_does_not_forbid():
    found = [(v.rule, v.severity) for v in validate("-bucket-", "b2")]
    assert found == [("leading_hyphen", "warning"), ("trailing_hyphen", "warning")]
    assert is_valid("-bucket-", "b2")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my-bucket", []),
        ("minio", ["invalid_char"]),
        ("minio-media", []),
        ("sthree-bucket", []),
        ("bucket--x-s3", []),
        ("my-.bucket", ["hyphen_next_to_period", "dot_breaks_wildcard_tls"]),
        ("1.2.3.4", ["ip_address", "dot_breaks_wildcard_tls"]),
        ("My-bucket", ["uppercase"]),
    ],
)
def test_minio_follows_its_servers_check(name, expected):
    assert rules(name, "minio") == expected


@pytest.mark.parametrize(
    ("name", "profile", "safe"),
    [
        ("my-bucket", "aws", True),
        ("my.bucket", "aws", False),
        ("My-bucket", "aws", False),
        ("MyBucket", "b2", True),
        ("-bucket", "b2", True),
        ("my_bucket", "gcs", True),
        ("my.bucket", "gcs", False),
        ("my-bucket", "aws-directory", False),
        ("my-bucket--usw2-az1--x-s3", "aws-directory", True),
    ],
)
def test_tls_safe_means_valid_for_the_profile_and_without_periods(name, profile, safe):
    assert tls_wildcard_safe(name, profile) is safe


@pytest.mark.parametrize(
    ("endpoint_url", "bucket", "profile"),
    [
        (None, "media", "aws"),
        (None, "media--usw2-az1--x-s3", "aws-directory"),
        ("https://s3.us-west-2.amazonaws.com", "media", "aws"),
        (
            "https://s3express-usw2-az1.us-west-2.amazonaws.com",
            "m--usw2-az1--x-s3",
            "aws-directory",
        ),
        ("https://storage.googleapis.com", "media", "gcs"),
        ("https://0123abcd.r2.cloudflarestorage.com", "media", "r2"),
        ("https://nyc3.digitaloceanspaces.com", "media", "spaces"),
        ("s3.eu-central-1.wasabisys.com", "media", "wasabi"),
        ("https://s3.us-west-004.backblazeb2.com", "media", "b2"),
        ("http://127.0.0.1:9000", "media--usw2-az1--x-s3", "aws"),
        ("https://notamazonaws.com", "media", "aws"),
    ],
)
def test_profile_for_picks_the_provider_from_the_endpoint_host(endpoint_url, bucket, profile):
    assert profile_for(endpoint_url, bucket) == profile
    assert profile in PROFILES


NAMES = st.one_of(
    st.text(alphabet=string.ascii_lowercase[:6] + "0123-._A \n\t\x00é\uff11", max_size=70),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True),
    st.text(max_size=70),
)


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_every_name_aws_accepts_without_periods_is_a_dns_hostname_label(name):
    if "." not in name and is_valid(name, "aws"):
        assert is_dns_label(name)
        assert name == name.lower()


RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", "--table-s3")


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", fullmatch=True))
def test_every_lowercase_dns_label_of_3_to_63_without_reserved_affixes_is_aws_valid(name):
    if not name.startswith(RESERVED_PREFIXES) and not name.endswith(RESERVED_SUFFIXES):
        assert validate(name) == []


@settings(max_examples=300, deadline=None)
@given(NAMES, st.sampled_from(ALL_PROFILES), st.booleans())
def test_violations_come_in_rules_order_on_one_printable_line_each(name, profile, allow_dots):
    found = validate(name, profile, allow_dots=allow_dots)
    order = list(RULES)
    assert [v.rule for v in found] == sorted((v.rule for v in found), key=order.index)
    repeated = [v.rule for v in found if [w.rule for w in found].count(v.rule) > 1]
    assert set(repeated) <= {"invalid_char"}
    for violation in found:
        assert violation.severity in ("error", "warning")
        assert violation.message.isprintable()
    assert is_valid(name, profile, allow_dots=allow_dots) == all(
        v.severity == "warning" for v in found
    )

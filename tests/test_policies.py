"""Policies: valid JSON, least privilege, and every value checked before it reaches a template."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload.buckets.policies import (
    ACTIONS,
    UPLOADS_ACTION,
    PolicyError,
    bucket_policy,
    iam_policy,
    public_access_block,
)
from offload.config.render import render
from offload.errors import ExitCode, OffloadError

BUCKET = "media-bucket"
ACCOUNT = "123456789012"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"

Policy = Callable[..., str]


def shared(bucket: str, prefix: str = "") -> str:
    return bucket_policy(bucket, ROOT, prefix)


def own(bucket: str, prefix: str = "") -> str:
    return iam_policy(bucket, prefix)


BOTH_POLICIES = pytest.mark.parametrize("policy", [shared, own], ids=["bucket", "iam"])


def statements(text: str) -> dict[str, dict[str, Any]]:
    document = json.loads(text)
    assert document["Version"] == "2012-10-17"
    return {statement["Sid"]: statement for statement in document["Statement"]}


def string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: '*' matches any run of characters (even none), '?' exactly one."""
    regex = "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def refusal(call: Callable[[], str]) -> str:
    with pytest.raises(PolicyError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- shape --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: bucket_policy(BUCKET, ACCOUNT),
        lambda: bucket_policy(BUCKET, ACCOUNT, "uploads", ["get"]),
        lambda: iam_policy(BUCKET),
        lambda: iam_policy(BUCKET, "uploads"),
        public_access_block,
    ],
    ids=["bucket", "bucket-prefix-get", "iam", "iam-prefix", "public-access-block"],
)
def test_every_policy_is_json_indented_by_two_with_one_trailing_newline(make):
    text = make()
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_a_bucket_policy_with_a_prefix_is_exactly_this():
    assert json.loads(bucket_policy(BUCKET, ACCOUNT, "wp-content/uploads")) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ObjectAccess",
                "Effect": "Allow",
                "Principal": {"AWS": ROOT},
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                ],
                "Resource": f"{BUCKET_ARN}/wp-content/uploads/*",
            },
            {
                "Sid": "ListObjects",
                "Effect": "Allow",
                "Principal": {"AWS": ROOT},
                "Action": "s3:ListBucket",
                "Resource": BUCKET_ARN,
                "Condition": {"StringLike": {"s3:prefix": "wp-content/uploads/*"}},
            },
        ],
    }


def test_the_iam_policy_with_a_prefix_is_exactly_this():
    assert json.loads(iam_policy(BUCKET, "tenant-a")) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ObjectAccess",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                ],
                "Resource": f"{BUCKET_ARN}/tenant-a/*",
            },
            {
                "Sid": "ListObjects",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": BUCKET_ARN,
                "Condition": {"StringLike": {"s3:prefix": "tenant-a/*"}},
            },
            {
                "Sid": "ListIncompleteUploads",
                "Effect": "Allow",
                "Action": "s3:ListBucketMultipartUploads",
                "Resource": BUCKET_ARN,
            },
        ],
    }


def test_the_public_access_block_turns_on_all_four_blocks():
    assert json.loads(public_access_block()) == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


# -- prefixes -----------------------------------------------------------------------


@BOTH_POLICIES
@pytest.mark.parametrize(
    ("typed", "prefix"),
    [
        ("uploads", "uploads"),
        ("/uploads/", "uploads"),
        ("wp-content/uploads", "wp-content/uploads"),
        ("Zürich 2024", "Zürich 2024"),
        ('say "cheese"', 'say "cheese"'),
        ("a.b/.well-known", "a.b/.well-known"),
    ],
)
def test_a_prefix_confines_every_grant_and_the_whole_bucket_is_never_granted(policy, typed, prefix):
    by_sid = statements(policy(BUCKET, typed))
    assert by_sid["ObjectAccess"]["Resource"] == f"{BUCKET_ARN}/{prefix}/*"
    listing = by_sid["ListObjects"]
    assert listing["Resource"] == BUCKET_ARN
    assert listing["Condition"] == {"StringLike": {"s3:prefix": f"{prefix}/*"}}
    everything = json.dumps([s["Resource"] for s in by_sid.values()], ensure_ascii=False)
    assert f"{BUCKET_ARN}/*" not in everything


@BOTH_POLICIES
def test_without_a_prefix_the_whole_bucket_is_granted_and_listing_has_no_condition(policy):
    by_sid = statements(policy(BUCKET))
    assert by_sid["ObjectAccess"]["Resource"] == f"{BUCKET_ARN}/*"
    assert by_sid["ListObjects"]["Resource"] == BUCKET_ARN
    assert "Condition" not in by_sid["ListObjects"]


@pytest.mark.parametrize(
    ("requested", "allowed"),
    [
        ("tenant-a/", True),  # offload's own listing of its whole prefix
        ("tenant-a/2024/05/", True),
        ("tenant-a/2024/05/photo.jpg", True),  # a HEAD of a missing key: 404, not 403
        ("tenant-a", False),  # would also list tenant-ab/... and tenant-a-old/...
        ("tenant-ab/", False),
        ("tenant-", False),
        ("", False),
        ("other/tenant-a/", False),
    ],
)
def test_the_listing_condition_admits_exactly_the_prefixes_under_the_folder(requested, allowed):
    pattern = statements(iam_policy(BUCKET, "tenant-a"))["ListObjects"]["Condition"]
    assert string_like(pattern["StringLike"]["s3:prefix"], requested) is allowed


@BOTH_POLICIES
@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("a/../b", "'..' segment"),
        ("..", "'..' segment"),
        ("./a", "'.' segment"),
        ("a//b", "empty segment"),
        ("a\\b", "backslash"),
        ("a\nb", "control character"),
        ("a\tb", "control character"),
        ("uploads/*", "'*', a policy wildcard"),
        ("*", "'*', a policy wildcard"),
        ("upl?ads", "'?', a policy wildcard"),
        ("home/${aws:username}", "start of a variable"),
        ("東京", "U+00FF"),
        ("😀", "U+00FF"),
        ("/", "names no folder"),
        ("///", "names no folder"),
        ("x" * 1025, "1025 bytes"),
    ],
)
def test_a_prefix_that_could_escape_or_widen_the_grant_is_refused(policy, prefix, problem):
    message = refusal(lambda: policy(BUCKET, prefix))
    assert message.startswith("invalid prefix ")
    assert problem in message
    assert "the key" not in message


@given(st.text(alphabet=st.sampled_from(list('ab/.*?${}"\\\n ü東')), max_size=12) | st.text())
def test_any_prefix_is_either_refused_or_confines_the_objects_to_itself(prefix):
    try:
        text = bucket_policy(BUCKET, ACCOUNT, prefix)
    except PolicyError:
        return
    stripped = prefix.strip("/")
    resource = statements(text)["ObjectAccess"]["Resource"]
    assert resource == (f"{BUCKET_ARN}/{stripped}/*" if stripped else f"{BUCKET_ARN}/*")
    assert not re.search(r"[*?]|\$\{", stripped)


# -- principals ---------------------------------------------------------------------


def test_a_bare_account_id_becomes_that_accounts_root():
    by_sid = statements(bucket_policy(BUCKET, ACCOUNT))
    assert {s["Principal"]["AWS"] for s in by_sid.values()} == {ROOT}


@pytest.mark.parametrize(
    ("principal", "partition"),
    [
        (ROOT, "aws"),
        (f"arn:aws:iam::{ACCOUNT}:user/alice", "aws"),
        (f"arn:aws:iam::{ACCOUNT}:user/ops/alice+cdn=1,a.b@example-x_y", "aws"),
        (f"arn:aws:iam::{ACCOUNT}:role/media-sync", "aws"),
        (f"arn:aws:iam::{ACCOUNT}:role/service/team/media-sync", "aws"),
        (f"arn:aws:iam::{ACCOUNT}:role/{'r' * 64}", "aws"),
        (f"arn:aws-cn:iam::{ACCOUNT}:root", "aws-cn"),
        (f"arn:aws-us-gov:iam::{ACCOUNT}:role/media", "aws-us-gov"),
    ],
)
def test_an_iam_arn_is_used_as_given_and_the_bucket_takes_its_partition(principal, partition):
    by_sid = statements(bucket_policy(BUCKET, principal, "uploads"))
    for statement in by_sid.values():
        assert statement["Principal"] == {"AWS": principal}
        assert statement["Resource"].startswith(f"arn:{partition}:s3:::{BUCKET}")


@pytest.mark.parametrize(
    "principal",
    [
        "",
        "*",
        "12345678901",
        "1234567890123",
        "١٢٣٤٥٦٧٨٩٠١٢",  # Arabic-Indic digits: \d would take them without re.ASCII
        f"{ACCOUNT}\n",
        f" {ACCOUNT}",
        f"{ROOT}\n",
        f"{ROOT} ",
        "arn:aws:iam::*:root",
        f"arn:aws:iam::{ACCOUNT}:*",
        f"arn:aws:iam::{ACCOUNT}:user/*",
        f"arn:aws:iam::{ACCOUNT}:user/",
        f"arn:aws:iam::{ACCOUNT}:group/editors",
        f"arn:aws:iam::{ACCOUNT}:role//media",
        f"arn:aws:iam::{ACCOUNT}:role/{'r' * 65}",
        f"arn:aws:iam::{ACCOUNT}:role/{'p/' * 257}media",
        f'arn:aws:iam::{ACCOUNT}:user/a"b',
        f"arn:aws:iam::{ACCOUNT}:user/a\\b",
        f"arn:aws:iam::{ACCOUNT}:user/ålice",
        f"arn:aws-iso:iam::{ACCOUNT}:root",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/media/session",
        f"arn:aws:s3:::{BUCKET}",
    ],
)
def test_anything_but_an_account_id_or_an_iam_user_role_or_root_arn_is_refused(principal):
    message = refusal(lambda: bucket_policy(BUCKET, principal))
    assert message.startswith("invalid principal ")
    assert "12-digit account id" in message


# -- actions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "object_actions", "listing"),
    [
        (["get"], ["s3:GetObject"], False),
        (["list"], None, True),
        (["get", "list"], ["s3:GetObject"], True),
        ("get,list", ["s3:GetObject"], True),
        (["delete", "get", "get"], ["s3:GetObject", "s3:DeleteObject"], False),
        (["put"], ["s3:PutObject", "s3:AbortMultipartUpload"], False),
    ],
)
def test_only_the_chosen_actions_are_granted(actions, object_actions, listing):
    by_sid = statements(bucket_policy(BUCKET, ACCOUNT, "uploads", actions))
    assert by_sid.get("ObjectAccess", {}).get("Action") == object_actions
    assert ("ListObjects" in by_sid) is listing


@pytest.mark.parametrize(
    ("actions", "problem"),
    [
        (["GET"], "unknown action 'GET'"),
        (["write"], "unknown action 'write'"),
        (["s3:GetObject"], "unknown action 's3:GetObject'"),
        ("get,,put", "unknown action ''"),
        ("get, put", "unknown action ' put'"),
        ([], "no actions given"),
    ],
)
def test_unknown_or_missing_actions_are_refused_naming_the_choices(actions, problem):
    message = refusal(lambda: bucket_policy(BUCKET, ACCOUNT, actions=actions))
    assert problem in message
    assert message.endswith("choose from get, put, delete, list")


def test_the_iam_policy_grants_what_offloads_s3_backend_calls_and_nothing_more():
    by_sid = statements(iam_policy(BUCKET, "tenant-a"))
    granted = {
        *by_sid["ObjectAccess"]["Action"],
        by_sid["ListObjects"]["Action"],
        by_sid["ListIncompleteUploads"]["Action"],
    }
    assert granted == {action for names in ACTIONS.values() for action in names} | {UPLOADS_ACTION}
    assert granted == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
    }


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_the_iam_policy_names_the_bucket_in_the_partition_asked_for(partition):
    for statement in statements(iam_policy(BUCKET, partition=partition)).values():
        assert statement["Resource"].startswith(f"arn:{partition}:s3:::{BUCKET}")


def test_an_unknown_partition_is_refused():
    assert "unknown partition 'aws-iso'" in refusal(lambda: iam_policy(BUCKET, partition="aws-iso"))


# -- bucket names -------------------------------------------------------------------


@BOTH_POLICIES
@pytest.mark.parametrize(
    "bucket",
    ["", "ab", "Media", "my_bucket", 'media"', "media\\", "media\n", "-media", "x" * 64],
)
def test_an_invalid_bucket_name_is_refused(policy, bucket):
    assert refusal(lambda: policy(bucket)).startswith(f"invalid bucket name {bucket!r}: ")


@BOTH_POLICIES
def test_a_dotted_bucket_name_is_refused_as_config_refuses_it(policy):
    message = refusal(lambda: policy("media.example.com"))
    assert message.startswith("invalid bucket name 'media.example.com': ")
    assert 'addressing_style = "path"' in message


@pytest.mark.parametrize("policy", [bucket_policy, iam_policy], ids=["bucket", "iam"])
def test_a_dotted_bucket_name_is_allowed_for_a_path_style_bucket(policy):
    args = ("media.example.com", ROOT) if policy is bucket_policy else ("media.example.com",)
    by_sid = statements(policy(*args, allow_dots=True))
    assert by_sid["ListObjects"]["Resource"] == "arn:aws:s3:::media.example.com"


def test_a_policy_error_is_a_usage_error_that_exits_2():
    assert issubclass(PolicyError, OffloadError)
    assert PolicyError.exit_code == ExitCode.USAGE == 2


# -- templates ----------------------------------------------------------------------

ODD = 'x"}],"Effect":"Deny\\'


@pytest.mark.parametrize(
    ("template", "context"),
    [
        (
            "bucket-policy.json.j2",
            {"principal": ODD, "object_actions": [ODD], "list_bucket": True},
        ),
        ("iam-policy.json.j2", {"object_actions": [ODD]}),
    ],
)
def test_templates_quote_every_value_so_nothing_can_break_the_json(template, context):
    text = render(template, partition=ODD, bucket=ODD, prefix=ODD, **context)
    by_sid = statements(text)
    arn = f"arn:{ODD}:s3:::{ODD}"
    assert by_sid["ObjectAccess"]["Resource"] == f"{arn}/{ODD}/*"
    assert by_sid["ObjectAccess"]["Action"] == [ODD]
    assert by_sid["ListObjects"]["Resource"] == arn
    assert by_sid["ListObjects"]["Condition"] == {"StringLike": {"s3:prefix": f"{ODD}/*"}}
    assert {s["Effect"] for s in by_sid.values()} == {"Allow"}

"""S3 policies from the templates: a bucket policy, offload's IAM policy, a public access block.

Each function validates what it is given, renders ``templates/<name>.json.j2``
and returns pretty JSON (indent 2, one trailing newline) after parsing it back,
so a template bug is an internal error, never a broken policy. Apply them with::

    aws s3api put-bucket-policy --bucket B --policy file://bucket-policy.json
    aws iam put-role-policy --role-name R --policy-name offload \\
        --policy-document file://iam-policy.json
    aws s3api put-public-access-block --bucket B \\
        --public-access-block-configuration file://public-access-block.json

``put-bucket-policy`` replaces the bucket's whole policy: merge by hand when the
bucket has one. A policy that names one account is not public, so it passes a
public access block with ``BlockPublicPolicy`` on.

What each short action grants, and what it leaves out on purpose:

- ``get``: ``s3:GetObject`` (GET and HEAD, ranges included). Not
  ``s3:GetObjectVersion``: on a versioned bucket that would expose every
  overwritten and deleted object.
- ``put``: ``s3:PutObject`` (also covers the create, upload-part and complete
  steps of a multipart upload, and the destination of a server-side copy) and
  ``s3:AbortMultipartUpload``, so a failed upload can be cleaned up instead of
  billed until a lifecycle rule removes it.
- ``delete``: ``s3:DeleteObject`` (single and batch deletes). Not
  ``s3:DeleteObjectVersion``: erasing history stays with the bucket's owner.
- ``list``: ``s3:ListBucket`` on the bucket. With a prefix it carries
  ``StringLike {"s3:prefix": "PREFIX/*"}``: that matches ``PREFIX/`` and
  everything below it, but neither ``PREFIX`` alone (which would list the
  siblings ``PREFIX-old/...``) nor a listing without a prefix (the condition key
  is then absent, and ``StringLike`` without ``IfExists`` fails). S3 answers a
  GET or HEAD of a missing key with 404 only to a caller allowed to list it
  (evaluated with the key as ``s3:prefix``), else with 403.

The IAM policy grants offload all four, and ``s3:ListBucketMultipartUploads``
on the bucket: every sync and backup ends by listing the multipart uploads
under its prefix to abort the ones a killed run left behind. That statement
carries no ``s3:prefix`` condition, so it holds whether or not S3 supplies that
key for this action; it lists upload ids and key names, never content. The S3 backend never
calls ListParts (it keeps the part ETags itself) nor GetBucketLocation (the
region comes from the config), so ``s3:ListMultipartUploadParts`` and
``s3:GetBucketLocation`` are left out; uploads abandoned by a crash with no
later sync are for a lifecycle rule (``AbortIncompleteMultipartUpload``).

Bucket names are checked by the AWS rules with dots refused, as a site's
config refuses them unless it sets ``addressing_style = "path"``: a dotted name
breaks virtual-hosted HTTPS, and a policy for a bucket offload cannot use
helps no one. ``allow_dots=True`` is for such a path-style bucket. A bucket encrypted with a
customer-managed KMS key also needs ``kms:GenerateDataKey`` and ``kms:Decrypt``
on that key, which is outside S3 and outside these policies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from offload.config.render import render
from offload.errors import ExitCode, OffloadError
from offload.keys import key_problem
from offload.storage import bucketname

ACTIONS: dict[str, tuple[str, ...]] = {
    "get": ("s3:GetObject",),
    "put": ("s3:PutObject", "s3:AbortMultipartUpload"),
    "delete": ("s3:DeleteObject",),
    "list": ("s3:ListBucket",),
}
"""Short action name -> the S3 actions it grants; ``list`` is the one on the bucket itself."""

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

_IAM_NAME = r"[\w+=,.@-]"
# An IAM principal: the account root, or a user or role with an optional path.
# Path segments use the characters IAM allows in names (stricter than IAM's paths,
# which also allow punctuation such as '*' and '"').
_PRINCIPAL = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::[0-9]{12}:"
    rf"(?:root|(?:user|role)(?P<path>/(?:{_IAM_NAME}+/)*){_IAM_NAME}{{1,64}})\Z",
    re.ASCII,
)
_ACCOUNT_ID = re.compile(r"[0-9]{12}\Z", re.ASCII)
_MAX_IAM_PATH = 512
# IAM refuses policy documents with characters outside tab, LF, CR and U+0020-U+00FF.
_BEYOND_LATIN1 = re.compile(r"[^\x20-\xff]")


class PolicyError(OffloadError):
    """A bucket name, principal, prefix or action that cannot go into a policy."""

    exit_code = ExitCode.USAGE


class DottedBucket(PolicyError):
    """A bucket name with dots, refused unless the caller allows them (path-style)."""


#: What offload lists besides objects (the multipart uploads a killed run left);
#: the IAM template grants it in a statement of its own.
UPLOADS_ACTION = "s3:ListBucketMultipartUploads"


def bucket_policy(
    bucket: str,
    principal: str,
    prefix: str = "",
    actions: Sequence[str] = ("get", "put", "delete", "list"),
    *,
    allow_dots: bool = False,
) -> str:
    """The bucket policy that lets ``principal`` use ``bucket``, or only ``prefix`` in it.

    ``principal`` is an IAM ARN (account root, user or role) or a bare 12-digit
    account id, which means that account's root in the ``aws`` partition (pass
    the full ARN for aws-cn or aws-us-gov). The bucket's ARN takes the
    principal's partition, since access never crosses partitions. ``actions``
    are names from ACTIONS, as a sequence or one comma-separated string.
    """
    arn, partition = _check_principal(principal)
    chosen = _check_actions(actions)
    return _render(
        "bucket-policy.json.j2",
        partition=partition,
        bucket=_check_bucket(bucket, allow_dots),
        prefix=_check_prefix(prefix),
        principal=arn,
        object_actions=[a for name in chosen if name != "list" for a in ACTIONS[name]],
        list_bucket="list" in chosen,
    )


def iam_policy(
    bucket: str, prefix: str = "", *, partition: str = "aws", allow_dots: bool = False
) -> str:
    """The least-privilege identity policy offload needs on ``bucket`` (or ``prefix`` in it)."""
    if partition not in PARTITIONS:
        raise PolicyError(f"unknown partition {partition!r}; choose {', '.join(PARTITIONS)}")
    return _render(
        "iam-policy.json.j2",
        partition=partition,
        bucket=_check_bucket(bucket, allow_dots),
        prefix=_check_prefix(prefix),
        object_actions=[a for name in ACTIONS if name != "list" for a in ACTIONS[name]],
    )


def public_access_block() -> str:
    """The PublicAccessBlockConfiguration that turns on all four blocks."""
    return _render("public-access-block.json.j2")


# -- validation ---------------------------------------------------------------------


def _check_bucket(bucket: str, allow_dots: bool) -> str:
    for violation in bucketname.validate(bucket, "aws", allow_dots=allow_dots):
        if violation.severity != "error":
            continue
        if violation.rule == "dot_breaks_wildcard_tls":
            raise DottedBucket(
                f"invalid bucket name {_shown(bucket)}: {violation.message} "
                '(a site\'s config takes it only with addressing_style = "path")'
            )
        raise PolicyError(f"invalid bucket name {_shown(bucket)}: {violation.message}")
    return bucket


def _check_principal(principal: str) -> tuple[str, str]:
    """The principal as an ARN, and its partition."""
    if _ACCOUNT_ID.match(principal):
        return f"arn:aws:iam::{principal}:root", "aws"
    match = _PRINCIPAL.match(principal)
    if match is None or len(match["path"] or "") > _MAX_IAM_PATH:
        raise PolicyError(
            f"invalid principal {_shown(principal)}: expected a 12-digit account id or an "
            "IAM ARN such as arn:aws:iam::123456789012:root, "
            "arn:aws:iam::123456789012:user/NAME or arn:aws:iam::123456789012:role/PATH/NAME"
        )
    return principal, match["partition"]


def _check_prefix(prefix: str) -> str:
    """The prefix without its outer slashes, or "" for the whole bucket."""
    stripped = prefix.strip("/")
    if not stripped:
        if prefix:
            raise PolicyError(
                f"invalid prefix {_shown(prefix)}: it names no folder; "
                "leave the prefix out to grant the whole bucket"
            )
        return ""
    problem = key_problem(stripped)
    if problem is None:
        problem = _policy_problem(stripped)
    if problem is not None:
        raise PolicyError(
            f"invalid prefix {_shown(prefix)}: {problem.replace('the key', 'the prefix')}"
        )
    return stripped


def _policy_problem(prefix: str) -> str | None:
    """What would make a safe key prefix mean something else inside a policy."""
    for char in "*?":
        if char in prefix:
            return f"the prefix contains {char!r}, a policy wildcard that would widen the grant"
    if "${" in prefix:
        return "the prefix contains '${', which a policy reads as the start of a variable"
    if match := _BEYOND_LATIN1.search(prefix):
        return (
            f"the prefix contains {match[0]!r} (U+{ord(match[0]):04X}); "
            "IAM policies accept only characters up to U+00FF"
        )
    return None


def _check_actions(actions: Sequence[str]) -> list[str]:
    """The chosen short names, without repeats, in the order of ACTIONS."""
    names = actions.split(",") if isinstance(actions, str) else list(actions)
    unknown = [name for name in names if name not in ACTIONS]
    if unknown:
        raise PolicyError(f"unknown action {_shown(unknown[0])}; choose from {', '.join(ACTIONS)}")
    if not names:
        raise PolicyError(f"no actions given; choose from {', '.join(ACTIONS)}")
    return [name for name in ACTIONS if name in names]


def _shown(value: str) -> str:
    """A value quoted for a one-line message, escapes visible, long ones cut short."""
    return repr(value) if len(value) <= 80 else repr(value[:80]) + "..."


# -- rendering ----------------------------------------------------------------------


def _render(template: str, **context: Any) -> str:
    text = render(template, **context)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{template} rendered invalid JSON: {exc}") from exc
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

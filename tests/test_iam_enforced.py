"""The rendered IAM policy is enough for everything offload does, under moto's IAM enforcement.

A moto server on loopback holds a site's bucket and a backup bucket. An IAM user
gets exactly what ``offload render iam-policy`` prints for each (bucket and
prefix), an access key, and nothing else; moto then checks every request's
signature and action against that user's policies (``INITIAL_NO_AUTH_ACTION_COUNT``
set to 0 in this process, where the threaded server runs). Under those keys the
operator's day runs: ``offload sync`` up and down with ``--delete``, ``offload
backup``, the upload and deletion webhooks through the aiohttp app, and GET/HEAD
of an object through the origin. It must all succeed; and with any one action
taken out of the policy, some step of it must fail, which shows that the
enforcement is real and that each action is one the code calls.

What moto does not model, and so this does not prove:

- Conditions other than ``StringEquals`` are skipped, so the ``StringLike
  s3:prefix`` condition on ``s3:ListBucket`` is not evaluated by moto: the test
  matches every listing's ``prefix`` against it instead.
- moto checks the operation's name (``s3:ListObjectsV2``) rather than the IAM
  action AWS checks for it (``s3:ListBucket``), checks a copy's destination
  only, and a batch delete against the bucket's ARN: the ``aws_permissions``
  fixture puts AWS's rules in their place (see its docstring). Everything else,
  signatures, keys, policies, resource ARNs, is moto's own.
- Requests signed by a presigned URL are not checked: moto's IAM check reads only
  the Authorization header (it answers such a GET with a 500). The origin sends
  one for a large object on a plain-HTTP endpoint (``s3direct``), and falls back
  to boto3 when it fails; so the origin's GET here is of a small object, which
  goes through boto3, asking for the same ``s3:GetObject`` on the same key.

Both of offload's S3 clients are checked: boto3's, and awscrt's (which ``sync``
uses for puts, listings and deletes), since both reach the moto server over HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.http.signing import signed_request_headers
from offload.server.app import create_app
from offload.server.appkeys import STORAGES
from offload.storage import StorageError
from tests.helpers import run_cli
from tests.storage_servers import s3_client
from tests.sync_helpers import (
    HOUR_NS,
    MiB,
    big_bytes,
    fresh_bucket,
    list_keys,
    moto_server,
    read_tree,
    write_tree,
)

SECRET = "webhook-secret-for-tests-0123456789abcdef"
TENANT = "tenant"  # the prefix of the storage URL, and of the rendered policy
PREFIX = "wp-content/uploads"  # the site's prefix: the first part of every key
SNAP = "snap"  # the backup's prefix in the backup bucket
OLD = 1_700_000_000 * 10**9
BIG = "2024/07/video.mp4"
FILES = {"2024/05/a.jpg": b"AAAA", "2024/05/b.png": b"BBBBBB", "2024/06/c.txt": b"CCCCCCCC"}
#: Every action the rendered policy grants, to be taken out one at a time.
GRANTED = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
)


# -- moto, with IAM enforced ------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


#: The IAM action AWS checks for each S3 operation, from "Actions, resources and condition
#: keys for Amazon S3" (https://docs.aws.amazon.com/service-authorization/latest/reference/
#: list_amazons3.html) and each operation's "Permissions" section in the S3 API reference.
PERMISSION_OF = {
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
    "GetBucketLocation": "GetBucketLocation",
    "HeadObject": "GetObject",
    "GetObject": "GetObject",
    "PutObject": "PutObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",  # and GetObject on the source
    "UploadPartCopy": "PutObject",  # and GetObject on the source
    "AbortMultipartUpload": "AbortMultipartUpload",
    "DeleteObject": "DeleteObject",
    "DeleteObjects": "DeleteObject",  # on each key named in the body
}


@dataclass(frozen=True)
class Check:
    """One authorisation moto made: whose key, for which operation, of which IAM action."""

    access_key: str
    operation: str
    action: str
    refused: bool
    bucket: str | None = None
    prefix: str | None = None  # a listing's ``prefix`` (the key ``s3:prefix`` carries)


@pytest.fixture
def aws_permissions(monkeypatch: pytest.MonkeyPatch) -> list[Check]:
    """Make moto check the IAM action AWS checks, on the resources AWS checks it on.

    moto 5 checks ``s3:<operation name>`` (``s3:ListObjectsV2``, ``s3:HeadObject``,
    ``s3:CreateMultipartUpload``...), names no IAM policy can grant, so no
    least-privilege policy would pass. Here each operation is checked as its
    IAM action instead (``PERMISSION_OF``; an operation not in the table keeps its
    own name, and so is refused); a copy also needs ``s3:GetObject`` on its source;
    and ``DeleteObjects`` needs ``s3:DeleteObject`` on each key it names, where moto
    checks the bucket's ARN. A batch with any key refused is refused whole (moto
    answers an AccessDenied error per key), which offload reports as a failure.
    """
    import xmltodict
    from moto.s3.responses import S3Response

    original = S3Response._authenticate_and_authorize_s3_action
    checked: list[Check] = []

    def check(self: Any, operation: str, action: str, bucket: str | None, key: str | None) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        credential = headers.get("authorization", "").partition("Credential=")[2]
        listed = self.querystring.get("prefix", [None])[0] if key is None else None
        made = Check(credential.partition("/")[0], operation, f"s3:{action}", False, bucket, listed)
        self._get_action = lambda: action  # read by moto's check, on this request only
        try:
            original(self, bucket_name=bucket, key_name=key)
        except Exception:
            checked.append(dataclasses.replace(made, refused=True))
            raise
        else:
            checked.append(made)
        finally:
            del self._get_action

    def authorise(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        operation = type(self)._get_action(self)
        permission = PERMISSION_OF.get(operation, operation)
        if operation == "DeleteObjects" and bucket_name:
            named = xmltodict.parse(self.body)["Delete"].get("Object", [])
            for item in named if isinstance(named, list) else [named]:
                check(self, operation, permission, bucket_name, item["Key"])
            return
        check(self, operation, permission, bucket_name, key_name)
        if operation in ("CopyObject", "UploadPartCopy"):
            headers = {name.lower(): value for name, value in self.headers.items()}
            source = unquote(headers["x-amz-copy-source"].split("?")[0]).lstrip("/")
            source_bucket, _, source_key = source.partition("/")
            check(self, operation, "GetObject", source_bucket, source_key)

    monkeypatch.setattr(S3Response, "_authenticate_and_authorize_s3_action", authorise)
    return checked


@dataclass
class World:
    """The buckets, the admin's client to look at them, and the user's keys."""

    endpoint: str
    admin: Any
    bucket: str
    backup: str
    credentials: dict[str, str]
    checked: list[Check]

    def mine(self) -> list[Check]:
        return [c for c in self.checked if c.access_key == self.credentials["AWS_ACCESS_KEY_ID"]]

    def actions(self, *, refused: bool) -> set[str]:
        """The IAM actions the user's requests were granted (or refused)."""
        return {check.action for check in self.mine() if check.refused == refused}

    def keys(self, prefix: str, bucket: str | None = None) -> list[str]:
        return list_keys(self.admin, bucket or self.bucket, prefix)


def render_iam_policy(bucket: str, prefix: str) -> str:
    """What ``offload render iam-policy --bucket B --prefix P`` prints."""
    code, out, err = run_cli("render", "iam-policy", "--bucket", bucket, "--prefix", prefix)
    assert (code, err) == (0, ""), err
    return out


def _policies(bucket: str, backup: str, without: str | None) -> dict[str, str]:
    """The rendered policies for the site's prefix and the backup's, less one action."""
    rendered = {
        "site": render_iam_policy(bucket, TENANT),
        "backup": render_iam_policy(backup, SNAP),
    }
    if without is None:
        return rendered
    trimmed = {}
    for name, text in rendered.items():
        document = json.loads(text)
        statements = []
        for statement in document["Statement"]:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            kept = [action for action in actions if action != without]
            if kept:
                statements.append({**statement, "Action": kept})
        assert statements != document["Statement"], f"{without} is not in the policy"
        trimmed[name] = json.dumps({**document, "Statement": statements})
    return trimmed


@pytest.fixture
def world(
    endpoint: str, aws_env: None, aws_permissions: list[Check], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A factory: buckets and a user holding the rendered policies (less ``without``)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    admin_s3 = s3_client(endpoint_url=endpoint)
    created: list[Any] = [admin_s3]

    def make(without: str | None = None) -> World:
        import boto3

        bucket, backup = fresh_bucket(), fresh_bucket()
        admin_s3.create_bucket(Bucket=bucket)
        admin_s3.create_bucket(Bucket=backup)
        iam_client = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        created.append(iam_client)
        # An admin user, so the test can look at the buckets while IAM is enforced.
        iam_client.create_user(UserName=f"admin-{bucket}")
        iam_client.put_user_policy(
            UserName=f"admin-{bucket}",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        admin_key = iam_client.create_access_key(UserName=f"admin-{bucket}")["AccessKey"]
        user = f"offload-{bucket}"
        iam_client.create_user(UserName=user)
        for name, document in _policies(bucket, backup, without).items():
            iam_client.put_user_policy(UserName=user, PolicyName=name, PolicyDocument=document)
        key = iam_client.create_access_key(UserName=user)["AccessKey"]
        admin = s3_client(
            endpoint_url=endpoint,
            access_key=admin_key["AccessKeyId"],
            secret_key=admin_key["SecretAccessKey"],
        )
        created.append(admin)
        credentials = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        for name, value in credentials.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        return World(endpoint, admin, bucket, backup, credentials, aws_permissions)

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    try:
        yield make
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = before
        for client in created:
            client.close()


# -- the operator's day -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_SYNC_STATE", str(tmp_path / "state" / "sync.sqlite3"))
    monkeypatch.chdir(tmp_path)


def _config(world: World) -> Path:
    path = Path("offload.toml")
    path.write_text(
        "[sites.blog]\n"
        f'storage = "s3://{world.bucket}/{TENANT}"\n'
        f'prefix = "{PREFIX}"\n'
        f'endpoint_url = "{world.endpoint}"\n'
        'addressing_style = "path"\n'
        f'backup = "s3://{world.backup}/{SNAP}"\n'
    )
    return path


def run_the_day(world: World, tmp_path: Path) -> dict[str, str]:
    """Every step in turn; each step's error ("" when it did what it should)."""
    results: dict[str, str] = {}
    site_url = f"s3://{world.bucket}/{TENANT}/media"
    endpoint = ["--endpoint-url", world.endpoint]

    def step(name: str, code_out_err: tuple[int, str, str], check: bool) -> None:
        code, out, err = code_out_err
        results[name] = "" if code == 0 and check else f"exit {code}: {err.strip() or out.strip()}"

    write_tree(Path("data"), FILES, OLD)
    step(
        "sync upload",
        run_cli("sync", "data", site_url, *endpoint),
        world.keys(f"{TENANT}/media") == sorted(FILES),
    )
    Path("data/2024/06/c.txt").unlink()
    step(
        "sync upload --delete",
        run_cli("sync", "data", site_url, "--delete", *endpoint),
        world.keys(f"{TENANT}/media") == ["2024/05/a.jpg", "2024/05/b.png"],
    )
    write_tree(Path("out"), {"stale.txt": b"not in the bucket"}, OLD + HOUR_NS)
    out = run_cli("sync", site_url, "out", "--delete", *endpoint)
    step("sync download --delete", out, read_tree(Path("out")) == read_tree(Path("data")))

    config = _config(world)
    site_files = {**FILES, BIG: big_bytes(9 * MiB)}  # over the 8 MiB multipart threshold
    write_tree(Path("uploads"), site_files, OLD)
    step(
        "sync site",
        run_cli("sync", "uploads", "site:blog", "--config", config),
        world.keys(f"{TENANT}/{PREFIX}") == sorted(site_files),
    )
    backup = run_cli("backup", "--config", config)
    copied = world.keys(f"{SNAP}/{PREFIX}", bucket=world.backup) == sorted(site_files)
    step("backup", backup, copied)

    results.update(asyncio.run(_webhooks_and_origin(world, tmp_path)))
    return results


async def _webhooks_and_origin(world: World, tmp_path: Path) -> dict[str, str]:
    uploads = tmp_path / "hook-uploads"
    big = big_bytes(9 * MiB, seed=2)  # goes up in parts
    write_tree(uploads, {"2025/01/new.jpg": b"new upload", "2025/01/new.mp4": big})
    site = Site(
        name="blog",
        storage=f"s3://{world.bucket}/{TENANT}",
        endpoint_url=world.endpoint,
        addressing_style="path",
        hostnames=("*",),
        prefix=PREFIX,
        uploads_dir=uploads,
        uploads_url="https://blog.example.com/wp-content/uploads",
        cdn_url="https://cdn.example.com",
        webhook_secret=Secret(SECRET),
    )
    app = create_app(Settings(manifest=tmp_path / "manifest.sqlite3", sites={"blog": site}))
    results: dict[str, str] = {}
    async with TestClient(TestServer(app)) as client:

        async def hook(name: str, body: dict[str, Any]) -> tuple[int, Any]:
            raw = json.dumps(body).encode()
            target = f"/_offload/blog/{name}"
            headers = {
                "Content-Type": "application/json",
                **signed_request_headers(SECRET, "POST", target, raw),
            }
            response = await client.post(target, data=raw, headers=headers)
            text = await response.text()
            return response.status, text

        files = {"files": ["2025/01/new.jpg", "2025/01/new.mp4"]}
        status, text = await hook("uploads", files)
        stored = world.keys(f"{TENANT}/{PREFIX}/2025")
        ok = status == 200 and stored == ["01/new.jpg", "01/new.mp4"]
        results["upload webhook"] = "" if ok else f"{status}: {text}"

        key = f"/{PREFIX}/2025/01/new.jpg"
        response = await client.get(key, headers={"Host": "origin.test"})
        body = await response.read()
        ok = response.status == 200 and body == b"new upload"
        results["origin GET"] = "" if ok else f"{response.status}: {body[:200]!r}"
        response = await client.head(key, headers={"Host": "origin.test"})
        ok = response.status == 200 and response.headers.get("Content-Length") == "10"
        results["origin HEAD"] = "" if ok else f"{response.status}"

        status, text = await hook("deletions", files)
        ok = status == 200 and world.keys(f"{TENANT}/{PREFIX}/2025") == []
        results["deletion webhook"] = "" if ok else f"{status}: {text}"

        # A multipart upload whose source breaks after its first part is aborted.
        storage = app[STORAGES]["blog"]
        try:
            await storage.put("broken.bin", _breaking(12 * MiB, at=9 * MiB))
            error = "the put did not fail"
        except StorageError as exc:
            error = str(exc)
        except OSError:  # the source's own error: the expected end
            error = ""
        left = world.admin.list_multipart_uploads(Bucket=world.bucket).get("Uploads") or []
        results["failed upload aborted"] = error or (f"left behind: {left}" if left else "")
    return results


async def _breaking(size: int, *, at: int) -> AsyncIterator[bytes]:
    """``size`` bytes in 1 MiB pieces, with an OSError raised at ``at`` bytes."""
    piece = big_bytes(MiB)
    for start in range(0, size, MiB):
        if start >= at:
            raise OSError("the source broke")
        yield piece


# -- the proof ----------------------------------------------------------------------------


def test_the_rendered_iam_policy_lets_sync_backup_webhooks_and_origin_do_everything(
    world: Any, tmp_path: Path
):
    made = world()
    results = run_the_day(made, tmp_path)
    assert results == dict.fromkeys(results, ""), results
    assert len(results) == 10
    # Nothing was refused, and every action the policy grants was needed by some request.
    assert made.actions(refused=True) == set()
    assert made.actions(refused=False) == set(GRANTED)
    # moto skips StringLike: each listing's s3:prefix is checked against the policy here.
    allowed = {made.bucket: _listing_condition(made.bucket, TENANT)}
    allowed[made.backup] = _listing_condition(made.backup, SNAP)
    listings = [c for c in made.mine() if c.action == "s3:ListBucket"]
    assert listings
    for listing in listings:
        assert listing.prefix is not None, listing  # StringLike fails when the key is absent
        assert allowed[listing.bucket].match(listing.prefix), listing


def _listing_condition(bucket: str, prefix: str) -> re.Pattern[str]:
    """The rendered policy's ``StringLike s3:prefix`` for listing ``bucket``, as a regex."""
    document = json.loads(render_iam_policy(bucket, prefix))
    (pattern,) = [
        statement["Condition"]["StringLike"]["s3:prefix"]
        for statement in document["Statement"]
        if statement["Action"] == "s3:ListBucket"
    ]
    wildcards = {"*": ".*", "?": "."}
    return re.compile("".join(wildcards.get(c, re.escape(c)) for c in pattern) + r"\Z")


@pytest.mark.parametrize("without", GRANTED)
def test_the_day_fails_without_any_one_action_of_the_policy(
    world: Any, tmp_path: Path, without: str
):
    made = world(without)
    results = run_the_day(made, tmp_path)
    failed = {step: error for step, error in results.items() if error}
    assert failed, f"everything still worked without {without}"
    assert made.actions(refused=True) == {without}


def test_moto_enforces_the_policy_here(world: Any):
    """A request outside the policy is refused: the enforcement is on, not assumed."""
    made = world()
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3",
        endpoint_url=made.endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        client.put_object(Bucket=made.bucket, Key=f"{TENANT}/x", Body=b"x")  # allowed
        with pytest.raises(ClientError, match="AccessDenied"):
            client.put_object(Bucket=made.bucket, Key="outside/x", Body=b"x")
    finally:
        client.close()

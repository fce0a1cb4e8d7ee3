"""``offload check-layout``: does an asset server's prefix have the folders it must?

A collection server keeps, say, ``originals/`` and ``thumbnails/`` under each
item's prefix; a sync that went wrong leaves one missing or fills one with the
wrong kind of file. The check lists the prefix once and reports every
required folder that holds nothing, and every file whose extension is not
among its folder's allowed types (case-insensitive; a file with no extension
is never allowed in a typed folder). A folder may be nested (``images/raw``);
types apply at any depth below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from offload.buckets.opening import opened_bucket
from offload.config.settings import Settings
from offload.sync.locations import Bucket, S3Options


@dataclass
class LayoutReport:
    objects: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # required folder -> files in it
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _extension(name: str) -> str | None:
    base = name.rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return ext.lower() if dot and stem else None


async def check_layout(
    bucket: Bucket, required: Sequence[str], types: Mapping[str, frozenset[str]]
) -> LayoutReport:
    report = LayoutReport(counts=dict.fromkeys(required, 0))
    typed = sorted(types, key=len, reverse=True)  # the deepest folder's rule wins
    async for info in bucket.storage.list(bucket.list_prefix):
        rel = bucket.rel(info.key)
        if not rel or rel.endswith("/"):
            continue
        report.objects += 1
        for folder in required:
            if rel.startswith(folder + "/"):
                report.counts[folder] += 1
        for folder in typed:
            if rel.startswith(folder + "/"):
                ext = _extension(rel)
                if ext not in types[folder]:
                    allowed = ", ".join(sorted(types[folder]))
                    shown = f"type {ext}" if ext else "no extension"
                    report.problems.append(
                        f"{bucket.display(rel)}: {shown} is not allowed in {folder}/ "
                        f"(allowed: {allowed})"
                    )
                break
    for folder in required:
        if report.counts[folder] == 0:
            report.problems.insert(0, f"{bucket.display(folder)}/: required folder is missing")
    return report


async def check_bucket_layout(
    text: str,
    s3: S3Options,
    settings: Settings | None,
    required: Sequence[str],
    types: Mapping[str, frozenset[str]],
) -> LayoutReport:
    """Open the bucket ``text`` names and check its layout."""
    async with opened_bucket(text, s3, settings, threads=4, name="offload-layout") as (bucket, _):
        return await check_layout(bucket, required, types)

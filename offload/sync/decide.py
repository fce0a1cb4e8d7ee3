"""Decide: which of a batch of pairs to transfer (the rules themselves are in ``compare``).

A listing gives an object's size, ETag and LastModified, not its metadata.
Where the rules need more, the batch's pairs get it first: equal-size pairs
get the object's stored ``mtime`` and hashes from the sync state cache
(``state``), trusted only while the listing shows the same ETag and size, or
else from one HEAD each, at most ``jobs`` at once. Under ``CHECKSUM`` an
equal-size pair is the same when its hashes match, as rclone's ``Equal``
compares hashes before it transfers. Then each pair is decided, and what
differs is handed to ``transfer``.

Times that disagree are settled by content, as rclone's ``Equal`` settles
them. An object written by another tool carries no stored ``mtime``, and its
LastModified is when it was written, not when its file was: "newer wins"
(aws's rule) then skips an edit whose file is older than the object, or a
local edit newer than the object it should be overwritten by. So when the
object has no stored mtime, the sizes match and the whole seconds differ,
the file's MD5 is compared with a single-part ETag, or its MD5 or SHA-256
with the hash stored in the object's metadata; with neither (a multipart
ETag and no stored hash) the pair is transferred, the safe side. Different
content is transferred; identical content is only re-dated:

- download: the file gets the object's LastModified as its mtime (what a
  download would have given it), so the next run sees equal times and reads
  nothing;
- upload: nothing is written. The object's LastModified cannot change, nor
  can a stored mtime be added, without copying the object onto itself; so
  the next run compares again (it reads the file, it sends nothing).

A dry run hashes (to report truly) but re-dates nothing.

Folder to folder is rsync's quick check (``compare.file_copy_needed``): sizes,
then mtimes, or with ``CHECKSUM`` the two files' MD5s.
"""

from __future__ import annotations

import asyncio
import os

from offload.storage.objectmeta import parse_mtime_ns
from offload.sync.compare import (
    CHECKSUM,
    DEFAULT,
    NEWER,
    SIZE_ONLY,
    Side,
    copy_needed,
    download_needed,
    file_copy_needed,
    single_part_md5,
    upload_needed,
)
from offload.sync.context import KNOWN_FLUSH, RunContext, reason
from offload.sync.locations import Bucket, Folder
from offload.sync.march import Entry
from offload.sync.state import Known, known_of
from offload.sync.transfer import Transfers, hash_file

#: A source entry and the destination entry at its path, if any.
SourcePair = tuple[Entry, Entry | None]


class Decider:
    """Decides batches of one run's pairs and schedules their transfers."""

    def __init__(self, ctx: RunContext, transfers: Transfers) -> None:
        self.ctx = ctx
        self.transfers = transfers
        self._facts: dict[tuple[int, str], Known] = {}  # (id of bucket, key) -> stored facts
        self._head_slots = asyncio.Semaphore(max(ctx.options.jobs, 1))

    async def decide(self, batch: list[SourcePair]) -> None:
        if not batch:
            return
        ctx = self.ctx
        mode = ctx.options.compare
        src_local, dst_local = isinstance(ctx.src, Folder), isinstance(ctx.dst, Folder)
        same_size = [
            index
            for index, (s, d) in enumerate(batch)
            if d is not None and s.side.size == d.side.size
        ]
        if mode == NEWER:  # every pair's object side: which copy is newer
            paired = [index for index, (_s, d) in enumerate(batch) if d is not None]
            await self._fill(batch, paired, object_is_dst=src_local)
        elif same_size and mode != SIZE_ONLY:
            if src_local or dst_local:
                # The object side's stored mtime (and hashes, for --checksum).
                await self._fill(batch, same_size, object_is_dst=src_local)
            else:
                differing = [i for i in same_size if batch[i][0].side.etag != _dst(batch, i).etag]
                if mode in (DEFAULT, CHECKSUM):
                    await self._fill(batch, differing, object_is_dst=True)
                    await self._fill(batch, differing, object_is_dst=False)
        by_content: list[int] = []  # pairs that content decides
        if mode == CHECKSUM:
            by_content = same_size
        elif mode == DEFAULT and src_local != dst_local:
            by_content = [i for i in same_size if _times_disagree_unstored(batch[i], src_local)]
        same_content: set[int] = set()
        if by_content:
            same_content = await self._same_content(batch, by_content)
        decided_by_content = set(by_content)
        planned_files = planned_bytes = 0
        for index, (s, d) in enumerate(batch):
            if index in decided_by_content:
                needed = index not in same_content
            elif src_local and dst_local:
                needed = file_copy_needed(s.side, d.side if d else None, mode)
            elif src_local:
                needed = upload_needed(s.side, d.side if d else None, mode)
            elif dst_local:
                needed = download_needed(s.side, d.side if d else None, mode)
            else:
                needed = copy_needed(s.side, d.side if d else None, mode)
            if needed:
                planned_files += 1
                planned_bytes += s.side.size
                await self.transfers.schedule(s, replaces=d is not None)
        ctx.reporter.planned(planned_files, planned_bytes)
        if mode == DEFAULT and dst_local and not ctx.options.dry_run:
            await self._redate(batch, [i for i in by_content if i in same_content])
        self._facts.clear()  # only this batch's comparisons needed them
        await ctx.flush_known(KNOWN_FLUSH)

    async def _fill(
        self, batch: list[SourcePair], indexes: list[int], *, object_is_dst: bool
    ) -> None:
        """Give the object side of ``batch[i]`` its stored facts: from the cache, else a HEAD."""
        ctx = self.ctx
        bucket = ctx.dst if object_is_dst else ctx.src
        if not indexes or not isinstance(bucket, Bucket):
            return
        location = ctx.state_location(bucket)

        def object_of(index: int) -> Entry:
            s, d = batch[index]
            entry = d if object_is_dst else s
            assert entry is not None
            return entry

        known = await ctx.call(ctx.state.lookup, location, [object_of(i).ref for i in indexes])
        facts: dict[int, Known] = {}
        missing: list[int] = []
        for index in indexes:
            entry = object_of(index)
            hit = known.get(entry.ref)
            if hit is not None and hit.etag == entry.side.etag and hit.size == entry.side.size:
                facts[index] = hit
            else:
                missing.append(index)

        async def head(index: int) -> None:
            entry = object_of(index)
            async with self._head_slots:
                info = await bucket.storage.head(entry.ref)
            if info is not None:
                facts[index] = fact = known_of(info)
                ctx.known_for(bucket).append((entry.ref, fact))

        await asyncio.gather(*(head(index) for index in missing))
        for index, fact in facts.items():
            s, d = batch[index]
            entry = object_of(index)
            updated = Entry(entry.rel, _with_fact(entry.side, fact), entry.ref)
            self._facts[(id(bucket), entry.ref)] = fact
            batch[index] = (s, updated) if object_is_dst else (updated, d)

    async def _same_content(self, batch: list[SourcePair], indexes: list[int]) -> set[int]:
        """``CHECKSUM``: which equal-size pairs hold the same bytes."""
        ctx = self.ctx
        same: set[int] = set()

        async def compare(index: int) -> None:
            s, d = batch[index]
            assert d is not None
            if isinstance(ctx.src, Bucket) and isinstance(ctx.dst, Bucket):
                if s.side.etag == d.side.etag or _same_stored_hash(
                    self._facts.get((id(ctx.src), s.ref)), self._facts.get((id(ctx.dst), d.ref))
                ):
                    same.add(index)
                return
            if isinstance(ctx.src, Folder) and isinstance(ctx.dst, Folder):
                async with self._head_slots:
                    digests = [await ctx.call(hash_file, e.ref, "md5") for e in (s, d)]
                if digests[0] is not None and digests[0] == digests[1]:
                    same.add(index)
                return
            local, obj = (s, d) if isinstance(ctx.src, Folder) else (d, s)
            bucket = ctx.dst if isinstance(ctx.src, Folder) else ctx.src
            fact = self._facts.get((id(bucket), obj.ref))
            md5 = single_part_md5(obj.side.etag) or (fact.md5 if fact else None)
            sha256 = fact.sha256 if fact else None
            if md5 is None and sha256 is None:
                return  # nothing to compare with: transfer
            async with self._head_slots:
                digest = await ctx.call(hash_file, local.ref, "md5" if md5 else "sha256")
            if digest is not None and digest == (md5 or sha256):
                same.add(index)

        await asyncio.gather(*(compare(index) for index in indexes))
        return same

    async def _redate(self, batch: list[SourcePair], indexes: list[int]) -> None:
        """Downloads found identical: date each file by its object, as a download would."""
        ctx = self.ctx

        async def redate(index: int) -> None:
            s, d = batch[index]
            assert d is not None
            assert s.side.last_modified_ns is not None
            mtime_ns = s.side.last_modified_ns // 10**9 * 10**9
            try:
                await ctx.call(_set_mtime, d.ref, mtime_ns)
            except OSError as exc:
                ctx.warn(d.rel, f"could not re-date {d.ref}: {reason(exc)}")

        await asyncio.gather(*(redate(index) for index in indexes))


def _times_disagree_unstored(pair: SourcePair, file_is_source: bool) -> bool:
    """Whether a same-size file and object differ in time, the object having no stored mtime."""
    s, d = pair
    assert d is not None
    file, obj = (s.side, d.side) if file_is_source else (d.side, s.side)
    if parse_mtime_ns(obj.stored_mtime) is not None:
        return False  # offload's own mtime decides (``compare``)
    assert file.mtime_ns is not None
    assert obj.last_modified_ns is not None
    return file.mtime_ns // 10**9 != obj.last_modified_ns // 10**9


def _set_mtime(path: str, mtime_ns: int) -> None:
    """Date a file (blocking), through a symlink as the walk that compared it saw it."""
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _dst(batch: list[SourcePair], index: int) -> Side:
    destination = batch[index][1]
    assert destination is not None
    return destination.side


def _with_fact(side: Side, fact: Known) -> Side:
    return Side(
        side.size,
        mtime_ns=side.mtime_ns,
        last_modified_ns=side.last_modified_ns,
        etag=side.etag,
        stored_mtime=fact.mtime,
    )


def _same_stored_hash(a: Known | None, b: Known | None) -> bool:
    if a is None or b is None:
        return False
    return bool((a.md5 and a.md5 == b.md5) or (a.sha256 and a.sha256 == b.sha256))

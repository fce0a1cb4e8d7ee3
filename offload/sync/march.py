"""March: the two listings walked in step, as (source, destination) pairs in key order.

Both listings arrive sorted by key (``walk`` sorts a folder the way S3 lists a
bucket) and are merged as streams, a batch of pairs at a time, so memory holds
a few pages and a batch whatever the tree's size, as rclone's ``fs/march``
does. A listing that is not in order stops the run (``SyncError``) before
anything is deleted. Filters apply to both sides; a path that cannot be a key
is skipped with a warning, which also keeps its copy from deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from itertools import islice

from offload.keys import key_problem
from offload.storage import ObjectInfo
from offload.sync.compare import Side
from offload.sync.context import RunContext, SyncError
from offload.sync.locations import Bucket, Folder, Location
from offload.sync.walk import LocalFile, walk

#: Pairs decided together (one cache query, HEADs in parallel).
BATCH = 512
#: Entries per page of the folder walk (a bucket's pages are the server's, up to 1,000).
PAGE = 1000
#: Pages a listing may run ahead of the merge.
AHEAD = 2


@dataclass(frozen=True, slots=True)
class Entry:
    """One side's file or object at a path relative to its root."""

    rel: str
    side: Side
    ref: str  # the local path, or the object's key in its storage


#: A path's source and destination entries; None where that side has none.
Pair = tuple[Entry | None, Entry | None]


class March:
    """The merged listings of one run; ``leftovers`` are the partial downloads it met."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        #: ``.offload-partial-*`` files in a destination folder (an interrupted run's).
        self.leftovers: list[str] = []
        self._warnings: list[tuple[str, str]] = []  # from the walk, in the executor's thread

    def drain_warnings(self) -> None:
        """Report what the walk skipped (it runs in a thread, the reporter on the loop)."""
        while self._warnings:
            self.ctx.warn(*self._warnings.pop(0))

    async def pairs(self) -> AsyncGenerator[list[Pair], None]:
        """Pairs (source, destination) in key order, a batch at a time.

        Each side's listing runs ahead by up to ``AHEAD`` pages in its own task,
        so the walk, the listing requests and the merging overlap; the merge
        itself is a plain loop over two lists.
        """
        included = self.ctx.options.filters.included
        sources = _Cursor(self._pages(self.ctx.src, source=True), included)
        destinations = _Cursor(self._pages(self.ctx.dst, source=False), included)
        out: list[Pair] = []
        try:
            while True:
                has_source = await sources.ready()
                has_destination = await destinations.ready()
                if not has_source and not has_destination:
                    break
                s_page, si = sources.page, sources.at
                d_page, di = destinations.page, destinations.at
                if not has_destination:
                    out.extend((entry, None) for entry in s_page[si:])
                    si = len(s_page)
                elif not has_source:
                    out.extend((None, entry) for entry in d_page[di:])
                    di = len(d_page)
                else:
                    s_end, d_end = len(s_page), len(d_page)
                    while si < s_end and di < d_end:
                        s, d = s_page[si], d_page[di]
                        if s.rel < d.rel:
                            out.append((s, None))
                            si += 1
                        elif d.rel < s.rel:
                            out.append((None, d))
                            di += 1
                        else:
                            out.append((s, d))
                            si += 1
                            di += 1
                sources.at, destinations.at = si, di
                if len(out) >= BATCH:
                    yield out
                    out = []
            if out:
                yield out
        finally:
            await sources.close()
            await destinations.close()

    def _pages(self, location: Location, *, source: bool) -> AsyncGenerator[list[Entry], None]:
        if isinstance(location, Folder):
            return self._folder_pages(location, source=source)
        return self._bucket_pages(location)

    async def _folder_pages(
        self, folder: Folder, *, source: bool
    ) -> AsyncGenerator[list[Entry], None]:
        if not await self.ctx.call(os.path.isdir, folder.path):
            if source:
                raise SyncError(f"{folder.shown}: the folder does not exist")
            return
        files = walk(
            folder.path,
            lambda rel, text: self._warnings.append((rel, text)),
            self.leftovers.append if not source else None,
            confined=folder.confined,
        )
        previous = ""
        while True:
            batch: list[LocalFile] = await self.ctx.call(lambda: list(islice(files, PAGE)))
            self.drain_warnings()
            if not batch:
                return
            page = []
            for file in batch:
                if file.rel <= previous and previous:
                    raise SyncError(f"{folder.shown}: the walk is out of order at {file.rel!r}")
                previous = file.rel
                problem = key_problem(file.rel)
                if problem is not None:
                    self.ctx.warn(file.rel, f"skipping {file.path}: it cannot be a key: {problem}")
                    continue
                page.append(Entry(file.rel, Side(file.size, mtime_ns=file.mtime_ns), file.path))
            yield page

    async def _bucket_pages(self, bucket: Bucket) -> AsyncGenerator[list[Entry], None]:
        previous = ""
        crt = self.ctx.crt_for(bucket)
        listing = crt.list_pages if crt is not None else _paged(bucket.storage.list)
        async for infos in listing(bucket.list_prefix):
            page = []
            for info in infos:
                rel = bucket.rel(info.key)
                if rel is None:
                    continue
                if rel <= previous and previous:
                    raise SyncError(f"{bucket.shown}: the listing is out of order at {rel!r}")
                previous = rel
                if rel.endswith("/") and info.size == 0:
                    continue  # a "folder" marker made by a console
                problem = key_problem(rel)
                if problem is not None:
                    self.ctx.warn(rel, f"skipping {bucket.display(rel)}: {problem}")
                    continue
                modified = int(info.last_modified.timestamp() * 1e9)
                side = Side(info.size, last_modified_ns=modified, etag=info.etag)
                page.append(Entry(rel, side, info.key))
            yield page


class _Cursor:
    """One side of the merge: pages fetched ahead by a task, and a position in the current one."""

    def __init__(
        self, pages: AsyncGenerator[list[Entry], None], included: Callable[[str], bool]
    ) -> None:
        self.page: list[Entry] = []
        self.at = 0
        self._included = included
        self._queue: asyncio.Queue[list[Entry] | BaseException | None] = asyncio.Queue(AHEAD)
        self._ended = False
        self._pages = pages
        self._task = asyncio.ensure_future(self._fetch())

    async def _fetch(self) -> None:
        try:
            async for page in self._pages:
                await self._queue.put(page)
        except Exception as exc:  # handed to the merge, which raises it in its own task
            await self._queue.put(exc)
        else:
            await self._queue.put(None)

    async def ready(self) -> bool:
        """Whether an entry is at ``page[at]``; False once the side has no more."""
        while self.at >= len(self.page):
            if self._ended:
                return False
            item = await self._queue.get()
            if item is None or isinstance(item, BaseException):
                self._ended = True
                if item is not None:
                    raise item
                return False
            self.page, self.at = [e for e in item if self._included(e.rel)], 0
        return True

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(RuntimeError):  # already closed or running elsewhere
            await self._pages.aclose()


def _paged(
    listing: Callable[[str], AsyncIterator[ObjectInfo]],
) -> Callable[[str], AsyncIterator[list[ObjectInfo]]]:
    """A one-object-at-a-time listing as pages of up to ``PAGE`` objects."""

    async def pages(prefix: str) -> AsyncIterator[list[ObjectInfo]]:
        page: list[ObjectInfo] = []
        async for info in listing(prefix):
            page.append(info)
            if len(page) >= PAGE:
                yield page
                page = []
        if page:
            yield page

    return pages

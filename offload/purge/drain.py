"""Sending the purge outbox: the background task every ``offload serve`` worker runs.

A change writes its purges to the outbox in the manifest database in the same
transaction as the change (``Manifest.record`` / ``remove``), so a purge is
lost neither by a crash nor by a CDN API that is down: whatever is in the
outbox is sent by some worker of some host, after a restart if need be.

Each round claims the due entries (a lease, so two hosts never send the same
entry; a host that dies loses its claim when the lease ends), merges
duplicates, lets the site's provider cut them into request-sized batches, and
sends them one batch after another, at the pace the provider keeps. An entry
is done when every request it needed went through. A failed one waits and is
tried again: ``Retry-After`` when the API sent one, else an exponential backoff
(5 s doubling to 15 minutes; a refusal such as bad credentials waits at least
5 minutes, since an operator must fix it), until it is ``purge_give_up_after``
seconds old. Then it is given up: logged, counted, and listed by
``offload purge --status`` and the status page.

A deletion webhook waits for its own purges (``wait_sent``) for a few seconds
before it answers, so a CDN has dropped the object by the time the CMS is told
it is gone; the outbox covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol

from offload.manifest import Manifest, ManifestError, PurgeEntry, PurgeItem
from offload.purge.providers.base import Provider, PurgeRefused, PurgeRetry

log = logging.getLogger(__name__)

Run = Callable[..., Awaitable[Any]]

#: First wait after a failed send, doubled each time up to MAX_BACKOFF.
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 900.0
#: Least wait after a refusal (credentials, zone): an operator has to act.
REFUSED_BACKOFF = 300.0
#: Longest Retry-After honoured as sent; longer ones are cut to this.
MAX_RETRY_AFTER = 3600.0
#: Seconds ``stop`` waits for the manifest calls under way.
STOP_WAIT = 10.0
#: Items this process sent lately, remembered for ``wait_sent(since=...)``.
RECENT_KEPT = 10_000


class Observer(Protocol):
    """Where the drain's counts go (the server's metrics)."""

    def purge_sent(self, site: str, provider: str, entries: int) -> None: ...
    def purge_failed(self, site: str, provider: str, entries: int) -> None: ...
    def purge_given_up(self, site: str, entries: int) -> None: ...


class _Quiet:
    def purge_sent(self, site: str, provider: str, entries: int) -> None:
        pass

    def purge_failed(self, site: str, provider: str, entries: int) -> None:
        pass

    def purge_given_up(self, site: str, entries: int) -> None:
        pass


class GaveUp(Exception):
    """What a ``wait_sent`` waiter learns of an item given up instead of sent."""


class Deferred(Exception):
    """What a ``wait_sent`` waiter learns of an item whose next try comes after its wait ends."""


@dataclass
class SendFailure:
    """Why a round left entries unsent, and how long the API asked to wait."""

    reason: str
    retry_after: float | None = None
    refused: bool = False


def backoff(attempts: int, failure: SendFailure) -> float:
    """Seconds before an entry that has failed ``attempts`` times (this one included) goes again."""
    if failure.retry_after is not None:
        return min(max(failure.retry_after, 1.0), MAX_RETRY_AFTER)
    wait = min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)
    return max(wait, REFUSED_BACKOFF) if failure.refused else wait


class PurgeDrain:
    """Claims due outbox entries of the sites in ``providers`` and sends them."""

    def __init__(
        self,
        manifest: Manifest,
        providers: Mapping[str, Provider],
        run: Run,
        *,
        give_up_after: float,
        lease: float = 60.0,
        claim_limit: int = 500,
        poll_interval: float = 1.0,
        settle: float = 0.0,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``settle``: seconds a purge waits after its change before it is sent, so that
        other processes' origins have forgotten the key by then (see ``offload.server.
        purging``); 0 when no other process serves the same objects."""
        self.manifest = manifest
        self.providers = dict(providers)
        self._run = run
        self.give_up_after = give_up_after
        self.lease = lease
        self.claim_limit = claim_limit
        self.poll_interval = poll_interval
        self.settle = settle
        self._observer: Observer = observer or _Quiet()
        self._clock = clock
        #: One per site: each site's loop sleeps on its own, so a wake reaches every one.
        self._wakes = {site: asyncio.Event() for site in self.providers}
        self._waiters: dict[PurgeItem, list[asyncio.Future[None]]] = defaultdict(list)
        #: When each waiter stops waiting, and the time before its change (this drain's clock).
        self._deadlines: dict[asyncio.Future[None], float] = {}
        self._since: dict[asyncio.Future[None], float] = {}
        #: Item -> the newest ``created_at`` among its entries this process sent.
        self._recent: OrderedDict[PurgeItem, float] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Future[Any]] = set()

    # -- running ---------------------------------------------------------------------

    def start(self) -> None:
        """One loop per site: a CDN API that hangs holds back its own site's purges only."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._forever(site), name=f"offload-purge-{site}")
                for site in self.providers
            ]

    async def stop(self) -> None:
        """Stop the loops; claims not finished are given back, or expire with their lease."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._inflight:  # the manifest calls under way, and the claims given back
            await asyncio.wait(list(self._inflight), timeout=STOP_WAIT)
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        self._waiters.clear()
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.close()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A blocking manifest call in the executor, which ``stop`` waits for: a cancelled
        await would leave the thread running while the server closes the manifest."""
        future = asyncio.ensure_future(self._run(fn, *args))
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        return await asyncio.shield(future)

    def wake(self) -> None:
        """Look at the outbox now, not at the next poll (this process just wrote to it)."""
        for event in self._wakes.values():
            event.set()

    async def wait_sent(
        self, items: Iterable[PurgeItem], within: float, *, since: float | None = None
    ) -> bool:
        """Whether this process sent every one of ``items`` within ``within`` seconds.

        False is not a loss: the entries stay in the outbox until someone sends them.
        It comes as soon as the answer is known: an item given up, or one whose
        send failed and whose next try is due after ``within`` ends (a CDN API that
        is down holds a deletion webhook for one try, not for all of ``purge_wait``).

        ``since``: a time (this drain's clock) before the items were queued. An
        item this process sent from an entry queued after it counts as sent: the
        drain may take a change's purges, woken by another change, before the
        caller comes to wait for them.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        deadline = self._clock() + max(within, 0)
        for item in dict.fromkeys(items):
            if since is not None and self._recent.get(item, -math.inf) >= since:
                continue  # sent already
            if item.site in self.providers:
                future = loop.create_future()
                self._waiters[item].append(future)
                self._deadlines[future] = deadline
                self._since[future] = -math.inf if since is None else since
                futures.append(future)
        if not futures:
            return True
        self.wake()
        try:
            done, pending = await asyncio.wait(futures, timeout=max(within, 0))
        finally:
            mine = {id(future) for future in futures}
            for item in list(self._waiters):
                left = [f for f in self._waiters[item] if id(f) not in mine]
                if left:
                    self._waiters[item] = left
                else:
                    del self._waiters[item]
            for future in futures:
                self._deadlines.pop(future, None)
                self._since.pop(future, None)
        return not pending and all(not f.cancelled() and f.exception() is None for f in done)

    def _settle_waiters(
        self, queued: Mapping[PurgeItem, float], error: Exception | None = None
    ) -> None:
        """Wake whoever waits for these items: sent (``error`` None), or given up.

        ``queued``: each item's newest entry's ``created_at``. A sent entry answers only
        the waiters whose change came before it: an older purge of the same URL, sent
        while a newer change was made, is not the newer change's purge.
        """
        for item, created in queued.items():
            kept = []
            for waiter in self._waiters.pop(item, []):
                if waiter.done():
                    continue
                if error is not None:
                    waiter.set_exception(error)
                elif self._since.get(waiter, -math.inf) <= created:
                    waiter.set_result(None)
                else:
                    kept.append(waiter)
            if kept:
                self._waiters[item] = kept

    async def _forever(self, site: str) -> None:
        failures = 0
        wake = self._wakes[site]
        while True:
            wake.clear()
            try:
                claimed = await self.drain_once([site])
                failures = 0
            except ManifestError as exc:  # the database is away: try again, slower and slower
                failures += 1
                log.warning("purge outbox: %s", exc)
                claimed = 0
                await asyncio.sleep(min(self.poll_interval * 2**failures, 60.0))
            except Exception:  # a bug must not end the drain: the outbox would only grow
                failures += 1
                log.exception("purge outbox: a round failed")
                claimed = 0
                await asyncio.sleep(min(self.poll_interval * 2**failures, 60.0))
            if claimed:
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.poll_interval)

    async def drain_once(self, sites: Iterable[str] | None = None) -> int:
        """One round for ``sites`` (all by default): claim what is due, send it, settle
        each entry; how many were claimed."""
        chosen = list(self.providers) if sites is None else list(sites)
        entries: list[PurgeEntry] = await self._call(
            lambda: self.manifest.claim_purges(
                limit=self.claim_limit, lease=self.lease, sites=chosen
            )
        )
        if not entries:
            return 0
        by_site: dict[str, list[PurgeEntry]] = defaultdict(list)
        for entry in entries:
            by_site[entry.item.site].append(entry)
        await asyncio.gather(*(self._send_site(site, group) for site, group in by_site.items()))
        return len(entries)

    # -- one site's round ----------------------------------------------------------------

    async def _send_site(self, site: str, entries: list[PurgeEntry]) -> None:
        provider = self.providers[site]
        by_item: dict[PurgeItem, list[PurgeEntry]] = defaultdict(list)
        for entry in entries:
            by_item[entry.item].append(entry)
        try:
            # What each item needs sent, in the provider's terms (a prefix may become a tag).
            needs = {item: set(chain.from_iterable(provider.prepare([item]))) for item in by_item}
            batches = provider.prepare(list(by_item))
        except Exception as exc:  # a provider's bug: the entries wait, as for a refusal
            log.exception("site %s: preparing purges for %s failed", site, provider.name)
            broken = SendFailure(f"internal error: {type(exc).__name__}", refused=True)
            await self._settle_failed(site, provider.name, entries, broken)
            return
        sent: set[PurgeItem] = set()
        tried: set[PurgeItem] = set()
        try:
            await self._settled(entries)
            failure = await self._send_batches(site, provider, batches, sent, tried)
        except asyncio.CancelledError:  # the server stops: what was not sent is due again
            done_ids = [
                e.id for item, group in by_item.items() if needs[item] <= sent for e in group
            ]
            rest = [e.id for e in entries if e.id not in set(done_ids)]
            await asyncio.shield(self._give_back(done_ids, rest))
            raise
        done, failed, untried = [], [], []
        for item, group in by_item.items():
            if needs[item] <= sent:
                done += group
            elif failure is not None or needs[item] & tried:
                failed += group  # tried, or left behind by a failure: the same wait
            else:
                untried += group
        if done:
            await self._call(self.manifest.complete_purges, [e.id for e in done])
            self._observer.purge_sent(site, provider.name, len(done))
            newest: dict[PurgeItem, float] = {}
            for entry in done:
                newest[entry.item] = max(entry.created_at, newest.get(entry.item, -math.inf))
            self._settle_waiters(newest)
            for item, created in newest.items():
                self._recent[item] = max(created, self._recent.pop(item, -math.inf))
            while len(self._recent) > RECENT_KEPT:
                self._recent.popitem(last=False)
        if untried:
            await self._call(self.manifest.release_purges, [e.id for e in untried])
        if failed:
            await self._settle_failed(
                site, provider.name, failed, failure or SendFailure("internal error")
            )

    async def _send_batches(
        self,
        site: str,
        provider: Provider,
        batches: list[list[PurgeItem]],
        sent: set[PurgeItem],
        tried: set[PurgeItem],
    ) -> SendFailure | None:
        """Send the batches in turn until one fails or half the lease is gone (the rest is
        given back before another host takes it over); ``sent`` and ``tried`` fill up."""
        started = self._clock()
        failure: SendFailure | None = None
        for batch in batches:
            if self._clock() - started > self.lease / 2:
                break
            tried.update(batch)
            try:
                await provider.send(batch)
            except PurgeRetry as exc:
                return SendFailure(str(exc), exc.retry_after)  # busy, failing or hanging
            except PurgeRefused as exc:
                return SendFailure(str(exc), refused=True)  # the next batch would be too
            except Exception as exc:  # a provider's bug must not stop the outbox
                log.exception("site %s: purging through %s failed", site, provider.name)
                failure = SendFailure(f"internal error: {type(exc).__name__}")
                continue
            sent.update(batch)
        return failure

    async def _give_back(self, done: list[int], rest: list[int]) -> None:
        with contextlib.suppress(ManifestError):
            if done:
                await self._call(self.manifest.complete_purges, done)
            if rest:
                await self._call(self.manifest.release_purges, rest)

    async def _settled(self, entries: list[PurgeEntry]) -> None:
        """Wait until the newest change is ``settle`` seconds old (at most ``settle``)."""
        if self.settle <= 0 or not entries:
            return
        wait = max(e.created_at for e in entries) + self.settle - self._clock()
        if wait > 0:
            await asyncio.sleep(min(wait, self.settle))

    async def _settle_failed(
        self, site: str, provider: str, entries: list[PurgeEntry], failure: SendFailure
    ) -> None:
        now = self._clock()
        expired = [e for e in entries if now - e.created_at >= self.give_up_after]
        waiting = [e for e in entries if now - e.created_at < self.give_up_after]
        self._observer.purge_failed(site, provider, len(entries))
        if expired:
            await self._call(
                lambda: self.manifest.give_up_purges(
                    [e.id for e in expired], error=failure.reason[:300]
                )
            )
            self._observer.purge_given_up(site, len(expired))
            # Nobody need wait for these any longer: they will not be sent.
            self._settle_waiters({e.item: e.created_at for e in expired}, GaveUp(failure.reason))
            log.error(
                "site %s: gave up %d purge(s) through %s after %.0f s of failures: %s",
                site,
                len(expired),
                provider,
                self.give_up_after,
                failure.reason,
            )
        by_wait: dict[float, list[PurgeEntry]] = defaultdict(list)
        for entry in waiting:
            by_wait[backoff(entry.attempts + 1, failure)].append(entry)
        for wait, group in by_wait.items():
            await self._call(
                lambda ids=[e.id for e in group], wait=wait: self.manifest.defer_purges(
                    ids, until=now + wait, error=failure.reason[:300]
                )
            )
            for entry in group:  # whoever stops waiting before the next try: now
                for waiter in self._waiters.get(entry.item, []):
                    if not waiter.done() and self._deadlines.get(waiter, 0.0) < now + wait:
                        waiter.set_exception(Deferred(failure.reason))
        if waiting:
            log.warning(
                "site %s: %d purge(s) through %s failed, trying again: %s",
                site,
                len(waiting),
                provider,
                failure.reason,
            )

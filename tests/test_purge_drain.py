"""The purge outbox's drain: sent once, merged, retried with backoff, given up, never lost.

The drain runs against the real SQLite store; the CDN is a scripted provider
(the vendors' request formats are tests/test_purge_providers.py's job).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from offload.manifest import Manifest, ManifestRow, PurgeItem, open_manifest
from offload.purge.drain import (
    MAX_BACKOFF,
    REFUSED_BACKOFF,
    PurgeDrain,
    SendFailure,
    backoff,
)
from offload.purge.providers.base import Provider, PurgeRefused, PurgeRetry


class ScriptedProvider(Provider):
    """Takes batches of ``per_request`` items; ``failures`` says what the next sends raise."""

    name = "scripted"

    def __init__(self, per_request: int = 30) -> None:
        self.per_request = per_request
        self.sent: list[list[PurgeItem]] = []
        self.failures: list[Exception] = []

    def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
        translated = [
            PurgeItem(i.site, "tag", f"{i.site}:{i.value}") if i.kind == "prefix" else i
            for i in items
        ]
        unique = list(dict.fromkeys(translated))
        return [
            unique[start : start + self.per_request]
            for start in range(0, len(unique), self.per_request)
        ]

    async def send(self, batch: list[PurgeItem]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(list(batch))

    async def close(self) -> None:
        pass


class Counts:
    def __init__(self) -> None:
        self.sent = self.failed = self.given_up = 0

    def purge_sent(self, site: str, provider: str, entries: int) -> None:
        self.sent += entries

    def purge_failed(self, site: str, provider: str, entries: int) -> None:
        self.failed += entries

    def purge_given_up(self, site: str, entries: int) -> None:
        self.given_up += entries


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def url(n: int) -> PurgeItem:
    return PurgeItem("blog", "url", f"https://cdn.example.com/2024/05/photo-{n}.jpg")


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    store = open_manifest(tmp_path / "manifest.sqlite3")
    yield store
    store.close()


def drain_for(
    manifest: Manifest, provider: Provider, *, give_up_after: float = 3600, counts: Any = None
) -> PurgeDrain:
    return PurgeDrain(
        manifest, {"blog": provider}, inline, give_up_after=give_up_after, observer=counts
    )


async def test_a_deletions_purges_are_sent_once_and_leave_the_outbox(manifest: Manifest) -> None:
    row = ManifestRow("blog", "2024/05/photo-1.jpg", "2024/05/photo-1.jpg", None, 3, "ab", "e")
    manifest.record([row])
    manifest.remove("blog", [row.key], purges=[url(1)])
    provider, counts = ScriptedProvider(), Counts()
    drain = drain_for(manifest, provider, counts=counts)
    assert await drain.drain_once() == 1
    assert provider.sent == [[url(1)]]
    assert await drain.drain_once() == 0
    assert manifest.purge_queue().waiting == 0
    assert counts.sent == 1


async def test_the_same_url_queued_three_times_is_sent_in_one_request(manifest: Manifest) -> None:
    for _ in range(3):
        manifest.enqueue_purges([url(1), url(2)])
    provider = ScriptedProvider()
    await drain_for(manifest, provider).drain_once()
    assert provider.sent == [[url(1), url(2)]]
    assert manifest.purge_queue().waiting == 0


async def test_batches_follow_the_providers_limit(manifest: Manifest) -> None:
    manifest.enqueue_purges([url(n) for n in range(7)])
    provider = ScriptedProvider(per_request=3)
    await drain_for(manifest, provider).drain_once()
    assert [len(batch) for batch in provider.sent] == [3, 3, 1]
    assert {item for batch in provider.sent for item in batch} == {url(n) for n in range(7)}


async def test_a_rate_limited_send_waits_as_long_as_retry_after_says(manifest: Manifest) -> None:
    manifest.enqueue_purges([url(1)])
    provider = ScriptedProvider()
    provider.failures = [PurgeRetry("429 Too Many Requests", retry_after=120)]
    before = time.time()
    await drain_for(manifest, provider).drain_once()
    queue = manifest.purge_queue()
    assert queue.waiting == 1
    [entry] = queue.entries
    assert entry.attempts == 1
    assert "429" in (entry.last_error or "")
    assert before + 119 <= entry.next_at <= time.time() + 121
    # Not due yet: the next round sends nothing.
    assert await drain_for(manifest, provider).drain_once() == 0
    assert provider.sent == []


async def test_a_server_error_backs_off_exponentially_up_to_a_cap(manifest: Manifest) -> None:
    manifest.enqueue_purges([url(1)])
    provider = ScriptedProvider()
    provider.failures = [PurgeRetry("503 Service Unavailable")]
    before = time.time()
    await drain_for(manifest, provider).drain_once()
    [entry] = manifest.purge_queue().entries
    assert before + 4 <= entry.next_at <= time.time() + 6
    assert backoff(2, SendFailure("503")) == 10
    assert backoff(30, SendFailure("503")) == MAX_BACKOFF
    assert backoff(1, SendFailure("429", retry_after=7200)) == 3600


async def test_a_refusal_waits_for_an_operator_at_least_five_minutes(manifest: Manifest) -> None:
    manifest.enqueue_purges([url(1)])
    provider = ScriptedProvider()
    provider.failures = [PurgeRefused("403 Forbidden: bad token")]
    before = time.time()
    await drain_for(manifest, provider).drain_once()
    [entry] = manifest.purge_queue().entries
    assert entry.next_at >= before + REFUSED_BACKOFF - 1


async def test_a_purge_failing_past_its_age_is_given_up_logged_and_counted(
    manifest: Manifest, caplog: pytest.LogCaptureFixture
) -> None:
    manifest.enqueue_purges([url(1)])
    provider, counts = ScriptedProvider(), Counts()
    provider.failures = [PurgeRetry("503 Service Unavailable")]
    await drain_for(manifest, provider, give_up_after=0, counts=counts).drain_once()
    queue = manifest.purge_queue()
    assert queue.waiting == 0
    assert queue.given_up == 1
    [gave_up] = queue.recent_give_ups
    assert gave_up.item == url(1)
    assert "503" in gave_up.error
    assert counts.given_up == 1
    assert "gave up 1 purge" in caplog.text


async def test_when_one_batch_fails_only_its_items_are_tried_again(manifest: Manifest) -> None:
    manifest.enqueue_purges([url(n) for n in range(4)])
    provider = ScriptedProvider(per_request=2)
    provider.failures = []
    sent_first = False

    original = provider.send

    async def second_fails(batch: list[PurgeItem]) -> None:
        nonlocal sent_first
        if sent_first:
            raise PurgeRetry("502 Bad Gateway")
        sent_first = True
        await original(batch)

    provider.send = second_fails  # type: ignore[method-assign]
    await drain_for(manifest, provider).drain_once()
    waiting = {entry.item for entry in manifest.purge_queue().entries}
    sent = {item for batch in provider.sent for item in batch}
    assert len(sent) == 2
    assert waiting == {url(n) for n in range(4)} - sent


async def test_a_prefix_the_provider_sends_as_a_tag_completes_its_entry(manifest: Manifest) -> None:
    manifest.enqueue_purges([PurgeItem("blog", "prefix", "2024/05")])
    provider = ScriptedProvider()
    await drain_for(manifest, provider).drain_once()
    assert provider.sent == [[PurgeItem("blog", "tag", "blog:2024/05")]]
    assert manifest.purge_queue().waiting == 0


async def test_wait_sent_is_true_once_the_purge_went_out(manifest: Manifest) -> None:
    provider = ScriptedProvider()
    drain = drain_for(manifest, provider)
    drain.start()
    try:
        manifest.enqueue_purges([url(1)])
        assert await drain.wait_sent([url(1)], within=10)
    finally:
        await drain.stop()
    assert provider.sent == [[url(1)]]


async def test_wait_sent_gives_up_waiting_but_the_purge_stays_queued(manifest: Manifest) -> None:
    provider = ScriptedProvider()
    provider.failures = [PurgeRetry("503 Service Unavailable")]
    drain = drain_for(manifest, provider)
    drain.start()
    try:
        manifest.enqueue_purges([url(1)])
        assert not await drain.wait_sent([url(1)], within=0.5)
    finally:
        await drain.stop()
    assert manifest.purge_queue().waiting == 1


async def test_two_drains_sharing_an_outbox_send_each_purge_once(tmp_path: Path) -> None:
    first = open_manifest(tmp_path / "shared.sqlite3")
    second = open_manifest(tmp_path / "shared.sqlite3")
    try:
        first.enqueue_purges([url(n) for n in range(200)])
        providers = [ScriptedProvider(per_request=7), ScriptedProvider(per_request=7)]
        drains = [
            PurgeDrain(store, {"blog": provider}, inline, give_up_after=3600, claim_limit=25)
            for store, provider in zip((first, second), providers, strict=True)
        ]

        async def empty(drain: PurgeDrain) -> None:
            while await drain.drain_once():
                pass

        await asyncio.gather(*(empty(drain) for drain in drains))
        sent = [item for provider in providers for batch in provider.sent for item in batch]
        assert sorted(sent, key=lambda i: i.value) == sorted(
            (url(n) for n in range(200)), key=lambda i: i.value
        )
        assert first.purge_queue().waiting == 0
    finally:
        first.close()
        second.close()


async def test_a_provider_that_breaks_leaves_its_entries_waiting_and_the_drain_going(
    manifest: Manifest,
) -> None:
    class Broken(ScriptedProvider):
        def prepare(self, items: list[PurgeItem]) -> list[list[PurgeItem]]:
            raise RuntimeError("a bug")

    manifest.enqueue_purges([url(1)])
    drain = drain_for(manifest, Broken())
    assert await drain.drain_once() == 1
    [entry] = manifest.purge_queue().entries
    assert entry.attempts == 1
    assert entry.last_error == "internal error: RuntimeError"


async def test_a_hanging_cdn_api_holds_back_its_own_site_only(tmp_path: Path) -> None:
    store = open_manifest(tmp_path / "two-sites.sqlite3")

    class Hanging(ScriptedProvider):
        async def send(self, batch: list[PurgeItem]) -> None:
            await asyncio.sleep(3600)

    shop = ScriptedProvider()
    drain = PurgeDrain(store, {"blog": Hanging(), "shop": shop}, inline, give_up_after=3600)
    drain.start()
    try:
        store.enqueue_purges([url(1)])
        shop_item = PurgeItem("shop", "url", "https://cdn.example.com/shop/a.jpg")
        store.enqueue_purges([shop_item])
        assert await drain.wait_sent([shop_item], within=10)
        assert shop.sent == [[shop_item]]
    finally:
        await drain.stop()
        # Stopping gave the hanging site's claim back: due again, no failure counted.
        [entry] = store.claim_purges(limit=10, lease=60)
        assert (entry.item, entry.attempts) == (url(1), 0)
        store.close()


async def test_a_round_past_half_its_lease_gives_the_rest_back_unsent(manifest: Manifest) -> None:
    manifest.enqueue_purges([url(n) for n in range(6)])
    provider = ScriptedProvider(per_request=2)
    ticks = iter(range(100))
    drain = PurgeDrain(
        manifest, {"blog": provider}, inline, give_up_after=3600, lease=4.0,
        clock=lambda: float(next(ticks)),
    )  # fmt: skip
    await drain.drain_once()
    sent = {item for batch in provider.sent for item in batch}
    assert 0 < len(sent) < 6
    waiting = manifest.purge_queue().entries
    assert {e.item for e in waiting} == {url(n) for n in range(6)} - sent
    assert {e.attempts for e in waiting} == {0}  # given back, not failed
    assert manifest.claim_purges(limit=10, lease=60)  # and due again at once


async def test_with_peers_a_purge_waits_until_they_have_forgotten_the_key(
    manifest: Manifest,
) -> None:
    manifest.enqueue_purges([url(1)])
    provider = ScriptedProvider()
    drain = PurgeDrain(manifest, {"blog": provider}, inline, give_up_after=3600, settle=0.6)
    started = time.monotonic()
    await drain.drain_once()
    assert provider.sent == [[url(1)]]
    assert time.monotonic() - started >= 0.5


async def test_an_older_purge_of_the_url_does_not_answer_a_newer_change(
    manifest: Manifest,
) -> None:
    provider = ScriptedProvider()
    drain = drain_for(manifest, provider)
    manifest.enqueue_purges([url(1)])
    older = manifest.claim_purges(limit=10, lease=60)  # being sent for an older change
    since = time.time()
    manifest.enqueue_purges([url(1)])  # the newer change's own entry
    waiting = asyncio.ensure_future(drain.wait_sent([url(1)], within=0.5, since=since))
    await asyncio.sleep(0)
    await drain._send_site("blog", older)  # the older entry goes out
    assert not waiting.done()  # not the newer change's purge
    assert await drain.drain_once() == 1
    assert await waiting

"""One contract for the manifest store, run on SQLite and on a real PostgreSQL.

Every method of ``offload.manifest.Manifest``: files, the purge outbox (written
in the change's own transaction, merged, claimed with leases, deferred, given
up), the changes feed, the background sync runs' records, the schema version
and the errors. A behaviour one backend has and the other lacks fails here.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from offload.manifest import (
    Manifest,
    ManifestError,
    ManifestRow,
    PurgeItem,
    SyncRunRecord,
    open_manifest,
)
from offload.manifest.base import GIVE_UPS_KEPT, HOST_STOPPED, SYNC_RUNS_KEPT
from offload.manifest.postgres import PostgresManifest
from offload.manifest.sqlite import SCHEMA_VERSION, SqliteManifest
from tests.postgres_server import PASSWORD, PostgresServer

SITE = "blog"
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def row(key: str, path: str | None = None, **fields: object) -> ManifestRow:
    values: dict[str, object] = {
        "site": SITE,
        "key": key,
        "path": path if path is not None else key,
        "version": None,
        "size": 10,
        "sha256": SHA,
        "etag": '"e"',
    }
    values.update(fields)
    return ManifestRow(**values)  # type: ignore[arg-type]


def url(key: str, site: str = SITE) -> PurgeItem:
    return PurgeItem(site, "url", f"https://cdn.example.com/{key}")


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "sqlite":
        return tmp_path / "manifest.sqlite3"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(location: str | Path) -> Iterator[Manifest]:
    opened = open_manifest(location)
    yield opened
    opened.close()


@contextlib.contextmanager
def another(location: str | Path) -> Iterator[Manifest]:
    """A second store on the same database: another host, or another process."""
    opened = open_manifest(location)
    try:
        yield opened
    finally:
        opened.close()


def execute(location: str | Path, sql: str) -> None:
    """Reach behind the store, as an operator's client would."""
    if isinstance(location, Path):
        with contextlib.closing(sqlite3.connect(location)) as connection:
            connection.execute(sql)
            connection.commit()
    else:
        with psycopg.connect(location, autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]


# -- opening ---------------------------------------------------------------------------


def test_open_manifest_picks_the_backend_by_location(tmp_path):
    assert isinstance(open_manifest(tmp_path / "m.sqlite3"), SqliteManifest)
    assert isinstance(open_manifest(str(tmp_path / "m.sqlite3")), SqliteManifest)
    for scheme in ("postgresql", "postgres", "PostgreSQL"):
        opened = open_manifest(f"{scheme}://u:secret@127.0.0.1:9/db")
        assert isinstance(opened, PostgresManifest)
        assert "secret" not in opened.location
        assert opened.location.endswith("u:****@127.0.0.1:9/db")


def test_only_a_postgres_store_says_other_hosts_share_it(tmp_path):
    assert not open_manifest(tmp_path / "m.sqlite3").shared
    assert open_manifest("postgresql://u@127.0.0.1:9/db").shared


def test_a_postgres_store_connects_only_when_first_used():
    opened = open_manifest("postgresql://u:secret@127.0.0.1:9/db")  # nothing listens on 9
    opened.close()  # never connected: nothing to report


# -- files -----------------------------------------------------------------------------


def test_recorded_rows_are_found_by_path_key_attachment_and_counted(store):
    store.record([row("k/a.jpg", "a.jpg", attachment_id="7"), row("k/b.jpg", "b.jpg", size=5)])
    assert store.key_for(SITE, "a.jpg") == "k/a.jpg"
    assert store.path_for(SITE, "k/b.jpg") == "b.jpg"
    assert [r.key for r in store.rows(SITE, attachment_id="7")] == ["k/a.jpg"]
    assert [r.key for r in store.rows(SITE, paths=["a.jpg", "b.jpg"])] == ["k/a.jpg", "k/b.jpg"]
    assert set(store.rows_by_key(SITE, ["k/a.jpg", "k/none.jpg"])) == {"k/a.jpg"}
    assert store.totals(SITE) == (2, 15)
    assert store.count(SITE) == 2
    assert store.count("other") == 0
    assert store.key_for("other", "a.jpg") is None


def test_a_row_keeps_every_field_and_is_stamped_when_recorded(store):
    before = time.time()
    store.record([row("a.jpg", version="v1", attachment_id="9", mtime=12.5)])
    (found,) = store.rows(SITE, paths=["a.jpg"])
    assert (found.version, found.attachment_id, found.mtime, found.sha256) == (
        "v1",
        "9",
        12.5,
        SHA,
    )
    assert before <= found.offloaded_at <= time.time()


def test_recording_a_key_again_replaces_its_row(store):
    store.record([row("a.jpg", size=1)])
    store.record([row("a.jpg", size=2)])
    assert store.totals(SITE) == (1, 2)


def test_the_newest_row_of_a_path_is_the_key_urls_go_to(store):
    store.record([row("v1/a.jpg", "a.jpg", offloaded_at=100.0)])
    store.record([row("v2/a.jpg", "a.jpg", offloaded_at=200.0)])
    assert store.key_for(SITE, "a.jpg") == "v2/a.jpg"
    assert len(store.rows(SITE, paths=["a.jpg"])) == 2


def test_remove_drops_the_keys_and_says_how_many_there_were(store):
    store.record([row("a.jpg"), row("b.jpg"), row("c.jpg")])
    assert store.remove(SITE, ["a.jpg", "b.jpg", "missing.jpg"]) == 2
    assert store.count(SITE) == 1
    assert store.remove(SITE, []) == 0


def test_replace_site_keeps_rows_written_after_the_listing_began(store):
    store.record([row("old.jpg", offloaded_at=100.0), row("new.jpg", offloaded_at=300.0)])
    store.record([ManifestRow("other", "x.jpg", "x.jpg", None, 1, SHA, "e")])
    assert store.replace_site(SITE, [row("listed.jpg", offloaded_at=150.0)], before=200.0) == 1
    kept = store.rows_by_key(SITE, ["old.jpg", "new.jpg", "listed.jpg"])
    assert set(kept) == {"new.jpg", "listed.jpg"}
    assert store.count("other") == 1
    store.replace_site(SITE, [])
    assert store.count(SITE) == 0


def test_rows_by_key_answers_many_keys(store):
    store.record([row(f"k/{i}.jpg") for i in range(6000)])
    found = store.rows_by_key(SITE, [f"k/{i}.jpg" for i in range(0, 6000, 2)])
    assert len(found) == 3000


# -- purge outbox: written with the change ----------------------------------------------


def test_record_and_remove_enqueue_their_purges(store):
    store.record([row("a.jpg")], purges=[url("a.jpg")])
    store.remove(SITE, ["a.jpg"], purges=[url("a.jpg", site="other")])
    queue = store.purge_queue()
    assert [e.item for e in queue.entries] == [url("a.jpg"), url("a.jpg", site="other")]
    assert queue.by_site == {SITE: 1, "other": 1}


def test_a_record_that_fails_enqueues_no_purge(store):
    with pytest.raises(ManifestError):
        store.record([row("a.jpg"), row("b.jpg", size=None)], purges=[url("a.jpg")])
    assert store.purge_queue().waiting == 0
    assert store.count(SITE) == 0


def test_an_item_waiting_unclaimed_is_merged_not_added_again(store):
    assert store.enqueue_purges([url("a.jpg"), url("a.jpg"), url("b.jpg")]) == 2
    assert store.enqueue_purges([url("a.jpg")]) == 0
    store.record([row("a.jpg")], purges=[url("a.jpg")])
    assert store.purge_queue().waiting == 2
    store.claim_purges(limit=10, lease=60)
    assert store.enqueue_purges([url("a.jpg")]) == 1  # the claimed one may be sent already
    assert store.purge_queue().waiting == 3


def test_a_purge_queued_for_later_waits_until_then(store):
    later = time.time() + 600
    assert store.enqueue_purges([url("a.jpg")], not_before=later) == 1
    assert store.claim_purges(limit=10, lease=60) == []
    [entry] = store.purge_queue().entries
    assert entry.next_at == pytest.approx(later)


def test_a_new_change_pulls_a_waiting_entry_forward_and_makes_it_young(store):
    store.enqueue_purges([url("a.jpg")])
    [old] = store.claim_purges(limit=10, lease=60)
    store.defer_purges([old.id], until=time.time() + 900, error="503")
    before = time.time()
    assert store.enqueue_purges([url("a.jpg")]) == 0  # merged, not added
    [entry] = store.claim_purges(limit=10, lease=60)  # due now, not in 15 minutes
    assert entry.id == old.id
    assert entry.attempts == 1
    assert entry.created_at >= before  # not given up for the older change's age
    # A purge queued for later never delays one that is due now.
    store.release_purges([entry.id])
    store.enqueue_purges([url("a.jpg")], not_before=time.time() + 600)
    assert [e.id for e in store.claim_purges(limit=10, lease=60)] == [old.id]


def test_released_claims_are_due_again_without_a_failure(store):
    store.enqueue_purges([url("a.jpg"), url("b.jpg")])
    claimed = store.claim_purges(limit=10, lease=600)
    assert store.claim_purges(limit=10, lease=600) == []
    store.release_purges([e.id for e in claimed])
    again = store.claim_purges(limit=10, lease=600)
    assert [(e.id, e.attempts) for e in again] == [(e.id, 0) for e in claimed]


def test_every_purge_kind_is_kept(store):
    items = [
        PurgeItem(SITE, "url", "https://cdn.example.com/a.jpg"),
        PurgeItem(SITE, "tag", "blog-2024"),
        PurgeItem(SITE, "prefix", "wp-content/uploads/2024/"),
        PurgeItem(SITE, "everything", ""),
    ]
    store.enqueue_purges(items)
    assert [e.item for e in store.claim_purges(limit=10, lease=60)] == items


# -- purge outbox: claims, leases, defer, give up ---------------------------------------


def test_claims_take_the_oldest_due_entries_and_hold_them_for_the_lease(store):
    store.enqueue_purges([url(f"{i}.jpg") for i in range(5)])
    first = store.claim_purges(limit=3, lease=60)
    assert [e.item for e in first] == [url(f"{i}.jpg") for i in range(3)]
    assert all(e.attempts == 0 and e.last_error is None for e in first)
    second = store.claim_purges(limit=10, lease=60)
    assert [e.item for e in second] == [url("3.jpg"), url("4.jpg")]
    assert store.claim_purges(limit=10, lease=60) == []
    queue = store.purge_queue()
    assert (queue.waiting, queue.claimed) == (5, 5)


def test_an_entry_whose_lease_ended_is_claimed_again(store):
    store.enqueue_purges([url("a.jpg")])
    (held,) = store.claim_purges(limit=1, lease=0)  # its host died at once
    (again,) = store.claim_purges(limit=1, lease=60)
    assert again.id == held.id


def test_claims_can_be_limited_to_some_sites(store):
    store.enqueue_purges([url("a.jpg"), url("b.jpg", site="shop"), url("c.jpg", site="news")])
    claimed = store.claim_purges(limit=10, lease=60, sites={"shop", "news"})
    assert {e.item.site for e in claimed} == {"shop", "news"}
    assert [e.item for e in store.claim_purges(limit=10, lease=60)] == [url("a.jpg")]


def test_completed_entries_are_gone(store):
    store.enqueue_purges([url("a.jpg"), url("b.jpg")])
    claimed = store.claim_purges(limit=10, lease=60)
    store.complete_purges([claimed[0].id])
    queue = store.purge_queue()
    assert [e.item for e in queue.entries] == [url("b.jpg")]
    store.complete_purges([])


def test_a_deferred_entry_waits_with_its_error_then_is_claimed_with_its_attempts(store):
    store.enqueue_purges([url("a.jpg"), url("b.jpg")])
    a, b = store.claim_purges(limit=10, lease=60)
    now = time.time()
    store.defer_purges([a.id], until=now + 3600, error="429 Too Many Requests")
    store.defer_purges([b.id], until=now - 1, error="503")
    (due,) = store.claim_purges(limit=10, lease=60)
    assert (due.id, due.attempts, due.last_error) == (b.id, 1, "503")
    queue = store.purge_queue()
    assert [e.id for e in queue.entries] == [b.id, a.id]  # by next_at
    assert queue.entries[1].next_at == pytest.approx(now + 3600)
    assert (queue.waiting, queue.claimed) == (2, 1)


def test_given_up_entries_leave_the_queue_and_are_counted_newest_first(store):
    store.enqueue_purges([url("a.jpg"), url("b.jpg"), url("c.jpg", site="shop")])
    a, b, c = store.claim_purges(limit=10, lease=60)
    store.defer_purges([a.id], until=0, error="first")
    store.give_up_purges([a.id], error="401 Unauthorized")
    store.give_up_purges([b.id, c.id], error="403 Forbidden")
    queue = store.purge_queue()
    assert (queue.waiting, queue.given_up) == (0, 3)
    assert [g.item for g in queue.recent_give_ups] == [
        url("c.jpg", site="shop"),
        url("b.jpg"),
        url("a.jpg"),
    ]
    newest_a = queue.recent_give_ups[-1]
    assert (newest_a.attempts, newest_a.error) == (2, "401 Unauthorized")
    assert newest_a.created_at <= newest_a.gave_up_at
    shop = store.purge_queue(site="shop")
    assert (shop.given_up, [g.item.site for g in shop.recent_give_ups]) == (1, ["shop"])


def test_give_ups_keep_the_newest_thousand_rows_and_the_whole_count(store):
    total = GIVE_UPS_KEPT + 5
    store.enqueue_purges([url(f"{i}.jpg") for i in range(total)])
    ids = [e.id for e in store.claim_purges(limit=total, lease=60)]
    store.give_up_purges(ids[:5], error="early")
    store.give_up_purges(ids[5:], error="late")
    queue = store.purge_queue(limit=2 * total)
    assert queue.given_up == total
    assert len(queue.recent_give_ups) == GIVE_UPS_KEPT
    assert {g.error for g in queue.recent_give_ups} == {"late"}


def test_the_queue_shows_counts_oldest_and_a_limited_list_per_site(store):
    assert store.purge_queue() == store.purge_queue(site="none")
    empty = store.purge_queue()
    assert (empty.waiting, empty.claimed, empty.oldest, empty.by_site) == (0, 0, None, {})
    before = time.time()
    store.enqueue_purges([url(f"{i}.jpg") for i in range(4)] + [url("x.jpg", site="shop")])
    queue = store.purge_queue(limit=2)
    assert (queue.waiting, len(queue.entries), queue.by_site) == (5, 2, {SITE: 4, "shop": 1})
    assert queue.oldest is not None
    assert before <= queue.oldest <= time.time()
    shop = store.purge_queue(site="shop")
    assert (shop.waiting, [e.item for e in shop.entries]) == (1, [url("x.jpg", site="shop")])


# -- changes feed ----------------------------------------------------------------------


def test_the_changes_feed_lists_recorded_and_removed_keys_after_a_cursor(store):
    head, changes = store.changes_after(None)
    assert changes == []
    store.record([row("a.jpg"), row("b.jpg")])
    store.remove(SITE, ["a.jpg"])
    store.replace_site(SITE, [row("c.jpg")])  # a reindex changes nothing in the bucket
    new_head, changes = store.changes_after(head)
    assert sorted(changes[:2]) == [(SITE, "a.jpg"), (SITE, "b.jpg")]
    assert changes[2:] == [(SITE, "a.jpg")]
    assert new_head > head
    assert store.changes_after(new_head) == (new_head, [])
    assert store.changes_after(None) == (new_head, [])


def test_another_host_sees_the_changes_of_this_one(location, store):
    with another(location) as other:
        head, _ = other.changes_after(None)
        store.record([row("a.jpg")])
        assert other.changes_after(head)[1] == [(SITE, "a.jpg")]


# -- sync runs -------------------------------------------------------------------------


def run(run_id: str, *, site: str = SITE, heartbeat: float | None = None, **fields: object):
    now = time.time()
    values: dict[str, object] = {
        "id": run_id,
        "site": site,
        "host": "web-1",
        "status": "running",
        "started": now,
        "finished": None,
        "heartbeat": now if heartbeat is None else heartbeat,
        "exit_code": None,
        "counts": {},
        "messages": [],
    }
    values.update(fields)
    return SyncRunRecord(**values)  # type: ignore[arg-type]


def test_a_sync_run_starts_once_per_site_while_it_is_alive(store):
    first, started = store.start_sync_run(run("r1"), stale_after=60)
    assert (first.id, started) == ("r1", True)
    holder, started = store.start_sync_run(run("r2"), stale_after=60)
    assert (holder.id, started) == ("r1", False)
    _, started = store.start_sync_run(run("r3", site="shop"), stale_after=60)
    assert started
    assert store.get_sync_run(SITE, "r2") is None


def test_a_stale_running_run_is_marked_failed_and_taken_over(store):
    store.start_sync_run(run("r1", heartbeat=time.time() - 600), stale_after=60)
    taken, started = store.start_sync_run(run("r2", host="web-2"), stale_after=60)
    assert (taken.id, taken.host, started) == ("r2", "web-2", True)
    stopped = store.get_sync_run(SITE, "r1")
    assert stopped is not None
    assert (stopped.status, stopped.messages[-1]) == ("failed", HOST_STOPPED)
    assert stopped.finished is not None


def test_sync_run_progress_and_finish_are_stored(store):
    record, _ = store.start_sync_run(run("r1"), stale_after=60)
    record.counts = {"transferred": 3, "bytes": 300, "deleted": 0, "failed": 1, "warnings": 0}
    record.messages = [f"failed: {i}" for i in range(60)]
    record.heartbeat += 5
    store.update_sync_run(record)
    found = store.get_sync_run(SITE, "r1")
    assert found is not None
    assert found.counts == record.counts
    assert found.messages == record.messages[-50:]
    assert found.heartbeat == pytest.approx(record.heartbeat)
    record.status, record.finished, record.exit_code = "succeeded", time.time(), 0
    store.update_sync_run(record)
    done = store.get_sync_run(SITE, "r1")
    assert done is not None
    assert (done.status, done.exit_code) == ("succeeded", 0)
    assert store.start_sync_run(run("r2"), stale_after=60)[1]


def test_recent_sync_runs_are_newest_first_and_finished_ones_are_pruned(store):
    base = time.time() - 1000
    for i in range(SYNC_RUNS_KEPT + 3):
        record = run(f"r{i:02}", started=base + i, heartbeat=base + i)
        store.start_sync_run(record, stale_after=10_000)
        record.status, record.finished, record.exit_code = "failed", base + i + 0.5, 1
        store.update_sync_run(record)
    store.start_sync_run(run("shop-1", site="shop"), stale_after=60)
    recent = store.recent_sync_runs(limit=100)
    assert recent[0].id == "shop-1"
    mine = [r.id for r in recent if r.site == SITE]
    assert mine == [f"r{i:02}" for i in reversed(range(3, SYNC_RUNS_KEPT + 3))]
    assert len(store.recent_sync_runs(limit=2)) == 2


# -- schema ----------------------------------------------------------------------------


def test_the_schema_version_is_recorded(location, store):
    store.count(SITE)
    if isinstance(location, Path):
        with contextlib.closing(sqlite3.connect(location)) as connection:
            versions = [v for (v,) in connection.execute("SELECT version FROM schema_version")]
    else:
        with psycopg.connect(location) as connection:
            versions = [v for (v,) in connection.execute("SELECT version FROM schema_version")]
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))


def test_a_database_newer_than_this_offload_is_refused_naming_both_versions(location, store):
    store.count(SITE)
    store.close()
    execute(location, "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
    with another(location) as newer, pytest.raises(ManifestError) as caught:
        newer.count(SITE)
    message = str(caught.value)
    assert "version 99" in message
    assert f"({SCHEMA_VERSION})" in message
    assert PASSWORD not in message


def test_two_stores_opening_one_new_database_migrate_it_once(location):
    with another(location) as first, another(location) as second:
        first.record([row("a.jpg")])
        second.record([row("b.jpg")])
        assert first.count(SITE) == second.count(SITE) == 2


# -- errors ----------------------------------------------------------------------------


def test_a_server_that_is_down_is_a_manifest_error_without_the_password(
    postgres_server: PostgresServer,
):
    with socket_closed_port() as port:
        down = open_manifest(f"postgresql://offload:{PASSWORD}@127.0.0.1:{port}/db")
        with pytest.raises(ManifestError) as caught:
            down.count(SITE)
    message = str(caught.value)
    assert PASSWORD not in message
    assert "Traceback" not in message
    assert f"offload:****@127.0.0.1:{port}/db" in message
    down.close()


def test_a_refused_login_is_a_manifest_error_without_the_password(postgres_server):
    wrong = "not-the-password-31337"
    refused = open_manifest(postgres_server.url(password=wrong))
    with pytest.raises(ManifestError) as caught:
        refused.record([row("a.jpg")])
    message = str(caught.value)
    assert wrong not in message
    assert PASSWORD not in message
    assert "password authentication failed" in message
    refused.close()


def test_a_missing_database_is_a_manifest_error_naming_it(postgres_server):
    missing = open_manifest(postgres_server.url("no_such_db"))
    with pytest.raises(ManifestError, match="no_such_db"):
        missing.count(SITE)
    missing.close()


def test_a_password_in_the_query_string_is_masked_too(postgres_server):
    location = f"postgresql://offload@127.0.0.1:{postgres_server.port}/db?password=qs-secret-99"
    assert "qs-secret-99" not in open_manifest(location).location


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listened, so no one takes it)."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])

"""The replay cache: a signed webhook request is taken once, by any worker of the host."""

from __future__ import annotations

from offload.server.replays import SWEEP_EVERY, ReplayCache


def test_a_key_is_taken_once_until_it_expires(tmp_path):
    cache = ReplayCache(tmp_path / "replays.sqlite3")
    assert cache.first_use("blog sha256=ab", until=1000.0, now=700.0)
    assert not cache.first_use("blog sha256=ab", until=1000.0, now=701.0)
    assert cache.first_use("shop sha256=ab", until=1000.0, now=701.0)  # another site's
    assert cache.first_use("blog sha256=ab", until=1400.0, now=1001.0)  # expired: free again
    cache.close()


def test_two_workers_sharing_the_file_each_see_what_the_other_took(tmp_path):
    path = tmp_path / "replays.sqlite3"
    first, second = ReplayCache(path), ReplayCache(path)
    assert first.first_use("blog sha256=cd", until=1000.0, now=700.0)
    assert not second.first_use("blog sha256=cd", until=1000.0, now=700.0)
    assert second.first_use("blog sha256=ef", until=1000.0, now=700.0)
    assert not first.first_use("blog sha256=ef", until=1000.0, now=700.0)
    first.close()
    second.close()


def test_expired_rows_are_swept_so_the_file_stays_small(tmp_path):
    cache = ReplayCache(tmp_path / "replays.sqlite3")
    for number in range(SWEEP_EVERY - 1):
        assert cache.first_use(f"blog old-{number}", until=100.0, now=50.0)
    assert cache.first_use("blog new", until=1000.0, now=500.0)  # the sweep runs here
    connection = cache._open()
    [(rows,)] = connection.execute("SELECT count(*) FROM taken").fetchall()
    assert rows == 1
    cache.close()


def test_a_peek_records_nothing_and_sees_only_live_keys(tmp_path):
    cache = ReplayCache(tmp_path / "replays.sqlite3")
    assert not cache.taken("blog sha256=ab", now=700.0)
    assert cache.first_use("blog sha256=ab", until=1000.0, now=700.0)  # the peek took nothing
    assert cache.taken("blog sha256=ab", now=999.0)
    assert not cache.taken("blog sha256=ab", now=1000.0)
    cache.close()

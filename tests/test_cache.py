"""OriginCache and SingleFlight: freshness on an injected clock, bounds, stale-if-error, sharing."""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from offload.server.origin_cache import OriginCache
from offload.storage import ObjectInfo, StorageError, StorageUnavailable
from offload.storage.singleflight import SingleFlight

SITE, KEY = "blog", "media/photo.jpg"
META_TTL, NEGATIVE_TTL, STALE_IF_ERROR = 10.0, 60.0, 300.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Loader:
    """A storage stand-in: counts its calls, returns or raises what the test says.

    With ``gate`` set, every call waits for it, so several callers can pile up.
    """

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.calls = 0
        self.finished = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        self.finished += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def info(key: str = KEY, size: int = 3, etag: str = "e1") -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=etag, last_modified=datetime(2024, 5, 1, tzinfo=UTC))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorded() -> list[tuple[str, bool]]:
    return []


def make_cache(
    clock: Clock, recorded: list[tuple[str, bool]] | None = None, **options: Any
) -> OriginCache:
    settings = {
        "meta_entries": 100,
        "meta_ttl": META_TTL,
        "negative_entries": 100,
        "body_bytes": 1000,
        "body_max_object": 400,
        **options,
    }
    record = None if recorded is None else (lambda cache, hit: recorded.append((cache, hit)))
    return OriginCache(**settings, record=record, clock=clock)


async def lookup(
    cache: OriginCache, load: Loader, *, key: str = KEY, site: str = SITE, **kw: Any
) -> ObjectInfo | None:
    options = {"negative_ttl": NEGATIVE_TTL, "stale_if_error": STALE_IF_ERROR, **kw}
    return await cache.metadata(site, key, load, **options)


# -- metadata freshness ---------------------------------------------------------------


@pytest.mark.parametrize(("later", "loads"), [(0, 1), (9.99, 1), (10, 2), (11, 2)])
async def test_metadata_is_served_from_memory_while_fresh(clock, later, loads):
    cache, load = make_cache(clock), Loader(info())
    assert await lookup(cache, load) == info()
    clock.advance(later)
    assert await lookup(cache, load) == info()
    assert load.calls == loads


async def test_each_site_and_key_has_its_own_entry(clock):
    cache, load = make_cache(clock), Loader(info())
    for site, key in [("blog", "a.jpg"), ("blog", "b.jpg"), ("shop", "a.jpg"), ("blog", "a.jpg")]:
        await lookup(cache, load, site=site, key=key)
    assert load.calls == 3


async def test_a_reload_picks_up_a_changed_object(clock):
    cache, load = make_cache(clock), Loader(info(etag="e1"))
    await lookup(cache, load)
    load.result = info(etag="e2")
    clock.advance(META_TTL)
    assert (await lookup(cache, load)).etag == "e2"


async def test_forget_drops_what_is_known_of_a_key(clock):
    cache, load = make_cache(clock), Loader(info())
    await lookup(cache, load)
    cache.forget(SITE, KEY)
    await lookup(cache, load)
    load.result = None
    cache.forget(SITE, KEY)
    assert await lookup(cache, load) is None
    load.result = info()
    cache.forget(SITE, KEY)
    assert await lookup(cache, load) == info()
    assert load.calls == 4


async def test_metadata_entries_are_bounded(clock):
    cache, load = make_cache(clock, meta_entries=2), Loader()
    for index in range(5):
        load.result = info(key=f"k{index}")
        await lookup(cache, load, key=f"k{index}")
    assert cache.stats()["meta_entries"] == 2
    load.result = info(key="k0")
    await lookup(cache, load, key="k0")  # evicted: loaded again
    assert load.calls == 6


# -- the negative cache -------------------------------------------------------------------


@pytest.mark.parametrize(("later", "loads"), [(0, 1), (59.9, 1), (60, 2)])
async def test_a_missing_key_is_remembered_for_the_negative_ttl(clock, later, loads):
    cache, load = make_cache(clock), Loader(None)
    assert await lookup(cache, load) is None
    load.result = info()  # uploaded meanwhile
    clock.advance(later)
    expected = None if loads == 1 else info()
    assert await lookup(cache, load) == expected
    assert load.calls == loads


async def test_a_negative_ttl_of_zero_remembers_nothing(clock):
    cache, load = make_cache(clock), Loader(None)
    await lookup(cache, load, negative_ttl=0)
    await lookup(cache, load, negative_ttl=0)
    assert load.calls == 2
    assert cache.stats()["negative_entries"] == 0


async def test_negative_entries_are_bounded(clock):
    cache, load = make_cache(clock, negative_entries=3), Loader(None)
    for index in range(10):
        await lookup(cache, load, key=f"missing-{index}")
    assert cache.stats()["negative_entries"] == 3


# -- stale-if-error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("later", "served"),
    [
        pytest.param(META_TTL, True, id="just-stale"),
        pytest.param(META_TTL + STALE_IF_ERROR - 0.01, True, id="end-of-window"),
        pytest.param(META_TTL + STALE_IF_ERROR, False, id="past-window"),
    ],
)
async def test_stale_metadata_rides_out_an_outage_within_stale_if_error(clock, later, served):
    cache, load = make_cache(clock), Loader(info())
    await lookup(cache, load)
    load.result = StorageUnavailable("down")
    clock.advance(later)
    if served:
        assert await lookup(cache, load) == info()
    else:
        with pytest.raises(StorageUnavailable):
            await lookup(cache, load)
    assert load.calls == 2  # storage was asked first


async def test_a_stale_if_error_of_zero_serves_nothing_stale(clock):
    cache, load = make_cache(clock), Loader(info())
    await lookup(cache, load, stale_if_error=0)
    load.result = StorageUnavailable("down")
    clock.advance(META_TTL)
    with pytest.raises(StorageUnavailable):
        await lookup(cache, load, stale_if_error=0)


async def test_an_outage_with_nothing_cached_is_raised(clock):
    cache, load = make_cache(clock), Loader(StorageUnavailable("down"))
    with pytest.raises(StorageUnavailable):
        await lookup(cache, load)


async def test_a_storage_error_other_than_unavailability_is_never_hidden(clock):
    cache, load = make_cache(clock), Loader(info())
    await lookup(cache, load)
    load.result = StorageError("access denied")
    clock.advance(META_TTL)
    with pytest.raises(StorageError):
        await lookup(cache, load)


async def test_storage_coming_back_refreshes_the_entry(clock):
    cache, load = make_cache(clock), Loader(info(etag="e1"))
    await lookup(cache, load)
    clock.advance(META_TTL)
    load.result = StorageUnavailable("down")
    assert (await lookup(cache, load)).etag == "e1"
    load.result = info(etag="e2")
    assert (await lookup(cache, load)).etag == "e2"
    load.result = StorageUnavailable("down again")
    assert (await lookup(cache, load)).etag == "e2"  # fresh: storage is not asked
    assert load.calls == 3


# -- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body_bytes", "body_max_object", "size", "fits"),
    [
        (1000, 400, 400, True),
        (1000, 400, 401, False),
        (1000, 400, 0, True),
        (1000, 5000, 1000, True),  # no object larger than the whole cache
        (1000, 5000, 1001, False),
        (0, 400, 1, False),
    ],
)
def test_only_objects_up_to_body_max_object_fit_in_memory(
    clock, body_bytes, body_max_object, size, fits
):
    cache = make_cache(clock, body_bytes=body_bytes, body_max_object=body_max_object)
    assert cache.fits_in_memory(info(size=size)) is fits


async def test_a_small_body_is_read_once(clock):
    cache, load = make_cache(clock), Loader(b"abc")
    assert await cache.body(SITE, info(), load) == b"abc"
    assert await cache.body(SITE, info(), load) == b"abc"
    assert load.calls == 1


async def test_a_new_etag_is_a_new_body(clock):
    cache, load = make_cache(clock), Loader(b"abc")
    await cache.body(SITE, info(etag="e1"), load)
    load.result = b"xyz"
    assert await cache.body(SITE, info(etag="e2"), load) == b"xyz"
    assert await cache.body(SITE, info(etag="e1"), load) == b"abc"
    assert load.calls == 2


async def test_the_body_cache_is_bounded_in_total_bytes(clock):
    cache, load = make_cache(clock, body_bytes=1000, body_max_object=400), Loader()
    for index in range(3):
        load.result = bytes([index]) * 400
        await cache.body(SITE, info(key=f"k{index}", size=400), load)
    assert cache.stats()["body_bytes"] == 800  # the oldest made room
    load.result = bytes([0]) * 400
    await cache.body(SITE, info(key="k0", size=400), load)
    assert load.calls == 4


async def test_a_body_shorter_than_its_object_is_not_kept(clock):
    cache, load = make_cache(clock), Loader(b"ab")
    assert await cache.body(SITE, info(size=3), load) == b"ab"
    await cache.body(SITE, info(size=3), load)
    assert load.calls == 2
    assert cache.stats()["body_bytes"] == 0


async def test_forget_body_drops_one_version(clock):
    cache, load = make_cache(clock), Loader(b"abc")
    await cache.body(SITE, info(), load)
    cache.forget_body(SITE, info())
    await cache.body(SITE, info(), load)
    assert load.calls == 2


async def test_every_lookup_is_recorded_as_a_hit_or_a_miss(clock, recorded):
    cache = make_cache(clock, recorded)
    await lookup(cache, Loader(info()))
    await lookup(cache, Loader(info()))
    await lookup(cache, Loader(None), key="missing")
    await lookup(cache, Loader(None), key="missing")
    await cache.body(SITE, info(), Loader(b"abc"))
    await cache.body(SITE, info(), Loader(b"abc"))
    assert recorded == [
        ("meta", False),
        ("meta", True),
        ("meta", False),
        ("negative", True),
        ("body", False),
        ("body", True),
    ]


async def test_concurrent_misses_on_one_key_make_one_load(clock):
    cache = make_cache(clock)
    meta, body = Loader(info()), Loader(b"abc")
    meta.gate, body.gate = asyncio.Event(), asyncio.Event()
    lookups = [asyncio.create_task(lookup(cache, meta)) for _ in range(10)]
    bodies = [asyncio.create_task(cache.body(SITE, info(), body)) for _ in range(10)]
    await asyncio.sleep(0)
    meta.gate.set()
    body.gate.set()
    assert await asyncio.gather(*lookups) == [info()] * 10
    assert await asyncio.gather(*bodies) == [b"abc"] * 10
    assert (meta.calls, body.calls) == (1, 1)
    assert cache.stats()["in_flight"] == 0


# -- SingleFlight ----------------------------------------------------------------------


async def test_concurrent_runs_for_one_key_share_one_load():
    flight, load = SingleFlight(), Loader("value")
    load.gate = asyncio.Event()
    runs = [asyncio.create_task(flight.run("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    assert len(flight) == 1
    load.gate.set()
    assert await asyncio.gather(*runs) == ["value"] * 20
    assert load.calls == 1
    assert len(flight) == 0


async def test_different_keys_load_separately():
    flight, load = SingleFlight(), Loader("value")
    load.gate = asyncio.Event()
    runs = [asyncio.create_task(flight.run(key, load)) for key in ("a", "b", "a", "b")]
    await asyncio.sleep(0)
    load.gate.set()
    await asyncio.gather(*runs)
    assert load.calls == 2


async def test_a_finished_load_is_not_reused():
    flight, load = SingleFlight(), Loader("value")
    await flight.run("k", load)
    await flight.run("k", load)
    assert load.calls == 2


async def test_an_error_reaches_every_waiter_and_the_next_run_tries_again():
    flight, load = SingleFlight(), Loader(StorageUnavailable("down"))
    load.gate = asyncio.Event()
    runs = [asyncio.create_task(flight.run("k", load)) for _ in range(5)]
    await asyncio.sleep(0)
    load.gate.set()
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(result, StorageUnavailable) for result in results)
    load.result, load.gate = "value", None
    assert await flight.run("k", load) == "value"
    assert load.calls == 2


async def test_a_cancelled_waiter_does_not_cancel_the_load_the_others_wait_for():
    flight, load = SingleFlight(), Loader("value")
    load.gate = asyncio.Event()
    leaving = asyncio.create_task(flight.run("k", load))
    staying = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    load.gate.set()
    assert await staying == "value"
    assert (load.calls, load.finished) == (1, 1)


async def test_the_load_runs_to_the_end_when_its_only_waiter_is_cancelled():
    flight, load = SingleFlight(), Loader("value")
    load.gate = asyncio.Event()
    leaving = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert len(flight) == 1  # still loading: a new caller joins it
    joining = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    load.gate.set()
    assert await joining == "value"
    assert (load.calls, load.finished) == (1, 1)
    assert len(flight) == 0


async def test_a_failed_load_nobody_waits_for_is_not_reported_as_lost(caplog):
    flight, load = SingleFlight(), Loader(StorageUnavailable("down"))
    load.gate = asyncio.Event()
    leaving = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        load.gate.set()
        for _ in range(5):  # the load ends, then its done callback runs
            await asyncio.sleep(0)
        assert len(flight) == 0
        gc.collect()
    assert "never retrieved" not in caplog.text


@pytest.mark.parametrize(
    ("options", "found"),
    [({"meta_entries": 0}, info()), ({"negative_entries": 0}, None)],
)
async def test_a_cache_sized_zero_keeps_nothing(clock, options, found):
    cache, load = make_cache(clock, **options), Loader(found)
    await lookup(cache, load)
    await lookup(cache, load)
    assert load.calls == 2


async def test_a_body_cache_sized_zero_keeps_no_body(clock):
    cache, load = make_cache(clock, body_bytes=0, body_max_object=0), Loader(b"abc")
    assert not cache.fits_in_memory(info())
    assert await cache.body(SITE, info(), load) == b"abc"
    assert await cache.body(SITE, info(), load) == b"abc"
    assert load.calls == 2

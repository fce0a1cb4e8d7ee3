"""One hung storage stalls only its own site: pools, origin deadlines, health, timeouts.

A storage "hangs" here the way boto3 does against a frozen bucket: its calls
block a thread of its pool until the test lets them go. Answers that must
come fast are asked with a client timeout, so a hang fails the test rather
than slowing it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from offload.config.kinds import Secret
from offload.config.settings import Settings, Site
from offload.config.sites import site_s3_config
from offload.media.payloads import Attachment
from offload.server import app as app_module
from offload.server.app import create_app
from offload.server.appkeys import EXECUTOR, OFFLOADERS, POOLS, STORAGES
from offload.server.health import HEALTH_WITHIN
from offload.server.pools import StoragePool
from offload.storage import LocalStorage, ObjectInfo, StorageUnavailable, make_s3_client
from offload.storage.s3config import DEFAULTS, S3Config
from tests.helpers import ADMIN_TOKEN

OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

#: The bound on answers that must not wait for a hung storage.
FAST = aiohttp.ClientTimeout(total=1.0)
#: The bound on answers that wait for one storage deadline (set to DEADLINE below).
DEADLINE = 0.3
SOON = aiohttp.ClientTimeout(total=3.0)


class Hanging(LocalStorage):
    """A folder whose calls, once ``freeze()`` is called, block a pool thread until ``thaw()``."""

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.gate = threading.Event()
        self.gate.set()
        self.calls = {"head": 0, "check": 0}

    def freeze(self) -> None:
        self.gate.clear()

    def thaw(self) -> None:
        self.gate.set()

    async def head(self, key: str) -> ObjectInfo | None:
        self.calls["head"] += 1
        await self.run(self.gate.wait)
        return await super().head(key)

    async def check(self) -> None:
        self.calls["check"] += 1
        await self.run(self.gate.wait)
        await super().check()


@pytest.fixture
def hanging(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Hanging]]:
    """Sites named ``hung*`` open as a ``Hanging`` folder, on the pool the app gives them."""
    opened: dict[str, Hanging] = {}
    real = app_module.open_site_storage

    def open_site_storage(settings: Settings, site: Site, executor: Any) -> Any:
        if not site.name.startswith("hung"):
            return real(settings, site, executor)
        storage = opened[site.name] = Hanging(
            Path(site.storage.removeprefix("file://")), executor=executor
        )
        return storage

    monkeypatch.setattr(app_module, "open_site_storage", open_site_storage)
    yield opened
    for storage in opened.values():
        storage.thaw()


def two_sites(tmp_path: Path, **settings: Any) -> Settings:
    sites = {}
    for name in ("hung", "local"):
        root = tmp_path / name
        (root / "media").mkdir(parents=True)
        (root / "media" / "a.txt").write_bytes(b"a of " + name.encode())
        (root / "media" / "b.txt").write_bytes(b"b of " + name.encode())
        sites[name] = Site(name=name, storage=root.as_uri(), hostnames=(f"{name}.test",))
    options = {
        "storage_threads": 2,
        "storage_timeout": 5.0,
        "storage_deadline": DEADLINE,
        "meta_cache_ttl": 0.05,
        "manifest": tmp_path / "manifest.sqlite3",
        "admin_token": Secret(ADMIN_TOKEN),
        **settings,
    }
    return Settings(**options, sites=sites)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, hanging: dict[str, Hanging]) -> Any:
    return await aiohttp_client(create_app(two_sites(tmp_path)))


async def fill_threads(storage: Hanging, threads: int) -> list[asyncio.Future[Any]]:
    """Hold every thread of the storage's pool, as calls to a frozen bucket do."""
    storage.freeze()
    held = [asyncio.ensure_future(storage.run(storage.gate.wait)) for _ in range(threads)]
    await asyncio.sleep(0.05)
    return held


# -- each storage its own pool ---------------------------------------------------------


async def test_a_site_whose_storage_threads_are_all_stuck_leaves_the_other_site_answering(
    client: Any, hanging: dict[str, Hanging]
) -> None:
    held = await fill_threads(hanging["hung"], threads=2)
    response = await client.get("/media/a.txt", headers={"Host": "local.test"}, timeout=FAST)
    assert (response.status, await response.read()) == (200, b"a of local")
    hanging["hung"].thaw()
    await asyncio.gather(*held)


async def test_a_healthy_sites_manifest_and_file_calls_do_not_wait_behind_a_hung_site(
    client: Any, hanging: dict[str, Hanging]
) -> None:
    held = await fill_threads(hanging["hung"], threads=2)
    offloader = client.app[OFFLOADERS]["local"]
    async with asyncio.timeout(1.0):
        outcome = await offloader.delete(Attachment(("2024/05/a.jpg",), attachment_id="7"))
    assert outcome.items == []  # the manifest was asked, and knows of none
    hanging["hung"].thaw()
    await asyncio.gather(*held)


async def test_each_site_runs_its_storage_in_a_pool_of_its_own(client: Any) -> None:
    pools, storages = client.app[POOLS], client.app[STORAGES]
    assert set(pools) == {"hung", "local"}
    assert pools["hung"] is not pools["local"]
    assert all(client.app[EXECUTOR] is not pool for pool in pools.values())  # work of no site
    names = {
        name: await storages[name].run(lambda: threading.current_thread().name) for name in pools
    }
    assert names["hung"].startswith("offload-hung")
    assert names["local"].startswith("offload-local")


# -- a hang is an error: stale-if-error or a fast 503 ------------------------------------


async def test_a_hung_storage_gives_the_stale_copy_of_a_cached_key(
    client: Any, hanging: dict[str, Hanging]
) -> None:
    first = await client.get("/media/a.txt", headers={"Host": "hung.test"})
    assert (first.status, await first.read()) == (200, b"a of hung")
    hanging["hung"].freeze()
    await asyncio.sleep(0.1)  # past meta_cache_ttl: the next answer asks storage
    stale = await client.get("/media/a.txt", headers={"Host": "hung.test"}, timeout=SOON)
    assert (stale.status, await stale.read()) == (200, b"a of hung")
    assert stale.headers["ETag"] == first.headers["ETag"]


async def test_a_hung_storage_gives_a_503_with_retry_after_for_an_uncached_key(
    client: Any, hanging: dict[str, Hanging]
) -> None:
    hanging["hung"].freeze()
    response = await client.get("/media/b.txt", headers={"Host": "hung.test"}, timeout=SOON)
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"


async def test_once_every_thread_of_a_storage_is_stuck_its_requests_are_refused_without_asking_it(
    client: Any, hanging: dict[str, Hanging]
) -> None:
    storage = hanging["hung"]
    storage.freeze()
    for key in ("x1", "x2"):  # two requests time out, each holding one of the two threads
        response = await client.get(f"/media/{key}", headers={"Host": "hung.test"}, timeout=SOON)
        assert response.status == 503
    asked = storage.calls["head"]
    refused = await client.get("/media/x3", headers={"Host": "hung.test"}, timeout=SOON)
    assert refused.status == 503
    assert storage.calls["head"] == asked  # not queued behind the stuck threads
    storage.thaw()
    await asyncio.sleep(0.05)
    again = await client.get("/media/a.txt", headers={"Host": "hung.test"}, timeout=SOON)
    assert again.status == 200  # a finished call ends the refusals


# -- health ----------------------------------------------------------------------------


async def test_health_answers_within_a_second_while_a_storage_hangs(
    client: Any, hanging: dict[str, Hanging]
) -> None:
    hanging["hung"].freeze()
    response = await client.get("/_offload/health", timeout=FAST, headers=OPERATOR)
    body = await response.json()
    assert (response.status, body["status"]) == (200, "degraded")
    assert body["sites"]["local"]["ok"] is True
    assert body["sites"]["hung"] == {
        "storage": hanging["hung"].url,
        "ok": False,
        "error": f"no answer within {HEALTH_WITHIN:g} s",
    }


async def test_concurrent_health_requests_share_one_check_of_a_hung_storage(
    client: Any, hanging: dict[str, Hanging]
) -> None:
    storage = hanging["hung"]
    storage.freeze()
    answers = await asyncio.gather(
        *(client.get("/_offload/health", timeout=FAST) for _ in range(6))
    )
    assert [answer.status for answer in answers] == [200] * 6
    again = await client.get("/_offload/health", timeout=FAST, headers=OPERATOR)
    assert (await again.json())["sites"]["hung"]["ok"] is False
    assert storage.calls["check"] == 1  # one thread held, however many ask
    storage.thaw()


# -- the pool's own rule ------------------------------------------------------------------


def test_a_pool_is_stalled_only_when_every_thread_is_busy_and_a_call_timed_out() -> None:
    now = [0.0]
    pool = StoragePool("blog", 2, clock=lambda: now[0])
    gate = threading.Event()
    started = threading.Barrier(3)
    try:
        futures = [pool.submit(lambda: (started.wait(), gate.wait())) for _ in range(2)]
        started.wait(timeout=5)
        now[0] = 1.0
        assert pool.busy == 2
        assert not pool.stalled  # busy, but nobody gave up yet
        pool.timed_out()
        assert pool.stalled
        with pytest.raises(StorageUnavailable, match="all 2 storage threads"):
            pool.refuse_if_stalled()
        now[0] = 2.0
        gate.set()
        for future in futures:
            future.result(timeout=5)
        assert not pool.stalled  # a call finished after the timeout
        pool.refuse_if_stalled()
    finally:
        gate.set()
        pool.shutdown()


def test_a_pool_with_a_free_thread_is_never_stalled() -> None:
    pool = StoragePool("blog", 2)
    gate = threading.Event()
    try:
        future = pool.submit(gate.wait)
        pool.timed_out()
        assert not pool.stalled
    finally:
        gate.set()
        future.result(timeout=5)
        pool.shutdown()


# -- timeouts fit for an origin -----------------------------------------------------------


def test_the_storage_timeouts_are_settings_that_start_from_the_storage_defaults() -> None:
    settings = Settings()
    assert settings.storage_read_timeout == DEFAULTS.read_timeout
    assert settings.storage_attempts == DEFAULTS.max_attempts
    # A read timeout well under a CDN's origin timeout (CloudFront's default: 30 s),
    # and an origin deadline under it, so a hang is an error before boto3 retries.
    assert DEFAULTS.read_timeout <= 10
    assert settings.storage_deadline < DEFAULTS.read_timeout
    assert DEFAULTS.connect_timeout <= 5
    assert DEFAULTS.max_attempts <= 3


def test_a_sites_s3_config_and_client_carry_the_timeouts_and_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a" * 20)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b" * 40)
    settings = Settings(storage_timeout=2.0, storage_read_timeout=4.0, storage_attempts=2)
    site = Site(
        name="blog", storage="s3://media", endpoint_url="http://127.0.0.1:9", region="eu-west-1"
    )
    config = site_s3_config(settings, site)
    assert (config.connect_timeout, config.read_timeout, config.max_attempts) == (2.0, 4.0, 2)
    client_config = make_s3_client(config).meta.config
    assert (client_config.connect_timeout, client_config.read_timeout) == (2.0, 4.0)
    # botocore's "max_attempts" counts retries only; "total_max_attempts" the first try too.
    assert client_config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_s3config_refuses_fewer_than_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts must be an integer >= 1, got 0"):
        S3Config(max_attempts=0)


def test_a_call_that_answers_as_its_deadline_passes_has_what_it_opened_released():
    """The storage answers in the very turn the deadline fires: nobody takes the
    answer, so what it opened (a file, a stream) must be closed, not leaked."""
    import types

    from offload.server.origin import Origin

    opened: list[str] = []
    released: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = [0.0]
        loop.time = lambda: clock[0]  # type: ignore[method-assign]  # moved by hand below
        origin = Origin.__new__(Origin)
        origin.settings = types.SimpleNamespace(storage_deadline=5.0)  # type: ignore[assignment]
        origin.pools = {}
        answer: asyncio.Future[str] = loop.create_future()

        async def call() -> str:
            handle = await answer
            opened.append(handle)
            return handle

        def answer_as_the_deadline_passes() -> None:
            clock[0] = 5.0
            answer.set_result("HANDLE")

        loop.call_soon(lambda: loop.call_soon(answer_as_the_deadline_passes))
        with pytest.raises(StorageUnavailable):
            await origin._bounded("blog", call, released.append)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert opened == ["HANDLE"]
    assert released == ["HANDLE"]

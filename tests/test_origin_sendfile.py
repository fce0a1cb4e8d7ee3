"""Large local objects go out with sendfile on both event loops, never through reads."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web

from offload.config.settings import Settings, Site
from offload.server import origin
from offload.server.app import create_app
from tests.helpers import free_port

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


async def _fetch(folder: Path, headers: dict[str, str]) -> tuple[int, bytes]:
    site = Site(name="media", storage=folder.as_uri(), hostnames=("*",))
    app = create_app(Settings(sites={"media": site}, body_cache_max_object=1024))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/video.mp4"
            async with session.get(url, headers=headers) as response:
                return response.status, await response.read()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
@pytest.mark.parametrize(
    ("headers", "status", "window"),
    [({}, 200, slice(None)), ({"Range": "bytes=1000-2999999"}, 206, slice(1000, 3_000_000))],
)
def test_large_local_objects_are_sent_with_sendfile_on_either_loop(
    tmp_path, monkeypatch, loop_name, headers, status, window
):
    data = os.urandom(5 * 1024 * 1024 + 123)
    (tmp_path / "video.mp4").write_bytes(data)

    async def no_reads(*_args: Any) -> None:
        raise AssertionError("the file was read instead of sent with sendfile")

    monkeypatch.setattr(origin._FileSlice, "_write_slice", no_reads)
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        got_status, body = runner.run(_fetch(tmp_path, headers))
    assert got_status == status
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data[window]).hexdigest()

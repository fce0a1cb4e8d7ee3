"""Running the server: one process, or N workers sharing one port (SO_REUSEPORT).

The origin keeps no state another process needs, so more throughput is more
processes: the kernel spreads connections over the workers' sockets. The
parent forks the workers before any event loop or thread exists, forwards
SIGTERM to them, and leaves with the first failure's exit code. SIGTERM lets
requests in flight finish (up to ``SHUTDOWN_SECONDS``); Ctrl-C exits 130.

Besides the port, the workers share their metrics: before forking, the parent sets
up prometheus_client's multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``: the
operator's own if set, else a private temporary folder removed at exit), so a
scrape reaching any worker reports the totals of all of them; it marks each
worker that exits as dead there, as prometheus_client asks.

Each worker listens through ``connections.ConnectionGuard`` (idle and header
deadlines, a cap on open connections under the open-files limit, which ``run``
raises to the hard limit first), not aiohttp's ``TCPSite``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import glob
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import multiprocess

from offload import __version__
from offload.config.embedded import Embedded
from offload.config.settings import Settings
from offload.errors import ExitCode, OffloadError
from offload.server.app import create_app
from offload.server.appkeys import STORAGES
from offload.server.connections import (
    ConnectionGuard,
    connection_limits,
    open_files_limit,
    raise_open_files_limit,
)
from offload.server.health import check_storages
from offload.server.metrics import MULTIPROC_ENV
from offload.storage import Storage


class Console(Protocol):
    """Where the server speaks to its operator (the CLI's ``Environment``)."""

    def say(self, text: str = "") -> None: ...

    def warn(self, text: str) -> None: ...


#: How long SIGTERM waits for requests in flight before closing their connections.
SHUTDOWN_SECONDS = 30.0

#: glibc malloc arenas per process. Every storage thread would otherwise get its
#: own arena (up to 8 per core, 64 MiB of address space each, slow to give memory
#: back): measured with 64 clients streaming 10 MB from S3, one worker's RSS fell
#: from 218 MB to 124 MB with 2 arenas, at no cost in throughput.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


@dataclass(frozen=True)
class Plan:
    """What to serve, where, and with how many processes."""

    settings: Settings
    embedded: Embedded | None
    host: str
    port: int
    workers: int
    debug: bool


def run(plan: Plan, env: Console) -> int:
    limit_malloc_arenas()  # before any thread exists, and inherited by forked workers
    raise_open_files_limit()  # inherited too; each worker caps its connections under it
    with metrics_folder(plan.workers) as folder:
        if plan.workers == 1:
            return _run_loop(plan, _worker(plan, env, index=0))
        assert folder is not None
        return _supervise(plan, env, folder)


#: The files prometheus_client's multiprocess mode writes: one per metric type and pid.
_METRIC_FILES = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")


@contextlib.contextmanager
def metrics_folder(workers: int) -> Iterator[str | None]:
    """The multiprocess folder the workers' metrics meet in, set in the environment.

    An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used (emptied of an earlier
    run's metric files, as prometheus_client requires) and kept. Otherwise N
    workers get a private temporary folder, removed at exit, and one process
    needs none: it counts in memory.
    """
    own = os.environ.get(MULTIPROC_ENV)
    if own:
        if not os.path.isdir(own):
            raise OffloadError(f"{MULTIPROC_ENV}={own!r} is not a folder")
        for pattern in _METRIC_FILES:
            for stale in glob.glob(os.path.join(own, pattern)):
                os.remove(stale)
        yield own
        return
    if workers == 1:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="offload-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas unless the operator set ``MALLOC_ARENA_MAX``.

    Returns whether the cap was applied (never on other C libraries).
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False


def loop_factory(choice: str) -> Any:
    """The event loop constructor for the ``event_loop`` setting (None: asyncio's)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise OffloadError('event_loop = "uvloop" but uvloop is not installed') from None
        return None
    return uvloop.new_event_loop


def _run_loop(plan: Plan, main: Any) -> int:
    try:
        factory = loop_factory(plan.settings.event_loop)
    except OffloadError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _supervise(plan: Plan, env: Console, metrics_dir: str) -> int:
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_worker_main, args=(plan, env, index), name=f"offload-{index}")
        for index in range(plan.workers)
    ]
    stopping = False
    buried: set[int] = set()

    def bury_the_dead() -> None:
        """Tell prometheus_client which workers have exited (their live gauges go)."""
        for worker in workers:
            if worker.pid is not None and worker.exitcode is not None and worker.pid not in buried:
                buried.add(worker.pid)
                multiprocess.mark_process_dead(worker.pid, metrics_dir)

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: each worker finishes what it is sending

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            for worker in workers:
                worker.join(0.2)
                bury_the_dead()
                if worker.exitcode not in (None, 0) and not stopping:
                    stop(signal.SIGTERM, None)
                    for other in workers:
                        other.join()
                    return worker.exitcode or ExitCode.FAILED
        return ExitCode.OK
    except KeyboardInterrupt:  # the terminal sent SIGINT to every worker too
        for worker in workers:
            worker.join(SHUTDOWN_SECONDS)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        bury_the_dead()


def _worker_main(plan: Plan, env: Console, index: int) -> None:
    """A forked worker: its own event loop, storages and caches."""
    try:
        code = _run_loop(plan, _worker(plan, env, index))
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    except OffloadError as exc:
        env.warn(f"error: {exc}")
        code = exc.exit_code
    except Exception as exc:  # one line, as in a single process; never multiprocessing's traceback
        env.warn(f"internal error: {type(exc).__name__}: {exc} (run with --workers 1 --traceback)")
        code = ExitCode.INTERNAL
    sys.exit(int(code))


async def _worker(plan: Plan, env: Console, index: int) -> int:
    settings = plan.settings
    app = create_app(settings, debug=plan.debug)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    assert runner.server is not None
    open_files = open_files_limit()
    limits = connection_limits(settings, open_files)
    guard = ConnectionGuard(
        runner.server,
        limits,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
    )
    listener: asyncio.Server | None = None
    talk = index == 0  # one worker speaks for all
    try:
        if talk:
            _say_what_is_served(plan, env)
        # Reported now, with a short timeout, rather than on the first request.
        storages: dict[str, Storage] = app[STORAGES]
        for result in await check_storages(storages, settings.storage_timeout):
            if result.ok and talk:
                env.say(f"  site {result.site}: {result.storage} answers")
            elif not result.ok and talk:
                env.warn(f"site {result.site}: {result.storage} cannot be reached: {result.error}")
        if talk and limits.max_connections < settings.max_client_connections:
            env.warn(
                f"max_client_connections lowered to {limits.max_connections} per worker:"
                f" the open-files limit is {open_files}"
            )
        try:
            listener = await guard.listen(plan.host, plan.port, reuse_port=plan.workers > 1)
        except OSError as exc:
            raise OffloadError(f"cannot listen on {plan.host}:{plan.port}: {exc.strerror}") from exc
        if talk:
            base = f"http://{url_host(plan.host)}:{plan.port}"
            env.say(f"  listening on {base}/ with {plan.workers} worker(s)")
            env.say(f"  origin:   {base}/<key>")
            env.say(f"  health:   {base}/_offload/health")
            env.say(f"  metrics:  {base}/_offload/metrics")
            env.say(
                f"  clients:  up to {limits.max_connections} connections per worker,"
                f" idle ones closed after {limits.keepalive_timeout:g} s,"
                f" headers due within {limits.header_timeout:g} s"
            )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        if talk:
            env.say("offload: stopping; requests in flight may finish")
        return ExitCode.OK
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()
        guard.close()


def _say_what_is_served(plan: Plan, env: Console) -> None:
    settings = plan.settings
    if plan.embedded is not None:
        env.say(f"offload {__version__}: no config file, serving the embedded default site")
        env.say(f"  data:     {plan.embedded.data_dir}  (a local folder as the bucket)")
        secret = settings.sites["default"].webhook_secret
        env.say(f"  secret:   {plan.embedded.secret_file}  (mode 0600, {secret})")
        env.say(f"  uploads:  {plan.embedded.uploads_dir}  (the site's uploads_dir)")
    else:
        env.say(f"offload {__version__}: {settings.source}, {len(settings.sites)} site(s)")
    if plan.workers > 1:
        env.say(f"  workers:  {plan.workers} processes (pid {os.getpid()} supervises)")
    uses_uvloop = loop_factory(settings.event_loop) is not None
    env.say(f"  event loop: {'uvloop' if uses_uvloop else 'asyncio'}")


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

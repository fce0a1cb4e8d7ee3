"""Each site's storage gets threads of its own, so a hung endpoint holds only its own.

boto3 blocks a thread for as long as an endpoint keeps it waiting (connect,
read timeout, retries). With one pool for every site, a frozen bucket filled
every thread and a local-folder site's misses, the manifest's SQLite calls and
the health checks all queued behind it. A ``StoragePool`` is one site's
bounded ``ThreadPoolExecutor`` (the standard library's: it only counts what
runs on it), and it knows when it is stuck: every thread busy and a caller's
deadline passed with no call finished since. The origin then refuses at once
(``StorageUnavailable``: stale-if-error or a 503) instead of queueing
requests behind threads that cannot come back before boto3 gives up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from offload.storage import StorageUnavailable

P = ParamSpec("P")
T = TypeVar("T")


class StoragePool(Executor):
    """The bounded thread pool of one site's storage calls, its files and its manifest rows."""

    def __init__(
        self, name: str, threads: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"offload-{name}")
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._last_finished = clock()
        self._last_timeout = float("-inf")

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._pool.submit(self._counted, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait, cancel_futures=cancel_futures)

    def _counted(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            self._running += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._running -= 1
                self._last_finished = self._clock()

    @property
    def busy(self) -> int:
        """Calls on a thread now."""
        return self._running

    def timed_out(self) -> None:
        """A caller gave up waiting on this pool (its deadline passed)."""
        with self._lock:
            self._last_timeout = self._clock()

    @property
    def stalled(self) -> bool:
        """Every thread is busy, and a call timed out after the last one finished.

        A call finishing (boto3 giving up, or the endpoint coming back) clears
        it, so the next caller tries again rather than being refused for ever.
        """
        with self._lock:
            return self._running >= self.threads and self._last_timeout > self._last_finished

    def refuse_if_stalled(self) -> None:
        """Raise StorageUnavailable now rather than queue behind threads that are stuck."""
        if self.stalled:
            raise StorageUnavailable(
                f"site {self.name}: all {self.threads} storage threads wait on calls that time out"
            )

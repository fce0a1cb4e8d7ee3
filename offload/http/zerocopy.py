"""Bytes to a client's socket without passing through Python: sendfile and splice.

The origin's large responses are bulk copies: a local file to the client
(``send_file``, ``os.sendfile``), or an S3 server's answer to the client
(``relay``, ``os.splice`` through a pipe). Either way the kernel moves the
bytes; Python only waits for the sockets to be ready, so a worker's CPU and
memory stay flat however many large objects are in flight.

Both work on any event loop (uvloop has no ``loop.sendfile``): they write on
a duplicate of the client socket's descriptor (the transport keeps the
original), once the transport's own buffer (the response headers) is empty,
so the bytes go out in order. Every wait for the client is bounded by
``timeout``: a stalled client is dropped (the transport aborted) and
``ConnectionResetError`` raised, as for a client that hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator

#: Bytes per sendfile call; each call's wait is bounded by the timeout.
SEND_SLICE = 8 * 1024 * 1024
#: The pipe between the two sockets of a relay (Linux allows 1 MiB unprivileged).
PIPE_SIZE = 1024 * 1024
#: Bytes the source socket gathers before a relay wakes up to move them.
SOURCE_BATCH = 256 * 1024
#: Bytes per read when the kernel cannot splice (the fallback copy).
COPY_PIECE = 256 * 1024

_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_SPLICE_MORE = getattr(os, "SPLICE_F_MORE", 0)


class SourceError(Exception):
    """The upstream side of a relay failed (ended early, stalled or reset)."""


def can_splice() -> bool:
    return hasattr(os, "splice")


def plain_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The client's socket, when bytes may be written to it directly (not TLS)."""
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    return transport.get_extra_info("socket")


async def send_file(
    transport: asyncio.BaseTransport,
    file_fd: int,
    offset: int,
    count: int,
    timeout: float,  # noqa: ASYNC109 - per wait for a writable socket, not for the whole call
    on_sent: Callable[[int], None],
) -> None:
    """``count`` bytes of a file from ``offset`` to the client, by ``os.sendfile``.

    NotImplementedError when there is no plain socket (TLS): the caller copies.
    """
    async with _Client(transport, timeout) as client:
        sent = 0
        while sent < count:
            client.check()
            try:
                done = os.sendfile(client.fd, file_fd, offset + sent, min(SEND_SLICE, count - sent))
            except BlockingIOError:
                await client.writable()
                continue
            except (BrokenPipeError, ConnectionError) as exc:
                raise ConnectionResetError("the client went away") from exc
            if done == 0:
                raise ConnectionResetError("the file ended early")  # truncated meanwhile
            sent += done
            on_sent(done)


async def relay(
    transport: asyncio.BaseTransport,
    source: socket.socket,
    head: bytes,
    count: int,
    *,
    timeout: float,  # noqa: ASYNC109 - per wait for the client, not for the whole call
    source_timeout: float,
    on_sent: Callable[[int], None],
) -> None:
    """``count`` bytes to the client: ``head`` (already read), then the rest from ``source``.

    The rest is spliced socket -> pipe -> socket. ``SourceError`` when the
    source ends early or stalls for ``source_timeout``; ``ConnectionResetError``
    when the client goes away or stalls. Either way the caller must not reuse
    ``source``. NotImplementedError before anything is sent when the client's
    socket is TLS.
    """
    async with _Client(transport, timeout) as client:
        upstream = _Source(source, source_timeout)
        await client.write_all(head[:count])
        on_sent(min(len(head), count))
        remaining = count - min(len(head), count)
        if remaining <= 0:
            return
        if can_splice():
            with _pipe() as pipe:
                try:
                    await _splice(upstream, client, pipe, remaining, on_sent)
                    return
                except _NoSplice:
                    pass
        await _copy(upstream, client, remaining, on_sent)


class _NoSplice(Exception):
    """The kernel refused the first splice (EINVAL): copy instead."""


class _Client:
    """The client's end: a duplicate of its socket's descriptor, once the headers are out."""

    def __init__(self, transport: asyncio.BaseTransport, timeout: float) -> None:
        self.transport, self.timeout = transport, timeout
        self.loop = asyncio.get_running_loop()
        self.fd = -1

    async def __aenter__(self) -> _Client:
        sock = plain_socket(self.transport)
        if sock is None:
            raise NotImplementedError("no plain socket to write to")
        deadline = self.loop.time() + self.timeout
        while self.transport.get_write_buffer_size():  # type: ignore[attr-defined]
            if self.transport.is_closing() or self.loop.time() > deadline:
                raise ConnectionResetError("the client stopped reading")
            await asyncio.sleep(0.001)
        self.fd = os.dup(sock.fileno())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        os.close(self.fd)

    def check(self) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the client went away")

    async def writable(self) -> None:
        """Wait until the socket takes more; drop the client after ``timeout``."""
        try:
            await _ready(self.loop.add_writer, self.loop.remove_writer, self.fd, self.timeout)
        except TimeoutError:
            self.transport.abort()  # type: ignore[attr-defined]
            raise ConnectionResetError("the client stopped reading") from None

    async def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                await self.writable()
                continue
            except (BrokenPipeError, ConnectionError) as exc:
                raise ConnectionResetError("the client went away") from exc
            view = view[written:]


class _Source:
    """The storage's end of a relay: its socket, waited on for at most ``timeout``."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock, self.fd, self.timeout = sock, sock.fileno(), timeout
        self.loop = asyncio.get_running_loop()

    async def readable(self) -> None:
        try:
            await _ready(self.loop.add_reader, self.loop.remove_reader, self.fd, self.timeout)
        except TimeoutError:
            raise SourceError("storage stopped sending") from None

    def batch(self, size: int) -> None:
        """Be readable only once ``size`` bytes have arrived (1: as soon as any have)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)


async def _ready(
    watch: Callable[..., object], unwatch: Callable[[int], object], fd: int, seconds: float
) -> None:
    """Wait until the loop says ``fd`` is ready (``watch``: its add_reader or add_writer).

    TimeoutError after ``seconds``; the descriptor is unwatched either way.
    """
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not ready.done():  # the loop may call back again before the waiter runs
            ready.set_result(None)

    watch(fd, wake)
    try:
        async with asyncio.timeout(seconds):
            await ready
    finally:
        unwatch(fd)


async def _splice(
    source: _Source,
    client: _Client,
    pipe: tuple[int, int],
    remaining: int,
    on_sent: Callable[[int], None],
) -> None:
    pipe_out, pipe_in = pipe
    in_pipe = 0
    first = True
    lowat = 1
    try:
        while remaining or in_pipe:
            client.check()
            pulled = False
            if remaining and in_pipe < PIPE_SIZE:
                try:
                    moved = os.splice(source.fd, pipe_in, min(remaining, PIPE_SIZE - in_pipe),
                                      flags=_SPLICE_FLAGS)  # fmt: skip
                except BlockingIOError:
                    moved = -1
                except OSError as exc:
                    if first and exc.errno == 22:  # EINVAL: this socket cannot be spliced
                        raise _NoSplice from exc
                    raise SourceError(f"reading from storage failed: {exc.strerror}") from exc
                first = False
                if moved == 0:
                    raise SourceError(f"the object ended {remaining} bytes early")
                if moved > 0:
                    remaining -= moved
                    in_pipe += moved
                    pulled = True
            if in_pipe:
                try:
                    more = _SPLICE_MORE if remaining else 0
                    pushed = os.splice(pipe_out, client.fd, in_pipe, flags=_SPLICE_FLAGS | more)
                except BlockingIOError:
                    if not pulled or in_pipe >= PIPE_SIZE or not remaining:
                        await client.writable()
                    continue
                except (BrokenPipeError, ConnectionError) as exc:
                    raise ConnectionResetError("the client went away") from exc
                in_pipe -= pushed
                on_sent(pushed)
            elif not pulled:
                # Woken for every few KB, the loop would cost more than the bytes:
                # the kernel reports the source readable once a batch has arrived.
                batch = min(remaining, SOURCE_BATCH)
                if batch != lowat:
                    source.batch(batch)
                    lowat = batch
                await source.readable()
    finally:
        if lowat != 1:  # back to the default, for the next answer's headers
            with contextlib.suppress(OSError):
                source.batch(1)


async def _copy(
    source: _Source, client: _Client, remaining: int, on_sent: Callable[[int], None]
) -> None:
    """The relay without splice: read a piece, write it, and so on."""
    while remaining:
        try:
            piece = source.sock.recv(min(COPY_PIECE, remaining))
        except BlockingIOError:
            await source.readable()
            continue
        except OSError as exc:
            raise SourceError(f"reading from storage failed: {exc.strerror}") from exc
        if not piece:
            raise SourceError(f"the object ended {remaining} bytes early")
        await client.write_all(piece)
        remaining -= len(piece)
        on_sent(len(piece))


@contextlib.contextmanager
def _pipe() -> Iterator[tuple[int, int]]:
    pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError, AttributeError):  # a smaller pipe still works
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        yield pipe_out, pipe_in
    finally:
        os.close(pipe_out)
        os.close(pipe_in)

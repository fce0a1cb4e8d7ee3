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
    loop = asyncio.get_running_loop()
    with await _client_fd(transport, timeout) as out:
        sent = 0
        while sent < count:
            if transport.is_closing():
                raise ConnectionResetError("the client went away")
            try:
                done = os.sendfile(out, file_fd, offset + sent, min(SEND_SLICE, count - sent))
            except BlockingIOError:
                await _writable(loop, out, timeout, transport)
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
    loop = asyncio.get_running_loop()
    with await _client_fd(transport, timeout) as out:
        await _write_all(loop, out, head[:count], timeout, transport)
        on_sent(min(len(head), count))
        remaining = count - min(len(head), count)
        if remaining <= 0:
            return
        if can_splice():
            with _pipe() as (pipe_out, pipe_in):
                try:
                    await _splice(loop, source, out, pipe_out, pipe_in, remaining,
                                  timeout, source_timeout, transport, on_sent)  # fmt: skip
                    return
                except _NoSplice:
                    pass
        await _copy(loop, source, out, remaining, timeout, source_timeout, transport, on_sent)


class _NoSplice(Exception):
    """The kernel refused the first splice (EINVAL): copy instead."""


async def _splice(
    loop: asyncio.AbstractEventLoop,
    source: socket.socket,
    out: int,
    pipe_out: int,
    pipe_in: int,
    remaining: int,
    timeout: float,  # noqa: ASYNC109
    source_timeout: float,
    transport: asyncio.BaseTransport,
    on_sent: Callable[[int], None],
) -> None:
    src = source.fileno()
    in_pipe = 0
    first = True
    lowat = 1
    try:
        while remaining or in_pipe:
            if transport.is_closing():
                raise ConnectionResetError("the client went away")
            pulled = False
            if remaining and in_pipe < PIPE_SIZE:
                try:
                    moved = os.splice(src, pipe_in, min(remaining, PIPE_SIZE - in_pipe),
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
                    pushed = os.splice(pipe_out, out, in_pipe, flags=_SPLICE_FLAGS | more)
                except BlockingIOError:
                    if not pulled or in_pipe >= PIPE_SIZE or not remaining:
                        await _writable(loop, out, timeout, transport)
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
                    source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, batch)
                    lowat = batch
                await _source_ready(loop, src, source_timeout)
    finally:
        if lowat != 1:  # back to the default, for the next answer's headers
            with contextlib.suppress(OSError):
                source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


async def _copy(
    loop: asyncio.AbstractEventLoop,
    source: socket.socket,
    out: int,
    remaining: int,
    timeout: float,  # noqa: ASYNC109
    source_timeout: float,
    transport: asyncio.BaseTransport,
    on_sent: Callable[[int], None],
) -> None:
    """The relay without splice: read a piece, write it, and so on."""
    while remaining:
        try:
            piece = source.recv(min(COPY_PIECE, remaining))
        except BlockingIOError:
            await _source_ready(loop, source.fileno(), source_timeout)
            continue
        except OSError as exc:
            raise SourceError(f"reading from storage failed: {exc.strerror}") from exc
        if not piece:
            raise SourceError(f"the object ended {remaining} bytes early")
        await _write_all(loop, out, piece, timeout, transport)
        remaining -= len(piece)
        on_sent(len(piece))


async def _write_all(
    loop: asyncio.AbstractEventLoop,
    out: int,
    data: bytes,
    timeout: float,  # noqa: ASYNC109
    transport: asyncio.BaseTransport,
) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(out, view)
        except BlockingIOError:
            await _writable(loop, out, timeout, transport)
            continue
        except (BrokenPipeError, ConnectionError) as exc:
            raise ConnectionResetError("the client went away") from exc
        view = view[written:]


class _Dup:
    """A duplicate of the client socket's descriptor, closed on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = os.dup(fd)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


async def _client_fd(transport: asyncio.BaseTransport, timeout: float) -> _Dup:  # noqa: ASYNC109
    sock = plain_socket(transport)
    if sock is None:
        raise NotImplementedError("no plain socket to write to")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while transport.get_write_buffer_size():  # type: ignore[attr-defined]
        if transport.is_closing() or loop.time() > deadline:
            raise ConnectionResetError("the client stopped reading")
        await asyncio.sleep(0.001)
    return _Dup(sock.fileno())


@contextlib.contextmanager
def _pipe() -> Iterator[tuple[int, int]]:
    pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError, AttributeError):  # a smaller pipe still works
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[attr-defined]
        yield pipe_out, pipe_in
    finally:
        os.close(pipe_out)
        os.close(pipe_in)


async def _writable(
    loop: asyncio.AbstractEventLoop,
    fd: int,
    timeout: float,  # noqa: ASYNC109 - it also aborts the transport when it runs out
    transport: asyncio.BaseTransport,
) -> None:
    """Wait until the client's socket takes more; drop the client after ``timeout``."""
    ready = loop.create_future()
    loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await ready
    except TimeoutError:
        transport.abort()  # type: ignore[attr-defined]
        raise ConnectionResetError("the client stopped reading") from None
    finally:
        loop.remove_writer(fd)


async def _source_ready(loop: asyncio.AbstractEventLoop, fd: int, timeout: float) -> None:  # noqa: ASYNC109
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await ready
    except TimeoutError:
        raise SourceError("storage stopped sending") from None
    finally:
        loop.remove_reader(fd)

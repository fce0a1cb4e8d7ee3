"""GETs of S3 objects over plain HTTP, their bodies left in the socket for splicing.

Streaming a large object through boto3 costs the origin a receive into
Python, a thread hop per chunk and a send out of Python for every byte: about
1.6 CPU-ms per MB here, as much as the S3 server spends producing it. When
the endpoint is plain HTTP (an S3-compatible server beside offload: MinIO,
Garage, Ceph RGW, ``rclone serve s3`` on a private network), the origin sends
the GET itself, on a pooled keep-alive socket with a presigned URL, reads
only the answer's headers, and lets ``zerocopy.relay`` splice the body to
the client: the bytes never enter Python.

Anything unusual goes back to boto3, which knows every error and retry: an
HTTPS endpoint (``DirectGets.for_storage`` gives None), an answer that is
not a 200/206 with a ``Content-Length`` (``get`` gives None), a connection
that cannot be made. Presigned URLs are kept for a few minutes, well inside
their validity, so most GETs cost no signing at all; a 403 drops them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cachetools import TTLCache

from offload.http import zerocopy

#: Presigns a GET of a key: the URL and the client's connect and read timeouts.
Presigner = Callable[[str, int], Awaitable["PresignedGet"]]


@dataclass(frozen=True)
class PresignedGet:
    """A presigned GET URL, and the timeouts of the client that signed it."""

    url: str
    connect_timeout: float
    read_timeout: float


#: Seconds a presigned URL is valid, and seconds one is reused.
PRESIGN_VALID = 900
PRESIGN_REUSE = 300
#: Presigned URLs kept (one per recently served key).
PRESIGN_KEPT = 4096
#: Idle keep-alive connections kept per endpoint.
IDLE_KEPT = 64
#: The most header bytes an answer may have.
HEAD_LIMIT = 64 * 1024


@dataclass
class DirectBody:
    """An answer whose headers were read; ``head`` holds body bytes that came with them."""

    sock: socket.socket
    head: bytes
    length: int
    etag: str
    keep_alive: bool
    owner: DirectGets
    address: tuple[str, int]

    def done(self, *, complete: bool) -> None:
        """Give the socket back for reuse (the whole body was read), or close it."""
        self.owner._release(self.sock, self.address, reuse=complete and self.keep_alive)


class DirectGets:
    """Plain-HTTP GETs for one S3 storage (see the module docstring)."""

    def __init__(self, presign: Presigner) -> None:
        self._presign = presign
        self.connect_timeout, self.read_timeout = 5.0, 60.0  # boto3's, once its client exists
        self._urls: TTLCache[str, str] = TTLCache(PRESIGN_KEPT, PRESIGN_REUSE)
        self._idle: dict[tuple[str, int], list[socket.socket]] = {}
        self._https = False

    @classmethod
    def for_storage(cls, presign: Presigner) -> DirectGets | None:
        """Direct GETs signed by ``presign``, or None where they cannot help (no splice)."""
        return cls(presign) if zerocopy.can_splice() else None

    async def get(self, key: str, first: int, last: int, size: int) -> DirectBody | None:
        """The bytes ``first..last`` of ``key`` (``size`` bytes long), or None: ask boto3.

        All of an object is asked for without a Range header: some servers
        (rclone) send a whole file more cheaply than a range of it.
        """
        if self._https:
            return None
        try:
            url = await self._url(key)
        except Exception:  # no credentials, say: boto3's own GET reports it properly
            return None
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            self._https = True  # TLS: the bytes must pass through Python anyway
            return None
        address = (parts.hostname, parts.port or 80)
        request = (
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            + ("" if (first, last) == (0, size - 1) else f"Range: bytes={first}-{last}\r\n")
            + "User-Agent: offload\r\n\r\n"
        ).encode("latin-1")
        for reused in (True, False):  # an idle connection the server closed: one retry
            sock = self._idle_socket(address) if reused else None
            if reused and sock is None:
                continue
            try:
                if sock is None:
                    sock = await self._connect(address)
                answer = await self._exchange(sock, request)
            except (OSError, TimeoutError, _Malformed) as exc:
                if sock is not None:
                    sock.close()
                if reused and not isinstance(exc, TimeoutError) and not _is_malformed(exc):
                    continue  # most likely closed by the server while idle
                return None
            except BaseException:  # cancelled: the answer is unread, the socket unusable
                if sock is not None:
                    sock.close()
                raise
            status, headers, head = answer
            return self._body(key, sock, address, status, headers, head, first, last, size)
        return None

    def close(self) -> None:
        for sockets in self._idle.values():
            for sock in sockets:
                sock.close()
        self._idle.clear()

    # -- internals -----------------------------------------------------------------

    async def _url(self, key: str) -> str:
        url = self._urls.get(key)
        if url is None:
            signed = await self._presign(key, PRESIGN_VALID)
            self.connect_timeout, self.read_timeout = signed.connect_timeout, signed.read_timeout
            url = signed.url
            self._urls[key] = url
        return url

    def _idle_socket(self, address: tuple[str, int]) -> socket.socket | None:
        sockets = self._idle.get(address)
        return sockets.pop() if sockets else None

    def _release(self, sock: socket.socket, address: tuple[str, int], *, reuse: bool) -> None:
        if reuse:
            idle = self._idle.setdefault(address, [])
            if len(idle) < IDLE_KEPT:
                idle.append(sock)
                return
        sock.close()

    async def _connect(self, address: tuple[str, int]) -> socket.socket:
        """A connection to the first of the host's addresses that answers."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(*address, type=socket.SOCK_STREAM)
        error: OSError | TimeoutError = OSError(f"no address for {address[0]}")
        for family, kind, proto, _, target in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                async with asyncio.timeout(self.connect_timeout):
                    await loop.sock_connect(sock, target)
            except (OSError, TimeoutError) as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise error

    async def _exchange(
        self, sock: socket.socket, request: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, request)
        buffer = b""
        async with asyncio.timeout(self.read_timeout):
            while b"\r\n\r\n" not in buffer:
                if len(buffer) > HEAD_LIMIT:
                    raise _Malformed("the answer's headers are too long")
                piece = await loop.sock_recv(sock, 65536)
                if not piece:
                    raise _Closed("the server closed the connection")
                buffer += piece
        raw, head = buffer.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise _Malformed(f"not an HTTP/1 answer: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            return int(status_line[1]), headers, head
        except ValueError:
            raise _Malformed(f"not an HTTP status: {status_line[1][:20]!r}") from None

    def _body(
        self,
        key: str,
        sock: socket.socket,
        address: tuple[str, int],
        status: int,
        headers: dict[str, str],
        head: bytes,
        first: int,
        last: int,
        size: int,
    ) -> DirectBody | None:
        length = headers.get("content-length", "")
        wanted = last - first + 1
        # The range asked for, not another (rclone answers a range with 200 and a
        # Content-Range), or all of an object asked for from its first byte.
        content_range = headers.get("content-range")
        usable = (
            status in (200, 206)
            and length.isdigit()
            and int(length) == wanted
            and "transfer-encoding" not in headers
            and len(head) <= wanted
            and (
                (content_range or "").startswith(f"bytes {first}-{last}/")
                or (content_range is None and status == 200 and (first, last) == (0, size - 1))
            )
        )
        if not usable:
            if status == 403:
                self._urls.pop(key, None)  # expired credentials, say: sign afresh next time
            sock.close()
            return None
        keep_alive = headers.get("connection", "").lower() != "close"
        etag = headers.get("etag", "").strip('"')
        return DirectBody(sock, head, wanted, etag, keep_alive, self, address)


class _Malformed(Exception):
    pass


class _Closed(_Malformed):
    pass


def _is_malformed(exc: BaseException) -> bool:
    return isinstance(exc, _Malformed) and not isinstance(exc, _Closed)

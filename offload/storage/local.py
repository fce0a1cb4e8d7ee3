"""A folder as a bucket: the embedded default, and the local side of a sync.

Layout under the root::

    <key>                         the object's bytes, at the key's path
    .offload/meta/<key>.json      content type, cache control, metadata, ETag
    .offload/tmp/                 writes in progress (same filesystem, so rename is atomic)

Writes go to ``.offload/tmp`` and are renamed into place, so a reader never
sees half an object and a failed write leaves nothing behind. The sidecar
records the size and mtime of the bytes it describes: if the file is replaced
by other means, the stale sidecar is ignored rather than trusted.

Links in the folder are followed only where they keep a key's meaning: the
real path (links resolved) must stay under the root, outside ``.offload/``,
and under the same ``fences`` (key prefixes, the site's ``signed_prefixes``)
as the key itself. Otherwise reading the key finds nothing (``head`` is None,
``get`` raises NotFound, a listing skips it: the origin answers 404), and
writing or deleting through it raises ``LinkRefused``: ``alias/report.pdf``,
with ``alias`` a link to the signed ``private/``, must not be served
unsigned, nor written or deleted through.

The cost on the origin's hot path is one ``realpath`` per read that reaches the
folder (an ``lstat`` per path component: about 25 µs for a six-segment key on
a loaded two-core machine); the root's real path is resolved once and kept.
Reads of hot keys mostly stop at the origin's metadata and body caches, and
the bench's local-folder rows showed no change beyond their noise, so no
cache of real paths is kept here (one would have to expire when a link changes).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from offload.keys import UnsafeKey, key_problem, validate_key
from offload.storage.base import (
    CHUNK_SIZE,
    ByteRange,
    ByteStream,
    CopySource,
    Features,
    LinkRefused,
    NotFound,
    ObjectInfo,
    PutSource,
    Storage,
    StorageError,
    StorageMissing,
    check_metadata,
    resolve_range,
)
from offload.storage.content_types import guess_content_type

RESERVED = ".offload"
_LIST_BATCH = 500


class LocalStorage(Storage):
    """Objects as files under ``root``; metadata in JSON sidecars beside them."""

    #: Its objects are files: sent with sendfile, and copied file to file.
    features = Features(local_files=True, server_side_copy=True)

    def __init__(
        self, root: Path, *, executor: Executor | None = None, fences: Sequence[str] = ()
    ) -> None:
        """``fences``: key prefixes no link may lead into or out of (a site's signed prefixes)."""
        super().__init__(executor=executor)
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_uri()
        self.fences = tuple(sorted({f.strip("/") for f in fences if f.strip("/")}))
        self._meta_root = self.root / RESERVED / "meta"
        self._tmp_root = self.root / RESERVED / "tmp"
        self._real_root: str | None = None  # the root with links resolved, once it exists
        # Held while a put makes folders and moves into them, and while a delete
        # prunes the folders it empties: in one process they never interleave.
        # Another process's delete can still prune in between: _move_into_place retries.
        self._folders = threading.Lock()

    # -- paths -------------------------------------------------------------

    def _data_path(self, key: str) -> Path:
        validate_key(key)
        if key.split("/", 1)[0] == RESERVED:
            raise UnsafeKey(f"keys under {RESERVED}/ are reserved for offload: {key[:80]!r}")
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        return self._meta_root / f"{key}.json"

    def _root_real(self) -> str:
        """The root's real path, kept once the root exists (it is not swapped while we run)."""
        if self._real_root is not None:
            return self._real_root
        real = os.path.realpath(self.root)
        if os.path.isdir(real):
            self._real_root = real
        return real

    def _fenced(self, key: str) -> tuple[str, ...]:
        """The fences ``key`` (an object, or a folder) lies under."""
        return tuple(f for f in self.fences if key == f or key.startswith(f + "/"))

    def _check_real(self, key: str, real: str) -> None:
        """Refuse ``key`` when its real path ``real`` changes what the key means (see above)."""
        root = self._root_real()
        if not real.startswith(root + os.sep):
            raise LinkRefused(
                f"the key leads outside the storage folder through a link: {key[:80]!r}"
            )
        rel = real[len(root) + 1 :]
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        if rel == key:
            return  # no link on the way: the common case
        if rel == RESERVED or rel.startswith(RESERVED + "/"):
            raise LinkRefused(f"the key leads into {RESERVED}/ through a link: {key[:80]!r}")
        if self._fenced(rel) != self._fenced(key):
            raise LinkRefused(f"the key crosses a signed prefix through a link: {key[:80]!r}")

    def _check_folder(self, key: str, path: Path) -> None:
        """Refuse a key whose folder, or the part of it that exists, leads elsewhere.

        Checked before anything is created or removed: ``mkdir(parents=True)``
        through a linked folder would already have written outside, and a
        delete through one would remove another key's object.
        """
        existing, rest = path.parent, [path.name]
        while not existing.exists() and existing != self.root:
            rest.append(existing.name)
            existing = existing.parent
        real = os.path.join(os.path.realpath(existing), *reversed(rest))
        self._check_real(key, real)

    # -- reading -----------------------------------------------------------

    def _info_for(self, key: str, path: Path, st: os.stat_result) -> ObjectInfo:
        sidecar = _read_sidecar(self._meta_path(key))
        modified = datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)
        if (
            sidecar
            and sidecar.get("size") == st.st_size
            and sidecar.get("mtime_ns") == st.st_mtime_ns
        ):
            return ObjectInfo(
                key=key,
                size=st.st_size,
                etag=sidecar["etag"],
                last_modified=modified,
                content_type=sidecar.get("content_type"),
                cache_control=sidecar.get("cache_control"),
                metadata=dict(sidecar.get("metadata") or {}),
            )
        # A file placed here by other means: no MD5 without reading it all, so the
        # ETag is derived from size and mtime, with a '-' so no one takes it for an MD5.
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
            last_modified=modified,
            content_type=guess_content_type(key),
        )

    def _stat_object(self, key: str) -> tuple[Path, os.stat_result] | None:
        path = self._data_path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                return None  # a segment longer than the filesystem allows: nothing is there

            raise StorageError(f"cannot read {key!r}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        try:
            self._check_real(key, os.path.realpath(path))
        except LinkRefused:
            return None  # a link that changes what the key means: as good as absent
        return path, st

    def _head_sync(self, key: str) -> ObjectInfo | None:
        found = self._stat_object(key)
        return None if found is None else self._info_for(key, *found)

    def _open_sync(
        self, key: str, byte_range: ByteRange | None
    ) -> tuple[ObjectInfo, BinaryIO, int]:
        found = self._stat_object(key)
        if found is None:
            raise NotFound(f"no object {key!r} in {self.url}")
        path, st = found
        info = self._info_for(key, path, st)
        first, last = resolve_range(byte_range, info.size, key)
        handle = path.open("rb")
        handle.seek(first)
        return info, handle, max(0, last - first + 1)

    async def check(self) -> None:
        """StorageMissing unless the root is a folder this process may list and enter.

        Reads of a folder that is not there find nothing and a put creates it, as
        the sync and the webhooks expect; the origin asks ``check`` before it
        answers a miss, so a missing folder is a 503, never a 404 a CDN keeps.
        """
        await self.run(self._check_root)

    def _check_root(self) -> None:
        try:
            st = os.stat(self.root)
        except FileNotFoundError as exc:
            raise StorageMissing(f"the storage folder {self.root} does not exist") from exc
        except OSError as exc:
            raise StorageMissing(
                f"the storage folder {self.root} cannot be read: {exc.strerror}"
            ) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise StorageMissing(f"the storage {self.root} is not a folder")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageMissing(f"the storage folder {self.root} is not readable")

    async def head(self, key: str) -> ObjectInfo | None:
        return await self.run(self._head_sync, key)

    async def get(
        self, key: str, byte_range: ByteRange | None = None
    ) -> tuple[ObjectInfo, ByteStream]:
        info, handle, length = await self.run(self._open_sync, key, byte_range)
        return info, ByteStream(handle.read, handle.close, self.run, length)

    async def open_file(self, key: str) -> tuple[BinaryIO, os.stat_result]:
        """The open file holding ``key`` and its stat, for sending with sendfile.

        The same checks as ``get`` (safe key, inside the root); the caller
        closes the file, and compares the stat with the info it holds, since
        the file may have been replaced since that info was read.
        """

        def open_checked() -> tuple[BinaryIO, os.stat_result]:
            found = self._stat_object(key)
            if found is None:
                raise NotFound(f"no object {key!r} in {self.url}")
            handle = found[0].open("rb")
            return handle, os.fstat(handle.fileno())

        return await self.run(open_checked)

    # -- writing -----------------------------------------------------------

    async def put(
        self,
        key: str,
        source: PutSource,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        path = self._data_path(key)
        checked = check_metadata(metadata)
        tmp = await self.run(self._new_tmp)
        try:
            md5 = hashlib.md5(usedforsecurity=False)
            if isinstance(source, bytes | bytearray | memoryview):
                await self.run(_write_all, tmp, [bytes(source)], md5)
            elif isinstance(source, os.PathLike):
                await self.run(_copy_file, Path(source), tmp, md5)
            elif isinstance(source, AsyncIterable):
                await self._write_stream(tmp, source, md5)
            else:
                raise TypeError(
                    f"cannot store a {type(source).__name__}; pass bytes, a Path or a stream"
                )
            sidecar = {
                "etag": md5.hexdigest(),
                "content_type": content_type or guess_content_type(key),
                "cache_control": cache_control,
                "metadata": checked,
            }
            return await self.run(self._commit, key, path, tmp, sidecar)
        finally:
            await self.run(_remove_quietly, tmp)

    def _new_tmp(self) -> Path:
        self._tmp_root.mkdir(parents=True, exist_ok=True)
        return self._tmp_root / f"{uuid.uuid4().hex}.part"

    async def _write_stream(self, tmp: Path, source: AsyncIterable[bytes], md5: Any) -> None:
        handle = await self.run(_open_tmp, tmp)
        try:
            async for chunk in source:
                await self.run(_write_chunk, handle, chunk, md5)
        finally:
            await self.run(handle.close)

    def _commit(self, key: str, path: Path, tmp: Path, sidecar: dict[str, Any]) -> ObjectInfo:
        """Move a finished write into place: sidecar first, then the bytes it describes."""
        st = tmp.stat()
        sidecar.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        meta_path = self._meta_path(key)
        meta_tmp = tmp.with_suffix(".json")
        try:
            meta_tmp.write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
            self._check_folder(key, path)
            with self._folders:
                _move_into_place(meta_tmp, meta_path)
                _move_into_place(tmp, path)
        except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
            _remove_quietly(meta_tmp)
            raise StorageError(
                f"cannot store {key!r}: a folder and an object would share a name"
            ) from exc
        except OSError as exc:
            _remove_quietly(meta_tmp)
            raise StorageError(f"cannot store {key!r}: {exc.strerror}") from exc
        return self._info_for(key, path, path.stat())

    async def delete(self, keys: Iterable[str]) -> None:
        paths = [(key, self._data_path(key)) for key in keys]
        await self.run(self._delete_sync, paths)

    def _delete_sync(self, paths: list[tuple[str, Path]]) -> None:
        for key, path in paths:  # every key is checked before the first file goes
            self._check_folder(key, path)
        for key, path in paths:
            for victim, stop in ((path, self.root), (self._meta_path(key), self._meta_root)):
                with self._folders:
                    try:
                        victim.unlink()
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    except OSError as exc:
                        raise StorageError(f"cannot delete {key!r}: {exc.strerror}") from exc
                    _prune_empty_parents(victim.parent, stop)

    def copy_place(self) -> tuple[str, ...]:
        return ("file",)

    def copy_source(self, key: str) -> CopySource:
        self._data_path(key)  # a safe key, outside the reserved folder
        return CopySource(self.copy_place(), str(self.root), key)

    async def copy_in(self, src: Storage, src_key: str, dst_key: str) -> ObjectInfo | None:
        """A copy from a folder (this one or another) is a copy of its file."""
        source = await self.run(src.copy_source, src_key)
        if source is None or source.place != self.copy_place():
            return None
        info = await src.head(src_key)  # refuses a file reached through a link out of its root
        if info is None:
            raise NotFound(f"no object {src_key!r} in {src.url}")
        return await self.put(
            dst_key,
            Path(source.bucket, source.key),
            content_type=info.content_type,
            cache_control=info.cache_control,
            metadata=info.metadata,
        )

    # -- listing -----------------------------------------------------------

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        problem = key_problem(prefix.rstrip("/")) if prefix.rstrip("/") else None
        if problem is not None:
            raise UnsafeKey(f"bad listing prefix {prefix!r}: {problem}")
        if prefix.startswith(RESERVED + "/"):
            return  # offload's own folder holds no objects
        walk = self._walk(prefix)
        while batch := await self.run(lambda: list(islice(walk, _LIST_BATCH))):
            for info in batch:
                yield info

    def _walk(self, prefix: str) -> Iterator[ObjectInfo]:
        folder, _, name_start = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        yield from self._walk_folder(start, f"{folder}/" if folder else "", name_start)

    def _link_keeps_meaning(self, key: str, entry: os.DirEntry[str]) -> bool:
        """Whether a link met while listing may be listed under ``key`` (see ``_check_real``)."""
        try:
            self._check_real(key, os.path.realpath(entry.path))
        except LinkRefused:
            return False
        return True

    def _walk_folder(self, folder: Path, key_base: str, name_start: str) -> Iterator[ObjectInfo]:
        """Yield objects below ``folder`` in S3's order (UTF-8 bytes of the whole key)."""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror}") from exc
        ordered = []
        for entry in entries:
            if not entry.name.startswith(name_start) or (not key_base and entry.name == RESERVED):
                continue
            if entry.is_symlink() and not self._link_keeps_meaning(key_base + entry.name, entry):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            # A folder's keys all start with "name/", so it sorts as that string.
            ordered.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        ordered.sort(key=lambda item: item[0])
        for _, entry, is_dir in ordered:
            key = key_base + entry.name
            if is_dir:
                yield from self._walk_folder(Path(entry.path), key + "/", "")
                continue
            if key_problem(key) is not None:
                continue  # a name no key can carry (a backslash, a control character)
            try:
                st = entry.stat()
            except OSError:
                continue  # vanished since the scan
            if stat.S_ISREG(st.st_mode):
                yield self._info_for(key, Path(entry.path), st)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _open_tmp(tmp: Path) -> BinaryIO:
    try:
        return tmp.open("wb")
    except OSError as exc:
        raise StorageError(f"cannot write in {tmp.parent}: {exc.strerror}") from exc


def _write_chunk(handle: BinaryIO, chunk: bytes, md5: Any) -> None:
    """Write one chunk; a full disk is the storage's failure, not the caller's."""
    try:
        handle.write(chunk)
    except OSError as exc:
        raise StorageError(f"cannot write {handle.name}: {exc.strerror}") from exc
    md5.update(chunk)


def _write_all(tmp: Path, chunks: list[bytes], md5: Any) -> None:
    with _open_tmp(tmp) as handle:
        for chunk in chunks:
            _write_chunk(handle, chunk, md5)


def _copy_file(src: Path, tmp: Path, md5: Any) -> None:
    """Copy a source file; errors reading it propagate as they are (the caller's file)."""
    with src.open("rb") as reader, _open_tmp(tmp) as writer:
        while chunk := reader.read(CHUNK_SIZE * 4):
            _write_chunk(writer, chunk, md5)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


#: Tries of a move whose folder another process's delete keeps removing.
PLACE_ATTEMPTS = 20


def _move_into_place(src: Path, dst: Path) -> None:
    """``os.replace(src, dst)``, making ``dst``'s folder first.

    A delete of a folder's last object removes the folder (``_prune_empty_parents``),
    so a delete in another worker can remove it between the ``mkdir`` and the
    move (one in this process waits for the storage's lock): then the folder is
    made again and the move retried. A file
    where a folder must be is a real clash and raised at once.
    """
    for attempt in range(1, PLACE_ATTEMPTS + 1):
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            return
        except (FileNotFoundError, FileExistsError):
            # mkdir's FileExistsError: the folder was there, then pruned before is_dir().
            if attempt == PLACE_ATTEMPTS or _file_in_the_way(dst.parent) or not src.exists():
                raise


def _file_in_the_way(folder: Path) -> bool:
    """Whether ``folder`` or one of its parents exists as something other than a folder."""
    for place in (folder, *folder.parents):
        if place.exists() or place.is_symlink():
            return not place.is_dir()
    return False


def _prune_empty_parents(folder: Path, stop: Path) -> None:
    """Remove folders left empty by a delete, as S3 has no empty folders to keep."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent

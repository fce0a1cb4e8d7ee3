"""Webhook bodies -> the files of one attachment.

A CMS describes an upload in one of three JSON shapes, all reduced here to an
``Attachment``: paths under the site's ``uploads_dir``, which one is the
original (its content hash versions every key of the attachment), and the
CMS's attachment id. Pure: no I/O, no aiohttp; every path is checked with
``keys.upload_path_problem`` before anything touches a file.

- WordPress attachment metadata (``_wp_attachment_metadata``): ``file`` is
  relative to the uploads folder (``2024/05/photo-scaled.jpg`` when WordPress
  scaled a big original), ``original_image`` and each ``sizes[*].file`` (and
  ``sizes[*].sources[*].file``, WordPress's extra formats such as WebP) are
  relative to the folder of ``file``. The original is ``original_image`` when
  present, else ``file``.
- A WordPress REST ``/wp/v2/media`` object: ``source_url`` and
  ``media_details.sizes[*].source_url`` are URLs under the site's
  ``uploads_url`` (any scheme); ``media_details.original_image`` as above;
  ``id`` is the attachment id.
- Generic: ``{"files": [...], "original": "...", "attachment_id": ...}``.
  Without ``original`` every file is its own attachment (own version).

A deletion may also be ``{"attachment_id": ...}`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from offload.keys import upload_path_problem

#: Longest attachment id accepted (WordPress ids are integers; others use UUIDs).
MAX_ID_LENGTH = 64
#: Most files one webhook may name.
MAX_FILES = 1000


class PayloadError(ValueError):
    """A body that is not one of the accepted shapes, or names an unsafe path."""


@dataclass(frozen=True)
class Attachment:
    """The files of one upload, each a path relative to ``uploads_dir``."""

    paths: tuple[str, ...]
    #: The path whose content hash versions all the others; None: each file versions itself.
    original: str | None = None
    attachment_id: str | None = None


def parse_attachment(body: Any, *, uploads_url: str = "", deletion: bool = False) -> Attachment:
    """Read a webhook's JSON body; raise PayloadError saying what is wrong."""
    if not isinstance(body, Mapping):
        raise PayloadError("the body must be a JSON object")
    attachment_id = _attachment_id(body.get("attachment_id", body.get("id")))
    if "files" in body:
        attachment = _generic(body, attachment_id)
    elif "source_url" in body or "media_details" in body:
        attachment = _rest_media(body, uploads_url, attachment_id)
    elif "file" in body:
        attachment = _wordpress_metadata(body, attachment_id)
    elif deletion and attachment_id is not None:
        return Attachment((), None, attachment_id)
    else:
        raise PayloadError(
            "the body must be WordPress attachment metadata (file, sizes), a REST media "
            'object (source_url), or {"files": [...]}'
        )
    if not attachment.paths and not (deletion and attachment_id is not None):
        raise PayloadError("the body names no file")
    return attachment


def _attachment_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PayloadError("attachment_id must be a number or a string")
    text = str(value)
    if len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise PayloadError(f"attachment_id must be at most {MAX_ID_LENGTH} printable characters")
    return text


def _checked(path: Any, what: str) -> str:
    if not isinstance(path, str):
        raise PayloadError(f"{what} must be a string")
    problem = upload_path_problem(path)
    if problem is not None:
        raise PayloadError(f"{what}: {problem}: {path[:120]!r}")
    return path


def _unique(paths: Iterable[str]) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(paths))
    if len(result) > MAX_FILES:
        raise PayloadError(f"the body names {len(result)} files; the limit is {MAX_FILES}")
    return result


def _generic(body: Mapping[str, Any], attachment_id: str | None) -> Attachment:
    files = body["files"]
    if not isinstance(files, list):
        raise PayloadError("files must be a list of paths under uploads_dir")
    paths = _unique(_checked(path, f"files[{i}]") for i, path in enumerate(files))
    original = body.get("original")
    if original is not None:
        original = _checked(original, "original")
        if original not in paths:
            paths = _unique((original, *paths))
    return Attachment(paths, original, attachment_id)


def _in_folder(folder: str, name: Any, what: str) -> str:
    if not isinstance(name, str):
        raise PayloadError(f"{what} must be a string")
    if "/" in name:
        raise PayloadError(f"{what} must be a file name in the folder of 'file': {name[:120]!r}")
    return _checked(f"{folder}/{name}" if folder else name, what)


def _size_files(sizes: Any) -> Iterable[tuple[str, Any]]:
    """(what, file name) of every size and every extra format of a size."""
    if sizes in (None, [], {}):  # PHP's empty array arrives as []
        return
    if not isinstance(sizes, Mapping):
        raise PayloadError("sizes must be an object of {name: {file, ...}}")
    for name, size in sizes.items():
        if not isinstance(size, Mapping):
            raise PayloadError(f"sizes.{name} must be an object with a file")
        if "file" in size:
            yield f"sizes.{name}.file", size["file"]
        yield from _source_files(size, f"sizes.{name}.sources")


def _wordpress_metadata(body: Mapping[str, Any], attachment_id: str | None) -> Attachment:
    main = _checked(body["file"], "file")
    folder = main.rpartition("/")[0]
    original = main
    if body.get("original_image"):
        original = _in_folder(folder, body["original_image"], "original_image")
    sizes = [_in_folder(folder, name, what) for what, name in _size_files(body.get("sizes"))]
    formats = [_in_folder(folder, name, what) for what, name in _source_files(body, "sources")]
    return Attachment(_unique([original, main, *formats, *sizes]), original, attachment_id)


def _source_files(holder: Mapping[str, Any], what: str) -> Iterable[tuple[str, Any]]:
    """(what, file) of each extra format (WebP, AVIF) WordPress made of one image."""
    sources = holder.get("sources")
    if isinstance(sources, Mapping):
        for mime, source in sources.items():
            if isinstance(source, Mapping) and "file" in source:
                yield f"{what}.{mime}.file", source["file"]


def _path_of_url(url: Any, uploads_url: str, what: str) -> str:
    if not isinstance(url, str):
        raise PayloadError(f"{what} must be a URL string")
    if not uploads_url:
        raise PayloadError("REST media objects need the site's uploads_url to be set")
    try:
        base, given = urlsplit(uploads_url), urlsplit(url)
        given_host = (given.hostname or "").lower()
    except ValueError:
        raise PayloadError(f"{what} is not a URL: {url[:120]!r}") from None
    base_path = base.path.rstrip("/") + "/"
    if (
        given.scheme not in ("http", "https", "")
        or given_host != (base.hostname or "").lower()
        or not given.path.startswith(base_path)
    ):
        raise PayloadError(f"{what} is not under uploads_url: {url[:120]!r}")
    return _checked(unquote(given.path[len(base_path) :], errors="strict"), what)


def _rest_sources(holder: Mapping[str, Any], uploads_url: str, what: str) -> list[str]:
    """Paths of the extra formats (``sources[mime].source_url``) of a REST size."""
    sources = holder.get("sources")
    if not isinstance(sources, Mapping):
        return []
    return [
        _path_of_url(source["source_url"], uploads_url, f"{what}.sources.{mime}.source_url")
        for mime, source in sources.items()
        if isinstance(source, Mapping) and "source_url" in source
    ]


def _rest_media(body: Mapping[str, Any], uploads_url: str, attachment_id: str | None) -> Attachment:
    details = body.get("media_details") or {}
    if not isinstance(details, Mapping):
        raise PayloadError("media_details must be an object")
    try:
        main = _path_of_url(body.get("source_url"), uploads_url, "source_url")
        folder = main.rpartition("/")[0]
        original = main
        if details.get("original_image"):
            original = _in_folder(folder, details["original_image"], "original_image")
        sizes = details.get("sizes") or {}
        if not isinstance(sizes, Mapping):
            raise PayloadError("media_details.sizes must be an object")
        others = []
        for name, size in sizes.items():
            if not isinstance(size, Mapping) or "source_url" not in size:
                raise PayloadError(f"media_details.sizes.{name} must have a source_url")
            what = f"media_details.sizes.{name}.source_url"
            others.append(_path_of_url(size["source_url"], uploads_url, what))
            others.extend(_rest_sources(size, uploads_url, f"media_details.sizes.{name}"))
        others.extend(_rest_sources(details, uploads_url, "media_details"))
    except UnicodeDecodeError:
        raise PayloadError("a URL's path is not UTF-8 once percent-decoded") from None
    return Attachment(_unique([original, main, *others]), original, attachment_id)

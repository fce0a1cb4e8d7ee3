"""Content types by file extension, the same on every machine.

``mimetypes.guess_type`` reads /etc/mime.types and the like, so two hosts
can disagree about one file. A CDN caches whatever type the origin first
said, so offload uses Python's built-in table plus the web formats it lacks.
"""

from __future__ import annotations

import mimetypes

DEFAULT_CONTENT_TYPE = "application/octet-stream"

_WEB_TYPES = {
    ".avif": "image/avif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".jxl": "image/jxl",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".vtt": "text/vtt",
    ".wasm": "application/wasm",
    ".md": "text/markdown",
}

# A compressed file is served as what it is (its bytes are gzip), never as the
# type inside it with no Content-Encoding to say so.
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}

# MimeTypes() starts from the built-in table only; it reads no system files.
_TABLE = mimetypes.MimeTypes()
for _extension, _type in _WEB_TYPES.items():
    _TABLE.add_type(_type, _extension)


def guess_content_type(key: str) -> str:
    """The content type for a key's extension (case-insensitive), else octet-stream."""
    name = key.rsplit("/", 1)[-1].lower()
    guessed, encoding = _TABLE.guess_type(name, strict=False)
    if encoding:
        return _COMPRESSED.get(encoding, DEFAULT_CONTENT_TYPE)
    return guessed or DEFAULT_CONTENT_TYPE

"""Output formats of variants, and the choice of one for a request.

Apart from ``render`` so that naming a variant (``variants``, and through it
the offloader) does not load libvips.
"""

from __future__ import annotations

#: Output formats: (content type, file extension, libvips saver suffix).
OUTPUTS = {
    "jpeg": ("image/jpeg", "jpg"),
    "png": ("image/png", "png"),
    "webp": ("image/webp", "webp"),
    "avif": ("image/avif", "avif"),
    "gif": ("image/gif", "gif"),
}
#: The original's type -> the format a variant keeps when none is asked for.
SAME_FORMAT = {
    "image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp",
    "image/avif": "avif", "image/gif": "gif",
}  # fmt: skip


def output_format(asked: str | None, accept: str, original_type: str) -> str:
    """The format to write: the one asked for, or for ``auto`` (and none) the best the
    client takes: AVIF, then WebP, then the original's own (JPEG when it has none we write).
    """
    same = SAME_FORMAT.get(original_type.split(";")[0].strip().lower(), "jpeg")
    if asked is None:
        return same
    if asked != "auto":
        return asked
    taken = _accepted(accept)
    for fmt in ("avif", "webp"):
        if f"image/{fmt}" in taken:
            return fmt
    return same


def _accepted(accept: str) -> set[str]:
    """Media types the Accept header takes (q=0 excluded; wildcards ignored on purpose:
    ``*/*`` is no promise that a browser decodes AVIF)."""
    taken = set()
    for item in accept.split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        taken.add(kind.lower())
    return taken


def extension(fmt: str) -> str:
    return OUTPUTS[fmt][1]

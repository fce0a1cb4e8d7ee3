"""The transform URL grammar: ``/{transform_prefix}/{options}/{key}``.

``options`` is a preset name (``thumb``), or ``name=value`` pairs joined by
commas: ``w``, ``h`` (pixels), ``fit`` (``cover``, ``contain``, ``inside``),
``q`` (1-100), ``f`` (``jpeg``, ``png``, ``webp``, ``avif``, ``auto``), ``dpr``
(1-4), ``g`` (``center``, a compass point such as ``north`` or ``southeast``,
``attention``, ``entropy``, or a focal point ``fp:X:Y`` with X and Y from 0 to
1) and ``anim`` (``1`` keeps an animation's frames, ``0`` takes the first).

Who may ask for what: a preset, or a width alone that the site lists in
``transform_widths``, is served to anyone; any other option set carries a
signature as its last option, ``s=<sig>``, made with the site's
``signing_secret`` as imgproxy signs: the unpadded URL-safe base64 of the
HMAC-SHA256 of ``/{options}/{key}`` (the canonical option text and the key as
stored, not percent-encoded). It never expires; rotate the secret to revoke.

The grammar itself (``parse_options``, ``TransformOptions``, ``MAX_DIMENSION``)
is defined in ``offload.config.transform_options`` and re-exported here: the
settings check presets and ``transform_widths`` with it when the config loads.

One URL per variant: the options must be written in their canonical order and
spelling (``canonical()``), else the answer is 400 with the canonical form.
A CDN then caches each variant under one URL, so a purge of the URLs that
offload can derive from a stored variant reaches every cached copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from offload.config.settings import Site
from offload.config.transform_options import (
    COMPASS,
    FITS,
    FORMATS,
    MAX_DIMENSION,
    SMART,
    OptionsError,
    TransformOptions,
    parse_options,
)
from offload.config.transform_options import preset_problems as named_preset_problems

__all__ = [  # the grammar, re-exported for the modules that transform images
    "COMPASS",
    "FITS",
    "FORMATS",
    "MAX_DIMENSION",
    "SMART",
    "OptionsError",
    "SignatureError",
    "TransformOptions",
    "is_open",
    "parse_options",
    "parse_transform",
    "preset_problems",
    "presets",
    "resolve",
    "sign_options",
    "url_segment",
]

_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")


class SignatureError(ValueError):
    """Options that need a signature and lack a valid one: a 403."""


def presets(site: Site) -> dict[str, str]:
    return dict(site.transforms)


def parse_transform(site: Site, text: str) -> TransformOptions:
    """A preset's options, or the options ``text`` spells (a signature not checked here)."""
    preset = presets(site).get(text)
    if preset is not None:
        return parse_options(preset)
    return parse_options(_unsigned_text(text)[0])


def _unsigned_text(text: str) -> tuple[str, str | None]:
    """(options text, signature or None): the signature is the last option, ``s=``."""
    head, sep, sig = text.rpartition(",s=")
    if sep:
        return head, sig
    if text.startswith("s="):
        raise OptionsError("a signature needs options to sign")
    return text, None


def sign_options(secret: str, canonical: str, key: str) -> str:
    """imgproxy's way: unpadded URL-safe base64 of HMAC-SHA256 over ``/{options}/{key}``."""
    if not secret:
        raise ValueError("the signing secret is empty")
    mac = hmac.new(secret.encode(), f"/{canonical}/{key}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def url_segment(site: Site, options: TransformOptions, key: str) -> str:
    """The options segment a URL for ``options`` must carry (signed when it must be)."""
    canonical = options.canonical()
    if is_open(site, options):
        return canonical
    return f"{canonical},s={sign_options(site.signing_secret.reveal(), canonical, key)}"


def is_open(site: Site, options: TransformOptions) -> bool:
    """Whether these options are served unsigned: a width alone in ``transform_widths``."""
    return options.width_only and options.width in site.transform_widths


def resolve(site: Site, segment: str, key: str) -> TransformOptions:
    """The options a request's segment stands for, checked: OptionsError or SignatureError.

    ``key`` is the original's key (decoded), as the signature covers it.
    """
    preset = presets(site).get(segment)
    if preset is not None:
        return parse_options(preset)
    text, sig = _unsigned_text(segment)
    options = parse_options(text)
    canonical = options.canonical()
    if text != canonical:
        raise OptionsError(f"write the options in canonical order and form: {canonical}")
    if sig is None:
        if is_open(site, options):
            return options
        raise SignatureError(
            "these options need a signature made with the site's signing_secret; only"
            " presets and the site's transform_widths are served unsigned"
        )
    if not site.signing_secret:
        raise SignatureError("signed transforms are off: the site has no signing_secret")
    expected = sign_options(site.signing_secret.reveal(), canonical, key)
    if not _SIGNATURE.fullmatch(sig) or not hmac.compare_digest(expected, sig):
        raise SignatureError("bad signature")
    return options


def preset_problems(site: Site) -> list[str]:
    """Presets the route could not serve, one line each; loading refuses such a config
    (``offload.config.transform_options.preset_problems``), so a loaded site has none."""
    return [
        f"sites.{site.name}.transforms.{name}: {problem}"
        for name, problem in named_preset_problems(site.transforms)
    ]

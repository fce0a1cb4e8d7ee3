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
from dataclasses import dataclass, fields
from typing import Any

from offload.config.settings import Site

FITS = ("cover", "contain", "inside")
FORMATS = ("jpeg", "png", "webp", "avif", "auto")
COMPASS = (
    "center", "north", "south", "east", "west",
    "northeast", "northwest", "southeast", "southwest",
)  # fmt: skip
SMART = ("attention", "entropy")
#: Largest width or height asked for, after ``dpr`` (libvips' own limit is far higher).
MAX_DIMENSION = 8192
_INT = re.compile(r"[1-9][0-9]{0,4}")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]?)(?:\.[0-9]{1,3})?")
_FOCAL = re.compile(r"fp:([0-9.]+):([0-9.]+)")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")


class OptionsError(ValueError):
    """Unknown or malformed options: a 400, with a message fit for the client."""


class SignatureError(ValueError):
    """Options that need a signature and lack a valid one: a 403."""


@dataclass(frozen=True)
class TransformOptions:
    """One transform; None means not given (the renderer's default applies)."""

    width: int | None = None
    height: int | None = None
    fit: str | None = None
    quality: int | None = None
    format: str | None = None
    dpr: float | None = None
    gravity: str | None = None
    animated: bool | None = None

    def canonical(self) -> str:
        """The option text in one fixed order, e.g. ``w=480,h=320,fit=cover,q=75,f=webp``."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                parts.append(f"{_NAMES[f.name]}={_show(value)}")
        return ",".join(parts)

    def with_format(self, fmt: str) -> TransformOptions:
        return TransformOptions(**{**self.__dict__, "format": fmt})

    @property
    def width_only(self) -> bool:
        return self.width is not None and self == TransformOptions(width=self.width)


_NAMES = {
    "width": "w", "height": "h", "fit": "fit", "quality": "q", "format": "f",
    "dpr": "dpr", "gravity": "g", "animated": "anim",
}  # fmt: skip
_FIELDS = {short: name for name, short in _NAMES.items()}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def parse_options(text: str) -> TransformOptions:
    """``w=480,h=320,fit=cover`` (any order) -> TransformOptions; OptionsError if bad."""
    if not text:
        raise OptionsError("no transform options")
    values: dict[str, Any] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        if not eq or not value:
            raise OptionsError(f"malformed option {part[:40]!r}: expected name=value")
        field = _FIELDS.get(name)
        if field is None:
            raise OptionsError(f"unknown option {name[:40]!r}")
        if field in values:
            raise OptionsError(f"option {name!r} given twice")
        values[field] = _value(name, value)
    options = TransformOptions(**values)
    if options.width is None and options.height is None and options.fit is not None:
        raise OptionsError("fit needs w or h")
    if options.fit in ("cover", "contain") and (options.width is None or options.height is None):
        raise OptionsError(f"fit={options.fit} needs both w and h")
    scale = options.dpr or 1.0
    for size in (options.width, options.height):
        if size is not None and size * scale > MAX_DIMENSION:
            raise OptionsError(f"w and h times dpr must be at most {MAX_DIMENSION}")
    return options


def _value(name: str, value: str) -> Any:
    shown = repr(value[:40])
    if name in ("w", "h"):
        if not _INT.fullmatch(value) or int(value) > MAX_DIMENSION:
            raise OptionsError(f"{name} must be a whole number from 1 to {MAX_DIMENSION}")
        return int(value)
    if name == "q":
        if not _INT.fullmatch(value) or int(value) > 100:
            raise OptionsError("q must be a whole number from 1 to 100")
        return int(value)
    if name == "fit":
        return _choice(name, value, FITS)
    if name == "f":
        return _choice(name, value, FORMATS)
    if name == "dpr":
        if not _DECIMAL.fullmatch(value) or not 1 <= float(value) <= 4:
            raise OptionsError("dpr must be a number from 1 to 4")
        return float(value)
    if name == "anim":
        return _choice(name, value, ("0", "1")) == "1"
    # g: a compass point, a smart crop, or a focal point.
    if value in COMPASS or value in SMART:
        return value
    focal = _FOCAL.fullmatch(value)
    if focal and all(_DECIMAL.fullmatch(v) and float(v) <= 1 for v in focal.groups()):
        return f"fp:{_show(float(focal[1]))}:{_show(float(focal[2]))}"
    raise OptionsError(
        f"g must be one of {', '.join(COMPASS + SMART)} or fp:X:Y (0 to 1), not {shown}"
    )


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise OptionsError(f"{name} must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


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
    """Presets whose option text does not parse (said when the config is checked)."""
    problems = []
    for name, text in site.transforms:
        try:
            parse_options(text)
        except OptionsError as exc:
            problems.append(f"sites.{site.name}.transforms.{name}: {exc}")
    return problems

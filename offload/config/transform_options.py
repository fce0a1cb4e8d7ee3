"""The transform option grammar: ``w=480,h=320,fit=cover,q=75,f=webp`` and its limits.

The pure part of ``offload.images.options`` (which re-exports it): parsing and
spelling option text, with no site, signature or image library involved. It
lives in ``config`` because the settings check presets and ``transform_widths``
when the config loads, and ``config`` sits below ``images``: one definition of
the grammar and of ``MAX_DIMENSION`` serves both the load-time check and the
transform route, so a setting that loads is one the route accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

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


class OptionsError(ValueError):
    """Unknown or malformed options: a 400, with a message fit for the client."""


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


def preset_problems(presets: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(preset name, problem) for each preset the transform route could not serve.

    A preset stands in place of the options in ``/_img/{preset}/{key}``, so its
    name must not read as options (options always hold '='), and its text must
    be options the route accepts; otherwise every request for it would be a 400.
    """
    problems = []
    for name, text in presets:
        if "=" in name:
            problems.append((name, "a preset name with '=' would be read as options"))
        elif not text.strip():
            problems.append((name, "the preset is empty: give its options, e.g. w=150,h=150"))
        else:
            try:
                parse_options(text)
            except OptionsError as exc:
                problems.append((name, f"{exc} (in {text[:60]!r})"))
    return problems

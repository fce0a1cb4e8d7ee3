"""The jinja2 environment over the templates that ship inside the package.

The top-level ``templates/`` folder is installed as ``offload.templates`` (see
pyproject.toml), so a wheel and a source checkout load the same files.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offload.config.kinds import Secret

if TYPE_CHECKING:
    import jinja2


def templates_dir() -> Path:
    """Where the installed templates are."""
    return Path(str(importlib.resources.files("offload.templates")))


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2  # imported on first use: most commands render nothing

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=jinja2.select_autoescape(["html", "html.j2", "xml.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["toml"] = toml_value
    return env


def render(name: str, **context: Any) -> str:
    """Render one template; a missing variable is an error, never an empty string."""
    return environment().get_template(name).render(**context)


def toml_value(value: Any) -> str:
    """A Python value as a TOML literal, for example configs (secrets render empty)."""
    if isinstance(value, Secret):
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)

"""The example configuration (``offload settings --example``, ``offload config init``).

One template, ``offload.toml.j2``, naming every setting: each global and
site setting as a commented ``# name = default`` line, so uncommenting any one
line gives a valid file. Settings unset by default show an example value
(``UNSET_EXAMPLES``) instead of "(unset)", which would not be TOML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from offload import __version__
from offload.config.render import render
from offload.config.settings import declared_settings

#: Values the example shows uncommented in its [sites.blog] table.
SITE_EXAMPLES: dict[str, Any] = {
    "storage": "file:///srv/offload/blog",
    "prefix": "wp-content/uploads",
    "uploads_url": "https://blog.example.com/wp-content/uploads",
    "cdn_url": "https://cdn.example.com",
    "hostnames": ["origin.example.com"],
}

#: Settings unset by default: a value to start from, so an uncommented line is valid.
UNSET_EXAMPLES: dict[str, Any] = {
    "uploads_dir": "/var/www/html/wp-content/uploads",
    "s_maxage": 86400,
    "cdn_max_age": 86400,
}


def example_config(site_values: Mapping[str, Any] = SITE_EXAMPLES) -> str:
    """The example file; ``site_values`` are shown uncommented in its site table."""
    rows = declared_settings()
    return render(
        "offload.toml.j2",
        version=__version__,
        global_settings=[r for r in rows if r.scope == "global"],
        site_settings=[r for r in rows if r.scope == "site"],
        example_values=dict(site_values),
        unset_examples=UNSET_EXAMPLES,
    )

"""Who may see the operator's detail: a request bearing the ``admin_token``.

Storage URLs, local paths and a storage's own error text help an operator and
an attacker alike, so answers meant for everyone leave them out, and show them
only to ``Authorization: Bearer <admin_token>`` (compared in constant time).
With no ``admin_token`` set nobody gets them over HTTP; the server still logs
each storage's state at start-up.
"""

from __future__ import annotations

from aiohttp import web

from offload.server.appkeys import SETTINGS


def is_operator(request: web.Request) -> bool:
    """Whether the request carries the configured admin token."""
    token = request.app[SETTINGS].admin_token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and token.matches(value.strip())

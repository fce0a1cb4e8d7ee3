"""Who may see the operator's pages: a request bearing the ``admin_token``, or from ``admin_allow``.

Storage URLs, local paths, a storage's own error text and the metrics help an
operator and an attacker alike, so answers meant for everyone leave them out,
and show them only to ``Authorization: Bearer <admin_token>`` (compared in
constant time) or to a client whose address is in ``admin_allow`` (a
Prometheus on the same network, say). The address is the connection's peer,
never a header a client can write. With neither set nobody gets them over
HTTP; the server still logs each storage's state at start-up.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from aiohttp import web

from offload.server.appkeys import SETTINGS
from offload.server.logs import request_id

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_REFUSED = "operator page: send Authorization: Bearer <admin_token>, or ask from admin_allow"


def is_operator(request: web.Request) -> bool:
    """Whether the request carries the configured admin token or comes from an allowed address."""
    settings = request.app[SETTINGS]
    token = settings.admin_token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and token.matches(value.strip()):
        return True
    return _allowed(request.remote, settings.admin_allow)


def refusal() -> web.Response:
    """The answer to a request for an operator page from someone else: 401, saying how to ask."""
    return web.json_response(
        {"error": _REFUSED, "request_id": request_id()},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="offload"', "Cache-Control": "no-store"},
    )


def _allowed(remote: str | None, allow: tuple[str, ...]) -> bool:
    if not remote or not allow:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:  # a Unix socket's peer, say
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(allow))


@cache
def _networks(allow: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allow)

"""``GET /_offload/status``: one plain HTML page an operator can read on a phone.

Per site: whether its storage answers and how fast, and the objects and bytes
the manifest holds; then the last webhooks with their outcome, the files that
failed, the sync runs and their result, the CDN purges waiting or given up,
the origin's cache hit rate and requests per second, and the version. No
JavaScript and no external file: the page is a snapshot, reload it to
refresh. It is an operator page (the ``admin_token`` or an ``admin_allow``
address), like the metrics, because it names paths, storage URLs and errors.
Its numbers are the answering worker's own (``--workers N``: each worker keeps
its own recent webhooks), but for the sync runs and the purges, which every
worker and host reads from the manifest database.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Iterable, Sequence

from aiohttp import web

from offload import __version__
from offload.manifest import ManifestError, PurgeQueue
from offload.server.appkeys import MANIFEST, METRICS, RECENT, SETTINGS, STORAGES, SYNC_RUNS
from offload.server.health import HEALTH_WITHIN, SiteHealth, check_storage
from offload.server.operator import is_operator, refusal

STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1em;color:#222;max-width:60em}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #ddd;vertical-align:top}
td.u{overflow-wrap:anywhere;min-width:8em}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176b2c}.bad{color:#b3261e;font-weight:600}
.wrap{overflow-x:auto}small{color:#666}
"""


async def status_page(request: web.Request) -> web.Response:
    """The page; a 401 for anyone but an operator."""
    if not is_operator(request):
        return refusal()
    app = request.app
    settings = app[SETTINGS]
    within = min(settings.storage_timeout, HEALTH_WITHIN)
    storages = app[STORAGES]

    async def timed(name: str) -> tuple[SiteHealth, float]:
        started = time.perf_counter()
        result = await check_storage(name, storages[name], within)
        return result, (time.perf_counter() - started) * 1000

    checks = await asyncio.gather(*(timed(name) for name in storages))
    manifest = app[MANIFEST]
    loop = asyncio.get_running_loop()
    purging = any(site.purge != "none" for site in settings.sites.values())

    def from_manifest() -> tuple[dict[str, tuple[int, int]], PurgeQueue | None]:
        totals = {name: manifest.totals(name) for name in storages}
        return totals, manifest.purge_queue(limit=20) if purging else None

    try:
        totals, queue = await loop.run_in_executor(None, from_manifest)
        recent_runs = await app[SYNC_RUNS].recent(20)
        manifest_error = ""
    except ManifestError as exc:  # the page is most needed when something is down
        totals, queue, recent_runs = {}, None, []
        manifest_error = str(exc)
    metrics = app[METRICS]
    lookups = metrics.hits + metrics.misses
    hit_rate = f"{100 * metrics.hits / lookups:.1f} %" if lookups else "no lookups yet"
    recent = app[RECENT]

    sites = _table(
        ("site", "storage", "answers", "latency", "objects", "bytes"),
        (
            (
                result.site,
                result.storage,
                _state(result.ok, result.error),
                f"{ms:.0f} ms",
                _number(totals[result.site][0]) if totals else "?",
                _size(totals[result.site][1]) if totals else "?",
            )
            for result, ms in checks
        ),
        numeric=(3, 4, 5),
        breakable=(1,),
    )
    webhooks = _table(
        ("when", "site", "hook", "attachment", "status", "files", "took"),
        (
            (
                _when(w.at),
                w.site,
                w.hook,
                w.attachment,
                _state(w.status == 200, None, str(w.status)),
                w.summary,
                f"{w.duration_ms:.0f} ms",
            )
            for w in recent.webhooks
        ),
        numeric=(6,),
        breakable=(5,),
        empty="no webhook since this worker started",
    )
    failed = _table(
        ("when", "site", "file", "error"),
        ((_when(f.at), f.site, f.path, f.error) for f in recent.failed),
        breakable=(2, 3),
        empty="no failed file since this worker started",
    )
    runs = _table(
        ("started", "site", "run", "host", "status", "transferred", "bytes", "failed", "exit"),
        (
            (
                _when(r.started),
                r.site,
                r.id,
                r.host,
                _state(r.status != "failed", None, r.status),
                _number(r.counts.get("transferred", 0)),
                _size(r.counts.get("bytes", 0)),
                _number(r.counts.get("failed", 0)),
                "" if r.exit_code is None else str(r.exit_code),
            )
            for r in recent_runs
        ),
        numeric=(5, 6, 7, 8),
        empty="no sync run yet",
    )
    purges = _purges(queue) if not manifest_error else ""
    if manifest_error:
        problem = _state(False, None, manifest_error)
        purges = runs = f"<p>The manifest cannot be read: {problem}</p>"
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>offload status</title><style>{STYLE}</style></head>
<body>
<h1>offload {html.escape(__version__)} <small>status at {_when(time.time())}</small></h1>
<p id="origin">Origin, this worker: cache hit rate <b>{hit_rate}</b>,
<b>{metrics.rate.per_second():.2f}</b> requests per second (last minute).</p>
<h2>Sites</h2>{sites}
<h2>Last webhooks</h2>{webhooks}
<h2>Failed files</h2>{failed}
<h2>Sync runs</h2>{runs}
<h2>CDN purges</h2>{purges}
</body></html>
"""
    return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


def _purges(queue: PurgeQueue | None) -> str:
    """The purge outbox: what waits (with its last error) and what was given up."""
    if queue is None:
        return '<p><small>no site purges its CDN (purge = "none")</small></p>'
    now = time.time()
    oldest = f", the oldest for {now - queue.oldest:.0f} s" if queue.oldest is not None else ""
    summary = (
        f'<p id="purges">Waiting: <b>{queue.waiting}</b> ({queue.claimed} being sent)'
        f"{html.escape(oldest)}; given up: "
        f"{_state(queue.given_up == 0, None, str(queue.given_up))}.</p>"
    )
    waiting = _table(
        ("site", "purge", "attempts", "next try", "last error"),
        (
            (
                e.item.site,
                e.item.value or e.item.kind,
                str(e.attempts),
                _when(e.next_at),
                e.last_error or "",
            )
            for e in queue.entries
        ),
        numeric=(2,),
        breakable=(1, 4),
        empty="nothing waits",
    )
    given_up = _table(
        ("given up", "site", "purge", "attempts", "error"),
        (
            (
                _when(g.gave_up_at),
                g.item.site,
                g.item.value or g.item.kind,
                str(g.attempts),
                g.error,
            )
            for g in queue.recent_give_ups
        ),
        numeric=(3,),
        breakable=(2, 4),
        empty="none given up",
    )
    return summary + waiting + given_up


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Sequence[int] = (),
    breakable: Sequence[int] = (),
    empty: str = "nothing",
) -> str:
    """An HTML table; every cell is escaped unless it is already markup from ``_state``."""
    lines = []
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            shown = cell if isinstance(cell, _Markup) else html.escape(str(cell))
            klass = ' class="n"' if index in numeric else ' class="u"' if index in breakable else ""
            cells.append(f"<td{klass}>{shown}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    if not lines:
        return f"<p><small>{html.escape(empty)}</small></p>"
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    return f'<div class="wrap"><table><tr>{head}</tr>{"".join(lines)}</table></div>'


class _Markup(str):
    """A cell already written as HTML."""


def _state(ok: bool, error: str | None, text: str | None = None) -> _Markup:
    shown = html.escape(text if text is not None else ("yes" if ok else f"no: {error or ''}"))
    return _Markup(f'<span class="{"ok" if ok else "bad"}">{shown}</span>')


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + " UTC"


def _number(value: int) -> str:
    return f"{value:,}"


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"

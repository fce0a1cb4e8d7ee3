"""Rows to dataclasses and back, shared by both stores (their SQL differs; these do not)."""

# ruff: noqa: S608 - SQL is put together from this module's constants; values are bound

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from offload.manifest.base import (
    HOST_STOPPED,
    ManifestRow,
    PurgeEntry,
    PurgeGiveUp,
    PurgeItem,
    PurgeQueue,
    SyncRunRecord,
    newest_messages,
)

ENTRY_COLUMNS = "id, site, kind, value, created_at, attempts, next_at, last_error"
GIVE_UP_COLUMNS = "site, kind, value, created_at, gave_up_at, attempts, error"
RUN_COLUMNS = "id, site, host, status, started, finished, heartbeat, exit_code, counts, messages"
_RUN_SET = (
    "host = {p}, status = {p}, started = {p}, finished = {p}, heartbeat = {p}, "
    "exit_code = {p}, counts = {p}, messages = {p} WHERE site = {p} AND id = {p}"
)
SQLITE_UPDATE_RUN = "UPDATE sync_runs SET " + _RUN_SET.format(p="?")
POSTGRES_UPDATE_RUN = "UPDATE sync_runs SET " + _RUN_SET.format(p="%s")
SQLITE_INSERT_RUN = f"INSERT INTO sync_runs ({RUN_COLUMNS}) VALUES ({', '.join('?' * 10)})"
POSTGRES_INSERT_RUN = f"INSERT INTO sync_runs ({RUN_COLUMNS}) VALUES ({', '.join(['%s'] * 10)})"


def row_values(row: ManifestRow, now: float) -> tuple[object, ...]:
    return (
        row.site,
        row.key,
        row.path,
        row.version,
        row.size,
        row.sha256,
        row.etag,
        row.attachment_id,
        row.mtime,
        row.offloaded_at or now,
    )


def entry(row: Sequence[Any]) -> PurgeEntry:
    return PurgeEntry(
        id=int(row[0]),
        item=PurgeItem(row[1], row[2], row[3]),
        created_at=row[4],
        attempts=int(row[5]),
        next_at=row[6],
        last_error=row[7],
    )


def sync_run(row: Sequence[Any]) -> SyncRunRecord:
    return SyncRunRecord(
        id=row[0],
        site=row[1],
        host=row[2],
        status=row[3],
        started=row[4],
        finished=row[5],
        heartbeat=row[6],
        exit_code=row[7],
        counts=json.loads(row[8]),
        messages=json.loads(row[9]),
    )


def run_values(record: SyncRunRecord) -> tuple[object, ...]:
    """For INSERT (RUN_COLUMNS order)."""
    return (
        record.id,
        record.site,
        record.host,
        record.status,
        record.started,
        record.finished,
        record.heartbeat,
        record.exit_code,
        json.dumps(record.counts),
        json.dumps(newest_messages(record.messages)),
    )


def update_values(record: SyncRunRecord) -> tuple[object, ...]:
    """For UPDATE (the SET columns, then site and id)."""
    return (*run_values(record)[2:], record.site, record.id)


def stopped_values(run: SyncRunRecord, now: float) -> tuple[object, ...]:
    """A running run whose host stopped heartbeating: failed, for UPDATE."""
    run.status, run.finished = "failed", now
    run.messages = [*run.messages, HOST_STOPPED]
    return update_values(run)


def purge_queue(
    by_site: dict[str, int],
    claimed: int,
    oldest: float | None,
    entries: Sequence[Sequence[Any]],
    given_up: int,
    give_ups: Sequence[Sequence[Any]],
) -> PurgeQueue:
    """The outbox's look from its query results (ENTRY_COLUMNS, GIVE_UP_COLUMNS rows)."""
    return PurgeQueue(
        waiting=sum(by_site.values()),
        claimed=int(claimed),
        oldest=oldest,
        by_site=by_site,
        entries=[entry(row) for row in entries],
        given_up=int(given_up),
        recent_give_ups=[PurgeGiveUp(PurgeItem(*row[:3]), *row[3:]) for row in give_ups],
    )

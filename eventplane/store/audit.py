"""The audit_events table: a batched writer off the request path, and the query.

Fed by the API layer's audit recording (eventplane/api/audit.py), which hands
over one finished `AuditRecord` per request; consumed by the audit REST
endpoint and `epctl audit` through `query_audit`.

`AuditWriter.record` never waits: it puts the record on a bounded queue and
returns. One task drains the queue on its own connection, one COPY per batch
(up to `batch_size` records, or what arrived within `flush_interval` of the
first; flush() sends what is queued at once). When the queue is full — the database is down or slower than the
request rate — the record is DROPPED: `dropped` counts them and a warning is
logged (the first, then every 1000th). Requests are never slowed or refused
for the sake of their audit record; the counter tells an operator what was
lost. A batch the database refuses is retried once on a new connection, then
counted in `failed` and dropped.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import orjson

log = logging.getLogger("eventplane.store.audit")

COLUMNS = ("audit_id", "stage", "level", "time_received", "time_completed", "user_name", "user_groups", "verb",
           "api_group", "api_version", "resource", "subresource", "namespace", "name", "request_uri", "source_ip",
           "user_agent", "response_code", "outcome", "request_object", "response_object", "annotations",
           "transport")
MAX_QUERY_LIMIT = 10_000

RETRY_DELAY = 0.1  # seconds before a refused batch is written again


class AuditRecord(NamedTuple):
    """One audit event, as stored (the API layer has already applied the policy).

    A NamedTuple, not a dataclass: one is made per request, and a frozen dataclass of this many
    fields costs several times as much to make. `audit_id` is a UUID or its text."""

    audit_id: uuid.UUID | str
    stage: str
    level: str
    time_received: datetime
    time_completed: datetime
    user_name: str
    verb: str
    request_uri: str
    outcome: str
    transport: str
    user_groups: tuple[str, ...] = ()
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    source_ip: str | None = None
    user_agent: str | None = None
    response_code: int | None = None
    request_object: Any = None
    response_object: Any = None
    annotations: dict[str, str] | None = None

    def row(self) -> tuple:
        """The record in COLUMNS order, its JSON values encoded (by the writer's task, off the request)."""
        return (self.audit_id, self.stage, self.level, self.time_received, self.time_completed, self.user_name,
                list(self.user_groups), self.verb, self.api_group, self.api_version, self.resource,
                self.subresource, self.namespace, self.name, self.request_uri, self.source_ip, self.user_agent,
                self.response_code, self.outcome, _jsonb(self.request_object), _jsonb(self.response_object),
                _jsonb(self.annotations or None), self.transport)


# orjson, as json.dumps(default=str) would: what it cannot encode (and datetimes, dataclasses) is str()'d
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _jsonb(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # a key that is not a string, an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":"), default=str)


class AuditWriter:
    """`writer = AuditWriter(database_url); await writer.start(); writer.record(r); …; await writer.close()`.

    `connect` replaces how the writer opens its connection (tests, other drivers' settings)."""

    def __init__(self, database_url: str, *, connect: Callable[[], Any] | None = None, queue_size: int = 10_000,
                 batch_size: int = 500, flush_interval: float = 0.025) -> None:
        self._connect = connect or (lambda: asyncpg.connect(database_url))
        self._queue: asyncio.Queue[AuditRecord] = asyncio.Queue(maxsize=queue_size)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self.dropped = 0
        self.failed = 0
        self.written = 0
        self._nap: asyncio.Future | None = None  # the writer's wait for a batch to fill; flush() ends it
        self._flushing = 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("AuditWriter.start() called twice")
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def record(self, rec: AuditRecord) -> None:
        """Queue one record; never blocks. A full queue drops it (see the module docstring)."""
        try:
            self._queue.put_nowait(rec)
            if self._nap is not None and self._queue.qsize() >= self.batch_size:
                _wake(self._nap)  # a full batch goes at once
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("audit queue full: %d audit records dropped so far (is the database reachable?)",
                            self.dropped)

    async def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every record queued so far is written (or given up); False on timeout."""
        self._flushing += 1
        if self._nap is not None:
            _wake(self._nap)  # what is queued goes now, not when the batch's time is up
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._flushing -= 1

    async def close(self) -> None:
        """Write what is queued (for a few seconds at most), then stop."""
        if self._task is None:
            return
        await self.flush(timeout=5.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._conn.close())
            self._conn = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            if not self._flushing and self._queue.qsize() + 1 < self.batch_size:
                # One timer per batch, not a timed get per record: what arrives meanwhile is queued.
                self._nap = loop.create_future()
                timer = loop.call_later(self.flush_interval, _wake, self._nap)
                try:
                    await self._nap
                finally:
                    timer.cancel()
                    self._nap = None
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: Sequence[AuditRecord]) -> None:
        rows = [r.row() for r in batch]
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                await self._conn.copy_records_to_table("audit_events", records=rows, columns=COLUMNS)
                self.written += len(rows)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.terminate()
                    self._conn = None
                if attempt == 2:
                    self.failed += len(rows)
                    log.warning("could not write %d audit records (%s); %d lost so far", len(rows), exc,
                                self.failed)
                else:
                    await asyncio.sleep(RETRY_DELAY)  # once, before the batch's second try


def _wake(nap: asyncio.Future) -> None:
    if not nap.done():
        nap.set_result(None)


@dataclass(frozen=True)
class AuditQuery:
    """Filters of `query_audit`; None means any. Times are inclusive bounds on time_received."""

    user: str | None = None
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    outcome: str | None = None
    transport: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 500


async def query_audit(pool: asyncpg.Pool, q: AuditQuery) -> list[dict[str, Any]]:
    """The newest `limit` records matching `q`, oldest first; jsonb columns decoded."""
    where, args = [], []
    for column, value in (("user_name", q.user), ("verb", q.verb), ("resource", q.resource),
                          ("namespace", q.namespace), ("name", q.name), ("outcome", q.outcome),
                          ("transport", q.transport)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if q.since is not None:
        args.append(q.since)
        where.append(f"time_received >= ${len(args)}")
    if q.until is not None:
        args.append(q.until)
        where.append(f"time_received <= ${len(args)}")
    args.append(max(1, min(q.limit, MAX_QUERY_LIMIT)))
    sql = (f"SELECT * FROM (SELECT {', '.join(COLUMNS)}, id FROM audit_events "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY time_received DESC, id DESC LIMIT ${len(args)}) newest ORDER BY time_received, id")
    rows = await pool.fetch(sql, *args)
    out = []
    for row in rows:
        rec = dict(row)
        for column in ("request_object", "response_object", "annotations"):
            if rec[column] is not None:
                rec[column] = json.loads(rec[column])
        out.append(rec)
    return out


PRUNE_BATCH = 10_000


async def prune_audit(pool: asyncpg.Pool, before: datetime, *, batch_size: int = PRUNE_BATCH,
                      dry_run: bool = False) -> int:
    """Delete the audit records received before `before`, oldest first, `batch_size` rows per
    transaction so a large prune never holds long locks or one huge transaction; returns how
    many were (or, with `dry_run`, would be) deleted. The event log is never touched: audit
    records are not part of the hash chain, and retention of the two is decided apart."""
    if dry_run:
        return await pool.fetchval("SELECT count(*) FROM audit_events WHERE time_received < $1", before)
    total = 0
    while True:
        status = await pool.execute(
            "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time_received < $1 "
            "ORDER BY time_received LIMIT $2)", before, batch_size)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch_size:
            return total

"""Appending: optimistic concurrency, dense positions, idempotency, group commit.

Fed by the API layer (and tests, benchmarks); its transactions feed the
`events` table, the inline `objects` projection and a NOTIFY that wakes the
relay. Callers hand in units (one or more appends that succeed or fail
together); a single committer task per process takes every unit waiting at
that moment into one transaction, so many writes share one fsync.

Positions are assigned here, under one transaction-scoped advisory lock that
every appender in every process takes, so they are dense and commit-ordered
(DESIGN.md invariant 2). All checks happen in Python under that lock; a unit
that fails its checks is answered with its error and the rest of the batch
still commits.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from eventplane.objects import errors
from eventplane.objects.events import GENESIS_HASH, EventType, StreamId, canonical_bytes, chain_hash, pack
from eventplane.objects.names import dns1123_label, dns1123_subdomain, path_segment_name

APPEND_LOCK = 0x6576_6170  # "evap": the advisory lock key every appender takes
NOTIFY_CHANNEL = "eventplane_events"
MAX_PAYLOAD_BYTES = 1536 * 1024  # etcd's default request limit, 1.5 MiB
MAX_NAME_LENGTH = 253
MAX_BATCH_EVENTS = 2000


@dataclass(frozen=True, slots=True)
class Append:
    """One event to append. `object` is the object after the change.

    `Created` requires that no live object holds the stream; every other type
    requires a live object with this `uid`, and, when `expected_version` is
    given, that its resourceVersion equals it.
    """

    stream: StreamId
    type: str
    object: Mapping[str, Any]
    uid: str
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """Who, why and when-independent facts of a request (DESIGN.md invariant 10)."""

    actor: str
    verb: str
    request_id: str = ""
    trace_id: str = ""
    causation: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    position: int
    stream_version: int
    occurred_at_us: int
    duplicate: bool = False


@dataclass(slots=True)
class _Prepared:
    stream: StreamId
    key: str
    type: str
    uid: str
    expected_version: int | None
    payload: bytes


@dataclass(slots=True)
class _Unit:
    appends: list[_Prepared]
    context: Context
    future: asyncio.Future
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.appends)


@dataclass(slots=True)
class _StreamState:
    uid: str | None  # None when no live object holds the stream
    resource_version: int
    stream_version: int


def prepare(append: Append) -> _Prepared:
    """Validate and encode outside the lock, so the committer only checks and writes."""
    _check_stream(append.stream)
    if append.type not in EventType.__members__.values():
        raise errors.BadRequestError(f"unknown event type {append.type!r}")
    if not append.uid:
        raise errors.BadRequestError("an event needs the uid of its object")
    obj = dict(append.object)
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and "resourceVersion" in meta:
        obj["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    payload = pack(obj)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise errors.RequestEntityTooLargeError(
            f"object is too large: {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}",
            name=append.stream.name, group=append.stream.group, kind=append.stream.resource)
    return _Prepared(append.stream, append.stream.key, append.type, append.uid,
                     append.expected_version, payload)


def _check_stream(s: StreamId) -> None:
    causes = []
    if not s.name:
        causes.append(errors.Cause("FieldValueRequired", "name or generateName is required", "metadata.name"))
    else:
        for msg in path_segment_name(s.name):
            causes.append(errors.Cause("FieldValueInvalid", f"Invalid value: {s.name!r}: {msg}", "metadata.name"))
        if len(s.name) > MAX_NAME_LENGTH:
            causes.append(errors.Cause("FieldValueInvalid",
                                       f"must be no more than {MAX_NAME_LENGTH} characters", "metadata.name"))
    if s.namespace:
        for msg in dns1123_label(s.namespace):
            causes.append(errors.Cause("FieldValueInvalid", f"Invalid value: {s.namespace!r}: {msg}",
                                       "metadata.namespace"))
    if s.group and dns1123_subdomain(s.group):
        causes.append(errors.Cause("FieldValueInvalid", f"invalid API group {s.group!r}", "apiVersion"))
    if not s.resource or dns1123_subdomain(s.resource):
        causes.append(errors.Cause("FieldValueInvalid", f"invalid resource {s.resource!r}", "kind"))
    if causes:
        raise errors.InvalidError(
            f'{_qualified(s)} "{s.name}" is invalid: ' + ", ".join(f"{c.field}: {c.message}" for c in causes),
            name=s.name, group=s.group, kind=s.resource, causes=tuple(causes))


def _qualified(s: StreamId) -> str:
    return f"{s.resource}.{s.group}" if s.group else s.resource


class GroupCommitter:
    """Batches concurrently submitted units into one transaction each.

    Invariant: a unit is in `_queue` until the transaction that decides it has
    finished; its future is resolved exactly once, with its results or its error.
    """

    def __init__(self, pool: asyncpg.Pool, *, max_batch_events: int = MAX_BATCH_EVENTS) -> None:
        self._pool = pool
        self._max = max_batch_events
        self._queue: list[_Unit] = []
        self._wake = asyncio.Event()
        self._inflight: list[_Unit] = []
        self._task: asyncio.Task | None = None
        self._closed = False

    async def submit(self, appends: Sequence[Append], context: Context) -> list[Appended]:
        if self._closed:
            raise RuntimeError("the event store is closed")
        if not appends:
            return []
        prepared = [prepare(a) for a in appends]
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Unit(prepared, context, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="eventplane-group-commit")
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Refuse new units, let the submitted ones be decided, then stop the committer."""
        self._closed = True
        if self._task:
            pending = [u.future for u in self._inflight + self._queue]
            if pending and not self._task.done():
                await asyncio.wait(pending)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, events = [], 0
                while self._queue and (not batch or events + self._queue[0].size <= self._max):
                    unit = self._queue.pop(0)
                    batch.append(unit)
                    events += unit.size
                self._inflight = batch
                try:
                    await self._commit(batch)
                except Exception as exc:  # the whole transaction failed: nothing of it was written
                    for unit in batch:
                        if not unit.future.done():
                            unit.future.set_exception(exc)
                finally:
                    self._inflight = []

    async def _commit(self, batch: list[_Unit]) -> None:
        async with self._pool.acquire() as conn:
            # Four round trips: lock, read, write, commit. BEGIN rides with the lock.
            await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK})")
            try:
                outcomes = await _plan_and_write(conn, batch)
                await conn.execute("COMMIT")
            except BaseException:
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")
                raise
        # Resolve only after COMMIT returned: an acknowledged write is durable.
        for unit, outcome in zip(batch, outcomes):
            if unit.future.done():
                continue
            if isinstance(outcome, Exception):
                unit.future.set_exception(outcome)
            else:
                unit.future.set_result(outcome)


async def _plan_and_write(conn: asyncpg.Connection, batch: list[_Unit]) -> list[list[Appended] | Exception]:
    streams, (position, prev_hash, last_us) = await _load_streams(conn, batch)
    occurred_at_us = max(time.time_ns() // 1000, last_us)  # never earlier than the event before
    seen_keys = await _load_idempotent(conn, batch)

    rows: list[tuple] = []
    final: dict[str, tuple[_Prepared, _StreamState]] = {}
    outcomes: list[list[Appended] | Exception] = []
    for unit in batch:
        key = unit.context.idempotency_key
        if key is not None and key in seen_keys:
            outcomes.append([Appended(a.position, a.stream_version, a.occurred_at_us, duplicate=True)
                             for a in seen_keys[key]])
            continue
        try:
            overlay, unit_rows, results, unit_hash = _plan_unit(unit, streams, position, prev_hash, occurred_at_us)
        except errors.EventplaneError as exc:
            outcomes.append(exc)
            continue
        streams.update(overlay)
        for a in unit.appends:
            final[a.key] = (a, overlay[a.key])
        rows.extend(unit_rows)
        position += len(unit_rows)
        prev_hash = unit_hash
        if key is not None:
            seen_keys[key] = results
        outcomes.append(results)

    if rows:
        await _write(conn, rows, final, position)
    return outcomes


def _plan_unit(unit: _Unit, streams: dict[str, _StreamState], position: int, prev_hash: bytes,
               occurred_at_us: int) -> tuple[dict[str, _StreamState], list[tuple], list[Appended], bytes]:
    ctx = unit.context
    overlay: dict[str, _StreamState] = {}
    rows, results = [], []
    for a in unit.appends:
        cur = overlay.get(a.key) or streams[a.key]
        _check_expectation(a, cur)
        position += 1
        live = a.type != EventType.DELETED
        new = _StreamState(a.uid if live else None, position, cur.stream_version + 1)
        overlay[a.key] = new
        canonical = canonical_bytes(
            position=position, stream=a.key, stream_version=new.stream_version, type=a.type, uid=a.uid,
            actor=ctx.actor, verb=ctx.verb, request_id=ctx.request_id, idempotency_key=ctx.idempotency_key,
            trace_id=ctx.trace_id, causation=ctx.causation, occurred_at_us=occurred_at_us, payload=a.payload)
        digest = chain_hash(prev_hash, canonical)
        rows.append((position, a.key, new.stream_version, a.type, a.uid, ctx.actor, ctx.verb, ctx.request_id,
                     ctx.idempotency_key, ctx.trace_id, ctx.causation, occurred_at_us, a.payload,
                     prev_hash, digest))
        results.append(Appended(position, new.stream_version, occurred_at_us))
        prev_hash = digest
    return overlay, rows, results, prev_hash


def _check_expectation(a: _Prepared, cur: _StreamState) -> None:
    s = a.stream
    where = dict(name=s.name, group=s.group, kind=s.resource)
    if a.type == EventType.CREATED:
        if cur.uid is not None:
            raise errors.AlreadyExistsError(f'{_qualified(s)} "{s.name}" already exists', **where)
        return
    if cur.uid is None:
        raise errors.NotFoundError(f'{_qualified(s)} "{s.name}" not found', **where)
    if cur.uid != a.uid:
        raise errors.ConflictError(
            f'Operation cannot be fulfilled on {_qualified(s)} "{s.name}": Precondition failed: '
            f"UID in precondition: {a.uid}, UID in object meta: {cur.uid}", **where)
    if a.expected_version is not None and a.expected_version != cur.resource_version:
        raise errors.ConflictError(
            f'Operation cannot be fulfilled on {_qualified(s)} "{s.name}": the object has been modified; '
            "please apply your changes to the latest version and try again", **where)


async def _load_streams(conn: asyncpg.Connection,
                        batch: list[_Unit]) -> tuple[dict[str, _StreamState], tuple[int, bytes, int]]:
    """The state of every stream the batch touches, and the head of the log, in one round trip.

    One probe per stream through the indexes; LIMIT 1 keeps the planner from
    turning the lateral joins into scans of whole tables.
    """
    keys = list({a.key for unit in batch for a in unit.appends})
    rows = await conn.fetch("""
        SELECT k.stream, o.uid, o.resource_version,
               coalesce(o.stream_version, (SELECT e.stream_version FROM events e WHERE e.stream = k.stream
                                           ORDER BY e.stream_version DESC LIMIT 1), 0) AS version,
               h.position AS head, h.hash AS head_hash,
               (extract(epoch FROM h.occurred_at) * 1000000)::bigint AS head_us
        FROM unnest($1::text[]) AS k(stream)
        LEFT JOIN (SELECT position, hash, occurred_at FROM events ORDER BY position DESC LIMIT 1) AS h ON true
        LEFT JOIN LATERAL (SELECT uid, resource_version, stream_version FROM objects
                           WHERE objects.stream = k.stream LIMIT 1) AS o ON true""", keys)
    first = rows[0]
    head = (first["head"], bytes(first["head_hash"]), first["head_us"]) if first["head"] else (0, GENESIS_HASH, 0)
    return {r["stream"]: _StreamState(r["uid"], r["resource_version"] or 0, r["version"]) for r in rows}, head


async def _load_idempotent(conn: asyncpg.Connection, batch: list[_Unit]) -> dict[str, list[Appended]]:
    keys = list({u.context.idempotency_key for u in batch if u.context.idempotency_key is not None})
    if not keys:
        return {}
    seen: dict[str, list[Appended]] = {}
    for r in await conn.fetch(
            "SELECT idempotency_key, position, stream_version, "
            "(extract(epoch FROM occurred_at) * 1000000)::bigint AS us "
            "FROM unnest($1::text[]) AS k(key) JOIN LATERAL (SELECT * FROM events "
            "WHERE events.idempotency_key = k.key ORDER BY position LIMIT 10000) AS e ON true "
            "ORDER BY position", keys):
        seen.setdefault(r["idempotency_key"], []).append(Appended(r["position"], r["stream_version"], r["us"]))
    return seen


async def _write(conn: asyncpg.Connection, rows: list[tuple], final: dict[str, tuple[_Prepared, _StreamState]],
                 last_position: int) -> None:
    """One statement: the events, the projection's upserts and deletions, and the NOTIFY."""
    live = [(p, st) for p, st in final.values() if st.uid is not None]
    gone = [p.key for p, st in final.values() if st.uid is None]
    await conn.execute("""
        WITH appended AS (
            INSERT INTO events (position, stream, stream_version, type, uid, actor, verb, request_id,
                                idempotency_key, trace_id, causation, occurred_at, payload, prev_hash, hash)
            SELECT p, s, sv, t, u, a, v, r, i, tr, c, timestamptz 'epoch' + us * interval '1 microsecond', pl, ph, h
            FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
                        $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bytea[],
                        $14::bytea[], $15::bytea[]) AS x(p, s, sv, t, u, a, v, r, i, tr, c, us, pl, ph, h)
        ), upserted AS (
            INSERT INTO objects (stream, uid, resource_version, stream_version)
            SELECT * FROM unnest($16::text[], $17::text[], $18::bigint[], $19::int[])
            ON CONFLICT (stream) DO UPDATE SET uid = excluded.uid, resource_version = excluded.resource_version,
                stream_version = excluded.stream_version
        ), removed AS (
            DELETE FROM objects WHERE stream = any($20::text[])
        )
        SELECT pg_notify($21, $22)""",
        *zip(*rows),
        [p.key for p, _ in live], [st.uid for _, st in live], [st.resource_version for _, st in live],
        [st.stream_version for _, st in live], gone, NOTIFY_CHANNEL, str(last_position))

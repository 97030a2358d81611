"""Appending: optimistic concurrency, dense positions, idempotency, group commit.

Fed by the API layer (and tests, benchmarks); its writes feed the `events`
table, the inline `objects` projection and a NOTIFY that wakes the relay.
Callers hand in units (one or more appends that succeed or fail together); a
single committer task per process takes every unit waiting at that moment
into one transaction, so many writes share one fsync.

Positions are assigned under one transaction-scoped advisory lock that every
appender in every process takes, so they are dense and commit-ordered
(DESIGN.md invariant 2). A batch is planned in Python (`planning`) and
written by one call that checks the plan's beliefs under that lock
(`writing`). The committer remembers the head of the log and the streams it
has seen, so in the common case a batch costs one round trip; when a belief
is wrong (another process appended) it reads the state and plans again, and
after repeated contention it plans while holding the lock.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from eventplane.objects import errors
from eventplane.objects.events import EventType, StreamId, pack
from eventplane.objects.names import dns1123_label, dns1123_subdomain, path_segment_name

from .planning import Appended, Context, Head, Plan, Prepared, StreamState, plan_batch, qualified
from .writing import APPEND_LOCK, NOTIFY_CHANNEL, load_state, write_checked

__all__ = ["APPEND_LOCK", "MAX_PAYLOAD_BYTES", "NOTIFY_CHANNEL", "Append", "Appended", "Context", "GroupCommitter"]

MAX_PAYLOAD_BYTES = 1536 * 1024  # etcd's default request limit, 1.5 MiB
MAX_NAME_LENGTH = 253
MAX_BATCH_EVENTS = 2000
KNOWN_STREAMS = 100_000  # how many streams' states the committer remembers
UNLOCKED_ATTEMPTS = 2  # plans made without the lock before planning under it


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


def prepare(append: Append) -> Prepared:
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
    return Prepared(append.stream, append.stream.key, append.type, append.uid,
                     append.expected_version, payload)


_VALID_SCOPES: set[tuple[str, str, str]] = set()  # (group, resource, namespace) found valid before


def _check_stream(s: StreamId) -> None:
    if s.name and len(s.name) <= MAX_NAME_LENGTH and (s.group, s.resource, s.namespace) in _VALID_SCOPES \
            and not path_segment_name(s.name):
        return  # the part every write of a kind in a namespace shares was checked once
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
            f'{qualified(s)} "{s.name}" is invalid: ' + ", ".join(f"{c.field}: {c.message}" for c in causes),
            name=s.name, group=s.group, kind=s.resource, causes=tuple(causes))
    if len(_VALID_SCOPES) < 10_000:
        _VALID_SCOPES.add((s.group, s.resource, s.namespace))


@dataclass(slots=True)
class _Unit:
    appends: list[Prepared]
    context: Context
    future: asyncio.Future
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.appends)


class GroupCommitter:
    """Batches concurrently submitted units into one transaction each.

    Invariants: a unit is in `_queue` or `_inflight` until the transaction that
    decides it has finished, and its future is resolved exactly once. `_head`
    and `_known` are beliefs, never trusted without the check under the lock:
    a wrong belief costs a retry, not a wrong write.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], *,
                 max_batch_events: int = MAX_BATCH_EVENTS) -> None:
        # The committer's own connection: no pool checkout and reset between a COMMIT and the
        # acknowledgement of the writes it made durable.
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._max = max_batch_events
        self._queue: list[_Unit] = []
        self._wake = asyncio.Event()
        self._inflight: list[_Unit] = []
        self._task: asyncio.Task | None = None
        self._closed = False
        self._head: Head | None = None
        self._known: OrderedDict[str, StreamState] = OrderedDict()
        self.stats = {"batches": 0, "events": 0, "speculated": 0, "reloaded": 0, "locked": 0}

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
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

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
                    plan = await self._commit(batch)
                except Exception as exc:  # the transaction failed: nothing of it was written
                    self._head = None
                    for unit in batch:
                        if not unit.future.done():
                            unit.future.set_exception(exc)
                else:
                    self._remember(plan)
                    # Resolved only now, after COMMIT: an acknowledged write is durable.
                    for unit, outcome in zip(batch, plan.outcomes):
                        if unit.future.done():
                            continue
                        if isinstance(outcome, Exception):
                            unit.future.set_exception(outcome)
                        else:
                            unit.future.set_result(outcome)
                finally:
                    self._inflight = []

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
        return self._conn

    async def _commit(self, batch: list[_Unit]) -> Plan:
        self.stats["batches"] += 1
        conn = await self._connection()
        try:
            return await self._decide(conn, batch)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            await self._drop_connection()
            raise

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _decide(self, conn: asyncpg.Connection, batch: list[_Unit]) -> Plan:
        if self._head is not None and self._may_speculate(batch):
            plan = plan_batch(batch, self._known, self._head, {}, _now_us())
            # A plan that writes nothing rejected every unit on beliefs alone: read, then decide.
            if plan.rows and await write_checked(conn, plan):
                self.stats["speculated"] += 1
                return plan
        for _ in range(UNLOCKED_ATTEMPTS):
            streams, head, seen = await load_state(conn, batch)
            plan = plan_batch(batch, streams, head, seen, _now_us())
            # Without rows, every outcome was decided on committed state read just now.
            if not plan.rows or await write_checked(conn, plan):
                self.stats["reloaded"] += 1
                return plan
        # Other appenders keep moving the head between our read and our write: read under the lock.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            streams, head, seen = await load_state(conn, batch)
            plan = plan_batch(batch, streams, head, seen, _now_us())
            if plan.rows and not await write_checked(conn, plan):
                raise RuntimeError("the log changed while the append lock was held")
        self.stats["locked"] += 1
        return plan

    def _may_speculate(self, batch: list[_Unit]) -> bool:
        """Worth a try when every stream the batch updates is one we know; creates of unknown
        streams are believed new."""
        return all(a.key in self._known or a.type == EventType.CREATED for u in batch for a in u.appends)

    def _remember(self, plan: Plan) -> None:
        self.stats["events"] += len(plan.rows)
        self._head = plan.head
        for key, state in plan.known.items():
            self._known[key] = state
            self._known.move_to_end(key)
        while len(self._known) > KNOWN_STREAMS:
            self._known.popitem(last=False)


def _now_us() -> int:
    return time.time_ns() // 1000

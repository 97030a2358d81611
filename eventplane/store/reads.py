"""Reads of the log and of the inline projection.

Fed by the `events` and `objects` tables; consumed by the relay (read_all),
history and time-travel queries (read_stream, object_at), and the API's
current-state reads (get_object, list_objects).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from eventplane.objects.events import Event, EventType, StreamId, unpack

from .append import NOTIFY_CHANNEL

EVENT_COLUMNS = (
    "position, stream, stream_version, type, uid, actor, verb, request_id, idempotency_key, trace_id, "
    "causation, (extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_at_us, payload, prev_hash, hash"
)


def event_from_row(r: asyncpg.Record) -> Event:
    return Event(r["position"], StreamId.parse(r["stream"]), r["stream_version"], r["type"], r["uid"],
                 r["actor"], r["verb"], r["request_id"], r["idempotency_key"], r["trace_id"], r["causation"],
                 r["occurred_at_us"], bytes(r["payload"]), bytes(r["prev_hash"]), bytes(r["hash"]))


async def head(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The last committed position, 0 for an empty log."""
    return await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")


async def first_position_since(conn: asyncpg.Connection | asyncpg.Pool, *, seconds_ago: float) -> int | None:
    return await conn.fetchval(
        "SELECT min(position) FROM events WHERE occurred_at >= now() - $1 * interval '1 second'",
        float(seconds_ago))


async def listen_appends(conn: asyncpg.Connection, callback: Callable[[], None]) -> None:
    """Call `callback` whenever a transaction that appended events commits (NOTIFY)."""
    await conn.add_listener(NOTIFY_CHANNEL, lambda *_: callback())


async def read_stream(conn: asyncpg.Connection | asyncpg.Pool, stream: StreamId, *,
                      after_version: int = 0, limit: int | None = None) -> list[Event]:
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 AND stream_version > $2 "
        "ORDER BY stream_version LIMIT $3", stream.key, after_version, limit)
    return [event_from_row(r) for r in rows]


async def read_all(conn: asyncpg.Connection | asyncpg.Pool, *, after: int, limit: int = 1000,
                   until: int | None = None) -> list[Event]:
    """Up to `limit` events with after < position (<= until), in position order."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
        after, until if until is not None else 2**63 - 1, limit)
    return [event_from_row(r) for r in rows]


async def iter_all(conn: asyncpg.Connection | asyncpg.Pool, *, after: int = 0, batch: int = 1000,
                   until: int | None = None) -> AsyncIterator[Event]:
    """Every event after `after`, fetched in batches so memory stays flat."""
    while True:
        events = await read_all(conn, after=after, limit=batch, until=until)
        for e in events:
            yield e
        if len(events) < batch:
            return
        after = events[-1].position


async def object_at(conn: asyncpg.Connection | asyncpg.Pool, stream: StreamId, position: int) -> dict[str, Any] | None:
    """The object as it was right after `position` was committed; None if it did not exist then."""
    row = await conn.fetchrow(
        "SELECT position, type, payload FROM events WHERE stream = $1 AND position <= $2 "
        "ORDER BY stream_version DESC LIMIT 1", stream.key, position)
    if row is None or row["type"] == EventType.DELETED:
        return None
    return _with_version(row["payload"], row["position"])


async def get_object(conn: asyncpg.Connection | asyncpg.Pool, stream: StreamId) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT o.resource_version, e.payload FROM objects o JOIN events e ON e.position = o.resource_version "
        "WHERE o.stream = $1", stream.key)
    return _with_version(row["payload"], row["resource_version"]) if row else None


async def list_objects(conn: asyncpg.Connection | asyncpg.Pool, *, group: str, resource: str,
                       namespace: str | None = None) -> list[dict[str, Any]]:
    """Live objects of one resource (in one namespace), in key order, as etcd lists them."""
    low, high = _key_range(group, resource, namespace)
    rows = await conn.fetch(
        "SELECT o.resource_version, e.payload FROM objects o JOIN events e ON e.position = o.resource_version "
        "WHERE o.stream >= $1 AND o.stream < $2 ORDER BY o.stream", low, high)
    return [_with_version(r["payload"], r["resource_version"]) for r in rows]


async def list_snapshot(pool: asyncpg.Pool, *, group: str, resource: str, namespace: str | None = None,
                        after_key: str = "", limit: int | None = None) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """Live objects (key, object) and the head of the log, read in one snapshot, so that the
    list's resourceVersion (the head) says exactly which writes it contains."""
    low, high = _key_range(group, resource, namespace)
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head_position = await head(conn)
            rows = await conn.fetch(
                "SELECT o.stream, o.resource_version, e.payload FROM objects o "
                "JOIN events e ON e.position = o.resource_version "
                "WHERE o.stream >= $1 AND o.stream < $2 AND o.stream > $3 ORDER BY o.stream LIMIT $4",
                low, high, after_key, limit)
    return head_position, [(r["stream"], _with_version(r["payload"], r["resource_version"])) for r in rows]


async def list_at(conn: asyncpg.Connection | asyncpg.Pool, position: int, *, group: str, resource: str,
                  namespace: str | None = None, after_key: str = "",
                  limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The objects that were live right after `position` (time travel over a whole list)."""
    low, high = _key_range(group, resource, namespace)
    rows = await conn.fetch(
        "SELECT stream, position, payload FROM ("
        "  SELECT DISTINCT ON (stream) stream, position, type, payload FROM events"
        "  WHERE stream >= $1 AND stream < $2 AND stream > $3 AND position <= $4"
        "  ORDER BY stream, stream_version DESC) AS latest "
        "WHERE type <> 'Deleted' ORDER BY stream LIMIT $5",
        max(low, after_key) if after_key else low, high, after_key, position, limit)
    return [(r["stream"], _with_version(r["payload"], r["position"])) for r in rows]


def _key_range(group: str, resource: str, namespace: str | None) -> tuple[str, str]:
    prefix = f"{group or 'core'}/{resource}/" + (f"{namespace}/" if namespace is not None else "")
    return prefix, prefix[:-1] + chr(ord("/") + 1)


def _with_version(payload: bytes, position: int) -> dict[str, Any]:
    obj = unpack(payload)
    obj.setdefault("metadata", {})["resourceVersion"] = str(position)
    return obj

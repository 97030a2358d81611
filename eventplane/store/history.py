"""History reads: the versions of one object (by stream or by uid), the position
committed at a point in time, and the causation chain of an event.

Fed by the `events` table (indexes of migrations 0001 and 0003); consumed by the
history API (eventplane/api/history.py) and time-travel reads (rest.py's asOf).
"""
from __future__ import annotations

from datetime import datetime

import asyncpg

from eventplane.objects.events import Event, StreamId

from .reads import EVENT_COLUMNS, event_from_row

Conn = asyncpg.Connection | asyncpg.Pool


async def stream_history(conn: Conn, stream: StreamId, *, uid: str | None = None,
                         limit: int | None = None) -> list[Event]:
    """Every event of one name, oldest first: all its incarnations, or only the one with `uid`."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 AND ($2::text IS NULL OR uid = $2) "
        "ORDER BY stream_version LIMIT $3", stream.key, uid, limit)
    return [event_from_row(r) for r in rows]


async def uid_history(conn: Conn, uid: str, *, limit: int | None = None) -> list[Event]:
    """Every event of the object with `uid`, oldest first, whatever its name."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE uid = $1 ORDER BY position LIMIT $2", uid, limit)
    return [event_from_row(r) for r in rows]


async def event_at(conn: Conn, position: int) -> Event | None:
    row = await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM events WHERE position = $1", position)
    return event_from_row(row) if row else None


async def position_at(conn: Conn, when: datetime) -> int:
    """The last position committed at or before `when` (0 before the first event). occurred_at grows
    with position, so the newest row not after `when` is found by the primary key, newest first."""
    return await conn.fetchval(
        "SELECT coalesce((SELECT position FROM events WHERE occurred_at <= $1 "
        "ORDER BY occurred_at DESC, position DESC LIMIT 1), 0)", when)


async def causation_chain(conn: Conn, position: int, *, max_steps: int = 1000) -> list[Event]:
    """The event at `position`, the event that caused it, and so on back to one with no causation
    (or whose cause is missing); newest first. `max_steps` guards against a cycle."""
    rows = await conn.fetch(
        f"WITH RECURSIVE chain(pos, cause, depth) AS ("
        "  SELECT position, causation, 1 FROM events WHERE position = $1"
        "  UNION ALL"
        "  SELECT e.position, e.causation, c.depth + 1 FROM chain c JOIN events e ON e.position = c.cause"
        "  WHERE c.depth < $2 AND e.position < c.pos"
        f") SELECT {EVENT_COLUMNS} FROM chain JOIN events ON events.position = chain.pos ORDER BY chain.depth",
        position, max_steps)
    return [event_from_row(r) for r in rows]

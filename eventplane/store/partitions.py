"""The partitions of the `events` table (migration 0005): list them, create them ahead of
need, and detach old ones for archiving.

Used by `eventplane partitions` and the tests. eventplane_append creates the
partitions a batch needs by itself; `create_ahead` does it before the need, off
the write path. Detaching records the hash of the range's last event in
`events_detached`, so verify can check the first kept event's link.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from .append import APPEND_LOCK

_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


class PartitionError(Exception):
    """A partition operation that would lose something; the message says what."""


@dataclass(frozen=True)
class Partition:
    name: str
    start: int  # first position it may hold
    end: int    # first position it may not hold
    first: int | None  # the first and last positions it holds (None when empty)
    last: int | None


async def list_partitions(conn: asyncpg.Connection | asyncpg.Pool) -> list[Partition]:
    rows = await conn.fetch("""
        SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass""")
    out = []
    for r in rows:
        start, end = map(int, _BOUNDS.search(r["bound"]).groups())
        span = await conn.fetchrow("SELECT min(position) AS first, max(position) AS last FROM events "
                                   "WHERE position >= $1 AND position < $2", start, end)
        out.append(Partition(r["name"], start, end, span["first"], span["last"]))
    return sorted(out, key=lambda p: p.start)


async def partition_size(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT size FROM event_partitioning")


async def set_partition_size(conn: asyncpg.Connection, size: int) -> None:
    """Partitions created from now on hold `size` positions. On an empty log the existing
    partitions are replaced, so the first one has the new size too (tests use a small one)."""
    if size < 1:
        raise PartitionError("the partition size must be 1 or more")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        await conn.execute("UPDATE event_partitioning SET size = $1", size)
        if await conn.fetchval("SELECT max(position) FROM events") is None:
            for p in await list_partitions(conn):
                await conn.execute(f'DROP TABLE "{p.name}"')
            await conn.execute("UPDATE event_partitioning SET upper = 1")
            await conn.execute("SELECT eventplane_ensure_partitions(1)")


async def create_ahead(conn: asyncpg.Connection, *, partitions: int = 1) -> list[str]:
    """Make sure `partitions` whole partitions lie beyond the head; return the names created."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        before = {p.name for p in await list_partitions(conn)}
        head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        size = await partition_size(conn)
        await conn.execute("SELECT eventplane_ensure_partitions($1)", head + partitions * size)
        return [p.name for p in await list_partitions(conn) if p.name not in before]


async def detach_before(conn: asyncpg.Connection, position: int) -> list[Partition]:
    """Detach, oldest first, every partition whose whole range lies before `position`. They stay in
    the database as ordinary tables (to be dumped and dropped). Refuses when a live object's
    current version lies in one: the objects projection points into the log for its bodies."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        if position > head:
            raise PartitionError(f"--before {position} lies beyond the head ({head}): the partition holding "
                                 "the head always stays")
        oldest_live = await conn.fetchrow("SELECT stream, resource_version FROM objects "
                                          "ORDER BY resource_version LIMIT 1")
        detached = []
        for p in await list_partitions(conn):
            if p.end > position:
                break
            if oldest_live is not None and oldest_live["resource_version"] < p.end:
                raise PartitionError(
                    f"cannot detach {p.name} (positions {p.start}..{p.end - 1}): the live object "
                    f"{oldest_live['stream']} is at position {oldest_live['resource_version']}, and the objects "
                    "table reads current bodies from the log; detach only before the oldest live object's version")
            last_hash = await conn.fetchval("SELECT hash FROM events WHERE position = $1", p.last)
            await conn.execute("INSERT INTO events_detached (name, from_position, to_position, last_hash) "
                               "VALUES ($1, $2, $3, $4)", p.name, p.start, p.end, last_hash)
            await conn.execute(f'ALTER TABLE events DETACH PARTITION "{p.name}"')
            detached.append(p)
        return detached

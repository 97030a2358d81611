"""Rebuilds the inline `objects` projection from the `events` table (DESIGN.md invariant 1).

One statement under the append lock: the latest event of every stream that is
not a deletion is the live object. Because it runs under the same lock as
appends, a rebuild never interleaves with a write, and the result equals what
the appenders would have produced.
"""
from __future__ import annotations

import asyncpg

from .append import APPEND_LOCK


async def rebuild_objects(conn: asyncpg.Connection) -> int:
    """Drop every row of `objects` and rebuild it; return the number of live objects."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        await conn.execute("TRUNCATE objects")
        await conn.execute("""
            INSERT INTO objects (stream, uid, resource_version, stream_version)
            SELECT stream, uid, position, stream_version
            FROM (SELECT DISTINCT ON (stream) stream, uid, position, stream_version, type
                  FROM events ORDER BY stream, stream_version DESC) AS latest
            WHERE type <> 'Deleted'""")
        return await conn.fetchval("SELECT count(*) FROM objects")

"""Streams the log as a portable history file (portable.py), for `epctl export`.

Fed by the `events` table through iter_all, in batches, so memory stays flat
whatever the log's size; consumed by the REST export endpoint, which writes
each line as it comes.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from . import portable
from .reads import iter_all

BATCH = 2000


async def position_at(conn: asyncpg.Connection | asyncpg.Pool, when: datetime) -> int:
    """The last position committed at or before `when`; 0 if none was."""
    value = await conn.fetchval("SELECT position FROM events WHERE occurred_at <= $1 "
                                "ORDER BY occurred_at DESC, position DESC LIMIT 1", when)
    return value or 0


async def export_lines(pool: asyncpg.Pool, *, until: int | None = None) -> AsyncIterator[bytes]:
    """The header line, then one line per event up to `until` (default: the head when called)."""
    row = await pool.fetchrow("SELECT min(position) AS first, max(position) AS last FROM events "
                              "WHERE position <= $1", until if until is not None else 2**63 - 1)
    first, last = row["first"] or 1, row["last"] or 0
    count = last - first + 1 if row["last"] is not None else 0
    yield portable.json_line(portable.header(events=count, first=first, head=last))
    if count:
        async for e in iter_all(pool, after=first - 1, batch=BATCH, until=last):
            yield portable.encode(e)

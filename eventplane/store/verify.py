"""Walks the hash chain (DESIGN.md invariant 11) and names the first position that does not verify.

A link is broken when positions are not dense, when an event's prev_hash is
not the hash of the event before it, or when its hash is not the hash of its
own canonical bytes. After old partitions were detached (partitions.py), the
first kept event links to the hash recorded in `events_detached`.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from eventplane.objects.events import GENESIS_HASH

from .reads import iter_all, read_all


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first: int
    last: int
    broken_at: int | None = None
    reason: str = ""


async def verify_chain(conn: asyncpg.Connection | asyncpg.Pool, *, start: int | None = None,
                       end: int | None = None, batch: int = 5000) -> VerifyResult:
    """Check positions start..end; the link into `start` is checked against the stored event before it,
    or the hash recorded when the partition before it was detached. Without `start`, from the first
    stored position: 1, or the first one kept after detaching."""
    if start is None:
        first = await conn.fetchval("SELECT min(position) FROM events")
        start = first or 1
        if start > 1 and await _anchor(conn, start) is None:
            return VerifyResult(False, 0, 1, 0, 1, f"positions 1..{start - 1} are missing and were never detached")
    if start > 1:
        before = await read_all(conn, after=start - 2, limit=1)
        expected_prev = before[0].hash if before and before[0].position == start - 1 else await _anchor(conn, start)
    else:
        expected_prev = GENESIS_HASH
    expected_position, checked = start, 0
    async for e in iter_all(conn, after=start - 1, batch=batch, until=end):
        if e.position != expected_position:
            return VerifyResult(False, checked, start, e.position, expected_position,
                                f"position {expected_position} is missing (next is {e.position})")
        if expected_prev is not None and e.prev_hash != expected_prev:
            return VerifyResult(False, checked, start, e.position, e.position,
                                "prev_hash does not match the hash of the event before it")
        if not e.verifies():
            return VerifyResult(False, checked, start, e.position, e.position,
                                "hash does not match the event's contents")
        expected_prev = e.hash
        expected_position += 1
        checked += 1
    return VerifyResult(True, checked, start, expected_position - 1)


async def _anchor(conn: asyncpg.Connection | asyncpg.Pool, start: int) -> bytes | None:
    """The hash of the last event of a detached range that ends right before `start`."""
    value = await conn.fetchval("SELECT last_hash FROM events_detached WHERE to_position = $1 "
                                "ORDER BY detached_at DESC LIMIT 1", start)
    return bytes(value) if value is not None else None

"""Replays the log into a scratch projection as of a past position and compares it with live state.

Fed by the `events` table up to the position asked for; builds, in a temporary table
that lives for one transaction, exactly what rebuild.py would have built then; compares
it with the live `objects` table in the same snapshot. Consumed by the replay endpoint
and `epctl replay`: what was created, deleted and changed since, per resource.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from eventplane.objects.events import StreamId


@dataclass
class KindChanges:
    created: list[str] = field(default_factory=list)  # live now, absent then (or another uid then)
    deleted: list[str] = field(default_factory=list)  # live then, absent now (or another uid now)
    changed: list[str] = field(default_factory=list)  # the same object, written since


@dataclass(frozen=True)
class ReplayDiff:
    at: int
    head: int
    objects_then: int
    objects_now: int
    kinds: dict[str, KindChanges]


async def replay_diff(pool: asyncpg.Pool, at: int) -> ReplayDiff:
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read"):
            head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
            await conn.execute("""
                CREATE TEMPORARY TABLE replayed_objects ON COMMIT DROP AS
                SELECT stream, uid, position AS resource_version
                FROM (SELECT DISTINCT ON (stream) stream, uid, position, type FROM events
                      WHERE position <= $1 ORDER BY stream, stream_version DESC) AS latest
                WHERE type <> 'Deleted'""", at)
            then = await conn.fetchval("SELECT count(*) FROM replayed_objects")
            now = await conn.fetchval("SELECT count(*) FROM objects")
            rows = await conn.fetch("""
                SELECT coalesce(o.stream, r.stream) AS stream,
                       CASE WHEN r.stream IS NULL THEN 'created'
                            WHEN o.stream IS NULL THEN 'deleted'
                            WHEN o.uid <> r.uid THEN 'replaced'
                            ELSE 'changed' END AS change
                FROM objects o FULL JOIN replayed_objects r ON r.stream = o.stream
                WHERE o.stream IS NULL OR r.stream IS NULL OR o.uid <> r.uid
                   OR o.resource_version <> r.resource_version
                ORDER BY 1""")
    kinds: dict[str, KindChanges] = {}
    for r in rows:
        s = StreamId.parse(r["stream"])
        kind = kinds.setdefault(f"{s.resource}.{s.group}" if s.group else s.resource, KindChanges())
        name = f"{s.namespace}/{s.name}" if s.namespace else s.name
        if r["change"] == "replaced":  # deleted and created again under the same name
            kind.deleted.append(name)
            kind.created.append(name)
        else:
            getattr(kind, r["change"]).append(name)
    return ReplayDiff(at, head, then, now, kinds)

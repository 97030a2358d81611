"""The SQL of a group commit: reading the state a batch touches, and the checked write.

Fed by the committer; the write is one call of `eventplane_append`
(migrations/0002), which takes the append lock, checks the plan's beliefs and
writes events, the objects projection and the NOTIFY, or writes nothing and
returns false.
"""
from __future__ import annotations

import asyncpg

from .planning import EMPTY_LOG, Appended, Head, Plan, StreamState, Unit

APPEND_LOCK = 0x6576_6170  # "evap": the advisory lock key every appender takes
NOTIFY_CHANNEL = "eventplane_events"


async def load_state(conn: asyncpg.Connection, batch: list[Unit]
                     ) -> tuple[dict[str, StreamState], Head, dict[str, list[Appended]]]:
    """The state of every stream the batch touches, the head of the log, and the results of
    idempotency keys used before. One probe per stream through the indexes; LIMIT 1 keeps the
    planner from turning the lateral joins into scans of whole tables."""
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
    head = Head(first["head"], bytes(first["head_hash"]), first["head_us"]) if first["head"] else EMPTY_LOG
    streams = {r["stream"]: StreamState(r["uid"], r["resource_version"] or 0, r["version"]) for r in rows}
    return streams, head, await _load_idempotent(conn, batch)


async def _load_idempotent(conn: asyncpg.Connection, batch: list[Unit]) -> dict[str, list[Appended]]:
    keys = list({u.context.idempotency_key for u in batch if u.context.idempotency_key is not None})
    if not keys:
        return {}
    seen: dict[str, list[Appended]] = {}
    for r in await conn.fetch(
            "SELECT e.idempotency_key, e.position, e.stream_version, "
            "(extract(epoch FROM e.occurred_at) * 1000000)::bigint AS us "
            "FROM unnest($1::text[]) AS k(key) JOIN LATERAL (SELECT * FROM events "
            "WHERE events.idempotency_key = k.key ORDER BY position LIMIT 10000) AS e ON true "
            "ORDER BY e.position", keys):
        seen.setdefault(r["idempotency_key"], []).append(Appended(r["position"], r["stream_version"], r["us"]))
    return seen


async def write_checked(conn: asyncpg.Connection, plan: Plan) -> bool:
    """Write the plan if, under the append lock, the log is still as the plan believed it."""
    live = [(p.key, st) for p, st in plan.final.values() if st.uid is not None]
    checks = list(plan.checks.items())
    return await conn.fetchval(
        "SELECT eventplane_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
        "$18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
        APPEND_LOCK, plan.head_before.position,
        [k for k, _ in checks], [s.uid for _, s in checks], [s.resource_version for _, s in checks],
        [s.stream_version for _, s in checks],
        plan.new_keys,
        *zip(*plan.rows),
        [k for k, _ in live], [st.uid for _, st in live], [st.resource_version for _, st in live],
        [st.stream_version for _, st in live],
        [p.key for p, st in plan.final.values() if st.uid is None],
        NOTIFY_CHANNEL)

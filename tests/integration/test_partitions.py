"""The events table partitioned by position (migration 0005): the conversion keeps existing data,
appends create the partitions they need (across boundaries, in one batch too), old partitions
detach with an anchor that verify and export/import keep using."""
from __future__ import annotations

import asyncpg
import pytest

from eventplane.store import EventStore
from eventplane.store.exporting import export_lines
from eventplane.store.importing import import_log
from eventplane.store.migrate import available, migrate
from eventplane.store.partitions import (PartitionError, create_ahead, detach_before, list_partitions,
                                         set_partition_size)
from tests.support.builders import ALICE, configmap, create, ctx, delete
from tests.support.servers import drop_database, fresh_database


@pytest.fixture
async def small(store):
    """The store with 5 positions per partition."""
    async with store.pool.acquire() as conn:
        await set_partition_size(conn, 5)
    return store


async def _partitions(store):
    return [(p.name, p.start, p.end, p.first, p.last) for p in await list_partitions(store.pool)]


async def test_appends_cross_partition_boundaries(small):
    assert await _partitions(small) == [("events_p1", 1, 6, None, None)]
    for i in range(7):
        await small.append(create(configmap(f"one{i}")), ALICE)
    await small.append([create(configmap(f"batch{i}")) for i in range(12)], ALICE)  # one unit, 8..19
    assert await _partitions(small) == [("events_p1", 1, 6, 1, 5), ("events_p6", 6, 11, 6, 10),
                                        ("events_p11", 11, 16, 11, 15), ("events_p16", 16, 21, 16, 19)]
    assert (await small.verify()).checked == 19
    assert [e.position for e in await small.read_all(after=3, limit=5)] == [4, 5, 6, 7, 8]
    assert len(await small.list(group="", resource="configmaps", namespace="default")) == 19


async def test_create_ahead_keeps_whole_partitions_beyond_the_head(small):
    async with small.pool.acquire() as conn:
        assert await create_ahead(conn, partitions=2) == ["events_p6"]  # with events_p1: 2 beyond head 0
        assert await create_ahead(conn, partitions=2) == []
        assert await create_ahead(conn, partitions=3) == ["events_p11"]


async def test_detach_old_partitions_and_verify_from_the_anchor(small, servers, template):
    objs = [configmap(f"x{i}") for i in range(10)]
    for obj in objs:
        await small.append(create(obj), ALICE)          # 1..10
    for obj in objs:
        await small.append(delete(obj), ctx(verb="delete"))  # 11..20
    await small.append(create(configmap("keep")), ALICE)     # 21

    async with small.pool.acquire() as conn:
        with pytest.raises(PartitionError, match="beyond the head"):
            await detach_before(conn, 22)
        detached = await detach_before(conn, 21)
    assert [p.name for p in detached] == ["events_p1", "events_p6", "events_p11", "events_p16"]
    assert [p[0] for p in await _partitions(small)] == ["events_p21"]
    # the detached tables stay, for pg_dump, until someone drops them
    assert await small.pool.fetchval("SELECT count(*) FROM events_p6") == 5

    result = await small.verify()
    assert result.ok and (result.first, result.last, result.checked) == (21, 21, 1)
    assert not (await small.verify(start=1)).ok
    await small.pool.execute("UPDATE events_detached SET last_hash = '\\x00' WHERE name = 'events_p16'")
    assert (await small.verify()).broken_at == 21
    await small.pool.execute("UPDATE events_detached SET last_hash = (SELECT hash FROM events_p16 "
                             "WHERE position = 20) WHERE name = 'events_p16'")

    # an export of what is kept imports with its anchor, and verifies there too
    lines = [line async for line in export_lines(small.pool)]
    url = await fresh_database(servers)
    try:
        conn = await asyncpg.connect(url)
        try:
            assert (await import_log(conn, lines)).first == 21
        finally:
            await conn.close()
        async with EventStore.connect(url) as imported:
            assert (await imported.verify()).ok
    finally:
        await drop_database(servers, url)


async def test_detach_refuses_a_partition_a_live_object_points_into(small):
    for i in range(7):
        await small.append(create(configmap(f"o{i}")), ALICE)
    async with small.pool.acquire() as conn:
        with pytest.raises(PartitionError, match="live object core/configmaps/default/o0 is at position 1"):
            await detach_before(conn, 6)
    assert len(await _partitions(small)) == 2


async def test_the_conversion_keeps_a_non_empty_table(servers):
    """A database at migration 0004 with events in it, then 0005."""
    url = await fresh_database(servers, migrated=False)
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                               "applied_at timestamptz NOT NULL DEFAULT now())")
            for m in available():
                if m.version < 5:
                    await conn.execute(m.sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                       m.version, m.name)
            async with EventStore.connect(url, migrate_schema=False) as store:
                for i in range(30):
                    await store.append(create(configmap(f"o{i}")), ALICE)
                before = [tuple(r) for r in await conn.fetch("SELECT * FROM events ORDER BY position")]
            assert await migrate(conn) == ["0005_partitioning.sql"]
            assert [tuple(r) for r in await conn.fetch("SELECT * FROM events ORDER BY position")] == before
            assert await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'events'") == b"p"
            indexes = {r["indexname"] for r in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'events'")}
            assert {"events_pkey", "events_stream_version", "events_idempotency_key",
                    "events_occurred_at"} <= indexes
            async with EventStore.connect(url) as store:
                assert (await store.verify()).checked == 30
                await store.append(create(configmap("after")), ALICE)
                assert await store.rebuild_objects() == 31
                assert [p.name for p in await list_partitions(store.pool)] == ["events_p1"]
        finally:
            await conn.close()
    finally:
        await drop_database(servers, url)

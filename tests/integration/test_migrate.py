"""Migrations: applied in order, recorded, safe to run twice or from several runners at once."""
from __future__ import annotations

import asyncio

import asyncpg

from eventplane.store import migrate
from eventplane.store.migrate import available
from tests.support.servers import drop_database, fresh_database


async def test_migrations_are_numbered_in_order():
    versions = [m.version for m in available()]
    assert versions == sorted(versions) and versions[0] == 1
    assert all(m.name.endswith(".sql") for m in available())


async def test_concurrent_runners_apply_each_migration_once_and_a_second_run_applies_nothing(servers):
    url = await fresh_database(servers, migrated=False)
    try:
        conns = [await asyncpg.connect(url) for _ in range(4)]
        try:
            applied = await asyncio.gather(*[migrate(c) for c in conns])
            assert sorted(sum(applied, [])) == [m.name for m in available()]
            assert await migrate(conns[0]) == []
            rows = await conns[0].fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in available()]
            assert await conns[0].fetchval("SELECT to_regclass('events') IS NOT NULL")
        finally:
            for c in conns:
                await c.close()
    finally:
        await drop_database(servers, url)

"""The test session's servers: one embedded PostgreSQL and one NATS, started once.

Tests are isolated by a fresh database each (cloned from a migrated template)
and by their own JetStream stream and subject prefix, never by restarting the
servers; failure tests that restart a server start their own instance.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from eventplane.embedded import EmbeddedNats, EmbeddedPostgres
from eventplane.store import migrate

TEMPLATE_DB = "eventplane_template"
_counter = itertools.count(1)


@dataclass
class Servers:
    postgres: EmbeddedPostgres
    nats: EmbeddedNats

    @property
    def nats_url(self) -> str:
        return self.nats.url

    def database_url(self, name: str) -> str:
        return self.postgres.url.replace(f"/{self.postgres.database}?", f"/{name}?")


def start_servers(data_dir: Path) -> Servers:
    pg = EmbeddedPostgres(data_dir, database="postgres")
    pg.start()
    nats = EmbeddedNats(data_dir)
    nats.start()
    return Servers(pg, nats)


async def prepare_template(servers: Servers) -> None:
    conn = await asyncpg.connect(servers.postgres.admin_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(servers.database_url(TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def fresh_database(servers: Servers, *, migrated: bool = True) -> str:
    name = f"t{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(servers.postgres.admin_url())
    try:
        template = f' TEMPLATE "{TEMPLATE_DB}"' if migrated else ""
        await conn.execute(f'CREATE DATABASE "{name}"{template}')
    finally:
        await conn.close()
    return servers.database_url(name)


async def drop_database(servers: Servers, url: str) -> None:
    name = url.split("/")[3].split("?")[0]
    conn = await asyncpg.connect(servers.postgres.admin_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()

"""The store's narrow interface: append, read a stream, read everything after a
position, the object at a position, and the current state. SQL lives behind it
(and in the modules beside it) and nowhere else (DESIGN.md invariant 4)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from eventplane.objects.events import Event, StreamId

from . import reads
from .append import Append, Appended, Context, GroupCommitter
from .migrate import migrate
from .rebuild import rebuild_objects
from .verify import VerifyResult, verify_chain


class EventStore:
    """`async with EventStore.connect(url) as store:` — one pool, one group committer."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self.pool = pool
        self._committer = GroupCommitter(lambda: asyncpg.connect(url))

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10, migrate_schema: bool = True,
                   **pool_options: Any) -> EventStore:
        """Connect a pool (extra options go to asyncpg.create_pool, e.g. `timeout`) and migrate."""
        pool_options.setdefault("reset", _reset)
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, **pool_options)
        if migrate_schema:
            async with pool.acquire() as conn:
                await migrate(conn)
        return cls(pool, url)

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> _Opening:
        return _Opening(url, kwargs)

    @property
    def commit_stats(self) -> dict[str, int]:
        """How the group committer decided its batches (speculated, reloaded, locked)."""
        return dict(self._committer.stats)

    async def close(self) -> None:
        try:
            await self._committer.close()
        finally:
            await self.pool.close()

    async def append(self, appends: Append | Sequence[Append], context: Context) -> list[Appended]:
        """Append one unit atomically: every event of it is written, or none (and the error says why)."""
        return await self._committer.submit([appends] if isinstance(appends, Append) else list(appends), context)

    async def head(self) -> int:
        return await reads.head(self.pool)

    async def read_stream(self, stream: StreamId, *, after_version: int = 0, limit: int | None = None) -> list[Event]:
        return await reads.read_stream(self.pool, stream, after_version=after_version, limit=limit)

    async def read_all(self, *, after: int, limit: int = 1000) -> list[Event]:
        return await reads.read_all(self.pool, after=after, limit=limit)

    def iter_all(self, *, after: int = 0, batch: int = 1000, until: int | None = None) -> AsyncIterator[Event]:
        return reads.iter_all(self.pool, after=after, batch=batch, until=until)

    async def object_at(self, stream: StreamId, position: int) -> dict[str, Any] | None:
        return await reads.object_at(self.pool, stream, position)

    async def get(self, stream: StreamId) -> dict[str, Any] | None:
        return await reads.get_object(self.pool, stream)

    async def list(self, *, group: str, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return await reads.list_objects(self.pool, group=group, resource=resource, namespace=namespace)

    async def list_snapshot(self, *, group: str, resource: str, namespace: str | None = None,
                            after_key: str = "", limit: int | None = None
                            ) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
        return await reads.list_snapshot(self.pool, group=group, resource=resource, namespace=namespace,
                                         after_key=after_key, limit=limit)

    async def list_at(self, position: int, *, group: str, resource: str, namespace: str | None = None,
                      after_key: str = "", limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        return await reads.list_at(self.pool, position, group=group, resource=resource, namespace=namespace,
                                   after_key=after_key, limit=limit)

    async def verify(self, *, start: int | None = None, end: int | None = None) -> VerifyResult:
        async with self.pool.acquire() as conn:
            return await verify_chain(conn, start=start, end=end)

    async def rebuild_objects(self) -> int:
        async with self.pool.acquire() as conn:
            return await rebuild_objects(conn)


async def _reset(conn: asyncpg.Connection) -> None:
    """Between two uses of a pooled connection only an open transaction needs ending: the store
    keeps no session state (its locks are transaction-scoped, its listeners use their own
    connections), so asyncpg's full reset (RESET ALL, UNLISTEN *, …) is a round trip for nothing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class _Opening:
    def __init__(self, url: str, kwargs: dict[str, Any]) -> None:
        self._url, self._kwargs = url, kwargs
        self._store: EventStore | None = None

    def __await__(self):
        return EventStore.open(self._url, **self._kwargs).__await__()

    async def __aenter__(self) -> EventStore:
        self._store = await EventStore.open(self._url, **self._kwargs)
        return self._store

    async def __aexit__(self, *exc: object) -> None:
        if self._store:
            await self._store.close()

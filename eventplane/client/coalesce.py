"""Concurrent creates (or updates) of one resource, sent together: what a component's bursts of
writes (a ReplicaSet's slow-start batch of pods, the scheduler's bindings and Events, a node's
status writes) cost the API server as one request instead of many.

    pods = Coalescer(client, "pods")
    created = await pods.write(pod, causation=position)       # from many tasks at once
    statuses = Coalescer(client, "pods", subresource="status", verb="update")
    updated = await statuses.write(pod_with_status)

Every `write` awaited in the same turn of the event loop joins one
`Client.create_many` or `update_many` (over NATS one message whose writes share the server's
group commit; over REST still one request per object). Each caller gets its own
object back or its own error raised, exactly as from `Client.create`;
`max_batch` bounds a request and `max_in_flight` the requests outstanding, so a
slow answer holds back at most that many batches while the next one gathers.
Objects carry their namespace in metadata.namespace.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .client import Client, ResourceArg

MAX_BATCH = 256
MAX_IN_FLIGHT = 4


class Coalescer:
    def __init__(self, client: Client, resource: ResourceArg, *, subresource: str = "", verb: str = "create",
                 max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        if verb not in ("create", "update"):
            raise ValueError(f"a Coalescer creates or updates, not {verb!r}")
        self.client = client
        self._write_many = client.create_many if verb == "create" else client.update_many
        self.resource = resource
        self.subresource = subresource
        self.max_batch = max(1, max_batch)
        self._slots = asyncio.Semaphore(max(1, max_in_flight))
        self._pending: list[tuple[dict[str, Any], int | None, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()  # requests on their way (held: tasks are weakly referenced)
        self.requests = 0  # how many requests were made (for tests and benchmarks)

    async def write(self, obj: dict[str, Any], *, causation: int | None = None) -> Any:
        """The created (or updated) object (for a subresource, the server's Status), or the error raised."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((obj, causation, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="coalesced-creates")
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    async def _send(self) -> None:
        await asyncio.sleep(0)  # let every create of this turn of the loop join
        while self._pending:  # no await between the last look and returning: nothing is left behind
            await self._slots.acquire()
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            task = asyncio.create_task(self._send_one(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _send_one(self, batch: list[tuple[dict[str, Any], int | None, asyncio.Future]]) -> None:
        try:
            self.requests += 1
            results = await self._write_many(self.resource, [obj for obj, _, _ in batch],
                                             subresource=self.subresource, causations=[c for _, c, _ in batch])
        except BaseException as exc:  # the whole request failed (unreachable, cancelled): each caller learns it
            results = [exc] * len(batch)
            if not isinstance(exc, Exception):
                for _, _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
        finally:
            self._slots.release()
        for (_, _, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)

"""The API server's watch cache: one subscription to the EVENTS stream, fanned out to
every watch request of this process.

Fed by the bus (a Subscription from the head at start-up); consumed by watch
requests, which get the recent events they ask for from a ring buffer and the
rest as they arrive. A request for a position older than the buffer gets its
own subscription from that position (or 410 Gone when the stream no longer
keeps it). `wait_for(position)` lets a reader wait until this process has
seen a write it knows was committed.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import nats

from eventplane.bus import BusConfig, Subscription
from eventplane.objects.events import Event

log = logging.getLogger("eventplane.watchcache")

BUFFER = 20_000
MAX_BATCH = 512  # live changes handed to a watcher at once


@dataclass(slots=True)  # the cache holds up to BUFFER of them: no __dict__ each for the collector to walk
class Change:
    """One event as watchers see it; the object is decoded once and shared."""

    event: Event
    previous: Change | None = None  # this stream's change before, when the cache has seen it
    _object: dict[str, Any] | None = None

    @property
    def object(self) -> dict[str, Any]:
        if self._object is None:
            self._object = self.event.object()
        return self._object


class WatchCache:
    def __init__(self, nc: nats.NATS, config: BusConfig, *, start_after: int, buffer: int = BUFFER) -> None:
        self._nc = nc
        self._config = config
        self.position = start_after  # the last position this cache has seen
        self._buffer: collections.deque[Change] = collections.deque(maxlen=buffer)
        # Each live reader's queue and what it accepts: an event is queued only for the readers that
        # take it, so that a write wakes no task that would drop it (the namespace and CRD followers,
        # every watch of another resource).
        self._listeners: dict[asyncio.Queue, Callable[[Event], bool]] = {}
        # The last change of every stream seen since start: lets a filtered watch tell an object
        # that starts or stops matching its selector (sent as ADDED or DELETED, as Kubernetes does).
        self._last: dict[str, Change] = {}
        # Readers waiting for a position (wait_for): (position, future), woken by the consumer. Most
        # events have none waiting, and then cost nothing here.
        self._waiting: list[tuple[int, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        sub = Subscription(self._nc, self._config, after=self.position)
        await sub.start()
        self._task = asyncio.create_task(self._consume(sub), name="watch-cache")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _consume(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                key = event.stream.key
                change = Change(event, self._last.get(key))
                if change.previous is not None:
                    change.previous.previous = None  # keep one step of history, not a chain
                if event.type == "Deleted":
                    self._last.pop(key, None)
                else:
                    self._last[key] = change
                self._buffer.append(change)
                self.position = event.position
                for q, accept in self._listeners.items():
                    try:
                        wanted = accept(event)
                    except Exception:
                        wanted = True  # the reader calls it again, and meets the error itself
                    if wanted:
                        q.put_nowait(change)
                if self._waiting:
                    self._wake(event.position)
        finally:
            await sub.close()

    def _wake(self, position: int) -> None:
        still = []
        for wanted, future in self._waiting:
            if wanted > position:
                still.append((wanted, future))
            elif not future.done():
                future.set_result(None)
        self._waiting = still

    async def wait_for(self, position: int, timeout: float) -> bool:
        """True once this cache has seen `position`; False after `timeout` seconds."""
        if self.position >= position:
            return True
        waiter = (position, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter[1]
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    def object_at(self, key: str, position: int) -> dict[str, Any] | None:
        """The object of stream `key` at `position` when that is the last change of it this cache has
        seen, else None: the version a write names can be taken from here instead of the store (an
        event's payload never changes, and the write's own check says whether it is still current).
        A copy of its own for the caller."""
        change = self._last.get(key)
        if change is None or change.event.position != position:
            return None
        return change.event.object()

    def oldest(self) -> int:
        """The lowest `after` a watch can start from out of the buffer."""
        return self._buffer[0].event.position - 1 if self._buffer else self.position

    async def changes(self, after: int, accept: Callable[[Event], bool]) -> AsyncIterator[Change]:
        """Every accepted change after `after`, in order: from the buffer, then live."""
        batches = self.batches(after, accept)
        try:
            async for batch in batches:
                for change in batch:
                    yield change
        finally:
            await batches.aclose()  # stop listening now, not when the generator is collected

    async def batches(self, after: int, accept: Callable[[Event], bool], *,
                      max_batch: int = MAX_BATCH) -> AsyncIterator[list[Change]]:
        """As `changes`, in lists: the live changes already waiting come together (up to `max_batch`),
        so a watcher writes one chunk for a burst instead of one per event."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self._listeners[queue] = accept
        try:
            last = after
            if after < self.oldest():
                # An old position: read it from the stream until we meet the live queue.
                async with Subscription(self._nc, self._config, after=after) as sub:
                    while last < self.position:
                        event = await sub.next(timeout=30)
                        last = event.position
                        if accept(event):
                            yield [Change(event)]
            else:
                batch = []
                for change in list(self._buffer):
                    if change.event.position > last and accept(change.event):
                        last = change.event.position
                        batch.append(change)
                        if len(batch) >= max_batch:
                            yield batch
                            batch = []
                if batch:
                    yield batch
            while True:
                batch = []
                change = await queue.get()
                while True:
                    if change.event.position > last and accept(change.event):
                        last = change.event.position
                        batch.append(change)
                    if len(batch) >= max_batch or queue.empty():
                        break
                    change = queue.get_nowait()
                if batch:
                    yield batch
        finally:
            self._listeners.pop(queue, None)

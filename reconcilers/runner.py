"""The thin loop of a controller: informer events → keys on a WorkQueue → reconcile(key) by workers.

Fed by one or more informers (usually from a SharedInformerFactory); drives a
controller's `reconcile`, which reads the informers' caches, decides (a pure
function of desired and observed state) and writes through the client. Keys,
not objects, are queued: reconcile is level-triggered and re-reads the cache.

Causation (DESIGN invariant 10): `Request.causation` is the position of the
last event the primary informer applied for the key — pass it as
`causation=` on every write made while reconciling that key.

    controller = Controller("configmap-copier", informer, reconcile, workers=2)
    await controller.run()        # until cancelled; drains in-flight keys on the way out
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from .informer import Informer, Obj, key_of
from .workqueue import QueueShutDown, WorkQueue

log = logging.getLogger("eventplane.reconcilers.runner")

__all__ = ["Controller", "Request", "Requeue", "run_workers"]


@dataclass(frozen=True)
class Request:
    """What a worker hands to reconcile: the key, and the position of the event that led to it."""

    key: str
    causation: int | None

    @property
    def namespace(self) -> str:
        return self.key.split("/", 1)[0] if "/" in self.key else ""

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class Requeue(Exception):
    """Raised by reconcile to be retried with backoff without it being logged as a failure."""


Reconcile = Callable[[Request], Awaitable[None]]


class Controller:
    def __init__(self, name: str, informer: Informer, reconcile: Reconcile, *, workers: int = 1,
                 queue: WorkQueue[str] | None = None) -> None:
        self.name = name
        self.informer = informer
        self.reconcile = reconcile
        self.workers = workers
        self.queue: WorkQueue[str] = queue or WorkQueue(name=name)
        informer.add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                             on_delete=self.enqueue)

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def watch_owned(self, informer: Informer, owner_kind: str) -> None:
        """Also reconcile an owner when one of its dependents (another informer's objects) changes."""
        def enqueue_owner(obj: Obj) -> None:
            ns = (obj.get("metadata") or {}).get("namespace")
            for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
                if ref.get("kind") == owner_kind and ref.get("name"):
                    self.queue.add(f"{ns}/{ref['name']}" if ns else ref["name"])
        informer.add_handler(on_add=enqueue_owner, on_update=lambda old, new: enqueue_owner(new),
                             on_delete=enqueue_owner)

    async def run(self) -> None:
        """Start the informer, wait for its cache, run the workers until cancelled, then drain."""
        self.informer.start()
        await self.informer.wait_synced()
        await run_workers(self.name, self.queue,
                          lambda key: self.reconcile(Request(key, self.informer.position_of(key))),
                          workers=self.workers)


async def run_workers(name: str, queue: WorkQueue[str], handle: Callable[[str], Awaitable[None]], *,
                      workers: int = 1, quiet: tuple[type[BaseException], ...] = (Requeue,),
                      also: Iterable[Coroutine[Any, Any, None]] = ()) -> None:
    """`workers` tasks that take keys from `queue` and hand each to `handle`, until cancelled; then the
    queue shuts down and they end. A key handled is forgotten; one whose handling raised is retried
    with backoff (logged, unless the exception is one of `quiet`). `also`: tasks that live as long."""
    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            try:
                await handle(key)
            except quiet:
                queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: %s failed; retrying with backoff", name, key)
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    tasks = [asyncio.create_task(worker(), name=f"{name}:worker{i}") for i in range(workers)]
    tasks += [asyncio.create_task(c) for c in also]
    try:
        await asyncio.gather(*tasks)
    finally:
        await asyncio.shield(queue.shutdown(drain=False))
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

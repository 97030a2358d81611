"""Helpers for integration tests of controllers: run registry controllers against the `api` fixture as
the manager would, and poll until a condition holds.

Fed by the `api` fixture (its kubeconfig) and reconcilers.controllers.registry; used by the controller
tests under tests/integration/.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from eventplane.client import Client
from reconcilers.controllers.registry import ControllerContext, builder
from reconcilers.informer import SharedInformerFactory


@contextlib.asynccontextmanager
async def running(api, *controllers: str | Callable, options: dict | None = None,
                  start_informers: bool = False):
    """The given controllers — registry names or builder functions — running against `api` with one
    shared informer factory until the block ends; yields a client.

    `options` becomes ControllerContext.options; `start_informers` starts every informer the builders
    asked for before the controllers run (as the manager does), not only the ones they start themselves.
    """
    async with Client.from_kubeconfig(str(api.kubeconfig)) as client:
        factory = SharedInformerFactory(client)
        ctx = ControllerContext(client=client, informers=factory, options=dict(options or {}))
        built = [c for b in controllers for c in (builder(b) if isinstance(b, str) else b)(ctx)]
        if start_informers:
            factory.start()
        try:
            async with background(*(c.run() for c in built)):
                yield client
        finally:
            await factory.stop()


@contextlib.asynccontextmanager
async def background(*coros: Coroutine[Any, Any, Any]):
    """The coroutines running as tasks until the block ends (e.g. a scheduler and simulated nodes beside
    the controllers); then cancelled and awaited. Yields the tasks."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, *, interval: float = 0.1,
                     tolerate: tuple[type[BaseException], ...] = (), what: Any = "") -> Any:
    """Await `check()` every `interval` seconds until it returns something truthy, and return that;
    AssertionError once `timeout` seconds have passed, naming `what` (called if callable, at that
    moment). Exceptions of the `tolerate` types count as not yet; the last one is named in the failure
    and chained to it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = await check()
        except tolerate as exc:
            result, last = None, exc
        if result:
            return result
        if loop.time() > deadline:
            name = (what() if callable(what) else what) or getattr(check, "__name__", repr(check))
            raise AssertionError(f"not reached in {timeout}s: {name}" + (f" (last: {last})" if last else "")) \
                from last
        await asyncio.sleep(interval)

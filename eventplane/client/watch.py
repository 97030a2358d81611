"""A watch that keeps going: (type, object) pairs from a transport's watch streams,
resumed from the last resourceVersion whenever a stream ends or breaks.

Made by `Client.watch`; consumed by informers, epctl and tests. As client-go's
RetryWatcher: a stream that ends (server timeout, a lost NATS message, a
restarted API server) is opened again after the last version handled, so the
caller sees every change once; a version the server no longer keeps raises
GoneError, and the caller lists again. Without a starting version the first
stream begins with the current objects as ADDED, ended by the initial-events
bookmark that tells where to resume from.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .operation import Op
from .status import UnreachableError, error_from_status

INITIAL_END = "k8s.io/initial-events-end"
MAX_BACKOFF = 2.0


class Watch:
    def __init__(self, client: Any, make_op: Callable[[str | None], Awaitable[Op]], *,
                 resource_version: str | None, bookmarks: bool, timeout: float | None) -> None:
        self._client = client
        self._make_op = make_op
        self.resource_version = resource_version  # the last version handled: where a resume starts
        self._bookmarks = bookmarks
        self._deadline = time.monotonic() + timeout if timeout else None
        self._gen: AsyncIterator[tuple[str, dict[str, Any]]] | None = None

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> tuple[str, dict[str, Any]]:
        if self._gen is None:
            self._gen = self._events()
        if self._deadline is None:
            return await self._gen.__anext__()
        left = self._deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            return await asyncio.wait_for(self._gen.__anext__(), left)
        except TimeoutError:
            await self.aclose()
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.aclose())

    async def _events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        failures = quiet = 0
        while True:
            op = await self._make_op(self.resource_version)
            initial = not self.resource_version
            stream = self._client.transport.watch(op)
            got_any = False
            try:
                async for event in stream:
                    got_any = True
                    failures = 0
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        raise error_from_status(obj)
                    meta = obj.get("metadata") or {}
                    if kind == "BOOKMARK":
                        if (meta.get("annotations") or {}).get(INITIAL_END) == "true":
                            initial = False
                        if meta.get("resourceVersion") and not initial:
                            self.resource_version = meta["resourceVersion"]
                        if self._bookmarks:
                            yield kind, obj
                        continue
                    # The initial ADDED events come in key order, not version order: only the
                    # initial-events bookmark says where the state they describe ends.
                    if not initial and meta.get("resourceVersion"):
                        self.resource_version = meta["resourceVersion"]
                    yield kind, obj
            except UnreachableError:
                failures += 1
                if failures >= self._client.attempts:
                    raise
            finally:
                await stream.aclose()
            quiet = 0 if got_any else quiet + 1
            if failures or quiet:
                await asyncio.sleep(min(0.1 * 2 ** max(failures, quiet), MAX_BACKOFF))

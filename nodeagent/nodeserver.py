"""What the agent's request servers share (logserver.py's LogServer, execserver.py's ExecServer): one
subscription on `ep.node.<node>.<verb>` (dots in node names become '_', as in the lease keys), a
task per request that outlives its answer, and a stop that ends the subscription and those tasks.
Subclasses implement `_on_request(msg)` and hand long work to `_spawn`."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from eventplane.client.nodeleases import key_for

from .runtime import Runtime

CHUNK = 256 * 1024   # bytes per message of a stream
STREAM_HEADER = "Eventplane-Stream"


class NodeServer:
    VERB = ""

    def __init__(self, nc: Any, node: str, runtime: Runtime) -> None:
        self.nc = nc
        self.node = node
        self.runtime = runtime
        self._sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def subject_for(cls, node: str) -> str:
        return f"ep.node.{key_for(node)}.{cls.VERB}"

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subject_for(self.node), cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection is gone already
                pass
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Any, error: dict[str, Any] | None,
                      relay: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        """Answer `{"status": error}`, or `{"ok": true, "input": <subject>}` and run `relay` with the
        subscription of that subject (what the API sends for the rest of the exchange)."""
        if error is not None:
            await msg.respond(json.dumps({"status": error}).encode())
            return
        input_subject = self.nc.new_inbox()
        sub = await self.nc.subscribe(input_subject)
        await msg.respond(json.dumps({"ok": True, "input": input_subject}).encode())
        self._spawn(relay(sub))

    async def _on_request(self, msg: Any) -> None:
        raise NotImplementedError

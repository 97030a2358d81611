"""Container logs served over NATS to the API server, for `kubectl logs [-f] [--previous]`.

Fed by the API server (eventplane/api/podproxy.py), which never talks to a
container runtime itself: it asks the pod's node on `ep.node.<node>.logs`
(one subject per node; dots in node names become '_', as in the lease keys).
The request is JSON: namespace, name, uid, container, previous, tailLines,
sinceSeconds, timestamps, follow, and `inbox`/`stop` subjects.

The agent answers the request at once — `{"ok": true}`, or `{"status": {code,
reason, message}}` with the kubelet's wording when there is nothing to read —
then publishes the log bytes to `inbox` in chunks, in order, and ends with an
empty message whose header `Eventplane-Stream` is `end`. With `follow` it keeps
publishing what the container writes until the container stops or the API
publishes anything to `stop` (its client went away).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from .nodeserver import CHUNK, STREAM_HEADER, NodeServer
from .runtime import APP, INIT, ContainerRecord

log = logging.getLogger("eventplane.nodeagent.logs")

class LogServer(NodeServer):
    VERB = "logs"

    async def _on_request(self, msg: Any) -> None:
        try:
            req = json.loads(msg.data)
            instance, error = await self._find(req)
        except (ValueError, TypeError) as exc:
            instance, error = None, {"code": 400, "reason": "BadRequest", "message": f"bad logs request: {exc}"}
        if error is not None:
            await msg.respond(json.dumps({"status": error}).encode())
            return
        await msg.respond(b'{"ok": true}')
        self._spawn(self._stream(req, instance))

    async def _find(self, req: dict[str, Any]) -> tuple[ContainerRecord | None, dict[str, Any] | None]:
        name, container = req.get("name", ""), req.get("container", "")
        records = [r for r in await self.runtime.containers(req.get("uid") or None)
                   if r.name == container and r.role in (APP, INIT)]
        records.sort(key=lambda r: r.restart_count, reverse=True)
        if req.get("previous"):
            previous = next((r for r in records[1:] if r.exited), None)
            if previous is None:
                return None, {"code": 400, "reason": "BadRequest",
                              "message": f'previous terminated container "{container}" in pod "{name}" not found'}
            return previous, None
        if not records or records[0].state == "created":
            return None, {"code": 400, "reason": "BadRequest",
                          "message": f'container "{container}" in pod "{name}" is waiting to start: '
                                     "ContainerCreating"}
        return records[0], None

    async def _stream(self, req: dict[str, Any], r: ContainerRecord) -> None:
        inbox = req["inbox"]
        tail = req.get("tailLines")
        tail = int(tail) if tail is not None and int(tail) >= 0 else None
        since = time.time() - float(req["sinceSeconds"]) if req.get("sinceSeconds") else None
        timestamps = bool(req.get("timestamps"))
        stop = asyncio.Event()
        stop_sub = None
        try:
            if req.get("follow") and r.running:
                if req.get("stop"):
                    async def on_stop(_msg: Any) -> None:
                        stop.set()
                    stop_sub = await self.nc.subscribe(req["stop"], cb=on_stop)
                stream = self.runtime.follow_logs(r.id, tail=tail, timestamps=timestamps, since=since)
                reader = asyncio.ensure_future(self._pump(stream, inbox))
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                for t in (reader, stopper):
                    t.cancel()
                await asyncio.gather(reader, stopper, return_exceptions=True)
            else:
                data = await self.runtime.logs(r.id, tail=tail, timestamps=timestamps, since=since)
                for i in range(0, len(data), CHUNK):
                    await self.nc.publish(inbox, data[i:i + CHUNK])
        except Exception as exc:  # the runtime failed midway: the reader gets what there was
            log.warning("logs of %s/%s: %s", req.get("name"), req.get("container"), exc)
        finally:
            if stop_sub is not None:
                try:
                    await stop_sub.unsubscribe()
                except Exception:
                    pass
            try:
                await self.nc.publish(inbox, b"", headers={STREAM_HEADER: "end"})
            except Exception:
                pass

    async def _pump(self, stream: Any, inbox: str) -> None:
        async for chunk in stream:
            for i in range(0, len(chunk), CHUNK):
                await self.nc.publish(inbox, chunk[i:i + CHUNK])

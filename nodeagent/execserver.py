"""`kubectl exec` and `kubectl attach` served over NATS to the API server: a command run in a
pod's container (or the container's own streams, with `"mode": "attach"`), relayed both ways.

Fed by the API server (eventplane/api/podproxy.py), which holds the client's WebSocket
(v5.channel.k8s.io) and asks the pod's node on `ep.node.<node>.exec` with JSON: uid, name,
container, command, stdin, tty and an `inbox`. The agent starts the command (the runtime's
exec_session) and answers `{"ok": true, "input": <subject>}` — or `{"status": …}` with the
kubelet's wording when the container is not running — then:

- publishes the command's output to `inbox`, header `Channel` 1 (stdout) or 2 (stderr);
- takes from `input`: header `Op` stdin (bytes), close (stdin closed), resize (JSON Width and
  Height), cancel (the client went away: the session ends);
- ends with an empty message whose headers say `Eventplane-Stream: end` and `Exit-Code`.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from .nodeserver import CHUNK, STREAM_HEADER, NodeServer
from .runtime import APP, INIT

log = logging.getLogger("eventplane.nodeagent.exec")

class ExecServer(NodeServer):
    VERB = "exec"

    async def _on_request(self, msg: Any) -> None:
        try:
            req = json.loads(msg.data)
            session, error = await self._open(req)
        except Exception as exc:  # a request we cannot act on is answered, never dropped
            session, error = None, {"code": 500, "message": f"unable to start the command: {exc}"}
        await self._answer(msg, error, lambda sub: self._relay(req, session, sub))

    async def _open(self, req: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        container = req.get("container", "")
        running = [r for r in await self.runtime.containers(req.get("uid") or None)
                   if r.name == container and r.role in (APP, INIT) and r.running]
        if not running:
            return None, {"code": 400, "message": f'unable to upgrade connection: container not found ("{container}")'}
        r = max(running, key=lambda r: r.restart_count)
        if req.get("mode") == "attach":
            attach = getattr(self.runtime, "attach_session", None)
            if attach is None:
                return None, {"code": 400, "message": f"the {self.runtime.name} runtime cannot attach to a container"}
            return await attach(r.id, stdin=bool(req.get("stdin"))), None
        command = [str(a) for a in req.get("command") or []]
        if not command:
            return None, {"code": 400, "message": "you must specify at least one command for the container"}
        session = await self.runtime.exec_session(r.id, command, tty=bool(req.get("tty")),
                                                  stdin=bool(req.get("stdin")))
        return session, None

    async def _relay(self, req: dict[str, Any], session: Any, sub: Any) -> None:
        inbox = req["inbox"]

        async def output() -> None:
            while (item := await session.read()) is not None:
                channel, data = item
                for i in range(0, len(data), CHUNK):
                    await self.nc.publish(inbox, data[i:i + CHUNK], headers={"Channel": str(channel)})

        async def input_() -> None:
            async for m in sub.messages:
                op = (m.headers or {}).get("Op", "stdin")
                if op == "stdin":
                    await session.write(m.data)
                elif op == "close":
                    session.close_stdin()
                elif op == "resize":
                    size = json.loads(m.data or b"{}")
                    try:
                        await session.resize(int(size.get("Height", 0)), int(size.get("Width", 0)))
                    except Exception:  # a resize before the process started; the next one will do
                        pass
                elif op == "cancel":
                    return

        out_task, in_task = asyncio.create_task(output()), asyncio.create_task(input_())
        headers = {STREAM_HEADER: "end"}
        try:
            done, _ = await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
            if out_task in done:
                headers["Exit-Code"] = str(await session.exit_code())
        except Exception as exc:
            log.warning("exec in %s/%s: %s", req.get("name"), req.get("container"), exc)
            headers["Error"] = str(exc)
        finally:
            for t in (out_task, in_task):
                t.cancel()
            await asyncio.gather(out_task, in_task, return_exceptions=True)
            session.close()
            try:
                await sub.unsubscribe()
                await self.nc.publish(inbox, b"", headers=headers)
            except Exception:
                pass

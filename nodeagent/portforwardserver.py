"""`kubectl port-forward` served over NATS to the API server: a TCP connection to a port of a pod
on this node, relayed both ways.

Fed by the API server (eventplane/api/portforward.py), which holds kubectl's SPDY streams and
asks the pod's node on `ep.node.<node>.portforward` with JSON: namespace, name, uid, port and an
`inbox`, once per connection kubectl accepted. The agent connects to the pod — the Docker
runtime's pods at their IP on the local bridge (checked with `ip route get`, as the probes do:
an address not reached directly from this machine is refused), the process runtime's on
127.0.0.1 — and answers `{"ok": true, "input": <subject>}`, or `{"status": {code, message}}` when
the pod is not here or nothing listens (the message is what the kubelet would put on kubectl's
error stream after its "error forwarding port …" prefix, which the API adds).

The bytes then travel as an eventplane.client.natspipe.Pipe (ordered, numbered, credit-based):
the API's side publishes what kubectl sends to `input`, the agent writes it to the pod, and
publishes what the pod answers to `inbox`. A half-close travels as `eof` (the agent shuts the
connection's write side); when the pod closes its side, the agent waits a second for kubectl's
side to finish, as containerd does, then ends the pipe; when the API ends the pipe (kubectl went
away), the connection is closed.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from eventplane.client.natspipe import CHUNK, Pipe, PipeClosed

from .nodeserver import NodeServer
from .probes import local_route_error
from .runtime import INFRA

log = logging.getLogger("eventplane.nodeagent.portforward")

CONNECT_TIMEOUT = 5.0
CLOSE_GRACE = 1.0     # seconds the other direction gets once the pod closed its side


class PortForwardServer(NodeServer):
    VERB = "portforward"

    async def _on_request(self, msg: Any) -> None:
        try:
            req = json.loads(msg.data)
            conn, error = await self._connect(req)
        except Exception as exc:  # a request we cannot act on is answered, never dropped
            conn, error = None, {"code": 500, "message": f"unable to forward: {exc}"}
        await self._answer(msg, error, lambda sub: self._relay(req, *conn, Pipe(self.nc, sub, req["inbox"])))

    async def _address(self, uid: str) -> tuple[str, str]:
        """The pod's address on this node and its sandbox's id, or ("", why not)."""
        records = await self.runtime.containers(uid or None)
        if not records:
            return "", "pod not found on this node"
        if self.runtime.name == "process":
            return "127.0.0.1", ""
        sandbox = next((r for r in records if r.role == INFRA and r.running and r.ip), None)
        if sandbox is None:
            return "", "the pod's sandbox is not running"
        if err := await asyncio.to_thread(local_route_error, sandbox.ip):
            return "", err
        return sandbox.ip, ""

    async def _connect(self, req: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        port = int(req.get("port") or 0)
        if not 0 < port < 65536:
            return None, {"code": 400, "message": f'invalid port "{req.get("port")}"'}
        host, why = await self._address(str(req.get("uid") or ""))
        if not host:
            return None, {"code": 404, "message": why}
        try:
            conn = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except TimeoutError:
            return None, {"code": 500, "message": f"failed to connect to {host}:{port}: dial tcp4 {host}:{port}: "
                                                  "i/o timeout"}
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)   # as Go's dialer words it
            return None, {"code": 500, "message": f"failed to connect to {host}:{port}: dial tcp4 {host}:{port}: "
                                                  f"connect: {reason}"}
        return conn, None

    async def _relay(self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     pipe: Pipe) -> None:
        async def to_pod() -> None:
            while (data := await pipe.recv()) is not None:
                writer.write(data)
                await writer.drain()
            if not pipe.closed.is_set() and writer.can_write_eof():
                writer.write_eof()        # kubectl's side is done: the pod reads its end

        async def from_pod() -> None:
            while data := await reader.read(CHUNK):
                await pipe.send(data)
            await pipe.send_eof()

        up, down = asyncio.ensure_future(to_pod()), asyncio.ensure_future(from_pod())
        gone = asyncio.ensure_future(pipe.closed.wait())
        error = ""
        try:
            done, _ = await asyncio.wait({up, down, gone}, return_when=asyncio.FIRST_COMPLETED)
            if down in done and not gone.done():
                await asyncio.wait({up, gone}, timeout=CLOSE_GRACE, return_when=asyncio.FIRST_COMPLETED)
            elif up in done and not gone.done():
                await asyncio.wait({down, gone}, return_when=asyncio.FIRST_COMPLETED)
            for t in (up, down):
                if t.done() and not t.cancelled() and isinstance(t.exception(), OSError):
                    error = f"error copying to or from {req.get('name')}:{req.get('port')}: {t.exception()}"
        except Exception as exc:
            error = str(exc)
        finally:
            for t in (up, down, gone):
                t.cancel()
            results = await asyncio.gather(up, down, gone, return_exceptions=True)
            for r in results:
                if isinstance(r, Exception) and not isinstance(r, (PipeClosed, asyncio.CancelledError, OSError)):
                    log.warning("port-forward to %s:%s: %s", req.get("name"), req.get("port"), r)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            await pipe.end(error)

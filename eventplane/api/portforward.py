"""pods/portforward: `kubectl port-forward`, relayed API server → NATS → the pod's node agent. The
API server never talks to the pod or its runtime.

Fed by the REST router (GET or POST /api/v1/namespaces/{namespace}/pods/{name}/portforward,
registered with podproxy's routes). The request upgrades to SPDY/3.1 (`Upgrade: SPDY/3.1`,
`X-Stream-Protocol-Version: portforward.k8s.io`; kubectl before 1.31, and later ones when the
tunnel is refused) or opens a WebSocket whose subprotocol `SPDY/3.1+portforward.k8s.io` tunnels the
same SPDY bytes (KEP-4006, kubectl ≥ 1.31). spdyupgrade.py does either; spdy.py is the protocol.

On the session, for every local connection kubectl accepts it opens two streams with headers
`streamType` (`error`, then `data`), `port` and `requestID` (older clients without requestID are
paired as the kubelet pairs them: the data stream is the error stream's id + 2). For each pair
the agent of the pod's node is asked on `ep.node.<node>.portforward`
(nodeagent/portforwardserver.py) to connect to the port, and the data stream and the agent are
joined by an eventplane.client.natspipe.Pipe both ways. A failure is written on the error stream
as the kubelet writes it — "error forwarding port P to pod NAME, uid UID: …" — which kubectl
prints as "an error occurred forwarding L -> P: …" before giving up on the session. The error
stream is closed once the pod's side of the connection ended, so kubectl closes its local
connection at once.

Query `ports` (kube-apiserver's PodPortForwardOptions) is optional — kubectl sends none — but
when given every entry must be a port (Status 400 otherwise, with the kubelet's wording). A
request that is neither upgrade gets the kubelet's 400 "missing upgrade headers".
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from eventplane.client.natspipe import Pipe, PipeClosed
from eventplane.objects import errors

from . import spdy, spdyupgrade
from .podproxy import NATS, _node_key

log = logging.getLogger("eventplane.api.portforward")

SUBJECT = "ep.node.{node}.portforward"
PROTOCOL = "portforward.k8s.io"
ANSWER_TIMEOUT = 5.0
PAIR_TIMEOUT = 30.0      # the kubelet's streamCreationTimeout for the second stream of a pair


def add_routes(router: web.UrlDispatcher, resources: Any) -> None:
    async def portforward(request: web.Request) -> web.StreamResponse:
        return await serve_portforward(request, resources)

    router.add_route("GET", "/api/v1/namespaces/{namespace}/pods/{name}/portforward", portforward)
    router.add_route("POST", "/api/v1/namespaces/{namespace}/pods/{name}/portforward", portforward)


def parse_ports(values: list[str]) -> list[int]:
    """`ports` as kube-apiserver takes it (repeated or comma-separated), checked as the kubelet does."""
    ports = []
    for value in values:
        for p in value.split(","):
            try:
                port = int(p.strip(), 10)
            except ValueError:
                raise errors.BadRequestError(f'unable to parse "{p}" as a port: strconv.ParseUint: '
                                             f'parsing "{p}": invalid syntax') from None
            if port > 65535:
                raise errors.BadRequestError(f'unable to parse "{p}" as a port: strconv.ParseUint: '
                                             f'parsing "{p}": value out of range')
            if port < 1:
                raise errors.BadRequestError(f'port "{p}" must be > 0')
            ports.append(port)
    return ports


async def serve_portforward(request: web.Request, resources: Any) -> web.StreamResponse:
    parse_ports(request.query.getall("ports", []))
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    pod = await resources.registry.get(resources.catalog().get("", "v1", "pods"), namespace, name)
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise errors.BadRequestError(f"pod {name} is not scheduled to a node yet")
    nc = request.app.get(NATS)
    if nc is None or not nc.is_connected:
        raise errors.EventplaneError("the API server has no NATS connection to reach the node agents")
    if spdyupgrade.wants_spdy(request):
        spdyupgrade.negotiate(request, (PROTOCOL,))
        session, response = await spdyupgrade.upgrade(request, PROTOCOL)
    elif spdyupgrade.wants_tunnel(request, (PROTOCOL,)):
        session, response = await spdyupgrade.tunnel(request, (PROTOCOL,))
    elif request.headers.get("Upgrade", "").lower() == "websocket":
        raise errors.BadRequestError(f"unable to upgrade: port-forward over a WebSocket is served as "
                                     f"{spdyupgrade.TUNNEL_PREFIX}{PROTOCOL} only")
    else:
        raise errors.BadRequestError("unable to upgrade: missing upgrade headers in request")
    await Forwarder(nc, pod, node, session).run()
    return response


class Forwarder:
    """One port-forward session: pairs the client's streams and relays each pair."""

    def __init__(self, nc: Any, pod: dict[str, Any], node: str, session: spdy.Session) -> None:
        self.nc, self.pod, self.node, self.session = nc, pod, node, session
        meta = pod["metadata"]
        self.name, self.namespace, self.uid = meta["name"], meta.get("namespace", ""), meta.get("uid", "")
        self._pending: dict[str, dict[str, spdy.Stream]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        serving = asyncio.ensure_future(self.session.serve())
        try:
            while (stream := await self.session.accept()) is not None:
                with contextlib.suppress(spdy.StreamReset, ConnectionError):
                    await self._paired(stream)
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.session.close()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)

    async def _paired(self, stream: spdy.Stream) -> None:
        kind = stream.header("streamType")
        if kind not in ("error", "data"):
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        request_id = stream.header("requestID") or str(stream.id if kind == "error" else stream.id - 2)
        pair = self._pending.setdefault(request_id, {})
        if kind in pair:
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        pair[kind] = stream
        if len(pair) == 1:
            self._spawn(self._expire(request_id, pair))
            return
        del self._pending[request_id]
        self._spawn(self._forward(pair["error"], pair["data"]))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, request_id: str, pair: dict[str, spdy.Stream]) -> None:
        await asyncio.sleep(PAIR_TIMEOUT)
        if self._pending.get(request_id) is not pair:
            return      # completed in time
        del self._pending[request_id]
        if "error" in pair:
            await self._report(pair["error"], "timed out waiting for the data stream")
        for s in pair.values():
            with contextlib.suppress(spdy.StreamReset, ConnectionError):
                await s.reset()

    async def _report(self, error_stream: spdy.Stream, message: str, port: str = "") -> None:
        text = f"error forwarding port {port} to pod {self.name}, uid {self.uid}: {message}" if port else message
        with contextlib.suppress(spdy.StreamReset, ConnectionError):
            await error_stream.write(text.encode())
            await error_stream.close()

    async def _forward(self, error_stream: spdy.Stream, data: spdy.Stream) -> None:
        port = data.header("port")
        try:
            if len(parse_ports([port])) != 1:
                raise errors.BadRequestError(f'invalid port "{port}"')
        except errors.EventplaneError as exc:
            await self._report(error_stream, exc.message)
            with contextlib.suppress(spdy.StreamReset, ConnectionError):
                await data.close()
            return
        pipe = None
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            body = {"namespace": self.namespace, "name": self.name, "uid": self.uid, "port": int(port), "inbox": inbox}
            try:
                answer = await self.nc.request(SUBJECT.format(node=_node_key(self.node)), json.dumps(body).encode(),
                                               timeout=ANSWER_TIMEOUT)
                doc = json.loads(answer.data or b"{}")
            except Exception as exc:
                doc = {"status": {"message": f'the node agent of node "{self.node}" does not answer: '
                                             f"{type(exc).__name__}"}}
            if doc.get("status"):
                await self._report(error_stream, doc["status"].get("message", ""), port)
                with contextlib.suppress(spdy.StreamReset, ConnectionError):
                    await data.close()
                return
            pipe = Pipe(self.nc, sub, doc["input"])
            await self._relay(error_stream, data, pipe, port)
        finally:
            if pipe is not None:
                await pipe.end()
            else:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _relay(self, error_stream: spdy.Stream, data: spdy.Stream, pipe: Pipe, port: str) -> None:
        async def to_pod() -> None:
            while chunk := await data.read():
                await pipe.send(chunk)
            if not data.was_reset:
                await pipe.send_eof()

        async def from_pod() -> None:
            while (chunk := await pipe.recv()) is not None:
                await data.write(chunk)
            if pipe.error:
                await self._report(error_stream, pipe.error, port)
            with contextlib.suppress(spdy.StreamReset, ConnectionError):
                await data.close()
                await error_stream.close()

        up, down = asyncio.ensure_future(to_pod()), asyncio.ensure_future(from_pod())
        gone = asyncio.ensure_future(pipe.closed.wait())
        try:
            # Until the agent ended the pipe (it closed the pod's connection), both directions are
            # done, or kubectl reset the stream (or left: the session's end resets every stream).
            while not gone.done() and not (up.done() and (down.done() or data.was_reset)):
                await asyncio.wait({t for t in (up, down, gone) if not t.done()},
                                   return_when=asyncio.FIRST_COMPLETED)
            await asyncio.wait({down}, timeout=1.0)    # what the agent sent before its end
        finally:
            for t in (up, down, gone):
                t.cancel()
            for r in await asyncio.gather(up, down, gone, return_exceptions=True):
                if isinstance(r, Exception) and not isinstance(r, (PipeClosed, spdy.StreamReset, ConnectionError,
                                                                   asyncio.CancelledError)):
                    log.warning("port-forward to %s/%s:%s: %s", self.namespace, self.name, port, r)

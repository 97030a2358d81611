"""pods/log, pods/exec and pods/attach: `kubectl logs [-f] [--previous] [-c] [--tail] [--since]`,
`kubectl exec [-i] [-t] -- cmd` and `kubectl attach`, relayed API server → NATS → the pod's node agent. The API
server never talks to a container runtime.

Fed by the REST router (GET /api/v1/namespaces/{namespace}/pods/{name}/log and …/exec,
registered ahead of the resource routes); reads the pod from the registry, checks the container
as kube-apiserver does (wording included), and asks the pod's node on `ep.node.<node>.logs` or
`.exec` (nodeagent/logserver.py and execserver.py describe the exchanges).

- logs: the bytes the agent publishes to an inbox of ours are written to the client as they
  come; when the client goes away during `-f`, the agent is told to stop.
- exec and attach: a WebSocket with subprotocol v5.channel.k8s.io (or v4): each binary frame starts with
  its channel — 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 resize, 255 close (v5: a
  stream closed, so stdin's EOF). The Status carries a non-zero exit code as kube-apiserver
  does, and kubectl exits with it. kubectl before 1.30 upgrades to SPDY/3.1 instead (v4, v3 or
  v2.channel.k8s.io, one stream per channel): spdyupgrade.py serves it on the same relay.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from eventplane.objects import errors

from . import spdyupgrade

NATS: web.AppKey[Any] = web.AppKey("eventplane.podproxy.nats", object)
SUBJECT = "ep.node.{node}.logs"
STREAM_HEADER = "Eventplane-Stream"
ANSWER_TIMEOUT = 5.0      # seconds for the agent to say whether it has the logs
IDLE_TIMEOUT = 30.0       # seconds without a chunk before a non-follow read gives up

LOG_PARAMS = {"container", "follow", "previous", "tailLines", "sinceSeconds", "sinceTime", "timestamps",
              "limitBytes", "insecureSkipTLSVerifyBackend", "pretty"}


def add_routes(router: web.UrlDispatcher, resources: Any) -> None:
    async def logs(request: web.Request) -> web.StreamResponse:
        return await serve_logs(request, resources)
    async def exec_(request: web.Request) -> web.StreamResponse:
        return await serve_exec(request, resources)

    router.add_get("/api/v1/namespaces/{namespace}/pods/{name}/log", logs)
    router.add_route("*", "/api/v1/namespaces/{namespace}/pods/{name}/exec", exec_)

    async def attach(request: web.Request) -> web.StreamResponse:
        return await serve_exec(request, resources, attach=True)

    router.add_route("*", "/api/v1/namespaces/{namespace}/pods/{name}/attach", attach)

    from . import portforward   # pods/portforward; it takes NATS from this module
    portforward.add_routes(router, resources)


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _int(q: Any, key: str) -> int | None:
    if key not in q:
        return None
    try:
        return int(q[key])
    except ValueError:
        raise errors.BadRequestError(f'{key}: Invalid value: "{q[key]}": must be an integer') from None


def _node_key(node: str) -> str:
    return node.replace(".", "_")


async def serve_logs(request: web.Request, resources: Any) -> web.StreamResponse:
    q = request.query
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    info = resources.catalog().get("", "v1", "pods")
    pod = await resources.registry.get(info, namespace, name)
    spec = pod.get("spec") or {}
    containers = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    container = q.get("container") or ""
    if not container:
        if len(spec.get("containers") or []) != 1:
            raise errors.BadRequestError(f"a container name must be specified for pod {name}, choose one of: "
                                         f"[{' '.join(c['name'] for c in spec.get('containers') or [])}]")
        container = spec["containers"][0]["name"]
    if container not in containers:
        raise errors.BadRequestError(f"container {container} is not valid for pod {name}")
    node = spec.get("nodeName")
    if not node:
        raise errors.BadRequestError(f'container "{container}" in pod "{name}" is waiting to start: '
                                     "the pod is not scheduled to a node yet")
    tail, since = _int(q, "tailLines"), _int(q, "sinceSeconds")
    if tail is not None and tail < 0:
        raise errors.BadRequestError("tailLines: Invalid value: must be greater than or equal to 0")
    if since is None and q.get("sinceTime"):
        try:
            when = datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise errors.BadRequestError(f'sinceTime: Invalid value: "{q["sinceTime"]}"') from None
        since = max(0, int((datetime.now(timezone.utc) - when).total_seconds()))
    limit = _int(q, "limitBytes")
    follow = _flag(q.get("follow"))

    nc = request.app.get(NATS)
    if nc is None or not nc.is_connected:
        raise errors.EventplaneError("the API server has no NATS connection to reach the node agents")
    inbox = nc.new_inbox()
    stop = inbox + ".stop"
    sub = await nc.subscribe(inbox)
    try:
        body = {"namespace": namespace, "name": name, "uid": pod["metadata"].get("uid"), "container": container,
                "previous": _flag(q.get("previous")), "tailLines": tail, "sinceSeconds": since,
                "timestamps": _flag(q.get("timestamps")), "follow": follow, "inbox": inbox, "stop": stop}
        try:
            answer = await nc.request(SUBJECT.format(node=_node_key(node)), json.dumps(body).encode(),
                                      timeout=ANSWER_TIMEOUT)
        except Exception as exc:  # no responders, timeout: the agent is not there
            err = errors.EventplaneError(f'the node agent of node "{node}" does not answer: '
                                         f"{type(exc).__name__}")
            err.code, err.reason = 503, "ServiceUnavailable"
            raise err from None
        doc = json.loads(answer.data or b"{}")
        if doc.get("status"):
            s = doc["status"]
            err = errors.BadRequestError(s.get("message", "")) if s.get("code") == 400 else \
                errors.EventplaneError(s.get("message", ""))
            raise err
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = 0
        try:
            while True:
                msg = await sub.next_msg(timeout=None if follow else IDLE_TIMEOUT)
                if (msg.headers or {}).get(STREAM_HEADER) == "end":
                    break
                data = msg.data
                if limit is not None:
                    data = data[:max(0, limit - sent)]
                if data:
                    await response.write(data)
                    sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:  # the agent went silent: end what we have
            pass
        finally:
            if follow:
                try:
                    await nc.publish(stop, b"")
                except Exception:
                    pass
        await response.write_eof()
        return response
    finally:
        try:
            await sub.unsubscribe()
        except Exception:
            pass


# --- exec -----------------------------------------------------------------------------------------

EXEC_SUBJECT = "ep.node.{node}.exec"
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


async def _target(request: web.Request, resources: Any) -> tuple[dict[str, Any], str, str]:
    """The pod, its container (the first when none is named) and its node, or the API's errors."""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    pod = await resources.registry.get(resources.catalog().get("", "v1", "pods"), namespace, name)
    spec = pod.get("spec") or {}
    names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    container = request.query.get("container") or ((spec.get("containers") or [{}])[0].get("name") or "")
    if container not in names:
        raise errors.BadRequestError(f"container {container} is not valid for pod {name}")
    if not spec.get("nodeName"):
        raise errors.BadRequestError(f"pod {name} is not scheduled to a node yet")
    return pod, container, spec["nodeName"]


async def serve_exec(request: web.Request, resources: Any, *, attach: bool = False) -> web.StreamResponse:
    """exec (a command) or attach (the container's own streams): the same relay."""
    pod, container, node = await _target(request, resources)
    name = pod["metadata"]["name"]
    command = request.query.getall("command", [])
    if not command and not attach:
        raise errors.BadRequestError("you must specify at least 1 command")
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=0)
    over_spdy = spdyupgrade.wants_spdy(request)   # kubectl before 1.30
    if over_spdy:
        spdy_protocol = spdyupgrade.negotiate(request, spdyupgrade.EXEC_PROTOCOLS)
        spdy_streams = spdyupgrade.exec_streams(request.query)
    elif not ws.can_prepare(request).ok:
        raise errors.BadRequestError("Upgrade request required")
    nc = request.app.get(NATS)
    if nc is None or not nc.is_connected:
        raise errors.EventplaneError("the API server has no NATS connection to reach the node agents")
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        body = {"namespace": pod["metadata"].get("namespace"), "name": name, "uid": pod["metadata"].get("uid"),
                "container": container, "command": command, "tty": _flag(request.query.get("tty")),
                "stdin": _flag(request.query.get("stdin")), "inbox": inbox, "mode": "attach" if attach else "exec"}
        try:
            answer = await nc.request(EXEC_SUBJECT.format(node=_node_key(node)), json.dumps(body).encode(),
                                      timeout=ANSWER_TIMEOUT)
        except Exception as exc:
            err = errors.EventplaneError(f'the node agent of node "{node}" does not answer: {type(exc).__name__}')
            err.code, err.reason = 503, "ServiceUnavailable"
            raise err from None
        doc = json.loads(answer.data or b"{}")
        if doc.get("status"):
            s = doc["status"]
            raise errors.BadRequestError(s.get("message", "")) if s.get("code") == 400 else \
                errors.EventplaneError(s.get("message", ""))
        to_agent = doc["input"]
        if over_spdy:
            try:
                client: Any = await spdyupgrade.SpdyExec.open(request, spdy_protocol, **spdy_streams)
            except BaseException:   # the client never opened its streams: the command is not wanted
                await nc.publish(to_agent, b"", headers={"Op": "cancel"})
                raise
        else:
            await ws.prepare(request)
            client = _WebSocketExec(ws)

        async def from_agent() -> None:
            while True:
                msg = await sub.next_msg(timeout=None)
                headers = msg.headers or {}
                if headers.get(STREAM_HEADER) == "end":
                    if headers.get("Error"):
                        status = {"metadata": {}, "status": "Failure", "message": headers["Error"],
                                  "reason": "InternalError"}
                    else:
                        status = exit_status(int(headers.get("Exit-Code") or 0), command)
                    await client.finish(status)
                    return
                await client.output(int(headers.get("Channel") or STDOUT), msg.data)

        async def from_client() -> None:
            async for op, payload in client.input():
                await nc.publish(to_agent, payload, headers={"Op": op})
            await nc.publish(to_agent, b"", headers={"Op": "cancel"})   # the client went away

        agent_side, client_side = asyncio.ensure_future(from_agent()), asyncio.ensure_future(from_client())
        try:
            await asyncio.wait({agent_side, client_side}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (agent_side, client_side):
                t.cancel()
            await asyncio.gather(agent_side, client_side, return_exceptions=True)
            await client.close()
        return client.response
    finally:
        try:
            await sub.unsubscribe()
        except Exception:
            pass


class _WebSocketExec:
    """The client side of the exec relay for a WebSocket (v5/v4.channel.k8s.io): a channel byte
    before each message (spdyupgrade.SpdyExec is the same for SPDY)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = self.response = ws

    async def output(self, channel: int, data: bytes) -> None:
        await self.ws.send_bytes(bytes([channel]) + data)

    async def finish(self, status: dict[str, Any]) -> None:
        await self.ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())

    async def input(self) -> AsyncIterator[tuple[str, bytes]]:
        async for m in self.ws:
            if m.type != web.WSMsgType.BINARY or not m.data:
                continue
            channel, payload = m.data[0], m.data[1:]
            if channel == STDIN:
                yield "stdin", payload
            elif channel == RESIZE:
                yield "resize", payload
            elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                yield "close", b""

    async def close(self) -> None:
        await self.ws.close()

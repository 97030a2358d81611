"""Watches over NATS: `PREFIX.watch` answered with where the events go, then a stream of
WatchEvents published to the requester's inbox.

Fed by natsapi.py with an authenticated watch request; reads the initial state
from the registry and the changes from the watch cache, as the REST watch
(watching.py) does, with the same semantics for resourceVersion,
sendInitialEvents and bookmarks.

The protocol, for a client:
1. Subscribe to an inbox of your own, then request `PREFIX.watch` with the
   usual body plus `"inbox": <subject>` (without one the server makes up
   `_INBOX.epwatch.<id>`; subscribe to it as soon as the answer names it).
2. The answer is {"kind": "WatchStarted", "subject": inbox, "stop": subject,
   "heartbeatSeconds": s}, or a Status (bad token, unknown kind…).
3. Before the first event, and every `heartbeatSeconds` after, the server
   sends the inbox a *request* with header `Eventplane-Watch: heartbeat`;
   answer it (any body). No responders — the inbox is unsubscribed — ends the
   watch at once; an answer with header `Eventplane-Watch: gone` too; three
   unanswered heartbeats in a row end it as well.
4. Events are messages {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
   "object": …} in the request's encoding, numbered by the header
   `Eventplane-Watch-Seq` from 1: a gap means NATS dropped messages to a slow
   consumer, so re-watch from the last resourceVersion you handled. Large
   events are chunked as natsapi.py's answers are.
5. The server ends a watch (timeoutSeconds, an ERROR such as 410, shutdown)
   with a message carrying `Eventplane-Watch: end` and no body. To end it
   yourself, publish anything to the `stop` subject and unsubscribe.
The `stop` subject names this server (`PREFIX.stop.<instance>.<watch>`):
the queue group would hand it to any API server, so each listens for its own.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import nats.errors

from eventplane.objects import errors
from eventplane.objects.events import EventType
from eventplane.objects.schema import ResourceInfo

from .natsrequest import namespace_of, selectors
from .watching import BOOKMARK_INTERVAL

log = logging.getLogger("eventplane.natsapi")

HEARTBEAT = 5.0
MISSED_HEARTBEATS = 3
HANDSHAKE = 10.0  # how long a server-made inbox may take to be subscribed
WATCH = "Eventplane-Watch"
SEQ = "Eventplane-Watch-Seq"
_TYPE = {EventType.CREATED: "ADDED", EventType.DELETED: "DELETED"}


@dataclass(frozen=True)
class _Spec:
    info: ResourceInfo
    namespace: str
    name: str
    label: Any
    fields: Any
    rv: str
    send_initial: bool
    bookmarks: bool
    timeout: float | None

    def accept(self, event) -> bool:
        s = event.stream
        if s.group != self.info.group or s.resource != self.info.resource:
            return False
        if self.namespace and s.namespace != self.namespace:
            return False
        return not self.name or s.name == self.name

    def matches(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.name and meta.get("name") != self.name:
            return False
        if self.label is not None and not self.label.matches(meta.get("labels") or {}):
            return False
        return self.fields is None or self.fields.matches(obj, self.info.resource, self.info.group)


class _Gone(Exception):
    """The watcher is no longer listening."""


class NatsWatches:
    def __init__(self, api) -> None:
        self.api = api
        self._running: dict[str, asyncio.Task] = {}
        self._sub = None

    async def start(self) -> None:
        self._sub = await self.api.nc.subscribe(f"{self.api.prefix}.stop.{self.api.instance}.*", cb=self._on_stop)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection may be gone already
                pass
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _on_stop(self, msg) -> None:
        task = self._running.get(msg.subject.rsplit(".", 1)[-1])
        if task is not None:
            task.cancel()

    async def open(self, req: dict[str, Any], media: str) -> dict[str, Any]:
        info = self.api.resolve(req)
        label, fields = selectors(req)
        rv = str(req.get("resourceVersion") or "")
        if rv and not rv.isdigit():
            raise errors.BadRequestError(f'invalid resource version "{rv}"')
        send_initial = bool(req.get("sendInitialEvents"))
        if send_initial and req.get("resourceVersionMatch") != "NotOlderThan":
            raise errors.InvalidError("sendInitialEvents is forbidden for watch unless resourceVersionMatch is "
                                      "set to NotOlderThan")
        try:
            timeout = float(req["timeoutSeconds"]) if req.get("timeoutSeconds") else None
        except (TypeError, ValueError):
            raise errors.BadRequestError(f'invalid timeoutSeconds "{req.get("timeoutSeconds")}"') from None
        inbox = req.get("inbox") or f"_INBOX.epwatch.{uuid.uuid4().hex}"
        if not isinstance(inbox, str) or any(c in inbox for c in " \t\r\n*>") or "" in inbox.split("."):
            raise errors.BadRequestError(f'"inbox" must be a subject without wildcards, not {inbox!r}')
        spec = _Spec(info, namespace_of(info, req, collection=True), req.get("name") or "", label, fields, rv,
                     send_initial, bool(req.get("allowWatchBookmarks")), timeout)
        watch_id = uuid.uuid4().hex
        task = asyncio.create_task(self._run(_Outlet(self.api, inbox, media), spec), name=f"nats watch {watch_id}")
        self._running[watch_id] = task
        task.add_done_callback(lambda _: self._running.pop(watch_id, None))
        return {"kind": "WatchStarted", "subject": inbox, "stop": f"{self.api.prefix}.stop.{self.api.instance}."
                f"{watch_id}", "heartbeatSeconds": HEARTBEAT}

    async def _run(self, out: _Outlet, spec: _Spec) -> None:
        try:
            await out.handshake()
            pump = asyncio.create_task(self._pump(out, spec))
            pulse = asyncio.create_task(out.pulse())
            try:
                done, _ = await asyncio.wait({pump, pulse}, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()
            finally:
                for t in (pump, pulse):
                    t.cancel()
                await asyncio.gather(pump, pulse, return_exceptions=True)
        except _Gone:
            out.gone = True
        except asyncio.CancelledError:
            pass  # stopped by the watcher or the server; the end message follows
        except Exception:
            log.exception("NATS watch on %s failed", out.inbox)
            await asyncio.shield(out.send("ERROR", errors.EventplaneError(
                "an internal error occurred; see the server log").to_status()))
        finally:
            if not out.gone:
                await asyncio.shield(out.end())

    async def _pump(self, out: _Outlet, spec: _Spec) -> None:
        registry, cache = self.api.server.registry, self.api.server.cache
        deadline = time.monotonic() + spec.timeout if spec.timeout else None
        try:
            if not spec.rv or spec.rv == "0" or spec.send_initial:
                listed = await registry.list(spec.info, spec.namespace)
                after = int(listed["metadata"]["resourceVersion"])
                for obj in listed["items"]:
                    if spec.matches(obj):
                        await out.send("ADDED", obj)
                if spec.send_initial:
                    await out.send("BOOKMARK", _bookmark(spec.info, after, initial_end=True))
            else:
                after = int(spec.rv)
            changes = cache.changes(after, spec.accept).__aiter__()
            last = after
            pending = None
            try:
                while True:
                    wait = BOOKMARK_INTERVAL if spec.bookmarks else None
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        wait = left if wait is None else min(wait, left)
                    if pending is None:
                        pending = asyncio.ensure_future(changes.__anext__())
                    done, _ = await asyncio.wait({pending}, timeout=wait)
                    if not done:
                        if spec.bookmarks:
                            await out.send("BOOKMARK", _bookmark(spec.info, max(last, cache.position)))
                        continue
                    change, pending = pending.result(), None
                    last = change.event.position
                    if spec.matches(change.object):
                        obj = registry._as_version(spec.info, dict(change.object))
                        await out.send(_TYPE.get(change.event.type, "MODIFIED"), obj)
            finally:
                if pending is not None:
                    pending.cancel()
                await changes.aclose()
        except errors.GoneError as exc:
            await out.send("ERROR", exc.to_status())


class _Outlet:
    """One watch's inbox: numbered events, heartbeats, the end."""

    def __init__(self, api, inbox: str, media: str) -> None:
        self.api = api
        self.inbox = inbox
        self.media = media
        self.seq = 0
        self.gone = False

    async def send(self, type_: str, obj: dict[str, Any]) -> None:
        self.seq += 1
        await self.api.publish(self.inbox, {"type": type_, "object": obj}, self.media, {SEQ: str(self.seq)})

    async def end(self) -> None:
        try:
            await self.api.nc.publish(self.inbox, b"", headers={WATCH: "end"})
        except Exception:  # the connection is closing; the watcher notices by its heartbeats
            pass

    async def _beat(self, timeout: float) -> bool:
        """True when the watcher answered; raises _Gone when nobody listens any more."""
        try:
            reply = await self.api.nc.request(self.inbox, b"", timeout=timeout, headers={WATCH: "heartbeat"})
        except nats.errors.NoRespondersError:
            raise _Gone() from None
        except nats.errors.TimeoutError:
            return False
        if (reply.headers or {}).get(WATCH) == "gone":
            raise _Gone()
        return True

    async def handshake(self) -> None:
        """Wait until the inbox has a subscriber, so the first events are not published into the void."""
        deadline = time.monotonic() + HANDSHAKE
        while True:
            try:
                if await self._beat(HEARTBEAT):
                    return
            except _Gone:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            raise _Gone()  # subscribed but not answering: not a watcher of ours

    async def pulse(self) -> None:
        missed = 0
        while missed < MISSED_HEARTBEATS:
            await asyncio.sleep(HEARTBEAT)
            missed = 0 if await self._beat(HEARTBEAT) else missed + 1
        raise _Gone()


def _bookmark(info: ResourceInfo, position: int, *, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(position)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}

"""Serving watch requests: the initial state when asked for, then changes from the
watch cache, as newline-delimited JSON WatchEvents, with bookmarks and timeouts.

Semantics as kube-apiserver's: no resourceVersion (or "0") starts with a
synthetic ADDED for every current object; a resourceVersion starts after it;
sendInitialEvents=true ends the initial state with a BOOKMARK annotated
k8s.io/initial-events-end; allowWatchBookmarks adds periodic BOOKMARKs; a
version older than the stream keeps ends the watch with an ERROR 410.
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiohttp import web

from eventplane.objects import errors
from eventplane.objects.events import EventType
from eventplane.objects.schema import ResourceInfo

from . import codec
from .registry import Registry
from .watchcache import WatchCache

BOOKMARK_INTERVAL = 30.0
INITIAL_CHUNK = 100  # initial ADDED events written per chunk
_TYPE = {EventType.CREATED: "ADDED", EventType.DELETED: "DELETED"}


class Watches:
    def __init__(self, registry: Registry, cache: WatchCache) -> None:
        self.registry = registry
        self.cache = cache

    async def serve(self, request: web.Request, info: ResourceInfo, namespace: str, name: str) -> web.StreamResponse:
        from eventplane.objects.selectors import FieldSelector, LabelSelector

        q = request.query
        label = LabelSelector.parse(q["labelSelector"]) if q.get("labelSelector") else None
        fields = FieldSelector.parse(q["fieldSelector"], resource=info.resource, group=info.group) if q.get("fieldSelector") else None
        rv = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents") == "true"
        if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
            raise errors.InvalidError("sendInitialEvents is forbidden for watch unless resourceVersionMatch is "
                                      "set to NotOlderThan")
        bookmarks = q.get("allowWatchBookmarks") == "true"
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else random.uniform(1800, 3600)
        if rv and not rv.isdigit():
            raise errors.BadRequestError(f'invalid resource version "{rv}"')

        def accept(event) -> bool:
            s = event.stream
            if s.group != info.group or s.resource != info.resource:
                return False
            if namespace and s.namespace != namespace:
                return False
            return not name or s.name == name

        def matches(obj: dict[str, Any]) -> bool:
            if label is not None and not label.matches((obj.get("metadata") or {}).get("labels") or {}):
                return False
            return fields is None or fields.matches(obj, info.resource, info.group)

        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Transfer-Encoding": "chunked"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        deadline = time.monotonic() + timeout
        try:
            initial = not rv or rv == "0" or send_initial
            if initial:
                listed = await self.registry.list(info, namespace)
                after = int(listed["metadata"]["resourceVersion"])
                out = [_line("ADDED", obj) for obj in listed["items"]
                       if (not name or obj["metadata"]["name"] == name) and matches(obj)]
                for i in range(0, len(out), INITIAL_CHUNK):
                    await response.write(b"".join(out[i:i + INITIAL_CHUNK]))
                if send_initial:
                    await _send(response, "BOOKMARK", _bookmark(info, after, initial_end=True))
            else:
                after = int(rv)
            if after < self.cache.oldest() and not await _still_kept(self, after):
                await _send(response, "ERROR", errors.GoneError(
                    f"too old resource version: {after} ({self.cache.oldest() + 1})").to_status())
                return response
            await self._stream(response, info, after, accept, matches, bookmarks, deadline)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except errors.GoneError as exc:
            await _send(response, "ERROR", exc.to_status())
        return response

    async def _stream(self, response, info, after, accept, matches, bookmarks: bool, deadline: float) -> None:
        changes = self.cache.batches(after, accept).__aiter__()
        last = after
        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        pending = None
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return
                wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                if pending is None:
                    pending = asyncio.ensure_future(changes.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if not done:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await _send(response, "BOOKMARK", _bookmark(info, max(last, self.cache.position)))
                        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
                    continue
                batch = pending.result()
                pending = None
                out = []
                for change in batch:
                    kind = _watch_type(change, matches)
                    if kind is not None:
                        out.append(_line(kind, self.registry._as_version(info, dict(change.object))))
                last = batch[-1].event.position
                if out:
                    await response.write(b"".join(out))  # a burst of events in one chunk
        finally:
            if pending is not None:
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)  # let the generator stop first
            await changes.aclose()


def _watch_type(change, matches) -> str | None:
    """ADDED, MODIFIED or DELETED as this watch sees it: with a selector, an object that starts
    matching is ADDED and one that stops matching is DELETED (its new state is sent)."""
    kind = _TYPE.get(change.event.type, "MODIFIED")
    now = matches(change.object)
    if kind != "MODIFIED" or change.previous is None:
        return kind if now else None
    before = matches(change.previous.object)
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


async def _still_kept(watches: Watches, after: int) -> bool:
    """Older than the buffer: the stream may still hold it (the cache reads it from there)."""
    js = watches.cache._nc.jetstream()
    info = await js.stream_info(watches.cache._config.stream)
    return after + 1 >= info.state.first_seq


def _bookmark(info: ResourceInfo, position: int, *, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(position)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return codec.encode({"type": kind, "object": obj}) + b"\n"


async def _send(response: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
    await response.write(_line(kind, obj))

"""The NATS transport: operations as msgpack requests on `ep.api.<verb>`, answered by
any API server of the queue group (eventplane.api.natsapi documents the protocol).

Fed by client.py with Ops. Every answer and watch event arrives on one
wildcard subscription of this connection (`_Replies`), routed by the last
token of its subject: an answer may come in several chunks, and a watch's
inbox must answer the server's heartbeats, which nats.py's own `request`
cannot do. Components that already hold a NATS connection pass it in.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import nats
import nats.errors

from eventplane.objects import errors

from .operation import Op, Reply, Write
from .status import UnreachableError, error_from_status, is_failure

log = logging.getLogger("eventplane.client")

MSGPACK = "application/msgpack"
WATCH = "Eventplane-Watch"
SEQ = "Eventplane-Watch-Seq"
CHUNKS = "Eventplane-Chunks"
MISSED_HEARTBEATS = 3
_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')


class _Replies:
    """One subscription on `<inbox>.*`; each request or watch owns a token under it."""

    def __init__(self, nc: nats.NATS) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox()
        self._queues: dict[str, asyncio.Queue] = {}
        self._seen: dict[str, float] = {}
        self._ids = itertools.count()
        self._sub = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(f"{self.prefix}.*", cb=self._deliver)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection is already closed
                pass

    def open(self) -> tuple[str, str, asyncio.Queue]:
        token = str(next(self._ids))
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[token] = queue
        self._seen[token] = time.monotonic()
        return token, f"{self.prefix}.{token}", queue

    def close(self, token: str) -> None:
        self._queues.pop(token, None)
        self._seen.pop(token, None)

    def idle(self, token: str) -> float:
        return time.monotonic() - self._seen.get(token, 0.0)

    async def _deliver(self, msg) -> None:
        token = msg.subject[len(self.prefix) + 1:]
        queue = self._queues.get(token)
        if msg.reply and (msg.headers or {}).get(WATCH) == "heartbeat":
            # Answered here, not by the consumer: a busy consumer is still a live one.
            await self.nc.publish(msg.reply, b"", headers=None if queue else {WATCH: "gone"})
            if queue is not None:
                self._seen[token] = time.monotonic()
            return
        if queue is not None:
            self._seen[token] = time.monotonic()
            queue.put_nowait(msg)

    async def receive(self, queue: asyncio.Queue, timeout: float, what: str) -> tuple[dict[str, str], bytes]:
        """One whole answer: its headers and its body, reassembled from chunks."""
        try:
            first = await asyncio.wait_for(queue.get(), timeout)
            headers = first.headers or {}
            if headers.get("Status") == "503" and not first.data:
                raise UnreachableError(f"no API server serves {what} (no responders)")
            body = first.data
            for _ in range(int(headers.get(CHUNKS, "1")) - 1):
                body += (await asyncio.wait_for(queue.get(), timeout)).data
        except TimeoutError:
            raise UnreachableError(f"no answer on {what} within {timeout:g}s") from None
        return headers, body


class NatsTransport:
    def __init__(self, url: str | None = None, token: str | None = None, *, nc: nats.NATS | None = None,
                 prefix: str = "ep.api", timeout: float = 30.0, user_agent: str = "eventplane-client",
                 connect_options: dict[str, Any] | None = None) -> None:
        if url is None and nc is None:
            raise ValueError("NatsTransport needs a NATS URL or a connection")
        self.url = url
        self.token = token
        self.prefix = prefix
        self.timeout = timeout
        self.user_agent = user_agent
        self._connect_options = connect_options or {}
        self._nc = nc
        self._own = nc is None
        self._replies: _Replies | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> _Replies:
        async with self._lock:
            if self._replies is None:
                if self._nc is None:
                    options = {"connect_timeout": 5, "reconnect_time_wait": 0.5, "error_cb": _log_error,
                               **self._connect_options}
                    reconnects = options.pop("max_reconnect_attempts", -1)
                    try:
                        # nats.py applies max_reconnect_attempts to the first connection too: bounded
                        # there, so that a wrong URL fails in seconds instead of retrying for ever …
                        self._nc = await nats.connect(self.url, name=self.user_agent, max_reconnect_attempts=1,
                                                      **options)
                    except (nats.errors.Error, OSError, TimeoutError) as exc:
                        raise UnreachableError(f"Unable to connect to NATS at {self.url}: {exc}") from exc
                    # … and unbounded once connected: a restarting NATS is waited for, not given up on.
                    self._nc.options["max_reconnect_attempts"] = reconnects
                replies = _Replies(self._nc)
                await replies.start()
                self._replies = replies
        return self._replies

    async def close(self) -> None:
        if self._replies is not None:
            await self._replies.stop()
            self._replies = None
        if self._own and self._nc is not None:
            await self._nc.close()
            self._nc = None

    def _headers(self, write: Write | None) -> dict[str, str]:
        headers = {"Content-Type": MSGPACK, "User-Agent": self.user_agent}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if write is not None and write.causation is not None:
            headers["X-Eventplane-Causation"] = str(write.causation)
        if write is not None and write.idempotency_key:
            headers["Idempotency-Key"] = write.idempotency_key
        return headers

    async def request(self, verb: str, body: dict[str, Any], write: Write | None = None) -> Reply:
        replies = await self._connected()
        subject = f"{self.prefix}.{verb}"
        token, inbox, queue = replies.open()
        try:
            try:
                await self._nc.publish(subject, msgpack.packb(body, use_bin_type=True), reply=inbox,
                                       headers=self._headers(write))
            except nats.errors.MaxPayloadError:
                raise errors.RequestEntityTooLargeError(
                    f"the request is larger than the NATS server takes ({self._nc.max_payload} bytes)") from None
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
                raise UnreachableError(f"NATS connection closed: {exc}") from exc
            headers, data = await replies.receive(queue, self.timeout, subject)
        finally:
            replies.close(token)
        value = _decode(data, headers)
        code = int(headers.get("Status") or 200)
        if code >= 400 or is_failure(value):
            raise error_from_status(value, code=code)
        warnings = tuple(w.replace('\\"', '"') for w in _WARNING.findall(headers.get("Warning", "")))
        return Reply(value, warnings)

    async def call(self, op: Op) -> Reply:
        return await self.request(op.verb, _body(op), op.write)

    async def write_many(self, op: Op, docs: list[Any], causations: list[int | None]) -> Reply:
        """`op.verb` (create or update) for several objects of `op`'s resource (or its subresource) in one
        request; the answer's items are objects or Statuses, in order."""
        body = {**_body(op), "body": docs}
        if any(c is not None for c in causations):
            body["causations"] = causations
        return await self.request(op.verb, body, op.write)

    async def apply_many(self, docs: list[dict[str, Any]], write: Write, namespace: str) -> Reply:
        """Apply several manifests in one request; the answer's items are objects or Statuses."""
        body: dict[str, Any] = {"body": docs, "options": _options(write)}
        if namespace:
            body["namespace"] = namespace
        return await self.request("apply", body, write)

    async def query(self, what: str, params: dict[str, str], target: Op | None = None) -> Reply:
        """A document of history.eventplane.io/v1 on the subject `what` (history, diff, why, positions,
        verify, replay): the object named as for get, the REST query parameters as fields."""
        return await self.request(what, {**(_body(target) if target else {}), **params})

    async def discover(self) -> list[dict[str, Any]]:
        return (await self.request("discovery", {})).value.get("items") or []

    async def watch(self, op: Op) -> AsyncIterator[dict[str, Any]]:
        replies = await self._connected()
        token, inbox, queue = replies.open()
        stop = None
        try:
            body = {**_body(op), "inbox": inbox, "allowWatchBookmarks": True}
            if op.send_initial_events:
                body["sendInitialEvents"] = True
            if op.timeout_seconds:
                body["timeoutSeconds"] = op.timeout_seconds
            started = (await self.request("watch", body)).value
            stop = started.get("stop")
            heartbeat = float(started.get("heartbeatSeconds") or 5)
            expected = 1
            while True:
                try:
                    headers, data = await replies.receive(queue, heartbeat, inbox)
                except UnreachableError:
                    if replies.idle(token) > heartbeat * (MISSED_HEARTBEATS + 1):
                        return  # the server went silent: the caller resumes, perhaps elsewhere
                    continue
                if headers.get(WATCH) == "end":
                    return
                if int(headers.get(SEQ) or expected) != expected:
                    return  # NATS dropped events (a slow consumer): resume from the last one handled
                expected += 1
                yield _decode(data, headers)
        finally:
            replies.close(token)
            if stop and self._nc is not None and self._nc.is_connected:
                try:
                    await asyncio.shield(self._nc.publish(stop, b""))
                except Exception:  # best effort: the server's heartbeats end the watch anyway
                    pass


async def _log_error(exc: Exception) -> None:
    log.info("NATS: %s", exc or type(exc).__name__)


def _decode(data: bytes, headers: dict[str, str]) -> Any:
    if not data:
        return {}
    try:
        if (headers.get("Content-Type") or "").startswith(MSGPACK):
            return msgpack.unpackb(data, raw=False)
        return json.loads(data)
    except ValueError as exc:
        raise errors.EventplaneError(f"the API server's answer does not decode: {exc}") from None


def _options(w: Write) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if w.dry_run:
        options["dryRun"] = ["All"]
    if w.field_manager:
        options["fieldManager"] = w.field_manager
    if w.force:
        options["force"] = True
    if w.field_validation:
        options["fieldValidation"] = w.field_validation
    return options


def _body(op: Op) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": op.info.api_version, "resource": op.info.resource}
    for key, value in (("namespace", op.namespace), ("name", op.name), ("subresource", op.subresource),
                       ("body", op.body),
                       ("labelSelector", op.label_selector), ("fieldSelector", op.field_selector),
                       ("resourceVersion", op.resource_version), ("resourceVersionMatch", op.resource_version_match),
                       ("limit", op.limit), ("continue", op.continue_token), ("patchType", op.patch_type),
                       ("asOf", op.as_of)):
        if value is not None and value != "":
            body[key] = value
    if op.table:
        body["as"] = "Table"
    options = _options(op.write)
    if op.propagation_policy:
        options["propagationPolicy"] = op.propagation_policy
    if op.grace_period_seconds is not None:
        options["gracePeriodSeconds"] = op.grace_period_seconds
    if op.preconditions:
        options["preconditions"] = op.preconditions
    if options:
        body["options"] = options
    return body

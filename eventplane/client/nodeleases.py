"""Node heartbeats as leases in a NATS key-value bucket, never as events (DESIGN invariant 8).

A node agent (real or simulated) renews its node's lease every few seconds;
the node lifecycle controller watches the bucket and marks a node NotReady
when its lease is older than its duration. Heartbeats would swamp the event
log with writes nobody needs to audit: the log records only the transitions
(Ready → NotReady), made by the controller with the lease's last renewal as
the reason.

The bucket holds one key per node (the node name, escaped as in subjects: a
node name may hold dots) whose value is JSON:
`{"holder": "...", "renewTime": <unix seconds>, "durationSeconds": 40}`.
Its history is 1 and its age limit a day: a lease is state, not history.

    leases = await NodeLeases.open(nc)                       # creates the bucket when missing
    await leases.renew("node-1", holder="nodeagent@host", duration=40)
    lease = await leases.get("node-1")                       # NodeLease | None
    async for name, lease in leases.watch():                 # lease None when the key was deleted
        ...
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js.api import KeyValueConfig

BUCKET = "ep-node-leases"
DEFAULT_DURATION = 40.0   # seconds; Kubernetes' node-monitor-grace-period
BUCKET_MAX_AGE = 86400.0
STOP_TIMEOUT = 5.0        # seconds a watch's clean-up may take

__all__ = ["BUCKET", "DEFAULT_DURATION", "NodeLease", "NodeLeases", "key_for", "node_of"]


def key_for(node: str) -> str:
    """A KV key for a node name. Names are DNS subdomains ([a-z0-9.-]); KV keys allow those but
    a dot would split the key into tokens; '_' is a valid key character that names never hold,
    so '.' → '_' keeps one token per node."""
    return node.replace(".", "_")


def node_of(key: str) -> str:
    return key.replace("_", ".")


@dataclass(frozen=True)
class NodeLease:
    node: str
    holder: str
    renew_time: float        # unix seconds
    duration: float          # seconds

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) > self.renew_time + self.duration

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "renewTime": self.renew_time,
                           "durationSeconds": self.duration}).encode()

    @classmethod
    def decode(cls, node: str, raw: bytes) -> NodeLease:
        doc = json.loads(raw)
        return cls(node, str(doc.get("holder", "")), float(doc["renewTime"]),
                   float(doc.get("durationSeconds", DEFAULT_DURATION)))


class NodeLeases:
    def __init__(self, kv: Any) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, nc: Any, bucket: str = BUCKET) -> NodeLeases:
        js = nc.jetstream()
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, ttl=BUCKET_MAX_AGE))
            except nats.js.errors.BadRequestError:   # created by someone else meanwhile
                kv = await js.key_value(bucket)
        return cls(kv)

    async def renew(self, node: str, *, holder: str, duration: float = DEFAULT_DURATION,
                    now: float | None = None) -> NodeLease:
        lease = NodeLease(node, holder, now if now is not None else time.time(), duration)
        await self.kv.put(key_for(node), lease.encode())
        return lease

    async def get(self, node: str) -> NodeLease | None:
        try:
            entry = await self.kv.get(key_for(node))
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None or entry.operation in ("DEL", "PURGE"):
            return None
        return NodeLease.decode(node, entry.value)

    async def delete(self, node: str) -> None:
        try:
            await self.kv.delete(key_for(node))
        except nats.js.errors.KeyNotFoundError:
            pass

    async def all(self) -> dict[str, NodeLease]:
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        out: dict[str, NodeLease] = {}
        for key in keys:
            lease = await self.get(node_of(key))
            if lease is not None:
                out[lease.node] = lease
        return out

    async def watch(self) -> AsyncIterator[tuple[str, NodeLease | None]]:
        """Every current lease, then every change, as (node, lease or None when deleted)."""
        watcher = await self.kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:      # end of the initial values
                    continue
                node = node_of(entry.key)
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    yield node, None
                else:
                    yield node, NodeLease.decode(node, entry.value)
        finally:
            # Bounded and quiet: a watch ends on cancellation or a lost connection, and its clean-up
            # must neither hang the caller nor replace the error that ended it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), STOP_TIMEOUT)

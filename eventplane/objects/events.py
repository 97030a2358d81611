"""The event envelope: what one row of the log holds and how it is hashed and encoded.

The store builds events, the relay publishes them, consumers decode them; all
three meet here so that the canonical bytes of an event (what the hash chain
covers) and its wire form are defined once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgpack

GENESIS_HASH = bytes(32)


class EventType(StrEnum):
    CREATED = "Created"
    UPDATED = "Updated"
    STATUS_UPDATED = "StatusUpdated"
    BOUND = "Bound"
    DELETING = "Deleting"
    DELETED = "Deleted"


@dataclass(frozen=True, slots=True, order=True)
class StreamId:
    """One object's stream: group ('' for core), plural resource, namespace ('' when cluster-scoped), name."""

    group: str
    resource: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.group or 'core'}/{self.resource}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, key: str) -> StreamId:
        group, resource, namespace, name = key.split("/", 3)
        return cls("" if group == "core" else group, resource, namespace, name)

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, slots=True)
class Event:
    """One committed mutation. `payload` is the msgpack object after the change, without resourceVersion."""

    position: int
    stream: StreamId
    stream_version: int
    type: str
    uid: str
    actor: str
    verb: str
    request_id: str
    idempotency_key: str | None
    trace_id: str
    causation: int | None
    occurred_at_us: int
    payload: bytes
    prev_hash: bytes
    hash: bytes

    def object(self) -> dict[str, Any]:
        """The object after this event, with resourceVersion = this event's position."""
        obj = unpack(self.payload)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.position)
        return obj

    def canonical(self) -> bytes:
        return canonical_bytes(
            position=self.position, stream=self.stream.key, stream_version=self.stream_version,
            type=self.type, uid=self.uid, actor=self.actor, verb=self.verb, request_id=self.request_id,
            idempotency_key=self.idempotency_key, trace_id=self.trace_id, causation=self.causation,
            occurred_at_us=self.occurred_at_us, payload=self.payload)

    def verifies(self) -> bool:
        return chain_hash(self.prev_hash, self.canonical()) == self.hash

    def encode(self) -> bytes:
        """Wire form for the bus: a msgpack array in field order."""
        return msgpack.packb([
            self.position, self.stream.key, self.stream_version, self.type, self.uid, self.actor,
            self.verb, self.request_id, self.idempotency_key, self.trace_id, self.causation,
            self.occurred_at_us, self.payload, self.prev_hash, self.hash,
        ], use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> Event:
        f = msgpack.unpackb(data, raw=False)
        if not isinstance(f, list) or len(f) != 15:
            raise ValueError("not an encoded event")
        return cls(f[0], StreamId.parse(f[1]), *f[2:])


def canonical_bytes(*, position: int, stream: str, stream_version: int, type: str, uid: str,
                    actor: str, verb: str, request_id: str, idempotency_key: str | None,
                    trace_id: str, causation: int | None, occurred_at_us: int,
                    payload: bytes) -> bytes:
    """The bytes the hash chain covers: every envelope field, in a fixed order."""
    return msgpack.packb([
        position, stream, stream_version, type, uid, actor, verb, request_id,
        idempotency_key, trace_id, causation, occurred_at_us, payload,
    ], use_bin_type=True)


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)

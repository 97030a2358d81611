"""Planning a group commit: pure decisions, no I/O.

Fed by the committer with a batch of units and the state it believes current
(the head of the log, the state of each stream, idempotency keys already
used); produces the rows to write, each unit's outcome, and the beliefs the
write must check under the lock. Units are decided in order, each seeing the
effects of the units before it, so a batch behaves exactly as the same units
appended one by one.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventplane.objects import errors
from eventplane.objects.events import GENESIS_HASH, EventType, StreamId, canonical_bytes, chain_hash


@dataclass(frozen=True, slots=True)
class Context:
    """Who, why and when-independent facts of a request (DESIGN.md invariant 10)."""

    actor: str
    verb: str
    request_id: str = ""
    trace_id: str = ""
    causation: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    position: int
    stream_version: int
    occurred_at_us: int
    duplicate: bool = False


@dataclass(slots=True)
class Prepared:
    """One validated, encoded append: what the committer plans with."""

    stream: StreamId
    key: str
    type: str
    uid: str
    expected_version: int | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class StreamState:
    uid: str | None  # None when no live object holds the stream
    resource_version: int
    stream_version: int


ABSENT = StreamState(None, 0, 0)


@dataclass(frozen=True, slots=True)
class Head:
    position: int
    hash: bytes
    occurred_at_us: int


EMPTY_LOG = Head(0, GENESIS_HASH, 0)


class Unit(Protocol):
    appends: list[Prepared]
    context: Context


@dataclass
class Plan:
    outcomes: list[list[Appended] | errors.EventplaneError]
    rows: list[tuple[Any, ...]]
    final: dict[str, tuple[Prepared, StreamState]]  # each written stream's state after the batch
    checks: dict[str, StreamState]  # each touched stream's state as believed before the batch
    new_keys: list[str]  # idempotency keys the batch uses for the first time
    head_before: Head
    head: Head
    known: dict[str, StreamState] = field(default_factory=dict)  # every state this plan proved or made


def plan_batch(batch: list[Unit], streams: Mapping[str, StreamState], head: Head,
               seen_keys: Mapping[str, list[Appended]], now_us: int) -> Plan:
    occurred_at_us = max(now_us, head.occurred_at_us)  # never earlier than the event before
    checks = {a.key: streams.get(a.key, ABSENT) for unit in batch for a in unit.appends}
    state = dict(checks)
    seen = dict(seen_keys)
    plan = Plan([], [], {}, checks, [], head, head)
    position, prev_hash = head.position, head.hash
    for unit in batch:
        key = unit.context.idempotency_key
        if key is not None and key in seen:
            plan.outcomes.append([Appended(a.position, a.stream_version, a.occurred_at_us, duplicate=True)
                                  for a in seen[key]])
            continue
        try:
            overlay, rows, results, prev_hash = _plan_unit(unit, state, position, prev_hash, occurred_at_us)
        except errors.EventplaneError as exc:
            plan.outcomes.append(exc)
            continue
        state.update(overlay)
        for a in unit.appends:
            plan.final[a.key] = (a, overlay[a.key])
        plan.rows.extend(rows)
        position += len(rows)
        if key is not None:
            seen[key] = results
            plan.new_keys.append(key)
        plan.outcomes.append(results)
    plan.head = Head(position, prev_hash, occurred_at_us) if plan.rows else head
    plan.known = state
    return plan


def _plan_unit(unit: Unit, state: Mapping[str, StreamState], position: int, prev_hash: bytes,
               occurred_at_us: int) -> tuple[dict[str, StreamState], list[tuple[Any, ...]], list[Appended], bytes]:
    ctx = unit.context
    overlay: dict[str, StreamState] = {}
    rows, results = [], []
    for a in unit.appends:
        cur = overlay.get(a.key) or state[a.key]
        check_expectation(a, cur)
        position += 1
        new = StreamState(a.uid if a.type != EventType.DELETED else None, position, cur.stream_version + 1)
        overlay[a.key] = new
        canonical = canonical_bytes(
            position=position, stream=a.key, stream_version=new.stream_version, type=a.type, uid=a.uid,
            actor=ctx.actor, verb=ctx.verb, request_id=ctx.request_id, idempotency_key=ctx.idempotency_key,
            trace_id=ctx.trace_id, causation=ctx.causation, occurred_at_us=occurred_at_us, payload=a.payload)
        digest = chain_hash(prev_hash, canonical)
        rows.append((position, a.key, new.stream_version, a.type, a.uid, ctx.actor, ctx.verb, ctx.request_id,
                     ctx.idempotency_key, ctx.trace_id, ctx.causation, occurred_at_us, a.payload,
                     prev_hash, digest))
        results.append(Appended(position, new.stream_version, occurred_at_us))
        prev_hash = digest
    return overlay, rows, results, prev_hash


def qualified(s: StreamId) -> str:
    return f"{s.resource}.{s.group}" if s.group else s.resource


def check_expectation(a: Prepared, cur: StreamState) -> None:
    """`Created` needs no live object; every other type needs the live object with this uid
    and, when given, the expected resourceVersion."""
    s = a.stream
    where = dict(name=s.name, group=s.group, kind=s.resource)
    if a.type == EventType.CREATED:
        if cur.uid is not None:
            raise errors.AlreadyExistsError(f'{qualified(s)} "{s.name}" already exists', **where)
        return
    if cur.uid is None:
        raise errors.NotFoundError(f'{qualified(s)} "{s.name}" not found', **where)
    if cur.uid != a.uid:
        raise errors.ConflictError(
            f'Operation cannot be fulfilled on {qualified(s)} "{s.name}": Precondition failed: '
            f"UID in precondition: {a.uid}, UID in object meta: {cur.uid}", **where)
    if a.expected_version is not None and a.expected_version != cur.resource_version:
        raise errors.ConflictError(
            f'Operation cannot be fulfilled on {qualified(s)} "{s.name}": the object has been modified; '
            "please apply your changes to the latest version and try again", **where)

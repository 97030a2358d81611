"""The scheduling queue: which pending pod is tried next, and when a pod that did not fit is tried again.

Fed by the scheduler loop's informer handlers (`add` / `update` / `delete` of
pending pods; `move` when a cluster event happens that could make pods fit)
and by the loop itself (`failed` after an attempt that found no node or whose
binding failed); consumed by the loop through `pop` / `pop_many`.

Three places, as kube-scheduler's PriorityQueue has them. Invariant: a key is
in at most one of `active`, `backoff`, `unschedulable` and `in_flight`.

- **active**: a heap ordered by priority (higher first), then by the time the
  pod was first queued (older first).
- **backoff**: pods that failed, waiting out a per-pod exponential backoff
  (1 s doubling to 10 s, kube's podInitialBackoffDuration / podMaxBackoffDuration).
  One timer, set for the earliest expiry, moves them to active: a timer for a
  known expiry, not a periodic sweep.
- **unschedulable**: pods that found no node. They stay until `move(event)`
  reports a cluster event that could help them (kube's queueing hints): the
  event names the filters it may change, and only pods rejected by one of
  those filters move (to backoff if their backoff has not expired, else to
  active). There is no periodic flush: nothing moves without an event.

A pod popped for an attempt is `in_flight` until `done` or `failed`. If a
relevant event arrives while it is in flight, a failure sends it to backoff
rather than to unschedulable, so the event is not lost (kube's moveRequestCycle).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

INITIAL_BACKOFF = 1.0   # seconds
MAX_BACKOFF = 10.0
ANY = "*"   # an event that may help a pod rejected by any filter (a node added, say)


@dataclass
class QueuedPod:
    """A pending pod and what the queue knows about its attempts."""

    key: str
    pod: Obj
    priority: int
    queued_at: float            # monotonic time first queued: the tie-break of the active heap
    attempts: int = 0
    rejected_by: frozenset[str] = frozenset()   # filter names that rejected it last time
    backoff_until: float = 0.0
    entered_active: float = 0.0  # when it last became poppable: the start of its "time in queue"
    popped_cycle: int = 0        # the move counter when it was popped
    extra: dict[str, Any] = field(default_factory=dict)

    def backoff(self) -> float:
        """kube's calculateBackoffDuration: 1 s doubled per earlier attempt, capped at 10 s."""
        return min(INITIAL_BACKOFF * 2 ** max(self.attempts - 1, 0), MAX_BACKOFF)


class SchedulingQueue:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 priority_of: Callable[[Obj], int] | None = None) -> None:
        self.clock = clock
        self.priority_of = priority_of or (lambda pod: int((pod.get("spec") or {}).get("priority") or 0))
        self._active: list[tuple[int, float, int, str]] = []   # (-priority, queued_at, seq, key)
        self._active_keys: dict[str, int] = {}                 # key -> seq of its live heap entry
        self._backoff: list[tuple[float, int, str]] = []       # (until, seq, key)
        self._backoff_keys: dict[str, int] = {}
        self.unschedulable: dict[str, QueuedPod] = {}
        self.in_flight: dict[str, QueuedPod] = {}
        self.pods: dict[str, QueuedPod] = {}                   # every key the queue holds, wherever
        self._seq = itertools.count()
        self._moves = 0          # incremented by every move(): kube's moveRequestCycle
        self._moved_by: dict[int, frozenset[str]] = {}
        self._wakeup = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self.closed = False

    # --- sizes ---

    def __len__(self) -> int:
        return len(self.pods)

    @property
    def active_count(self) -> int:
        return len(self._active_keys)

    @property
    def backoff_count(self) -> int:
        return len(self._backoff_keys)

    def where(self, key: str) -> str | None:
        if key in self._active_keys:
            return "active"
        if key in self._backoff_keys:
            return "backoff"
        if key in self.unschedulable:
            return "unschedulable"
        if key in self.in_flight:
            return "in-flight"
        return None

    # --- from the informer ---

    def add(self, key: str, pod: Obj) -> None:
        """A new pending pod, or one the queue holds already (then as `update`)."""
        if key in self.pods:
            self.update(key, pod)
            return
        now = self.clock()
        qp = self.pods[key] = QueuedPod(key, pod, self.priority_of(pod), now)
        self._push_active(qp)

    def update(self, key: str, pod: Obj) -> None:
        """A pending pod changed. An unschedulable pod whose spec changed may fit now: it moves on."""
        qp = self.pods.get(key)
        if qp is None:
            self.add(key, pod)
            return
        changed = (pod.get("spec") or {}) != (qp.pod.get("spec") or {}) or \
            (pod.get("metadata") or {}).get("labels") != (qp.pod.get("metadata") or {}).get("labels")
        qp.pod = pod
        qp.priority = self.priority_of(pod)
        if key in self._active_keys:
            self._push_active(qp)   # re-sort: the priority may have changed (the old entry goes stale)
        elif key in self.unschedulable and changed:
            del self.unschedulable[key]
            self._requeue(qp)

    def delete(self, key: str) -> None:
        qp = self.pods.pop(key, None)
        if qp is None:
            return
        self._active_keys.pop(key, None)
        self._backoff_keys.pop(key, None)
        self.unschedulable.pop(key, None)
        self.in_flight.pop(key, None)

    def move(self, helps: Iterable[str] = (ANY,)) -> int:
        """A cluster event that may help pods rejected by the filters in `helps` (ANY: every pod).
        Returns how many pods moved out of unschedulable."""
        helps = frozenset(helps)
        self._moves += 1
        self._moved_by[self._moves] = helps
        if len(self._moved_by) > 1024:   # only cycles of pods still in flight matter
            oldest = min((qp.popped_cycle for qp in self.in_flight.values()), default=self._moves)
            self._moved_by = {c: h for c, h in self._moved_by.items() if c > oldest}
        moved = [qp for qp in self.unschedulable.values() if _helps(helps, qp.rejected_by)]
        for qp in moved:
            del self.unschedulable[qp.key]
            self._requeue(qp)
        return len(moved)

    # --- for the loop ---

    async def pop(self) -> QueuedPod:
        while True:
            got = self.pop_many(1)
            if got:
                return got[0]
            await self._wait()

    def pop_many(self, limit: int) -> list[QueuedPod]:
        """Up to `limit` active pods, highest priority (then oldest) first; they go in flight."""
        out: list[QueuedPod] = []
        while self._active and len(out) < limit:
            _, _, seq, key = heapq.heappop(self._active)
            if self._active_keys.get(key) != seq:
                continue   # a stale entry: the pod was re-sorted, moved or deleted
            del self._active_keys[key]
            qp = self.pods[key]
            qp.popped_cycle = self._moves
            self.in_flight[key] = qp
            out.append(qp)
        return out

    async def wait(self) -> None:
        """Until an active pod is there (or the queue is closed)."""
        while not self._active_keys and not self.closed:
            await self._wait()

    def done(self, key: str) -> None:
        """The pod was bound (or assumed and handed to binding): the queue forgets it."""
        self.in_flight.pop(key, None)
        self.pods.pop(key, None)

    def failed(self, qp: QueuedPod, rejected_by: Iterable[str] = (ANY,), *, backoff_only: bool = False) -> None:
        """An attempt found no node (or its binding failed: `backoff_only`). The pod waits for an event
        that could help, unless one arrived while it was in flight; then it only backs off."""
        key = qp.key
        if self.in_flight.pop(key, None) is None or key not in self.pods:
            return   # deleted while in flight
        qp.attempts += 1
        qp.rejected_by = frozenset(rejected_by)
        qp.backoff_until = self.clock() + qp.backoff()
        missed = any(_helps(helps, qp.rejected_by) for cycle, helps in self._moved_by.items()
                     if cycle > qp.popped_cycle)
        if backoff_only or missed:
            self._push_backoff(qp)
        else:
            self.unschedulable[key] = qp

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._wakeup.set()

    # --- internals ---

    def _requeue(self, qp: QueuedPod) -> None:
        if qp.backoff_until > self.clock():
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def _push_active(self, qp: QueuedPod) -> None:
        self._backoff_keys.pop(qp.key, None)
        seq = next(self._seq)
        self._active_keys[qp.key] = seq
        qp.entered_active = self.clock()
        heapq.heappush(self._active, (-qp.priority, qp.queued_at, seq, qp.key))
        self._wakeup.set()

    def _push_backoff(self, qp: QueuedPod) -> None:
        seq = next(self._seq)
        self._backoff_keys[qp.key] = seq
        heapq.heappush(self._backoff, (qp.backoff_until, seq, qp.key))
        self._arm()

    def flush_backoff(self) -> int:
        """Move pods whose backoff has expired to active (the timer calls this)."""
        now = self.clock()
        moved = 0
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, key = heapq.heappop(self._backoff)
            if self._backoff_keys.get(key) != seq:
                continue
            del self._backoff_keys[key]
            self._push_active(self.pods[key])
            moved += 1
        self._timer_at = float("inf")
        self._arm()
        return moved

    def _arm(self) -> None:
        """Keep one timer, set for the earliest backoff expiry."""
        while self._backoff and self._backoff_keys.get(self._backoff[0][2]) != self._backoff[0][1]:
            heapq.heappop(self._backoff)
        if not self._backoff or self.closed:
            return
        at = self._backoff[0][0]
        if at >= self._timer_at:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return   # no loop (a unit test driving the clock): flush_backoff is called by hand
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_later(max(at - self.clock(), 0.0), self.flush_backoff)

    async def _wait(self) -> None:
        self._wakeup.clear()
        if self._active_keys or self.closed:
            return
        await self._wakeup.wait()


def _helps(helps: frozenset[str], rejected_by: frozenset[str]) -> bool:
    return ANY in helps or ANY in rejected_by or bool(helps & rejected_by)

"""The work queue between informers and reconcile workers, with client-go's guarantees.

Fed by informer handlers, which enqueue keys (``namespace/name``), never objects;
consumed by a controller's workers, which `get()` a key, reconcile it from the
current state (level-triggered: which event woke the key does not matter), and
then call `done(key)` — and `forget(key)` on success or `add_rate_limited(key)`
on failure.

Invariant (as client-go's workqueue.Type): a key is in `_queue` if and only if
it is in `_dirty` and not in `_processing`. Hence

- a key is queued at most once however often it is added (deduplication);
- a key being processed is never handed to a second worker: added meanwhile,
  it waits in `_dirty` and `done()` queues it again;
- `shutdown()` stops new adds; workers still receive what is queued, and
  `shutdown(drain=True)` returns once every key handed out is done.

Retries are delayed by a RateLimiter: per-key exponential backoff with a cap
combined with a global token bucket (client-go's DefaultControllerRateLimiter).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)

__all__ = ["BucketRateLimiter", "ExponentialBackoff", "MaxOfRateLimiter", "QueueShutDown", "RateLimiter",
           "WorkQueue", "default_rate_limiter"]


class QueueShutDown(Exception):
    """`get()` on a queue that is shut down and empty: the worker should return."""


class RateLimiter(Protocol):
    def when(self, key: Hashable) -> float:
        """Seconds to wait before `key` may be processed again; counts one more failure."""

    def forget(self, key: Hashable) -> None:
        """`key` succeeded: stop tracking it."""

    def retries(self, key: Hashable) -> int:
        """Failures counted for `key` since it was last forgotten."""


class ExponentialBackoff:
    """Per key: base, 2·base, 4·base … capped at `cap` (client-go's ItemExponentialFailureRateLimiter)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self.base, self.cap = base, cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        if n > 64:  # 2**n would overflow a float long before; the cap applies anyway
            return self.cap
        return min(self.base * 2 ** n, self.cap)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """A global token bucket: `qps` tokens a second, at most `burst` saved. Every `when()` reserves a
    token, possibly in the future, so that many retries at once are spread out (golang.org/x/time/rate)."""

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs qps > 0 and burst >= 1, got qps={qps} burst={burst}")
        self.qps, self.burst, self._clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: Hashable) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: Hashable) -> None:
        pass

    def retries(self, key: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters; every limiter counts every call."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, key: Hashable) -> float:
        return max([lim.when(key) for lim in self.limiters])

    def forget(self, key: Hashable) -> None:
        for lim in self.limiters:
            lim.forget(key)

    def retries(self, key: Hashable) -> int:
        return max(lim.retries(key) for lim in self.limiters)


def default_rate_limiter() -> MaxOfRateLimiter:
    """client-go's default for controllers: 5 ms doubling to 1000 s per key, 10 qps / burst 100 overall."""
    return MaxOfRateLimiter(ExponentialBackoff(0.005, 1000.0), BucketRateLimiter(10.0, 100))


class WorkQueue(Generic[K]):
    """Deduplicating, delaying, rate-limited queue of keys for asyncio workers (one event loop)."""

    def __init__(self, *, rate_limiter: RateLimiter | None = None, name: str = "") -> None:
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or default_rate_limiter()
        self._queue: deque[K] = deque()      # order of processing
        self._dirty: set[K] = set()          # keys that need processing
        self._processing: set[K] = set()     # keys handed to a worker and not yet done
        self._waiting: dict[K, asyncio.TimerHandle] = {}  # add_after: the earliest pending add per key
        self._getters: deque[asyncio.Future[None]] = deque()
        self._idle = asyncio.Event()         # set while nothing is processing
        self._idle.set()
        self._shutting_down = False

    # --- adding ----------------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Mark `key` as needing processing. Ignored after shutdown."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() queues it again: never two workers on one key
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` once `delay` seconds have passed; of several pending delays the earliest wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending.when() <= at:
                return
            pending.cancel()
        self._waiting[key] = loop.call_at(at, self._ready, key)

    def add_rate_limited(self, key: K) -> None:
        """Retry `key` after the rate limiter's delay (per-key backoff, global bucket)."""
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """`key` was processed successfully: reset its backoff. It does not remove it from the queue."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.retries(key)

    def _ready(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    # --- processing ------------------------------------------------------------------------------

    async def get(self) -> K:
        """The next key, waiting for one; the caller must call `done(key)` after processing it.
        Raises QueueShutDown once the queue is shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(f"work queue {self.name!r} is shut down")
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on: a key may be waiting for a worker
                else:
                    self._getters.remove(waiter)
                raise
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        self._idle.clear()
        return key

    def done(self, key: K) -> None:
        """Processing of `key` ended; if it was added meanwhile it is queued again now."""
        if key not in self._processing:
            raise ValueError(f"done({key!r}) for a key that is not being processed")
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()
        if not self._processing:
            self._idle.set()

    def __len__(self) -> int:
        """Keys queued and not yet handed out (not those processing or delayed)."""
        return len(self._queue)

    def __aiter__(self) -> WorkQueue[K]:
        return self

    async def __anext__(self) -> K:
        try:
            return await self.get()
        except QueueShutDown:
            raise StopAsyncIteration from None

    # --- shutdown --------------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    async def shutdown(self, *, drain: bool = True) -> None:
        """Stop accepting keys and wake idle workers. Keys already queued are still handed out
        (workers stop when `get()` raises QueueShutDown). With `drain`, return once no key is being
        processed (as client-go's ShutDownWithDrain)."""
        self._shutting_down = True
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if drain:
            await self._idle.wait()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

"""The work queue's guarantees: dedup, one worker per key, backoff with a cap, a global bucket, drain."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from reconcilers.workqueue import (BucketRateLimiter, ExponentialBackoff, MaxOfRateLimiter, QueueShutDown,
                                   WorkQueue, default_rate_limiter)


def _invariant(q: WorkQueue) -> None:
    """A key is in the queue iff it is dirty and not processing; and at most once."""
    assert len(set(q._queue)) == len(q._queue)
    assert set(q._queue) == q._dirty - q._processing


# --- the queue, step by step --------------------------------------------------------------------

@dataclass
class Case:
    name: str
    steps: list[tuple[str, str]]          # ("add", k) | ("get", expected k) | ("done", k)
    queued: list[str]                     # keys in the queue afterwards, in order
    processing: set[str] = field(default_factory=set)


CASES = [
    Case("a key added twice is queued once", [("add", "a"), ("add", "b"), ("add", "a")], ["a", "b"]),
    Case("order is first-added first", [("add", "b"), ("add", "a"), ("get", "b")], ["a"], {"b"}),
    Case("a key added while processing is not handed out",
         [("add", "a"), ("get", "a"), ("add", "a")], [], {"a"}),
    Case("a key added while processing is queued again when done",
         [("add", "a"), ("get", "a"), ("add", "a"), ("done", "a")], ["a"]),
    Case("added twice while processing still comes back once",
         [("add", "a"), ("get", "a"), ("add", "a"), ("add", "a"), ("done", "a")], ["a"]),
    Case("done without a new add leaves nothing", [("add", "a"), ("get", "a"), ("done", "a")], []),
    Case("another key overtakes a key being processed",
         [("add", "a"), ("get", "a"), ("add", "a"), ("add", "b"), ("get", "b")], [], {"a", "b"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_queue_steps(case: Case):
    q: WorkQueue[str] = WorkQueue()
    for verb, key in case.steps:
        if verb == "add":
            q.add(key)
        elif verb == "get":
            assert await asyncio.wait_for(q.get(), 1) == key
        else:
            q.done(key)
        _invariant(q)
    assert list(q._queue) == case.queued
    assert q._processing == case.processing
    assert len(q) == len(case.queued)


async def test_done_for_a_key_not_processing_fails_loudly():
    q: WorkQueue[str] = WorkQueue()
    with pytest.raises(ValueError, match="not being processed"):
        q.done("a")


async def test_never_two_workers_on_one_key():
    q: WorkQueue[str] = WorkQueue()
    active: dict[str, int] = {}
    handled: list[str] = []
    release = asyncio.Event()

    async def worker():
        async for key in q:
            active[key] = active.get(key, 0) + 1
            assert active[key] == 1, f"two workers on {key}"
            handled.append(key)
            if len(handled) == 1:
                await release.wait()  # hold the first key while it is added again
            await asyncio.sleep(0)
            active[key] -= 1
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    q.add("a")
    while not handled:
        await asyncio.sleep(0)
    for _ in range(10):
        q.add("a")
        q.add("b")
    release.set()
    await q.shutdown(drain=True)
    await asyncio.gather(*workers)
    assert handled[0] == "a" and handled.count("a") == 2  # once, then once more for the adds meanwhile
    assert handled.count("b") >= 1


# --- rate limiters ------------------------------------------------------------------------------

@dataclass
class BackoffCase:
    name: str
    base: float
    cap: float
    calls: list[str]            # "when:k" or "forget:k"
    delays: list[float]         # one per "when"


BACKOFF = [
    BackoffCase("doubles from base", 1, 100, ["when:a"] * 4, [1, 2, 4, 8]),
    BackoffCase("stops at the cap", 1, 5, ["when:a"] * 5, [1, 2, 4, 5, 5]),
    BackoffCase("keys back off independently", 1, 100, ["when:a", "when:a", "when:b", "when:a"], [1, 2, 1, 4]),
    BackoffCase("forget resets a key", 1, 100, ["when:a", "when:a", "forget:a", "when:a"], [1, 2, 1]),
    BackoffCase("many failures do not overflow", 0.005, 1000, ["when:a"] * 200, [min(0.005 * 2 ** n, 1000)
                                                                                for n in range(65)]
                + [1000] * 135),
]


@pytest.mark.parametrize("case", BACKOFF, ids=[c.name for c in BACKOFF])
def test_exponential_backoff(case: BackoffCase):
    lim = ExponentialBackoff(case.base, case.cap)
    got = []
    for call in case.calls:
        verb, key = call.split(":")
        if verb == "when":
            got.append(lim.when(key))
        else:
            lim.forget(key)
    assert got == pytest.approx(case.delays)


@dataclass
class BucketCase:
    name: str
    qps: float
    burst: int
    calls: list[float]       # the clock at each when()
    delays: list[float]


BUCKET = [
    BucketCase("a burst passes at once", 1, 3, [0, 0, 0], [0, 0, 0]),
    BucketCase("beyond the burst, one token per 1/qps", 2, 1, [0, 0, 0, 0], [0, 0.5, 1.0, 1.5]),
    BucketCase("tokens refill with time", 1, 1, [0, 0, 1, 1], [0, 1, 1, 2]),
    BucketCase("refill never exceeds the burst", 10, 2, [0, 100, 100, 100], [0, 0, 0, 0.1]),
]


@pytest.mark.parametrize("case", BUCKET, ids=[c.name for c in BUCKET])
def test_token_bucket(case: BucketCase):
    now = [case.calls[0]]
    lim = BucketRateLimiter(case.qps, case.burst, clock=lambda: now[0])
    got = []
    for t in case.calls:
        now[0] = t
        got.append(lim.when("any"))
    assert got == pytest.approx(case.delays)


def test_max_of_takes_the_longest_and_forgets_everywhere():
    now = [0.0]
    backoff = ExponentialBackoff(1, 100)
    lim = MaxOfRateLimiter(backoff, BucketRateLimiter(1, 1, clock=lambda: now[0]))
    assert [lim.when("a"), lim.when("a"), lim.when("b")] == [1, 2, 2]  # bucket: 0, 1, 2; backoff: 1, 2, 1
    assert lim.retries("a") == 2
    lim.forget("a")
    assert lim.retries("a") == 0


@pytest.mark.parametrize("args", [(0, 1), (2, 1)], ids=["zero base", "cap below base"])
def test_backoff_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="backoff needs"):
        ExponentialBackoff(*args)


def test_default_rate_limiter_is_client_gos():
    lim = default_rate_limiter()
    assert lim.when("k") == pytest.approx(0.005)


# --- delayed and rate-limited adds --------------------------------------------------------------

async def test_add_rate_limited_then_forget():
    q: WorkQueue[str] = WorkQueue(rate_limiter=ExponentialBackoff(0.001, 0.01))
    q.add_rate_limited("a")
    assert len(q) == 0  # delayed, not queued yet
    assert await asyncio.wait_for(q.get(), 2) == "a"
    assert q.num_requeues("a") == 1
    q.done("a")
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_add_after_keeps_the_earliest_and_a_plain_add_is_immediate():
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 3600)
    q.add_after("a", 0.001)     # earlier: replaces the pending hour
    q.add_after("a", 3600)      # later: ignored
    assert await asyncio.wait_for(q.get(), 2) == "a"
    assert not q._waiting
    q.add_after("b", 0)
    assert len(q) == 1


# --- shutdown -----------------------------------------------------------------------------------

async def test_shutdown_wakes_idle_workers():
    q: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)  # let it wait
    await q.shutdown()
    with pytest.raises(QueueShutDown):
        await getter


async def test_shutdown_hands_out_what_is_queued_and_ignores_new_adds():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add_after("late", 3600)
    await q.shutdown(drain=False)
    q.add("b")
    assert [k async for k in q] == ["a"]
    assert not q._waiting


async def test_shutdown_with_drain_waits_for_work_in_progress():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    draining = asyncio.create_task(q.shutdown(drain=True))
    await asyncio.sleep(0)
    assert not draining.done()
    q.done(key)
    await asyncio.wait_for(draining, 1)


async def test_a_cancelled_getter_passes_its_wake_up_on():
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")          # wakes `first` …
    first.cancel()      # … which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"

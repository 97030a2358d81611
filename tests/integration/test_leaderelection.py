"""Leader election through a Lease against a running API server: two candidates, one leader."""
from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from eventplane.client import Client
from eventplane.objects import errors
from reconcilers.leaderelection import LeaderElector, LeaseRecord, micro_time

LEASE = 2.0       # seconds: short, so that expiry is observable in a test
RENEW = 1.5
RETRY = 0.2


def _client(api) -> Client:
    return Client.from_kubeconfig(str(api.kubeconfig))


class Candidate:
    def __init__(self, client: Client, identity: str, *, release: bool = True, name: str = "controllers") -> None:
        self.log: list[str] = []
        self.elector = LeaderElector(client, name=name, namespace="default", identity=identity,
                                     lease_duration=LEASE, renew_deadline=RENEW, retry_period=RETRY,
                                     on_started_leading=lambda: self.log.append("started"),
                                     on_stopped_leading=lambda: self.log.append("stopped"),
                                     release_on_cancel=release)
        self.task = asyncio.create_task(self.elector.run())

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _first_leader(*cands: Candidate, timeout: float = 10) -> Candidate:
    done, _ = await asyncio.wait([asyncio.create_task(c.elector.wait_leading()) for c in cands],
                                 timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    assert done, "nobody became the leader"
    leaders = [c for c in cands if c.elector.is_leader]
    assert len(leaders) == 1
    return leaders[0]


async def _lease(client: Client, name: str = "controllers") -> LeaseRecord:
    return LeaseRecord.from_lease(await client.get("leases.coordination.k8s.io", name, namespace="default"))


async def _exactly_one_leads_for(cands: list[Candidate], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert sum(c.elector.is_leader for c in cands) == 1
        await asyncio.sleep(RETRY / 2)


async def test_exactly_one_leads_and_release_hands_over_at_once(api):
    async with _client(api) as c1, _client(api) as c2, _client(api) as reader:
        a, b = Candidate(c1, "a"), Candidate(c2, "b")
        try:
            leader = await _first_leader(a, b)
            other = b if leader is a else a
            await _exactly_one_leads_for([a, b], LEASE * 1.5)  # renewals keep it: no flapping
            record = await _lease(reader)
            assert record.holder_identity == leader.elector.identity
            assert record.lease_duration_seconds == 2 and record.acquire_time and record.renew_time
            assert record.renew_time > record.acquire_time  # renewed since it was acquired
            transitions = record.lease_transitions

            stopped_at = time.monotonic()
            await leader.cancel()  # a clean shutdown: ReleaseOnCancel
            assert leader.log == ["started", "stopped"]
            await other.elector.wait_leading(LEASE)
            assert time.monotonic() - stopped_at < LEASE  # no need to wait for expiry
            record = await _lease(reader)
            assert record.holder_identity == other.elector.identity
            assert record.lease_transitions == transitions + 1
        finally:
            await a.cancel()
            await b.cancel()


async def test_a_crashed_leader_is_replaced_after_the_lease_expires(api):
    async with _client(api) as c1, _client(api) as c2, _client(api) as reader:
        a, b = Candidate(c1, "a", release=False), Candidate(c2, "b", release=False)
        try:
            leader = await _first_leader(a, b)
            other = b if leader is a else a
            await asyncio.sleep(RETRY * 2)  # the other has observed the leader's record
            crashed_at = time.monotonic()
            await leader.cancel()  # no release: the lease stays held until it expires
            assert (await _lease(reader)).holder_identity == leader.elector.identity
            await other.elector.wait_leading(LEASE + RENEW + 2)
            took = time.monotonic() - crashed_at
            assert took >= LEASE - 2 * RETRY - 0.5, f"took over after {took:.2f}s, before expiry"
            assert (await _lease(reader)).holder_identity == other.elector.identity
        finally:
            await a.cancel()
            await b.cancel()


async def test_a_leader_that_cannot_renew_steps_down(api):
    async with _client(api) as c1, _client(api) as intruder:
        a = Candidate(c1, "a")
        try:
            await a.elector.wait_leading(10)
            # Another writer takes the lease over (as if a partitioned leader's lease were taken): a's
            # renewals now fail, and it must stop leading within renew_deadline.
            for _ in range(20):  # a's renewals race the intruder's write: retry on conflict
                lease = await intruder.get("leases.coordination.k8s.io", "controllers", namespace="default")
                lease["spec"].update(holderIdentity="intruder", renewTime=micro_time(), leaseDurationSeconds=60)
                try:
                    await intruder.update(lease)
                    break
                except errors.ConflictError:
                    continue
            else:
                pytest.fail("the intruder never got its write in")
            await asyncio.wait_for(a.task, RENEW + 2)  # run() returns: leadership lost
            assert a.log == ["started", "stopped"]
            assert not a.elector.is_leader
            assert (await _lease(intruder)).holder_identity == "intruder"  # it did not release another's lease
        finally:
            await a.cancel()


@pytest.mark.parametrize("args", [dict(lease_duration=2, renew_deadline=2, retry_period=0.2),
                                  dict(lease_duration=2, renew_deadline=1, retry_period=1)],
                         ids=["renew deadline not below the lease", "retry period not below the deadline"])
def test_bad_timings_fail_loudly(args):
    with pytest.raises(ValueError, match="leader election needs"):
        LeaderElector(None, name="x", namespace="default", identity="a", **args)  # type: ignore[arg-type]

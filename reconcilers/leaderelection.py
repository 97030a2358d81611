"""Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.

Used by `eventplane controllers` and `eventplane scheduler` so that several
processes can run and exactly one acts. Feeds the controller loop: the
`on_started_leading` callback starts the controllers; `on_stopped_leading`
tells the process it must stop acting (it usually exits).

The protocol, all through the API with optimistic concurrency (an update
carries the resourceVersion read, so of two candidates racing for one Lease
exactly one wins and the other gets a ConflictError):

- A candidate reads the Lease. It may take it when nobody holds it (empty
  holderIdentity: the last leader released it) or when the record has not
  changed for leaseDurationSeconds *as measured on the candidate's own clock*
  since it first saw that record — client-go's rule, which needs no clock
  agreement between machines. Taking a lease sets acquireTime and increments
  leaseTransitions.
- The leader renews (renewTime) every retry_period. If it cannot renew for
  renew_deadline it steps down; renew_deadline < lease_duration, so it has
  stopped acting before anyone else may take over.
- On cancellation the leader releases the Lease (holderIdentity "", as
  ReleaseOnCancel) so that a successor need not wait for expiry.

Every renewal is a Lease update, hence an event in the log: keep retry_period
seconds, not milliseconds (see docs/reconcilers.md on DESIGN invariant 8).
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from eventplane.client import Client
from eventplane.objects import errors

log = logging.getLogger("eventplane.reconcilers.leaderelection")

JITTER = 1.2  # client-go's JitterFactor for the retry period while not leading

__all__ = ["LeaderElector", "LeaseRecord", "micro_time"]


def micro_time(at: float | None = None) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    dt = datetime.fromtimestamp(time.time() if at is None else at, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """The election fields of a Lease's spec (client-go's LeaderElectionRecord)."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int = 0

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(spec.get("holderIdentity") or "", int(spec.get("leaseDurationSeconds") or 0),
                   spec.get("acquireTime"), spec.get("renewTime"), int(spec.get("leaseTransitions") or 0))

    def spec(self) -> dict[str, Any]:
        return {"holderIdentity": self.holder_identity, "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": self.acquire_time, "renewTime": self.renew_time,
                "leaseTransitions": self.lease_transitions}


Callback = Callable[..., Any]


class LeaderElector:
    """One candidate for one Lease. `await elector.run()` campaigns, leads, and returns when it has
    lost the lease; cancelling it releases the lease (unless release_on_cancel=False)."""

    def __init__(self, client: Client, *, name: str, namespace: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_started_leading: Callback | None = None, on_stopped_leading: Callback | None = None,
                 on_new_leader: Callable[[str], Any] | None = None, release_on_cancel: bool = True) -> None:
        if not identity:
            raise ValueError("a leader elector needs a non-empty identity")
        if not lease_duration > renew_deadline > retry_period * JITTER > 0:
            raise ValueError("leader election needs lease_duration > renew_deadline > retry_period * "
                             f"{JITTER} > 0, got {lease_duration}, {renew_deadline}, {retry_period}")
        self.client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self.on_new_leader = on_new_leader
        self.release_on_cancel = release_on_cancel
        self.observed: LeaseRecord | None = None      # the record as last read or written
        self._observed_at = 0.0                       # monotonic time it last changed
        self._lease: dict[str, Any] | None = None     # the Lease object, for its resourceVersion
        self._leading = asyncio.Event()
        self._reported_leader: str | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def leader(self) -> str:
        """The identity last seen holding the lease ('' when nobody does)."""
        return self.observed.holder_identity if self.observed else ""

    async def wait_leading(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._leading.wait(), timeout)

    # --- the loop ---

    async def run(self) -> None:
        work: asyncio.Task[Any] | None = None
        try:
            await self._acquire()
            self._leading.set()
            log.info("%s: %s became the leader of %s/%s", self.name, self.identity, self.namespace, self.name)
            if self.on_started_leading is not None:
                result = self.on_started_leading()
                if inspect.isawaitable(result):
                    work = asyncio.ensure_future(result)
            await self._renew()
            log.warning("%s: %s failed to renew within %ss; stepping down", self.name, self.identity,
                        self.renew_deadline)
        finally:
            was_leading = self.is_leader
            self._leading.clear()
            if work is not None and not work.done():
                work.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.shield(work)
            if was_leading:
                if self.release_on_cancel:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._release())
                if self.on_stopped_leading is not None:
                    result = self.on_stopped_leading()
                    if inspect.isawaitable(result):
                        await result

    async def _acquire(self) -> None:
        while not await self._try_acquire_or_renew():
            await asyncio.sleep(self.retry_period * random.uniform(1.0, JITTER))

    async def _renew(self) -> None:
        """Renew every retry_period; return once renewing failed for renew_deadline."""
        while True:
            deadline = time.monotonic() + self.renew_deadline
            while True:
                left = deadline - time.monotonic()
                ok = False
                if left > 0:
                    try:
                        ok = await asyncio.wait_for(self._try_acquire_or_renew(), left)
                    except TimeoutError:
                        ok = False
                if ok:
                    break
                if time.monotonic() + self.retry_period >= deadline:
                    return
                await asyncio.sleep(self.retry_period)
            await asyncio.sleep(self.retry_period)

    async def _try_acquire_or_renew(self) -> bool:
        now_wall, now = time.time(), time.monotonic()
        try:
            lease = await self.client.get("leases.coordination.k8s.io", self.name, namespace=self.namespace)
        except errors.NotFoundError:
            record = LeaseRecord(self.identity, _seconds(self.lease_duration), micro_time(now_wall),
                                 micro_time(now_wall), 0)
            try:
                created = await self.client.create(
                    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record.spec()},
                    namespace=self.namespace)
            except (errors.AlreadyExistsError, errors.ConflictError):
                return False
            self._observe(created, now)
            return True
        except errors.EventplaneError as exc:
            log.warning("%s: cannot read the lease: %s", self.name, exc)
            return False

        old = LeaseRecord.from_lease(lease)
        self._observe(lease, now)
        if old.holder_identity and old.holder_identity != self.identity \
                and self._observed_at + old.lease_duration_seconds > now:
            return False  # held by another, not expired on our clock
        mine = old.holder_identity == self.identity
        record = LeaseRecord(self.identity, _seconds(self.lease_duration),
                             old.acquire_time if mine else micro_time(now_wall), micro_time(now_wall),
                             old.lease_transitions if mine else old.lease_transitions + 1)
        return await self._update(lease, record, now)

    async def _update(self, lease: dict[str, Any], record: LeaseRecord, now: float) -> bool:
        body = {**lease, "spec": {**(lease.get("spec") or {}), **record.spec()}}
        try:
            updated = await self.client.update(body, namespace=self.namespace)
        except errors.ConflictError:
            return False  # someone else wrote it first: optimistic concurrency says no
        except errors.EventplaneError as exc:
            log.warning("%s: cannot update the lease: %s", self.name, exc)
            return False
        self._observe(updated, now)
        return True

    async def _release(self) -> None:
        """Hand the lease back (client-go's ReleaseOnCancel): an empty holder anyone may take at once.
        Read afresh: a renewal cancelled in flight may have changed the resourceVersion we hold."""
        for _ in range(3):
            try:
                lease = await self.client.get("leases.coordination.k8s.io", self.name, namespace=self.namespace)
            except errors.EventplaneError:
                return
            old = LeaseRecord.from_lease(lease)
            if old.holder_identity != self.identity:
                return  # not ours (any more): never release another's lease
            now_wall = time.time()
            record = LeaseRecord("", 1, micro_time(now_wall), micro_time(now_wall), old.lease_transitions)
            if await self._update(lease, record, time.monotonic()):
                log.info("%s: %s released the lease", self.name, self.identity)
                return

    def _observe(self, lease: dict[str, Any], now: float) -> None:
        record = LeaseRecord.from_lease(lease)
        self._lease = lease
        if record != self.observed:
            self.observed, self._observed_at = record, now
        if record.holder_identity != self._reported_leader:
            self._reported_leader = record.holder_identity
            if self.on_new_leader is not None and record.holder_identity:
                self.on_new_leader(record.holder_identity)


def _seconds(duration: float) -> int:
    return max(1, int(round(duration)))

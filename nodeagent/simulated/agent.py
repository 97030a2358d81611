"""The simulated nodes' agent: registers N nodes, holds their leases, and runs their pods on paper.

A tool for scale tests and benchmarks, like kwok: no container ever starts.
It talks to the cluster only through eventplane.client (REST, since it writes
the pods/status subresource) and to NATS only for the node leases
(eventplane.client.nodeleases, DESIGN invariant 8).

- Nodes: created with the shape shapes.py gives them, or adopted when they
  exist already with the simulated label (their status is written again only
  when the resources, addresses or node info differ). A node of the same name
  that the simulator did not make is left alone and not served.
- Leases: every node's lease is renewed every `renew_interval` seconds with
  duration `lease_duration`; the node lifecycle controller turns a node's
  Ready condition Unknown when its lease stops.
- Pods: one informer for every bound pod (`spec.nodeName!=`), filtered here
  to this simulator's nodes, so that 1,000 nodes cost one watch. A work queue
  of pod keys feeds podstatus.plan_pod; a status is written only when it
  changes, with causation the position of the pod's Bound event (or, later,
  of the last event of the pod). A pod being deleted is deleted for good with
  gracePeriodSeconds=0, as the kubelet does once its containers stopped.

    await run_simulated_nodes(client, nats_url, count=100)   # until cancelled
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import nats

from eventplane.client import Client, UnreachableError
from eventplane.client.coalesce import Coalescer
from eventplane.client.nodeleases import BUCKET, NodeLeases
from eventplane.objects import errors
from reconcilers.informer import Informer, causation_of, key_of
from reconcilers.runner import Controller, Request

from .podstatus import format_time, is_terminal, plan_pod
from .shapes import SIMULATED_LABEL, IpPool, SimulatorConfig, node_manifest, same_node_status

log = logging.getLogger("eventplane.nodeagent.simulated")

__all__ = ["SimulatedNodes", "Stats", "run_simulated_nodes"]

REGISTER_CONCURRENCY = 32
REGISTER_RETRY_CAP = 5.0   # seconds between attempts to reach the API at start
RENEW_CONCURRENCY = 64
STOP_TIMEOUT = 5.0  # seconds closing the NATS connection may take
WAKE_SLACK = 0.05   # seconds after a container's end before looking again (the status must say it ended)


@dataclass
class SimNode:
    name: str
    index: int
    host_ip: str
    pool: IpPool


@dataclass
class Stats:
    """Writes made, for tests and benchmarks: a restarted simulator that adopts makes none."""

    nodes_created: int = 0
    nodes_updated: int = 0
    status_writes: int = 0
    deletions: int = 0
    lease_renewals: int = 0
    lease_failures: int = 0
    conflicts: int = 0
    by_pod: dict[str, int] = field(default_factory=dict)

    @property
    def writes(self) -> int:
        return self.nodes_created + self.nodes_updated + self.status_writes + self.deletions


class SimulatedNodes:
    """`await sim.run()` until cancelled; `await sim.wait_ready()` once nodes, leases and the pod cache are up."""

    def __init__(self, client: Client, nats_url: str | None, config: SimulatorConfig, *, nc: Any = None) -> None:
        if nats_url is None and nc is None:
            raise ValueError("simulated nodes need NATS for their leases: give nats_url or nc")
        self.client = client
        # The status writes of many pods at once go as one request (coalesce.py), as a busy node's would.
        self._statuses = Coalescer(client, "pods", subresource="status", verb="update")
        self.nats_url = nats_url
        self.config = config
        self.nodes: dict[str, SimNode] = {}
        self.stats = Stats()
        self.informer = Informer(client, "pods", field_selector="spec.nodeName!=")
        self.informer.add_handler(on_add=self._seen, on_update=lambda old, new: self._seen(new),
                                  on_delete=self._gone)
        self.controller = Controller("simulated-nodes", self.informer, self._reconcile, workers=config.workers)
        self._nc = nc
        self._own_nc = nc is None
        self._leases: NodeLeases | None = None
        self._bound_at: dict[str, int] = {}      # pod uid → the position at which we first saw it bound
        self._inflight = 0
        self._ready = asyncio.Event()

    # --- running -----------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self._nc is None:
                self._nc = await nats.connect(self.nats_url, max_reconnect_attempts=-1, name="simulate-nodes")
            self._leases = await NodeLeases.open(self._nc, self.config.lease_bucket or BUCKET)
            await self._until_registered()
            await self._renew_all()
            renewing = asyncio.create_task(self._renew_loop(), name="simulated-nodes:leases")
            agent = asyncio.create_task(self.controller.run(), name="simulated-nodes:pods")
            try:
                await self.informer.wait_synced()
                log.info("simulating %d nodes (%s cpu, %s memory, %d pods each, %d zones): for scale tests and "
                         "benchmarks only, no container runs", len(self.nodes), self.config.cpu, self.config.memory,
                         self.config.pods_per_node, self.config.zones)
                self._ready.set()
                await asyncio.gather(renewing, agent)
            finally:
                for t in (renewing, agent):
                    t.cancel()
                await asyncio.gather(renewing, agent, return_exceptions=True)
        finally:
            await asyncio.shield(self._close())

    async def _close(self) -> None:
        await self.informer.stop()
        if self._own_nc and self._nc is not None:
            with contextlib.suppress(Exception):   # bounded: stopping must not hang on a slow NATS
                await asyncio.wait_for(self._nc.close(), STOP_TIMEOUT)
            self._nc = None

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written (delayed keys — containers still to end — aside)."""
        return self._ready.is_set() and len(self.controller.queue) == 0 and self._inflight == 0

    async def wait_idle(self, timeout: float = 30.0, settle: float = 0.3) -> None:
        """Until the agent has been idle for `settle` seconds."""
        async def wait() -> None:
            quiet_since = None
            while True:
                now = time.monotonic()
                if not self.idle:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= settle:
                    return
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)

    # --- nodes and leases --------------------------------------------------------------------------

    async def _until_registered(self) -> None:
        """Register the nodes, waiting for an API server that is not up yet (as a kubelet does)."""
        delay = 0.2
        while True:
            try:
                await self._register_nodes()
                return
            except (UnreachableError, errors.EventplaneError) as exc:
                if isinstance(exc, errors.EventplaneError) and exc.code not in (429, 500, 503, 504):
                    raise
                log.warning("registering the simulated nodes: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REGISTER_RETRY_CAP)

    async def _register_nodes(self) -> None:
        existing: dict[str, dict[str, Any]] = {}
        token = None
        while True:
            page = await self.client.list("nodes", label_selector=f"{SIMULATED_LABEL}=true", limit=500,
                                          continue_token=token)
            existing.update({n["metadata"]["name"]: n for n in page.get("items") or []})
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def one(index: int) -> None:
            async with gate:
                node = await self._register(index, existing.get(self.config.name(index)))
            if node is not None:
                self.nodes[node.name] = node
        await asyncio.gather(*(one(i) for i in range(self.config.count)))

    async def _register(self, index: int, current: dict[str, Any] | None) -> SimNode | None:
        desired = node_manifest(self.config, index, format_time(time.time()))
        name = desired["metadata"]["name"]
        if current is None:
            try:
                current = await self.client.create(desired)
                self.stats.nodes_created += 1
            except errors.AlreadyExistsError:
                current = await self.client.get("nodes", name)
                if ((current.get("metadata") or {}).get("labels") or {}).get(SIMULATED_LABEL) != "true":
                    log.error("node %s exists and is not a simulated node: leaving it alone", name)
                    return None
        if not same_node_status(current, desired):
            patch = {k: desired["status"][k] for k in ("capacity", "allocatable", "addresses", "nodeInfo")}
            if not (current.get("status") or {}).get("conditions"):
                patch["conditions"] = desired["status"]["conditions"]
            current = await self.client.patch("nodes", name, {"status": patch}, subresource="status",
                                              causation=causation_of(current))
            self.stats.nodes_updated += 1
        cidr = (current.get("spec") or {}).get("podCIDR") or str(self.config.pod_cidr(index))
        return SimNode(name, index, self.config.internal_ip(index), IpPool(ipaddress.ip_network(cidr)))

    async def _renew_all(self) -> None:
        assert self._leases is not None
        gate = asyncio.Semaphore(RENEW_CONCURRENCY)
        now = time.time()

        async def one(name: str) -> None:
            async with gate:
                try:
                    await self._leases.renew(name, holder=self.config.holder, duration=self.config.lease_duration,
                                             now=now)
                    self.stats.lease_renewals += 1
                except Exception as exc:   # NATS away: pods keep "running"; the next round tries again
                    self.stats.lease_failures += 1
                    log.debug("renewing the lease of %s failed: %r", name, exc)
        await asyncio.gather(*(one(n) for n in list(self.nodes)))

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.renew_interval)
            started = time.monotonic()
            await self._renew_all()
            took = time.monotonic() - started
            if took > self.config.renew_interval / 2:
                log.warning("renewing %d leases took %.1f s", len(self.nodes), took)

    # --- pods --------------------------------------------------------------------------------------

    def _seen(self, pod: dict[str, Any]) -> None:
        """An informer handler: adopt the address a pod already has (after a restart), remember when it
        was first seen bound, and queue it. Runs for every bound pod; only ours are queued."""
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        self._bound_at.setdefault(uid, causation_of(pod) or 0)
        ip = (pod.get("status") or {}).get("podIP")
        if ip and not is_terminal(pod):
            node.pool.adopt(uid, ip)
        self.controller.queue.add(key_of(pod))

    def _gone(self, pod: dict[str, Any]) -> None:
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        uid = (pod.get("metadata") or {}).get("uid", "")
        self._bound_at.pop(uid, None)
        if node is not None:
            node.pool.release(uid)

    async def _reconcile(self, request: Request) -> None:
        self._inflight += 1
        try:
            await self._sync(request)
        finally:
            self._inflight -= 1

    async def _sync(self, request: Request) -> None:
        pod = self.informer.store.get(request.key)
        if pod is None:
            return
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        meta = pod["metadata"]
        uid = meta.get("uid", "")
        current = pod.get("status") or {}
        pod_ip = current.get("podIP") or (None if meta.get("deletionTimestamp") or is_terminal(pod)
                                          else node.pool.allocate(uid))
        now = time.time()
        plan = plan_pod(pod, host_ip=node.host_ip, pod_ip=pod_ip, now=now)
        if plan.delete:
            if meta.get("deletionGracePeriodSeconds") == 0:
                return    # deleted for good already; finalizers of others hold it
            try:
                # By UID, as the kubelet does: never a pod recreated under the same name meanwhile.
                await self.client.delete("pods", meta["name"], namespace=meta.get("namespace"),
                                         grace_period_seconds=0, preconditions={"uid": uid},
                                         causation=request.causation)
                self.stats.deletions += 1
            except (errors.NotFoundError, errors.ConflictError):
                pass
        elif plan.status is not None:
            first_start = not current.get("startTime")
            causation = self._bound_at.get(uid) if first_start else None
            try:
                await self._statuses.write({**pod, "status": plan.status}, causation=causation or request.causation)
            except (errors.ConflictError, errors.NotFoundError):
                # A newer version is on its way through the watch, and it queues the key again.
                self.stats.conflicts += 1
                return
            self.stats.status_writes += 1
            self.stats.by_pod[request.key] = self.stats.by_pod.get(request.key, 0) + 1
        if plan.terminal:
            node.pool.release(uid)
        if plan.wake_at is not None:
            self.controller.queue.add_after(request.key, max(0.0, plan.wake_at - now) + WAKE_SLACK)


async def run_simulated_nodes(client: Client, nats_url: str | None, *, count: int, cpu: str = "32",
                              memory: str = "128Gi", zones: int = 3, pods_per_node: int = 110,
                              name_prefix: str = "sim-", nc: Any = None, **options: Any) -> None:
    """Run `count` simulated nodes until cancelled (for `eventplane up` and tests). Further options are
    SimulatorConfig's fields (ephemeral_storage, region, lease_duration, renew_interval, holder,
    lease_bucket, workers)."""
    config = SimulatorConfig(count=count, cpu=cpu, memory=memory, zones=zones, pods_per_node=pods_per_node,
                             name_prefix=name_prefix, **options)
    await SimulatedNodes(client, nats_url, config, nc=nc).run()

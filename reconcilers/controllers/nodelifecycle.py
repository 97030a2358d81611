"""The node lifecycle controller: nodes whose leases stop go NotReady, get tainted, and lose their pods.

Fed by the node leases in NATS KV (eventplane.client.nodeleases: heartbeats
are not events, DESIGN invariant 8) and by the nodes and pods informers. The
pure functions below decide; `NodeLifecycle` is the thin loop that applies
their decisions through the client, each write carrying the position of the
node's last event as causation. Behaviour follows Kubernetes'
pkg/controller/nodelifecycle and its taint-based eviction:

1. Health. A node is healthy while its lease was renewed within the grace
   period (the lease's own duration, 40 s by default, or `grace`). Renewals
   are timed on this process's clock, as Kubernetes times kubelet posts, so
   clock skew between agent and controller does not matter; only the first
   value seen of a lease is aged by its renewTime. A node without a lease
   gets `startup_grace` (60 s) from its creation. When the grace runs out,
   every kubelet condition turns Unknown — reason NodeStatusUnknown, "Kubelet
   stopped posting node status." (NodeStatusNeverUpdated, "Kubelet never
   posted node status." for a node that never had any) — and it comes back
   (Ready True, KubeletReady) as soon as the lease is renewed: here the lease
   is the only heartbeat, agents post node status only when it changes.
2. Taints. Ready Unknown → node.kubernetes.io/unreachable, Ready False →
   node.kubernetes.io/not-ready, each NoSchedule (at once) and NoExecute;
   Ready True removes both.
3. Zones (topology.kubernetes.io/region + zone). A zone with no ready node is
   in FullDisruption; one with more than 2 not-ready nodes making at least
   `unhealthy_zone_threshold` (55 %) of it in PartialDisruption; else Normal.
   NoExecute taints are added at `eviction_rate` nodes per second per zone
   (0.1, --node-eviction-rate); in PartialDisruption at
   `secondary_eviction_rate` (0.01) when the zone has more than
   `large_cluster_threshold` (50) nodes and not at all otherwise — most of a
   zone going dark at once is a partition, not a failure. When every zone is
   in FullDisruption the controller itself is probably cut off: no NoExecute
   taint is added and those it added are removed. As Kubernetes does in one
   monitoring pass, a node must have been unhealthy — and its zone's state
   unchanged — for `monitor_period` before it is NoExecute-tainted, so that
   nodes going dark (or coming back) together are counted together.
4. Eviction. A pod on a node with a NoExecute taint it does not tolerate is
   deleted (gracefully, after a DisruptionTarget condition) once the taint is
   older than the pod's tolerationSeconds. This API server has no
   DefaultTolerationSeconds admission, so a pod without a toleration for
   not-ready or unreachable is given `default_toleration_seconds` (300) for
   them, as that plugin would; a pod that tolerates them without
   tolerationSeconds stays for ever.
5. Pods not ready, and Events. When a node leaves Ready its pods' Ready
   condition turns False, once (MarkPodsNotReady); Events NodeNotReady /
   NodeReady, NodeNotReady on those pods and TaintManagerEviction say so.

Settings come from `ctx.options`: a dict under "node-lifecycle" with the
field names of `Settings` (grace, startup_grace, monitor_period,
eviction_rate, secondary_eviction_rate, large_cluster_threshold,
unhealthy_zone_threshold, default_toleration_seconds, lease_bucket), or flat
keys named as Kubernetes' flags (FLAGS: node-monitor-grace-period,
node-eviction-rate, …).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from eventplane.client import Client
from eventplane.client.nodeleases import BUCKET, NodeLease, NodeLeases
from eventplane.objects import errors
from reconcilers.informer import BY_NODE, Informer, causation_of
from reconcilers.runner import Controller, Request, Requeue

from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.nodelifecycle")

Obj = dict[str, Any]

__all__ = ["NOT_READY_TAINT", "UNREACHABLE_TAINT", "NodeLifecycle", "Settings", "ZoneLimiter", "build",
           "eviction_deadline", "eviction_rate", "health_conditions", "no_execute_step", "node_ready", "tainted",
           "tolerates", "zone_key", "zone_state"]

UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
HEALTHY = {  # what the kubelet says of a healthy node: restored when the lease comes back
    "Ready": ("True", "KubeletReady", "kubelet is posting ready status"),
    "MemoryPressure": ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
}
STATUS_UNKNOWN = ("NodeStatusUnknown", "Kubelet stopped posting node status.")
NEVER_UPDATED = ("NodeStatusNeverUpdated", "Kubelet never posted node status.")

NORMAL, PARTIAL, FULL = "Normal", "PartialDisruption", "FullDisruption"
EVICTED_MEMORY = 60.0   # seconds an eviction is remembered, until the pods informer shows it
STOP_TIMEOUT = 5.0      # seconds each step of stopping may take


@dataclass(frozen=True)
class Settings:
    grace: float | None = None               # None: each lease's own duration (40 s by default)
    startup_grace: float = 60.0              # a node that never had a lease, from its creation
    monitor_period: float = 5.0              # unhealthy this long before NoExecute (nodes going dark together)
    eviction_rate: float = 0.1               # nodes per second per zone getting NoExecute
    secondary_eviction_rate: float = 0.01    # in a partially disrupted large zone
    large_cluster_threshold: int = 50
    unhealthy_zone_threshold: float = 0.55
    default_toleration_seconds: float = 300.0
    lease_bucket: str = BUCKET

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Settings:
        """From `options["node-lifecycle"]` (field names), or flat keys named as Kubernetes' flags."""
        merged: dict[str, Any] = {flag: options[key] for key, flag in FLAGS.items() if options.get(key) is not None}
        merged.update({k.replace("-", "_"): v for k, v in (options.get("node-lifecycle") or {}).items()})
        kw: dict[str, Any] = {}
        for f in fields(cls):
            value = merged.get(f.name)
            if value is not None:
                kw[f.name] = str(value) if f.name == "lease_bucket" else \
                    int(value) if f.name == "large_cluster_threshold" else float(value)
        return cls(**kw)


FLAGS = {  # kube-controller-manager's (and kube-apiserver's) flag → Settings field
    "node-monitor-grace-period": "grace",
    "node-startup-grace-period": "startup_grace",
    "node-monitor-period": "monitor_period",
    "node-eviction-rate": "eviction_rate",
    "secondary-node-eviction-rate": "secondary_eviction_rate",
    "large-cluster-size-threshold": "large_cluster_threshold",
    "unhealthy-zone-threshold": "unhealthy_zone_threshold",
    "default-not-ready-toleration-seconds": "default_toleration_seconds",
}


# --- pure decisions ---------------------------------------------------------------------------------

def _time(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(math.floor(t), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_ready(node: Obj) -> str:
    """The status of a node's Ready condition: "True", "False" or "Unknown" (also when it has none)."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") or "Unknown"
    return "Unknown"


def health_conditions(conditions: list[Obj], *, healthy: bool, now: str) -> list[Obj] | None:
    """The node's conditions after a health check; None when they stay as they are.

    Unhealthy: every kubelet condition not yet Unknown becomes Unknown (NodeStatusUnknown), and a
    node without a Ready condition gets one (NodeStatusNeverUpdated). Healthy: the conditions this
    controller turned Unknown come back to what a healthy kubelet reports."""
    out = [dict(c) for c in conditions]
    by_type = {c.get("type"): c for c in out}
    changed = False
    if not healthy:
        if "Ready" not in by_type:
            out.append({"type": "Ready", "status": "Unknown", "lastHeartbeatTime": now, "lastTransitionTime": now,
                        "reason": NEVER_UPDATED[0], "message": NEVER_UPDATED[1]})
            return out
        for c in out:
            if c.get("type") in KUBELET_CONDITIONS and c.get("status") != "Unknown":
                c.update(status="Unknown", reason=STATUS_UNKNOWN[0], message=STATUS_UNKNOWN[1],
                         lastTransitionTime=now)
                changed = True
        return out if changed else None
    for c in out:
        if c.get("type") in HEALTHY and c.get("status") == "Unknown" \
                and c.get("reason") in (STATUS_UNKNOWN[0], NEVER_UPDATED[0]):
            status, reason, message = HEALTHY[c["type"]]
            c.update(status=status, reason=reason, message=message, lastTransitionTime=now, lastHeartbeatTime=now)
            changed = True
    return out if changed else None


def tainted(taints: list[Obj], ready: str, *, no_execute: bool | None, now: str) -> list[Obj]:
    """The node's taints for its Ready status. `no_execute`: True to have the NoExecute taint of that
    status, False to have none, None to keep whatever NoExecute taint of ours is there (rate limiting
    has not decided yet). Other taints stay as they are, in order."""
    want = {"Unknown": UNREACHABLE_TAINT, "False": NOT_READY_TAINT}.get(ready)
    ours = (UNREACHABLE_TAINT, NOT_READY_TAINT)
    out = [t for t in taints if t.get("key") not in ours]
    if want is not None:
        out.append({"key": want, "effect": "NoSchedule"})
    existing = [t for t in taints if t.get("key") in ours and t.get("effect") == "NoExecute"]
    if no_execute is None:
        # Swap not-ready ↔ unreachable at once (no rate limit), as Kubernetes does; drop when healthy.
        if existing and want is not None:
            same = [t for t in existing if t.get("key") == want]
            out.append(same[0] if same else {"key": want, "effect": "NoExecute", "timeAdded": now})
    elif no_execute and want is not None:
        same = [t for t in existing if t.get("key") == want]
        out.append(same[0] if same else {"key": want, "effect": "NoExecute", "timeAdded": now})
    return out


def zone_key(node: Obj) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    region, zone = labels.get(REGION_LABEL, ""), labels.get(ZONE_LABEL, "")
    return f"{region}:{zone}" if region or zone else ""


def zone_state(ready: int, not_ready: int, *, threshold: float = 0.55) -> str:
    """Kubernetes' ComputeZoneState."""
    if ready == 0 and not_ready > 0:
        return FULL
    if not_ready > 2 and not_ready / (ready + not_ready) >= threshold:
        return PARTIAL
    return NORMAL


def eviction_rate(state: str, zone_size: int, *, all_full: bool, settings: Settings) -> float:
    """Nodes per second that may get a NoExecute taint in a zone."""
    if all_full:
        return 0.0
    if state == PARTIAL:
        return settings.secondary_eviction_rate if zone_size > settings.large_cluster_threshold else 0.0
    return settings.eviction_rate


def no_execute_step(*, ready: str, all_full: bool, has_ours: bool, unhealthy_since: float, zone_since: float,
                    monitor_period: float, now: float) -> tuple[str, float]:
    """What to do about a node's NoExecute taint: "remove" it (healthy, or every zone dark: we are
    the ones cut off), "keep" whatever is there, "wait" (seconds) until the node has been unhealthy
    and its zone's state unchanged for a monitor period — nodes that go dark or come back together
    are counted together — or "ask" the zone's rate limiter for it."""
    if ready == "True" or all_full:
        return "remove", 0.0
    if has_ours:
        return "keep", 0.0
    settled = max(unhealthy_since, zone_since) + monitor_period
    if now < settled:
        return "wait", settled - now
    return "ask", 0.0


def tolerates(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    op = toleration.get("operator") or "Equal"
    key = toleration.get("key")
    if not key:
        return op == "Exists"
    if key != taint.get("key"):
        return False
    return op == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_deadline(pod: Obj, taints: Iterable[Obj], *, default_toleration_seconds: float,
                      now: float) -> float | None:
    """When a pod must leave a node with these taints (unix seconds), None if it may stay for ever.

    Per NoExecute taint: not tolerated → at once (not-ready and unreachable: after the default
    tolerationSeconds, as DefaultTolerationSeconds admission would have given); tolerated → after
    the smallest tolerationSeconds of the tolerations that match (never if none sets one); counted
    from the taint's timeAdded."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    deadline: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        added = _time(taint.get("timeAdded")) or now
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            if taint.get("key") not in (UNREACHABLE_TAINT, NOT_READY_TAINT):
                return min(added, now)
            seconds = default_toleration_seconds
        else:
            limited = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
            if not limited:
                continue
            seconds = max(0.0, float(min(limited)))
        at = added + seconds
        deadline = at if deadline is None else min(deadline, at)
    return deadline


class ZoneLimiter:
    """A token bucket of burst 1 at `rate` per second (0: never), as Kubernetes' zone tainters."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rate = rate
        self._tokens = 1.0
        self._at = clock()

    def set_rate(self, rate: float) -> None:
        if rate != self.rate:
            self._refill()
            self.rate = rate
            if rate > 0:
                self._tokens = max(self._tokens, 1.0)   # a fresh limiter starts with its burst

    def _refill(self) -> None:
        now = self.clock()
        if self.rate > 0:
            self._tokens = min(1.0, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> float:
        """0 when a token was taken; else seconds until one may be (inf at rate 0)."""
        self._refill()
        if self.rate <= 0:
            return math.inf
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


# --- the loop ---------------------------------------------------------------------------------------

class NodeLifecycle:
    """Reconciles nodes by name; `controller` runs it (with the lease watch) until cancelled."""

    def __init__(self, ctx: ControllerContext, settings: Settings | None = None) -> None:
        if not ctx.nats_url:
            raise ValueError("the node-lifecycle controller needs the NATS URL (ctx.nats_url) for the node leases")
        self.client: Client = ctx.client
        self.nats_url = ctx.nats_url
        self.settings = settings or Settings.from_options(ctx.options)
        self.nodes: Informer = ctx.informers.informer("nodes")
        self.pods: Informer = ctx.informers.informer("pods")
        self.controller = _LifecycleController(self)
        self.events = EventRecorder(self.client, component="node-controller", instance=ctx.identity)
        self.leases: dict[str, NodeLease] = {}
        self._seen: dict[str, float] = {}           # node → local monotonic time of its last renewal
        self._unhealthy_since: dict[str, float] = {}
        self._limiters: dict[str, ZoneLimiter] = {}
        self._zone_states: dict[str, str] = {}
        self._zone_since: dict[str, float] = {}     # zone → local monotonic time its state last changed
        self._evicted: dict[str, float] = {}        # pod uid → when we evicted it (not twice while the cache lags)
        self._all_full = False
        self._ready: dict[str, str] = {}            # node → Ready status as this controller knows it
        self._zone_of: dict[str, str] = {}
        self._zones_dirty = True
        self.nodes.add_handler(on_add=self._node_seen, on_update=lambda old, new: self._node_seen(new),
                               on_delete=self._node_gone)
        self.pods.add_handler(on_add=self._pod_seen, on_update=lambda old, new: self._pod_seen(new))

    # --- informer and lease handlers ---

    def _node_seen(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        ready, zone = node_ready(node), zone_key(node)
        if self._ready.get(name) != ready or self._zone_of.get(name) != zone:
            self._ready[name], self._zone_of[name] = ready, zone
            self._zones_dirty = True

    def _node_gone(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        self._ready.pop(name, None)
        self._zone_of.pop(name, None)
        self._unhealthy_since.pop(name, None)
        self._zones_dirty = True

    def _pod_seen(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            return
        cached = self.nodes.store.get(node)
        if cached and any(t.get("effect") == "NoExecute" for t in (cached.get("spec") or {}).get("taints") or []):
            self.controller.queue.add(node)

    def lease_seen(self, node: str, lease: NodeLease | None, *, mono: float | None = None,
                   wall: float | None = None) -> None:
        """A lease value from KV. The first value of a node is aged by its renewTime; later ones count
        as renewals now, on this clock."""
        mono = time.monotonic() if mono is None else mono
        if lease is None:
            self.leases.pop(node, None)
            return
        previous = self.leases.get(node)
        self.leases[node] = lease
        if previous is None:
            age = max(0.0, (time.time() if wall is None else wall) - lease.renew_time)
            self._seen[node] = mono - age
        elif lease.renew_time != previous.renew_time:
            self._seen[node] = mono
        else:
            return
        if self._ready.get(node, "True") != "True":
            self.controller.queue.add(node)    # coming back: restore it now, not at the next check

    async def watch_leases(self, leases: NodeLeases) -> None:
        while True:
            try:
                async for node, lease in leases.watch():
                    self.lease_seen(node, lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # NATS away: nodes age meanwhile; resume when it is back
                log.warning("node lease watch failed (%r); watching again", exc)
                await asyncio.sleep(1.0)

    # --- health ---

    def _grace(self, node: str) -> float:
        lease = self.leases.get(node)
        if self.settings.grace is not None:
            return self.settings.grace
        return lease.duration if lease is not None else self.settings.startup_grace

    def _healthy_until(self, node: Obj) -> float:
        """The local monotonic time until which the node counts as healthy."""
        name = node["metadata"]["name"]
        seen = self._seen.get(name)
        if seen is None:   # never had a lease: the startup grace from its creation
            created = _time((node.get("metadata") or {}).get("creationTimestamp")) or time.time()
            return time.monotonic() - max(0.0, time.time() - created) + max(self.settings.startup_grace,
                                                                              self._grace(name))
        return seen + self._grace(name)

    # --- zones ---

    def _zones(self) -> dict[str, str]:
        if self._zones_dirty:
            counts: dict[str, list[int]] = {}
            for name, zone in self._zone_of.items():
                c = counts.setdefault(zone, [0, 0])
                c[0 if self._ready.get(name) == "True" else 1] += 1
            states = {z: zone_state(r, n, threshold=self.settings.unhealthy_zone_threshold)
                      for z, (r, n) in counts.items()}
            all_full = bool(states) and all(s == FULL for s in states.values())
            changed = {z for z in set(states) | set(self._zone_states) if states.get(z) != self._zone_states.get(z)}
            if all_full != self._all_full:
                changed = set(states)
                log.warning("every zone is fully disrupted: no evictions until a node is ready again" if all_full
                            else "not every zone is fully disrupted any more: evictions resume")
            for z in changed:
                if z in states:
                    log.info("zone %r: %s", z, states[z])
            self._zone_states, self._all_full, self._zones_dirty = states, all_full, False
            now = time.monotonic()
            for z in changed:
                self._zone_since[z] = now
            for z, state in states.items():   # every zone: a zone's size may have changed its rate
                self._limiter(z).set_rate(eviction_rate(state, sum(counts[z]), all_full=all_full,
                                                        settings=self.settings))
            for name, zone in self._zone_of.items():
                if zone in changed:
                    self.controller.queue.add(name)
        return self._zone_states

    def _limiter(self, zone: str) -> ZoneLimiter:
        lim = self._limiters.get(zone)
        if lim is None:
            lim = self._limiters[zone] = ZoneLimiter(self.settings.eviction_rate)
        return lim

    # --- reconcile ---

    async def reconcile(self, request: Request) -> None:
        name = request.key
        node = self.nodes.store.get(name)
        if node is None:
            self._seen.pop(name, None)
            return
        mono = time.monotonic()
        now = rfc3339(time.time())
        until = self._healthy_until(node)
        healthy = mono <= until
        causation = request.causation or causation_of(node)

        was = node_ready(node)
        conditions = health_conditions((node.get("status") or {}).get("conditions") or [], healthy=healthy, now=now)
        if conditions is not None:
            node = await self._write(node, {**node, "status": {**(node.get("status") or {}),
                                                               "conditions": conditions}},
                                     subresource="status", causation=causation)
            if node is None:
                return
            log.info("node %s: Ready %s (lease %s)", name, node_ready(node), "renewed" if healthy else "expired")
            status_now = "NodeReady" if node_ready(node) == "True" else "NodeNotReady"
            self.events.record(node, "Normal", status_now, f"Node {name} status is now: {status_now}",
                               causation=causation_of(node))
            if was == "True" and node_ready(node) != "True":
                await self._mark_pods_not_ready(node, causation_of(node))
        ready = node_ready(node)
        self._node_seen(node)
        if healthy:
            self.controller.queue.add_after(name, until - mono + 0.05)
        if ready == "True":
            self._unhealthy_since.pop(name, None)
        else:
            self._unhealthy_since.setdefault(name, mono)

        zones = self._zones()
        no_execute: bool | None = None
        zone = zone_key(node)
        taints = (node.get("spec") or {}).get("taints") or []
        has_ours = any(t.get("key") in (UNREACHABLE_TAINT, NOT_READY_TAINT) and t.get("effect") == "NoExecute"
                       for t in taints)
        step, delay = no_execute_step(ready=ready, all_full=self._all_full, has_ours=has_ours,
                                      unhealthy_since=self._unhealthy_since.get(name, mono),
                                      zone_since=self._zone_since.get(zone, 0.0),
                                      monitor_period=self.settings.monitor_period, now=mono)
        if step == "remove":
            no_execute = False
        elif step == "wait":
            self.controller.queue.add_after(name, delay + 0.05)
        elif step == "ask":
            wait = self._limiter(zone).take()
            if wait == 0:
                no_execute = True
                log.info("node %s: NoExecute taint (zone %r %s)", name, zone, zones.get(zone, NORMAL))
            elif math.isfinite(wait):
                self.controller.queue.add_after(name, wait + 0.01)
            # rate 0: a change of the zone's state queues the node again
        desired = tainted(taints, ready, no_execute=no_execute, now=now)
        if desired != taints:
            spec = {**(node.get("spec") or {}), "taints": desired}
            if not desired:
                spec.pop("taints")
            node = await self._write(node, {**node, "spec": spec}, subresource="", causation=causation)
            if node is None:
                return
        await self._evict(node, causation)

    async def _write(self, node: Obj, body: Obj, *, subresource: str, causation: int | None) -> Obj | None:
        try:
            return await self.client.update(body, subresource=subresource, causation=causation)
        except errors.ConflictError:
            raise Requeue from None   # a newer node is on its way: decide again on it, with backoff
        except errors.NotFoundError:
            return None

    async def _evict(self, node: Obj, causation: int | None) -> None:
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return
        name = node["metadata"]["name"]
        now, mono = time.time(), time.monotonic()
        for uid in [u for u, at in self._evicted.items() if mono - at > EVICTED_MEMORY]:
            del self._evicted[uid]
        soonest: float | None = None
        for pod in self.pods.store.by_index(BY_NODE, name):
            meta = pod.get("metadata") or {}
            if meta.get("deletionTimestamp") or meta.get("uid") in self._evicted:
                continue
            at = eviction_deadline(pod, taints, default_toleration_seconds=self.settings.default_toleration_seconds,
                                   now=now)
            if at is None:
                continue
            if at > now:
                soonest = at if soonest is None else min(soonest, at)
                continue
            await self._delete_pod(pod, node, causation)
        if soonest is not None:
            self.controller.queue.add_after(name, soonest - now + 0.05)

    async def _mark_pods_not_ready(self, node: Obj, causation: int | None) -> None:
        """Kubernetes' MarkPodsNotReady: the pods of a node that stopped reporting are not Ready any
        more (so that endpoints drop them), once, when the node leaves Ready."""
        name = node["metadata"]["name"]
        for pod in self.pods.store.by_index(BY_NODE, name):
            conditions = (pod.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") != "True" or (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            changed = {**ready, "status": "False", "lastTransitionTime": rfc3339(time.time())}
            meta = pod["metadata"]
            try:
                await self.client.patch("pods", meta["name"], {"status": {"conditions": [changed]}}, type="strategic",
                                        namespace=meta.get("namespace"), subresource="status", causation=causation)
            except errors.NotFoundError:
                continue
            self.events.record(pod, "Warning", "NodeNotReady", "Node is not ready", causation=causation)

    async def _delete_pod(self, pod: Obj, node: Obj, causation: int | None) -> None:
        meta = pod["metadata"]
        ns, pod_name = meta.get("namespace"), meta["name"]
        log.info("evicting pod %s/%s from node %s (NoExecute taint)", ns, pod_name, node["metadata"]["name"])
        condition = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                     "message": "Taint manager: deleting due to NoExecute taint",
                     "lastTransitionTime": rfc3339(time.time())}
        try:
            await self.client.patch("pods", pod_name, {"status": {"conditions": [condition]}}, type="strategic",
                                    namespace=ns, subresource="status", causation=causation)
            await self.client.delete("pods", pod_name, namespace=ns, preconditions={"uid": meta.get("uid", "")},
                                     causation=causation)
        except (errors.NotFoundError, errors.ConflictError):   # gone, or another pod of that name by now
            return
        self._evicted[meta.get("uid", "")] = time.monotonic()
        self.events.record(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{pod_name}",
                           causation=causation)


class EventRecorder:
    """core/v1 Events about nodes and pods, written in the background: an Event that cannot be
    written is logged and dropped, never a reason to fail a reconcile."""

    def __init__(self, client: Client, *, component: str, instance: str) -> None:
        self.client, self.component, self.instance = client, component, instance
        self._pending: set[asyncio.Task] = set()

    def record(self, obj: Obj, type_: str, reason: str, message: str, *, causation: int | None) -> None:
        meta = obj.get("metadata") or {}
        kind = obj.get("kind") or ("Node" if not meta.get("namespace") else "Pod")
        ns = meta.get("namespace") or "default"    # events about cluster-scoped objects live in default
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": f"{meta.get('name', '')}.{time.time_ns():x}", "namespace": ns},
                 "involvedObject": {"apiVersion": "v1", "kind": kind, "name": meta.get("name", ""),
                                    "uid": meta.get("uid", ""), **({"namespace": ns} if kind != "Node" else {})},
                 "reason": reason, "message": message, "type": type_, "count": 1,
                 "firstTimestamp": now, "lastTimestamp": now, "source": {"component": self.component},
                 "reportingComponent": self.component, "reportingInstance": self.instance}
        task = asyncio.ensure_future(self._write(event, causation))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, event: Obj, causation: int | None) -> None:
        try:
            await self.client.create(event, causation=causation)
        except Exception as exc:
            log.info("event %s about %s not recorded: %s", event["reason"], event["involvedObject"]["name"], exc)


class _LifecycleController(Controller):
    """The nodes' Controller, which also runs the lease watch and keeps the pods informer current."""

    def __init__(self, lifecycle: NodeLifecycle) -> None:
        super().__init__("node-lifecycle", lifecycle.nodes, lifecycle.reconcile, workers=4)
        self.lifecycle = lifecycle

    async def run(self) -> None:
        import nats

        lc = self.lifecycle
        nc = await nats.connect(lc.nats_url, max_reconnect_attempts=-1, name="node-lifecycle")
        watcher: asyncio.Task | None = None
        try:
            leases = await NodeLeases.open(nc, lc.settings.lease_bucket)
            mono, wall = time.monotonic(), time.time()
            for node, lease in (await leases.all()).items():
                lc.lease_seen(node, lease, mono=mono, wall=wall)
            watcher = asyncio.create_task(lc.watch_leases(leases), name="node-lifecycle:leases")
            lc.pods.start()
            await lc.pods.wait_synced()
            await super().run()
        finally:
            # Bounded: stopping must never hang on a NATS that is slow to let go (seen on busy machines).
            if watcher is not None:
                watcher.cancel()
                _, pending = await asyncio.wait({watcher}, timeout=STOP_TIMEOUT)
                if pending:
                    log.warning("node-lifecycle: the lease watch did not stop within %g s", STOP_TIMEOUT)
            try:
                await asyncio.wait_for(nc.close(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("node-lifecycle: closing NATS took over %g s; left behind", STOP_TIMEOUT)
            except Exception as exc:
                log.debug("node-lifecycle: closing NATS: %r", exc)


def build(ctx: ControllerContext) -> list[Controller]:
    if not ctx.nats_url:
        # Without the leases there is nothing to judge nodes by; the other controllers still run.
        log.error("node-lifecycle: no NATS URL (give --nats-url): node leases cannot be read, so this "
                  "controller does not run")
        return []
    return [NodeLifecycle(ctx).controller]

"""The scheduler running against a real API server, with Node objects registered directly (no agent).

Each test starts the scheduler on the test's own API server, creates nodes and
pods through the API, and waits for what the scheduler writes: bindings,
Events, nominations, evictions. The test acts as the agent where one is
needed (deleting a terminating pod).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import pytest

from eventplane.client import Client
from eventplane.objects import errors
from reconcilers.scheduler.record import RECORD_ANNOTATION
from reconcilers.scheduler.scheduler import Scheduler, run_scheduler

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
TIMEOUT = 15


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110", zone: str | None = None,
         labels: dict | None = None, taints: list | None = None) -> dict:
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {HOST: name, **({ZONE: zone} if zone else {}), **(labels or {})}},
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, *, cpu: str | None = None, labels: dict | None = None, priority_class: str | None = None,
        grace: int = 0, scheduler: str | None = None, owner: str | None = None, **spec) -> dict:
    resources = {"requests": {"cpu": cpu}} if cpu else {}
    meta: dict = {"name": name, "namespace": "default", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                    "uid": f"00000000-0000-0000-0000-{abs(hash(owner)) % 10**12:012d}",
                                    "controller": True}]
    body = {"containers": [{"name": "c", "image": "app:1", "resources": resources}],
            "terminationGracePeriodSeconds": grace, **spec}
    if priority_class:
        body["priorityClassName"] = priority_class
    if scheduler:
        body["schedulerName"] = scheduler
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


@contextlib.asynccontextmanager
async def scheduling(api, **kw):
    """A client and a Scheduler running on it (no leader election: one per test)."""
    async with Client.from_kubeconfig(str(api.kubeconfig)) as c:
        s = Scheduler(c, identity="test-scheduler", **kw)
        task = asyncio.create_task(s.run())
        try:
            await s.informers.wait_synced(TIMEOUT)
            yield c, s
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(check, timeout: float = TIMEOUT, every: float = 0.05):
    """Wait until `check()` (sync or async) returns something truthy, and return it."""
    async def loop():
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(every)
    return await asyncio.wait_for(loop(), timeout)


async def node_of(c: Client, name: str) -> str | None:
    return ((await c.get("pods", name, namespace="default")).get("spec") or {}).get("nodeName")


async def bound(c: Client, *names: str) -> dict[str, str]:
    async def check():
        found = {n: await node_of(c, n) for n in names}
        return found if all(found.values()) else None
    return await until(check)


async def events(c: Client, name: str, reason: str | None = None) -> list[dict]:
    items = (await c.list("events", namespace="default",
                          field_selector=f"involvedObject.name={name}"))["items"]
    items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [e for e in items if reason is None or e["reason"] == reason]


async def failed_event(c: Client, name: str) -> dict:
    return (await until(lambda: events(c, name, "FailedScheduling")))[-1]


async def epctl(api, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.epctl", "--kubeconfig", str(api.kubeconfig), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


# --- resources ------------------------------------------------------------------------------------

async def test_requests_that_fit_exactly_bind_and_one_millicore_more_waits_with_kubes_message(api):
    async with scheduling(api) as (c, s):
        for n in ("n1", "n2"):
            await c.create(node(n, cpu="2"))
        exact = await c.create(pod("exact", cpu="2"))
        where = (await bound(c, "exact"))["exact"]
        await c.create(pod("over", cpu="2001m"))
        failed = await failed_event(c, "over")
        assert failed["type"] == "Warning"
        assert failed["message"] == ("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are "
                                     "available: 2 No preemption victims found for incoming pod.")
        assert failed["source"]["component"] == "default-scheduler"
        assert await node_of(c, "over") is None
        # The pod says so too, and the binding carries the position of the event the decision read.
        condition = await until(lambda: _condition(c, "over", "PodScheduled"))
        assert (condition["status"], condition["reason"]) == ("False", "Unschedulable")
        [scheduled] = await until(lambda: events(c, "exact", "Scheduled"))
        assert scheduled["message"] == f"Successfully assigned default/exact to {where}"
        history = (await c.history("pods", "exact"))["items"]
        bind = next(i for i in history if i["type"] == "Bound")
        assert bind["causation"] == exact["metadata"]["resourceVersion"]

        code, out, err = await epctl(api, "explain-schedule", "pod/over")
        assert code == 0, err
        assert "Decision: unschedulable: 0/2 nodes are available: 2 Insufficient cpu." in out
        assert "2 node(s): filter NodeResourcesFit failed: Insufficient cpu" in out
        assert "(passed: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts)" in out
        code, out, err = await epctl(api, "explain-schedule", "pod/exact")
        assert code == 0, err
        assert f"Decision: scheduled to {where}" in out
        assert f"{where}: feasible, total" in out and "<- chosen" in out
        assert "score  NodeResourcesLeastAllocated:" in out
        code, out, err = await epctl(api, "explain-schedule", "pod/nothing")
        assert code == 1 and 'no scheduling decision is recorded for pod "nothing"' in err


async def _condition(c: Client, name: str, type_: str) -> dict | None:
    p = await c.get("pods", name, namespace="default")
    return next((x for x in (p.get("status") or {}).get("conditions") or [] if x["type"] == type_), None)


# --- taints, selectors, affinity --------------------------------------------------------------------

async def test_taints_repel_pods_without_a_toleration(api):
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    async with scheduling(api) as (c, s):
        await c.create(node("gpu", taints=[taint]))
        await c.create(pod("plain"))
        await c.create(pod("tolerant", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                                      "effect": "NoSchedule"}]))
        assert await bound(c, "tolerant") == {"tolerant": "gpu"}
        failed = await failed_event(c, "plain")
        assert failed["message"].startswith(
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. preemption:")
        assert await node_of(c, "plain") is None


async def test_node_selector_and_required_and_preferred_affinity(api):
    def zone_term(op, *zones):
        return {"matchExpressions": [{"key": ZONE, "operator": op, "values": list(zones)}]}

    async with scheduling(api) as (c, s):
        await c.create(node("a1", zone="a", labels={"disktype": "ssd"}))
        await c.create(node("b1", zone="b"))
        await c.create(node("c1", zone="c"))
        await c.create(pod("ssd", nodeSelector={"disktype": "ssd"}))
        await c.create(pod("in-b", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [zone_term("In", "b")]}}}))
        await c.create(pod("likes-c", affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": zone_term("In", "c")}]}}))
        await c.create(pod("nowhere", nodeSelector={"disktype": "nvme"}))
        assert await bound(c, "ssd", "in-b", "likes-c") == {"ssd": "a1", "in-b": "b1", "likes-c": "c1"}
        failed = await failed_event(c, "nowhere")
        assert failed["message"].startswith("0/3 nodes are available: 3 node(s) didn't match Pod's node "
                                            "affinity/selector.")


async def test_anti_affinity_spreads_replicas_one_per_node(api):
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST}]}}
    async with scheduling(api) as (c, s):
        for n in ("n1", "n2", "n3"):
            await c.create(node(n))
        for i in range(4):
            await c.create(pod(f"db-{i}", labels={"app": "db"}, affinity=anti))
        placed = await until(lambda: _bound_among(c, [f"db-{i}" for i in range(4)], 3))
        assert sorted(placed.values()) == ["n1", "n2", "n3"]
        [left] = [f"db-{i}" for i in range(4) if f"db-{i}" not in placed]
        failed = await failed_event(c, left)
        assert "3 node(s) didn't match pod anti-affinity rules" in failed["message"]


async def _bound_among(c: Client, names: list[str], count: int) -> dict[str, str] | None:
    found = {n: await node_of(c, n) for n in names}
    found = {n: v for n, v in found.items() if v}
    return found if len(found) >= count else None


async def test_topology_spread_across_three_zones_with_max_skew_1(api):
    spread = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "web"}}}]
    async with scheduling(api) as (c, s):
        # Zone a has twice the nodes: without the constraint, spreading by node would favour it.
        for name, zone in (("a1", "a"), ("a2", "a"), ("a3", "a"), ("a4", "a"), ("b1", "b"), ("c1", "c")):
            await c.create(node(name, zone=zone))
        names = [f"web-{i}" for i in range(6)]
        for n in names:
            await c.create(pod(n, labels={"app": "web"}, topologySpreadConstraints=spread))
        placed = await bound(c, *names)
        per_zone = {z: sum(1 for v in placed.values() if v.startswith(z)) for z in "abc"}
        assert per_zone == {"a": 2, "b": 2, "c": 2}


async def test_a_replica_sets_pods_spread_over_zones(api):
    async with scheduling(api) as (c, s):
        for name, zone in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")):
            await c.create(node(name, zone=zone))
        names = [f"rs-{i}" for i in range(6)]
        for n in names:   # created together: placed as one equivalence class, in one pass
            await c.create(pod(n, labels={"app": "rs"}, owner="web-abc"))
        placed = await bound(c, *names)
        per_zone = {z: sum(1 for v in placed.values() if v.startswith(z)) for z in "abc"}
        assert per_zone == {"a": 2, "b": 2, "c": 2}


# --- priority and preemption ----------------------------------------------------------------------

async def test_a_high_priority_pod_preempts_only_the_lowest_priority_pods(api):
    async with scheduling(api) as (c, s):
        for name, value in (("lowest", 10), ("low", 100), ("high", 1000)):
            await c.create({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                            "metadata": {"name": name}, "value": value})
        await until(lambda: all(s.priority_classes.store.get(n) for n in ("lowest", "low", "high")))
        await c.create(node("n1", cpu="4"))
        for name, cls in (("keep-1", "low"), ("keep-2", "low"), ("victim-1", "lowest"), ("victim-2", "lowest")):
            await c.create(pod(name, cpu="1", priority_class=cls))
        await bound(c, "keep-1", "keep-2", "victim-1", "victim-2")
        await c.create(pod("vip", cpu="2", priority_class="high"))
        assert await bound(c, "vip") == {"vip": "n1"}
        for victim in ("victim-1", "victim-2"):
            with pytest.raises(errors.NotFoundError):
                await c.get("pods", victim, namespace="default")
            [preempted] = await events(c, victim, "Preempted")
            assert preempted["message"].startswith("Preempted by pod ") and preempted["message"].endswith(" on n1") \
                or preempted["message"].endswith("on node n1")
        assert {await node_of(c, "keep-1"), await node_of(c, "keep-2")} == {"n1"}
        vip = await c.get("pods", "vip", namespace="default")
        assert vip["status"]["nominatedNodeName"] == "n1"
        failed = await failed_event(c, "vip")
        code, out, _ = await epctl(api, "explain-schedule", "pod/vip", "--all")
        assert "Preemption: nominated n1, evicting default/victim-" in out
        assert failed["message"].startswith("0/1 nodes are available: 1 Insufficient cpu.")


async def test_preemptor_waits_for_terminating_victims_and_lower_priority_pods_do_not_take_its_room(api):
    async with scheduling(api) as (c, s):
        for name, value in (("low", 1), ("high", 1000)):
            await c.create({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                            "metadata": {"name": name}, "value": value})
        await until(lambda: all(s.priority_classes.store.get(n) for n in ("low", "high")))
        await c.create(node("n1", cpu="2"))
        await c.create(pod("old", cpu="2", priority_class="low", grace=30))
        await bound(c, "old")
        await c.create(pod("vip", cpu="2", priority_class="high"))
        # Evicted gracefully: the victim is terminating (an agent would stop its containers first).
        await until(lambda: _terminating(c, "old"))
        await c.create(pod("latecomer", cpu="1", priority_class="low"))
        await failed_event(c, "latecomer")
        assert await node_of(c, "vip") is None
        await c.delete("pods", "old", namespace="default", grace_period_seconds=0)   # the agent's part
        assert await bound(c, "vip") == {"vip": "n1"}
        assert await node_of(c, "latecomer") is None


async def _terminating(c: Client, name: str) -> bool:
    return bool((await c.get("pods", name, namespace="default"))["metadata"].get("deletionTimestamp"))


# --- the queue --------------------------------------------------------------------------------------

async def test_a_waiting_pod_is_scheduled_when_a_pod_is_deleted_and_not_before(api):
    async with scheduling(api) as (c, s):
        await c.create(node("n1", cpu="2"))
        await c.create(pod("first", cpu="2"))
        await bound(c, "first")
        await c.create(pod("second", cpu="1"))
        await failed_event(c, "second")
        # Longer than the 1 s backoff: no periodic retry moves it, nothing binds it.
        await asyncio.sleep(2.5)
        assert await node_of(c, "second") is None
        assert len(await events(c, "second", "FailedScheduling")) == 1
        assert s.queue.where("default/second") == "unschedulable"
        await c.delete("pods", "first", namespace="default", grace_period_seconds=0)
        assert await bound(c, "second") == {"second": "n1"}


async def test_a_node_added_moves_waiting_pods(api):
    async with scheduling(api) as (c, s):
        await c.create(pod("early", cpu="1"))
        failed = await failed_event(c, "early")
        assert failed["message"] == "no nodes available to schedule pods"
        await c.create(node("late"))
        assert await bound(c, "early") == {"early": "late"}


# --- several schedulers, leader election ----------------------------------------------------------

async def test_schedulers_by_name_and_leader_election(api):
    async with Client.from_kubeconfig(str(api.kubeconfig)) as c:
        tasks = [asyncio.create_task(run_scheduler(c, identity=f"default-{i}", retry_period=0.5,
                                                   renew_deadline=2, lease_duration=3)) for i in range(2)]
        tasks.append(asyncio.create_task(run_scheduler(c, identity="other-0", scheduler_name="other-scheduler",
                                                       retry_period=0.5, renew_deadline=2, lease_duration=3)))
        try:
            await c.create(node("n1"))
            await c.create(pod("mine"))
            await c.create(pod("theirs", scheduler="other-scheduler"))
            await c.create(pod("nobodys", scheduler="absent-scheduler"))
            await bound(c, "mine", "theirs")
            [mine] = await until(lambda: events(c, "mine", "Scheduled"))
            [theirs] = await until(lambda: events(c, "theirs", "Scheduled"))
            assert mine["source"]["component"] == "default-scheduler"
            assert mine["reportingInstance"] in ("default-0", "default-1")
            assert theirs["source"]["component"] == "other-scheduler"
            assert RECORD_ANNOTATION in theirs["metadata"]["annotations"]
            lease = await c.get("leases.coordination.k8s.io", "default-scheduler", namespace="kube-system")
            assert lease["spec"]["holderIdentity"] in ("default-0", "default-1")
            await asyncio.sleep(0.5)
            assert await node_of(c, "nobodys") is None and await events(c, "nobodys") == []
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# --- Borg's avoidance of nodes where a controller's pods failed -----------------------------------

async def test_a_controllers_pods_avoid_a_node_where_one_failed_to_start(api):
    async with scheduling(api) as (c, s):
        await c.create(node("n1"))
        await c.create(node("n2"))
        # Two healthy siblings on n2 and one on n1: spreading alone would send the next one to n1.
        for name, where in (("web-a", "n2"), ("web-b", "n2"), ("web-c", "n1")):
            await c.create(pod(name, owner="web", labels={"app": "web"}, nodeName=where))
        await c.patch("pods", "web-c", {"status": {"phase": "Pending", "containerStatuses": [
            {"name": "c", "image": "app:1", "imageID": "", "ready": False, "restartCount": 0,
             "state": {"waiting": {"reason": "ErrImagePull", "message": "pull failed"}}}]}},
            namespace="default", subresource="status")
        await until(lambda: s.failures)
        await c.create(pod("web-d", owner="web", labels={"app": "web"}))
        assert await bound(c, "web-d") == {"web-d": "n2"}
        code, out, err = await epctl(api, "explain-schedule", "pod/web-d")
        assert code == 0, err
        assert "score  RecentFailures: 0 x 5 = 0 (pods of its controller failed here recently)" in out
        # Another controller's pod is not affected: it goes where spreading and free room say.
        await c.create(pod("other", owner="other", labels={"app": "other"}))
        assert await bound(c, "other") == {"other": "n1"}


# --- the command ------------------------------------------------------------------------------------

async def test_eventplane_scheduler_command_binds_and_stops_cleanly_on_sigterm(api):
    import signal

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventplane.cli.server", "scheduler", "--kubeconfig", str(api.kubeconfig),
        "--identity", "cli-test", "--profile", "bin-packing",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with Client.from_kubeconfig(str(api.kubeconfig)) as c:
            await c.create(node("n1"))
            await c.create(node("n2", cpu="8"))
            await c.create(pod("packed", cpu="1"))
            # bin-packing (most allocated) prefers the node the pod fills most: the small one.
            assert await bound(c, "packed") == {"packed": "n1"}
            lease = await c.get("leases.coordination.k8s.io", "default-scheduler", namespace="kube-system")
            assert lease["spec"]["holderIdentity"] == "cli-test"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    async with Client.from_kubeconfig(str(api.kubeconfig)) as c:   # the lease was handed back on the way out
        lease = await c.get("leases.coordination.k8s.io", "default-scheduler", namespace="kube-system")
        assert lease["spec"]["holderIdentity"] == ""

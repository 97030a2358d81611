"""ReplicaSet, ReplicationController and Deployment controllers against a running API server, driven
with the real kubectl. No node agent runs here: `Kubelet` below turns pods Running and Ready by
writing pods/status, as an agent would, so that availability means something.

Rolling-update guarantees are asserted from the event history — a watch from the resourceVersion
before the change delivers every pod event in log order — never by sampling.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from datetime import datetime, timezone

import pytest

from eventplane.client import Client
from reconcilers.controllers.podcontrol import is_pod_ready
from reconcilers.manager import ControllerManager
from tests.support.controllers import eventually as poll

NS = "default"


def deployment_yaml(name: str = "web", *, replicas: int = 5, image: str = "nginx:1.25", max_surge="1",
                    max_unavailable="1", strategy: str = "RollingUpdate") -> str:
    rolling = (f"    rollingUpdate: {{maxSurge: {max_surge}, maxUnavailable: {max_unavailable}}}\n"
               if strategy == "RollingUpdate" else "")
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {NS}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: {strategy}
{rolling}  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: {image}
"""


class Kubelet:
    """Stands in for node agents: every pod that appears is made Running and Ready (pods/status)."""

    def __init__(self, api, *, delay: float = 0.0) -> None:
        self.client = Client.from_kubeconfig(str(api.kubeconfig))
        self.delay = delay
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Kubelet:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self.client.close()

    async def _run(self) -> None:
        async for type_, pod in self.client.watch("pods", namespace=NS):
            if type_ in ("ADDED", "MODIFIED") and not pod["metadata"].get("deletionTimestamp") \
                    and not is_pod_ready(pod):
                asyncio.create_task(self._ready(pod))

    async def _ready(self, pod: dict) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with contextlib.suppress(Exception):
            await self.client.patch("pods", pod["metadata"]["name"], {"status": {
                "phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}},
                type="merge", subresource="status", namespace=NS, causation=int(pod["metadata"]["resourceVersion"]))


@contextlib.asynccontextmanager
async def manager(api, *, names: str = "replicaset,deployment,replicationcontroller", identity: str = "cm-1",
                  **kw):
    """A ControllerManager in this event loop, with short leases; yields it once it acts."""
    client = Client.from_kubeconfig(str(api.kubeconfig))
    m = ControllerManager(client, names=names, identity=identity,
                          **{"lease_duration": 4.0, "renew_deadline": 3.0, "retry_period": 0.5, **kw})
    task = asyncio.create_task(m.run())
    try:
        yield m, task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await client.close()


class PodHistory:
    """Every event of a resource (pods by default) after a resourceVersion, in log order, from a watch."""

    def __init__(self, api, resource_version: str, label: str | None, resource: str = "pods") -> None:
        self.client = Client.from_kubeconfig(str(api.kubeconfig))
        self.rv, self.label, self.resource = resource_version, label, resource
        self.events: list[tuple[str, dict]] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> PodHistory:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self.client.close()

    async def _run(self) -> None:
        async for type_, pod in self.client.watch(self.resource, namespace=NS, resource_version=self.rv,
                                                  label_selector=self.label):
            self.events.append((type_, pod))

    def in_log_order(self) -> bool:
        """Whether the watch delivered every event once, in log order (what the assertions rely on)."""
        rvs = [int(o["metadata"]["resourceVersion"]) for _, o in self.events]
        return all(a < b for a, b in zip(rvs, rvs[1:]))

    async def until_position(self, rv: int, timeout: float = 10) -> None:
        async def wait():
            while not self.events or int(self.events[-1][1]["metadata"]["resourceVersion"]) < rv:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)

    def replay(self, initial: list[dict]):
        """(live pods, available pods) after each event, starting from `initial`."""
        live = {p["metadata"]["name"]: p for p in initial}
        for type_, pod in self.events:
            name = pod["metadata"]["name"]
            if type_ == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                live.pop(name, None)
            else:
                live[name] = pod
            yield len(live), sum(1 for p in live.values() if is_pod_ready(p))

    def created_by(self) -> dict[str, set[str]]:
        """The names of the pods created after the resourceVersion, by the uid of their controller."""
        out: dict[str, set[str]] = {}
        for type_, pod in self.events:
            if type_ == "ADDED":
                uid = (pod["metadata"].get("ownerReferences") or [{}])[0].get("uid", "")
                out.setdefault(uid, set()).add(pod["metadata"]["name"])
        return out

    def replica_totals(self, initial: list[dict]):
        """The sum of spec.replicas over the sets after each ReplicaSet event."""
        spec = {rs["metadata"]["name"]: rs["spec"]["replicas"] for rs in initial}
        for type_, rs in self.events:
            if type_ == "DELETED":
                spec.pop(rs["metadata"]["name"], None)
            else:
                spec[rs["metadata"]["name"]] = rs["spec"]["replicas"]
            yield sum(spec.values())


async def pods_of(client: Client, label: str) -> list[dict]:
    return (await client.list("pods", namespace=NS, label_selector=label))["items"]


# A check may assert: it is retried until the deadline, and the last failure is chained to the timeout's.
eventually = functools.partial(poll, timeout=30, interval=0.2, tolerate=(AssertionError,))


async def test_deployment_scales_rolls_out_within_max_unavailable_and_undoes(api):
    async with manager(api), Kubelet(api):
        client = Client.from_kubeconfig(str(api.kubeconfig))
        await api.ok("apply", "-f", "-", input=deployment_yaml(replicas=5))
        await api.ok("rollout", "status", "deployment/web", "--timeout=30s", timeout=40)
        assert len(await pods_of(client, "app=web")) == 5
        [rs] = (await client.list("replicasets.apps", namespace=NS))["items"]
        assert rs["metadata"]["name"].startswith("web-")
        pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{pod_hash}"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        ref = rs["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == \
            ("Deployment", "web", True, True)
        pods = await pods_of(client, "app=web")
        for p in pods:
            assert p["metadata"]["name"].startswith(f"web-{pod_hash}-") and \
                len(p["metadata"]["name"]) == len(f"web-{pod_hash}-") + 5
            assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]

        # kubectl scale goes through the scale subresource
        await api.ok("scale", "deployment/web", "--replicas=10")
        await api.ok("rollout", "status", "deployment/web", "--timeout=30s", timeout=40)
        assert len(await pods_of(client, "app=web")) == 10

        async def described():
            out = await api.ok("describe", "deployment/web")
            return out if f"Scaled up replica set web-{pod_hash} from 5 to 10" in out else None
        out = await eventually(described, timeout=10)
        assert "ScalingReplicaSet" in out and f"Scaled up replica set web-{pod_hash} from 0 to 5" in out
        await api.ok("scale", "deployment/web", "--replicas=2")
        await api.ok("rollout", "status", "deployment/web", "--timeout=30s", timeout=40)

        async def two():
            return len(await pods_of(client, "app=web")) == 2
        await eventually(two)
        await api.ok("scale", "deployment/web", "--replicas=6")
        await api.ok("rollout", "status", "deployment/web", "--timeout=30s", timeout=40)

        # A rolling update, watched from the log: never fewer than 6 - 1 pods available at any event;
        # never more than 6 + 1 replicas asked of the sets together (maxSurge bounds the sets' specs, as
        # in Kubernetes: an old pod may outlive its set's scale-down by a moment).
        before = await client.list("pods", namespace=NS, label_selector="app=web")
        sets_before = await client.list("replicasets.apps", namespace=NS)
        async with PodHistory(api, before["metadata"]["resourceVersion"], "app=web") as history, \
                PodHistory(api, before["metadata"]["resourceVersion"], None, "replicasets.apps") as set_history:
            await api.ok("set", "image", "deployment/web", "main=nginx:1.27")
            await api.ok("rollout", "status", "deployment/web", "--timeout=60s", timeout=70)
            head = await client.list("pods", namespace=NS, label_selector="app=web")
            await history.until_position(max(int(p["metadata"]["resourceVersion"]) for p in head["items"]))
            sets_head = await client.list("replicasets.apps", namespace=NS)
            await set_history.until_position(max(int(r["metadata"]["resourceVersion"]) for r in sets_head["items"]))
        assert history.in_log_order() and set_history.in_log_order()
        steps = list(history.replay(before["items"]))
        assert len(steps) >= 12   # at least 6 creates and 6 deletions
        assert min(available for _, available in steps) >= 5
        assert max(set_history.replica_totals(sets_before["items"])) <= 7, [
            (o["metadata"]["resourceVersion"], t, o["metadata"]["name"], o["spec"]["replicas"],
             (o.get("status") or {}).get("availableReplicas"), o["metadata"].get("generation"))
            for t, o in set_history.events]
        created = history.created_by()
        assert sorted(len(names) for names in created.values()) == [6]   # the new set made exactly 6, once each
        images = {p["spec"]["containers"][0]["image"] for p in head["items"]}
        assert images == {"nginx:1.27"} and len(head["items"]) == 6

        d = await client.get("deployments.apps", "web", namespace=NS)
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        conditions = {c["type"]: c for c in d["status"]["conditions"]}
        assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
        assert (d["status"]["replicas"], d["status"]["updatedReplicas"], d["status"]["availableReplicas"]) == (6, 6, 6)

        history_out = await api.ok("rollout", "history", "deployment/web")
        assert "1 " in history_out and "2 " in history_out

        # undo: back to the first ReplicaSet, which becomes revision 3 and remembers it was 1
        await api.ok("rollout", "undo", "deployment/web")
        await api.ok("rollout", "status", "deployment/web", "--timeout=60s", timeout=70)

        async def undone():
            items = await pods_of(client, "app=web")
            return len(items) == 6 and {p["spec"]["containers"][0]["image"] for p in items} == {"nginx:1.25"}
        await eventually(undone)
        first = await client.get("replicasets.apps", f"web-{pod_hash}", namespace=NS)
        assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
        assert first["spec"]["replicas"] == 6
        assert len((await client.list("replicasets.apps", namespace=NS))["items"]) == 2

        # undo --to-revision=2: the nginx:1.27 set again
        await api.ok("rollout", "undo", "deployment/web", "--to-revision=2")
        await api.ok("rollout", "status", "deployment/web", "--timeout=60s", timeout=70)
        d = await client.get("deployments.apps", "web", namespace=NS)
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
        await client.close()


async def test_pause_resume_and_why_walks_back_to_the_users_request(api):
    async with manager(api), Kubelet(api):
        client = Client.from_kubeconfig(str(api.kubeconfig))
        await api.ok("apply", "-f", "-", input=deployment_yaml("shop", replicas=2))
        await api.ok("rollout", "status", "deployment/shop", "--timeout=30s", timeout=40)

        await api.ok("rollout", "pause", "deployment/shop")
        await api.ok("set", "image", "deployment/shop", "main=nginx:1.27")

        async def paused_condition():
            d = await client.get("deployments.apps", "shop", namespace=NS)
            c = {c["type"]: c for c in d["status"].get("conditions", [])}.get("Progressing")
            return c if c and c["reason"] == "DeploymentPaused" and \
                d["status"].get("observedGeneration") == d["metadata"]["generation"] else None
        cond = await eventually(paused_condition)
        assert (cond["status"], cond["message"]) == ("Unknown", "Deployment is paused")
        assert len((await client.list("replicasets.apps", namespace=NS))["items"]) == 1  # no rollout while paused

        await api.ok("rollout", "resume", "deployment/shop")
        await api.ok("rollout", "status", "deployment/shop", "--timeout=30s", timeout=40)
        pods = await pods_of(client, "app=shop")
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.27"}

        # rollout restart: kubectl stamps the template, which is a new revision like any other
        await api.ok("rollout", "restart", "deployment/shop")
        await api.ok("rollout", "status", "deployment/shop", "--timeout=30s", timeout=40)

        async def restarted():
            items = await pods_of(client, "app=shop")
            return items if len(items) == 2 and all(
                "kubectl.kubernetes.io/restartedAt" in (p["metadata"].get("annotations") or {}) for p in items) else None
        pods = await eventually(restarted)
        assert len((await client.list("replicasets.apps", namespace=NS))["items"]) == 3

        # why: pod → ReplicaSet → Deployment → kubectl's request
        chain = await client.why("pods", pods[0]["metadata"]["name"], namespace=NS)
        kinds = [s["object"]["resource"] for s in chain["steps"]]
        assert kinds[-1] == "pods" and "replicasets" in kinds and kinds[0] == "deployments"
        assert kinds.index("deployments") < kinds.index("replicasets") < len(kinds) - 1
        first = chain["steps"][0]
        assert first["object"]["name"] == "shop" and first["verb"] in ("patch", "update", "apply", "create")
        assert chain["complete"] is True
        # … and as a user asks it: epctl why pod/X
        from tests.e2e.test_epctl import ok as epctl_ok
        out = await epctl_ok(api, "why", f"pod/{pods[0]['metadata']['name']}")
        objects = [row.split()[6] for row in out.splitlines()[1:-1]]
        assert objects[0] == "default/deployments.apps/shop"
        assert any(o.startswith("default/replicasets.apps/shop-") for o in objects)
        assert objects[-1] == f"default/pods/{pods[0]['metadata']['name']}"
        await client.close()


async def test_progress_deadline_exceeded_ends_rollout_status(api):
    # No kubelet here: pods never become ready, so the rollout makes no progress.
    async with manager(api):
        manifest = deployment_yaml("stuck", replicas=2).replace("  replicas: 2\n",
                                                                "  replicas: 2\n  progressDeadlineSeconds: 2\n")
        await api.ok("apply", "-f", "-", input=manifest)
        r = await api.kubectl("rollout", "status", "deployment/stuck", "--timeout=30s", timeout=40)
        assert r.code != 0
        assert 'deployment "stuck" exceeded its progress deadline' in r.err
        client = Client.from_kubeconfig(str(api.kubeconfig))

        async def timed_out():
            # Progress seen late (a slow status write) resets the deadline, as in Kubernetes; it
            # passes again 2 s later.
            d = await client.get("deployments.apps", "stuck", namespace=NS)
            conditions = {c["type"]: c for c in d["status"].get("conditions", [])}
            return conditions if conditions["Progressing"]["reason"] == "ProgressDeadlineExceeded" else None
        conditions = await eventually(timed_out, timeout=15)
        assert conditions["Progressing"]["status"] == "False"
        assert conditions["Progressing"]["message"].endswith("has timed out progressing.")
        assert (conditions["Available"]["status"], conditions["Available"]["reason"]) == \
            ("False", "MinimumReplicasUnavailable")
        await client.close()


async def test_recreate_stops_old_pods_before_starting_new(api):
    async with manager(api), Kubelet(api):
        client = Client.from_kubeconfig(str(api.kubeconfig))
        await api.ok("apply", "-f", "-", input=deployment_yaml("batch", replicas=3, strategy="Recreate"))
        await api.ok("rollout", "status", "deployment/batch", "--timeout=30s", timeout=40)
        before = await client.list("pods", namespace=NS, label_selector="app=batch")
        async with PodHistory(api, before["metadata"]["resourceVersion"], "app=batch") as history:
            await api.ok("set", "image", "deployment/batch", "main=nginx:1.27")
            await api.ok("rollout", "status", "deployment/batch", "--timeout=30s", timeout=40)
            head = await client.list("pods", namespace=NS, label_selector="app=batch")
            await history.until_position(max(int(p["metadata"]["resourceVersion"]) for p in head["items"]))
        # every old pod is gone before the first new pod appears
        seen_new, old_left = False, {p["metadata"]["name"] for p in before["items"]}
        for type_, pod in history.events:
            name = pod["metadata"]["name"]
            if name in old_left and type_ == "DELETED":
                old_left.discard(name)
            elif type_ == "ADDED" and name not in {p["metadata"]["name"] for p in before["items"]}:
                assert not old_left, f"{name} created while {old_left} still existed"
                seen_new = True
        assert seen_new and len(head["items"]) == 3
        await client.close()


async def test_replication_controller_adopts_and_releases_by_selector(api):
    async with manager(api):
        client = Client.from_kubeconfig(str(api.kubeconfig))
        orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "rc"}},
                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        await client.create(orphan, namespace=NS)
        await api.ok("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc", "namespace": NS},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "rc"}},
                                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))

        async def three_owned():
            items = await pods_of(client, "app=rc")
            owned = [p for p in items if (p["metadata"].get("ownerReferences") or [{}])[0].get("name") == "rc"]
            return items if len(items) == 3 and len(owned) == 3 else None
        items = await eventually(three_owned)
        assert "stray" in {p["metadata"]["name"] for p in items}   # adopted, so only two were created

        async def status_three():
            rc = await client.get("replicationcontrollers", "rc", namespace=NS)
            return rc if rc["status"].get("replicas") == 3 and rc["status"].get("fullyLabeledReplicas") == 3 else None
        rc = await eventually(status_three)
        assert rc["status"]["observedGeneration"] == rc["metadata"]["generation"]

        # relabel the adopted pod: released (no owner), and a replacement is created
        await client.patch("pods", "stray", {"metadata": {"labels": {"app": "gone"}}}, namespace=NS)

        async def released():
            stray = await client.get("pods", "stray", namespace=NS)
            return not stray["metadata"].get("ownerReferences") and len(await pods_of(client, "app=rc")) == 3
        await eventually(released)

        # deleting a pod is answered by a new one
        victim = (await pods_of(client, "app=rc"))[0]["metadata"]["name"]
        await client.delete("pods", victim, namespace=NS)

        async def replaced():
            names = {p["metadata"]["name"] for p in await pods_of(client, "app=rc")}
            return len(names) == 3 and victim not in names
        await eventually(replaced)

        await api.ok("scale", "rc/rc", "--replicas=1")

        async def one():
            return len(await pods_of(client, "app=rc")) == 1
        await eventually(one)
        await client.close()


@pytest.mark.slow
async def test_killing_the_leader_mid_rollout_hands_over_without_duplicate_pods(api):
    async with Kubelet(api, delay=0.3):
        client = Client.from_kubeconfig(str(api.kubeconfig))
        async with manager(api, identity="cm-a") as (a, task_a), manager(api, identity="cm-b") as (b, task_b):
            await asyncio.wait_for(asyncio.wait([asyncio.ensure_future(a.wait_acting()),
                                                 asyncio.ensure_future(b.wait_acting())],
                                                return_when=asyncio.FIRST_COMPLETED), 20)
            leader, follower = (a, b) if a.leading else (b, a)
            leader_task = task_a if leader is a else task_b
            assert not follower.leading
            await api.ok("apply", "-f", "-", input=deployment_yaml("ha", replicas=8, max_surge="2",
                                                                   max_unavailable="1"))
            await api.ok("rollout", "status", "deployment/ha", "--timeout=40s", timeout=50)
            before = await client.list("pods", namespace=NS, label_selector="app=ha")
            async with PodHistory(api, before["metadata"]["resourceVersion"], "app=ha") as history:
                await api.ok("set", "image", "deployment/ha", "main=nginx:1.27")

                async def started():
                    return any(t == "ADDED" for t, _ in history.events)
                await eventually(started, timeout=20, interval=0.05)
                # the leader dies without releasing its lease
                leader.elector.release_on_cancel = False
                leader_task.cancel()
                with contextlib.suppress(BaseException):
                    await leader_task
                await follower.wait_acting(20)
                assert follower.leading
                await api.ok("rollout", "status", "deployment/ha", "--timeout=60s", timeout=70)
                head = await client.list("pods", namespace=NS, label_selector="app=ha")
                await history.until_position(max(int(p["metadata"]["resourceVersion"]) for p in head["items"]))
            assert history.in_log_order()
            steps = list(history.replay(before["items"]))
            assert min(available for _, available in steps) >= 7  # replicas - maxUnavailable
            # no duplicates: across both leaders the new set created exactly 8 pods and the old one none
            created = history.created_by()
            assert sorted(len(names) for names in created.values()) == [8], created
            assert len(head["items"]) == 8
            assert {p["spec"]["containers"][0]["image"] for p in head["items"]} == {"nginx:1.27"}
            lease = await client.get("leases.coordination.k8s.io", "eventplane-controller-manager",
                                     namespace="kube-system")
            assert lease["spec"]["holderIdentity"] == follower.identity
        await client.close()

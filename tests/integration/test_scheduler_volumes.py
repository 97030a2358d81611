"""The scheduler's volume filters, namespaceSelector and failed-node avoidance from the log, against a
real API server (Node objects registered directly; the PersistentVolume binder runs where a claim must
be bound or provisioned)."""
from __future__ import annotations

import asyncio

from eventplane.client import Client
from reconcilers.controllers import pvbinder
from reconcilers.scheduler.scheduler import Scheduler
from tests.integration.test_scheduler_loop import TIMEOUT, bound, epctl, events, failed_event, node, pod, \
    scheduling, until
from tests.support.controllers import running

HOST = "kubernetes.io/hostname"
SELECTED = "volume.kubernetes.io/selected-node"


def claim(name: str, cls: str, size: str = "1Gi", modes=("ReadWriteOnce",)) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": size}},
                     "storageClassName": cls}}


def volume(name: str, cls: str, *, host: str | None = None, size: str = "5Gi") -> dict:
    spec = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
            "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{name}"}}
    if host:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOST, "operator": "In", "values": [host]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": spec}


def storage_class(name: str, mode: str, provisioner: str = pvbinder.PROVISIONER) -> dict:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": mode, "reclaimPolicy": "Delete"}


def with_claim(p: dict, *claims: str) -> dict:
    p["spec"]["volumes"] = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]
    return p


async def claim_phase(c: Client, name: str) -> str | None:
    return ((await c.get("persistentvolumeclaims", name, namespace="default")).get("status") or {}).get("phase")


async def test_a_volume_pinned_to_one_node_takes_the_pod_there(api):
    async with running(api, pvbinder.build, options={"data_dir": "/var/lib/ep"}) as c, scheduling(api) as (_, s):
        for n in ("n1", "n2", "n3"):
            await c.create(node(n))
        await c.create(volume("local-n2", "manual", host="n2"))
        await c.create(claim("data", "manual"))
        await until(lambda: _is(claim_phase(c, "data"), "Bound"))
        await c.create(with_claim(pod("db"), "data"))
        assert await bound(c, "db") == {"db": "n2"}
        code, out, err = await epctl(api, "explain-schedule", "pod/db")
        assert code == 0, err
        assert "2 node(s): filter VolumeBinding failed: node(s) had volume node affinity conflict" in out
        assert "n1, n3" in out


async def _is(value, wanted):
    return (await value) == wanted


async def test_wait_for_first_consumer_gets_the_selected_node_and_the_volume_is_made_there(api):
    async with running(api, pvbinder.build, options={"data_dir": "/var/lib/ep"}) as c, scheduling(api) as (_, s):
        await c.create(node("n1", cpu="1"))
        await c.create(node("n2", cpu="8"))      # the most free room: LeastAllocated's choice
        await c.create(node("n3", cpu="2"))
        await c.create(storage_class("local-wffc", "WaitForFirstConsumer"))
        await c.create(claim("data", "local-wffc"))
        await c.create(with_claim(pod("db", cpu="500m"), "data"))
        where = (await bound(c, "db"))["db"]
        assert where == "n2"
        await until(lambda: _is(claim_phase(c, "data"), "Bound"))
        pvc = await c.get("persistentvolumeclaims", "data", namespace="default")
        assert pvc["metadata"]["annotations"][SELECTED] == where
        pv = await c.get("persistentvolumes", pvc["spec"]["volumeName"])
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] \
            == [where]
        # A second pod of the claim follows the volume, though n1 and n3 are emptier.
        await c.create(with_claim(pod("db-2", cpu="100m"), "data"))
        assert await bound(c, "db-2") == {"db-2": "n2"}


async def test_a_missing_claim_waits_with_kubes_message_and_binds_once_created(api):
    async with running(api, pvbinder.build, options={"data_dir": "/var/lib/ep"}) as c, scheduling(api) as (_, s):
        await c.create(node("n1"))
        await c.create(node("n2"))
        await c.create(with_claim(pod("db"), "data"))
        failed = await failed_event(c, "db")
        assert failed["message"] == ('0/2 nodes are available: persistentvolumeclaim "data" not found. preemption: '
                                     '0/2 nodes are available: 2 Preemption is not helpful for scheduling.')
        code, out, err = await epctl(api, "explain-schedule", "pod/db")
        assert code == 0, err
        assert 'filter VolumeBinding (PreFilter): persistentvolumeclaim "data" not found' in out
        await c.create(volume("pv-1", "manual"))
        await c.create(claim("data", "manual"))
        assert (await bound(c, "db"))["db"] in ("n1", "n2")


async def test_an_unbound_immediate_claim_waits_and_the_pod_binds_when_the_claim_is_bound(api):
    async with scheduling(api) as (c, s):
        await c.create(node("n1"))
        await c.create(storage_class("external", "Immediate", provisioner="example.com/external"))
        await c.create(claim("data", "external"))
        await c.create(with_claim(pod("db"), "data"))
        failed = await failed_event(c, "db")
        assert failed["message"].startswith("0/1 nodes are available: pod has unbound immediate "
                                            "PersistentVolumeClaims. preemption:")
        await until(lambda: s.queue.where("default/db") == "unschedulable")
        await asyncio.sleep(2.5)   # longer than the backoff: nothing but an event moves it
        assert s.queue.where("default/db") == "unschedulable"
        assert len(await events(c, "db", "FailedScheduling")) == 1
        # The external provisioner's work, done by hand: a volume, and the claim bound to it.
        await c.create(volume("pv-ext", "external", host="n1"))
        pvc = await c.get("persistentvolumeclaims", "data", namespace="default")
        pvc["spec"]["volumeName"] = "pv-ext"
        pvc["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
        await c.update(pvc)
        assert await bound(c, "db") == {"db": "n1"}


async def test_namespace_selector_picks_pods_in_labelled_namespaces(api):
    async with scheduling(api) as (c, s):
        await c.create(node("n1"))
        await c.create(node("n2"))
        await c.create(node("n3"))
        for ns, labels in (("prod", {"env": "prod"}), ("dev", {"env": "dev"})):
            await c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        for ns, where in (("prod", "n1"), ("dev", "n2")):
            db = pod("db", labels={"app": "db"}, nodeName=where)
            db["metadata"]["namespace"] = ns
            await c.create(db)

        def near_db(env: str) -> dict:
            return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST,
                "namespaceSelector": {"matchLabels": {"env": env}}}]}}
        await c.create(pod("web-prod", affinity=near_db("prod")))
        await c.create(pod("web-dev", affinity=near_db("dev")))
        assert await bound(c, "web-prod", "web-dev") == {"web-prod": "n1", "web-dev": "n2"}
        # No namespace is labelled staging yet: the pod waits, and a namespace's new label moves it.
        await c.create(pod("web-staging", affinity=near_db("staging")))
        await until(lambda: s.queue.where("default/web-staging") == "unschedulable")
        await c.patch("namespaces", "dev", {"metadata": {"labels": {"env": "staging"}}}, type="merge")
        assert await bound(c, "web-staging") == {"web-staging": "n2"}


async def test_a_restarted_scheduler_still_avoids_the_node_where_a_pod_failed(api):
    async with Client.from_kubeconfig(str(api.kubeconfig)) as c:
        await c.create(node("n1"))
        await c.create(node("n2"))
        # Two healthy siblings on n2 and one on n1: spreading alone would send the next one to n1.
        for name, where in (("web-a", "n2"), ("web-b", "n2"), ("web-c", "n1")):
            await c.create(pod(name, owner="web", labels={"app": "web"}, nodeName=where))
        async with scheduling(api) as (_, first):
            await c.patch("pods", "web-c", {"status": {"phase": "Pending", "containerStatuses": [
                {"name": "c", "image": "app:1", "imageID": "", "ready": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ErrImagePull", "message": "pull failed"}}}]}},
                namespace="default", subresource="status")
            await until(lambda: first.failures)
        # The failed pod is gone (its ReplicaSet replaced it) before a new scheduler starts: only the
        # log still knows it failed on n1.
        await c.delete("pods", "web-c", namespace="default")
        await until(lambda: _gone(c, "web-c"))
        second = Scheduler(c, identity="restarted")
        task = asyncio.create_task(second.run())
        try:
            await until(lambda: second.failures)
            assert set(second.avoid().get(next(iter(second.failures)), ())) == {"n1"}
            await c.create(pod("web-d", owner="web", labels={"app": "web"}))
            assert await bound(c, "web-d") == {"web-d": "n2"}
            code, out, err = await epctl(api, "explain-schedule", "pod/web-d")
            assert code == 0, err
            assert "score  RecentFailures: 0 x 5 = 0 (pods of its controller failed here recently)" in out
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _gone(c: Client, name: str) -> bool:
    try:
        await c.get("pods", name, namespace="default")
    except Exception:
        return True
    return False


async def test_the_scheduler_itself_selects_the_node_and_the_write_names_the_pod_as_its_cause(api):
    async with scheduling(api) as (c, s):   # no binder: only the scheduler writes the annotation
        await c.create(node("n1", labels={"topology.kubernetes.io/zone": "z1"}))
        await c.create(node("n2", cpu="8", labels={"topology.kubernetes.io/zone": "z2"}))
        wffc = storage_class("zoned", "WaitForFirstConsumer")
        wffc["allowedTopologies"] = [{"matchLabelExpressions": [
            {"key": "topology.kubernetes.io/zone", "values": ["z1"]}]}]
        await c.create(wffc)
        await c.create(claim("data", "zoned"))
        await c.create(with_claim(pod("db"), "data"))
        assert await bound(c, "db") == {"db": "n1"}    # n2 is emptier, but the class may not provision there
        pvc = await c.get("persistentvolumeclaims", "data", namespace="default")
        assert pvc["metadata"]["annotations"][SELECTED] == "n1"
        chain = await c.why("persistentvolumeclaims", "data", namespace="default")
        steps = [(st["object"]["resource"], st["object"]["name"]) for st in chain["steps"]]
        assert steps[-1] == ("persistentvolumeclaims", "data") and ("pods", "db") in steps[:-1]

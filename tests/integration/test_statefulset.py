"""The StatefulSet controller against a real API server, with kubectl; a fake kubelet makes pods Running."""
from __future__ import annotations

import json

from reconcilers.controllers import statefulset
from tests.integration._fake_kubelet import FakeKubelet
from tests.integration.test_job_controllers import controllers, pod_events, wait_for
from tests.support.controllers import background

MANIFEST = {
    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
    "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}},
             "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                 "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}


def first(events, name, test):
    return next(int(o["metadata"]["resourceVersion"]) for t, o in events if o["metadata"]["name"] == name and test(t, o))


def is_ready(t, o):
    return t != "DELETED" and any(c["type"] == "Ready" and c["status"] == "True"
                                  for c in (o.get("status") or {}).get("conditions") or [])


async def test_ordered_creation_stable_claims_scale_and_rolling_update(api):
    async with controllers(api, statefulset.build) as c, FakeKubelet(c, "default"):
        start = (await c.list("pods", namespace="default"))["metadata"]["resourceVersion"]
        await api.ok("apply", "-f", "-", input=json.dumps(MANIFEST))
        await api.ok("rollout", "status", "statefulset/web", "--timeout=60s", timeout=70)
        pods = {p["metadata"]["name"]: p for p in (await c.list("pods", namespace="default"))["items"]}
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        for i in range(3):
            p = pods[f"web-{i}"]
            assert p["spec"]["hostname"] == f"web-{i}" and p["spec"]["subdomain"] == "web"
            assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
            assert p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(i)
            assert p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == f"data-web-{i}"

        # From the event history: web-1 was created only after web-0 was Ready, web-2 after web-1.
        last = max(int(p["metadata"]["resourceVersion"]) for p in pods.values())
        events = await pod_events(c, "default", start, last)
        created = {n: first(events, n, lambda t, o: t == "ADDED") for n in pods}
        ready = {n: first(events, n, is_ready) for n in pods}
        assert created["web-0"] < ready["web-0"] < created["web-1"] < ready["web-1"] < created["web-2"]

        async def described():
            messages = {e["message"] for e in (await c.list("events", namespace="default"))["items"]
                        if e["involvedObject"]["kind"] == "StatefulSet"}
            return {"create Pod web-0 in StatefulSet web successful",
                    "create Claim data-web-0 Pod web-0 in StatefulSet web success"} <= messages
        await wait_for(described)

        claims = {p["metadata"]["name"]: p for p in (await c.list("persistentvolumeclaims",
                                                                   namespace="default"))["items"]}
        assert sorted(claims) == ["data-web-0", "data-web-1", "data-web-2"]

        # A deleted pod comes back with its name, and its claim is the same claim.
        old_uid = pods["web-1"]["metadata"]["uid"]
        await api.ok("delete", "pod", "web-1", "--wait=false")

        async def replaced():
            try:
                p = await c.get("pods", "web-1", namespace="default")
            except Exception:
                return None
            return p if p["metadata"]["uid"] != old_uid and p["status"].get("phase") == "Running" else None
        await wait_for(replaced)
        again = await c.get("persistentvolumeclaims", "data-web-1", namespace="default")
        assert again["metadata"]["uid"] == claims["data-web-1"]["metadata"]["uid"]

        # A rolling update replaces the highest ordinal first.
        before = (await c.list("pods", namespace="default"))["metadata"]["resourceVersion"]
        await api.ok("set", "image", "statefulset/web", "nginx=nginx:1.27")
        await api.ok("rollout", "status", "statefulset/web", "--timeout=60s", timeout=70)
        sts = await c.get("statefulsets", "web", namespace="default")
        st = sts["status"]
        assert st["currentRevision"] == st["updateRevision"] and st["updatedReplicas"] == 3
        pods = (await c.list("pods", namespace="default"))["items"]
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.27"}
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {st["updateRevision"]}
        last = max(int(p["metadata"]["resourceVersion"]) for p in pods)
        events = await pod_events(c, "default", before, last)
        deleted = [o["metadata"]["name"] for t, o in events if t == "DELETED"]
        assert deleted == ["web-2", "web-1", "web-0"]
        revisions = (await c.list("controllerrevisions", namespace="default"))["items"]
        assert sorted(r["revision"] for r in revisions) == [1, 2]

        # kubectl reads the ControllerRevisions: history, and undo to the first template.
        history = await api.ok("rollout", "history", "statefulset/web")
        assert "1" in history and "2" in history
        await api.ok("rollout", "undo", "statefulset/web")
        await api.ok("rollout", "status", "statefulset/web", "--timeout=60s", timeout=70)
        pods = (await c.list("pods", namespace="default"))["items"]
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.25"}
        revisions = (await c.list("controllerrevisions", namespace="default"))["items"]
        assert sorted(r["revision"] for r in revisions) == [2, 3]   # revision 1 came back as 3

        # Scale down: pods go from the highest ordinal, claims stay.
        await api.ok("scale", "statefulset/web", "--replicas=1")

        async def scaled():
            return [p["metadata"]["name"] for p in (await c.list("pods", namespace="default"))["items"]] == ["web-0"]
        await wait_for(scaled)
        claims = (await c.list("persistentvolumeclaims", namespace="default"))["items"]
        assert len(claims) == 3
        out = await api.ok("get", "statefulset", "web")
        assert "1/1" in out


async def test_with_local_path_volumes_the_scheduler_and_simulated_nodes(api, servers):
    """StatefulSet + PV binder + the real scheduler + simulated nodes: each claim is provisioned by
    local-path on the node its pod was scheduled to (WaitForFirstConsumer)."""
    import uuid

    from nodeagent.simulated import SimulatedNodes, SimulatorConfig
    from reconcilers.controllers import pvbinder
    from reconcilers.scheduler.scheduler import run_scheduler

    async with controllers(api, statefulset.build, pvbinder.build, options={"data_dir": "/srv/ep"}) as c:
        config = SimulatorConfig(count=2, lease_bucket=f"leases-{uuid.uuid4().hex[:8]}", holder="test-sts")
        async with background(SimulatedNodes(c, servers.nats_url, config).run(),
                              run_scheduler(c, identity="test-sts", leader_elect=False)):
            await c.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                            "metadata": {"name": "local-path"}, "provisioner": pvbinder.PROVISIONER,
                            "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"})
            manifest = json.loads(json.dumps(MANIFEST))
            manifest["spec"]["replicas"] = 2
            manifest["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "local-path"
            await api.ok("apply", "-f", "-", input=json.dumps(manifest))
            await api.ok("rollout", "status", "statefulset/web", "--timeout=60s", timeout=70)

            async def all_bound():
                claims = (await c.list("persistentvolumeclaims", namespace="default"))["items"]
                return len(claims) == 2 and all(cl["status"].get("phase") == "Bound" for cl in claims)
            await wait_for(all_bound, timeout=30)
            for i in range(2):
                pod = await c.get("pods", f"web-{i}", namespace="default")
                claim = await c.get("persistentvolumeclaims", f"data-web-{i}", namespace="default")
                pv = await c.get("persistentvolumes", claim["spec"]["volumeName"])
                term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                assert term["values"] == [pod["spec"]["nodeName"]]
                assert pv["spec"]["hostPath"]["path"] == f"/srv/ep/volumes/{pv['metadata']['name']}"


async def test_a_set_deleted_with_orphan_cascade_and_made_again_adopts_its_pods(api):
    from reconcilers.controllers import garbagecollector

    async with controllers(api, statefulset.build, garbagecollector.build) as c, FakeKubelet(c, "default"):
        manifest = json.loads(json.dumps(MANIFEST))
        manifest["spec"]["replicas"] = 2
        await api.ok("apply", "-f", "-", input=json.dumps(manifest))
        await api.ok("rollout", "status", "statefulset/web", "--timeout=60s", timeout=70)
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in (await c.list("pods", namespace="default"))["items"]}
        await api.ok("delete", "statefulset", "web", "--cascade=orphan")

        async def orphaned():
            pods = (await c.list("pods", namespace="default"))["items"]
            return len(pods) == 2 and all(not p["metadata"].get("ownerReferences") for p in pods)
        await wait_for(orphaned)
        await api.ok("apply", "-f", "-", input=json.dumps(manifest))
        sts = await c.get("statefulsets", "web", namespace="default")

        async def adopted():
            pods = (await c.list("pods", namespace="default"))["items"]
            return len(pods) == 2 and all((p["metadata"].get("ownerReferences") or [{}])[0].get("uid")
                                          == sts["metadata"]["uid"] for p in pods)
        await wait_for(adopted)
        await api.ok("rollout", "status", "statefulset/web", "--timeout=60s", timeout=70)
        pods = (await c.list("pods", namespace="default"))["items"]
        assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods} == uids   # the same pods, not new ones
        revisions = (await c.list("controllerrevisions", namespace="default"))["items"]
        assert [r["metadata"]["ownerReferences"][0]["uid"] for r in revisions] == [sts["metadata"]["uid"]]

"""The garbage collector against a real API server, driven by kubectl delete --cascade=…

The owner chain is built by hand (no ReplicaSet or Deployment controller runs here): a Deployment
owns a ReplicaSet (blockOwnerDeletion), which owns two Pods and a ConfigMap.
"""
from __future__ import annotations

import asyncio

import pytest

from eventplane.client import Client
from eventplane.objects import errors
from tests.support.controllers import eventually, running


def _ref(owner: dict, *, block: bool = True, controller: bool = True) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": block}


async def _chain(c: Client, name: str) -> dict:
    labels = {"app": name}
    deploy = await c.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                             "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                                      "template": {"metadata": {"labels": labels},
                                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    rs = await c.create({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "metadata": {"name": f"{name}-1", "ownerReferences": [_ref(deploy)]},
                         "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                                  "template": {"metadata": {"labels": labels},
                                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    for i in (1, 2):
        await c.create({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"{name}-1-{i}", "labels": labels, "ownerReferences": [_ref(rs)]},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    await c.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"{name}-cm", "ownerReferences": [_ref(rs, block=False)]}})
    return deploy


async def _names(c: Client, name: str) -> dict[str, list[str]]:
    out = {}
    for resource in ("deployments", "replicasets", "pods", "configmaps"):
        items = (await c.list(resource, namespace="default"))["items"]
        out[resource] = sorted(i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith(name))
    return out


NOTHING = {"deployments": [], "replicasets": [], "pods": [], "configmaps": []}


@pytest.mark.parametrize("cascade", ["background", "foreground"])
async def test_delete_with_propagation_leaves_nothing(api, cascade):
    async with running(api, "garbage-collector") as c:
        await _chain(c, "web")
        await api.ok("delete", "deployment", "web", f"--cascade={cascade}", "--timeout=20s")

        async def gone():
            return await _names(c, "web") == NOTHING
        await eventually(gone)
        if cascade == "foreground":
            # The owner went last: every dependent's deletion comes before the Deployment's.
            last = {}
            for resource, name in (("pods", "web-1-1"), ("pods", "web-1-2"), ("replicasets", "web-1"),
                                   ("deployments", "web")):
                items = (await c.history(resource, name))["items"]
                last[name] = int(items[-1]["resourceVersion"] if "resourceVersion" in items[-1]
                                 else items[-1]["position"])
            assert last["web-1-1"] < last["web-1"] < last["web"]
            assert last["web-1-2"] < last["web-1"]


async def test_orphan_leaves_the_dependents_without_their_owner(api):
    async with running(api, "garbage-collector") as c:
        await _chain(c, "db")
        await api.ok("delete", "deployment", "db", "--cascade=orphan")
        await asyncio.sleep(1)  # give the collector time to (wrongly) collect anything
        assert await _names(c, "db") == {"deployments": [], "replicasets": ["db-1"], "pods": ["db-1-1", "db-1-2"],
                                         "configmaps": ["db-cm"]}
        rs = await c.get("replicasets", "db-1", namespace="default")
        assert not rs["metadata"].get("ownerReferences")
        pod = await c.get("pods", "db-1-1", namespace="default")
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        # The orphans are owners in their own right: deleting the ReplicaSet collects its pods.
        await api.ok("delete", "replicaset", "db-1")

        async def gone():
            return await _names(c, "db") == NOTHING
        await eventually(gone)


async def test_dangling_references_and_the_orphan_finalizer(api):
    async with running(api, "garbage-collector") as c:
        owner = await c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
        other = await c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}})
        # Two owners, one of which goes: only the reference to it is dropped.
        both = await c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "both", "ownerReferences": [_ref(owner, block=False), _ref(other, block=False, controller=False)]}})
        # An owner that never existed (or left before its dependent was made): collected.
        await c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "stray", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
                                                  "uid": "00000000-0000-0000-0000-000000000000"}]}})
        await c.delete("configmaps", "owner", namespace="default")

        async def settled():
            try:
                await c.get("configmaps", "stray", namespace="default")
                return False
            except errors.NotFoundError:
                pass
            live = await c.get("configmaps", "both", namespace="default")
            return [r["uid"] for r in live["metadata"]["ownerReferences"]] == [other["metadata"]["uid"]]
        await eventually(settled)
        assert (await c.get("configmaps", "both", namespace="default"))["metadata"]["uid"] == both["metadata"]["uid"]
        # An orphan finalizer set by hand: the collector orphans the dependents, then lets the owner go.
        await c.patch("configmaps", "other", {"metadata": {"finalizers": ["orphan"]}}, namespace="default")
        await c.delete("configmaps", "other", namespace="default")

        async def orphaned():
            try:
                await c.get("configmaps", "other", namespace="default")
                return False
            except errors.NotFoundError:
                live = await c.get("configmaps", "both", namespace="default")
                return not live["metadata"].get("ownerReferences")
        await eventually(orphaned)


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
async def test_a_real_deployment_with_each_propagation_policy(api, cascade):
    """With the Deployment and ReplicaSet controllers running: exactly the expected objects remain."""
    async with running(api, "deployment", "replicaset", "garbage-collector") as c:
        await api.ok("create", "deployment", "app", "--image=busybox", "--replicas=2")

        async def made():
            names = await _names(c, "app")
            return names if len(names["replicasets"]) == 1 and len(names["pods"]) == 2 else None
        before = await eventually(made)
        await api.ok("delete", "deployment", "app", f"--cascade={cascade}", "--timeout=20s")
        if cascade == "orphan":
            await asyncio.sleep(1)
            after = await _names(c, "app")
            assert after == {**before, "deployments": []}
            rs = await c.get("replicasets", before["replicasets"][0], namespace="default")
            assert not rs["metadata"].get("ownerReferences")
            return

        async def gone():
            return await _names(c, "app") == NOTHING
        await eventually(gone)


async def test_the_api_finishes_an_orphan_delete_itself_owner_marked_first(api):
    """No collector running: the API marks the owner deleted (orphan finalizer), orphans, then lets it go."""
    async with Client.from_kubeconfig(str(api.kubeconfig)) as c:
        owner = await c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "boss"}})
        dep = await c.create({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "worker", "ownerReferences": [_ref(owner)]}})
        await api.ok("delete", "configmap", "boss", "--cascade=orphan", "--timeout=20s")
        live = await c.get("configmaps", "worker", namespace="default")
        assert live["metadata"]["uid"] == dep["metadata"]["uid"] and not live["metadata"].get("ownerReferences")
        boss = [(i["type"], int(i["resourceVersion"])) for i in (await c.history("configmaps", "boss"))["items"]]
        assert [t for t, _ in boss] == ["Created", "Deleting", "Deleted"]
        worker = [(i["type"], int(i["resourceVersion"])) for i in (await c.history("configmaps", "worker"))["items"]]
        assert worker[-1][0] == "Updated" and boss[1][1] < worker[-1][1] < boss[2][1]

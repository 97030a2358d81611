"""The PersistentVolume binder and the local-path provisioner against a real API server, with kubectl."""
from __future__ import annotations

import json

from reconcilers.controllers import pvbinder
from tests.integration.test_job_controllers import controllers, wait_for


def volume(name: str, size: str, cls: str = "manual") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{name}"}}}


def claim(name: str, size: str, cls: str | None = "manual") -> dict:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def storage_class(name: str, mode: str, *, default: bool = False) -> dict:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"} if default else {}},
            "provisioner": pvbinder.PROVISIONER, "volumeBindingMode": mode, "reclaimPolicy": "Delete"}


async def phase_of(c, resource: str, name: str, namespace: str | None = None) -> str | None:
    try:
        obj = await c.get(resource, name, namespace=namespace)
    except Exception:
        return None
    return (obj.get("status") or {}).get("phase")


async def test_static_binding_smallest_fit_then_released(api):
    async with controllers(api, pvbinder.build, options={"data_dir": "/var/lib/ep"}) as c:
        for v in (volume("pv-small", "1Gi"), volume("pv-big", "10Gi"), volume("pv-mid", "2Gi")):
            await c.create(v)
        await api.ok("apply", "-f", "-", input=json.dumps(claim("data", "1500Mi")))

        async def bound():
            return await phase_of(c, "persistentvolumeclaims", "data", "default") == "Bound"
        await wait_for(bound)
        pvc = await c.get("persistentvolumeclaims", "data", namespace="default")
        assert pvc["spec"]["volumeName"] == "pv-mid"
        assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
        assert pvc["status"]["capacity"] == {"storage": "2Gi"}
        pv = await c.get("persistentvolumes", "pv-mid")
        assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"] and pv["status"]["phase"] == "Bound"
        out = await api.ok("get", "pvc", "data")
        assert "Bound" in out and "pv-mid" in out
        assert await phase_of(c, "persistentvolumes", "pv-small") == "Available"

        await api.ok("delete", "pvc", "data")

        async def released():
            return await phase_of(c, "persistentvolumes", "pv-mid") == "Released"
        await wait_for(released)
        history = await c.history("persistentvolumes", "pv-mid")
        assert all(i["causation"] for i in history["items"][1:])   # every controller write names its cause


async def test_local_path_immediate_default_class_provisions_and_deletes(api):
    async with controllers(api, pvbinder.build, options={"data_dir": "/var/lib/ep"}) as c:
        await c.create(storage_class("local-path", "Immediate", default=True))
        await c.create(claim("scratch", "3Gi", cls=None))

        async def bound():
            return await phase_of(c, "persistentvolumeclaims", "scratch", "default") == "Bound"
        await wait_for(bound)
        pvc = await c.get("persistentvolumeclaims", "scratch", namespace="default")
        assert pvc["spec"]["storageClassName"] == "local-path"
        name = pvc["spec"]["volumeName"]
        assert name == f"pvc-{pvc['metadata']['uid']}"
        pv = await c.get("persistentvolumes", name)
        assert pv["spec"]["hostPath"] == {"path": f"/var/lib/ep/volumes/{name}", "type": "DirectoryOrCreate"}
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == pvbinder.PROVISIONER
        assert "nodeAffinity" not in pv["spec"]

        await c.delete("persistentvolumeclaims", "scratch", namespace="default")

        async def deleted():
            return await phase_of(c, "persistentvolumes", name) is None
        await wait_for(deleted)


async def test_wait_for_first_consumer_provisions_on_the_pods_node(api):
    async with controllers(api, pvbinder.build, options={"data_dir": "/var/lib/ep"}) as c:
        await c.create({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}})
        await c.create(storage_class("local-wffc", "WaitForFirstConsumer"))
        await c.create(claim("db", "1Gi", cls="local-wffc"))
        await c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db", "namespace": "default"},
                        "spec": {"containers": [{"name": "c", "image": "postgres"}],
                                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "db"}}]}})
        assert await phase_of(c, "persistentvolumeclaims", "db", "default") == "Pending"
        assert not (await c.list("persistentvolumes"))["items"]
        await c.create_subresource("pods", "db", "binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "db"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}, namespace="default")

        async def bound():
            return await phase_of(c, "persistentvolumeclaims", "db", "default") == "Bound"
        await wait_for(bound)
        pvc = await c.get("persistentvolumeclaims", "db", namespace="default")
        assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "n1"
        pv = await c.get("persistentvolumes", pvc["spec"]["volumeName"])
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["n1"]

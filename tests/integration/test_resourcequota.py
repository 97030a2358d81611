"""The ResourceQuota controller against a real API server, with kubectl."""
from __future__ import annotations

from reconcilers.controllers import resourcequota
from tests.integration.test_job_controllers import controllers, wait_for

QUOTA = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "default"},
         "spec": {"hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "2Gi", "configmaps": "20",
                           "count/jobs.batch": "5"}}}


def pod(name: str, cpu: str, memory: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {
                "requests": {"cpu": cpu}, "limits": {"memory": memory, "cpu": "2"}}}]}}


async def test_usage_follows_the_namespace(api):
    async with controllers(api, resourcequota.build) as c:
        await c.create(QUOTA)
        base = int((await c.list("configmaps", namespace="default")).get("items").__len__())

        async def used(want):
            async def check():
                q = await c.get("resourcequotas", "q", namespace="default")
                return (q.get("status") or {}).get("used") == want
            check.__name__ = f"used == {want}"
            await wait_for(check)
        await used({"pods": "0", "requests.cpu": "0", "limits.memory": "0", "configmaps": str(base),
                    "count/jobs.batch": "0"})
        await c.create(pod("a", "500m", "256Mi"))
        await c.create(pod("b", "1", "1Gi"))
        await c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}})
        await c.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"},
                        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                       "containers": [{"name": "c", "image": "busybox"}]}}}})
        await used({"pods": "2", "requests.cpu": "1500m", "limits.memory": "1280Mi", "configmaps": str(base + 1),
                    "count/jobs.batch": "1"})
        await c.delete("pods", "b", namespace="default")
        await used({"pods": "1", "requests.cpu": "500m", "limits.memory": "256Mi", "configmaps": str(base + 1),
                    "count/jobs.batch": "1"})
        out = await api.ok("describe", "quota", "q")
        assert "requests.cpu" in out and "500m" in out
        q = await c.get("resourcequotas", "q", namespace="default")
        assert q["status"]["hard"] == QUOTA["spec"]["hard"]

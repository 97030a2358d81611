"""The Deployment controller writes the revision annotation through /status together with status, as
Kubernetes' controller does: a rollout bumps metadata.generation only for the user's own change, and
the annotation's field manager entry is the controller's status-subresource one."""
from __future__ import annotations

from eventplane.client import Client
from tests.integration.test_workload_controllers import NS, Kubelet, PodHistory, deployment_yaml, manager

REVISION = "deployment.kubernetes.io/revision"


def _revision_entry(d: dict) -> dict:
    [entry] = [e for e in d["metadata"]["managedFields"]
               if f"f:{REVISION}" in ((e.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations", {})]
    return entry


async def test_a_rollout_writes_the_revision_with_status_and_bumps_generation_once(api):
    async with manager(api, names="replicaset,deployment"), Kubelet(api):
        client = Client.from_kubeconfig(str(api.kubeconfig))
        await api.ok("apply", "-f", "-", input=deployment_yaml("rev", replicas=2))
        await api.ok("rollout", "status", "deployment/rev", "--timeout=30s", timeout=40)
        d = await client.get("deployments.apps", "rev", namespace=NS)
        assert d["metadata"]["annotations"][REVISION] == "1"
        assert d["metadata"]["generation"] == 1 and d["status"]["observedGeneration"] == 1
        entry = _revision_entry(d)
        assert entry["subresource"] == "status" and "f:status" in entry["fieldsV1"]

        async with PodHistory(api, d["metadata"]["resourceVersion"], None, "deployments.apps") as history:
            await api.ok("set", "image", "deployment/rev", "main=nginx:1.27")
            await api.ok("rollout", "status", "deployment/rev", "--timeout=60s", timeout=70)
            d = await client.get("deployments.apps", "rev", namespace=NS)
            await history.until_position(int(d["metadata"]["resourceVersion"]))
        assert d["metadata"]["annotations"][REVISION] == "2"
        assert d["metadata"]["generation"] == 2 and d["status"]["observedGeneration"] == 2
        # Every write after the user's: the controller's, through /status, none moving generation.
        generations = [o["metadata"]["generation"] for _, o in history.events]
        assert generations[0] == 2 and set(generations) == {2}, generations
        first_with_revision = next(o for _, o in history.events if o["metadata"]["annotations"].get(REVISION) == "2")
        assert first_with_revision["status"]["observedGeneration"] == 2   # written with the status it goes with
        assert _revision_entry(d)["subresource"] == "status"
        await client.close()

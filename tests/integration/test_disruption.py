"""PodDisruptionBudgets end to end: the disruption controller's status, and pods/eviction respecting it."""
from __future__ import annotations

import asyncio

from tests.support.controllers import running

PODS = "/api/v1/namespaces/default/pods"
PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"


def _pod(name: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def _running(api, name: str, *, ready: bool = True) -> None:
    """Make a pod Running (and Ready or not) as a node agent would, through pods/status."""
    _, pod, _ = await api.http("GET", f"{PODS}/{name}")
    pod["status"].update({"phase": "Running", "podIP": f"10.1.0.{abs(hash(name)) % 200 + 2}",
                          "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]})
    status, _, _ = await api.http("PUT", f"{PODS}/{name}/status", body=pod)
    assert status == 200


def _eviction(name: str) -> dict:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}


async def test_eviction_takes_a_disruption_from_the_budget_or_answers_429(api):
    for n in ("a", "b"):
        await api.http("POST", PODS, body=_pod(n, {"app": "db"}))
        await _running(api, n)
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}}
    status, created, _ = await api.http("POST", PDBS, body=pdb)
    assert status == 201
    # Not yet processed by the controller: observedGeneration lags behind generation.
    status, err, _ = await api.http("POST", f"{PODS}/a/eviction", body=_eviction("a"))
    assert status == 429 and err["reason"] == "TooManyRequests"
    assert err["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert err["details"]["causes"][0] == {
        "reason": "DisruptionBudget", "message": "The disruption budget db is still being processed by the server."}
    # The status the disruption controller would write: one disruption allowed.
    created["status"] = {"observedGeneration": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2,
                         "disruptionsAllowed": 1}
    status, _, _ = await api.http("PUT", f"{PDBS}/db/status", body=created)
    assert status == 200
    status, _, _ = await api.http("POST", f"{PODS}/a/eviction", body=_eviction("a"))
    assert status == 201
    status, _, _ = await api.http("GET", f"{PODS}/a")
    assert status == 404
    _, after, _ = await api.http("GET", f"{PDBS}/db")
    assert after["status"]["disruptionsAllowed"] == 0 and "a" in after["status"]["disruptedPods"]
    assert [c["status"] for c in after["status"]["conditions"] if c["type"] == "DisruptionAllowed"] == ["False"]
    status, err, _ = await api.http("POST", f"{PODS}/b/eviction", body=_eviction("b"))
    assert status == 429 and err["details"]["causes"][0]["message"] == \
        "The disruption budget db needs 1 healthy pods and has 2 currently"
    status, _, _ = await api.http("GET", f"{PODS}/b")
    assert status == 200
    # Two budgets for one pod: the eviction subresource refuses to choose.
    await api.http("POST", PDBS, body={**pdb, "metadata": {"name": "db2"}})
    status, err, _ = await api.http("POST", f"{PODS}/b/eviction", body=_eviction("b"))
    assert status == 500 and err["message"] == \
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    # A Pending pod is not protected by the budget.
    await api.http("POST", PODS, body=_pod("c", {"app": "db"}))
    status, _, _ = await api.http("POST", f"{PODS}/c/eviction", body=_eviction("c"))
    assert status == 201


async def _status_is(api, **want) -> dict:
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        _, pdb, _ = await api.http("GET", f"{PDBS}/web")
        status = pdb.get("status") or {}
        if all(status.get(k) == v for k, v in want.items()):
            return pdb
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"status {status} never matched {want}")
        await asyncio.sleep(0.1)


async def test_the_controller_keeps_the_budget_and_evictions_follow_it(api):
    async with running(api, "disruption"):
        for n in ("w1", "w2", "w3"):
            await api.http("POST", PODS, body=_pod(n, {"app": "web"}))
            await _running(api, n)
        await api.ok("create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=2")
        pdb = await _status_is(api, expectedPods=3, currentHealthy=3, desiredHealthy=2, disruptionsAllowed=1,
                               observedGeneration=1)
        cond = pdb["status"]["conditions"][0]
        assert (cond["type"], cond["status"], cond["reason"]) == ("DisruptionAllowed", "True", "SufficientPods")
        # kubectl shows what it allows.
        out = await api.ok("get", "pdb", "web")
        assert "web" in out and "2" in out
        status, _, _ = await api.http("POST", f"{PODS}/w1/eviction", body=_eviction("w1"))
        assert status == 201
        await _status_is(api, expectedPods=2, currentHealthy=2, disruptionsAllowed=0)
        status, err, _ = await api.http("POST", f"{PODS}/w2/eviction", body=_eviction("w2"))
        assert status == 429 and err["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
        # A pod that is not Ready stops counting: still nothing allowed; a new Ready pod gives one back.
        await _running(api, "w3", ready=False)
        await _status_is(api, currentHealthy=1, disruptionsAllowed=0)
        await api.http("POST", PODS, body=_pod("w4", {"app": "web"}))
        await _running(api, "w4")
        await _running(api, "w3")
        await _status_is(api, expectedPods=3, currentHealthy=3, disruptionsAllowed=1)
        status, _, _ = await api.http("POST", f"{PODS}/w2/eviction", body=_eviction("w2"))
        assert status == 201


async def test_kubectl_drain_stops_at_the_budget(api):
    """kubectl drain evicts through pods/eviction and retries on 429: the budget holds the last two pods."""
    async with running(api, "disruption"):
        await api.http("POST", "/api/v1/nodes", body={"apiVersion": "v1", "kind": "Node",
                                                      "metadata": {"name": "node-1"}})
        for n in ("d1", "d2", "d3"):
            await api.http("POST", PODS, body={**_pod(n, {"app": "web"}),
                                               "spec": {"nodeName": "node-1",
                                                        "containers": [{"name": "c", "image": "busybox"}]}})
            await _running(api, n)
        await api.ok("create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=2")
        await _status_is(api, disruptionsAllowed=1, expectedPods=3)
        r = await api.kubectl("drain", "node-1", "--force", "--grace-period=0", "--timeout=4s", timeout=30)
        assert r.code != 0
        assert "Cannot evict pod as it would violate the pod's disruption budget." in r.err, r.err
        _, pods, _ = await api.http("GET", PODS)
        assert len(pods["items"]) == 2
        _, node, _ = await api.http("GET", "/api/v1/nodes/node-1")
        assert node["spec"]["unschedulable"] is True  # cordoned first

"""Namespaces end to end: the namespaces/finalize subresource, the namespace controller emptying a
namespace on `kubectl delete namespace`, and the default ServiceAccount controller."""
from __future__ import annotations

NS = "/api/v1/namespaces"


def _ns(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


async def test_finalize_updates_only_spec_finalizers_and_the_last_one_deletes(api):
    status, _, _ = await api.http("POST", NS, body=_ns("fin"))
    assert status == 201
    status, ns, _ = await api.http("DELETE", f"{NS}/fin")
    assert status == 200 and ns["spec"]["finalizers"] == ["kubernetes"] and ns["metadata"]["deletionTimestamp"]
    # A plain update cannot drop spec.finalizers, and while they remain the namespace stays.
    ns["spec"]["finalizers"] = []
    status, updated, _ = await api.http("PUT", f"{NS}/fin", body=ns)
    assert status == 200 and updated["spec"]["finalizers"] == ["kubernetes"]
    # A status write of a terminating namespace keeps it, too.
    updated["status"]["conditions"] = [{"type": "NamespaceContentRemaining", "status": "False",
                                        "reason": "ContentRemoved", "message": "All content successfully removed"}]
    status, _, _ = await api.http("PUT", f"{NS}/fin/status", body=updated)
    assert status == 200
    status, still, _ = await api.http("GET", f"{NS}/fin")
    assert status == 200 and still["status"]["phase"] == "Terminating"
    # finalize changes spec.finalizers alone: the label below is ignored.
    body = {**still, "spec": {"finalizers": ["example.com/other"]},
            "metadata": {**still["metadata"], "labels": {"x": "y"}}}
    status, out, _ = await api.http("PUT", f"{NS}/fin/finalize", body=body)
    assert status == 200 and out["spec"]["finalizers"] == ["example.com/other"]
    assert "x" not in (out["metadata"].get("labels") or {})
    status, _, _ = await api.http("GET", f"{NS}/fin")
    assert status == 200
    body = {**out, "spec": {"finalizers": []}}
    status, out, _ = await api.http("PUT", f"{NS}/fin/finalize", body=body)
    assert status == 200
    status, err, _ = await api.http("GET", f"{NS}/fin")
    assert status == 404 and err["reason"] == "NotFound"
    # Only PUT is served, and only on namespaces.
    status, _, _ = await api.http("POST", f"{NS}/default/finalize", body={})
    assert status == 405
    status, _, _ = await api.http("PUT", "/api/v1/namespaces/default/configmaps/x/finalize", body={})
    assert status == 404


async def test_finalize_of_an_active_namespace_keeps_it(api):
    await api.http("POST", NS, body=_ns("alive"))
    _, ns, _ = await api.http("GET", f"{NS}/alive")
    status, out, _ = await api.http("PUT", f"{NS}/alive/finalize", body={**ns, "spec": {"finalizers": []}})
    assert status == 200 and not out["spec"].get("finalizers")
    status, _, _ = await api.http("GET", f"{NS}/alive")
    assert status == 200

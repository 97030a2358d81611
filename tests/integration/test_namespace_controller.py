"""Namespaces end to end: the namespaces/finalize subresource, the namespace controller emptying a
namespace on `kubectl delete namespace`, and the default ServiceAccount controller."""
from __future__ import annotations


from eventplane.client import Client
from eventplane.objects import errors
from tests.support.controllers import eventually, running

NS = "/api/v1/namespaces"


async def _exists(c: Client, resource: str, name: str, namespace: str | None = None) -> dict | None:
    try:
        return await c.get(resource, name, namespace=namespace)
    except errors.NotFoundError:
        return None


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


CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "widgets.example.com"},
       "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}}}]}}


async def test_kubectl_delete_namespace_empties_it_then_removes_it(api):
    async with running(api, "namespace", "serviceaccount", "garbage-collector") as c:
        await api.ok("create", "namespace", "team")

        async def has_default():
            return await _exists(c, "serviceaccounts", "default", "team")
        await eventually(has_default)
        await c.create(CRD)
        await eventually(lambda: _has_resource(c, "widgets"))
        await c.create({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
                       namespace="team")
        for name in ("a", "b"):
            await c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}, namespace="team")
        await c.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, namespace="team")
        await c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace="team")
        await c.create({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, namespace="team")
        await api.ok("delete", "namespace", "team", "--wait=false")

        async def reported():
            ns = await c.get("namespaces", "team")
            conds = {x["type"]: x for x in (ns.get("status") or {}).get("conditions") or []}
            remaining = conds.get("NamespaceContentRemaining") or {}
            return ns if remaining.get("message") == \
                "Some resources are remaining: configmaps. has 1 resource instances" else None
        ns = await eventually(reported)
        assert ns["status"]["phase"] == "Terminating"
        conds = {x["type"]: x for x in ns["status"]["conditions"]}
        assert conds["NamespaceFinalizersRemaining"]["status"] == "True"
        assert conds["NamespaceFinalizersRemaining"]["message"] == \
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
        for resource in ("configmaps", "secrets", "pods", "serviceaccounts", "widgets"):
            names = [i["metadata"]["name"] for i in (await c.list(resource, namespace="team"))["items"]]
            assert names == (["held"] if resource == "configmaps" else []), (resource, names)
        # The namespace stays while anything is left; the last finalizer lets everything go.
        await c.patch("configmaps", "held", {"metadata": {"finalizers": None}}, namespace="team")

        async def gone():
            return await _exists(c, "namespaces", "team") is None
        await eventually(gone)
        r = await api.kubectl("get", "namespace", "team")
        assert r.code != 0 and 'namespaces "team" not found' in r.err


async def _has_resource(c: Client, name: str) -> bool:
    return (await c.resources(refresh=True)).find(name) is not None


async def test_default_service_account_is_recreated(api):
    async with running(api, "serviceaccount") as c:
        await api.ok("create", "namespace", "keep")

        async def made():
            return await _exists(c, "serviceaccounts", "default", "keep")
        first = await eventually(made)
        # default/default too: every active namespace has one.
        assert await _exists(c, "serviceaccounts", "default", "default")
        await api.ok("delete", "serviceaccount", "default", "-n", "keep")

        async def remade():
            sa = await _exists(c, "serviceaccounts", "default", "keep")
            return sa if sa and sa["metadata"]["uid"] != first["metadata"]["uid"] else None
        second = await eventually(remade)
        # Caused by the deletion it answers (DESIGN invariant 10).
        steps = (await c.why("serviceaccounts", "default", namespace="keep"))["steps"]
        assert [s["verb"] for s in steps[-2:]] == ["delete", "create"], steps
        assert second["metadata"]["name"] == "default"

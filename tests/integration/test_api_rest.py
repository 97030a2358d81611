"""The Kubernetes API over HTTPS against real PostgreSQL and NATS: discovery, CRUD,
Kubernetes semantics and errors, checked on the wire as any client sees them."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def configmap(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "demo"}},
            "data": data}


def deployment(name: str, replicas: int = 2, image: str = "nginx:1.25") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"containerPort": 80}]}]}}}}


async def test_health_and_version_are_public_everything_else_needs_credentials(api):
    for path in ("/livez", "/readyz", "/healthz", "/version"):
        status, _, _ = await api.http("GET", path, token="")
        assert status == 200, path
    status, body, _ = await api.http("GET", "/api/v1/namespaces", token="")
    assert status == 401 and body["reason"] == "Unauthorized"
    status, body, _ = await api.http("GET", "/api/v1/namespaces", token="wrong")
    assert status == 401 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


async def test_discovery_legacy_and_aggregated(api):
    status, body, _ = await api.http("GET", "/api")
    assert body["kind"] == "APIVersions" and body["versions"] == ["v1"]
    status, body, headers = await api.http(
        "GET", "/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                                           "application/json"})
    assert headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    apps = next(i for i in body["items"] if i["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced" and "deploy" in deploy["shortNames"]
    assert {s["subresource"] for s in deploy["subresources"]} == {"scale", "status"}
    status, body, _ = await api.http("GET", "/api/v1")
    pods = next(r for r in body["resources"] if r["name"] == "pods")
    assert pods["namespaced"] and "watch" in pods["verbs"] and pods["shortNames"] == ["po"]
    assert any(r["name"] == "pods/binding" for r in body["resources"])


async def test_openapi_v3_has_every_group_version_and_kinds(api):
    status, index, _ = await api.http("GET", "/openapi/v3")
    assert "apis/apps/v1" in index["paths"] and "api/v1" in index["paths"]
    status, doc, _ = await api.http("GET", "/" + index["paths"]["apis/apps/v1"]["serverRelativeURL"].lstrip("/"))
    schemas = doc["components"]["schemas"]
    dep = schemas["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert "description" not in dep
    status, v2, _ = await api.http("GET", "/openapi/v2")
    assert status == 200 and "io.k8s.api.core.v1.Pod" in v2["definitions"]


async def test_create_get_list_update_delete_round_trip(api):
    status, created, _ = await api.http("POST", CM, body=configmap("one", a="1"))
    assert status == 201
    m = created["metadata"]
    assert m["namespace"] == "default" and m["uid"] and m["creationTimestamp"] and int(m["resourceVersion"]) > 0
    assert m["managedFields"][0]["manager"] == "Python" or m["managedFields"][0]["manager"]
    status, got, _ = await api.http("GET", f"{CM}/one")
    assert got["data"] == {"a": "1"} and got["metadata"]["resourceVersion"] == m["resourceVersion"]
    got["data"]["b"] = "2"
    status, updated, _ = await api.http("PUT", f"{CM}/one", body=got)
    assert status == 200 and int(updated["metadata"]["resourceVersion"]) > int(m["resourceVersion"])
    status, listed, _ = await api.http("GET", CM)
    assert listed["kind"] == "ConfigMapList" and [i["metadata"]["name"] for i in listed["items"]] == ["one"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(updated["metadata"]["resourceVersion"])
    status, _, _ = await api.http("DELETE", f"{CM}/one")
    assert status == 200
    status, body, _ = await api.http("GET", f"{CM}/one")
    assert status == 404 and body["reason"] == "NotFound" and body["message"] == 'configmaps "one" not found'
    assert body["details"] == {"name": "one", "kind": "configmaps"}


async def test_stale_resource_version_is_409_with_kubectls_message(api):
    _, created, _ = await api.http("POST", CM, body=configmap("c"))
    _, fresh, _ = await api.http("PUT", f"{CM}/c", body={**created, "data": {"x": "1"}})
    status, body, _ = await api.http("PUT", f"{CM}/c", body={**created, "data": {"x": "2"}})
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on configmaps "c": the object has been modified; '
                               "please apply your changes to the latest version and try again")


async def test_already_exists_and_generate_name(api):
    await api.http("POST", CM, body=configmap("dup"))
    status, body, _ = await api.http("POST", CM, body=configmap("dup"))
    assert status == 409 and body["reason"] == "AlreadyExists" and body["message"] == 'configmaps "dup" already exists'
    status, body, _ = await api.http("POST", CM, body={"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"generateName": "gen-"}})
    assert status == 201 and body["metadata"]["name"].startswith("gen-") and len(body["metadata"]["name"]) == 9


@pytest.mark.parametrize("raw, ctype, reason, code", [
    (b"{not json", "application/json", "BadRequest", 400),
    (b"a: [unclosed", "application/yaml", "BadRequest", 400),
    (json.dumps({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}).encode(),
     "application/json", "BadRequest", 400),
    (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}}).encode(),
     "application/json", "BadRequest", 400),
    (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}).encode(),
     "application/json", "Invalid", 422),
    (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"-bad": "v"}}}).encode(),
     "application/json", "Invalid", 422),
    (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                 "data": {"big": "x" * (3 * 1024 * 1024)}}).encode(), "application/json", "RequestEntityTooLarge", 413),
], ids=["malformed-json", "malformed-yaml", "wrong-apiversion", "other-namespace", "invalid-name", "invalid-label",
        "oversized"])
async def test_bad_input_gets_a_status_and_writes_nothing(api, raw, ctype, reason, code):
    before = await api.server.store.head()
    status, body, _ = await api.http("POST", CM, raw=raw, content_type=ctype)
    assert (status, body["kind"], body["reason"], body["code"]) == (code, "Status", reason, code), body
    assert await api.server.store.head() == before


async def test_unknown_query_parameter_is_refused(api):
    status, body, _ = await api.http("GET", CM + "?bogus=1")
    assert status == 400 and "bogus" in body["message"]


async def test_field_validation_strict_warn_ignore(api):
    body = {**configmap("fv"), "bogus": 1}
    status, err, _ = await api.http("POST", CM + "?fieldValidation=Strict", body=body)
    assert status == 400 and err["message"] == 'strict decoding error: unknown field "bogus"'
    status, obj, headers = await api.http("POST", CM + "?fieldValidation=Warn", body=body)
    assert status == 201 and "bogus" not in obj and 'unknown field \\"bogus\\"' in headers["Warning"]
    status, obj, headers = await api.http("POST", CM.replace("default", "kube-system") + "?fieldValidation=Ignore",
                                          body={**body, "metadata": {"name": "fv"}})
    assert status == 201 and "Warning" not in headers
    raw = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dupe","name":"dupe"}}'
    status, err, _ = await api.http("POST", CM + "?fieldValidation=Strict", raw=raw)
    assert status == 400 and 'duplicate field "metadata.name"' in err["message"]


async def test_dry_run_returns_the_object_and_stores_nothing(api):
    before = await api.server.store.head()
    status, obj, _ = await api.http("POST", CM + "?dryRun=All", body=configmap("dry"))
    assert status == 201 and obj["metadata"]["name"] == "dry"
    assert await api.server.store.head() == before
    status, _, _ = await api.http("GET", f"{CM}/dry")
    assert status == 404


async def test_generation_counts_spec_changes_only_and_status_is_its_own_subresource(api):
    status, d, _ = await api.http("POST", DEPLOY, body=deployment("web"))
    assert status == 201, d
    assert d["metadata"]["generation"] == 1 and "status" not in d or d.get("status") in ({}, None)
    d["metadata"]["labels"]["extra"] = "x"
    _, d, _ = await api.http("PUT", f"{DEPLOY}/web", body=d)
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 5
    d["status"] = {"replicas": 99}
    _, d, _ = await api.http("PUT", f"{DEPLOY}/web", body=d)
    assert d["metadata"]["generation"] == 2 and (d.get("status") or {}).get("replicas") is None
    status, s, _ = await api.http("PUT", f"{DEPLOY}/web/status", body={**d, "status": {"replicas": 3},
                                                                      "spec": {**d["spec"], "replicas": 7}})
    assert status == 200 and s["status"] == {"replicas": 3} and s["spec"]["replicas"] == 5
    assert s["metadata"]["generation"] == 2


async def test_scale_subresource(api):
    await api.http("POST", DEPLOY, body=deployment("sc", replicas=1))
    status, scale, _ = await api.http("GET", f"{DEPLOY}/sc/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    status, scale, _ = await api.http("PATCH", f"{DEPLOY}/sc/scale", body={"spec": {"replicas": 4}},
                                      content_type="application/merge-patch+json")
    assert status == 200 and scale["spec"]["replicas"] == 4
    _, d, _ = await api.http("GET", f"{DEPLOY}/sc")
    assert d["spec"]["replicas"] == 4


async def test_label_and_field_selectors_and_pagination(api):
    for i in range(7):
        cm = configmap(f"p{i}")
        cm["metadata"]["labels"] = {"tier": "a" if i % 2 else "b", "n": str(i)}
        await api.http("POST", CM, body=cm)
    _, body, _ = await api.http("GET", CM + "?labelSelector=tier%3Da")
    assert [i["metadata"]["name"] for i in body["items"]] == ["p1", "p3", "p5"]
    _, body, _ = await api.http("GET", CM + "?labelSelector=tier!%3Da,n+notin+(0)")
    assert [i["metadata"]["name"] for i in body["items"]] == ["p2", "p4", "p6"]
    _, body, _ = await api.http("GET", CM + "?fieldSelector=metadata.name%3Dp3")
    assert [i["metadata"]["name"] for i in body["items"]] == ["p3"]
    names, token, pages = [], "", 0
    while True:
        _, page, _ = await api.http("GET", CM + f"?limit=3" + (f"&continue={token}" if token else ""))
        names += [i["metadata"]["name"] for i in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
        await api.http("POST", CM, body=configmap(f"zz{pages}"))  # later writes do not leak into the pages
    assert names == [f"p{i}" for i in range(7)] and pages == 3


async def test_exact_resource_version_reads_the_past(api):
    _, c, _ = await api.http("POST", CM, body=configmap("past", v="1"))
    await api.http("PUT", f"{CM}/past", body={**c, "data": {"v": "2"}})
    rv = c["metadata"]["resourceVersion"]
    _, old, _ = await api.http("GET", f"{CM}/past?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert old["data"] == {"v": "1"}
    _, listed, _ = await api.http("GET", f"{CM}?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert [i["data"] for i in listed["items"]] == [{"v": "1"}]


async def test_patch_types(api):
    await api.http("POST", DEPLOY, body=deployment("pt"))
    status, d, _ = await api.http("PATCH", f"{DEPLOY}/pt", body={"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox"}]}}}}, content_type="application/strategic-merge-patch+json")
    assert status == 200, d
    # without $setElementOrder Kubernetes puts patch items before server-only ones
    assert sorted(c["name"] for c in d["spec"]["template"]["spec"]["containers"]) == ["sidecar", "web"]
    status, d, _ = await api.http("PATCH", f"{DEPLOY}/pt", body={"spec": {"replicas": 9}},
                                  content_type="application/merge-patch+json")
    assert d["spec"]["replicas"] == 9
    status, d, _ = await api.http("PATCH", f"{DEPLOY}/pt", body=[{"op": "replace", "path": "/spec/replicas",
                                                                  "value": 1}],
                                  content_type="application/json-patch+json")
    assert d["spec"]["replicas"] == 1
    status, err, _ = await api.http("PATCH", f"{DEPLOY}/pt", body=[{"op": "test", "path": "/spec/replicas",
                                                                    "value": 5}],
                                    content_type="application/json-patch+json")
    assert status in (409, 422) and err["kind"] == "Status"


async def test_server_side_apply_conflict_and_force(api):
    applied = deployment("ssa", replicas=2)
    path = f"{DEPLOY}/ssa?fieldManager=alice"
    status, d, _ = await api.http("PATCH", path, body=applied, content_type="application/apply-patch+yaml")
    assert status in (200, 201), d
    assert any(e["manager"] == "alice" and e["operation"] == "Apply" for e in d["metadata"]["managedFields"])
    bob = deployment("ssa", replicas=5)
    status, err, _ = await api.http("PATCH", f"{DEPLOY}/ssa?fieldManager=bob", body=bob,
                                    content_type="application/apply-patch+yaml")
    assert status == 409 and "conflict" in err["message"].lower() and ".spec.replicas" in err["message"]
    status, d, _ = await api.http("PATCH", f"{DEPLOY}/ssa?fieldManager=bob&force=true", body=bob,
                                  content_type="application/apply-patch+yaml")
    assert status == 200 and d["spec"]["replicas"] == 5
    status, err, _ = await api.http("PATCH", f"{DEPLOY}/ssa", body=bob, content_type="application/apply-patch+yaml")
    assert status == 422 and "fieldManager" in err["message"]


async def test_finalizers_hold_deletion_until_removed(api):
    cm = configmap("fin")
    cm["metadata"]["finalizers"] = ["example.com/hold"]
    await api.http("POST", CM, body=cm)
    status, deleting, _ = await api.http("DELETE", f"{CM}/fin")
    assert status == 200 and deleting["metadata"]["deletionTimestamp"]
    _, still, _ = await api.http("GET", f"{CM}/fin")
    assert still["metadata"]["finalizers"] == ["example.com/hold"]
    status, _, _ = await api.http("PATCH", f"{CM}/fin", body={"metadata": {"finalizers": None}},
                                  content_type="application/merge-patch+json")
    status, _, _ = await api.http("GET", f"{CM}/fin")
    assert status == 404


async def test_namespace_deletion_sets_terminating_and_blocks_new_content(api):
    await api.http("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": "doomed"}})
    status, ns, _ = await api.http("DELETE", "/api/v1/namespaces/doomed")
    assert status == 200 and ns["status"]["phase"] == "Terminating"
    status, err, _ = await api.http("POST", "/api/v1/namespaces/doomed/configmaps", body=configmap("x"))
    assert status == 403 and "being terminated" in err["message"]
    status, err, _ = await api.http("POST", "/api/v1/namespaces/nowhere/configmaps", body=configmap("x"))
    assert status == 404 and err["message"] == 'namespaces "nowhere" not found'


async def test_pod_binding_sets_the_node_once(api):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    status, created, _ = await api.http("POST", "/api/v1/namespaces/default/pods", body=pod)
    assert status == 201 and created["status"]["phase"] == "Pending"
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    status, _, _ = await api.http("POST", "/api/v1/namespaces/default/pods/p/binding", body=binding)
    assert status == 201
    _, bound, _ = await api.http("GET", "/api/v1/namespaces/default/pods/p")
    assert bound["spec"]["nodeName"] == "node-1"
    status, err, _ = await api.http("POST", "/api/v1/namespaces/default/pods/p/binding", body=binding)
    assert status == 409
    [e] = [e for e in await api.server.store.read_stream(
        __import__("eventplane.objects.events", fromlist=["StreamId"]).StreamId("", "pods", "default", "p"))
        if e.type == "Bound"]
    assert e.verb == "bind"


async def test_watch_from_a_resource_version_streams_changes(api):
    _, c, _ = await api.http("POST", CM, body=configmap("w0"))
    rv = c["metadata"]["resourceVersion"]
    ssl_ctx = __import__("ssl").create_default_context(cadata=api.server.pki.ca_pem.decode())
    headers = {"Authorization": f"Bearer {api.server.admin_token}"}
    got = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api.url}{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=10",
                               headers=headers, ssl=ssl_ctx) as resp:
            assert resp.status == 200
            await api.http("POST", CM, body=configmap("w1"))
            await api.http("PATCH", f"{CM}/w1", body={"data": {"k": "v"}},
                           content_type="application/merge-patch+json")
            await api.http("DELETE", f"{CM}/w1")
            async for line in resp.content:
                got.append(json.loads(line))
                if len(got) == 3:
                    break
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == \
        [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


async def test_watch_without_version_starts_with_the_current_state_and_initial_events_end(api):
    await api.http("POST", CM, body=configmap("s1"))
    ssl_ctx = __import__("ssl").create_default_context(cadata=api.server.pki.ca_pem.decode())
    headers = {"Authorization": f"Bearer {api.server.admin_token}"}
    async with aiohttp.ClientSession() as session:
        url = (f"{api.url}{CM}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
               "&allowWatchBookmarks=true&timeoutSeconds=5")
        async with session.get(url, headers=headers, ssl=ssl_ctx) as resp:
            first = json.loads(await resp.content.readline())
            second = json.loads(await resp.content.readline())
    assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "s1"
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_table_for_kubectl_get(api):
    await api.http("POST", DEPLOY, body=deployment("tbl"))
    _, table, _ = await api.http("GET", DEPLOY, headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert table["rows"][0]["cells"][0] == "tbl"


async def test_concurrent_creates_all_land_with_distinct_versions(api):
    results = await asyncio.gather(*[api.http("POST", CM, body=configmap(f"con{i}")) for i in range(40)])
    assert all(r[0] == 201 for r in results)
    versions = {r[1]["metadata"]["resourceVersion"] for r in results}
    assert len(versions) == 40


async def test_a_filtered_watch_sees_objects_enter_and_leave_the_selection(api):
    _, c, _ = await api.http("POST", CM, body=configmap("sel"))
    rv = c["metadata"]["resourceVersion"]
    ssl_ctx = __import__("ssl").create_default_context(cadata=api.server.pki.ca_pem.decode())
    headers = {"Authorization": f"Bearer {api.server.admin_token}"}
    got = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api.url}{CM}?watch=true&resourceVersion={rv}&labelSelector=color%3Dred"
                               "&timeoutSeconds=10", headers=headers, ssl=ssl_ctx) as resp:
            for i, color in enumerate(("red", "red", "blue")):
                await api.http("PATCH", f"{CM}/sel", body={"metadata": {"labels": {"color": color}},
                                                           "data": {"step": str(i)}},
                               content_type="application/merge-patch+json")
            async for line in resp.content:
                got.append(json.loads(line))
                if len(got) == 3:
                    break
    assert [e["type"] for e in got] == ["ADDED", "MODIFIED", "DELETED"]


async def test_a_version_from_the_future_waits_then_times_out_as_kubernetes_does(api):
    _, c, _ = await api.http("POST", CM, body=configmap("future"))
    future = int(c["metadata"]["resourceVersion"]) + 1000
    status, body, _ = await api.http("GET", f"{CM}/future?resourceVersion={future}")
    assert status == 504 and body["reason"] == "Timeout"
    assert body["message"].startswith(f"Timeout: Too large resource version: {future}, current: ")
    assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    status, listed, _ = await api.http("GET", f"{CM}?resourceVersion={c['metadata']['resourceVersion']}")
    assert status == 200 and [i["metadata"]["name"] for i in listed["items"]] == ["future"]


async def test_a_burst_reaches_a_watcher_whole_in_order_and_in_few_chunks(api):
    """Changes already waiting are handed to a watcher together (watchcache.batches) and written as
    one chunk; every event still arrives once, in log order, each on its own line."""
    _, c, _ = await api.http("POST", CM, body=configmap("burst-start"))
    rv = int(c["metadata"]["resourceVersion"])
    cache = api.server.cache
    batches = cache.batches(rv, lambda e: e.stream.resource == "configmaps")
    ssl_ctx = __import__("ssl").create_default_context(cadata=api.server.pki.ca_pem.decode())
    headers = {"Authorization": f"Bearer {api.server.admin_token}"}
    got = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api.url}{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=20",
                               headers=headers, ssl=ssl_ctx) as resp:
            await asyncio.gather(*(api.http("POST", CM, body=configmap(f"burst-{i}")) for i in range(60)))
            async for line in resp.content:
                got.append(json.loads(line))
                if len(got) == 60:
                    break
    positions = [int(e["object"]["metadata"]["resourceVersion"]) for e in got]
    assert positions == sorted(positions) and len(set(positions)) == 60
    assert {e["object"]["metadata"]["name"] for e in got} == {f"burst-{i}" for i in range(60)}
    seen = []
    try:
        while sum(map(len, seen)) < 60:
            seen.append(await asyncio.wait_for(batches.__anext__(), 10))
    finally:
        await batches.aclose()
    assert [ch.event.position for b in seen for ch in b] == positions
    assert len(seen) < 60   # the burst came in fewer batches than events

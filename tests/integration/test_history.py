"""history.eventplane.io and asOf against a running API server: a scripted life of a
Deployment (two users, scale, image change, label, delete, re-create), then its history,
reads as of several points compared with the states captured at the time, diffs and
the causation chain behind a pod."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

H = "/apis/history.eventplane.io/v1"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
CM = "/api/v1/namespaces/default/configmaps"


def add_user(api, name: str) -> str:
    token = f"tok-{name.replace(':', '-')}"
    with open(api.server.config.data_dir / "tokens.csv", "a", encoding="utf-8") as f:
        f.write(f'{token},{name},uid-{token},"dev"\n')
    return token


def deployment(name: str, replicas: int = 2, image: str = "nginx:1.25") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


async def ok(api, method, path, body=None, *, token=None, headers=None, content_type="application/json"):
    status, got, _ = await api.http(method, path, body=body, token=token, headers=headers, content_type=content_type)
    assert status < 300, (method, path, status, got)
    return got


MERGE = "application/merge-patch+json"


async def tick() -> datetime:
    """A moment strictly between two writes."""
    await asyncio.sleep(0.02)
    t = datetime.now(timezone.utc)
    await asyncio.sleep(0.02)
    return t


async def scripted_life(api) -> dict:
    alice, bob = add_user(api, "alice"), add_user(api, "bob")
    s: dict = {}
    s["created"] = await ok(api, "POST", DEPLOY, deployment("web"), token=alice)
    s["cm"] = await ok(api, "POST", CM, {"metadata": {"name": "one", "labels": {"app": "x"}}, "data": {"a": "1"}},
                       token=alice)
    s["t1"] = await tick()
    s["scaled"] = await ok(api, "PATCH", f"{DEPLOY}/web", {"spec": {"replicas": 5}}, token=bob, content_type=MERGE)
    s["cm2"] = await ok(api, "POST", CM, {"metadata": {"name": "two", "labels": {"app": "y"}}}, token=bob)
    s["t2"] = await tick()
    s["image"] = await ok(api, "PATCH", f"{DEPLOY}/web", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.27"}]}}}}, token=alice, content_type="application/strategic-merge-patch+json")
    s["labeled"] = await ok(api, "PATCH", f"{DEPLOY}/web", {"metadata": {"labels": {"tier": "front"}}}, token=bob,
                            content_type=MERGE)
    await ok(api, "DELETE", f"{CM}/one", token=bob)
    await ok(api, "DELETE", f"{DEPLOY}/web", token=bob)
    s["t3"] = await tick()
    s["again"] = await ok(api, "POST", DEPLOY, deployment("web", replicas=1), token=alice)
    return s


async def test_history_of_an_object_across_incarnations(api):
    s = await scripted_life(api)
    h = await ok(api, "GET", f"{H}/history{DEPLOY}/web")
    assert h["kind"] == "ObjectHistory" and h["object"]["name"] == "web"
    rows = [(i["actor"], i["verb"], i["type"], i["summary"]) for i in h["items"]]
    first_uid = s["created"]["metadata"]["uid"]
    assert rows[:4] == [("alice", "create", "Created", "created"),
                        ("bob", "patch", "Updated", "spec.replicas 2→5"),
                        ("alice", "patch", "Updated", "image nginx:1.25→1.27"),
                        ("bob", "patch", "Updated", "labels +tier=front")]
    assert rows[-2][0] == "bob" and rows[-2][2] == "Deleted" and rows[-2][3] == "deleted"
    assert rows[-1] == ("alice", "create", "Created", "created")
    assert h["items"][1]["resourceVersion"] == s["scaled"]["metadata"]["resourceVersion"]
    assert {i["uid"] for i in h["items"]} == {first_uid, s["again"]["metadata"]["uid"]}
    assert h["items"][0]["time"].endswith("Z")

    only = await ok(api, "GET", f"{H}/history{DEPLOY}/web?uid={first_uid}")
    assert [i["uid"] for i in only["items"]] == [first_uid] * (len(rows) - 1)
    status, body, _ = await api.http("GET", f"{H}/history{DEPLOY}/nope")
    assert status == 404 and body["reason"] == "NotFound"
    status, body, _ = await api.http("GET", f"{H}/history{DEPLOY}")
    assert status == 400 and "name one object" in body["message"]


async def test_as_of_reads_match_the_states_captured_at_the_time(api):
    s = await scripted_life(api)
    strip = lambda o: {k: v for k, v in o.items() if k != "status"}  # noqa: E731
    # by resourceVersion, by time, and by a duration back from now
    for at, expected in ((s["scaled"]["metadata"]["resourceVersion"], s["scaled"]),
                         (s["t1"].isoformat().replace("+00:00", "Z"), s["created"]),
                         (s["t2"].isoformat(), s["scaled"])):
        got = await ok(api, "GET", f"{DEPLOY}/web?asOf={at.replace('+', '%2B')}")
        assert strip(got) == strip(expected), at
    now = await ok(api, "GET", f"{DEPLOY}/web?asOf=-0s")
    assert now["metadata"]["uid"] == s["again"]["metadata"]["uid"]
    status, body, _ = await api.http("GET", f"{DEPLOY}/web?asOf=-1h")  # before the test: nothing
    assert status == 404 and body["reason"] == "NotFound"

    # lists: shape of a list, selectors, all namespaces; deleted objects come back
    t2 = s["t2"].isoformat().replace("+00:00", "Z")
    lst = await ok(api, "GET", f"{CM}?asOf={t2}")
    assert lst["kind"] == "ConfigMapList" and [i["metadata"]["name"] for i in lst["items"]] == ["one", "two"]
    assert lst["metadata"]["resourceVersion"] == s["cm2"]["metadata"]["resourceVersion"]
    sel = await ok(api, "GET", f"{CM}?asOf={t2}&labelSelector=app%3Dy")
    assert [i["metadata"]["name"] for i in sel["items"]] == ["two"]
    every = await ok(api, "GET", f"/api/v1/configmaps?asOf={t2}")
    assert {"one", "two"} <= {i["metadata"]["name"] for i in every["items"]}
    later = await ok(api, "GET", f"{CM}?asOf={s['t3'].isoformat().replace('+00:00', 'Z')}")
    assert [i["metadata"]["name"] for i in later["items"]] == ["two"]
    table = await ok(api, "GET", f"{CM}?asOf={t2}",
                     headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert table["kind"] == "Table" and [r["cells"][0] for r in table["rows"]] == ["one", "two"]


async def test_as_of_errors_are_worded_clearly(api):
    created = await ok(api, "POST", CM, {"metadata": {"name": "c"}})
    head = int(created["metadata"]["resourceVersion"])
    status, body, _ = await api.http("GET", f"{CM}/c?asOf={head + 1000}")
    assert status == 504 and "beyond the newest resourceVersion" in body["message"]
    status, body, _ = await api.http("GET", f"{CM}?asOf=2999-01-01T00:00:00Z")
    assert status == 400 and "in the future" in body["message"]
    status, body, _ = await api.http("GET", f"{CM}?asOf=yesterday")
    assert status == 400 and "negative duration" in body["message"]
    status, body, _ = await api.http("GET", f"{CM}?asOf=2026-01-01T00:00:00")
    assert status == 400 and "with a zone" in body["message"]
    status, body, _ = await api.http("GET", f"{CM}/c?asOf={head}&resourceVersion={head}&resourceVersionMatch=Exact")
    assert status == 400 and "cannot be combined" in body["message"]
    pos = await ok(api, "GET", f"{H}/positions?at=-0s")
    assert int(pos["resourceVersion"]) >= head


async def test_diff_between_two_points_and_one_field_over_time(api):
    s = await scripted_life(api)
    rv = lambda k: s[k]["metadata"]["resourceVersion"]  # noqa: E731
    d = await ok(api, "GET", f"{H}/diff{DEPLOY}/web?from={rv('created')}&to={rv('image')}")
    assert d["kind"] == "ObjectDiff" and d["from"]["resourceVersion"] == rv("created")
    lines = d["diff"].splitlines()
    assert lines[0] == f"--- deployments/web@{rv('created')}" and lines[1] == f"+++ deployments/web@{rv('image')}"
    assert "-  replicas: 2" in lines and "+  replicas: 5" in lines
    assert "-      - image: nginx:1.25" in lines and "+      - image: nginx:1.27" in lines
    assert not any("managedFields" in line for line in lines)
    by_time = await ok(api, "GET", f"{H}/diff{DEPLOY}/web?from={s['t1'].isoformat().replace('+00:00', 'Z')}"
                                   f"&to={rv('image')}")
    # t1 falls after the ConfigMap "one" was created: the position is that event's, the object the same
    assert by_time["from"]["resourceVersion"] == s["cm"]["metadata"]["resourceVersion"]
    assert by_time["diff"].splitlines()[2:] == lines[2:]

    f = await ok(api, "GET", f"{H}/diff{DEPLOY}/web?field=spec.replicas")
    assert [(v["present"], v["value"], v["actor"]) for v in f["values"]] == [
        (False, None, None), (True, 2, "alice"), (True, 5, "bob"), (False, None, "bob"), (True, 1, "alice")]
    img = await ok(api, "GET", f"{H}/diff{DEPLOY}/web?field=spec.template.spec.containers[0].image"
                               f"&from={rv('created')}&to={rv('labeled')}")
    assert [v["value"] for v in img["values"]] == ["nginx:1.25", "nginx:1.27"]
    status, body, _ = await api.http("GET", f"{H}/diff{DEPLOY}/web?from={rv('image')}&to={rv('created')}")
    assert status == 400 and "after" in body["message"]


async def test_why_follows_causation_back_to_the_human(api):
    alice = add_user(api, "alice")
    controller = add_user(api, "system:controller:deployment")
    rs_controller = add_user(api, "system:controller:replicaset")
    scheduler = add_user(api, "system:scheduler")
    dep = await ok(api, "POST", DEPLOY, deployment("shop"), token=alice)
    await asyncio.sleep(0.05)
    rs = await ok(api, "POST", "/apis/apps/v1/namespaces/default/replicasets", {
        "metadata": {"name": "shop-1"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "shop"}},
                                                 "template": {"metadata": {"labels": {"app": "shop"}},
                                                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}},
        token=controller, headers={"X-Eventplane-Causation": dep["metadata"]["resourceVersion"]})
    await asyncio.sleep(0.03)
    pod = await ok(api, "POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "shop-1-a", "labels": {"app": "shop"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}},
        token=rs_controller, headers={"X-Eventplane-Causation": rs["metadata"]["resourceVersion"]})
    await ok(api, "POST", "/api/v1/namespaces/default/pods/shop-1-a/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "shop-1-a"},
        "target": {"kind": "Node", "name": "node-1"}},
        token=scheduler, headers={"X-Eventplane-Causation": pod["metadata"]["resourceVersion"]})

    why = await ok(api, "GET", f"{H}/why/api/v1/namespaces/default/pods/shop-1-a")
    assert why["kind"] == "CausationChain" and why["complete"] is True
    steps = [(s["actor"], s["verb"], s["type"], s["object"]["resource"], s["object"]["name"]) for s in why["steps"]]
    assert steps == [("alice", "create", "Created", "deployments", "shop"),
                     ("system:controller:deployment", "create", "Created", "replicasets", "shop-1"),
                     ("system:controller:replicaset", "create", "Created", "pods", "shop-1-a"),
                     ("system:scheduler", "bind", "Bound", "pods", "shop-1-a")]
    lat = [s["latencySeconds"] for s in why["steps"]]
    assert lat[0] >= 0.05 and lat[1] >= 0.03 and lat[2] >= 0 and lat[3] is None
    assert why["totalSeconds"] == pytest.approx(sum(lat[:3]), abs=1e-5)
    # from one chosen event of the object: the pod's creation
    mid = await ok(api, "GET", f"{H}/why/api/v1/namespaces/default/pods/shop-1-a?resourceVersion="
                               f"{pod['metadata']['resourceVersion']}")
    assert [s["actor"] for s in mid["steps"]][-1] == "system:controller:replicaset" and len(mid["steps"]) == 3
    direct = await ok(api, "GET", f"{H}/why{DEPLOY}/shop")
    assert [s["actor"] for s in direct["steps"]] == ["alice"] and direct["steps"][0]["latencySeconds"] is None


async def test_listed_in_discovery_and_openapi(api):
    groups = await ok(api, "GET", "/apis")
    assert any(g["name"] == "history.eventplane.io" for g in groups["groups"])
    agg = await ok(api, "GET", "/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;"
                                                           "as=APIGroupDiscoveryList"})
    item = next(i for i in agg["items"] if i["metadata"]["name"] == "history.eventplane.io")
    assert {r["resource"] for r in item["versions"][0]["resources"]} == {"history", "diff", "why", "positions"}
    assert (await ok(api, "GET", "/apis/history.eventplane.io"))["preferredVersion"]["version"] == "v1"
    rl = await ok(api, "GET", H)
    assert rl["groupVersion"] == "history.eventplane.io/v1"
    index = await ok(api, "GET", "/openapi/v3")
    doc = await ok(api, "GET", index["paths"]["apis/history.eventplane.io/v1"]["serverRelativeURL"])
    assert f"{H}/history/{{path}}" in doc["paths"]
    status, body, _ = await api.http("GET", f"{H}/nothing")
    assert status == 404

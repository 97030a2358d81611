"""`epctl replay --controller NAME`: the ReplicaSet controller runs against a real API server while a
ReplicaSet is created, scaled up and down and loses a pod (a fake kubelet binds pods to two nodes and
makes them Ready, and confirms graceful deletions); then its recorded decisions are replayed with
the controller's own decision function — every one agrees — and with changed ones, injected from
Python, which must disagree where the change matters; a write the function would not make, recorded
with the set's causation, is named by the command, which exits 2. The same for the Deployment
controller through a rolling update and a scale, and for the ReplicationController manager; and the
errors: unknown or unreplayable names, --via nats, the server's 501."""
from __future__ import annotations

import asyncio
import json

from eventplane.client import Client
from eventplane.client import integrity as client_integrity
from eventplane.cli.epctl_replay import controller_replay
from eventplane.objects import errors
from reconcilers.controllers import deployment, replicaset
from reconcilers.controllers.podcontrol import is_pod_active, is_pod_ready, pod_from_template
from tests.e2e.test_epctl import epctl, ok
from tests.integration._fake_kubelet import FakeKubelet
from tests.support.controllers import running

NS = "default"

RS = """apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: main, image: nginx:1.25}]
"""


def replicaset_controller(api, *more):
    """The ReplicaSet controller (and the builders in `more`) running until the block ends, the pod
    informer started too, as the manager does; yields a client."""
    return running(api, replicaset.build, *more, start_informers=True)


async def settled(client: Client, replicas: int, timeout: float = 30.0) -> list[dict]:
    """Wait until the set has `replicas` active pods, all Ready, and its status says so."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        pods = [p for p in (await client.list("pods", namespace=NS, label_selector="app=web"))["items"]
                if is_pod_active(p)]
        rs = await client.get("replicasets.apps", "web", namespace=NS)
        status = rs.get("status") or {}
        if len(pods) == replicas and all(is_pod_ready(p) for p in pods) and \
                status.get("replicas", 0) == replicas and status.get("readyReplicas", 0) == replicas:
            return pods
        assert asyncio.get_running_loop().time() < deadline, f"not settled at {replicas}: {len(pods)} pods, {status}"
        await asyncio.sleep(0.1)


def one_extra(rs, active_pods, **kw):
    """A deliberately changed decision: one pod more than asked for on every scale-up."""
    diff = replicaset.manage_replicas(rs, active_pods, **kw)
    if diff.create:
        diff.create += 1
    return diff


def keeps_the_wrong_pods(rs, active_pods, **kw):
    """Another: delete the pods Kubernetes' order would keep, first. (Deleting the oldest instead is not
    a reliable change: with pods spread over nodes, Kubernetes' order may pick the oldest too.)"""
    diff = replicaset.manage_replicas(rs, active_pods, **kw)
    if diff.delete:
        doomed = {p["metadata"]["name"] for p in diff.delete}
        spared = [p for p in active_pods if p["metadata"]["name"] not in doomed]
        diff.delete = (spared + list(diff.delete))[:len(diff.delete)]
    return diff


async def test_replaying_the_replicaset_controller(api):
    async with replicaset_controller(api) as client, \
            FakeKubelet(client, NS, node=lambda pod: "node-a" if hash(pod["metadata"]["name"]) % 2 else "node-b") \
            as kubelet:
        await api.ok("apply", "-f", "-", input=RS)
        await settled(client, 3)
        await api.ok("scale", "replicaset", "web", "--replicas=5")
        await settled(client, 5)
        before_down = (await client.list("pods", namespace=NS))["metadata"]["resourceVersion"]
        await api.ok("scale", "replicaset", "web", "--replicas=2")
        await settled(client, 2)
        victim = (await settled(client, 2))[0]["metadata"]["name"]
        await api.ok("delete", "pod", victim)
        pods = await settled(client, 2)
        assert victim not in {p["metadata"]["name"] for p in pods}

        # the recorded decisions, replayed with the controller's own function: all agree
        out = await ok(api, "replay", "--controller", "replicaset")
        assert "decisions: " in out and " 0 differ" in out, out
        doc = json.loads(await ok(api, "replay", "--controller", "replicaset", "-o", "json"))
        assert doc["kind"] == "ControllerReplay" and doc["controller"] == "replicaset"
        items = doc["items"]
        assert doc["decisions"]["replayed"] == len(items) and doc["decisions"]["differ"] == 0
        assert all(x["agree"] and x["object"] == "default/web" for x in items)
        acting = [x for x in items if x["recorded"]]
        creates = [x["recorded"].count("create") for x in acting if "create" in x["recorded"]]
        deletes = [x["recorded"] for x in acting if any(w.startswith("delete ") for w in x["recorded"])]
        # created 3, then 2 more on the scale-up, then 1 to replace the deleted pod
        assert sorted(creates) == [1, 2, 3], items
        assert len(deletes) == 1 and len(deletes[0]) == 3, items   # the scale-down from 5 to 2
        # every decision that wrote nothing but status was replayed as "nothing"
        assert all(x["replayed"] == [] for x in items if not x["recorded"])
        assert out.count("\n") >= len(items) + 2

        # --from: only the decisions after the scale-down began
        later = json.loads(await ok(api, "replay", "--controller", "replicaset", "--from", str(before_down),
                                    "-o", "json"))
        assert 0 < later["decisions"]["replayed"] < len(items)
        assert all(x["writes"][0] >= int(before_down) for x in later["items"])
        # --to: the log up to before the scale-down holds only the creates
        earlier = json.loads(await ok(api, "replay", "--controller", "replicaset", "--to", str(before_down),
                                      "-o", "json"))
        assert earlier["to"] == int(before_down)
        assert sorted(x["recorded"].count("create") for x in earlier["items"] if x["recorded"]) == [2, 3]

        # a changed decision function, tried against the same history: it must disagree where it matters
        extra = await controller_replay(client, "replicaset", decide=one_extra)
        assert extra["decisions"]["differ"] == 3, extra["items"]
        differing = [x for x in extra["items"] if not x["agree"]]
        assert sorted(x["replayed"].count("create") - x["recorded"].count("create") for x in differing) == [1, 1, 1]
        swapped = await controller_replay(client, "replicaset", decide=keeps_the_wrong_pods)
        wrong = [x for x in swapped["items"] if not x["agree"]]
        assert [sorted(x["recorded"]) for x in wrong] == [sorted(deletes[0])], swapped["items"]

        # a write the function would not make, recorded as the controller's (an extra pod with the set's
        # causation): the command names that decision and exits 2
        kubelet.paused = True      # the extra pod stays unbound and pending: deleted first, whatever the cache saw
        rs = await client.get("replicasets.apps", "web", namespace=NS)
        rogue = await client.create(pod_from_template(rs["spec"]["template"], rs), namespace=NS,
                                    causation=int(rs["metadata"]["resourceVersion"]))
        await settled(client, 2)   # the controller deletes one pod again
        r = await epctl(api, "replay", "--controller", "replicaset")
        assert r.code == 2, r
        assert " agree, 1 differ" in r.out, r.out
        assert f"differs: ReplicaSet default/web at causation {rs['metadata']['resourceVersion']} (writes " \
            f"{rogue['metadata']['resourceVersion']}, world as of {int(rogue['metadata']['resourceVersion']) - 1}): " \
            "would do nothing, recorded create" in r.out, r.out
        after = json.loads(await ok(api, "replay", "--controller", "replicaset", "--from",
                                    str(int(rogue["metadata"]["resourceVersion"]) + 1), "-o", "json"))
        assert after["decisions"]["differ"] == 0   # the controller's answer to it: delete that pod
        assert [x["recorded"] for x in after["items"] if x["recorded"]] == [[f"delete {rogue['metadata']['name']}"]]


RC = """apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: default}
spec:
  replicas: 2
  selector: {app: legacy}
  template:
    metadata: {labels: {app: legacy}}
    spec:
      containers: [{name: main, image: nginx:1.25}]
"""


async def test_replay_controller_errors_and_the_replicationcontroller_manager(api):
    unknown = await epctl(api, "replay", "--controller", "nope")
    assert unknown.code == 1
    assert "unknown controller 'nope' (replayable controllers: deployment, replicaset, replicationcontroller)" \
        in unknown.err
    job = await epctl(api, "replay", "--controller", "job")
    assert job.code == 1 and "controller 'job' cannot be replayed" in job.err and "replicaset" in job.err
    nats = await epctl(api, "replay", "--controller", "replicaset", "--via", "nats", "--token", "x",
                       "--nats-url", "nats://127.0.0.1:1")
    assert nats.code == 1 and "REST only" in nats.err, nats.err
    no_to = await epctl(api, "replay")
    assert no_to.code == 1 and "--to" in no_to.err

    # the server computes no controller: 501, naming the command that does
    client = Client.from_kubeconfig(str(api.kubeconfig))
    try:
        try:
            await client_integrity.replay(client, "1", controller="replicaset")
            raise AssertionError("the server replayed a controller")
        except errors.EventplaneError as exc:
            assert exc.code == 501 and "epctl replay --controller NAME" in str(exc) and "replicaset" in str(exc)
        # an empty history: nothing to replay, and that is not an error
        empty = await controller_replay(client, "replicaset", start="-1h")
        assert empty["decisions"] == {"replayed": 0, "agree": 0, "differ": 0, "agreeEarlier": 0}
    finally:
        await client.close()

    # the ReplicationController manager: the same code, another kind
    async with replicaset_controller(api, replicaset.build_replicationcontroller) as client:
        await api.ok("apply", "-f", "-", input=RC)
        await api.ok("scale", "rc", "legacy", "--replicas=1")
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            pods = (await client.list("pods", namespace=NS, label_selector="app=legacy"))["items"]
            rc = await client.get("replicationcontrollers", "legacy", namespace=NS)
            if len([p for p in pods if is_pod_active(p)]) == 1 and (rc.get("status") or {}).get("replicas") == 1 \
                    and rc["status"].get("observedGeneration") == rc["metadata"]["generation"]:
                break
            assert asyncio.get_running_loop().time() < deadline, rc.get("status")
            await asyncio.sleep(0.1)
        start = (await client.query("positions", {"at": "-1h"}))["resourceVersion"]
        doc = await controller_replay(client, "replicationcontroller", start=str(int(start) + 1))
        assert doc["decisions"]["differ"] == 0 and doc["decisions"]["replayed"] >= 1, doc["items"]
        assert {x["kind"] for x in doc["items"]} == {"ReplicationController"}
        assert sum(x["recorded"].count("create") for x in doc["items"]) == \
            sum(1 for x in doc["items"] for w in x["recorded"] if w.startswith("delete ")) + 1
        # the ReplicaSet replay sees none of it
        assert (await controller_replay(client, "replicaset"))["items"] == []


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: shop}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers: [{name: main, image: nginx:1.25}]
"""


async def rolled_out(client: Client, replicas: int, image: str, timeout: float = 60.0) -> None:
    """Wait until the Deployment's status shows `replicas` updated, available pods of `image`, and only those."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        d = await client.get("deployments.apps", "shop", namespace=NS)
        s = d.get("status") or {}
        pods = [p for p in (await client.list("pods", namespace=NS, label_selector="app=shop"))["items"]
                if is_pod_active(p)]
        if s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas") == replicas \
                and s.get("availableReplicas") == replicas and s.get("replicas") == replicas and \
                len(pods) == replicas and all(p["spec"]["containers"][0]["image"] == image for p in pods):
            return
        assert asyncio.get_running_loop().time() < deadline, f"not rolled out: {s}, {len(pods)} pods"
        await asyncio.sleep(0.1)


def no_surge(d, rss, pods_by_rs=None, **kw):
    """A changed Deployment decision: never scale a new ReplicaSet above 1 in one step."""
    plan = deployment.plan(d, rss, pods_by_rs, **kw)
    for action in plan.actions:
        if isinstance(action, (deployment.CreateReplicaSet, deployment.UpdateReplicaSet)):
            action.rs["spec"]["replicas"] = min(int(action.rs["spec"].get("replicas") or 0), 1)
    return plan


async def test_replaying_the_deployment_controller(api):
    async with replicaset_controller(api, deployment.build) as client, \
            FakeKubelet(client, NS, node=lambda pod: "node-a"):
        await api.ok("apply", "-f", "-", input=DEPLOYMENT)
        await rolled_out(client, 3, "nginx:1.25")
        await api.ok("set", "image", "deployment/shop", "main=nginx:1.27")
        await rolled_out(client, 3, "nginx:1.27")
        await api.ok("scale", "deployment", "shop", "--replicas=5")
        await rolled_out(client, 5, "nginx:1.27")

        doc = await controller_replay(client, "deployment")
        acting = [x for x in doc["items"] if x["recorded"]]
        assert doc["decisions"]["differ"] == 0, json.dumps(doc["items"], indent=0)
        words = [w for x in acting for w in x["recorded"]]
        assert sum(w.startswith("create shop-") for w in words) == 2, words     # two templates, two sets
        assert any(w.startswith("scale shop-") and w.endswith("→5") for w in words), words
        out = await ok(api, "replay", "--controller", "deployment")
        assert f"decisions: {len(doc['items'])} replayed, {len(doc['items'])} agree, 0 differ" in out

        # the pods of both sets, replayed as their ReplicaSets decided them (siblings rank deletions)
        sets = await controller_replay(client, "replicaset")
        assert sets["decisions"]["differ"] == 0, [x for x in sets["items"] if not x["agree"]]
        assert len({x["object"] for x in sets["items"] if x["recorded"]}) == 2

        changed = await controller_replay(client, "deployment", decide=no_surge)
        assert changed["decisions"]["differ"] > 0


# --- the replay itself, on a history written out by hand (no server) ----------------------------------

def _rs(replicas: int, rv: int, status: dict | None = None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": NS, "uid": "rs-1", "generation": 1, "resourceVersion": str(rv)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}},
            **({"status": status} if status else {})}


def _pod(name: str, rv: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": {"app": "web"},
                         "resourceVersion": str(rv), "creationTimestamp": "2026-11-28T00:00:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                              "uid": "rs-1", "controller": True}]},
            "spec": {}, "status": {"phase": "Pending"}}


def test_a_decision_made_on_a_cache_behind_the_log_agrees_earlier():
    from reconcilers.replay import Recorded, replay
    rs, pods = "apps/replicasets/default/web", "core/pods/default/"
    history = [
        Recorded(1, rs, "Created", None, _rs(2, 1)),
        Recorded(2, pods + "web-a", "Created", 1, _pod("web-a", 2)),                  # the controller: 2 pods
        Recorded(3, pods + "web-b", "Created", 1, _pod("web-b", 3)),
        Recorded(4, rs, "StatusUpdated", 1, _rs(2, 4, {"replicas": 0, "observedGeneration": 1})),
        Recorded(5, pods + "web-a", "Deleted", None, _pod("web-a", 5)),              # someone deletes a pod …
        # … while the controller, not yet seeing it, syncs on causation 4: nothing to do, status 2
        Recorded(6, rs, "StatusUpdated", 4, _rs(2, 6, {"replicas": 2, "observedGeneration": 1})),
        Recorded(7, pods + "web-c", "Created", 6, _pod("web-c", 7)),                  # then replaces it
    ]
    decisions = replay("replicaset", history)
    assert [(d.causation, d.view, d.recorded, d.replayed, d.agreement, d.agreed_at) for d in decisions] == [
        (1, 1, ["create", "create"], ["create", "create"], "view", 1),
        (4, 5, [], ["create"], "earlier", 4),    # on the world at 5 it would create; as of 4, nothing
        (6, 6, ["create"], ["create"], "view", 6)]
    assert decisions[1].earlier == [(4, [])]

    def eager(rs, active_pods, **kw):   # a changed function: one more pod, always
        diff = replicaset.manage_replicas(rs, active_pods, **kw)
        diff.create += 1
        return diff

    changed = replay("replicaset", history, decide=eager)
    assert [d.agree for d in changed] == [False, False, False]
    assert changed[1].earlier == [(4, ["create"])] and changed[1].agreed_at is None

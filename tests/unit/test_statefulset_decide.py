"""The StatefulSet controller's decisions, table-style, without a server."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from reconcilers.controllers import statefulset as S
from reconcilers.controllers import _workload as w

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
UID = "sts-uid"
OWNER = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": UID, "controller": True}]


def sts(replicas=3, *, image="nginx:1", status=None, **spec):
    s = {"replicas": replicas, "serviceName": "web", "podManagementPolicy": "OrderedReady",
         "selector": {"matchLabels": {"app": "web"}},
         "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
         "template": {"metadata": {"labels": {"app": "web"}},
                      "spec": {"containers": [{"name": "c", "image": image}]}},
         "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                   "spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}}]}
    s.update(spec)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": UID, "generation": 1},
            "spec": s, "status": status or {}}


def revision(image="nginx:1", number=1):
    plan = S.decide(sts(image=image), [], {}, [], NOW)
    rev = copy.deepcopy(plan.create_revision)
    rev["revision"] = number
    return rev


REV1 = revision("nginx:1", 1)
REV1_NAME = REV1["metadata"]["name"]


def pod(ordinal, *, ready=True, rev=REV1_NAME, phase="Running", deleting=False):
    p = {"metadata": {"name": f"web-{ordinal}", "namespace": "ns", "uid": f"u{ordinal}", "ownerReferences": OWNER,
                      "labels": {"app": "web", S.REVISION: rev}},
         "spec": {}, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    return p


def claims(*ordinals):
    return {f"data-web-{o}": {"metadata": {"name": f"data-web-{o}"}} for o in ordinals}


CASES = [
    # name, set, pods, claims, created pods, deleted pods, created claims
    ("OrderedReady makes web-0 first", sts(), [], {}, ["web-0"], [], ["data-web-0"]),
    ("web-1 only once web-0 is Running and Ready", sts(), [pod(0)], claims(0), ["web-1"], [], ["data-web-1"]),
    ("nothing while web-0 is not ready", sts(), [pod(0, ready=False)], claims(0), [], [], []),
    ("Parallel makes them all", sts(podManagementPolicy="Parallel"), [], {}, ["web-0", "web-1", "web-2"], [],
     ["data-web-0", "data-web-1", "data-web-2"]),
    ("a missing claim of a running pod is made again", sts(1), [pod(0)], {}, [], [], ["data-web-0"]),
    ("scale down: the highest ordinal first, one at a time", sts(1), [pod(0), pod(1), pod(2)], claims(0, 1, 2),
     [], ["web-2"], []),
    ("scale down waits for the one going away", sts(1), [pod(0), pod(1), pod(2, deleting=True)], claims(0, 1, 2),
     [], [], []),
    ("scale down waits while a kept pod is not ready", sts(1), [pod(0, ready=False), pod(1)], claims(0, 1),
     [], [], []),
    ("Parallel scale down removes all at once", sts(1, podManagementPolicy="Parallel"), [pod(0), pod(1), pod(2)],
     claims(0, 1, 2), [], ["web-1", "web-2"], []),
    ("a failed pod is replaced (deleted, then made again)", sts(2), [pod(0), pod(1, phase="Failed")], claims(0, 1),
     [], ["web-1"], []),
    ("rolling update: the highest ordinal first", sts(image="nginx:2"), [pod(0), pod(1), pod(2)], claims(0, 1, 2),
     [], ["web-2"], []),
    ("rolling update waits for the updated pod to be ready", sts(image="nginx:2"),
     [pod(0), pod(1), pod(2, ready=False, rev="NEW")], claims(0, 1, 2), [], [], []),
    ("partition 2 keeps web-0 and web-1", sts(image="nginx:2", updateStrategy={
        "type": "RollingUpdate", "rollingUpdate": {"partition": 2}}), [pod(0), pod(1), pod(2, rev="NEW")],
     claims(0, 1, 2), [], [], []),
    ("OnDelete never deletes for an update", sts(image="nginx:2", updateStrategy={"type": "OnDelete"}),
     [pod(0), pod(1), pod(2)], claims(0, 1, 2), [], [], []),
]


@pytest.mark.parametrize("name,s,pods,cl,create,delete,new_claims", CASES, ids=[c[0] for c in CASES])
def test_decide(name, s, pods, cl, create, delete, new_claims):
    update_name = S.decide(s, [], {}, [REV1], NOW).status["updateRevision"]
    for p in pods:
        if p["metadata"]["labels"][S.REVISION] == "NEW":
            p["metadata"]["labels"][S.REVISION] = update_name
    plan = S.decide(s, pods, cl, [REV1], NOW)
    assert [p["metadata"]["name"] for p in plan.create_pods] == create
    assert sorted(plan.delete_pods) == delete
    assert [c["metadata"]["name"] for c in plan.create_claims] == new_claims


def test_pod_identity_and_claims():
    plan = S.decide(sts(), [], {}, [], NOW)
    p = plan.create_pods[0]
    assert p["metadata"]["name"] == "web-0" and p["spec"]["hostname"] == "web-0" and p["spec"]["subdomain"] == "web"
    assert p["metadata"]["labels"] == {"app": "web", S.POD_NAME: "web-0", S.POD_INDEX: "0",
                                       S.REVISION: plan.create_revision["metadata"]["name"]}
    assert p["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    c = plan.create_claims[0]
    assert c["metadata"]["labels"] == {"app": "web"} and "ownerReferences" not in c["metadata"]
    assert c["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    rev = plan.create_revision
    assert rev["revision"] == 1 and rev["metadata"]["name"].startswith("web-")
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert rev["metadata"]["labels"]["controller.kubernetes.io/hash"] == rev["metadata"]["name"][4:]
    assert plan.status["replicas"] == 1 and plan.status["currentRevision"] == plan.status["updateRevision"]


def test_retention_policy():
    s = sts(1, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"})
    plan = S.decide(s, [], {}, [REV1], NOW)
    assert plan.create_claims[0]["metadata"]["ownerReferences"][0]["uid"] == UID
    plan = S.decide(s, [pod(0), pod(1)], claims(0, 1), [REV1], NOW)
    assert plan.delete_pods == ["web-1"]
    assert plan.claim_owners == {"data-web-1": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "u1"}}


def test_revisions_status_and_rollback():
    s = sts(image="nginx:2", status={"currentRevision": REV1_NAME})
    plan = S.decide(s, [pod(0), pod(1), pod(2)], claims(0, 1, 2), [REV1], NOW)
    rev2 = plan.create_revision
    assert rev2["revision"] == 2
    st = plan.status
    assert (st["currentRevision"], st["updateRevision"]) == (REV1_NAME, rev2["metadata"]["name"])
    assert (st["currentReplicas"], st["updatedReplicas"], st["readyReplicas"]) == (3, 0, 3)
    # all updated and ready: the update revision becomes current
    rev2 = {**rev2, "metadata": {**rev2["metadata"], "uid": "r2"}}
    name2 = rev2["metadata"]["name"]
    done = S.decide(s, [pod(i, rev=name2) for i in range(3)], claims(0, 1, 2), [REV1, rev2], NOW)
    assert done.status["currentRevision"] == name2 and done.status["currentReplicas"] == 3
    # back to nginx:1: revision 1 is reused under number 3
    back = S.decide(sts(image="nginx:1", status=done.status), [pod(i, rev=name2) for i in range(3)],
                    claims(0, 1, 2), [REV1, rev2], NOW)
    assert back.create_revision is None and back.bump_revision["revision"] == 3
    assert back.status["updateRevision"] == REV1_NAME and back.delete_pods == ["web-2"]


def test_revision_history_limit():
    revs = [revision(f"nginx:{i}", i) for i in range(1, 5)]
    plan = S.decide(sts(1, image="nginx:4", revisionHistoryLimit=1), [pod(0, rev=revs[3]["metadata"]["name"])],
                    claims(0), revs, NOW)
    assert sorted(plan.delete_revisions) == sorted(r["metadata"]["name"] for r in revs[:2])


def test_hash_is_stable_and_safe():
    a, b = w.revision_hash(w.revision_data({"x": 1})), w.revision_hash(w.revision_data({"x": 1}))
    assert a == b and set(a) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert w.revision_hash(w.revision_data({"x": 2})) != a


def test_min_ready_seconds_gates_the_next_ordinal():
    p0 = pod(0)
    p0["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T11:59:55Z"   # ready for 5 s
    plan = S.decide(sts(minReadySeconds=10), [p0], claims(0), [REV1], NOW)
    assert plan.create_pods == [] and plan.requeue_after == 1.0
    plan = S.decide(sts(minReadySeconds=3), [p0], claims(0), [REV1], NOW)
    assert [p["metadata"]["name"] for p in plan.create_pods] == ["web-1"]


def test_ordinals_start():
    s = sts(2, ordinals={"start": 5})
    plan = S.decide(s, [], {}, [REV1], NOW)
    assert [p["metadata"]["name"] for p in plan.create_pods] == ["web-5"]
    assert [c["metadata"]["name"] for c in plan.create_claims] == ["data-web-5"]
    plan = S.decide(s, [pod(5), pod(6), pod(0)], claims(5, 6, 0), [REV1], NOW)
    assert plan.delete_pods == ["web-0"] and plan.create_pods == []   # 0 is outside 5..6 now

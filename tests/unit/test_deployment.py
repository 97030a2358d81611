"""Deployment decisions, table-style, without a server: `plan()` on hand-built Deployments and
ReplicaSets, and the arithmetic under it (fenceposts, hashes, proportions, revisions)."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from reconcilers.controllers.deployment import (DESIRED_REPLICAS, MAX_REPLICAS, POD_TEMPLATE_HASH, REVISION,
                                                REVISION_HISTORY, CreateReplicaSet, DeleteReplicaSet,
                                                UpdateDeploymentStatus,
                                                UpdateReplicaSet, compute_hash, equal_ignore_hash, max_surge,
                                                max_unavailable, plan, resolve_fenceposts, safe_encode,
                                                scaled_value, set_new_replica_set_annotations)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def template(image: str = "nginx:1.25") -> dict:
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}


def deployment(*, replicas: int = 10, image: str = "nginx:1.25", surge="25%", unavailable="25%",
               strategy: str = "RollingUpdate", paused: bool = False, generation: int = 1, status: dict | None = None,
               history_limit: int = 10, deadline: int | None = 600, annotations: dict | None = None) -> dict:
    spec: dict = {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template(image),
                  "strategy": {"type": strategy}, "revisionHistoryLimit": history_limit}
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    if paused:
        spec["paused"] = True
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": generation,
                         "resourceVersion": "100", "annotations": dict(annotations or {})},
            "spec": spec, "status": status or {"observedGeneration": generation}}


def replica_set(image: str, *, replicas: int, available: int | None = None, revision: int = 1, age: float = 100,
                d: dict | None = None, status_replicas: int | None = None) -> dict:
    t = template(image)
    h = compute_hash(t)
    t["metadata"]["labels"][POD_TEMPLATE_HASH] = h
    d = d or deployment()
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"web-{h}", "namespace": "default", "uid": f"rs-{image}", "generation": 1,
                         "resourceVersion": "50", "creationTimestamp": ts(age),
                         "labels": dict(t["metadata"]["labels"]),
                         "annotations": {REVISION: str(revision), DESIRED_REPLICAS: str(d["spec"]["replicas"]),
                                         MAX_REPLICAS: str(d["spec"]["replicas"] + max_surge(d))},
                         "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d-uid", "controller": True}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", POD_TEMPLATE_HASH: h}},
                     "template": t},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "readyReplicas": replicas if available is None else available,
                       "availableReplicas": replicas if available is None else available, "observedGeneration": 1}}


def only(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def scaled(actions) -> dict[str, int]:
    """The last size each set was given by the plan's updates."""
    out = {}
    for a in only(actions, UpdateReplicaSet):
        out[a.rs["spec"]["template"]["spec"]["containers"][0]["image"]] = a.rs["spec"]["replicas"]
    return out


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


# --- arithmetic ---------------------------------------------------------------------------------------

FENCEPOSTS = [
    # (maxSurge, maxUnavailable, replicas, surge, unavailable)
    ("25%", "25%", 10, 3, 2),      # surge rounds up, unavailability down
    ("25%", "25%", 1, 1, 0),
    ("25%", "25%", 4, 1, 1),
    (1, "30%", 3, 1, 0),
    ("0%", "0%", 3, 0, 1),         # both zero: unavailability becomes 1
    (0, 0, 5, 0, 1),
    ("50%", 2, 5, 3, 2),
    (None, None, 4, 0, 1),
]


@pytest.mark.parametrize("surge,unavailable,replicas,want_surge,want_unavailable", FENCEPOSTS)
def test_resolve_fenceposts(surge, unavailable, replicas, want_surge, want_unavailable):
    assert resolve_fenceposts(surge, unavailable, replicas) == (want_surge, want_unavailable)


def test_max_unavailable_is_capped_by_replicas_and_zero_for_recreate():
    assert max_unavailable(deployment(replicas=3, unavailable=10)) == 3
    assert max_unavailable(deployment(replicas=0)) == 0
    assert max_unavailable(deployment(strategy="Recreate")) == 0
    assert max_surge(deployment(strategy="Recreate")) == 0


@pytest.mark.parametrize("value", ["25", "x%", True])
def test_scaled_value_rejects_what_intstr_rejects(value):
    with pytest.raises(ValueError):
        scaled_value(value, 10, True)


def test_compute_hash():
    a, b = compute_hash(template("nginx:1.25")), compute_hash(template("nginx:1.27"))
    assert a == compute_hash(copy.deepcopy(template("nginx:1.25")))      # stable
    assert a != b                                                         # any template change
    assert compute_hash(template(), 1) not in (a, compute_hash(template(), 2))   # the collision count counts
    assert set(a) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(a) <= 10
    assert safe_encode("0123456789") == "456789bcdf"   # rand.SafeEncodeString: alphanums[ord(c) % 27]


def test_equal_ignore_hash():
    t = template()
    hashed = copy.deepcopy(t)
    hashed["metadata"]["labels"][POD_TEMPLATE_HASH] = "abc"
    assert equal_ignore_hash(t, hashed)
    assert not equal_ignore_hash(t, template("other"))


# --- plans --------------------------------------------------------------------------------------------

def test_new_deployment_creates_its_first_replica_set():
    d = deployment(replicas=10)
    p = plan(d, [], now=NOW)
    [create] = only(p.actions, CreateReplicaSet)
    rs = create.rs
    h = rs["metadata"]["labels"][POD_TEMPLATE_HASH]
    assert h == compute_hash(d["spec"]["template"])
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["replicas"] == 10       # nothing exists yet: the whole count at once
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", POD_TEMPLATE_HASH: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", POD_TEMPLATE_HASH: h}
    assert rs["metadata"]["annotations"] == {REVISION: "1", DESIRED_REPLICAS: "10", MAX_REPLICAS: "13"}
    ref = rs["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == \
        ("Deployment", "d-uid", True, True)
    [status] = only(p.actions, UpdateDeploymentStatus)
    assert status.annotations == {REVISION: "1"}   # written with status, through /status
    assert condition(status.status, "Progressing")["reason"] == "NewReplicaSetCreated"
    assert condition(status.status, "Progressing")["message"] == f'Created new replica set "web-{h}"'
    assert condition(status.status, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert p.kinds() == ["CreateReplicaSet", "UpdateDeploymentStatus"]


def test_deployment_annotations_are_copied_except_the_controllers_own():
    d = deployment(annotations={"kubernetes.io/change-cause": "v2", REVISION: "7",
                                "kubectl.kubernetes.io/last-applied-configuration": "{}"})
    [create] = only(plan(d, [], now=NOW).actions, CreateReplicaSet)
    assert create.rs["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v2"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in create.rs["metadata"]["annotations"]
    assert create.rs["metadata"]["annotations"][REVISION] == "1"


ROLLING_STEPS = [
    # (case, old (replicas, available), new (replicas, available) or None, expected creates, expected sizes)
    ("image change: new set surges to maxSurge, old loses the unavailability budget", (10, 10), None, 3,
     {"nginx:1.25": 8}),
    ("surge used up: old scaled down by the availability budget", (10, 10), (3, 0), 0, {"nginx:1.25": 8}),
    ("below the surge again: the new set grows first", (8, 8), (3, 3), 0, {"nginx:1.27": 5}),
    ("at the surge with new pods available: more old ones go", (8, 8), (5, 3), 0, {"nginx:1.25": 5}),
    ("room below the surge: the new set grows", (5, 5), (3, 3), 0, {"nginx:1.27": 8}),
    ("old set unhealthy: its unavailable pods go first", (10, 6), (3, 0), 0, {"nginx:1.25": 8}),
    ("nothing available anywhere: wait", (8, 6), (5, 0), 0, {}),
]


@pytest.mark.parametrize("case,old,new,creates,sizes", ROLLING_STEPS, ids=[c[0] for c in ROLLING_STEPS])
def test_rolling_update_steps(case, old, new, creates, sizes):
    d = deployment(replicas=10, image="nginx:1.27", generation=2)
    rss = [replica_set("nginx:1.25", replicas=old[0], available=old[1], revision=1, age=300, d=d)]
    if new is not None:
        rss.append(replica_set("nginx:1.27", replicas=new[0], available=new[1], revision=2, age=10, d=d))
    p = plan(d, rss, now=NOW)
    made = only(p.actions, CreateReplicaSet)
    assert [c.rs["spec"]["replicas"] for c in made] == ([creates] if creates else [])
    assert scaled(p.actions) == sizes
    # never below replicas - maxUnavailable by what the sets report, never above replicas + maxSurge
    total = sum(a.rs["spec"]["replicas"] for a in made) + sum(
        (next((u.rs for u in only(p.actions, UpdateReplicaSet) if u.rs["metadata"]["name"] == rs["metadata"]["name"]),
              rs))["spec"]["replicas"] for rs in rss)
    assert total <= 13


def test_rollout_completes_and_history_is_cleaned_beyond_the_limit():
    d = deployment(replicas=3, image="v4", history_limit=1, generation=5,
                   status={"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                           "readyReplicas": 3, "conditions": [
                               {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                                "lastUpdateTime": ts(5), "lastTransitionTime": ts(50)}]})
    rss = [replica_set("v1", replicas=0, revision=1, age=400, d=d),
           replica_set("v2", replicas=0, revision=2, age=300, d=d),
           replica_set("v3", replicas=0, revision=3, age=200, d=d),
           replica_set("v4", replicas=3, revision=4, age=100, d=d)]
    rss[1]["metadata"]["generation"] = 2          # v2's last change not yet observed: kept for now
    p = plan(d, rss, now=NOW)
    deleted = [a.name for a in only(p.actions, DeleteReplicaSet)]
    assert deleted == [rss[0]["metadata"]["name"]]   # the oldest revisions beyond the limit of 1, but not v2
    [status] = only(p.actions, UpdateDeploymentStatus)
    progressing = condition(status.status, "Progressing")
    assert (progressing["reason"], progressing["message"]) == \
        ("NewReplicaSetAvailable", f'ReplicaSet "{rss[3]["metadata"]["name"]}" has successfully progressed.')
    assert progressing["lastTransitionTime"] == ts(50)    # still True: the transition time stays
    assert condition(status.status, "Available")["reason"] == "MinimumReplicasAvailable"


def test_recreate_scales_old_to_zero_waits_for_pods_then_creates():
    d = deployment(replicas=3, image="v2", strategy="Recreate", generation=2)
    old = replica_set("v1", replicas=3, revision=1, d=d)
    p = plan(d, [old], {old["metadata"]["uid"]: [{"status": {"phase": "Running"}}]}, now=NOW)
    assert scaled(p.actions) == {"v1": 0} and not only(p.actions, CreateReplicaSet)
    old_zero = replica_set("v1", replicas=0, available=0, revision=1, d=d, status_replicas=0)
    waiting = plan(d, [old_zero], {old["metadata"]["uid"]: [{"status": {"phase": "Running"}}]}, now=NOW)
    assert not only(waiting.actions, CreateReplicaSet)          # an old pod still runs
    done = plan(d, [old_zero], {old["metadata"]["uid"]: [{"status": {"phase": "Succeeded"}}]}, now=NOW)
    [create] = only(done.actions, CreateReplicaSet)
    assert create.rs["spec"]["replicas"] == 3 and create.rs["metadata"]["annotations"][REVISION] == "2"


def test_proportional_scaling_in_the_middle_of_a_rollout():
    # Kubernetes' documented example: 10 → 30 replicas mid-rollout, maxSurge 3, old 8 and new 5.
    before = deployment(replicas=10, image="v2", surge=3, unavailable=2)
    d = deployment(replicas=30, image="v2", surge=3, unavailable=2, generation=3)
    old = replica_set("v1", replicas=8, revision=1, age=300, d=before)
    new = replica_set("v2", replicas=5, available=0, revision=2, age=10, d=before)
    p = plan(d, [old, new], now=NOW)
    sizes = scaled(p.actions)
    assert sizes == {"v1": 20, "v2": 13}          # 33 = 30 + maxSurge, shared 8:5
    for u in only(p.actions, UpdateReplicaSet):
        assert u.rs["metadata"]["annotations"][DESIRED_REPLICAS] == "30"
        assert u.rs["metadata"]["annotations"][MAX_REPLICAS] == "33"


def test_paused_deployment_does_not_roll_out():
    d = deployment(replicas=3, image="v2", paused=True, generation=2)
    old = replica_set("v1", replicas=3, revision=1, d=d)
    p = plan(d, [old], now=NOW)
    assert not only(p.actions, CreateReplicaSet) and not only(p.actions, UpdateReplicaSet)
    [status] = only(p.actions, UpdateDeploymentStatus)
    c = condition(status.status, "Progressing")
    assert (c["status"], c["reason"], c["message"]) == ("Unknown", "DeploymentPaused", "Deployment is paused")
    resumed = deployment(replicas=3, image="v2", generation=3, status=status.status)
    r = plan(resumed, [old], now=NOW)
    assert only(r.actions, CreateReplicaSet)
    [status2] = only(r.actions, UpdateDeploymentStatus)
    assert condition(status2.status, "Progressing")["reason"] == "NewReplicaSetCreated"


def test_paused_deployment_still_scales():
    d = deployment(replicas=5, paused=True, generation=2)
    p = plan(d, [replica_set("nginx:1.25", replicas=3, d=deployment(replicas=3))], now=NOW)
    assert scaled(p.actions) == {"nginx:1.25": 5}


def test_progress_deadline_exceeded():
    d = deployment(replicas=3, image="v2", deadline=60, generation=2,
                   status={"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
                           "readyReplicas": 3, "conditions": [
                               {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                                "lastUpdateTime": ts(120), "lastTransitionTime": ts(120)}]})
    old = replica_set("v1", replicas=3, revision=1, age=300, d=d)
    new = replica_set("v2", replicas=1, available=0, revision=2, age=120, d=d)
    p = plan(d, [old, new], now=NOW)
    [status] = only(p.actions, UpdateDeploymentStatus)
    c = condition(status.status, "Progressing")
    assert (c["status"], c["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert c["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.'


def test_a_stuck_rollout_is_looked_at_again_when_its_deadline_passes():
    d = deployment(replicas=3, image="v2", deadline=60, generation=2, annotations={REVISION: "2"},
                   status={"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
                           "readyReplicas": 3, "unavailableReplicas": 1, "conditions": [
                               {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                                "message": "x", "lastUpdateTime": ts(20), "lastTransitionTime": ts(20)},
                               {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                "message": "Deployment has minimum availability.", "lastUpdateTime": ts(20),
                                "lastTransitionTime": ts(20)}]})
    old = replica_set("v1", replicas=3, revision=1, age=300, d=d)
    new = replica_set("v2", replicas=1, available=0, revision=2, age=120, d=d)
    p = plan(d, [old, new], now=NOW)
    assert not only(p.actions, UpdateDeploymentStatus)
    assert p.requeue_after == pytest.approx(41.0)


def test_undo_reuses_the_old_replica_set_as_a_new_revision():
    d = deployment(replicas=3, image="v1", generation=3)   # the template of revision 1 again
    first = replica_set("v1", replicas=0, available=0, revision=1, age=300, d=d, status_replicas=0)
    second = replica_set("v2", replicas=3, revision=2, age=100, d=d)
    p = plan(d, [first, second], now=NOW)
    updates = [u.rs for u in only(p.actions, UpdateReplicaSet) if u.rs["metadata"]["name"] == first["metadata"]["name"]]
    assert updates and updates[0]["metadata"]["annotations"][REVISION] == "3"
    assert updates[0]["metadata"]["annotations"][REVISION_HISTORY] == "1"
    assert only(p.actions, UpdateDeploymentStatus)[0].annotations == {REVISION: "3"}
    assert not only(p.actions, CreateReplicaSet)


def test_revision_history_grows_and_is_bounded():
    rs = {"metadata": {"annotations": {REVISION: "5", REVISION_HISTORY: "1,3"}}, "spec": {}}
    assert set_new_replica_set_annotations(deployment(), rs, "8", exists=True)
    assert rs["metadata"]["annotations"][REVISION_HISTORY] == "1,3,5"
    long = {"metadata": {"annotations": {REVISION: "9", REVISION_HISTORY: ",".join(["1234"] * 400)}}, "spec": {}}
    set_new_replica_set_annotations(deployment(), long, "10", exists=True)
    assert len(long["metadata"]["annotations"][REVISION_HISTORY]) <= 2000
    assert long["metadata"]["annotations"][REVISION_HISTORY].endswith(",9")


def test_hash_collision_counts_and_stops():
    d = deployment(replicas=3, image="v2", generation=2)
    impostor = replica_set("v1", replicas=3, revision=1, d=d)
    impostor["metadata"]["name"] = f"web-{compute_hash(d['spec']['template'])}"   # the name v2 wants
    p = plan(d, [impostor], now=NOW)
    assert not only(p.actions, CreateReplicaSet)
    [status] = only(p.actions, UpdateDeploymentStatus)
    assert status.status["collisionCount"] == 1


def test_selecting_everything_does_nothing():
    d = deployment(generation=4, status={"observedGeneration": 3})
    d["spec"]["selector"] = {}
    p = plan(d, [], now=NOW)
    assert p.kinds() == ["UpdateDeploymentStatus"]
    assert p.actions[0].status == {"observedGeneration": 4}


def test_steady_state_plans_nothing():
    d = deployment(replicas=3, generation=2)
    rs = replica_set("nginx:1.25", replicas=3, d=d)
    first = plan(d, [rs], now=NOW)
    [status] = only(first.actions, UpdateDeploymentStatus)
    d2 = deployment(replicas=3, generation=2, status=status.status, annotations={REVISION: "1"})
    again = plan(d2, [rs], now=NOW + timedelta(seconds=30))
    assert again.actions == []


def test_a_set_reporting_more_available_than_asked_for_stops_the_plan():
    # Seen under load: the old set was scaled 5 → 4 but its status still counts 5 available. Counting on
    # that would "clean up" -1 unhealthy replicas (scaling it up to 5) and overrate availability.
    d = deployment(replicas=6, image="v2", surge=1, unavailable=1, generation=7)
    old = replica_set("v1", replicas=4, available=5, revision=1, age=300, d=d)
    new = replica_set("v2", replicas=3, available=2, revision=2, age=10, d=d)   # the surge is used up
    p = plan(d, [old, new], now=NOW)
    assert p.actions == []
    assert p.error == (f"when cleaning up unhealthy replicas, got invalid request to scale down "
                       f"default/{old['metadata']['name']} 4 -> 5")

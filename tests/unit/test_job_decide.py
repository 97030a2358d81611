"""The Job controller's decisions, table-style, without a server."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reconcilers.controllers import job as J

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
UID = "job-uid"


def make_job(*, completions=1, parallelism=1, backoff=6, status=None, **spec):
    s = {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
         "completionMode": "NonIndexed", "suspend": False,
         "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": UID,
                                              "batch.kubernetes.io/job-name": "pi"}},
                      "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}
    s.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "ns", "uid": UID},
            "spec": s, "status": status or {}}


def make_pod(name, phase="Running", *, ready=True, index=None, finalizer=True, uid=None, exit_code=None,
             created="2026-01-01T11:00:00Z", deleting=False, owner=UID, finished="2026-01-01T11:59:00Z"):
    ann = {J.INDEX_KEY: str(index)} if index is not None else {}
    pod = {"metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}", "annotations": ann,
                        "creationTimestamp": created,
                        "finalizers": [J.TRACKING_FINALIZER] if finalizer else [],
                        "ownerReferences": [{"kind": "Job", "name": "pi", "uid": owner, "controller": True}]},
           "spec": {"nodeName": "n1"},
           "status": {"phase": phase,
                      "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                      "lastTransitionTime": finished}]}}
    if exit_code is not None:
        pod["status"]["containerStatuses"] = [{"name": "c", "state": {"terminated": {
            "exitCode": exit_code, "finishedAt": finished}}}]
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:30Z"
    return pod


def names(plan_pods):
    return sorted(p["metadata"]["generateName"] for p in plan_pods)


CASES = [
    # name, job, pods, expected (create count, delete names, strip names, selected status fields)
    ("new job starts parallelism pods", make_job(completions=5, parallelism=2), [],
     dict(create=2, delete=[], strip=[], status={"active": 2})),
    ("never more than parallelism", make_job(completions=5, parallelism=2),
     [make_pod("a"), make_pod("b")], dict(create=0, delete=[], strip=[], status={"active": 2, "ready": 2})),
    ("too many active: delete not-ready first", make_job(completions=5, parallelism=1),
     [make_pod("a"), make_pod("b", ready=False)], dict(create=0, delete=["b"], strip=[], status={"active": 1})),
    ("remaining completions bound the active count",
     make_job(completions=5, parallelism=3, status={"succeeded": 4}), [],
     dict(create=1, delete=[], strip=[], status={"succeeded": 4})),
    ("a success is counted through the finalizer", make_job(completions=2, parallelism=1),
     [make_pod("a", "Succeeded", ready=False)],
     dict(create=1, delete=[], strip=["a"], status={"succeeded": 1, "active": 1})),
    ("completions reached: Complete", make_job(completions=1, status={"startTime": "2026-01-01T11:00:00Z"}),
     [make_pod("a", "Succeeded", ready=False)],
     dict(create=0, delete=[], strip=["a"], status={"succeeded": 1, "completionTime": "2026-01-01T12:00:00Z"},
          condition=("Complete", "CompletionsReached"))),
    ("an already counted pod is not counted twice", make_job(completions=2, status={"succeeded": 1}),
     [make_pod("a", "Succeeded", finalizer=False)], dict(create=1, delete=[], strip=[], status={"succeeded": 1})),
    ("uncounted pods move into the counters",
     make_job(completions=3, status={"uncountedTerminatedPods": {"succeeded": ["uid-a"]}}),
     [make_pod("a", "Succeeded", finalizer=True)],
     dict(create=1, delete=[], strip=["a"], status={"succeeded": 1, "uncountedTerminatedPods": {}})),
    ("failures beyond backoffLimit fail the job", make_job(completions=1, backoff=1, status={"failed": 1}),
     [make_pod("b", "Failed", exit_code=1)],
     dict(create=0, delete=[], strip=["b"], status={"failed": 2},
          condition=("Failed", "BackoffLimitExceeded"))),
    ("a failed job's running pods are deleted", make_job(completions=2, parallelism=2, backoff=0),
     [make_pod("a"), make_pod("b", "Failed", exit_code=2)],
     dict(create=0, delete=["a"], strip=["b"], status={"failed": 1}, condition=("Failed", "BackoffLimitExceeded"))),
    ("deadline exceeded", make_job(activeDeadlineSeconds=30, status={"startTime": "2026-01-01T11:59:00Z"}),
     [make_pod("a")], dict(create=0, delete=["a"], strip=[], status={}, condition=("Failed", "DeadlineExceeded"))),
    ("a pod being deleted counts as failed", make_job(completions=1),
     [make_pod("a", deleting=True)], dict(create=1, delete=[], strip=["a"], status={"failed": 1, "active": 1})),
    ("suspended: running pods deleted", make_job(suspend=True), [make_pod("a")],
     dict(create=0, delete=["a"], strip=[], status={}, condition=("Suspended", "JobSuspended"))),
    ("work queue: no new pods after a success", make_job(completions=None, parallelism=3),
     [make_pod("a", "Succeeded", ready=False), make_pod("b")],
     dict(create=0, delete=[], strip=["a"], status={"succeeded": 1, "active": 1})),
    ("work queue: complete once all finished", make_job(completions=None, parallelism=3),
     [make_pod("a", "Succeeded", ready=False)],
     dict(create=0, delete=[], strip=["a"], status={"succeeded": 1}, condition=("Complete", "CompletionsReached"))),
    ("someone else's pod is ignored", make_job(completions=1), [make_pod("x", owner="other")],
     dict(create=1, delete=[], strip=[], status={"active": 1})),
]


@pytest.mark.parametrize("name,job,pods,want", CASES, ids=[c[0] for c in CASES])
def test_decide(name, job, pods, want):
    plan = J.decide(job, pods, NOW, backoff_base=0)
    assert len(plan.create) == want["create"]
    assert sorted(plan.delete) == sorted(want["delete"])
    assert sorted(plan.strip_finalizers) == sorted(want["strip"])
    status = plan.status if plan.status is not None else job["status"]
    for k, v in want["status"].items():
        assert status.get(k) == v, (k, status)
    if "condition" in want:
        type_, reason = want["condition"]
        c = next(c for c in status["conditions"] if c["type"] == type_)
        assert (c["status"], c["reason"]) == ("True", reason)
    else:
        assert not any(c["type"] in ("Complete", "Failed") for c in status.get("conditions") or [])


def test_new_pods_carry_owner_labels_and_finalizer():
    plan = J.decide(make_job(completions=1), [], NOW)
    pod = plan.create[0]
    m = pod["metadata"]
    assert m["generateName"] == "pi-" and m["finalizers"] == [J.TRACKING_FINALIZER]
    assert m["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": UID,
                                     "controller": True, "blockOwnerDeletion": True}]
    assert m["labels"]["batch.kubernetes.io/controller-uid"] == UID
    assert m["labels"]["batch.kubernetes.io/job-name"] == "pi"
    assert plan.status["startTime"] == "2026-01-01T12:00:00Z"


def test_interim_status_records_uncounted_pods_before_finalizers_go():
    plan = J.decide(make_job(completions=3), [make_pod("a", "Succeeded"), make_pod("b", "Failed", exit_code=1)], NOW)
    assert plan.interim_status["uncountedTerminatedPods"] == {"succeeded": ["uid-a"], "failed": ["uid-b"]}
    assert plan.status["uncountedTerminatedPods"] == {}
    assert (plan.status["succeeded"], plan.status["failed"]) == (1, 1)


INDEXED = [
    ("indexed starts the lowest indexes", {}, [], ["pi-0-", "pi-1-"], [], "", None),
    ("indexed skips completed and running indexes", {"completedIndexes": "0"},
     [make_pod("p1", index=1)], ["pi-2-"], [], "0", None),
    ("a success completes its index", {"completedIndexes": "0,2"},
     [make_pod("p1", "Succeeded", index=1)], [], [], "0-2", "Complete"),
    ("a duplicate of an index is deleted", {},
     [make_pod("p0a", index=0, created="2026-01-01T11:00:00Z"), make_pod("p0b", index=0, created="2026-01-01T11:01:00Z")],
     ["pi-1-"], ["p0b"], "", None),
    ("a running index beyond parallelism waits", {"completedIndexes": "1"},
     [make_pod("p0", index=0), make_pod("p2", index=2)], [], [], "1", None),
]


@pytest.mark.parametrize("name,status,pods,create,delete,completed,cond", INDEXED, ids=[c[0] for c in INDEXED])
def test_indexed(name, status, pods, create, delete, completed, cond):
    job = make_job(completions=3, parallelism=2, completionMode="Indexed", status=status)
    plan = J.decide(job, pods, NOW)
    assert names(plan.create) == create
    assert sorted(plan.delete) == delete
    out = plan.status or job["status"]
    assert out["completedIndexes"] == completed
    assert (J.finished_condition({"status": out}) or {}).get("type") == cond


def test_indexed_pod_identity():
    plan = J.decide(make_job(completions=2, parallelism=1, completionMode="Indexed"), [], NOW)
    pod = plan.create[0]
    assert pod["metadata"]["annotations"][J.INDEX_KEY] == "0" and pod["metadata"]["labels"][J.INDEX_KEY] == "0"
    assert pod["spec"]["hostname"] == "pi-0"
    assert pod["spec"]["containers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]


@pytest.mark.parametrize("text,indexes", [("", set()), ("0", {0}), ("1,3-5", {1, 3, 4, 5}), ("0-2,4,6-7", {0, 1, 2, 4, 6, 7})])
def test_index_ranges_round_trip(text, indexes):
    assert J.parse_indexes(text) == indexes
    assert J.format_indexes(indexes) == text


POLICY = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
                    {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}}]}


@pytest.mark.parametrize("name,pod,failed,create,reason", [
    ("FailJob on exit code 42", make_pod("a", "Failed", exit_code=42), 1, 0, "PodFailurePolicy"),
    ("Count on any other code", make_pod("a", "Failed", exit_code=3), 1, 1, None),
    ("Ignore a disruption: replaced, not counted",
     {**make_pod("a", "Failed", exit_code=3), "status": {"phase": "Failed", "conditions": [
         {"type": "DisruptionTarget", "status": "True"}]}}, 0, 1, None),
])
def test_pod_failure_policy(name, pod, failed, create, reason):
    plan = J.decide(make_job(completions=1, podFailurePolicy=POLICY), [pod], NOW, backoff_base=0)
    assert plan.status.get("failed", 0) == failed
    assert len(plan.create) == create
    done = J.finished_condition({"status": plan.status})
    assert (done or {}).get("reason") == reason
    if reason:
        assert done["message"] == "Container c for pod ns/a failed with exit code 42 matching FailJob rule at index 1"


def test_retries_wait_for_the_backoff():
    job = make_job(completions=1, status={"failed": 1})
    failed = make_pod("a", "Failed", exit_code=1, finalizer=False, finished="2026-01-01T11:59:55Z")
    plan = J.decide(job, [failed], NOW, backoff_base=10)
    assert plan.create == [] and plan.requeue_after == pytest.approx(5)
    plan = J.decide(job, [failed], NOW + timedelta(seconds=6), backoff_base=10)
    assert len(plan.create) == 1


def test_ttl_after_finished():
    done = {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T11:59:50Z"}],
            "completionTime": "2026-01-01T11:59:50Z", "succeeded": 1, "uncountedTerminatedPods": {},
            "startTime": "2026-01-01T11:59:00Z", "ready": 0}
    job = make_job(ttlSecondsAfterFinished=30, status=done)
    plan = J.decide(job, [], NOW)
    assert not plan.delete_job and plan.requeue_after == pytest.approx(20)
    plan = J.decide(job, [], NOW + timedelta(seconds=25))
    assert plan.delete_job


def test_orphans_are_pods_whose_job_is_gone_or_replaced():
    pods = [make_pod("a", finalizer=True), make_pod("b", finalizer=False), make_pod("c", owner="old")]
    assert J.orphans(pods, None) == ["a", "c"]
    assert J.orphans(pods, make_job()) == ["c"]


def test_at_most_500_pods_per_sync():
    plan = J.decide(make_job(completions=2000, parallelism=1000), [], NOW)
    assert len(plan.create) == 500 and plan.status["active"] == 500


def test_read_barrier_waits_for_the_informer_to_reach_our_writes():
    """_workload.ReadBarrier, which the Job loop (and the other workload loops) use instead of expectations."""
    from types import SimpleNamespace

    from reconcilers.controllers._workload import ReadBarrier

    pods, jobs = SimpleNamespace(resource_version="10"), SimpleNamespace(resource_version="10")
    b = ReadBarrier()
    assert b.passed("ns/pi")
    b.wrote("ns/pi", pods, {"metadata": {"resourceVersion": "12"}})
    b.wrote("ns/pi", pods, {"metadata": {"resourceVersion": "11"}})   # the highest position is kept
    b.wrote("ns/pi", jobs, {"metadata": {"resourceVersion": "13"}})
    b.wrote("ns/pi", jobs, None)                                       # a write with no answer waits for nothing
    assert not b.passed("ns/pi") and b.passed("ns/other")
    pods.resource_version = "12"
    assert not b.passed("ns/pi")          # the jobs informer has not seen position 13 yet
    jobs.resource_version = "20"
    assert b.passed("ns/pi")


@pytest.mark.parametrize("policy,create", [("TerminatingOrFailed", 1), ("Failed", 0)])
def test_pod_replacement_policy(policy, create):
    job = make_job(completions=1, podReplacementPolicy=policy)
    plan = J.decide(job, [make_pod("a", deleting=True)], NOW, backoff_base=0)
    assert len(plan.create) == create and plan.status["terminating"] == 1


def indexed_job(**spec):
    return make_job(completions=4, parallelism=4, completionMode="Indexed", **spec)


@pytest.mark.parametrize("rules,completed,met", [
    ([{"succeededIndexes": "0"}], "0", 0),
    ([{"succeededIndexes": "0-1"}], "0", None),
    ([{"succeededCount": 2}], "1,3", 0),
    ([{"succeededIndexes": "1-3", "succeededCount": 2}], "0-1", None),
    ([{"succeededIndexes": "1-3", "succeededCount": 2}, {"succeededIndexes": "0-1"}], "0-1", 1),
])
def test_success_policy(rules, completed, met):
    job = indexed_job(successPolicy={"rules": rules}, status={"completedIndexes": completed})
    plan = J.decide(job, [make_pod("p2", index=2)], NOW)
    done = J.finished_condition({"status": plan.status})
    if met is None:
        assert done is None
    else:
        assert (done["type"], done["reason"], done["message"]) == ("Complete", "SuccessPolicy",
                                                                   f"Matched rules at index {met}")
        assert plan.delete == ["p2"]   # the rest is not needed


def failed_pod(name, index, count):
    pod = make_pod(name, "Failed", index=index, exit_code=1)
    pod["metadata"]["annotations"][J.FAILURE_COUNT] = str(count)
    return pod


def test_backoff_limit_per_index():
    job = indexed_job(backoffLimitPerIndex=1, backoffLimit=2147483647)
    # index 0 failed once: retried, and its new pod carries the count
    plan = J.decide(job, [failed_pod("a", 0, 0), make_pod("b", index=1), make_pod("c", index=2),
                          make_pod("d", index=3)], NOW, backoff_base=0)
    [retry] = plan.create
    assert retry["metadata"]["annotations"][J.INDEX_KEY] == "0"
    assert retry["metadata"]["annotations"][J.FAILURE_COUNT] == "1"
    assert plan.status["failedIndexes"] == ""
    # index 0 failed a second time: given up, not retried; the others go on
    plan = J.decide(job, [failed_pod("a", 0, 0), failed_pod("a2", 0, 1), make_pod("b", index=1),
                          make_pod("c", index=2), make_pod("d", index=3)], NOW, backoff_base=0)
    assert plan.create == [] and plan.status["failedIndexes"] == "0"
    assert J.finished_condition({"status": plan.status}) is None
    # once every other index succeeded: Failed, FailedIndexes
    job = indexed_job(backoffLimitPerIndex=1, status={"completedIndexes": "1-3", "failedIndexes": "0"})
    plan = J.decide(job, [], NOW)
    done = J.finished_condition({"status": plan.status})
    assert (done["type"], done["reason"], done["message"]) == ("Failed", "FailedIndexes", "Job has failed indexes")


def test_max_failed_indexes_and_fail_index_action():
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]}
    job = indexed_job(backoffLimitPerIndex=3, maxFailedIndexes=0, podFailurePolicy=policy)
    plan = J.decide(job, [failed_pod("a", 2, 0), make_pod("b", index=0)], NOW, backoff_base=0)
    assert plan.status["failedIndexes"] == "2"
    done = J.finished_condition({"status": plan.status})
    assert (done["type"], done["reason"]) == ("Failed", "MaxFailedIndexesExceeded")
    assert plan.delete == ["b"]

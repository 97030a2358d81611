"""Job and CronJob controllers against a real API server, with kubectl; pods made Running and
finished by a fake kubelet (tests/integration/_fake_kubelet.py)."""
from __future__ import annotations

import json

import pytest

from eventplane.client import Client
from reconcilers.controllers import job as job_controller
from tests.integration._fake_kubelet import FakeKubelet
from tests.support.controllers import background, eventually, running


controllers = running   # the name the workload tests import from here


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """`eventually` with the 30 s these (and the importing workload) tests allow by default."""
    return await eventually(predicate, timeout, interval=interval)


async def pod_events(client: Client, namespace: str, after: str, until: int) -> list[tuple[str, dict]]:
    """Every pod event of the namespace after position `after`, up to position `until`: the event history."""
    events = []
    async with client.watch("pods", namespace=namespace, resource_version=after, timeout=30) as w:
        async for type_, obj in w:
            events.append((type_, obj))
            if int(obj["metadata"]["resourceVersion"]) >= until:
                break
    return events


def max_running(events: list[tuple[str, dict]]) -> int:
    """The most pods that were active (created, not yet finished or deleted) at any position."""
    running: set[str] = set()
    most = 0
    for type_, pod in events:
        uid = pod["metadata"]["uid"]
        finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") \
            or pod["metadata"].get("deletionTimestamp") or type_ == "DELETED"
        if finished:
            running.discard(uid)
        else:
            running.add(uid)
        most = max(most, len(running))
    return most


def job_manifest(name: str, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}},
                     **spec}}


def condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


async def test_completions_5_parallelism_2_never_more_than_2_running(api):
    async with controllers(api, job_controller.build, options={"job_backoff_seconds": 0}) as c, \
            FakeKubelet(c, "default", lambda pod: ("Succeeded", 0.3)):
        before = (await c.list("pods", namespace="default"))["metadata"]["resourceVersion"]
        await api.ok("apply", "-f", "-", input=json.dumps(job_manifest("pi", completions=5, parallelism=2)))
        await api.ok("wait", "--for=condition=complete", "job/pi", "--timeout=60s", timeout=70)
        job = await c.get("jobs", "pi", namespace="default")
        st = job["status"]
        assert (st["succeeded"], st.get("active", 0), st.get("failed", 0)) == (5, 0, 0)
        assert st["startTime"] and st["completionTime"] and st["uncountedTerminatedPods"] == {}
        assert condition(job, "Complete")["reason"] == "CompletionsReached"
        pods = (await c.list("pods", namespace="default", label_selector="batch.kubernetes.io/job-name=pi"))["items"]
        assert len(pods) == 5
        for p in pods:
            m = p["metadata"]
            assert m["name"].startswith("pi-") and "batch.kubernetes.io/job-tracking" not in (m.get("finalizers") or [])
            assert m["labels"]["batch.kubernetes.io/controller-uid"] == job["metadata"]["uid"]
            assert m["ownerReferences"][0]["kind"] == "Job" and m["ownerReferences"][0]["controller"] is True
        last = max(int(p["metadata"]["resourceVersion"]) for p in pods)
        events = await pod_events(c, "default", before, last)
        assert max_running(events) == 2          # parallelism reached, never exceeded
        # the pods' creations were caused by the Job's events (causation chain)
        created = next(i for i in (await c.history("pods", pods[0]["metadata"]["name"]))["items"])
        assert created["causation"] is not None
        out = await api.ok("get", "job", "pi")
        assert "5/5" in out

        async def described():   # Events, written in the background, as kubectl describe shows them
            reasons = [(e["reason"], e["message"]) for e in (await c.list("events", namespace="default"))["items"]
                       if e["involvedObject"]["name"] == "pi" and e["involvedObject"]["kind"] == "Job"]
            return len([r for r in reasons if r[0] == "SuccessfulCreate"]) == 5 and ("Completed", "Job completed") \
                in reasons
        await wait_for(described)
        out = await api.ok("describe", "job", "pi")
        assert "SuccessfulCreate" in out and "Job completed" in out


async def test_backoff_limit_fails_the_job(api):
    async with controllers(api, job_controller.build, options={"job_backoff_seconds": 0}) as c, \
            FakeKubelet(c, "default", lambda pod: ("Failed", 0.05, 1)):
        await c.create(job_manifest("flaky", backoffLimit=1))
        await api.ok("wait", "--for=condition=failed", "job/flaky", "--timeout=60s", timeout=70)
        job = await c.get("jobs", "flaky", namespace="default")
        failed = condition(job, "Failed")
        assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded",
                                                         "Job has reached the specified backoff limit")
        assert job["status"]["failed"] == 2 and "succeeded" not in job["status"]
        assert condition(job, "Complete") is None and "completionTime" not in job["status"]


async def test_pod_failure_policy_fail_job_on_exit_code(api):
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    async with controllers(api, job_controller.build, options={"job_backoff_seconds": 0}) as c, \
            FakeKubelet(c, "default", lambda pod: ("Failed", 0.05, 42)):
        await c.create(job_manifest("strict", backoffLimit=6, podFailurePolicy=policy))
        await api.ok("wait", "--for=condition=failed", "job/strict", "--timeout=60s", timeout=70)
        job = await c.get("jobs", "strict", namespace="default")
        assert condition(job, "Failed")["reason"] == "PodFailurePolicy"
        assert "failed with exit code 42 matching FailJob rule at index 0" in condition(job, "Failed")["message"]
        assert job["status"]["failed"] == 1


async def test_indexed_job_gives_each_pod_its_index(api):
    async with controllers(api, job_controller.build) as c, FakeKubelet(c, "default", lambda pod: ("Succeeded", 0.1)):
        await c.create(job_manifest("idx", completions=3, parallelism=3, completionMode="Indexed"))
        await api.ok("wait", "--for=condition=complete", "job/idx", "--timeout=60s", timeout=70)
        job = await c.get("jobs", "idx", namespace="default")
        assert job["status"]["completedIndexes"] == "0-2" and job["status"]["succeeded"] == 3
        pods = (await c.list("pods", namespace="default"))["items"]
        by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods}
        assert sorted(by_index) == ["0", "1", "2"]
        for i, p in by_index.items():
            assert p["metadata"]["name"].startswith(f"idx-{i}-")
            assert p["spec"]["hostname"] == f"idx-{i}"
            env = p["spec"]["containers"][0]["env"]
            assert env[0]["name"] == "JOB_COMPLETION_INDEX"


async def test_active_deadline_and_ttl_after_finished(api):
    async with controllers(api, job_controller.build) as c, FakeKubelet(c, "default"):   # pods run forever
        await c.create(job_manifest("slow", activeDeadlineSeconds=1, ttlSecondsAfterFinished=2, parallelism=2,
                                    completions=2))

        async def job_gone():
            try:
                await c.get("jobs", "slow", namespace="default")
            except Exception as exc:   # NotFound once the TTL passed
                return "not found" in str(exc).lower()
            return False
        await wait_for(job_gone, timeout=30)
        h = await c.history("jobs", "slow", namespace="default")
        assert h["items"][-1]["type"] == "Deleted" and h["items"][-1]["causation"] is not None
        # the Job as it was just before the TTL removed it (time travel): failed on its deadline
        job = await c.get_at("jobs", "slow", h["items"][-2]["resourceVersion"], namespace="default")
        failed = condition(job, "Failed")
        assert (failed["reason"], failed["message"]) == ("DeadlineExceeded",
                                                         "Job was active longer than specified deadline")
        assert job["status"].get("active", 0) == 0 and job["status"]["failed"] == 2

        async def pods_gone():
            return not (await c.list("pods", namespace="default"))["items"]
        await wait_for(pods_gone)   # running pods deleted (unbound: at once, once the finalizer is off)


async def test_indexed_job_with_backoff_limit_per_index_and_success_policy(api):
    def script(pod):   # index 1 always fails; the others succeed
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        return ("Failed", 0.05, 1) if index == "1" else ("Succeeded", 0.1)

    async with controllers(api, job_controller.build, options={"job_backoff_seconds": 0}) as c, \
            FakeKubelet(c, "default", script):
        await c.create(job_manifest("per-index", completions=3, parallelism=3, completionMode="Indexed",
                                    backoffLimitPerIndex=1))
        await api.ok("wait", "--for=condition=failed", "job/per-index", "--timeout=60s", timeout=70)
        job = await c.get("jobs", "per-index", namespace="default")
        st = job["status"]
        assert (st["completedIndexes"], st["failedIndexes"], st["failed"]) == ("0,2", "1", 2)
        assert condition(job, "Failed")["reason"] == "FailedIndexes"
        counts = sorted(p["metadata"]["annotations"].get("batch.kubernetes.io/job-index-failure-count")
                        for p in (await c.list("pods", namespace="default"))["items"]
                        if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1")
        assert counts == ["0", "1"]   # the retry knew it was the second attempt

        await c.create(job_manifest("enough", completions=3, parallelism=3, completionMode="Indexed",
                                    successPolicy={"rules": [{"succeededIndexes": "0"}]}))
        await api.ok("wait", "--for=condition=complete", "job/enough", "--timeout=60s", timeout=70)
        job = await c.get("jobs", "enough", namespace="default")
        assert condition(job, "Complete")["reason"] == "SuccessPolicy"
        assert condition(job, "SuccessCriteriaMet")["message"] == "Matched rules at index 0"


@pytest.mark.parametrize("suspend_first", [True])
async def test_suspend_and_resume(api, suspend_first):
    async with controllers(api, job_controller.build) as c, FakeKubelet(c, "default", lambda pod: ("Succeeded", 0.2)):
        await c.create(job_manifest("later", suspend=True))

        async def suspended():
            j = await c.get("jobs", "later", namespace="default")
            return condition(j, "Suspended") and condition(j, "Suspended")["status"] == "True"
        await wait_for(suspended)
        assert not (await c.list("pods", namespace="default"))["items"]
        await api.ok("patch", "job", "later", "--type=merge", "-p", '{"spec":{"suspend":false}}')
        await api.ok("wait", "--for=condition=complete", "job/later", "--timeout=30s", timeout=40)
        j = await c.get("jobs", "later", namespace="default")
        assert condition(j, "Suspended")["status"] == "False" and condition(j, "Suspended")["reason"] == "JobResumed"


async def test_a_cronjob_fires_and_its_job_completes(api):
    """The schedule is every minute; a test clock (ctx.options["clock"]) stands 1.5 s before a minute
    boundary so the run comes at once instead of up to a minute later."""
    from datetime import datetime, timedelta, timezone

    from reconcilers.controllers import cronjob as cronjob_controller

    real = datetime.now(timezone.utc)
    boundary = (real + timedelta(seconds=65)).replace(second=0, microsecond=0)
    offset = boundary - real - timedelta(seconds=1.5)

    def clock():
        return datetime.now(timezone.utc) + offset

    manifest = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": "default"},
                "spec": {"schedule": "* * * * *", "successfulJobsHistoryLimit": 1,
                         "jobTemplate": {"spec": {"template": {"spec": {
                             "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}
    async with controllers(api, job_controller.build, cronjob_controller.build, options={"clock": clock}) as c, \
            FakeKubelet(c, "default", lambda pod: ("Succeeded", 0.2)):
        await api.ok("apply", "-f", "-", input=json.dumps(manifest))

        async def succeeded():
            cj = await c.get("cronjobs", "tick", namespace="default")
            return cj if (cj.get("status") or {}).get("lastSuccessfulTime") else None
        cj = await wait_for(succeeded, timeout=30)
        scheduled = datetime.fromisoformat(cj["status"]["lastScheduleTime"].replace("Z", "+00:00"))
        assert scheduled.second == 0
        jobs = (await c.list("jobs", namespace="default"))["items"]
        name = f"tick-{int(scheduled.timestamp()) // 60}"
        assert name in [j["metadata"]["name"] for j in jobs]
        job = next(j for j in jobs if j["metadata"]["name"] == name)
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
            cj["status"]["lastScheduleTime"]
        assert "active" not in cj["status"]
        out = await api.ok("get", "cronjob", "tick")
        assert "* * * * *" in out


async def test_deleting_a_running_job_leaves_no_pods_behind(api):
    """kubectl delete job: the garbage collector deletes the pods, and the Job controller lets go of the
    job-tracking finalizer that would otherwise hold them forever."""
    from reconcilers.controllers import garbagecollector

    async with controllers(api, job_controller.build, garbagecollector.build) as c, FakeKubelet(c, "default"):
        await c.create(job_manifest("forever", parallelism=2, completions=4))

        async def running():
            pods = (await c.list("pods", namespace="default"))["items"]
            return len([p for p in pods if p["status"].get("phase") == "Running"]) == 2
        await wait_for(running)
        await api.ok("delete", "job", "forever", "--wait=false")

        async def empty():
            return not (await c.list("pods", namespace="default"))["items"]
        await wait_for(empty)


async def test_job_with_the_scheduler_and_simulated_nodes(api, servers):
    """No fake kubelet: the real scheduler binds the Job's pods, simulated nodes run them for 0.3 s."""
    import uuid

    from nodeagent.simulated import RUN_SECONDS, SimulatedNodes, SimulatorConfig
    from reconcilers.scheduler.scheduler import run_scheduler

    async with controllers(api, job_controller.build, options={"job_backoff_seconds": 0}) as c:
        config = SimulatorConfig(count=2, lease_bucket=f"leases-{uuid.uuid4().hex[:8]}", holder="test-job")
        async with background(SimulatedNodes(c, servers.nats_url, config).run(),
                              run_scheduler(c, identity="test-job", leader_elect=False)):
            manifest = job_manifest("sim", completions=4, parallelism=2)
            manifest["spec"]["template"]["metadata"] = {"annotations": {RUN_SECONDS: "0.3"}}
            before = (await c.list("pods", namespace="default"))["metadata"]["resourceVersion"]
            await api.ok("apply", "-f", "-", input=json.dumps(manifest))
            await api.ok("wait", "--for=condition=complete", "job/sim", "--timeout=60s", timeout=70)
            pods = (await c.list("pods", namespace="default"))["items"]
            assert len(pods) == 4 and all(p["spec"].get("nodeName") for p in pods)
            events = await pod_events(c, "default", before, max(int(p["metadata"]["resourceVersion"]) for p in pods))
            assert max_running(events) == 2

"""The Job controller: pods run to completion, counted, retried, bounded in time.

Fed by the jobs and pods informers (a pod's change wakes its Job); `decide`
is a pure function of (Job, its pods, now) to a `JobPlan`, which the thin
loop `JobController` applies through the client: an interim status (newly
finished pods recorded in uncountedTerminatedPods), the removal of the
batch.kubernetes.io/job-tracking finalizer from those pods, pod deletions and
creations, the final status, and the deletion of a finished Job whose
ttlSecondsAfterFinished has passed. Every write carries the causation of the
event that woke the Job.

Behaviour follows Kubernetes' job controller (pkg/controller/job):
completions and parallelism (never more than `parallelism` active pods),
NonIndexed and Indexed completion modes (the index in the annotation and label
batch.kubernetes.io/job-completion-index, JOB_COMPLETION_INDEX from the
downward API, hostname `<job>-<index>`), backoffLimit (Failed,
BackoffLimitExceeded) with exponential delay between retries,
activeDeadlineSeconds (Failed, DeadlineExceeded), suspend, pod failure
policies (FailJob, Ignore, Count on exit codes and pod conditions) and
status.ready/active/succeeded/failed/startTime/completionTime/completedIndexes.
Pods are counted through the job-tracking finalizer, so a pod deleted before
it was counted is still counted: a finished pod first goes to
status.uncountedTerminatedPods, then loses its finalizer, then moves into the
counters.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eventplane.objects import errors
from reconcilers.informer import label_value
from reconcilers.runner import Request

from . import _workload as w
from .podcontrol import slow_start
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.job")

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
JOB_NAME = "batch.kubernetes.io/job-name"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
DEFAULT_BACKOFF = 10.0       # seconds; doubled for every failure
MAX_BACKOFF = 360.0          # Kubernetes' DefaultJobPodFailureBackOff cap (6 minutes)
MAX_PODS_PER_SYNC = 500      # Kubernetes' MaxPodCreateDeletePerSync


@dataclass
class JobPlan:
    """What to do for one Job, in order."""

    interim_status: Obj | None = None           # with newly finished pods in uncountedTerminatedPods
    strip_finalizers: list[str] = field(default_factory=list)   # pod names
    delete: list[str] = field(default_factory=list)             # pod names
    create: list[Obj] = field(default_factory=list)             # pod manifests
    status: Obj | None = None                   # the status to write last (None: unchanged)
    delete_job: bool = False                    # ttlSecondsAfterFinished has passed
    requeue_after: float | None = None          # a deadline, a TTL or a retry backoff to wake for


# --- pure helpers -------------------------------------------------------------------------------

def parse_indexes(text: str | None) -> set[int]:
    """"1,3-5" → {1, 3, 4, 5}: status.completedIndexes."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def format_indexes(indexes: set[int]) -> str:
    """{1, 3, 4, 5} → "1,3-5"."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def pod_index(pod: Obj) -> int | None:
    value = (w.meta(pod).get("annotations") or {}).get(INDEX_KEY)
    if value is None:
        value = (w.meta(pod).get("labels") or {}).get(INDEX_KEY)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _finished(pod: Obj) -> bool:
    """Done as far as the Job is concerned: terminal, or being deleted before it succeeded."""
    return w.terminated(pod) or w.deleting(pod)


def _succeeded(pod: Obj) -> bool:
    return w.phase(pod) == "Succeeded"


def _finish_time(pod: Obj) -> datetime | None:
    times = []
    status = pod.get("status") or {}
    for cs in [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]:
        t = w.parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t:
            times.append(t)
    if not times:
        for c in status.get("conditions") or []:
            t = w.parse_time(c.get("lastTransitionTime"))
            if t:
                times.append(t)
    if not times:
        t = w.parse_time(w.meta(pod).get("deletionTimestamp")) or w.parse_time(w.meta(pod).get("creationTimestamp"))
        if t:
            times.append(t)
    return max(times) if times else None


def match_failure_policy(job: Obj, pod: Obj) -> tuple[str, str] | None:
    """(action, message) of the first podFailurePolicy rule a failed pod matches, or None."""
    policy = (job.get("spec") or {}).get("podFailurePolicy") or {}
    pm = w.meta(pod)
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action") or ""
        codes = rule.get("onExitCodes")
        if codes:
            values = set(codes.get("values") or [])
            want = codes.get("containerName")
            for cs in statuses:
                term = (cs.get("state") or {}).get("terminated")
                if not term or (want and cs.get("name") != want):
                    continue
                code = term.get("exitCode", 0)
                if code == 0:
                    continue   # as Kubernetes: a container that exited 0 never matches
                hit = code in values if codes.get("operator") == "In" else code not in values
                if hit:
                    return action, (f"Container {cs.get('name')} for pod {pm.get('namespace')}/{pm.get('name')} "
                                    f"failed with exit code {code} matching {action} rule at index {i}")
        for pattern in rule.get("onPodConditions") or []:
            c = w.condition(pod, pattern.get("type") or "")
            if c is not None and c.get("status") == (pattern.get("status") or "True"):
                return action, (f"Pod {pm.get('namespace')}/{pm.get('name')} has condition {pattern.get('type')} "
                                f"matching {action} rule at index {i}")
    return None


def new_job_pod(job: Obj, index: int | None, failures: int | None = None) -> Obj:
    jm, spec = w.meta(job), job.get("spec") or {}
    name = jm.get("name") or ""
    labels = {JOB_NAME: name, CONTROLLER_UID: jm.get("uid") or ""}
    annotations: dict[str, str] = {}
    if index is not None:
        labels[INDEX_KEY] = str(index)
        annotations[INDEX_KEY] = str(index)
        if failures is not None:   # backoffLimitPerIndex: how often this index failed before
            annotations[FAILURE_COUNT] = str(failures)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    labels = {k: v for k, v in labels.items() if k not in template_labels or k == INDEX_KEY}
    pod = w.new_pod(spec.get("template"), namespace=jm.get("namespace") or "default",
                    owner_ref=w.owner_reference(job, api_version="batch/v1", kind="Job"),
                    generate_name=f"{name}-" if index is None else f"{name}-{index}-",
                    labels=labels, annotations=annotations, finalizers=[TRACKING_FINALIZER])
    if index is not None:
        pspec = pod["spec"]
        if not pspec.get("hostname"):
            pspec["hostname"] = f"{name}-{index}"
        env = {"name": "JOB_COMPLETION_INDEX",
               "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}}
        for c in [*(pspec.get("initContainers") or []), *(pspec.get("containers") or [])]:
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in c.get("env") or []):
                c["env"] = [*(c.get("env") or []), dict(env)]
    return pod


def success_rule(job: Obj, completed: set[int]) -> int | None:
    """The index of the first successPolicy rule the completed indexes satisfy (Indexed Jobs)."""
    for i, rule in enumerate(((job.get("spec") or {}).get("successPolicy") or {}).get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            wanted = parse_indexes(rule["succeededIndexes"])
            got = len(completed & wanted)
            if (count is not None and got >= count) or (count is None and wanted and wanted <= completed):
                return i
        elif count is not None and len(completed) >= count:
            return i
    return None


def _failure_count(pod: Obj) -> int:
    value = (w.meta(pod).get("annotations") or {}).get(FAILURE_COUNT)
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def finished_condition(job: Obj) -> Obj | None:
    for type_ in ("Complete", "Failed"):
        c = w.condition(job, type_)
        if c is not None and c.get("status") == "True":
            return c
    return None


# --- the decision -------------------------------------------------------------------------------

def decide(job: Obj, pods: list[Obj], at: datetime, *, backoff_base: float = DEFAULT_BACKOFF) -> JobPlan:
    """What the controller does for `job`, given the pods it controls, at time `at`."""
    plan = JobPlan()
    spec = job.get("spec") or {}
    old = job.get("status") or {}
    status: Obj = {k: v for k, v in old.items()}
    pods = [p for p in pods if w.controlled_by(p, job)]
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    parallelism = spec.get("parallelism")
    parallelism = 1 if parallelism is None else max(0, parallelism)

    # 1. Count finished pods through the tracking finalizer.
    uncounted = old.get("uncountedTerminatedPods") or {}
    unc_succeeded = list(uncounted.get("succeeded") or [])
    unc_failed = list(uncounted.get("failed") or [])
    known = set(unc_succeeded) | set(unc_failed)
    new_succeeded, new_failed = [], []
    fail_job: str | None = None
    fail_index: set[int] = set()
    ignored: set[str] = set()
    completed = parse_indexes(old.get("completedIndexes")) if indexed else set()
    for pod in pods:
        pm = w.meta(pod)
        if not _finished(pod) or TRACKING_FINALIZER not in (pm.get("finalizers") or []):
            continue
        plan.strip_finalizers.append(pm["name"])
        if pm.get("uid") in known:
            continue
        if _succeeded(pod):
            new_succeeded.append(pm["uid"])
            continue
        matched = match_failure_policy(job, pod) if w.phase(pod) == "Failed" else None
        if matched and matched[0] == "Ignore":
            ignored.add(pm["uid"])
            continue
        if matched and matched[0] == "FailJob" and fail_job is None:
            fail_job = matched[1]
        if matched and matched[0] == "FailIndex" and pod_index(pod) is not None:
            fail_index.add(pod_index(pod))   # type: ignore[arg-type]
        new_failed.append(pm["uid"])
    succeeded_uids = set(unc_succeeded) | set(new_succeeded)
    for pod in pods:   # every succeeded pod of ours marks its index, counted now or before
        if indexed and _succeeded(pod) and (w.meta(pod).get("uid") in succeeded_uids
                                            or TRACKING_FINALIZER not in (w.meta(pod).get("finalizers") or [])):
            i = pod_index(pod)
            if i is not None and completions is not None and 0 <= i < completions:
                completed.add(i)
    if new_succeeded or new_failed:
        plan.interim_status = {**old, "uncountedTerminatedPods": {
            **({"succeeded": unc_succeeded + new_succeeded} if unc_succeeded or new_succeeded else {}),
            **({"failed": unc_failed + new_failed} if unc_failed or new_failed else {})}}
    succeeded = (old.get("succeeded") or 0) + len(unc_succeeded) + len(new_succeeded)
    failed = (old.get("failed") or 0) + len(unc_failed) + len(new_failed)
    status["uncountedTerminatedPods"] = {}
    if indexed:
        status["completedIndexes"] = format_indexes(completed)
        succeeded = max(succeeded, len(completed)) if completed else succeeded

    # backoffLimitPerIndex: an index failing more often than allowed is given up, not the whole Job.
    per_index = spec.get("backoffLimitPerIndex") if indexed else None
    index_failures: dict[int, int] = {}
    failed_indexes: set[int] = set()
    if per_index is not None:
        for pod in pods:
            i = pod_index(pod)
            if i is None or not _finished(pod) or _succeeded(pod) or w.meta(pod).get("uid") in ignored:
                continue
            if match_failure_policy(job, pod) is not None and match_failure_policy(job, pod)[0] == "Ignore":
                continue
            index_failures[i] = max(index_failures.get(i, 0), _failure_count(pod) + 1)
        failed_indexes = parse_indexes(old.get("failedIndexes")) | fail_index | {
            i for i, n in index_failures.items() if n > per_index}
        failed_indexes -= completed
        status["failedIndexes"] = format_indexes(failed_indexes)

    running = [p for p in pods if w.active(p)]
    terminating = [p for p in pods if w.deleting(p) and not w.terminated(p)]
    # podReplacementPolicy Failed: no replacement while the pod it replaces is still terminating
    wait_for_terminating = spec.get("podReplacementPolicy") == "Failed"
    blocked_indexes = {pod_index(p) for p in terminating} if wait_for_terminating else set()
    conditions = list(old.get("conditions") or [])
    done = finished_condition(job)

    def finish(kind: str, reason: str, message: str) -> None:
        nonlocal conditions, done
        interim = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
        conditions = w.set_condition(conditions, interim, "True", reason=reason, message=message, at=at)
        conditions = w.set_condition(conditions, kind, "True", reason=reason, message=message, at=at)
        if kind == "Complete":
            status["completionTime"] = w.rfc3339(at)
        done = w.condition({"status": {"conditions": conditions}}, kind)

    # 2. Has it just finished?
    start = w.parse_time(old.get("startTime"))
    if done is None and not spec.get("suspend"):
        backoff_limit = spec.get("backoffLimit")
        deadline = spec.get("activeDeadlineSeconds")
        max_failed = spec.get("maxFailedIndexes")
        if fail_job is not None:
            finish("Failed", "PodFailurePolicy", fail_job)
        elif per_index is not None and max_failed is not None and len(failed_indexes) > max_failed:
            finish("Failed", "MaxFailedIndexesExceeded",
                   "Job has exceeded the specified maximal number of failed indexes")
        elif per_index is not None and failed_indexes and completions is not None and \
                len(completed) + len(failed_indexes) >= completions:
            finish("Failed", "FailedIndexes", "Job has failed indexes")
        elif indexed and (rule := success_rule(job, completed)) is not None:
            finish("Complete", "SuccessPolicy", f"Matched rules at index {rule}")
        elif backoff_limit is not None and failed > backoff_limit:
            finish("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and start is not None and at >= start + timedelta(seconds=deadline):
            finish("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        elif indexed and completions is not None and len(completed) >= completions:
            finish("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        elif not indexed and completions is not None and succeeded >= completions:
            finish("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        elif not indexed and completions is None and succeeded > 0 and not running:
            finish("Complete", "CompletionsReached", "Reached expected number of succeeded pods")

    # 3. Pods to delete and create.
    if done is not None or spec.get("suspend"):
        plan.delete = [w.meta(p)["name"] for p in running]
        running = []
    elif indexed:
        keep: dict[int, Obj] = {}
        for pod in reversed(w.newest_first(running)):   # the oldest pod of an index stays
            i = pod_index(pod)
            if i is None or completions is None or not 0 <= i < completions or i in completed or i in keep \
                    or i in failed_indexes:
                plan.delete.append(w.meta(pod)["name"])
            else:
                keep[i] = pod
        # never more than parallelism: drop the highest indexes first
        for i in sorted(keep, reverse=True)[:max(0, len(keep) - parallelism)]:
            plan.delete.append(w.meta(keep.pop(i))["name"])
        running = list(keep.values())
        room = parallelism - len(running)
        wanted = [i for i in range(completions or 0) if i not in completed and i not in keep
                  and i not in blocked_indexes and i not in failed_indexes][:max(0, room)]
        plan.create = [new_job_pod(job, i, index_failures.get(i, 0) if per_index is not None else None)
                       for i in wanted]
    else:
        if completions is None:
            # a work queue: after the first success, no new pods; the running ones finish
            want = min(len(running), parallelism) if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, completions - succeeded))
        if len(running) > want:
            extra = w.deletion_order(running)[:len(running) - want]
            plan.delete = [w.meta(p)["name"] for p in extra]
            names = set(plan.delete)
            running = [p for p in running if w.meta(p)["name"] not in names]
        elif len(running) < want:
            missing = want - len(running) - (len(terminating) if wait_for_terminating else 0)
            plan.create = [new_job_pod(job, None) for _ in range(max(0, missing))]

    # Retries wait 10 s, 20 s, 40 s … after the last failure, as Kubernetes' pod failure backoff.
    if plan.create and failed > 0 and backoff_base > 0:
        last = max((t for p in pods if not _succeeded(p) and _finished(p) if (t := _finish_time(p))), default=None)
        if last is not None:
            ready_at = last + timedelta(seconds=min(backoff_base * 2 ** (failed - 1), MAX_BACKOFF))
            if at < ready_at:
                plan.create = []
                plan.requeue_after = (ready_at - at).total_seconds()

    plan.create = plan.create[:MAX_PODS_PER_SYNC]   # the rest next time: our own creations wake us

    # 4. The rest of the status.
    if spec.get("suspend") and done is None:
        conditions = w.set_condition(conditions, "Suspended", "True", reason="JobSuspended",
                                     message="Job suspended", at=at)
    elif w.has_condition({"status": {"conditions": conditions}}, "Suspended"):
        conditions = w.set_condition(conditions, "Suspended", "False", reason="JobResumed",
                                     message="Job resumed", at=at)
        status["startTime"] = w.rfc3339(at)
    if not spec.get("suspend") and not status.get("startTime"):
        status["startTime"] = w.rfc3339(at)
    status["active"] = len(running) + len(plan.create)
    status["ready"] = sum(1 for p in running if w.ready(p))
    status["succeeded"] = succeeded
    status["failed"] = failed
    status["terminating"] = len(terminating)
    if conditions:
        status["conditions"] = conditions
    for k in ("active", "succeeded", "failed"):
        if not status[k]:
            status.pop(k)
    if status != old:
        plan.status = status

    # 5. Timers: the active deadline, and the TTL of a finished Job.
    start = w.parse_time(status.get("startTime"))
    if done is None and spec.get("activeDeadlineSeconds") is not None and start is not None:
        left = (start + timedelta(seconds=spec["activeDeadlineSeconds"]) - at).total_seconds()
        plan.requeue_after = min(plan.requeue_after or left, left)
    ttl = spec.get("ttlSecondsAfterFinished")
    if done is not None and ttl is not None:
        ended = w.parse_time(status.get("completionTime")) if done.get("type") == "Complete" else None
        ended = ended or w.parse_time(done.get("lastTransitionTime")) or at
        left = (ended + timedelta(seconds=ttl) - at).total_seconds()
        if left <= 0 and not plan.delete and not plan.strip_finalizers:
            plan.delete_job = True
        else:
            plan.requeue_after = max(0.0, left) if plan.requeue_after is None else min(plan.requeue_after, max(0, left))
    return plan


def orphans(pods: list[Obj], job: Obj | None) -> list[str]:
    """Pods still holding the tracking finalizer for a Job that is gone, being deleted, or was replaced."""
    out = []
    for pod in pods:
        ref = w.controller_of(pod)
        if TRACKING_FINALIZER not in (w.meta(pod).get("finalizers") or []) or not ref or ref.get("kind") != "Job":
            continue
        if job is None or w.deleting(job) or ref.get("uid") != w.meta(job).get("uid"):
            out.append(w.meta(pod)["name"])
    return out


# --- the loop -----------------------------------------------------------------------------------

class JobController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.jobs = ctx.informers.informer("jobs")
        self.pods = ctx.informers.informer("pods")
        self.backoff_base = float(ctx.options.get("job_backoff_seconds", DEFAULT_BACKOFF))  # type: ignore[arg-type]
        self.clock = ctx.options.get("clock") or w.now
        self.barrier = w.ReadBarrier()
        self.events = w.EventRecorder(ctx.client, component="job-controller", instance=ctx.identity,
                                      enabled=bool(ctx.options.get("events", True)))
        self.controller = w.WorkloadController("job", self.jobs, self.reconcile, secondary=[self.pods],
                                               workers=int(ctx.options.get("job_workers", 2)))  # type: ignore[arg-type]
        self.controller.watch_owned(self.pods, "Job")

    async def reconcile(self, req: Request) -> None:
        key = req.key
        if not self.barrier.passed(key):
            self.controller.queue.add_after(key, 0.05)   # our own writes are not in the caches yet
            return
        job = self.jobs.store.get(key)
        same_name = [p for p in self.pods.store.by_index("label", label_value(JOB_NAME, req.name))
                     if w.meta(p).get("namespace") == req.namespace]
        stale = orphans(same_name, job)
        await self._strip(key, req, stale)
        if job is None or w.deleting(job):
            return
        pods = self.pods.store.by_index("owner", w.meta(job)["uid"])
        plan = decide(job, pods, self.clock(), backoff_base=self.backoff_base)
        await self.apply(key, req, job, plan)

    async def apply(self, key: str, req: Request, job: Obj, plan: JobPlan) -> None:
        c, ns, name = self.client, req.namespace, req.name
        current = job
        if plan.interim_status is not None:
            current = await c.update({**job, "status": plan.interim_status}, subresource="status",
                                     causation=req.causation)
            self.barrier.wrote(key, self.jobs, current)
        await self._strip(key, req, plan.strip_finalizers)
        for pod in plan.delete:
            try:
                out = await c.delete("pods", pod, namespace=ns, causation=req.causation)
                self.barrier.wrote(key, self.pods, out)
                self.events.record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod}", causation=req.causation)
            except errors.NotFoundError:
                pass
        if plan.create:
            # Slow start (1, 2, 4 … at once), at most MAX_PODS_PER_SYNC, stopping at the first failure.
            pending = iter(plan.create)

            async def create_one() -> None:
                out = await c.create(next(pending), namespace=ns, causation=req.causation)
                self.barrier.wrote(key, self.pods, out)
                self.events.record(job, "Normal", "SuccessfulCreate", f"Created pod: {w.meta(out)['name']}",
                                   causation=req.causation)
            _, failure = await slow_start(len(plan.create), create_one)
            if failure is not None:
                raise failure
        if plan.status is not None:
            out = await c.update({**current, "status": plan.status}, subresource="status", causation=req.causation)
            self.barrier.wrote(key, self.jobs, out)
            for type_, status, type_of_event, reason in (("Complete", "True", "Normal", "Completed"),
                                                         ("Failed", "True", "Warning", None),
                                                         ("Suspended", "True", "Normal", "Suspended"),
                                                         ("Suspended", "False", "Normal", "Resumed")):
                now_c = w.condition(out, type_)
                if now_c and now_c.get("status") == status and not w.has_condition(job, type_, status):
                    message = {"Completed": "Job completed", "Suspended": "Job suspended",
                               "Resumed": "Job resumed"}.get(reason or "", now_c.get("message", ""))
                    self.events.record(out, type_of_event, reason or now_c.get("reason", "Failed"), message,
                                       causation=req.causation)
        if plan.delete_job:
            try:
                await c.delete("jobs", name, namespace=ns, propagation_policy="Background", causation=req.causation)
            except errors.NotFoundError:
                pass
        if plan.requeue_after is not None:
            self.controller.queue.add_after(key, max(0.0, plan.requeue_after) + 0.01)

    async def _strip(self, key: str, req: Request, names: list[str]) -> None:
        for pod_name in names:
            pod = self.pods.store.get(f"{req.namespace}/{pod_name}")
            if pod is None:
                continue
            finalizers = [f for f in w.meta(pod).get("finalizers") or [] if f != TRACKING_FINALIZER]
            try:
                out = await self.client.patch("pods", pod_name, {"metadata": {
                    "finalizers": finalizers or None, "resourceVersion": w.meta(pod).get("resourceVersion")}},
                    namespace=req.namespace, causation=req.causation)
                self.barrier.wrote(key, self.pods, out)
            except errors.NotFoundError:
                pass


def build(ctx: ControllerContext) -> list:
    return [JobController(ctx).controller]

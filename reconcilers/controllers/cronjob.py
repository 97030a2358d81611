"""The CronJob controller: Jobs created on a cron schedule, woken by a timer, never by polling.

Fed by the cronjobs and jobs informers (a Job's change wakes its CronJob);
`decide` is a pure function of (CronJob, the Jobs it owns, now) to a
`CronPlan`; the thin loop `CronJobController` applies it and queues the
CronJob again for its next scheduled time (`WorkQueue.add_after`), so an idle
CronJob costs nothing between runs.

As Kubernetes' cronjob controller (v2): the schedule and timeZone (cron.py),
suspend, startingDeadlineSeconds (a run missed by more is skipped), the
concurrencyPolicy Allow / Forbid (skip while a Job runs; the run is taken
late once it ends, if still within the starting deadline) / Replace (delete
the running Jobs first), successfulJobsHistoryLimit and failedJobsHistoryLimit
(the oldest finished Jobs deleted, in the background), status.active,
lastScheduleTime and lastSuccessfulTime. A Job is named
`<cronjob>-<scheduled time in minutes since the epoch>`, so a run is created
once even if two controllers race for it (the second create is AlreadyExists).

`ctx.options["clock"]` (a function returning an aware datetime) replaces the
wall clock: tests use it to stand a second before a minute boundary instead of
waiting up to a minute for a schedule to fire.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eventplane.objects import errors
from reconcilers.runner import Request

from . import _workload as w
from . import cron
from .job import finished_condition
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.cronjob")

Obj = dict[str, Any]

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"


@dataclass
class CronPlan:
    delete_jobs: list[str] = field(default_factory=list)   # Replace, and history beyond the limits
    create: Obj | None = None                             # the Job of this run
    scheduled: datetime | None = None                     # the time `create` runs for
    status: Obj | None = None                             # None: unchanged
    requeue_after: float | None = None                    # the next scheduled time, from now
    skipped: str = ""                                     # why a due run was not started (for logs)
    warning: tuple[str, str] | None = None                # (reason, message) of a Warning Event to record


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    return f"{w.meta(cronjob)['name']}-{int(scheduled.timestamp()) // 60}"


def job_for(cronjob: Obj, scheduled: datetime) -> Obj:
    """getJobFromTemplate2: the jobTemplate's metadata and spec, named after the scheduled time."""
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    cm = w.meta(cronjob)
    annotations = {**(tmeta.get("annotations") or {}), SCHEDULED_TIMESTAMP: w.rfc3339(scheduled)}
    md: Obj = {"name": job_name(cronjob, scheduled), "namespace": cm.get("namespace"), "annotations": annotations,
               "ownerReferences": [w.owner_reference(cronjob, api_version="batch/v1", kind="CronJob")]}
    if tmeta.get("labels"):
        md["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": dict(template.get("spec") or {})}


def _ref(job: Obj) -> Obj:
    m = w.meta(job)
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m.get("name"), "namespace": m.get("namespace"),
            "uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")}


def _started(job: Obj) -> str:
    return (job.get("status") or {}).get("startTime") or w.meta(job).get("creationTimestamp") or ""


def decide(cronjob: Obj, jobs: list[Obj], at: datetime) -> CronPlan:
    plan = CronPlan()
    spec = cronjob.get("spec") or {}
    old = cronjob.get("status") or {}
    status: Obj = dict(old)
    jobs = [j for j in jobs if w.controlled_by(j, cronjob)]
    running = [j for j in jobs if finished_condition(j) is None and not w.deleting(j)]

    # Finished jobs leave status.active; the newest success is lastSuccessfulTime.
    last_success = w.parse_time(old.get("lastSuccessfulTime"))
    for j in jobs:
        done = finished_condition(j)
        if done is not None and done.get("type") == "Complete":
            t = w.parse_time((j.get("status") or {}).get("completionTime"))
            if t and (last_success is None or t > last_success):
                last_success = t
    if last_success is not None:
        status["lastSuccessfulTime"] = w.rfc3339(last_success)

    # History limits: the oldest finished jobs beyond them go.
    for kind, limit_key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
        limit = spec.get(limit_key)
        if limit is None:
            continue
        finished = sorted((j for j in jobs if (finished_condition(j) or {}).get("type") == kind
                           and not w.deleting(j)), key=_started)
        plan.delete_jobs += [w.meta(j)["name"] for j in finished[:max(0, len(finished) - limit)]]

    try:
        schedule = cron.parse(spec.get("schedule") or "", spec.get("timeZone"))
    except cron.ScheduleError as exc:
        if "time zone" in str(exc):
            plan.warning = ("UnknownTimeZone", f"invalid timeZone: {spec.get('timeZone')!r}: {exc}")
        else:
            plan.warning = ("UnparseableSchedule", f"unparseable schedule: {spec.get('schedule')!r} : {exc}")
        plan.skipped = f"unparseable schedule: {exc}"
        _set_active(status, running)
        plan.status = status if status != old else None
        return plan

    if not spec.get("suspend") and not w.deleting(cronjob):
        # The runs due since the last one (or since creation), within the starting deadline.
        earliest = w.parse_time(old.get("lastScheduleTime")) or w.parse_time(w.meta(cronjob).get("creationTimestamp")) \
            or at
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, at - timedelta(seconds=deadline))
        due = schedule.times_between(earliest, at, limit=1)
        if due:
            scheduled = due[-1]
            name = job_name(cronjob, scheduled)
            policy = spec.get("concurrencyPolicy") or "Allow"
            if any(w.meta(j).get("name") == name for j in jobs):
                plan.skipped = f"the job {name} of this run exists"
                status["lastScheduleTime"] = w.rfc3339(scheduled)
            elif policy == "Forbid" and running:
                plan.skipped = "concurrencyPolicy Forbid: a job is still running"
            else:
                if policy == "Replace":
                    plan.delete_jobs += [w.meta(j)["name"] for j in running]
                    running = []
                plan.create = job_for(cronjob, scheduled)
                plan.scheduled = scheduled
                status["lastScheduleTime"] = w.rfc3339(scheduled)
        following = schedule.next_after(at)
        if following is not None:
            plan.requeue_after = max(0.0, (following - at).total_seconds())

    _set_active(status, running)
    if status != old:
        plan.status = status
    return plan


def _set_active(status: Obj, running: list[Obj]) -> None:
    refs = sorted((_ref(j) for j in running), key=lambda r: r["name"])
    old = {r.get("uid"): r for r in status.get("active") or []}
    refs = [old.get(r["uid"], r) for r in refs]   # keep the reference as first written
    if refs:
        status["active"] = refs
    else:
        status.pop("active", None)


class CronJobController:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.cronjobs = ctx.informers.informer("cronjobs")
        self.jobs = ctx.informers.informer("jobs")
        self.clock = ctx.options.get("clock") or w.now
        self.barrier = w.ReadBarrier()
        self.warned: dict[str, tuple] = {}
        self.events = w.EventRecorder(ctx.client, component="cronjob-controller", instance=ctx.identity,
                                      enabled=bool(ctx.options.get("events", True)))
        self.controller = w.WorkloadController("cronjob", self.cronjobs, self.reconcile, secondary=[self.jobs])
        self.controller.watch_owned(self.jobs, "CronJob")

    async def reconcile(self, req: Request) -> None:
        key = req.key
        if not self.barrier.passed(key):
            self.controller.queue.add_after(key, 0.05)
            return
        cj = self.cronjobs.store.get(key)
        if cj is None:
            return
        jobs = self.jobs.store.by_index("owner", w.meta(cj)["uid"])
        plan = decide(cj, jobs, self.clock())
        if plan.skipped:
            log.info("cronjob %s: %s", key, plan.skipped)
        stamp = (w.meta(cj).get("uid"), w.meta(cj).get("generation"))
        if plan.warning is not None and self.warned.get(key) != stamp:   # once per spec, not per wake-up
            self.warned[key] = stamp
            self.events.record(cj, "Warning", *plan.warning, causation=req.causation)
        c, ns = self.client, req.namespace
        active = {r.get("name") for r in (cj.get("status") or {}).get("active") or []}
        for j in jobs:
            done = finished_condition(j)
            if done is not None and w.meta(j).get("name") in active:
                self.events.record(cj, "Normal", "SawCompletedJob",
                                   f"Saw completed job: {w.meta(j)['name']}, condition: {done['type']}",
                                   causation=req.causation)
        for name in plan.delete_jobs:
            try:
                out = await c.delete("jobs", name, namespace=ns, propagation_policy="Background",
                                     causation=req.causation)
                self.barrier.wrote(key, self.jobs, out)
                self.events.record(cj, "Normal", "SuccessfulDelete", f"Deleted job {name}", causation=req.causation)
            except errors.NotFoundError:
                pass
        status = plan.status
        if plan.create is not None:
            try:
                made = await c.create(plan.create, namespace=ns, causation=req.causation)
            except errors.AlreadyExistsError:
                made = None
            if made is not None:
                self.barrier.wrote(key, self.jobs, made)
                self.events.record(cj, "Normal", "SuccessfulCreate", f"Created job {w.meta(made)['name']}",
                                   causation=req.causation)
                status = dict(status if status is not None else cj.get("status") or {})
                status["active"] = [*(status.get("active") or []), _ref(made)]
        if status is not None:
            out = await c.update({**cj, "status": status}, subresource="status", causation=req.causation)
            self.barrier.wrote(key, self.cronjobs, out)
        if plan.requeue_after is not None:
            # a little late rather than early: the run is taken when its minute has begun
            self.controller.queue.add_after(key, plan.requeue_after + 0.05)


def build(ctx: ControllerContext) -> list:
    return [CronJobController(ctx).controller]

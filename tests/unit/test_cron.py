"""Cron schedules (reconcilers/controllers/cron.py) and the CronJob controller's decisions, table-style."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reconcilers.controllers import cron
from reconcilers.controllers import cronjob as C


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


NEXT = [
    ("every minute", "* * * * *", None, "2026-01-01T10:00:30", "2026-01-01T10:01:00"),
    ("exactly on a boundary is not 'after'", "* * * * *", None, "2026-01-01T10:01:00", "2026-01-01T10:02:00"),
    ("every 15 minutes", "*/15 * * * *", None, "2026-01-01T10:16:00", "2026-01-01T10:30:00"),
    ("@hourly", "@hourly", None, "2026-01-01T10:16:00", "2026-01-01T11:00:00"),
    ("@daily", "@daily", None, "2026-01-01T10:16:00", "2026-01-02T00:00:00"),
    ("@weekly is Sunday", "@weekly", None, "2026-01-01T10:16:00", "2026-01-04T00:00:00"),
    ("@monthly", "@monthly", None, "2026-01-31T10:16:00", "2026-02-01T00:00:00"),
    ("@yearly", "@yearly", None, "2026-03-01T00:00:00", "2027-01-01T00:00:00"),
    ("weekdays by name", "30 9 * * MON-FRI", None, "2026-01-02T10:00:00", "2026-01-05T09:30:00"),
    ("months by name, lists", "0 0 1 jan,jul *", None, "2026-02-01T00:00:00", "2026-07-01T00:00:00"),
    ("ranges with steps", "0 8-18/4 * * *", None, "2026-01-01T12:00:00", "2026-01-01T16:00:00"),
    ("a/n runs to the maximum", "50/5 * * * *", None, "2026-01-01T12:56:00", "2026-01-01T13:50:00"),
    ("dom or dow when both are restricted", "0 0 13 * FRI", None, "2026-01-01T00:00:00", "2026-01-02T00:00:00"),
    ("dom and dow when one is *", "0 0 13 * *", None, "2026-01-01T00:00:00", "2026-01-13T00:00:00"),
    ("leap day", "0 0 29 2 *", None, "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
    ("time zone", "0 9 * * *", "America/New_York", "2026-01-01T00:00:00", "2026-01-01T14:00:00"),
    ("time zone in summer", "0 9 * * *", "America/New_York", "2026-07-01T00:00:00", "2026-07-01T13:00:00"),
    ("a DST gap is skipped", "30 2 * * *", "America/New_York", "2026-03-08T00:00:00", "2026-03-09T06:30:00"),
    ("CRON_TZ prefix", "CRON_TZ=Asia/Tokyo 0 9 * * *", None, "2026-01-01T00:00:00", "2026-01-02T00:00:00"),
]


@pytest.mark.parametrize("name,schedule,tz,after,want", NEXT, ids=[c[0] for c in NEXT])
def test_next_after(name, schedule, tz, after, want):
    assert cron.parse(schedule, tz).next_after(utc(after)) == utc(want)


def test_never_in_five_years():
    assert cron.parse("0 0 30 2 *").next_after(utc("2026-01-01T00:00:00")) is None


@pytest.mark.parametrize("schedule,message", [
    ("* * * *", "expected exactly 5 fields, found 4"),
    ("60 * * * *", "end of range (60) above maximum (59)"),
    ("* * 0 * *", "beginning of range (0) below minimum (1)"),
    ("5-1 * * * *", "beyond end of range"),
    ("*/0 * * * *", "step of range should be a positive number"),
    ("@fortnightly", "unrecognized descriptor"),
    ("@every 5m", "@every"),
    ("* * * FOO *", "failed to parse"),
])
def test_bad_schedules(schedule, message):
    with pytest.raises(cron.ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cron.parse(schedule)


def test_unknown_time_zone():
    with pytest.raises(cron.ScheduleError, match="unknown time zone Mars/Olympus"):
        cron.parse("* * * * *", "Mars/Olympus")


def test_times_between_keeps_the_newest():
    s = cron.parse("* * * * *")
    got = s.times_between(utc("2026-01-01T10:00:00"), utc("2026-01-01T10:05:00"), limit=2)
    assert got == [utc("2026-01-01T10:04:00"), utc("2026-01-01T10:05:00")]


# --- the CronJob controller's decisions -------------------------------------------------------------

CJ_UID = "cj-uid"


def cronjob(schedule="*/5 * * * *", *, status=None, created="2026-01-01T10:00:00Z", **spec):
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "backup", "namespace": "ns", "uid": CJ_UID, "creationTimestamp": created},
            "spec": {"schedule": schedule, "concurrencyPolicy": "Allow", "suspend": False,
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"app": "backup"}},
                                     "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}},
                     **spec},
            "status": status or {}}


def job(name, state=None, *, start="2026-01-01T10:05:00Z", end="2026-01-01T10:06:00Z"):
    conds = [{"type": state, "status": "True"}] if state else []
    st = {"startTime": start, "conditions": conds}
    if state == "Complete":
        st["completionTime"] = end
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "7",
                         "ownerReferences": [{"kind": "CronJob", "uid": CJ_UID, "controller": True}]},
            "status": st}


AT = utc("2026-01-01T10:07:30")
RUN_1005 = f"backup-{int(utc('2026-01-01T10:05:00').timestamp()) // 60}"

DECISIONS = [
    # name, cronjob, jobs, created name, deleted, lastScheduleTime, requeue
    ("a due run creates its job", cronjob(), [], RUN_1005, [], "2026-01-01T10:05:00Z", 150.0),
    ("nothing due before the first time", cronjob(created="2026-01-01T10:06:00Z"), [], None, [], None, 150.0),
    ("already run", cronjob(status={"lastScheduleTime": "2026-01-01T10:05:00Z"}), [], None, [],
     "2026-01-01T10:05:00Z", 150.0),
    ("the job of this run exists (a race lost)", cronjob(), [job(RUN_1005)], None, [], "2026-01-01T10:05:00Z", 150.0),
    ("suspended", cronjob(suspend=True), [], None, [], None, None),
    ("missed the starting deadline", cronjob(startingDeadlineSeconds=60), [], None, [], None, 150.0),
    ("within the starting deadline", cronjob(startingDeadlineSeconds=200), [], RUN_1005, [],
     "2026-01-01T10:05:00Z", 150.0),
    ("Forbid skips while a job runs", cronjob(concurrencyPolicy="Forbid"), [job("backup-old")], None, [], None, 150.0),
    ("Allow runs beside it", cronjob(), [job("backup-old")], RUN_1005, [], "2026-01-01T10:05:00Z", 150.0),
    ("Replace deletes the running job", cronjob(concurrencyPolicy="Replace"), [job("backup-old")], RUN_1005,
     ["backup-old"], "2026-01-01T10:05:00Z", 150.0),
    ("history limits delete the oldest finished",
     cronjob(status={"lastScheduleTime": "2026-01-01T10:05:00Z"}, successfulJobsHistoryLimit=1),
     [job("s1", "Complete", start="2026-01-01T09:00:00Z"), job("s2", "Complete", start="2026-01-01T09:30:00Z"),
      job("f1", "Failed", start="2026-01-01T08:00:00Z"), job("f2", "Failed", start="2026-01-01T08:30:00Z")],
     None, ["s1", "f1"], "2026-01-01T10:05:00Z", 150.0),
]


@pytest.mark.parametrize("name,cj,jobs,created,deleted,last,requeue", DECISIONS, ids=[d[0] for d in DECISIONS])
def test_decide(name, cj, jobs, created, deleted, last, requeue):
    plan = C.decide(cj, jobs, AT)
    assert (plan.create or {}).get("metadata", {}).get("name") == created
    assert sorted(plan.delete_jobs) == sorted(deleted)
    status = plan.status if plan.status is not None else cj["status"]
    assert status.get("lastScheduleTime") == last
    assert plan.requeue_after == requeue


def test_created_job_and_status():
    plan = C.decide(cronjob(), [job("backup-old")], AT)
    j = plan.create
    assert j["metadata"]["labels"] == {"app": "backup"}
    assert j["metadata"]["annotations"][C.SCHEDULED_TIMESTAMP] == "2026-01-01T10:05:00Z"
    assert j["metadata"]["ownerReferences"][0] | {} == {"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup",
                                                      "uid": CJ_UID, "controller": True, "blockOwnerDeletion": True}
    assert j["spec"]["template"]["spec"]["containers"][0]["image"] == "x"
    assert [r["name"] for r in plan.status["active"]] == ["backup-old"]


def test_finished_jobs_leave_active_and_set_last_successful_time():
    cj = cronjob(status={"lastScheduleTime": "2026-01-01T10:05:00Z",
                         "active": [{"kind": "Job", "name": "a", "uid": "uid-a"}]})
    plan = C.decide(cj, [job("a", "Complete", end="2026-01-01T10:06:10Z")], AT)
    assert "active" not in plan.status and plan.status["lastSuccessfulTime"] == "2026-01-01T10:06:10Z"


def test_time_zone_and_bad_schedule():
    plan = C.decide(cronjob("0 5 * * *", timeZone="Europe/Berlin", created="2026-01-01T03:00:00Z"), [],
                    utc("2026-01-01T04:00:30"))
    assert plan.create["metadata"]["annotations"][C.SCHEDULED_TIMESTAMP] == "2026-01-01T04:00:00Z"
    bad = C.decide(cronjob("nonsense"), [], AT)
    assert bad.create is None and "unparseable schedule" in bad.skipped
    assert bad.warning == ("UnparseableSchedule", "unparseable schedule: 'nonsense' : expected exactly 5 fields, "
                                                  "found 1: nonsense")
    tz = C.decide(cronjob(timeZone="Mars/Olympus"), [], AT)
    assert tz.warning[0] == "UnknownTimeZone" and tz.create is None

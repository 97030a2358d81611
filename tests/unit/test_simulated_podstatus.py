"""A simulated node's plan for a pod: the kubelet's status as a pure function, table-driven."""
from __future__ import annotations

import ipaddress

import pytest

from nodeagent.simulated.podstatus import (EXIT_CODE, READY_SECONDS, RUN_SECONDS, Cycle, backoff, format_time,
                                           go_duration, parse_time, plan_pod, restart_cycle)
from nodeagent.simulated.shapes import IpPool, SimulatorConfig, node_index

T0 = 1_795_860_000.0   # 2026-11-28T10:00:00Z


def _pod(restart="Always", annotations=None, containers=("web",), status=None, **spec):
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u-1", "annotations": annotations or {}},
            "spec": {"restartPolicy": restart, "nodeName": "sim-0",
                     "containers": [{"name": n, "image": "nginx:1.27"} for n in containers], **spec},
            "status": status or {"phase": "Pending", "qosClass": "BestEffort",
                                 "conditions": [{"type": "PodScheduled", "status": "True",
                                                 "lastTransitionTime": "2026-11-28T09:59:59Z"}]}}


def _plan(pod, now):
    return plan_pod(pod, host_ip="172.16.0.1", pod_ip="10.128.0.1", now=now)


def _applied(pod, plan):
    return {**pod, "status": plan.status}


def _conds(status):
    return {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}


def test_a_bound_pod_runs_and_the_plan_is_stable():
    first = _plan(_pod(containers=("b", "a")), T0 + 0.7)
    s = first.status
    assert s["phase"] == "Running" and s["startTime"] == "2026-11-28T10:00:00Z" and s["qosClass"] == "BestEffort"
    assert (s["podIP"], s["hostIP"]) == ("10.128.0.1", "172.16.0.1")
    assert [c["name"] for c in s["containerStatuses"]] == ["a", "b"]
    assert all(c["ready"] and c["started"] and c["restartCount"] == 0 for c in s["containerStatuses"])
    assert _conds(s) == {"PodReadyToStartContainers": ("True", None), "Initialized": ("True", None),
                         "Ready": ("True", None), "ContainersReady": ("True", None), "PodScheduled": ("True", None)}
    assert first.wake_at is None and not first.terminal
    # The same pod, later, with the status it was given: nothing to write, however late.
    for later in (T0 + 1, T0 + 86400):
        assert _plan(_applied(_pod(containers=("b", "a")), first), later).status is None


@pytest.mark.parametrize("name, restart, annotations, at, phase, exit_code, wake", [
    ("Never: 1 s by default, not yet", "Never", {}, T0 + 0.5, "Running", None, T0 + 1),
    ("Never: ended", "Never", {}, T0 + 1, "Succeeded", 0, None),
    ("OnFailure, exit 0: ends", "OnFailure", {RUN_SECONDS: "5"}, T0 + 6, "Succeeded", 0, None),
    ("Never with an exit code: Failed", "Never", {RUN_SECONDS: "2", EXIT_CODE: "7"}, T0 + 3, "Failed", 7, None),
    ("OnFailure with an exit code: restarts", "OnFailure", {RUN_SECONDS: "2", EXIT_CODE: "1"}, T0 + 3, "Running",
     None, T0 + 4),
    ("Always runs for ever", "Always", {}, T0 + 10**6, "Running", None, None),
    ("Always with run-seconds restarts", "Always", {RUN_SECONDS: "10"}, T0 + 15, "Running", None, T0 + 20),
    ("a bad annotation is ignored", "Always", {RUN_SECONDS: "soon"}, T0 + 25, "Running", None, None),
])
def test_containers_that_end(name, restart, annotations, at, phase, exit_code, wake):
    started = _applied(_pod(restart, annotations), _plan(_pod(restart, annotations), T0))
    plan = _plan(started, at)
    status = plan.status or started["status"]
    assert status["phase"] == phase, name
    assert plan.wake_at == wake, name
    c = status["containerStatuses"][0]
    if exit_code is not None:
        term = c["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (exit_code, "Completed" if exit_code == 0 else "Error"), name
        assert term["finishedAt"] == format_time(T0 + float(annotations.get(RUN_SECONDS, 1))), name
        assert _conds(status)["Ready"] == ("False", "PodCompleted") and plan.terminal, name
        assert not c["ready"] and not c["started"], name
    else:
        assert "running" in c["state"] and c["ready"], name


def test_restarts_back_off_as_the_kubelet_does():
    pod = _pod("Always", {RUN_SECONDS: "10", EXIT_CODE: "2"})
    started = _applied(pod, _plan(pod, T0))
    # Runs 0–10, restarts at once, runs 10–20, then waits 10 s (CrashLoopBackOff), runs 30–40, waits 20 s…
    plan = _plan(started, T0 + 15)
    c = plan.status["containerStatuses"][0]
    assert c["restartCount"] == 1 and c["state"]["running"]["startedAt"] == format_time(T0 + 10)
    last = c["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["startedAt"], last["finishedAt"]) == (
        2, "Error", format_time(T0), format_time(T0 + 10))
    assert c["containerID"] != started["status"]["containerStatuses"][0]["containerID"]
    assert _plan(_applied(pod, plan), T0 + 19).status is None        # same run: nothing new

    waiting = _plan(_applied(pod, plan), T0 + 25)
    c = waiting.status["containerStatuses"][0]
    assert c["state"] == {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off 10s restarting failed container=web pod=p_default(u-1)"}}
    assert (c["restartCount"], c["ready"], c["started"]) == (1, False, False)
    assert c["lastState"]["terminated"]["finishedAt"] == format_time(T0 + 20)
    assert _conds(waiting.status)["Ready"] == ("False", "ContainersNotReady") and waiting.wake_at == T0 + 30
    assert waiting.status["phase"] == "Running"

    later = _plan(_applied(pod, waiting), T0 + 45).status["containerStatuses"][0]
    assert "back-off 20s" in later["state"]["waiting"]["message"] and later["restartCount"] == 2


@pytest.mark.parametrize("start, run, now, expect", [
    (0, 10, 5, Cycle(0, 0, None, 10, None)),
    (0, 10, 10, Cycle(1, 10, None, 20, (0, 10))),                 # the first restart is immediate
    (0, 10, 25, Cycle(1, 10, 20, 30, (0, 10))),                   # then 10 s of back-off
    (0, 10, 65, Cycle(3, 60, None, 70, (30, 40))),
    (0, 10, 100_000, Cycle(327, 99_880, 99_890, 100_190, (99_570, 99_580))),   # capped at 300 s
    (0, 0, 0, Cycle(1, 0, 0, 10, (0, 0))),                         # a crash at start: back-off at once
    (0, 700, 1500, Cycle(2, 1400, None, 2100, (700, 1400))),      # 10 minutes of running resets it
])
def test_restart_cycle(start, run, now, expect):
    assert restart_cycle(start, run, now) == expect


def test_backoff_and_go_durations():
    assert [backoff(k) for k in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert [go_duration(s) for s in (10, 80, 160, 300)] == ["10s", "1m20s", "2m40s", "5m0s"]


def test_ready_seconds_delay_readiness():
    pod = _pod(annotations={READY_SECONDS: "3"}, containers=("a", "b"))
    first = _plan(pod, T0)
    assert first.status["phase"] == "Running" and first.wake_at == T0 + 3
    assert _conds(first.status)["Ready"] == ("False", "ContainersNotReady")
    ready = next(c for c in first.status["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "containers with unready status: [a b]"
    assert not any(c["ready"] for c in first.status["containerStatuses"])
    later = _plan(_applied(pod, first), T0 + 3)
    assert _conds(later.status)["Ready"] == ("True", None) and later.wake_at is None
    ready = next(c for c in later.status["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == format_time(T0 + 3)
    init = next(c for c in later.status["conditions"] if c["type"] == "Initialized")
    assert init["lastTransitionTime"] == format_time(T0)               # unchanged conditions keep their time


def test_readiness_gates_and_foreign_conditions():
    pod = _pod(readinessGates=[{"conditionType": "example.com/lb"}])
    s = _plan(pod, T0).status
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert ready["message"] == 'corresponding condition of pod readiness gate "example.com/lb" does not exist.'
    gated = _applied(pod, _plan(pod, T0))
    gated["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    s = _plan(gated, T0 + 1).status
    assert _conds(s)["Ready"] == ("True", None) and _conds(s)["example.com/lb"] == ("True", None)


def test_init_containers_and_sidecars():
    pod = _pod(initContainers=[{"name": "setup", "image": "busybox"},
                               {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}])
    s = _plan(pod, T0).status
    setup, proxy = s["initContainerStatuses"]
    assert setup["state"]["terminated"]["reason"] == "Completed" and setup["ready"] and not setup["started"]
    assert "running" in proxy["state"] and proxy["started"]


def test_deleting_and_terminal_pods():
    deleting = _pod()
    deleting["metadata"]["deletionTimestamp"] = "2026-11-28T10:00:00Z"
    assert _plan(deleting, T0).delete
    done = _pod(status={"phase": "Succeeded"})
    plan = _plan(done, T0)
    assert plan.status is None and not plan.delete and plan.terminal


def test_times_and_names():
    assert parse_time(format_time(T0 + 0.9)) == T0
    assert parse_time("2026-11-28T10:00:00.5Z") == T0 + 0.5 and parse_time("nope") is None
    config = SimulatorConfig(count=10, name_prefix="sim-")
    assert [node_index(config, n) for n in ("sim-3", "sim-03", "sim-10", "other-1", "sim-")] == [3, None, None,
                                                                                               None, None]
    assert str(config.pod_cidr(3)) == "10.128.3.0/24" and config.internal_ip(0) == "172.16.0.1"
    assert SimulatorConfig(count=1, pods_per_node=500).pod_prefix_len == 23   # 510 addresses


def test_ip_pool():
    pool = IpPool(ipaddress.ip_network("10.128.0.0/30"))   # two addresses
    pool.adopt("a", "10.128.0.2")
    assert pool.allocate("b") == "10.128.0.1"
    assert pool.allocate("b") == "10.128.0.1"
    with pytest.raises(RuntimeError, match="no free pod address"):
        pool.allocate("c")
    pool.release("a")
    assert pool.allocate("c") == "10.128.0.2"
    pool.adopt("d", "192.168.0.1")                          # not from this range: not ours to track
    assert pool.of("d") is None

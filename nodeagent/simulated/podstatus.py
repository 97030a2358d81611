"""What a simulated node does with a pod bound to it: the status the kubelet would post, as a pure plan.

Fed by agent.py with a pod from its informer, the node's address, the pod's
address (allocated by the node's IpPool) and the time; returns a `Plan`:
the whole status to write (None when the pod's status already says it), or
a final deletion, and when to look again.

Every time in the status derives from the pod's startTime (set once, on the
first write) and its run duration, never from the moment the plan is made:
planning the same pod twice — after a restart of the simulator, or because
our own write came back through the watch — gives the same status, so no
write is repeated.

A simulated container runs for ever unless the pod says otherwise:

- `sim.eventplane.io/run-seconds`: how long each container runs. Without it,
  containers of pods with restartPolicy Always run for ever, and those of
  Never and OnFailure pods (Jobs) run DEFAULT_FINITE_RUN seconds.
- `sim.eventplane.io/exit-code`: the exit code when a container ends (0).
- `sim.eventplane.io/ready-seconds`: how long after it starts a container
  turns ready (0): until then the pod is Running but not Ready
  (ContainersNotReady), as behind a readiness probe.

When a container ends, restartPolicy decides as the kubelet does: Never →
the pod ends, Succeeded for exit code 0 and Failed otherwise; OnFailure →
Succeeded for 0, else the container restarts; Always → it restarts. Restarts
follow the kubelet's back-off: the first at once, then after 10 s, 20 s, 40 s
… up to 5 minutes (state waiting, reason CrashLoopBackOff, in between), none
after a run of 10 minutes or more; each counted in restartCount, with the
ended run in lastState.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from .shapes import container_id, image_id

__all__ = ["DEFAULT_FINITE_RUN", "EXIT_CODE", "READY_SECONDS", "RUN_SECONDS", "Cycle", "Plan", "backoff",
           "format_time", "go_duration", "is_terminal", "parse_time", "plan_pod", "restart_cycle"]

RUN_SECONDS = "sim.eventplane.io/run-seconds"
EXIT_CODE = "sim.eventplane.io/exit-code"
READY_SECONDS = "sim.eventplane.io/ready-seconds"
DEFAULT_FINITE_RUN = 1.0   # seconds a Never/OnFailure pod's containers run without the annotation
BACKOFF_BASE = 10.0        # the kubelet's crash-loop back-off: 10 s, doubled per restart…
BACKOFF_CAP = 300.0        # … up to 5 minutes
BACKOFF_RESET = 600.0      # a run this long resets it (twice the cap, as the kubelet does)

OUR_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


@dataclass(frozen=True)
class Plan:
    status: dict[str, Any] | None = None   # the whole status to write; None: nothing to write
    delete: bool = False                   # delete for good (gracePeriodSeconds=0): the pod is stopped
    wake_at: float | None = None           # unix seconds at which the plan changes (a container ends)
    terminal: bool = False                 # the pod has ended: its address may go back to the pool


def format_time(t: float) -> str:
    return dt.datetime.fromtimestamp(math.floor(t), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _annotation(pod: dict[str, Any], key: str) -> str | None:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(key)


def run_seconds(pod: dict[str, Any]) -> float | None:
    """How long each container runs; None for ever."""
    text = _annotation(pod, RUN_SECONDS)
    if text is not None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    return None if policy == "Always" else DEFAULT_FINITE_RUN


def ready_seconds(pod: dict[str, Any]) -> float:
    try:
        value = float(_annotation(pod, READY_SECONDS) or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def exit_code(pod: dict[str, Any]) -> int:
    try:
        return int(_annotation(pod, EXIT_CODE) or 0)
    except ValueError:
        return 0


@dataclass(frozen=True)
class Cycle:
    """Where a restarting container is at a moment: its `restarts`-th run started at `started`;
    `ended` is when that run ended if it is now waiting out its back-off (None while it runs);
    `next_at` is when that changes; `previous` the (start, end) of the run before, for lastState."""

    restarts: int
    started: float
    ended: float | None
    next_at: float
    previous: tuple[float, float] | None


def backoff(restarts: int) -> float:
    """The wait before restart number `restarts + 1`: none before the first, then 10 s doubling to 300 s."""
    return 0.0 if restarts == 0 else min(BACKOFF_BASE * 2 ** min(restarts - 1, 16), BACKOFF_CAP)


def restart_cycle(start: float, run: float, now: float) -> Cycle:
    """A container that runs `run` seconds and is restarted with the kubelet's back-off, at `now`."""
    run = max(run, 0.0)
    if run >= BACKOFF_RESET:
        k = int((now - start) // run)
        began = start + k * run
        return Cycle(k, began, None, began + run, (began - run, began) if k else None)
    began, k, previous = start, 0, None
    while True:
        if backoff(k) == BACKOFF_CAP:         # from here on a constant period: jump, don't walk
            skip = int((now - began) // (run + BACKOFF_CAP))
            if skip > 0:
                began += skip * (run + BACKOFF_CAP)
                k += skip
                previous = (began - BACKOFF_CAP - run, began - BACKOFF_CAP)
        ended = began + run
        if now < ended:
            return Cycle(k, began, None, ended, previous)
        restart_at = ended + backoff(k)
        if now < restart_at:
            return Cycle(k, began, ended, restart_at, previous)
        previous, began, k = (began, ended), restart_at, k + 1


def go_duration(seconds: float) -> str:
    """A whole number of seconds as Go's time.Duration prints it: 10s, 1m20s, 5m0s."""
    total = int(seconds)
    return f"{total}s" if total < 60 else f"{total // 60}m{total % 60}s"


def plan_pod(pod: dict[str, Any], *, host_ip: str, pod_ip: str | None, now: float) -> Plan:
    """The status of a pod bound to a simulated node, at `now` (unix seconds)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    current = pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Plan(delete=True, terminal=True)          # stopped at once: nothing runs to stop
    if is_terminal(pod):
        return Plan(terminal=True)
    start = parse_time(current.get("startTime")) or math.floor(now)
    run = run_seconds(pod)
    code = exit_code(pod)
    policy = spec.get("restartPolicy") or "Always"
    ends = run is not None and (policy == "Never" or (policy == "OnFailure" and code == 0))

    wake_at, finished = None, None
    cycle = Cycle(0, start, None, math.inf, None)
    if run is not None and ends:
        if now >= start + run:
            finished = start + run
        else:
            wake_at = start + run
    elif run is not None:
        cycle = restart_cycle(start, run, now)
        wake_at = cycle.next_at

    ready_at = cycle.started + ready_seconds(pod)
    ready = now >= ready_at and cycle.ended is None
    if finished is None and cycle.ended is None and not ready:
        wake_at = ready_at if wake_at is None else min(wake_at, ready_at)
    uid = meta.get("uid", "")
    pod_name = f"{meta.get('name', '')}_{meta.get('namespace', '')}({uid})"
    containers = [_container_status(c, uid, start=start, cycle=cycle, code=code, finished=finished, ready=ready,
                                    pod_name=pod_name)
                  for c in spec.get("containers") or []]
    inits = [_init_status(c, uid, start) for c in spec.get("initContainers") or []]
    phase = "Running" if finished is None else ("Succeeded" if code == 0 else "Failed")
    status = dict(current)
    status.update({"phase": phase, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                   "startTime": format_time(start), "containerStatuses": sorted(containers, key=lambda c: c["name"])})
    if pod_ip:
        status.update({"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]})
    if inits:
        status["initContainerStatuses"] = inits
    unready = [] if ready else sorted(c["name"] for c in containers)
    changed_at = finished if finished is not None else (
        cycle.ended if cycle.ended is not None else (ready_at if ready else cycle.started))
    status["conditions"] = _conditions(pod, current.get("conditions") or [], running=finished is None,
                                       unready=unready, since=format_time(changed_at))
    for key in ("reason", "message"):
        status.pop(key, None)
    changed = _pruned(status) != _pruned(current)
    return Plan(status=status if changed else None, wake_at=wake_at, terminal=finished is not None)


def _pruned(value: Any) -> Any:
    """A status as the server stores it: fields set to null are dropped."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _container_status(c: dict[str, Any], uid: str, *, start: float, cycle: Cycle, code: int,
                      finished: float | None, ready: bool, pod_name: str) -> dict[str, Any]:
    name, image = c.get("name", ""), c.get("image", "")
    k = cycle.restarts
    cid = container_id(uid, name, k)
    out: dict[str, Any] = {"name": name, "image": image, "imageID": image_id(image), "containerID": cid,
                           "restartCount": k, "lastState": {}}
    if finished is not None:
        out["state"] = {"terminated": _terminated(code, start, finished, cid)}
        out.update(ready=False, started=False)
        return out
    if cycle.ended is not None:     # waiting out the back-off before the next restart
        out["lastState"] = {"terminated": _terminated(code, cycle.started, cycle.ended, cid)}
        out["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                    "message": f"back-off {go_duration(backoff(k))} restarting failed "
                                               f"container={name} pod={pod_name}"}}
        out.update(ready=False, started=False)
        return out
    if cycle.previous is not None:
        began, ended = cycle.previous
        out["lastState"] = {"terminated": _terminated(code, began, ended, container_id(uid, name, k - 1))}
    out["state"] = {"running": {"startedAt": format_time(cycle.started)}}
    out.update(ready=ready, started=True)
    return out


def _terminated(code: int, started: float, finished: float, cid: str) -> dict[str, Any]:
    return {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": format_time(started),
            "finishedAt": format_time(finished), "containerID": cid}


def _init_status(c: dict[str, Any], uid: str, start: float) -> dict[str, Any]:
    name, image = c.get("name", ""), c.get("image", "")
    cid = container_id(uid, name, 0)
    out: dict[str, Any] = {"name": name, "image": image, "imageID": image_id(image), "containerID": cid,
                           "restartCount": 0, "lastState": {}}
    if c.get("restartPolicy") == "Always":      # a sidecar: runs beside the main containers
        out.update(state={"running": {"startedAt": format_time(start)}}, ready=True, started=True)
    else:
        out.update(state={"terminated": _terminated(0, start, start, cid)}, ready=True, started=False)
    return out


def _conditions(pod: dict[str, Any], current: list[dict[str, Any]], *, running: bool, since: str,
                unready: list[str] = ()) -> list[dict[str, Any]]:
    """The kubelet's pod conditions, keeping a condition's lastTransitionTime while its status holds,
    and conditions of other owners (readiness gates, DisruptionTarget) as they are."""
    by_type = {c.get("type"): c for c in current}
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    missing = [g for g in gates if (by_type.get(g) or {}).get("status") != "True"]

    def cond(type_: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
        status = "True" if ok else "False"
        old = by_type.get(type_) or {}
        out: dict[str, Any] = {"type": type_, "status": status,
                               "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status
                               else since}
        if old.get("status") == status and old.get("lastTransitionTime") is None:
            out["lastTransitionTime"] = since
        if reason:
            out["reason"] = reason
        if message:
            out["message"] = message
        return out

    if running and unready:
        why = ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
        ours = [cond("PodReadyToStartContainers", True), cond("Initialized", True), cond("Ready", False, *why),
                cond("ContainersReady", False, *why)]
    elif running:
        ready = cond("Ready", not missing, *(("ReadinessGatesNotReady",
                                               f'corresponding condition of pod readiness gate "{missing[0]}" '
                                               "does not exist.") if missing else ()))
        ours = [cond("PodReadyToStartContainers", True), cond("Initialized", True), ready,
                cond("ContainersReady", True)]
    else:
        ours = [cond("PodReadyToStartContainers", False), cond("Initialized", True),
                cond("Ready", False, "PodCompleted"), cond("ContainersReady", False, "PodCompleted")]
    scheduled = by_type.get("PodScheduled")
    ours.append(dict(scheduled) if scheduled and scheduled.get("status") == "True" else cond("PodScheduled", True))
    return ours + [c for c in current if c.get("type") not in OUR_CONDITIONS]

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
Succeeded for 0, else the container restarts; Always → it restarts. A restart
is immediate (no CrashLoopBackOff wait) and counted in restartCount, with the
ended run in lastState.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from .shapes import container_id, image_id

__all__ = ["DEFAULT_FINITE_RUN", "EXIT_CODE", "READY_SECONDS", "RUN_SECONDS", "Plan", "format_time", "is_terminal",
           "parse_time", "plan_pod"]

RUN_SECONDS = "sim.eventplane.io/run-seconds"
EXIT_CODE = "sim.eventplane.io/exit-code"
READY_SECONDS = "sim.eventplane.io/ready-seconds"
DEFAULT_FINITE_RUN = 1.0   # seconds a Never/OnFailure pod's containers run without the annotation
MIN_RESTART_PERIOD = 1.0   # seconds: a restarting container runs at least this long per run

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

    restarts, wake_at, finished = 0, None, None
    period = max(run or 0.0, MIN_RESTART_PERIOD)
    if run is not None and ends:
        if now >= start + run:
            finished = start + run
        else:
            wake_at = start + run
    elif run is not None:
        restarts = int((now - start) // period)
        wake_at = start + (restarts + 1) * period

    begun = start + restarts * period if restarts else start    # the current run of the containers
    ready_at = begun + ready_seconds(pod)
    ready = now >= ready_at
    if finished is None and not ready:
        wake_at = ready_at if wake_at is None else min(wake_at, ready_at)
    uid = meta.get("uid", "")
    containers = [_container_status(c, uid, start=start, run=run, restarts=restarts, code=code, finished=finished,
                                    ready=ready)
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
    changed_at = finished if finished is not None else (ready_at if ready else begun)
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


def _container_status(c: dict[str, Any], uid: str, *, start: float, run: float | None, restarts: int, code: int,
                      finished: float | None, ready: bool = True) -> dict[str, Any]:
    name, image = c.get("name", ""), c.get("image", "")
    cid = container_id(uid, name, restarts)
    out: dict[str, Any] = {"name": name, "image": image, "imageID": image_id(image), "containerID": cid,
                           "restartCount": restarts, "lastState": {}}
    if finished is not None:
        out["state"] = {"terminated": _terminated(code, start, finished, cid)}
        out.update(ready=False, started=False)
        return out
    begun = start
    if restarts:
        period = max(run or 0.0, MIN_RESTART_PERIOD)
        begun = start + restarts * period
        out["lastState"] = {"terminated": _terminated(code, begun - period, begun,
                                                      container_id(uid, name, restarts - 1))}
    out["state"] = {"running": {"startedAt": format_time(begun)}}
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

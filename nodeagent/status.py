"""A pod's status as the kubelet reports it, computed from what the runtime observes.

Fed by the pod worker (worker.py) with the pod, the ContainerRecords of its
containers, the probe results and the reasons a container is waiting; a pure
function, so the rules (kubelet's getPhase, the conditions, the container
states and their reasons) can be read and tested without Docker. The worker
writes the result through pods/status only when it differs from what the pod
already says.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .runtime import ContainerRecord

# Reasons as the kubelet spells them.
COMPLETED, ERROR, OOM_KILLED = "Completed", "Error", "OOMKilled"
CONTAINER_CREATING, POD_INITIALIZING = "ContainerCreating", "PodInitializing"
CRASH_LOOP = "CrashLoopBackOff"


@dataclass
class Observed:
    """Everything the status is computed from, besides the pod itself."""

    records: list[ContainerRecord]
    node_ip: str
    now: str                                                     # RFC 3339
    ready: dict[str, bool] = field(default_factory=dict)         # container → readiness probe says ready
    started: dict[str, bool] = field(default_factory=dict)       # container → startup probe passed
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # container → (reason, message)
    runtime_prefix: str = "docker"


def latest_by_name(records: list[ContainerRecord], role: str) -> dict[str, list[ContainerRecord]]:
    """Each container's instances, newest (highest restart count) first."""
    out: dict[str, list[ContainerRecord]] = {}
    for r in records:
        if r.role == role:
            out.setdefault(r.name, []).append(r)
    for instances in out.values():
        instances.sort(key=lambda r: (r.restart_count, r.started_at or ""), reverse=True)
    return out


def terminated_reason(r: ContainerRecord) -> str:
    if r.oom_killed:
        return OOM_KILLED
    return COMPLETED if r.exit_code == 0 else ERROR


def terminated_state(r: ContainerRecord, prefix: str) -> dict[str, Any]:
    t: dict[str, Any] = {"exitCode": r.exit_code if r.exit_code is not None else 0,
                         "reason": terminated_reason(r), "startedAt": r.started_at, "finishedAt": r.finished_at,
                         "containerID": f"{prefix}://{r.id}"}
    if r.error:
        t["message"] = r.error
    return {"terminated": t}


def container_status(spec: dict[str, Any], instances: list[ContainerRecord], obs: Observed, *,
                     default_waiting: str) -> dict[str, Any]:
    name = spec["name"]
    out: dict[str, Any] = {"name": name, "image": spec.get("image", ""), "imageID": "", "ready": False,
                           "restartCount": 0, "started": False, "state": {}, "lastState": {}}
    latest = instances[0] if instances else None
    previous = instances[1] if len(instances) > 1 else None
    waiting = obs.waiting.get(name)
    if latest is None:
        reason, message = waiting or (default_waiting, "")
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return out
    out["restartCount"] = latest.restart_count
    out["containerID"] = f"{obs.runtime_prefix}://{latest.id}"
    out["imageID"] = latest.image_id
    if latest.running:
        out["state"] = {"running": {"startedAt": latest.started_at}}
        started = obs.started.get(name, True)
        out["started"] = started
        out["ready"] = started and obs.ready.get(name, True)
        if previous is not None and previous.exited:
            out["lastState"] = terminated_state(previous, obs.runtime_prefix)
    elif latest.exited:
        if waiting:   # about to be started again (CrashLoopBackOff) or failing to start
            out["state"] = {"waiting": {"reason": waiting[0], **({"message": waiting[1]} if waiting[1] else {})}}
            out["lastState"] = terminated_state(latest, obs.runtime_prefix)
        else:
            out["state"] = terminated_state(latest, obs.runtime_prefix)
            if previous is not None and previous.exited:
                out["lastState"] = terminated_state(previous, obs.runtime_prefix)
    else:  # created, not started yet
        reason, message = waiting or (default_waiting, "")
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return out


def init_succeeded(status: dict[str, Any]) -> bool:
    t = status["state"].get("terminated")
    return bool(t) and t.get("exitCode") == 0


def is_static(pod: dict[str, Any]) -> bool:
    """A static pod's mirror (kubelet's IsStaticPod: its config source is not the API)."""
    source = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/config.source")
    return bool(source) and source != "api"


def phase(pod: dict[str, Any], init: list[dict[str, Any]], app: list[dict[str, Any]], terminal: bool = False) -> str:
    """kubelet's getPhase. `terminal`: the pod is being deleted and its containers were stopped for
    good, so none will restart whatever restartPolicy says: all stopped is Succeeded when every one
    exited 0, else Failed (as since Kubernetes 1.27; not for static pods)."""
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    pending_init = failed_init = False
    for s in init:
        if init_succeeded(s):
            continue
        t = s["state"].get("terminated")
        if t and t.get("exitCode") != 0:
            failed_init = True
        elif s["state"].get("waiting") and (s["lastState"] or {}).get("terminated", {}).get("exitCode", 0) != 0:
            failed_init = True
        pending_init = True
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in app:
        state = s["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if (s.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped and terminal and not is_static(pod):
        return "Succeeded" if stopped == succeeded else "Failed"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "OnFailure":
            return "Running"
        return "Failed"
    return "Pending"


def _condition(old: list[dict[str, Any]], type_: str, status: str, now: str, reason: str = "",
               message: str = "") -> dict[str, Any]:
    prev = next((c for c in old if c.get("type") == type_), None)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
    c: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


OWN_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


def pod_status(pod: dict[str, Any], obs: Observed, *, terminal: bool = False) -> dict[str, Any]:
    """The whole status the kubelet would write: phase, conditions, container statuses, addresses.
    `terminal`: the pod's final status, once its containers were stopped for its deletion."""
    spec = pod.get("spec") or {}
    old = copy.deepcopy(pod.get("status") or {})
    init_specs, app_specs = spec.get("initContainers") or [], spec.get("containers") or []
    init_instances = latest_by_name(obs.records, "init")
    app_instances = latest_by_name(obs.records, "app")
    init = [container_status(c, init_instances.get(c["name"], []), obs, default_waiting=POD_INITIALIZING)
            for c in init_specs]
    initialized = all(init_succeeded(s) for s in init)
    app = [container_status(c, app_instances.get(c["name"], []), obs,
                            default_waiting=CONTAINER_CREATING if initialized else POD_INITIALIZING)
           for c in app_specs]
    # An init container is "ready" once it completed, as the kubelet reports it.
    for s in init:
        s["ready"] = init_succeeded(s)
        s["started"] = "running" in s["state"]
    the_phase = phase(pod, init, app, terminal)

    old_conditions = old.get("conditions") or []
    now = obs.now
    conditions = [c for c in old_conditions if c.get("type") not in OWN_CONDITIONS]
    scheduled = next((c for c in old_conditions if c.get("type") == "PodScheduled"), None)
    conditions.append(scheduled if scheduled and scheduled.get("status") == "True"
                      else _condition(old_conditions, "PodScheduled", "True", now))
    if initialized:
        conditions.append(_condition(old_conditions, "Initialized", "True", now))
    else:
        pending = [s["name"] for s in init if not init_succeeded(s)]
        conditions.append(_condition(old_conditions, "Initialized", "False", now, "ContainersNotInitialized",
                                     f"containers with incomplete status: [{' '.join(pending)}]"))
    unready = [s["name"] for s in app if not s["ready"]]
    if the_phase in ("Succeeded", "Failed"):
        reason = "PodCompleted" if the_phase == "Succeeded" else "PodFailed"
        conditions.append(_condition(old_conditions, "ContainersReady", "False", now, reason))
        conditions.append(_condition(old_conditions, "Ready", "False", now, reason))
    elif unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        conditions.append(_condition(old_conditions, "ContainersReady", "False", now, "ContainersNotReady",
                                     message))
        conditions.append(_condition(old_conditions, "Ready", "False", now, "ContainersNotReady", message))
    else:
        conditions.append(_condition(old_conditions, "ContainersReady", "True", now))
        conditions.append(_condition(old_conditions, "Ready", "True", now))
    order = {t: i for i, t in enumerate(("Initialized", "Ready", "ContainersReady", "PodScheduled"))}
    conditions.sort(key=lambda c: order.get(c.get("type"), -1))

    status = dict(old)
    status["phase"] = the_phase
    status["conditions"] = conditions
    status["hostIP"] = obs.node_ip
    status["hostIPs"] = [{"ip": obs.node_ip}]
    sandbox = next((r for r in sorted(obs.records, key=lambda r: r.restart_count, reverse=True)
                    if r.role == "infra" and r.running), None)
    pod_ip = obs.node_ip if spec.get("hostNetwork") else (sandbox.ip if sandbox else "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    status["startTime"] = old.get("startTime") or now
    if init_specs:
        status["initContainerStatuses"] = init
    status["containerStatuses"] = app
    return status

"""Server-side printing: objects to a meta.k8s.io/v1 Table for `kubectl get`.

The API layer calls `table` when a client asks for `as=Table`; the result goes
back as the response body (the caller adds metadata.resourceVersion/continue).
Columns and cells follow kube-apiserver 1.32's printers
(pkg/printers/internalversion/printers.go) run as the apiserver runs them, with
Wide on: every column is sent, kubectl hides priority>0 ones unless -o wide.
Kinds without a printer get the apiserver's default table (Name, Created At);
custom resources get their CRD's additionalPrinterColumns, or Name and Age.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from . import quantity
from .errors import BadRequestError
from .labels import format_labels
from .meta import BUILTIN_GROUPS, parse_time
from .selectors import LabelSelector, format_label_selector

NAME_DESC = ("Name must be unique within a namespace. Is required when creating resources, although some "
             "resources may allow a client to request the generation of an appropriate name automatically. Name "
             "is primarily intended for creation idempotence and configuration definition. Cannot be updated. "
             "More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_DESC = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
            "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
            "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
            "lists. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
CONTAINERS_DESC = "Names of each container in the template."
IMAGES_DESC = "Images referenced by each container in the template."



# --- durations --------------------------------------------------------------------------------------

def human_duration(d: timedelta) -> str:
    """apimachinery's duration.HumanDuration: about two significant figures ("3m12s", "2d3h", "3y45d")."""
    ns = (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000
    seconds = int(ns / 1_000_000_000)  # Go truncates toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = ns // 60_000_000_000
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = ns // 3_600_000_000_000
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


@dataclass(frozen=True)
class _Ctx:
    now: datetime
    wide: bool

    def since(self, timestamp: Any) -> str:
        """translateTimestampSince: `<unknown>` for an unset time."""
        t = parse_time(timestamp)
        return "<unknown>" if t is None else human_duration(self.now - t)


# --- small helpers ----------------------------------------------------------------------------------

def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _i(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _col(name: str, type_: str, description: str, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def _name_col() -> dict[str, Any]:
    return _col("Name", "string", NAME_DESC, fmt="name")


def _age_col() -> dict[str, Any]:
    return _col("Age", "string", AGE_DESC)


def _template_cols(selector: bool = True) -> list[dict[str, Any]]:
    cols = [_col("Containers", "string", CONTAINERS_DESC, 1), _col("Images", "string", IMAGES_DESC, 1)]
    if selector:
        cols.append(_col("Selector", "string", "A label query over pods that should match the replica count.", 1))
    return cols


def _containers(pod_spec: Any) -> tuple[str, str]:
    """layoutContainerCells: names and images joined by ','."""
    containers = _l(_d(pod_spec).get("containers"))
    return (",".join(_s(_d(c).get("name")) for c in containers),
            ",".join(_s(_d(c).get("image")) for c in containers))


def _template_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    return _d(_d(_d(obj.get("spec")).get("template")).get("spec"))


def _selector_text(obj: Mapping[str, Any]) -> str:
    return format_label_selector(_d(obj.get("spec")).get("selector"))


def _qty(value: Any) -> str:
    """Quantity.String(); the zero quantity when unset."""
    if value is None:
        return "0"
    try:
        return quantity.canonical(str(value))
    except ValueError:
        return str(value)


def _has_condition(conditions: Any, type_: str) -> bool:
    """hasJobCondition: the first condition of that type decides."""
    for c in _l(conditions):
        if _d(c).get("type") == type_:
            return _d(c).get("status") == "True"
    return False


# --- pods -------------------------------------------------------------------------------------------

_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def _later(current: datetime | None, terminated: Any) -> datetime | None:
    finished = parse_time(_d(terminated).get("finishedAt")) if terminated else None
    if finished is not None and (current is None or current < finished):
        return finished
    return current


def _terminated_reason(terminated: dict[str, Any], prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + terminated["reason"]
    if _i(terminated.get("signal")):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{_i(terminated.get('exitCode'))}"


def pod_status(pod: Mapping[str, Any], now: datetime) -> tuple[str, str, str]:
    """READY, STATUS and RESTARTS exactly as `kubectl get pods` shows them (printPod)."""
    spec, status = _d(pod.get("spec")), _d(pod.get("status"))
    init_specs = {_d(c).get("name"): _d(c) for c in _l(spec.get("initContainers"))}
    total = len(_l(spec.get("containers")))
    total += sum(1 for c in init_specs.values() if c.get("restartPolicy") == "Always")
    ready = restarts = restartable_restarts = 0
    last_restart: datetime | None = None
    last_restartable_restart: datetime | None = None
    phase = _s(status.get("phase"))
    reason = _s(status.get("reason")) or phase
    conditions = [_d(c) for c in _l(status.get("conditions"))]
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions):
        reason = "SchedulingGated"

    initializing = False
    init_statuses = [_d(c) for c in _l(status.get("initContainerStatuses"))]
    for i, cs in enumerate(init_statuses):
        restarts += _i(cs.get("restartCount"))
        previous = _d(cs.get("lastState")).get("terminated")
        last_restart = _later(last_restart, previous)
        restartable = init_specs.get(cs.get("name"), {}).get("restartPolicy") == "Always"
        if restartable:
            restartable_restarts += _i(cs.get("restartCount"))
            last_restartable_restart = _later(last_restartable_restart, previous)
        state = _d(cs.get("state"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and _i(_d(terminated).get("exitCode")) == 0:
            continue
        if restartable and cs.get("started") is True:
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated is not None:
            reason = _terminated_reason(_d(terminated), "Init:")
        elif waiting is not None and _d(waiting).get("reason") and _d(waiting)["reason"] != "PodInitializing":
            reason = "Init:" + _d(waiting)["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = next((c.get("status") == "True" for c in conditions if c.get("type") == "Initialized"), False)
    if not initializing or initialized:
        restarts, last_restart = restartable_restarts, last_restartable_restart
        has_running = False
        for cs in reversed([_d(c) for c in _l(status.get("containerStatuses"))]):
            restarts += _i(cs.get("restartCount"))
            last_restart = _later(last_restart, _d(cs.get("lastState")).get("terminated"))
            state = _d(cs.get("state"))
            waiting, terminated = _d(state.get("waiting")), state.get("terminated")
            if waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(_d(terminated))
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # A container still running makes a "Completed" pod Running (or NotReady) again.
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            reason = "Running" if pod_ready else "NotReady"

    deleting = bool(_d(pod.get("metadata")).get("deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    return f"{ready}/{total}", reason, restarts_text


def _pod(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    ready, reason, restarts = pod_status(obj, ctx.now)
    ips = _l(status.get("podIPs"))
    pod_ip = _s(_d(ips[0]).get("ip")) if ips else _s(status.get("podIP"))
    gates = _l(spec.get("readinessGates"))
    gates_text = "<none>"
    if gates:
        by_type: dict[str, Any] = {}
        for c in _l(status.get("conditions")):
            by_type.setdefault(_d(c).get("type"), _d(c).get("status"))
        true = sum(1 for g in gates if by_type.get(_d(g).get("conditionType")) == "True")
        gates_text = f"{true}/{len(gates)}"
    return [_meta_name(obj), ready, reason, restarts, ctx.since(_created(obj)),
            pod_ip or "<none>", _s(spec.get("nodeName")) or "<none>",
            _s(status.get("nominatedNodeName")) or "<none>", gates_text]


def _pod_conditions(obj: Mapping[str, Any]) -> list[dict[str, str]] | None:
    phase = _d(obj.get("status")).get("phase")
    return _POD_SUCCEEDED if phase == "Succeeded" else _POD_FAILED if phase == "Failed" else None


# --- workloads --------------------------------------------------------------------------------------

def _meta_name(obj: Mapping[str, Any]) -> str:
    return _s(_d(obj.get("metadata")).get("name"))


def _created(obj: Mapping[str, Any]) -> Any:
    return _d(obj.get("metadata")).get("creationTimestamp")


def _replicas(obj: Mapping[str, Any]) -> int:
    # Defaulting sets spec.replicas to 1; an object stored before defaulting reads the same.
    return _i(_d(obj.get("spec")).get("replicas"), 1)


def _deployment(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    status = _d(obj.get("status"))
    names, images = _containers(_template_spec(obj))
    selector = _d(obj.get("spec")).get("selector")
    try:
        selector_text = str(LabelSelector.from_object(selector))
    except BadRequestError:
        selector_text = "<invalid>"
    return [_meta_name(obj), f"{_i(status.get('readyReplicas'))}/{_replicas(obj)}",
            _i(status.get("updatedReplicas")), _i(status.get("availableReplicas")), ctx.since(_created(obj)),
            names, images, selector_text]


def _replica_set(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    status = _d(obj.get("status"))
    names, images = _containers(_template_spec(obj))
    return [_meta_name(obj), _replicas(obj), _i(status.get("replicas")), _i(status.get("readyReplicas")),
            ctx.since(_created(obj)), names, images, _selector_text(obj)]


def _replication_controller(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    status = _d(obj.get("status"))
    names, images = _containers(_template_spec(obj))
    return [_meta_name(obj), _replicas(obj), _i(status.get("replicas")), _i(status.get("readyReplicas")),
            ctx.since(_created(obj)), names, images, format_labels(_d(obj.get("spec")).get("selector"))]


def _stateful_set(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    names, images = _containers(_template_spec(obj))
    ready = _i(_d(obj.get("status")).get("readyReplicas"))
    return [_meta_name(obj), f"{ready}/{_replicas(obj)}", ctx.since(_created(obj)), names, images]


def _daemon_set(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    status = _d(obj.get("status"))
    spec = _template_spec(obj)
    names, images = _containers(spec)
    return [_meta_name(obj), _i(status.get("desiredNumberScheduled")), _i(status.get("currentNumberScheduled")),
            _i(status.get("numberReady")), _i(status.get("updatedNumberScheduled")),
            _i(status.get("numberAvailable")), format_labels(_d(spec.get("nodeSelector"))),
            ctx.since(_created(obj)), names, images, _selector_text(obj)]


def _job(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    succeeded = _i(status.get("succeeded"))
    if isinstance(spec.get("completions"), int):
        completions = f"{succeeded}/{spec['completions']}"
    else:
        parallelism = _i(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or ctx.now) - start)
    conditions = status.get("conditions")
    if _has_condition(conditions, "Complete"):
        state = "Complete"
    elif _has_condition(conditions, "Failed"):
        state = "Failed"
    elif _d(obj.get("metadata")).get("deletionTimestamp"):
        state = "Terminating"
    elif _has_condition(conditions, "Suspended"):
        state = "Suspended"
    elif _has_condition(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_template_spec(obj))
    return [_meta_name(obj), state, completions, duration, ctx.since(_created(obj)), names, images,
            _selector_text(obj)]


def _cron_job(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    last = ctx.since(status["lastScheduleTime"]) if status.get("lastScheduleTime") else "<none>"
    suspend = spec.get("suspend")
    suspend_text = "<unset>" if not isinstance(suspend, bool) else ("True" if suspend else "False")
    job_spec = _d(_d(spec.get("jobTemplate")).get("spec"))
    names, images = _containers(_d(_d(job_spec.get("template")).get("spec")))
    return [_meta_name(obj), _s(spec.get("schedule")), spec.get("timeZone") or "<none>", suspend_text,
            len(_l(status.get("active"))), last, ctx.since(_created(obj)), names, images,
            format_label_selector(job_spec.get("selector"))]


# --- services and networking ------------------------------------------------------------------------

_LOAD_BALANCER_WIDTH = 16


def _load_balancer_text(status: Any, wide: bool) -> str:
    found = set()
    for ing in _l(_d(status).get("ingress")):
        ing = _d(ing)
        if ing.get("ip"):
            found.add(ing["ip"])
        elif ing.get("hostname"):
            found.add(ing["hostname"])
    text = ",".join(sorted(found))
    if not wide and len(text) > _LOAD_BALANCER_WIDTH:
        text = text[:_LOAD_BALANCER_WIDTH - 3] + "..."
    return text


def _external_ip(obj: Mapping[str, Any], wide: bool) -> str:
    spec = _d(obj.get("spec"))
    external = [_s(ip) for ip in _l(spec.get("externalIPs"))]
    kind = spec.get("type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        lb = _load_balancer_text(_d(obj.get("status")).get("loadBalancer"), wide)
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if kind == "ExternalName":
        return _s(spec.get("externalName"))
    return "<unknown>"


def _ports(ports: Any) -> str:
    pieces = []
    for p in _l(ports):
        p = _d(p)
        protocol = _s(p.get("protocol"))
        if _i(p.get("nodePort")) > 0:
            pieces.append(f"{_i(p.get('port'))}:{p['nodePort']}/{protocol}")
        else:
            pieces.append(f"{_i(p.get('port'))}/{protocol}")
    return ",".join(pieces)


def _service(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec = _d(obj.get("spec"))
    cluster_ips = _l(spec.get("clusterIPs"))
    cluster_ip = _s(cluster_ips[0]) if cluster_ips else _s(spec.get("clusterIP"))
    return [_meta_name(obj), _s(spec.get("type")), cluster_ip or "<none>", _external_ip(obj, ctx.wide),
            _ports(spec.get("ports")) or "<none>", ctx.since(_created(obj)), format_labels(_d(spec.get("selector")))]


def format_endpoints(obj: Mapping[str, Any]) -> str:
    """formatEndpoints: up to three `ip:port` (or bare IPs for port-less subsets), then `+ N more...`."""
    subsets = _l(obj.get("subsets"))
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count, limit, more = 0, 3, False
    for ss in subsets:
        ss = _d(ss)
        addresses = [_s(_d(a).get("ip")) for a in _l(ss.get("addresses"))]
        ports = _l(ss.get("ports"))
        for port in ports or [None]:
            count += len(addresses)
            for ip in addresses:
                if len(shown) == limit:
                    more = True
                    break
                if port is None:
                    shown.append(ip)
                else:
                    port_no = _i(_d(port).get("port"))
                    shown.append(f"[{ip}]:{port_no}" if ":" in ip else f"{ip}:{port_no}")
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def _endpoints(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), format_endpoints(obj), ctx.since(_created(obj))]


def _with_more(items: list[str], count: int, limit: int = 3) -> str:
    """listWithMoreString: `<unset>` when there is nothing."""
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _endpoint_slice(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    ports = []
    for p in _l(obj.get("ports")):
        p = _d(p)
        ports.append(str(p["port"]) if isinstance(p.get("port"), int) else _s(p.get("name")) or "*")
    addresses = [_s(a) for e in _l(obj.get("endpoints")) for a in _l(_d(e).get("addresses"))]
    return [_meta_name(obj), _s(obj.get("addressType")), _with_more(ports, len(ports)),
            _with_more(addresses, len(addresses)), ctx.since(_created(obj))]


def _ingress(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec = _d(obj.get("spec"))
    rules = _l(spec.get("rules"))
    hosts: list[str] = []
    more = False
    for rule in rules:  # formatHosts
        if len(hosts) == 3:
            more = True
        if not more and _d(rule).get("host"):
            hosts.append(_d(rule)["host"])
    hosts_text = ",".join(hosts) or "*"
    if hosts and more:
        hosts_text += f" + {len(rules) - 3} more..."
    address = _load_balancer_text(_d(obj.get("status")).get("loadBalancer"), ctx.wide)
    return [_meta_name(obj), spec.get("ingressClassName") or "<none>", hosts_text, address,
            "80, 443" if _l(spec.get("tls")) else "80", ctx.since(_created(obj))]


def _ingress_class(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec = _d(obj.get("spec"))
    params = spec.get("parameters")
    text = "<none>"
    if isinstance(params, dict):
        text = _s(params.get("kind")) + ("." + params["apiGroup"] if params.get("apiGroup") else "")
        text += "/" + _s(params.get("name"))
    return [_meta_name(obj), _s(spec.get("controller")), text, ctx.since(_created(obj))]


def _network_policy(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    selector = _d(obj.get("spec")).get("podSelector") or {}
    return [_meta_name(obj), format_label_selector(selector), ctx.since(_created(obj))]


# --- cluster and config objects ---------------------------------------------------------------------

def _node(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    status, spec = _d(obj.get("status")), _d(obj.get("spec"))
    states = []
    ready = {_d(c).get("type"): _d(c) for c in _l(status.get("conditions"))}.get("Ready")
    if ready is not None:
        states.append("Ready" if ready.get("status") == "True" else "NotReady")
    states = states or ["Unknown"]
    if spec.get("unschedulable") is True:
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in _d(_d(obj.get("metadata")).get("labels")).items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/"):]:
            roles.add(key[len("node-role.kubernetes.io/"):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = _d(status.get("nodeInfo"))
    addresses = [_d(a) for a in _l(status.get("addresses"))]
    internal = next((_s(a.get("address")) for a in addresses if a.get("type") == "InternalIP"), "<none>")
    external = next((_s(a.get("address")) for a in addresses if a.get("type") == "ExternalIP"), "<none>")
    return [_meta_name(obj), ",".join(states), ",".join(sorted(roles)) or "<none>", ctx.since(_created(obj)),
            _s(info.get("kubeletVersion")), internal, external, _s(info.get("osImage")) or "<unknown>",
            _s(info.get("kernelVersion")) or "<unknown>", _s(info.get("containerRuntimeVersion")) or "<unknown>"]


def _namespace(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), _s(_d(obj.get("status")).get("phase")), ctx.since(_created(obj))]


def _config_map(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), len(_d(obj.get("data"))) + len(_d(obj.get("binaryData"))), ctx.since(_created(obj))]


def _secret(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), _s(obj.get("type")), len(_d(obj.get("data"))), ctx.since(_created(obj))]


def _service_account(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), len(_l(obj.get("secrets"))), ctx.since(_created(obj))]


def _lease(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), _s(_d(obj.get("spec")).get("holderIdentity")), ctx.since(_created(obj))]


def _priority_class(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), _i(obj.get("value")), obj.get("globalDefault") is True, ctx.since(_created(obj)),
            _s(obj.get("preemptionPolicy"))]


def _int_or_string(value: Any) -> str:
    return "N/A" if value is None else str(value)


def _pdb(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec = _d(obj.get("spec"))
    return [_meta_name(obj), _int_or_string(spec.get("minAvailable")), _int_or_string(spec.get("maxUnavailable")),
            _i(_d(obj.get("status")).get("disruptionsAllowed")), ctx.since(_created(obj))]


def _subjects(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    users, groups, sas = [], [], []
    for s in _l(obj.get("subjects")):
        s = _d(s)
        if s.get("kind") == "ServiceAccount":
            sas.append(f"{_s(s.get('namespace'))}/{_s(s.get('name'))}")
        elif s.get("kind") == "User":
            users.append(_s(s.get("name")))
        elif s.get("kind") == "Group":
            groups.append(_s(s.get("name")))
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def _role_binding(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    ref = _d(obj.get("roleRef"))
    return [_meta_name(obj), f"{_s(ref.get('kind'))}/{_s(ref.get('name'))}", ctx.since(_created(obj)),
            *_subjects(obj)]


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: Any) -> str:
    present = set(_l(modes))
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"


def _storage_class_of(obj: Mapping[str, Any]) -> str:
    annotations = _d(_d(obj.get("metadata")).get("annotations"))
    if _BETA_STORAGE_CLASS in annotations:
        return _s(annotations[_BETA_STORAGE_CLASS])
    return _s(_d(obj.get("spec")).get("storageClassName"))


def _persistent_volume(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    claim = spec.get("claimRef")
    claim_text = f"{_s(_d(claim).get('namespace'))}/{_s(_d(claim).get('name'))}" if claim else ""
    phase = "Terminating" if _d(obj.get("metadata")).get("deletionTimestamp") else _s(status.get("phase"))
    return [_meta_name(obj), _qty(_d(spec.get("capacity")).get("storage")), _access_modes(spec.get("accessModes")),
            _s(spec.get("persistentVolumeReclaimPolicy")), phase, claim_text, _storage_class_of(obj),
            spec.get("volumeAttributesClassName") or "<unset>", _s(status.get("reason")), ctx.since(_created(obj)),
            spec.get("volumeMode") or "<unset>"]


def _persistent_volume_claim(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    phase = "Terminating" if _d(obj.get("metadata")).get("deletionTimestamp") else _s(status.get("phase"))
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = _qty(_d(status.get("capacity")).get("storage"))
    return [_meta_name(obj), phase, _s(spec.get("volumeName")), capacity, modes, _storage_class_of(obj),
            spec.get("volumeAttributesClassName") or "<unset>", ctx.since(_created(obj)),
            spec.get("volumeMode") or "<unset>"]


def _resource_quota(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    status = _d(obj.get("status"))
    hard, used = _d(status.get("hard")), _d(status.get("used"))
    requests, limits = [], []
    for name in sorted(hard):
        text = f"{name}: {_qty(used.get(name))}/{_qty(hard[name])}"
        pieces = name.split(".")
        (limits if len(pieces) > 1 and pieces[0] == "limits" else requests).append(text)
    return [_meta_name(obj), ", ".join(requests), ", ".join(limits), ctx.since(_created(obj))]


def _controller_revision(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    owner = next((_d(r) for r in _l(_d(obj.get("metadata")).get("ownerReferences"))
                  if _d(r).get("controller") is True), None)
    controller = "<none>"
    if owner is not None:
        api_version, kind = _s(owner.get("apiVersion")), _s(owner.get("kind"))
        group = api_version.split("/")[0] if "/" in api_version else ""
        group_kind = f"{kind}.{group}" if group else kind
        controller = f"{group_kind.lower()}/{_s(owner.get('name'))}" if group_kind else _s(owner.get("name"))
    return [_meta_name(obj), controller, _i(obj.get("revision")), ctx.since(_created(obj))]


def _pod_template(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    template = _d(obj.get("template"))
    names, images = _containers(template.get("spec"))
    return [_meta_name(obj), names, images, format_labels(_d(_d(template.get("metadata")).get("labels")))]


def _storage_class(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    annotations = _d(_d(obj.get("metadata")).get("annotations"))
    default = any(annotations.get(k) == "true" for k in ("storageclass.kubernetes.io/is-default-class",
                                                           "storageclass.beta.kubernetes.io/is-default-class"))
    expansion = obj.get("allowVolumeExpansion") is True
    return [_meta_name(obj) + (" (default)" if default else ""), _s(obj.get("provisioner")),
            obj.get("reclaimPolicy") or "Delete", obj.get("volumeBindingMode") or "Immediate", expansion,
            ctx.since(_created(obj))]


def _csr(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    types = {_d(c).get("type") for c in _l(status.get("conditions"))}
    text = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        text += ",Failed"
    if status.get("certificate"):
        text += ",Issued"
    seconds = spec.get("expirationSeconds")
    requested = human_duration(timedelta(seconds=seconds)) if isinstance(seconds, int) else "<none>"
    return [_meta_name(obj), ctx.since(_created(obj)), spec.get("signerName") or "<none>", _s(spec.get("username")),
            requested, text]


def _webhooks(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), len(_l(obj.get("webhooks"))), ctx.since(_created(obj))]


def _runtime_class(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    return [_meta_name(obj), _s(obj.get("handler")), ctx.since(_created(obj))]


# --- events -----------------------------------------------------------------------------------------

def _core_event_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event read as the core Event the printer knows (the apiserver stores it so)."""
    series = obj.get("series")
    return {
        "metadata": obj.get("metadata"), "involvedObject": obj.get("regarding"), "reason": obj.get("reason"),
        "message": obj.get("note"), "source": obj.get("deprecatedSource"),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"), "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount"), "type": obj.get("type"), "eventTime": obj.get("eventTime"),
        "series": {"count": _d(series).get("count"), "lastObservedTime": _d(series).get("lastObservedTime")}
        if isinstance(series, dict) else None,
        "reportingComponent": obj.get("reportingController"), "reportingInstance": obj.get("reportingInstance"),
    }


def _event(obj: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    first = ctx.since(obj.get("firstTimestamp")) if obj.get("firstTimestamp") else ctx.since(obj.get("eventTime"))
    last = ctx.since(obj["lastTimestamp"]) if obj.get("lastTimestamp") else first
    count = _i(obj.get("count"))
    series = obj.get("series")
    if isinstance(series, dict):
        last, count = ctx.since(series.get("lastObservedTime")), _i(series.get("count"))
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    involved = _d(obj.get("involvedObject"))
    target = _s(involved.get("kind")).lower()
    if involved.get("name"):
        target += "/" + _s(involved["name"])
    source = _d(obj.get("source"))
    component = _s(source.get("component")) or _s(obj.get("reportingComponent"))
    host = _s(source.get("host")) or _s(obj.get("reportingInstance"))
    source_text = f"{component}, {host}" if host else component
    return [last, _s(obj.get("type")), _s(obj.get("reason")), target, _s(involved.get("fieldPath")), source_text,
            _s(obj.get("message")).strip(), first, count, _meta_name(obj)]


# --- the printer table ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Printer:
    columns: list[dict[str, Any]]
    row: Callable[[Mapping[str, Any], _Ctx], list[Any]]
    conditions: Callable[[Mapping[str, Any]], list[dict[str, str]] | None] = lambda obj: None
    view: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda obj: obj


def _c(name: str, type_: str = "string", desc: str = "", priority: int = 0) -> dict[str, Any]:
    return _col(name, type_, desc or name, priority)


_EVENT_COLUMNS = [
    _c("Last Seen", desc="The time at which the most recent occurrence of this event was recorded."),
    _c("Type", desc="Type of this event (Normal, Warning), new types could be added in the future"),
    _c("Reason", desc="This should be a short, machine understandable string that gives the reason for the "
                      "transition into the object's current status."),
    _c("Object", desc="The object that this event is about."),
    _c("Subobject", desc="The specific part of the object the event is about (fieldPath).", priority=1),
    _c("Source", desc="The component reporting this event.", priority=1),
    _c("Message", desc="A human-readable description of the status of this operation."),
    _c("First Seen", desc="The time at which the event was first recorded.", priority=1),
    _c("Count", desc="The number of times this event has occurred.", priority=1),
    {**_name_col(), "priority": 1},
]
_ROLE_BINDING_COLUMNS = [
    _name_col(), _c("Role", desc="RoleRef can reference a Role in the current namespace or a ClusterRole."),
    _age_col(), _c("Users", desc="Users in the roleBinding", priority=1),
    _c("Groups", desc="Groups in the roleBinding", priority=1),
    _c("ServiceAccounts", desc="ServiceAccounts in the roleBinding", priority=1),
]
_WEBHOOK_COLUMNS = [_name_col(), _c("Webhooks", "integer", "Webhooks indicates the number of webhooks registered "
                                                           "in this configuration"), _age_col()]

PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "pods"): _Printer([
        _name_col(), _c("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
        _c("Status", desc="The aggregate status of the containers in this pod."),
        _c("Restarts", desc="The number of times the containers in this pod have been restarted and when the last "
                            "container in this pod has restarted."),
        _age_col(), _c("IP", desc="podIP address allocated to the pod.", priority=1),
        _c("Node", desc="NodeName indicates in which node this pod is scheduled.", priority=1),
        _c("Nominated Node", desc="nominatedNodeName is set only when this pod preempts other pods on the node.",
           priority=1),
        _c("Readiness Gates", desc="If specified, all readiness gates will be evaluated for pod readiness.",
           priority=1)], _pod, _pod_conditions),
    ("apps", "deployments"): _Printer([
        _name_col(), _c("Ready", desc="Number of the pod with ready state"),
        _c("Up-to-date", desc="Total number of non-terminated pods targeted by this deployment that have the "
                              "desired template spec."),
        _c("Available", desc="Total number of available pods (ready for at least minReadySeconds) targeted by "
                             "this deployment."),
        _age_col(), *_template_cols()], _deployment),
    ("apps", "replicasets"): _Printer([
        _name_col(), _c("Desired", "integer", "Replicas is the number of desired replicas."),
        _c("Current", "integer", "Replicas is the most recently observed number of replicas."),
        _c("Ready", "integer", "The number of ready replicas for this replica set."),
        _age_col(), *_template_cols()], _replica_set),
    ("", "replicationcontrollers"): _Printer([
        _name_col(), _c("Desired", "integer", "Replicas is the number of desired replicas."),
        _c("Current", "integer", "Replicas is the most recently observed number of replicas."),
        _c("Ready", "integer", "The number of ready replicas for this replication controller."),
        _age_col(), *_template_cols()], _replication_controller),
    ("apps", "statefulsets"): _Printer([
        _name_col(), _c("Ready", desc="Number of the pod with ready state"), _age_col(),
        *_template_cols(selector=False)], _stateful_set),
    ("apps", "daemonsets"): _Printer([
        _name_col(), _c("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
        _c("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to "
                                 "run the daemon pod."),
        _c("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of "
                               "the daemon pod running and ready."),
        _c("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
        _c("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more "
                                   "of the daemon pod running and available."),
        _c("Node Selector", desc="NodeSelector is a selector which must be true for the pod to fit on a node."),
        _age_col(), *_template_cols()], _daemon_set),
    ("batch", "jobs"): _Printer([
        _name_col(), _c("Status", desc="Status of the job."),
        _c("Completions", desc="The number of pods which reached phase Succeeded."),
        _c("Duration", desc="Time required to complete the job."), _age_col(), *_template_cols()], _job),
    ("batch", "cronjobs"): _Printer([
        _name_col(), _c("Schedule", desc="The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        _c("Timezone", desc="The time zone name for the given schedule."),
        _c("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
        _c("Active", "integer", "A list of pointers to currently running jobs."),
        _c("Last Schedule", desc="Information when was the last time the job was successfully scheduled."),
        _age_col(), *_template_cols()], _cron_job),
    ("", "services"): _Printer([
        _name_col(), _c("Type", desc="type determines how the Service is exposed."),
        _c("Cluster-IP", desc="clusterIP is the IP address of the service."),
        _c("External-IP", desc="externalIPs is a list of IP addresses for which nodes in the cluster will also "
                               "accept traffic for this service."),
        _c("Port(s)", desc="The list of ports that are exposed by this service."), _age_col(),
        _c("Selector", desc="Route service traffic to pods with label keys and values matching this selector.",
           priority=1)], _service),
    ("", "endpoints"): _Printer([
        _name_col(), _c("Endpoints", desc="The set of all endpoints is the union of all subsets."), _age_col()],
        _endpoints),
    ("discovery.k8s.io", "endpointslices"): _Printer([
        _name_col(), _c("AddressType", desc="addressType specifies the type of address carried by this "
                                            "EndpointSlice."),
        _c("Ports", desc="ports specifies the list of network ports exposed by each endpoint in this slice."),
        _c("Endpoints", desc="endpoints is a list of unique endpoints in this slice."), _age_col()],
        _endpoint_slice),
    ("", "nodes"): _Printer([
        _name_col(), _c("Status", desc="The status of the node"), _c("Roles", desc="The roles of the node"),
        _age_col(), _c("Version", desc="Kubelet Version reported by the node."),
        _c("Internal-IP", desc="List of addresses reachable to the node.", priority=1),
        _c("External-IP", desc="List of addresses reachable to the node.", priority=1),
        _c("OS-Image", desc="OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 "
                            "(wheezy)).", priority=1),
        _c("Kernel-Version", desc="Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
           priority=1),
        _c("Container-Runtime", desc="ContainerRuntime Version reported by the node through runtime remote API "
                                     "(e.g. containerd://1.4.2).", priority=1)], _node),
    ("", "namespaces"): _Printer([_name_col(), _c("Status", desc="The status of the namespace"), _age_col()],
                                 _namespace),
    ("", "configmaps"): _Printer([_name_col(), _c("Data", desc="Data contains the configuration data."), _age_col()],
                                 _config_map),
    ("", "secrets"): _Printer([
        _name_col(), _c("Type", desc="Used to facilitate programmatic handling of secret data."),
        _c("Data", desc="Data contains the secret data."), _age_col()], _secret),
    ("", "serviceaccounts"): _Printer([
        _name_col(), _c("Secrets", desc="Secrets is a list of the secrets in the same namespace that pods running "
                                        "using this ServiceAccount are allowed to use."), _age_col()],
        _service_account),
    ("", "events"): _Printer(_EVENT_COLUMNS, _event),
    ("events.k8s.io", "events"): _Printer(_EVENT_COLUMNS, _event, view=_core_event_view),
    ("coordination.k8s.io", "leases"): _Printer([
        _name_col(), _c("Holder", desc="holderIdentity contains the identity of the holder of a current lease."),
        _age_col()], _lease),
    ("", "persistentvolumes"): _Printer([
        _name_col(), _c("Capacity", desc="capacity is the description of the persistent volume's resources and "
                                         "capacity."),
        _c("Access Modes", desc="accessModes contains all ways the volume can be mounted."),
        _c("Reclaim Policy", desc="persistentVolumeReclaimPolicy defines what happens to a persistent volume when "
                                  "released from its claim."),
        _c("Status", desc="phase indicates if a volume is available, bound to a claim, or released by a claim."),
        _c("Claim", desc="claimRef is part of a bi-directional binding between PersistentVolume and "
                         "PersistentVolumeClaim."),
        _c("StorageClass", desc="StorageClass of the pv"),
        _c("VolumeAttributesClass", desc="VolumeAttributesClass of the pv"),
        _c("Reason", desc="reason is a brief CamelCase string that describes any failure."), _age_col(),
        _c("VolumeMode", desc="volumeMode defines if a volume is intended to be used with a formatted filesystem "
                              "or to remain in raw block state.", priority=1)], _persistent_volume),
    ("", "persistentvolumeclaims"): _Printer([
        _name_col(), _c("Status", desc="phase represents the current phase of PersistentVolumeClaim."),
        _c("Volume", desc="volumeName is the binding reference to the PersistentVolume backing this claim."),
        _c("Capacity", desc="capacity represents the actual resources of the underlying volume."),
        _c("Access Modes", desc="accessModes contains the actual access modes the volume backing the PVC has."),
        _c("StorageClass", desc="StorageClass of the pvc"),
        _c("VolumeAttributesClass", desc="VolumeAttributesClass of the pvc"), _age_col(),
        _c("VolumeMode", desc="volumeMode defines what type of volume is required by the claim.", priority=1)],
        _persistent_volume_claim),
    ("scheduling.k8s.io", "priorityclasses"): _Printer([
        _name_col(), _c("Value", "integer", "value represents the integer value of this priority class."),
        _c("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as "
                                        "the default priority for pods that do not have any priority class."),
        _age_col(), _c("PreemptionPolicy", desc="preemptionPolicy is the Policy for preempting pods with lower "
                                                "priority.")], _priority_class),
    ("policy", "poddisruptionbudgets"): _Printer([
        _name_col(), _c("Min Available", desc="The minimum number of pods that must be available."),
        _c("Max Unavailable", desc="The maximum number of pods that may be unavailable."),
        _c("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        _age_col()], _pdb),
    ("rbac.authorization.k8s.io", "rolebindings"): _Printer(_ROLE_BINDING_COLUMNS, _role_binding),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _Printer(
        [{**c, "description": c["description"].replace("roleBinding", "clusterRoleBinding")}
         for c in _ROLE_BINDING_COLUMNS], _role_binding),
    ("", "resourcequotas"): _Printer([
        _name_col(), _c("Request", desc="Request represents a minimum amount of cpu/memory that a container may "
                                        "consume."),
        _c("Limit", desc="Limits control the maximum amount of cpu/memory that a container may use independent of "
                         "contention on the node."), _age_col()], _resource_quota),
    ("apps", "controllerrevisions"): _Printer([
        _name_col(), _c("Controller", desc="Controller of the object"),
        _c("Revision", desc="Revision indicates the revision of the state represented by Data."), _age_col()],
        _controller_revision),
    ("", "podtemplates"): _Printer([
        _name_col(), _c("Containers", desc=CONTAINERS_DESC), _c("Images", desc=IMAGES_DESC),
        _c("Pod Labels", desc="The labels for the pod template.")], _pod_template),
    ("networking.k8s.io", "ingresses"): _Printer([
        _name_col(), _c("Class", desc="The name of the IngressClass resource that should be used for additional "
                                      "configuration"),
        _c("Hosts", desc="Hosts that incoming requests are matched against before the ingress rule"),
        _c("Address", desc="Address is a list containing ingress points for the load-balancer"),
        _c("Ports", desc="Ports of TLS configurations that open"), _age_col()], _ingress),
    ("networking.k8s.io", "ingressclasses"): _Printer([
        _name_col(), _c("Controller", desc="Controller that is responsible for handling this class"),
        _c("Parameters", desc="A reference to a resource with additional parameters"), _age_col()], _ingress_class),
    ("networking.k8s.io", "networkpolicies"): _Printer([
        _name_col(), _c("Pod-Selector", desc="podSelector selects the pods to which this NetworkPolicy object "
                                             "applies."), _age_col()], _network_policy),
    ("storage.k8s.io", "storageclasses"): _Printer([
        _name_col(), _c("Provisioner", desc="provisioner indicates the type of the provisioner."),
        _c("ReclaimPolicy", desc="reclaimPolicy controls the reclaimPolicy for dynamically provisioned "
                                 "PersistentVolumes of this storage class."),
        _c("VolumeBindingMode", desc="volumeBindingMode indicates how PersistentVolumeClaims should be provisioned "
                                     "and bound."),
        _c("AllowVolumeExpansion", desc="allowVolumeExpansion shows whether the storage class allow volume "
                                        "expand."), _age_col()], _storage_class),
    ("certificates.k8s.io", "certificatesigningrequests"): _Printer([
        _name_col(), _age_col(), _c("SignerName", desc="signerName indicates the requested signer."),
        _c("Requestor", desc="username contains the name of the user that created the CertificateSigningRequest."),
        _c("RequestedDuration", desc="expirationSeconds is the requested duration of validity of the issued "
                                     "certificate."),
        _c("Condition", desc="conditions applied to the request.")], _csr),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): _Printer(_WEBHOOK_COLUMNS, _webhooks),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): _Printer(_WEBHOOK_COLUMNS, _webhooks),
    ("node.k8s.io", "runtimeclasses"): _Printer([
        _name_col(), _c("Handler", desc="handler specifies the underlying runtime and configuration that the CRI "
                                        "implementation will use to handle pods of this class."), _age_col()],
        _runtime_class),
}


# --- custom resources and the default table ---------------------------------------------------------

_FILTER = re.compile(r"""\?\(@((?:\.[A-Za-z0-9_\-/]+)+)\s*(==|!=)\s*(?:'([^']*)'|"([^"]*)"|([^)\s]+))\)""")


def _jsonpath_steps(path: str) -> list[tuple[str, str]] | None:
    """`.field` (with backslash-escaped dots), `[n]`, `[*]`, `['key']` and `[?(...)]` steps, or None."""
    steps: list[tuple[str, str]] = []
    i, n = 0, len(path)
    while i < n:
        if path[i] == ".":
            i += 1
            name: list[str] = []
            while i < n and path[i] not in ".[":
                if path[i] == "\\" and i + 1 < n:
                    name.append(path[i + 1])
                    i += 2
                    continue
                name.append(path[i])
                i += 1
            if not name:
                return None  # ".." (recursive descent) is not supported
            steps.append(("field", "".join(name)))
        elif path[i] == "[":
            end = path.find(")]", i) + 1 if path.startswith("[?(", i) else path.find("]", i)
            if end <= 0:
                return None
            steps.append(("index", path[i + 1:end]))
            i = end + 1
        else:
            return None
    return steps


def jsonpath_first(obj: Any, path: str) -> Any:
    """The first value a CRD column's JSONPath finds, or None.

    Covers what printer columns use: `.a.b`, `[n]`, `[*]`, `['k']` and
    `[?(@.type=="Ready")]`.
    """
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    steps = _jsonpath_steps(path)
    if steps is None:
        return None
    values = [obj]
    for kind, arg in steps:
        found: list[Any] = []
        for v in values:
            if kind == "field" or arg[:1] in ("'", '"'):
                key = arg if kind == "field" else arg[1:-1]
                if isinstance(v, dict) and key in v:
                    found.append(v[key])
            elif arg == "*":
                found.extend(v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [])
            elif arg.isdigit():
                if isinstance(v, list) and int(arg) < len(v):
                    found.append(v[int(arg)])
            elif isinstance(v, list):
                flt = _FILTER.fullmatch(arg)
                if flt is None:
                    return None
                want = next((g for g in flt.groups()[2:] if g is not None), "")
                for item in v:
                    have = jsonpath_first(item, flt.group(1))
                    matched = have is not None and _plain(have) == want
                    if matched == (flt.group(2) == "=="):
                        found.append(item)
        values = found
    return values[0] if values else None


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _custom_cell(type_: str, value: Any, ctx: _Ctx) -> Any:
    """cellForJSONValue of the CRD table convertor; strings print any value, other types must match."""
    if value is None:
        return None
    if type_ == "string":
        return _plain(value)
    if type_ == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if type_ == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if type_ == "date" and isinstance(value, str):
        t = parse_time(value)
        return "<invalid>" if t is None else human_duration(ctx.now - t)
    return None


_DEFAULT_CUSTOM_COLUMNS = [{"name": "Age", "type": "date", "description": AGE_DESC,
                            "jsonPath": ".metadata.creationTimestamp"}]


def _custom_table(objects: list[Mapping[str, Any]], columns: list[Mapping[str, Any]] | None,
                  ctx: _Ctx) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    columns = list(columns or _DEFAULT_CUSTOM_COLUMNS)
    definitions = [_name_col()] + [
        _col(_s(c.get("name")), _s(c.get("type")), _s(c.get("description")), _i(c.get("priority")),
             _s(c.get("format"))) for c in columns]
    rows = [[_meta_name(o)] + [_custom_cell(_s(c.get("type")), jsonpath_first(o, _s(c.get("jsonPath"))), ctx)
                               for c in columns] for o in objects]
    return definitions, rows


def _default_table(objects: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """rest.defaultTableConvertor: Name and Created At (RFC 3339, UTC)."""
    definitions = [_name_col(), _col("Created At", "date", AGE_DESC)]
    rows = []
    for o in objects:
        t = parse_time(_created(o))
        created = "0001-01-01T00:00:00Z" if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append([_meta_name(o), created])
    return definitions, rows


# --- the entry point --------------------------------------------------------------------------------

def _row_object(obj: Mapping[str, Any], include_object: str) -> Any:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def table(resource: str, group: str, objects: list[dict[str, Any]], *, wide: bool = True,
          now: datetime | None = None, include_object: str = "Metadata",
          printer_columns: list[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `objects` (all of `group`/`resource`).

    wide=True is what kube-apiserver sends (every column, kubectl hides
    priority>0); wide=False keeps only priority-0 columns. include_object is
    "None", "Object" or "Metadata" (also "", the default: PartialObjectMetadata).
    printer_columns are a CRD version's additionalPrinterColumns, for custom resources.
    The caller sets metadata.resourceVersion / continue.
    """
    if include_object not in ("None", "Object", "Metadata", ""):
        raise BadRequestError(f"unrecognized includeObject value: {include_object!r}")
    ctx = _Ctx(now=now or datetime.now(timezone.utc), wide=wide)
    conditions: list[list[dict[str, str]] | None] = [None] * len(objects)
    printer = PRINTERS.get((group, resource))
    if printer is not None:
        columns = printer.columns
        cells = [printer.row(printer.view(o), ctx) for o in objects]
        conditions = [printer.conditions(o) for o in objects]
    elif group in BUILTIN_GROUPS and printer_columns is None:
        columns, cells = _default_table(objects)
    else:
        columns, cells = _custom_table(objects, printer_columns, ctx)
    if not wide:
        keep = [i for i, c in enumerate(columns) if c["priority"] == 0]
        columns = [columns[i] for i in keep]
        cells = [[row[i] for i in keep] for row in cells]
    rows = []
    for obj, row, conds in zip(objects, cells, conditions):
        entry: dict[str, Any] = {"cells": row}
        if conds:
            entry["conditions"] = conds
        entry["object"] = _row_object(obj, include_object)
        rows.append(entry)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": [dict(c) for c in columns], "rows": rows}

"""The Endpoints controller: for each Service with a selector, the Endpoints of the same name list the
matching pods' addresses, ready or not, and the ports they serve.

Fed by the services informer, and by the pods informer (a pod's change wakes
the Services of its namespace whose selector matches it, before or after) and
the endpoints informer (Endpoints deleted by hand are made again). Consumed by
the API: one create or update of the Service's Endpoints when its content
differs, or a delete when the Service is gone. Services without a selector are
left alone: their Endpoints are someone else's.

`endpoints_for(service, pods)` is the pure decision, with Kubernetes' rules:
pods need an IP and must not be terminal; pods being deleted are left out
unless publishNotReadyAddresses; a pod is a ready address when its Ready
condition is True (or the Service publishes not-ready addresses), otherwise a
notReadyAddress; a named targetPort is looked up in the pod's containers
(same protocol), and a pod that lacks it does not serve that port; subsets are
repacked so that addresses offering the same ports share one subset
(RepackSubsets). The helpers here are shared with endpointslice.py.
"""
from __future__ import annotations

import logging
from typing import Any

from eventplane.objects import errors
from eventplane.objects.selectors import LabelSelector
from reconcilers.runner import Controller, Request, Requeue

from ._informed import InformedController
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.endpoints")

Obj = dict[str, Any]
MAX_ADDRESSES = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
HEADLESS = "service.kubernetes.io/headless"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"

__all__ = ["build", "endpoint_port", "endpoints_for", "find_port", "pod_ready", "repack", "selected_pods",
           "service_selector", "should_be_in_endpoints"]


# --- shared rules ----------------------------------------------------------------------------------------

def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_ip(pod: Obj, family: str = "") -> str:
    """The pod's IP, of the service's family when it has one of that family."""
    status = pod.get("status") or {}
    ips = [i.get("ip") for i in status.get("podIPs") or [] if i.get("ip")] or \
        ([status["podIP"]] if status.get("podIP") else [])
    if family:
        for ip in ips:
            if (":" in ip) == (family == "IPv6"):
                return ip
    return ips[0] if ips else ""


def should_be_in_endpoints(pod: Obj, *, include_terminating: bool) -> bool:
    """endpointutil.ShouldPodBeInEndpoints."""
    if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        return False
    if not pod_ip(pod):
        return False
    return include_terminating or not _meta(pod).get("deletionTimestamp")


def service_selector(service: Obj) -> dict[str, str] | None:
    selector = (service.get("spec") or {}).get("selector")
    return selector if selector else None


def selected_pods(service: Obj, pods: list[Obj]) -> list[Obj]:
    selector = service_selector(service)
    if selector is None:
        return []
    match = LabelSelector.from_set(selector)
    ns = _meta(service).get("namespace")
    return [p for p in pods if _meta(p).get("namespace") == ns and match.matches(_meta(p).get("labels") or {})]


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """podutil.FindPort: a number as is; a name in the containers' ports (same protocol), sidecars included."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + \
        [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def endpoint_port(service_port: Obj, number: int) -> Obj:
    out: Obj = {"port": number, "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("name"):
        out["name"] = service_port["name"]
    if service_port.get("appProtocol"):
        out["appProtocol"] = service_port["appProtocol"]
    return out


def target_ref(pod: Obj) -> Obj:
    m = _meta(pod)
    return {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m.get("name", ""), "uid": m.get("uid", "")}


def hostname_for(service: Obj, pod: Obj) -> str:
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == _meta(service).get("name") and \
            _meta(service).get("namespace") == _meta(pod).get("namespace"):
        return spec["hostname"]
    return ""


def service_labels(service: Obj) -> dict[str, str]:
    labels = dict(_meta(service).get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    return labels


# --- Endpoints ----------------------------------------------------------------------------------------------

def _address(service: Obj, pod: Obj) -> Obj:
    family = ((service.get("spec") or {}).get("ipFamilies") or [""])[0]
    addr: Obj = {"ip": pod_ip(pod, family)}
    hostname = hostname_for(service, pod)
    if hostname:
        addr["hostname"] = hostname
    if (pod.get("spec") or {}).get("nodeName"):
        addr["nodeName"] = pod["spec"]["nodeName"]
    addr["targetRef"] = target_ref(pod)
    return addr


def _addr_key(addr: Obj) -> tuple[str, str]:
    return addr["ip"], (addr.get("targetRef") or {}).get("uid", "")


def _port_key(port: Obj) -> tuple:
    return (port.get("port", -1), port.get("name", ""), port.get("protocol", ""), port.get("appProtocol", ""))


def repack(subsets: list[Obj]) -> list[Obj]:
    """endpoints.RepackSubsets: one subset per distinct set of addresses (with their readiness), holding
    every port those addresses offer; sorted so that equal content compares equal."""
    addrs: dict[tuple[str, str], Obj] = {}
    by_port: dict[tuple, tuple[Obj | None, dict[tuple[str, str], bool]]] = {}
    for subset in subsets:
        ports = subset.get("ports") or [None]  # None: the sentinel for a subset without ports
        for port in ports:
            pk = _port_key(port) if port is not None else (-1,)
            _, ready_map = by_port.setdefault(pk, (port, {}))
            for ready, field in ((True, "addresses"), (False, "notReadyAddresses")):
                for a in subset.get(field) or []:
                    k = _addr_key(a)
                    addrs[k] = a
                    ready_map[k] = ready if k not in ready_map else (ready_map[k] or ready)
    groups: dict[tuple, tuple[dict[tuple[str, str], bool], list[Obj]]] = {}
    for pk, (port, ready_map) in by_port.items():
        key = tuple(sorted(ready_map.items()))
        entry = groups.setdefault(key, (ready_map, []))
        if port is not None:
            entry[1].append(port)
    out = []
    for ready_map, ports in groups.values():
        subset: Obj = {}
        ready = [addrs[k] for k in sorted(ready_map) if ready_map[k]]
        not_ready = [addrs[k] for k in sorted(ready_map) if not ready_map[k]]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports:
            subset["ports"] = sorted(ports, key=_port_key)
        out.append(subset)
    return sorted(out, key=lambda s: ([_addr_key(a) for a in s.get("addresses") or []],
                                      [_addr_key(a) for a in s.get("notReadyAddresses") or []],
                                      [_port_key(p) for p in s.get("ports") or []]))


def endpoints_for(service: Obj, pods: list[Obj]) -> Obj | None:
    """The Endpoints a Service with a selector should have (None: a Service without one)."""
    if service_selector(service) is None:
        return None
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    subsets: list[Obj] = []
    for pod in sorted(selected_pods(service, pods), key=lambda p: _meta(p).get("name", "")):
        if not should_be_in_endpoints(pod, include_terminating=publish):
            continue
        addr = _address(service, pod)
        field = "addresses" if publish or pod_ready(pod) else "notReadyAddresses"
        ports = spec.get("ports") or []
        if not ports:
            if spec.get("clusterIP") == "None":
                subsets.append({field: [addr]})
            continue
        for sp in ports:
            number = find_port(pod, sp)
            if number is None:
                log.debug("pod %s has no port %r for service %s", _meta(pod).get("name"), sp.get("targetPort"),
                          _meta(service).get("name"))
                continue
            subsets.append({field: [addr], "ports": [endpoint_port(sp, number)]})
    subsets = repack(subsets)
    annotations: dict[str, str] = {}
    total = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or []) for s in subsets)
    if total > MAX_ADDRESSES:
        subsets = _truncate(subsets)
        annotations[OVER_CAPACITY] = "truncated"
    meta: Obj = {"name": _meta(service)["name"], "namespace": _meta(service).get("namespace")}
    # Endpoints this controller keeps are not mirrored into EndpointSlices (the slices controller makes its own).
    meta["labels"] = {**service_labels(service), SKIP_MIRROR: "true"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets}


def _truncate(subsets: list[Obj]) -> list[Obj]:
    """Keep MAX_ADDRESSES addresses, ready ones first (Kubernetes truncates, and says so in an annotation)."""
    room = MAX_ADDRESSES
    out = []
    for field in ("addresses", "notReadyAddresses"):
        for s in subsets:
            keep = (s.get(field) or [])[:room]
            room -= len(keep)
            s[field] = keep
    for s in subsets:
        for field in ("addresses", "notReadyAddresses"):
            if not s.get(field):
                s.pop(field, None)
        if s.get("addresses") or s.get("notReadyAddresses"):
            out.append(s)
    return out


def differs(current: Obj | None, desired: Obj) -> bool:
    if current is None:
        return True
    cm, dm = _meta(current), _meta(desired)
    return (current.get("subsets") or []) != desired["subsets"] or (cm.get("labels") or {}) != \
        (dm.get("labels") or {}) or (cm.get("annotations") or {}).get(OVER_CAPACITY) != \
        (dm.get("annotations") or {}).get(OVER_CAPACITY)


def pod_changed(old: Obj, new: Obj) -> bool:
    """Whether a pod update can change any Endpoints or EndpointSlice (podEndpointsChanged)."""
    def view(p: Obj) -> tuple:
        m, spec, status = _meta(p), p.get("spec") or {}, p.get("status") or {}
        return (m.get("labels"), m.get("deletionTimestamp"), pod_ready(p), status.get("podIP"), status.get("podIPs"),
                status.get("phase"), spec.get("nodeName"), spec.get("hostname"), spec.get("subdomain"))
    return view(old) != view(new)


# --- the loop ---------------------------------------------------------------------------------------------

class Causes:
    """The latest position of the events that woke each key, beyond its primary informer's own: a
    write made because a pod changed carries that pod event's position (DESIGN invariant 10)."""

    def __init__(self) -> None:
        self._by_key: dict[str, int] = {}

    def note(self, key: str, obj: Obj) -> None:
        rv = _meta(obj).get("resourceVersion")
        if rv and str(rv).isdigit():
            self._by_key[key] = max(self._by_key.get(key, 0), int(rv))

    def of(self, req: Request) -> int | None:
        found = [p for p in (req.causation, self._by_key.get(req.key)) if p is not None]
        return max(found) if found else None


def watch_pods(controller: Controller, services, pods, causes: Causes) -> None:
    """Wake the Services whose selector matches a pod, before or after its change."""
    def enqueue_for(*objs: Obj) -> None:
        for pod in objs:
            ns = _meta(pod).get("namespace")
            labels = _meta(pod).get("labels") or {}
            for svc in services.store.by_index("namespace", ns) if ns else []:
                selector = service_selector(svc)
                if selector is not None and LabelSelector.from_set(selector).matches(labels):
                    key = f"{ns}/{_meta(svc)['name']}"
                    causes.note(key, objs[-1])
                    controller.queue.add(key)

    pods.add_handler(on_add=lambda p: enqueue_for(p),
                     on_update=lambda old, new: enqueue_for(old, new) if pod_changed(old, new) else None,
                     on_delete=lambda p: enqueue_for(p))


def build(ctx: ControllerContext) -> list[Controller]:
    services = ctx.informers.informer("services")
    pods = ctx.informers.informer("pods")
    endpoints = ctx.informers.informer("endpoints")

    async def reconcile(req: Request) -> None:
        service = services.store.get(req.key)
        current = endpoints.store.get(req.key)
        causation = causes.of(req)
        try:
            if service is None:
                if current is not None:
                    await ctx.client.delete("endpoints", req.name, namespace=req.namespace, causation=causation)
                return
            desired = endpoints_for(service, pods.store.by_index("namespace", req.namespace))
            if desired is None or not differs(current, desired):
                return
            if current is None:
                await ctx.client.create(desired, causation=causation)
            else:
                desired["metadata"]["resourceVersion"] = _meta(current)["resourceVersion"]
                desired["metadata"]["annotations"] = {
                    **{k: v for k, v in (_meta(current).get("annotations") or {}).items() if k != OVER_CAPACITY},
                    **(desired["metadata"].get("annotations") or {})} or None
                if desired["metadata"]["annotations"] is None:
                    del desired["metadata"]["annotations"]
                await ctx.client.update(desired, causation=causation)
        except errors.NotFoundError:
            return
        except (errors.AlreadyExistsError, errors.ConflictError):
            raise Requeue() from None  # the cache is behind our own write: try again when it has caught up

    causes = Causes()
    controller = InformedController("endpoints", services, reconcile, reads=[pods, endpoints], workers=2)
    watch_pods(controller, services, pods, causes)
    endpoints.add_handler(on_delete=lambda e: controller.queue.add(f"{_meta(e).get('namespace')}/{_meta(e)['name']}")
                          if services.store.get(f"{_meta(e).get('namespace')}/{_meta(e)['name']}") else None)
    return [controller]

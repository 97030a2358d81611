"""The EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for Services with a selector.

Fed by the services informer, the pods informer (a pod's change wakes the
Services whose selector matches it, before or after) and an informer of the
slices this controller manages (label endpointslice.kubernetes.io/managed-by).
Consumed by the API: creates, updates and deletes of the Service's slices.

`plan(service, pods, existing)` is the pure decision. Every pod that should
be an endpoint (an IP, not terminal; terminating pods included, with
terminating: true) becomes one endpoint with conditions ready / serving /
terminating (ready only when Ready and not terminating, or always with
publishNotReadyAddresses), its nodeName, targetRef and hostname. Endpoints
are grouped by the ports they serve (a named targetPort can resolve to
different numbers in different pods); each group fills slices of at most 100
endpoints. Endpoints stay in the slice that holds them where they can, new
ones fill the free room of existing slices before a new slice is made, and
slices left empty are deleted — so a change of one pod rewrites one slice.
A Service with no endpoints keeps one empty placeholder slice, as Kubernetes
does. Slices carry the labels kubernetes.io/service-name and
endpointslice.kubernetes.io/managed-by and are owned by their Service (the
garbage collector removes them with it). Services without a selector are not
touched.

Endpoints on a node with a `topology.kubernetes.io/zone` label carry that
zone (read from the nodes cache when the slice is written). Not done:
topology hints; dual-stack Services get slices of their first family only.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventplane.objects import errors
from reconcilers.runner import Controller, Request, Requeue

from ._informed import InformedController
from .endpoints import (Causes, find_port, hostname_for, pod_ip, pod_ready, selected_pods, service_labels,
                        service_selector, should_be_in_endpoints, target_ref, watch_pods)
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.endpointslice")

Obj = dict[str, Any]
MAX_ENDPOINTS = 100
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
ZONE = "topology.kubernetes.io/zone"
ZoneOf = Callable[[str], "str | None"]   # node name → its zone label


def no_zones(node: str) -> str | None:
    return None

__all__ = ["Plan", "build", "desired_endpoints", "plan"]


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def address_type(service: Obj) -> str:
    families = (service.get("spec") or {}).get("ipFamilies") or ["IPv4"]
    return "IPv6" if families[0] == "IPv6" else "IPv4"


def slice_port(service_port: Obj, number: int) -> Obj:
    out: Obj = {"name": service_port.get("name") or "", "port": number,
                "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("appProtocol"):
        out["appProtocol"] = service_port["appProtocol"]
    return out


PortsKey = tuple[tuple[str, int, str, str], ...]


def ports_key(ports: list[Obj]) -> PortsKey:
    return tuple(sorted((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in ports or []))


def desired_endpoints(service: Obj, pods: list[Obj], zone_of: ZoneOf = no_zones
                      ) -> dict[PortsKey, dict[str, tuple[Obj, list[Obj]]]]:
    """Endpoints by the ports they serve: ports key → endpoint id (pod uid) → (endpoint, ports)."""
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    family = address_type(service)
    out: dict[PortsKey, dict[str, tuple[Obj, list[Obj]]]] = {}
    for pod in sorted(selected_pods(service, pods), key=lambda p: _meta(p).get("name", "")):
        if not should_be_in_endpoints(pod, include_terminating=True):
            continue
        ip = pod_ip(pod, family)
        if (":" in ip) != (family == "IPv6"):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            number = find_port(pod, sp)
            if number is not None:
                ports.append(slice_port(sp, number))
        terminating = bool(_meta(pod).get("deletionTimestamp"))
        serving = pod_ready(pod)
        endpoint: Obj = {"addresses": [ip],
                         "conditions": {"ready": publish or (serving and not terminating), "serving": serving,
                                        "terminating": terminating}}
        hostname = hostname_for(service, pod)
        if hostname:
            endpoint["hostname"] = hostname
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            endpoint["nodeName"] = node
            zone = zone_of(node)
            if zone:
                endpoint["zone"] = zone
        endpoint["targetRef"] = target_ref(pod)
        key = ports_key(ports)
        out.setdefault(key, {})[_meta(pod).get("uid") or ip] = (endpoint, sorted(ports, key=lambda p: p["name"]))
    return out


def _endpoint_id(endpoint: Obj) -> str:
    return (endpoint.get("targetRef") or {}).get("uid") or (endpoint.get("addresses") or [""])[0]


@dataclass
class Plan:
    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)   # slice names

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _new_slice(service: Obj, ports: list[Obj], endpoints: list[Obj]) -> Obj:
    m = _meta(service)
    labels = {**service_labels(service), SERVICE_NAME: m["name"], MANAGED_BY: CONTROLLER_NAME}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{m['name'][:57]}-", "namespace": m.get("namespace"), "labels": labels,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": m["name"],
                                              "uid": m.get("uid", ""), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": address_type(service), "endpoints": endpoints, "ports": ports}


def plan(service: Obj, pods: list[Obj], existing: list[Obj], zone_of: ZoneOf = no_zones) -> Plan:
    """The writes that make a Service's slices match its pods, changing as few slices as it can."""
    result = Plan()
    if service_selector(service) is None:
        return result
    labels = {**service_labels(service), SERVICE_NAME: _meta(service)["name"], MANAGED_BY: CONTROLLER_NAME}
    family = address_type(service)
    desired = desired_endpoints(service, pods, zone_of)
    existing = sorted(existing, key=lambda s: _meta(s).get("name", ""))
    if not any(desired.values()):
        # The placeholder: one slice without endpoints or ports.
        keep, rest = (existing[0], existing[1:]) if existing else (None, [])
        result.delete = [_meta(s)["name"] for s in rest]
        if keep is None:
            result.create.append(_new_slice(service, [], []))
        elif keep.get("endpoints") or keep.get("ports") or keep.get("addressType") != family or \
                (_meta(keep).get("labels") or {}) != labels:
            result.update.append({**keep, "metadata": {**_meta(keep), "labels": labels}, "endpoints": [],
                                  "ports": [], "addressType": family})
        return result
    by_ports: dict[PortsKey, list[Obj]] = {}
    for s in existing:
        if s.get("addressType") != family:
            result.delete.append(_meta(s)["name"])  # address type is immutable
            continue
        by_ports.setdefault(ports_key(s.get("ports") or []), []).append(s)
    for key in list(by_ports):
        if key not in desired:
            result.delete += [_meta(s)["name"] for s in by_ports.pop(key)]
    for key, wanted in desired.items():
        ports = next(iter(wanted.values()))[1]
        placed: set[str] = set()
        slices: list[tuple[Obj, list[Obj], bool]] = []   # (slice, its endpoints now, changed)
        for s in by_ports.get(key, []):
            kept = []
            for ep in s.get("endpoints") or []:
                eid = _endpoint_id(ep)
                if eid in wanted and eid not in placed:
                    kept.append(wanted[eid][0])
                    placed.add(eid)
            changed = kept != (s.get("endpoints") or []) or (_meta(s).get("labels") or {}) != labels
            slices.append((s, kept, changed))
        fresh = [wanted[eid][0] for eid in wanted if eid not in placed]
        # New endpoints go first to slices that change anyway, then to any with room, then to new slices.
        for want_changed in (True, False):
            for i, (s, eps, changed) in enumerate(slices):
                if changed == want_changed and fresh and len(eps) < MAX_ENDPOINTS:
                    room = MAX_ENDPOINTS - len(eps)
                    slices[i] = (s, eps + fresh[:room], True)
                    fresh = fresh[room:]
        for s, eps, changed in slices:
            if not eps:
                result.delete.append(_meta(s)["name"])
            elif changed:
                result.update.append({**s, "metadata": {**_meta(s), "labels": labels}, "endpoints": eps,
                                      "ports": ports})
        for i in range(0, len(fresh), MAX_ENDPOINTS):
            result.create.append(_new_slice(service, ports, fresh[i:i + MAX_ENDPOINTS]))
    return result


def _by_service(s: Obj) -> list[str]:
    m = _meta(s)
    name = (m.get("labels") or {}).get(SERVICE_NAME)
    return [f"{m.get('namespace')}/{name}"] if name and (m.get("labels") or {}).get(MANAGED_BY) == CONTROLLER_NAME \
        else []


class SliceWrites:
    """What this controller wrote, so a reconcile can tell whether the slices cache has caught up
    (client-go's endpointSliceTracker): acting on a cache without our last write would duplicate it.
    A write counts as seen once the informer has applied an event of that slice at or after the
    write's position — its deletion included, so a slice removed by someone else does not wait."""

    def __init__(self) -> None:
        self._written: dict[str, dict[str, int]] = {}   # service key → slice key → position of our write

    def note(self, key: str, slice_: Obj) -> None:
        m = _meta(slice_)
        if m.get("name") and str(m.get("resourceVersion") or "").isdigit():
            self._written.setdefault(key, {})[f"{m.get('namespace')}/{m['name']}"] = int(m["resourceVersion"])

    def stale(self, key: str, position_of) -> bool:
        written = self._written.get(key)
        if not written:
            return False
        if any((position_of(k) or 0) < rv for k, rv in written.items()):
            return True
        self._written.pop(key, None)
        return False


def build(ctx: ControllerContext) -> list[Controller]:
    services = ctx.informers.informer("services")
    pods = ctx.informers.informer("pods")
    slices = ctx.informers.informer("endpointslices", label_selector=f"{MANAGED_BY}={CONTROLLER_NAME}")
    nodes = ctx.informers.informer("nodes")

    def zone_of(name: str) -> str | None:
        node = nodes.store.get(name)
        return ((node or {}).get("metadata") or {}).get("labels", {}).get(ZONE) if node else None
    slices.add_indexer("service", _by_service)
    written = SliceWrites()
    causes = Causes()

    async def reconcile(req: Request) -> None:
        service = services.store.get(req.key)
        existing = slices.store.by_index("service", req.key)
        if written.stale(req.key, slices.position_of):
            raise Requeue()
        if service is None or service_selector(service) is None:
            if service is None:
                for s in existing:  # the garbage collector would too (they are owned), but need not run
                    await _delete(s)
            return
        todo = plan(service, pods.store.by_index("namespace", req.namespace), existing, zone_of)
        causation = causes.of(req)
        try:
            for name in todo.delete:
                written.note(req.key, await ctx.client.delete("endpointslices.discovery.k8s.io", name,
                                                              namespace=req.namespace, causation=causation))
            for obj in todo.update:
                written.note(req.key, await ctx.client.update(obj, causation=causation))
            for obj in todo.create:
                written.note(req.key, await ctx.client.create(obj, causation=causation))
        except errors.ConflictError:
            raise Requeue() from None
        except errors.NotFoundError:
            raise Requeue() from None

    async def _delete(s: Obj) -> None:
        try:
            await ctx.client.delete("endpointslices.discovery.k8s.io", _meta(s)["name"],
                                    namespace=_meta(s).get("namespace"))
        except errors.NotFoundError:
            pass

    controller = InformedController("endpointslice", services, reconcile, reads=[pods, slices, nodes], workers=2)
    watch_pods(controller, services, pods, causes)

    def slice_changed(s: Obj) -> None:
        for key in _by_service(s):
            controller.queue.add(key)
    slices.add_handler(on_delete=slice_changed)
    return [controller]

"""Service cluster IPs, allocated at create time as kube-apiserver's allocator does:
from the service range (10.96.0.0/12 by default), never .0, the range's
first address kept for the `kubernetes` service, and never one in use; and the
node ports of NodePort (and LoadBalancer) Services, from 30000-32767, never one
another Service uses (the ports of one Service with the same number and another
protocol share one node port, as kube-apiserver gives them)."""
from __future__ import annotations

import ipaddress
import random
from typing import Any

from eventplane.objects import errors
from eventplane.store import EventStore

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")
NODE_PORT_RANGE = range(30000, 32768)


async def allocate_cluster_ip(store: EventStore, service: dict[str, Any], rng: random.Random,
                              network: ipaddress.IPv4Network = SERVICE_RANGE) -> None:
    spec = service.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return
    wanted = spec.get("clusterIP")
    if wanted == "None":
        spec["clusterIPs"] = ["None"]
        return
    services = await store.list(group="", resource="services")
    used = {(s.get("spec") or {}).get("clusterIP") for s in services}
    if wanted:
        try:
            ip = ipaddress.ip_address(wanted)
        except ValueError:
            raise errors.InvalidError(f'Service "{service["metadata"]["name"]}" is invalid: spec.clusterIP: '
                                      f'Invalid value: "{wanted}": must be a valid IP address') from None
        if ip not in network:
            raise errors.InvalidError(
                f'Service "{service["metadata"]["name"]}" is invalid: spec.clusterIPs: Invalid value: '
                f'["{wanted}"]: failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the valid '
                f"range. The range of valid IPs is {network}")
        if wanted in used:
            raise errors.InvalidError(
                f'Service "{service["metadata"]["name"]}" is invalid: spec.clusterIPs: Invalid value: '
                f'["{wanted}"]: failed to allocate IP {wanted}: provided IP is already allocated')
    else:
        size = network.num_addresses
        for _ in range(1000):
            candidate = str(network.network_address + rng.randrange(2, size - 1))
            if candidate not in used:
                wanted = candidate
                break
        else:
            raise errors.EventplaneError("failed to allocate a service IP: the range is full")
    spec["clusterIP"] = wanted
    spec["clusterIPs"] = [wanted]
    allocate_node_ports(services, service, rng)


def allocate_node_ports(services: list[dict[str, Any]], service: dict[str, Any], rng: random.Random,
                        ports: range = NODE_PORT_RANGE) -> None:
    spec = service.get("spec") or {}
    kind = spec.get("type")
    if kind not in ("NodePort", "LoadBalancer") or (kind == "LoadBalancer"
                                                     and spec.get("allocateLoadBalancerNodePorts") is False):
        return
    used = {p.get("nodePort") for s in services for p in (s.get("spec") or {}).get("ports") or [] if p.get("nodePort")}
    name = service["metadata"]["name"]
    mine: set[tuple[int, str]] = set()  # (node port, protocol) of this Service's ports so far
    given: dict[Any, int] = {}          # port number -> its node port in this Service
    for i, p in enumerate(spec.get("ports") or []):
        protocol, wanted = p.get("protocol") or "TCP", p.get("nodePort")
        if wanted:
            where = f'Service "{name}" is invalid: spec.ports[{i}].nodePort: Invalid value: {wanted}: '
            if wanted not in ports:
                raise errors.InvalidError(where + "provided port is not in the valid range. The range of valid "
                                          f"ports is {ports.start}-{ports.stop - 1}")
            if wanted in used or (wanted, protocol) in mine:
                raise errors.InvalidError(where + "provided port is already allocated")
        else:
            wanted = given.get(p.get("port"))
            if wanted is None or (wanted, protocol) in mine:
                taken = used | {n for n, _ in mine}
                for _ in range(1000):
                    wanted = ports.start + rng.randrange(len(ports))
                    if wanted not in taken:
                        break
                else:
                    raise errors.EventplaneError("failed to allocate a node port: the range is full")
        mine.add((wanted, protocol))
        given.setdefault(p.get("port"), wanted)
        p["nodePort"] = wanted

"""Service cluster IPs, allocated at create time as kube-apiserver's allocator does:
from the service range (10.96.0.0/12 by default), never .0, the range's
first address kept for the `kubernetes` service, and never one in use."""
from __future__ import annotations

import ipaddress
import random
from typing import Any

from eventplane.objects import errors
from eventplane.store import EventStore

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")


async def allocate_cluster_ip(store: EventStore, service: dict[str, Any], rng: random.Random,
                              network: ipaddress.IPv4Network = SERVICE_RANGE) -> None:
    spec = service.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return
    wanted = spec.get("clusterIP")
    if wanted == "None":
        spec["clusterIPs"] = ["None"]
        return
    used = {(s.get("spec") or {}).get("clusterIP") for s in await store.list(group="", resource="services")}
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

"""What a simulated node looks like: its name, labels, capacity, conditions, addresses and pod range.

Pure functions of a `SimulatorConfig` and a node's index, used by agent.py to
register (or adopt) the nodes and by podstatus.py for a pod's hostIP and
podIP. Nothing here talks to the cluster.

Addresses are derived from the node's index so that a restarted simulator
finds the same ones: node i has InternalIP 172.16.0.0 + i + 1 and the i-th
pod range of 10.128.0.0/9 (a /24 for 110 pods per node; wider ranges for more
pods), well clear of the service range 10.96.0.0/12.
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SIMULATED_ANNOTATION", "SIMULATED_LABEL", "SIMULATED_NOTICE", "IpPool", "SimulatorConfig",
           "node_index", "node_manifest", "node_status", "ready_conditions", "same_node_status"]

SIMULATED_LABEL = "node.eventplane.io/simulated"           # "true" on every node the simulator registers
SIMULATED_ANNOTATION = "node.eventplane.io/simulated-by"
SIMULATED_NOTICE = ("eventplane simulate-nodes: a simulated node for scale tests and benchmarks; "
                    "it runs no containers")
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"

POD_CLUSTER_CIDR = ipaddress.ip_network("10.128.0.0/9")
NODE_ADDRESS_BASE = ipaddress.ip_address("172.16.0.0")
KUBELET_VERSION = "v1.30.0-eventplane-sim"


def _holder() -> str:
    return f"simulate-nodes@{socket.gethostname()}"


@dataclass(frozen=True)
class SimulatorConfig:
    count: int
    cpu: str = "32"
    memory: str = "128Gi"
    pods_per_node: int = 110
    ephemeral_storage: str = "100Gi"
    zones: int = 3
    region: str = "sim-region"
    name_prefix: str = "sim-"
    lease_duration: float = 40.0          # seconds; the lifecycle controller's grace by default
    renew_interval: float = 10.0          # seconds between lease renewals (the kubelet's 10 s)
    holder: str = field(default_factory=_holder)
    lease_bucket: str | None = None       # None: nodeleases.BUCKET
    workers: int = 16                     # concurrent pod status writes

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must not be negative, got {self.count}")
        if self.zones < 1:
            raise ValueError(f"zones must be at least 1, got {self.zones}")
        if not 1 <= self.pods_per_node <= 65534:
            raise ValueError(f"pods per node must be between 1 and 65534, got {self.pods_per_node}")
        if self.renew_interval <= 0 or self.lease_duration <= self.renew_interval:
            raise ValueError(f"the lease duration ({self.lease_duration:g} s) must exceed the renew interval "
                             f"({self.renew_interval:g} s)")
        if self.count > self.max_nodes:
            raise ValueError(f"{self.count} nodes of {self.pods_per_node} pods do not fit the pod network "
                             f"{POD_CLUSTER_CIDR}: at most {self.max_nodes}")

    @property
    def pod_prefix_len(self) -> int:
        """The pod range of a node: a /24 up to 254 pods (as Kubernetes' default node-cidr-mask-size), wider beyond."""
        return min(24, 32 - math.ceil(math.log2(self.pods_per_node + 2)))

    @property
    def max_nodes(self) -> int:
        return 2 ** (self.pod_prefix_len - POD_CLUSTER_CIDR.prefixlen)

    def name(self, index: int) -> str:
        return f"{self.name_prefix}{index}"

    def names(self) -> list[str]:
        return [self.name(i) for i in range(self.count)]

    def zone(self, index: int) -> str:
        return f"zone-{index % self.zones}"

    def pod_cidr(self, index: int) -> ipaddress.IPv4Network:
        size = 2 ** (32 - self.pod_prefix_len)
        return ipaddress.ip_network(f"{POD_CLUSTER_CIDR.network_address + index * size}/{self.pod_prefix_len}")

    def internal_ip(self, index: int) -> str:
        return str(NODE_ADDRESS_BASE + index + 1)


def node_index(config: SimulatorConfig, name: str) -> int | None:
    """The index of one of this simulator's node names, None for any other name."""
    rest = name[len(config.name_prefix):] if name.startswith(config.name_prefix) else ""
    if not rest.isdigit() or (len(rest) > 1 and rest[0] == "0"):
        return None
    index = int(rest)
    return index if index < config.count else None


def ready_conditions(now: str) -> list[dict[str, Any]]:
    """The kubelet's four node conditions of a healthy node, with its reasons and messages."""
    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": type_, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": now,
                "reason": reason, "message": message}
    return [cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")]


def _uuid(name: str, what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{what}.{name}.sim.eventplane.io"))


def node_status(config: SimulatorConfig, index: int, now: str) -> dict[str, Any]:
    name = config.name(index)
    resources = {"cpu": config.cpu, "memory": config.memory, "pods": str(config.pods_per_node),
                 "ephemeral-storage": config.ephemeral_storage}
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": ready_conditions(now),
        "addresses": [{"type": "InternalIP", "address": config.internal_ip(index)},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": _uuid(name, "machine").replace("-", ""),
            "systemUUID": _uuid(name, "system"),
            "bootID": _uuid(name, "boot"),
            "kernelVersion": "simulated",
            "osImage": "eventplane simulated node (scale tests and benchmarks only)",
            "containerRuntimeVersion": "sim://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def node_manifest(config: SimulatorConfig, index: int, now: str) -> dict[str, Any]:
    name = config.name(index)
    cidr = str(config.pod_cidr(index))
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       ZONE_LABEL: config.zone(index), REGION_LABEL: config.region,
                       "node.kubernetes.io/instance-type": f"sim-{config.cpu}cpu-{config.memory}".lower(),
                       SIMULATED_LABEL: "true"},
            "annotations": {SIMULATED_ANNOTATION: SIMULATED_NOTICE},
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": node_status(config, index, now),
    }


def same_node_status(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether a registered node's status already says what the simulator would write: the same
    resources, addresses and node info. Conditions are left to the node lifecycle controller once
    the node exists (it turns Ready Unknown when the lease stops, and back when it renews)."""
    cur = current.get("status") or {}
    want = desired["status"]
    return all(cur.get(k) == want[k] for k in ("capacity", "allocatable", "addresses", "nodeInfo")) \
        and bool(cur.get("conditions"))


class IpPool:
    """Pod IPs of one node, from its pod range; a pod keeps its address until it is released.
    Adopted addresses (found in pods' statuses after a restart) are never handed out twice."""

    def __init__(self, cidr: ipaddress.IPv4Network) -> None:
        self.cidr = cidr
        self._by_pod: dict[str, str] = {}
        self._used: set[str] = set()
        self._next = 1   # .0 is the range's own address; pods get .1 onwards (the broadcast address never)

    def __len__(self) -> int:
        return len(self._by_pod)

    def of(self, uid: str) -> str | None:
        return self._by_pod.get(uid)

    def adopt(self, uid: str, ip: str) -> None:
        if ip and ipaddress.ip_address(ip) in self.cidr and uid not in self._by_pod:
            self._by_pod[uid] = ip
            self._used.add(ip)

    def allocate(self, uid: str) -> str:
        have = self._by_pod.get(uid)
        if have is not None:
            return have
        total = self.cidr.num_addresses - 2
        for _ in range(total):
            ip = str(self.cidr.network_address + self._next)
            self._next = self._next % total + 1
            if ip not in self._used:
                self._used.add(ip)
                self._by_pod[uid] = ip
                return ip
        raise RuntimeError(f"no free pod address left in {self.cidr}")

    def release(self, uid: str) -> None:
        ip = self._by_pod.pop(uid, None)
        if ip is not None:
            self._used.discard(ip)


def container_id(uid: str, container: str, restart: int) -> str:
    return "sim://" + hashlib.sha256(f"{uid}/{container}/{restart}".encode()).hexdigest()[:32]


def image_id(image: str) -> str:
    return f"{image.split('@', 1)[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"

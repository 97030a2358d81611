"""This node as a Node object: capacity and allocatable read from the host, labels,
addresses, nodeInfo and the Ready condition, as the kubelet registers itself.

Fed by the host (/proc, os, the data directory's file system) and the runtime's
version; consumed by the agent, which creates the Node (or brings an existing
one up to date) when it starts and sets Ready back to True when someone else
marked it otherwise while the agent was away.
"""
from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

import psutil

MAX_PODS = 110
AGENT_VERSION = "v1.31.0-eventplane"


def arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def node_ip() -> str:
    """The first IPv4 address of an interface that is up and neither loopback nor a container bridge."""
    stats = psutil.net_if_stats()
    for name, addrs in psutil.net_if_addrs().items():
        if name == "lo" or name.startswith(("docker", "br-", "veth", "cni", "flannel")):
            continue
        if not stats.get(name) or not stats[name].isup:
            continue
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return "127.0.0.1"


def capacity(data_dir: Path) -> dict[str, str]:
    st = os.statvfs(data_dir)
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{psutil.virtual_memory().total // 1024}Ki",
            "pods": str(MAX_PODS), "ephemeral-storage": f"{st.f_blocks * st.f_frsize // 1024}Ki",
            "hugepages-2Mi": "0", "hugepages-1Gi": "0"}


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def conditions(now: str, old: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The kubelet's four conditions, healthy; transition times kept when the status did not change."""
    old_by = {c.get("type"): c for c in old or []}

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        prev = old_by.get(type_)
        since = prev["lastTransitionTime"] if prev and prev.get("status") == status and \
            prev.get("lastTransitionTime") else now
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since}

    return [cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")]


def build_node(name: str, *, zone: str | None, ip: str, data_dir: Path, runtime_version: str,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    cap = capacity(data_dir)
    node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch(),
                   "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch()}
    if zone:
        node_labels["topology.kubernetes.io/zone"] = zone
    node_labels.update(labels or {})
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": node_labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "eventplane.io/agent": "nodeagent"}},
        "spec": {},
        "status": {
            "capacity": cap, "allocatable": dict(cap),
            "conditions": conditions(now_rfc3339()),
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"), "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
                "osImage": os_image(), "containerRuntimeVersion": runtime_version,
                "kubeletVersion": AGENT_VERSION, "kubeProxyVersion": AGENT_VERSION,
                "operatingSystem": "linux", "architecture": arch()},
        },
    }

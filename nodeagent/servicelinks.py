"""Service environment variables: what the kubelet gives every container about the Services it
may talk to (pkg/kubelet/envvars), docker-link style.

Fed by the agent's Service informer (every namespace; agent.py) when a container's env is
resolved (containers.resolve_env); the result goes into the container's env under the
container's own variables (an `env` or `envFrom` entry of the same name wins), and `$(VAR)`
expansion in env values, command and args sees it. For a Service `redis-primary` with ClusterIP
10.96.0.11 and ports 6379/TCP (`redis`) and 9121/TCP:

    REDIS_PRIMARY_SERVICE_HOST=10.96.0.11
    REDIS_PRIMARY_SERVICE_PORT=6379             # the first port
    REDIS_PRIMARY_SERVICE_PORT_REDIS=6379       # every named port
    REDIS_PRIMARY_PORT=tcp://10.96.0.11:6379    # the first port, docker-link style
    REDIS_PRIMARY_PORT_6379_TCP=tcp://10.96.0.11:6379
    REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp
    REDIS_PRIMARY_PORT_6379_TCP_PORT=6379
    REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.96.0.11
    … and the same _PORT_9121_TCP* for the second port

Which Services: those of the pod's namespace that have a ClusterIP (not headless, not
ExternalName) — unless the pod says `enableServiceLinks: false` — and always the `kubernetes`
Service of the `default` namespace (a Service named `kubernetes` in the pod's own namespace
takes its place when links are on), as the kubelet's getServiceEnvVarMap chooses them.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .containers import ConfigError

MASTER_SERVICES = ("kubernetes",)


class ServicesNotRead(ConfigError):
    """The agent's Service informer has not listed once yet (the kubelet's words in the message)."""


def env_name(name: str) -> str:
    """makeEnvVariableName: dots and dashes to underscores, upper case, `_` before a leading digit."""
    out = name.replace(".", "_").replace("-", "_").upper()
    return "_" + out if re.match(r"[0-9]", out) else out


def _ip_set(svc: dict[str, Any]) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def from_services(services: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """envvars.FromServices: the variables of each Service with a ClusterIP, in the kubelet's order."""
    out: list[tuple[str, str]] = []
    for svc in services:
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if not _ip_set(svc) or not ports:
            continue
        ip = spec["clusterIP"]
        prefix = env_name((svc.get("metadata") or {}).get("name", ""))
        out.append((f"{prefix}_SERVICE_HOST", ip))
        out.append((f"{prefix}_SERVICE_PORT", str(int(ports[0].get("port", 0)))))
        for p in ports:
            if p.get("name"):
                out.append((f"{prefix}_SERVICE_PORT_{env_name(p['name'])}", str(int(p.get("port", 0)))))
        for i, p in enumerate(ports):
            proto = (p.get("protocol") or "TCP")
            port = int(p.get("port", 0))
            url = f"{proto.lower()}://{_host_port(ip, port)}"
            if i == 0:
                out.append((f"{prefix}_PORT", url))
            port_prefix = f"{prefix}_PORT_{port}_{proto.upper()}"
            out += [(port_prefix, url), (f"{port_prefix}_PROTO", proto.lower()), (f"{port_prefix}_PORT", str(port)),
                    (f"{port_prefix}_ADDR", ip)]
    return out


def service_env(services: Iterable[dict[str, Any]], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """getServiceEnvVarMap: the variables for a pod of `namespace`, from every Service the node knows."""
    chosen: dict[str, dict[str, Any]] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        name = meta.get("name", "")
        if not _ip_set(svc):
            continue
        if meta.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = svc
    return dict(from_services(chosen[k] for k in sorted(chosen)))

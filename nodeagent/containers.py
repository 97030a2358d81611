"""From a container of a pod spec to the ContainerConfig a runtime runs: env values
resolved (values with $(VAR) expansion, ConfigMap and Secret keys, the pod's own
fields, resource fields), envFrom, command and args expanded, volume mounts
turned into host paths, securityContext and resources turned into the numbers
the runtime needs.

Fed by the pod worker with the pod, one container spec, the volumes prepared
by volumes.py and `Refs` (ConfigMaps and Secrets read through the API client);
consumed by the runtime. A reference that cannot be resolved raises
ConfigError, which the worker reports as the container's waiting reason
CreateContainerConfigError, with the kubelet's messages.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
from typing import Any

from eventplane.client import Client
from eventplane.objects import errors
from eventplane.objects.quantity import value_of

from .runtime import (CONTAINER_NAME, GRACE, MANAGED, NODE, POD_NAME, POD_NAMESPACE, POD_UID, RESTART_COUNT, ROLE,
                      SPEC_HASH, ContainerConfig, Mount)


class ConfigError(Exception):
    reason = "CreateContainerConfigError"


class Refs:
    """ConfigMaps, Secrets and PVCs a pod refers to, read once per sync through the API."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    async def get(self, resource: str, name: str, *, namespaced: bool = True) -> dict[str, Any] | None:
        key = (resource, name)
        if key not in self._cache:
            try:
                self._cache[key] = await self.client.get(resource, name,
                                                         namespace=self.namespace if namespaced else None)
            except errors.NotFoundError:
                self._cache[key] = None
        return self._cache[key]

    async def prefetch(self, wanted: list[tuple[str, str]]) -> None:
        """Read these (resource, name) pairs at once, not one round trip after another; a failure is
        left for the get that needs the object to raise."""
        missing = [w for w in dict.fromkeys(wanted) if w not in self._cache]

        async def one(resource: str, name: str) -> None:
            try:
                await self.get(resource, name)
            except errors.EventplaneError:
                pass
        await asyncio.gather(*(one(r, n) for r, n in missing))

    async def configmap_data(self, name: str) -> dict[str, str] | None:
        cm = await self.get("configmaps", name)
        if cm is None:
            return None
        data = dict(cm.get("data") or {})
        for k, v in (cm.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v).decode(errors="replace")
        return data

    async def secret_data(self, name: str) -> dict[str, bytes] | None:
        s = await self.get("secrets", name)
        if s is None:
            return None
        out = {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}
        for k, v in (s.get("stringData") or {}).items():
            out.setdefault(k, v.encode())
        return out


def references(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """The ConfigMaps, Secrets and PVCs of its namespace a pod names (volumes, env, envFrom), as
    (resource, name): what its first start reads."""
    spec = pod.get("spec") or {}
    out: list[tuple[str, str]] = []
    for v in spec.get("volumes") or []:
        if v.get("configMap"):
            out.append(("configmaps", v["configMap"].get("name", "")))
        elif v.get("secret"):
            out.append(("secrets", v["secret"].get("secretName", "")))
        elif v.get("persistentVolumeClaim"):
            out.append(("persistentvolumeclaims", v["persistentVolumeClaim"].get("claimName", "")))
        elif v.get("projected"):
            for src in v["projected"].get("sources") or []:
                if src.get("configMap"):
                    out.append(("configmaps", src["configMap"].get("name", "")))
                elif src.get("secret"):
                    out.append(("secrets", src["secret"].get("name", "")))
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for source in c.get("envFrom") or []:
            if source.get("configMapRef"):
                out.append(("configmaps", source["configMapRef"].get("name", "")))
            elif source.get("secretRef"):
                out.append(("secrets", source["secretRef"].get("name", "")))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if vf.get("configMapKeyRef"):
                out.append(("configmaps", vf["configMapKeyRef"].get("name", "")))
            elif vf.get("secretKeyRef"):
                out.append(("secrets", vf["secretKeyRef"].get("name", "")))
    return list(dict.fromkeys(x for x in out if x[1]))


def field_value(pod: dict[str, Any], path: str) -> str:
    """A downward-API fieldRef path of the pod."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
              "status.hostIP": status.get("hostIP"),
              "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs") or []),
              "status.hostIPs": ",".join(p.get("ip", "") for p in status.get("hostIPs") or [])}
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get("labels") or {}).items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get("annotations") or {}).items()))
    if path not in simple:
        raise ConfigError(f'unsupported fieldRef path "{path}"')
    return simple[path] or ""


def resource_value(container: dict[str, Any], ref: dict[str, Any], node_allocatable: dict[str, str]) -> str:
    """resourceFieldRef: limits.cpu (cores, rounded up), requests.memory (bytes)… with a divisor."""
    resource = ref.get("resource", "")
    which, _, kind = resource.partition(".")
    value = ((container.get("resources") or {}).get(which) or {}).get(kind)
    if value is None and which == "limits":
        value = node_allocatable.get(kind)
    if value is None:
        return "0"
    divisor = ref.get("divisor") or "1"
    d = value_of(str(divisor)) or 1
    return str(math.ceil(value_of(str(value)) / d))


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, `$$` escapes, the rest stays."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, text)



def key_ref(kind: str, ns: str, ref: dict[str, Any], data: dict[str, Any] | None) -> Any:
    """The value a configMapKeyRef or secretKeyRef names; None when it is missing and optional; else a
    ConfigError in the kubelet's words."""
    if data is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
    if ref.get("key") not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name')}")
    return data[ref["key"]]


async def resolve_env(pod: dict[str, Any], container: dict[str, Any], refs: Refs,
                      node_allocatable: dict[str, str], service_env: dict[str, str] | None = None
                      ) -> list[tuple[str, str]]:
    """The container's env as the kubelet makes it: envFrom, then env (`$(VAR)` expanded against what
    came before and the Service variables), then the Service variables (servicelinks.py) that no
    env or envFrom entry named."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    services = service_env or {}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if source.get("configMapRef"):
            ref = source["configMapRef"]
            data = await refs.configmap_data(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name")}" not found')
            env.update({prefix + k: v for k, v in data.items()})
        elif source.get("secretRef"):
            ref = source["secretRef"]
            sdata = await refs.secret_data(ref.get("name", ""))
            if sdata is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name")}" not found')
            env.update({prefix + k: v.decode(errors="replace") for k, v in sdata.items()})
    for e in container.get("env") or []:
        name = e.get("name", "")
        if "valueFrom" not in e or e.get("valueFrom") is None:
            env[name] = expand(e.get("value") or "", {**services, **env})
            continue
        vf = e["valueFrom"]
        if vf.get("configMapKeyRef"):
            ref = vf["configMapKeyRef"]
            value = key_ref("ConfigMap", ns, ref, await refs.configmap_data(ref.get("name", "")))
            if value is not None:
                env[name] = value
        elif vf.get("secretKeyRef"):
            ref = vf["secretKeyRef"]
            value = key_ref("Secret", ns, ref, await refs.secret_data(ref.get("name", "")))
            if value is not None:
                env[name] = value.decode(errors="replace")
        elif vf.get("fieldRef"):
            env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""))
        elif vf.get("resourceFieldRef"):
            env[name] = resource_value(container, vf["resourceFieldRef"], node_allocatable)
    return list(env.items()) + [(k, v) for k, v in services.items() if k not in env]


def _milli(value: Any) -> int | None:
    if value is None:
        return None
    return math.ceil(value_of(str(value)) * 1000)


def _bytes(value: Any) -> int | None:
    if value is None:
        return None
    return math.ceil(value_of(str(value)))


def spec_hash(container: dict[str, Any]) -> str:
    """The kubelet restarts a container whose spec changed. Of a pod's containers only the image may
    change, so only the image is hashed: a default the API server starts adding one day must not
    restart every container of a node when its agent restarts."""
    return hashlib.sha256(json.dumps({"image": container.get("image")}).encode()).hexdigest()[:16]


def labels_for(pod: dict[str, Any], node: str, name: str, role: str, restart_count: int,
               container: dict[str, Any] | None = None) -> dict[str, str]:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    labels = {MANAGED: "true", NODE: node, ROLE: role, POD_UID: meta["uid"], POD_NAME: meta["name"],
              POD_NAMESPACE: meta.get("namespace", ""), CONTAINER_NAME: name, RESTART_COUNT: str(restart_count),
              GRACE: str(spec.get("terminationGracePeriodSeconds", 30))}
    if container is not None:
        labels[SPEC_HASH] = spec_hash(container)
    return labels


def build_config(pod: dict[str, Any], container: dict[str, Any], *, role: str, restart_count: int, node: str,
                 env: list[tuple[str, str]], volume_paths: dict[str, tuple[str, bool]],
                 memory_volumes: dict[str, int | None]) -> ContainerConfig:
    """`volume_paths`: volume name → (host path, always read-only); `memory_volumes`: emptyDir volumes of
    medium Memory the host could not mount itself, given to the runtime as tmpfs (name → size)."""
    spec = pod.get("spec") or {}
    env_map = dict(env)
    command = container.get("command")
    args = container.get("args")
    mounts, tmpfs = [], []
    for vm in container.get("volumeMounts") or []:
        vname = vm.get("name", "")
        if vname in memory_volumes:
            tmpfs.append((vm.get("mountPath", ""), memory_volumes[vname]))
            continue
        if vname not in volume_paths:
            raise ConfigError(f"cannot find volume \"{vname}\" to mount into container \"{container['name']}\"")
        host, forced_ro = volume_paths[vname]
        mounts.append(Mount(host, vm.get("mountPath", ""), bool(vm.get("readOnly")) or forced_ro,
                            expand(vm.get("subPath", "") or "", env_map)))
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    run_as_group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    return ContainerConfig(
        name=container["name"], role=role, image=container.get("image", ""),
        command=tuple(expand(a, env_map) for a in command) if command else None,
        args=tuple(expand(a, env_map) for a in args) if args else None,
        env=tuple(env), working_dir=container.get("workingDir", "") or "",
        ports=tuple((int(p.get("containerPort", 0)), p.get("protocol", "TCP")) for p in container.get("ports") or []),
        mounts=tuple(mounts), tmpfs=tuple(tmpfs),
        memory_limit=_bytes(limits.get("memory")), cpu_limit_milli=_milli(limits.get("cpu")),
        cpu_request_milli=_milli(requests.get("cpu")),
        run_as_user=int(run_as_user) if run_as_user is not None else None,
        run_as_group=int(run_as_group) if run_as_group is not None else None,
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        cap_add=tuple(caps.get("add") or ()), cap_drop=tuple(caps.get("drop") or ()),
        privileged=bool(sc.get("privileged")),
        stdin=bool(container.get("stdin")), stdin_once=bool(container.get("stdinOnce")), tty=bool(container.get("tty")),
        labels=labels_for(pod, node, container["name"], role, restart_count, container))

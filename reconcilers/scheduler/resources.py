"""Requests, allocatable and the cluster snapshot the scheduler decides against.

Fed by plain Kubernetes JSON (nodes and pods as dicts); consumed by filters,
scorers and the pipeline. Quantities are parsed once with
eventplane.objects.quantity into integers: cpu in millicores, memory and
ephemeral-storage in bytes, `pods` and extended resources in units (rounded up,
as the scheduler's Resource type does).

A `Snapshot` is immutable: `with_pod` / `with_node` / `without_pod` return a new
snapshot sharing the untouched NodeInfos, so a harness can hold a state copy
and record plans without side effects. Every changed NodeInfo gets a fresh
`generation` (unique in the process), which keys the score and feasibility caches.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from fractions import Fraction
from typing import Any

from eventplane.objects import quantity

from .volumes import Volumes, claim_names

Obj = Mapping[str, Any]
ResourceList = Mapping[str, int]
Requests = tuple[ResourceList, ResourceList]   # a pod's (pod_requests, pod_requests non-zero)

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"
# Scoring treats a container without requests as if it asked for this much
# (kube-scheduler's DefaultMilliCPURequest and DefaultMemoryRequest), so that
# best-effort pods still spread.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"

_generations = itertools.count(1)


@functools.lru_cache(maxsize=8192)  # the same few quantities ("100m", "128Mi") recur in every pod
def to_int(name: str, text: Any) -> int:
    """A quantity as the scheduler counts it: millicores for cpu, units (rounded up) otherwise."""
    value = quantity.value_of(str(text)) if not isinstance(text, (int, float)) else Fraction(text)
    if name == CPU:
        value *= 1000
    return math.ceil(value)


def resource_list(raw: Obj | None) -> dict[str, int]:
    return {name: to_int(name, value) for name, value in (raw or {}).items()}


def add(a: ResourceList, b: ResourceList) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _max(a: ResourceList, b: ResourceList) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = max(out.get(k, 0), v)
    return out


def _container_requests(c: Obj, *, non_zero: bool) -> dict[str, int]:
    res = c.get("resources") or {}
    # Requests default to limits (the API server does this; repeated for raw dicts).
    raw = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    out = resource_list(raw)
    if non_zero:
        out.setdefault(CPU, DEFAULT_MILLI_CPU_REQUEST)
        out.setdefault(MEMORY, DEFAULT_MEMORY_REQUEST)
    return out


def pod_requests(pod: Obj, *, non_zero: bool = False) -> dict[str, int]:
    """resourcehelper.PodRequests: containers summed, init containers maxed, sidecars added, plus overhead.

    `non_zero` gives the scoring view, where a container without a cpu or memory
    request counts as DEFAULT_MILLI_CPU_REQUEST / DEFAULT_MEMORY_REQUEST.
    """
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        total = add(total, _container_requests(c, non_zero=non_zero))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        req = _container_requests(c, non_zero=non_zero)
        if c.get("restartPolicy") == "Always":
            sidecars = add(sidecars, req)
            total = add(total, req)
        else:
            init_max = _max(init_max, add(sidecars, req))
    total = _max(total, init_max)
    return add(total, resource_list(spec.get("overhead")))


def host_ports(pod: Obj) -> frozenset[tuple[str, str, int]]:
    """(protocol, hostIP, hostPort) of every container port that claims a host port."""
    out = set()
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.add((p.get("protocol") or "TCP", p.get("hostIP") or "0.0.0.0", int(p["hostPort"])))
    return frozenset(out)


def ports_conflict(wanted: Iterable[tuple[str, str, int]], used: Iterable[tuple[str, str, int]]) -> bool:
    """HostPortInfo.CheckConflict: same protocol and port, and either IP is 0.0.0.0 or they are equal."""
    used = list(used)
    for proto, ip, port in wanted:
        for uproto, uip, uport in used:
            if proto == uproto and port == uport and (ip == uip or "0.0.0.0" in (ip, uip)):
                return True
    return False


def normalized_image(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else name + ":latest"


def pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


def _controller_key(pod: Obj) -> tuple[str, str] | None:
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            uid = ref.get("uid")
            return None if uid is None else (uid, meta.get("namespace") or "default")
    return None


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


# --- snapshot -----------------------------------------------------------------------------------------

_NODE_DERIVED = ("name", "labels", "images", "allocatable")


@dataclass(frozen=True)
class NodeInfo:
    """One node with the pods bound to it and their precomputed totals.

    Invariant: `requested`, `non_zero_requested` and `used_ports` are the sums
    over `pods`; `generation` changes whenever the node or its pods change.
    """

    node: Obj
    pods: tuple[Obj, ...] = ()
    requested: ResourceList = field(default_factory=dict)
    non_zero_requested: ResourceList = field(default_factory=dict)
    used_ports: frozenset[tuple[str, str, int]] = frozenset()
    generation: int = 0

    @classmethod
    def build(cls, node: Obj, pods: Iterable[Obj] = ()) -> NodeInfo:
        pods = tuple(pods)
        requested: dict[str, int] = {}
        non_zero: dict[str, int] = {}
        ports: set = set()
        for p in pods:
            requested = add(requested, pod_requests(p))
            non_zero = add(non_zero, pod_requests(p, non_zero=True))
            ports |= host_ports(p)
        return cls(node, pods, requested, non_zero, frozenset(ports), next(_generations))

    # Parsed once per NodeInfo: every filter and scorer reads these.
    @cached_property
    def name(self) -> str:
        return (self.node.get("metadata") or {}).get("name") or ""

    @cached_property
    def labels(self) -> Mapping[str, str]:
        return (self.node.get("metadata") or {}).get("labels") or {}

    @cached_property
    def images(self) -> dict[str, int]:
        """Image name (tag defaulted to latest) to size in bytes, from status.images."""
        out: dict[str, int] = {}
        for image in (self.node.get("status") or {}).get("images") or []:
            for name in image.get("names") or []:
                out[normalized_image(name)] = int(image.get("sizeBytes") or 0)
        return out

    @cached_property
    def allocatable(self) -> dict[str, int]:
        status = self.node.get("status") or {}
        return resource_list(status.get("allocatable") or status.get("capacity"))

    @cached_property
    def pods_with_required_anti(self) -> tuple[Obj, ...]:
        """The pods here with required pod anti-affinity (the only ones that can repel a pod without terms)."""
        return tuple(p for p in self.pods if ((((p.get("spec") or {}).get("affinity") or {})
                                               .get("podAntiAffinity") or {})
                                              .get("requiredDuringSchedulingIgnoredDuringExecution")))

    @cached_property
    def controlled(self) -> dict[tuple[str, str], int]:
        """(controller uid, namespace) → how many of the pods here it controls (SelectorSpread's count);
        carried to the next NodeInfo by `with_pod`."""
        out: dict[tuple[str, str], int] = {}
        for p in self.pods:
            key = _controller_key(p)
            if key is not None:
                out[key] = out.get(key, 0) + 1
        return out

    @cached_property
    def claims(self) -> frozenset[str]:
        """The claims ("namespace/name") the pods here use (the volume filters ask; others never do)."""
        out = set()
        for p in self.pods:
            names = claim_names(p)
            if names:
                ns = (p.get("metadata") or {}).get("namespace") or "default"
                out.update(f"{ns}/{n}" for n in names)
        return frozenset(out)

    def with_pod(self, pod: Obj, requests: Requests | None = None) -> NodeInfo:
        """The NodeInfo with `pod` added; `requests`, when the caller has them, are the pod's
        (pod_requests, pod_requests non-zero), not computed again."""
        request, non_zero = requests or (pod_requests(pod), pod_requests(pod, non_zero=True))
        info = replace(self, pods=self.pods + (pod,), requested=add(self.requested, request),
                       non_zero_requested=add(self.non_zero_requested, non_zero),
                       used_ports=self.used_ports | host_ports(pod), generation=next(_generations))
        # Same node object: keep what was parsed from it (cached_property stores in __dict__).
        info.__dict__.update({k: v for k, v in self.__dict__.items() if k in _NODE_DERIVED})
        if "controlled" in self.__dict__:
            controlled = dict(self.__dict__["controlled"])
            key = _controller_key(pod)
            if key is not None:
                controlled[key] = controlled.get(key, 0) + 1
            info.__dict__["controlled"] = controlled
        return info

    def without_pod(self, key: str) -> NodeInfo:
        return NodeInfo.build(self.node, (p for p in self.pods if pod_key(p) != key))


@dataclass(frozen=True)
class Snapshot:
    """Nodes (in a stable order) and their pods; `namespaces` maps a name to its labels.

    `generation` changes on every change anywhere, for results that depend on
    more than one node (inter-pod affinity, topology spread).
    """

    nodes: tuple[NodeInfo, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    generation: int = 0
    # Controller uid -> nodes where its pods recently failed to start (scorers.RecentFailures avoids them).
    avoid: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Claims, PersistentVolumes and StorageClasses (the volume filters read them; volumes.py).
    volumes: Volumes = field(default_factory=Volumes)

    @classmethod
    def build(cls, nodes: Iterable[Obj], pods: Iterable[Obj] = (), *,
              namespaces: Mapping[str, Mapping[str, str]] | None = None,
              volumes: Volumes | None = None) -> Snapshot:
        """Bound, non-terminal pods go with their node; pending and finished pods are left out."""
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            name = (p.get("spec") or {}).get("nodeName")
            if name and not _terminal(p):
                by_node.setdefault(name, []).append(p)
        infos = tuple(NodeInfo.build(n, by_node.get((n.get("metadata") or {}).get("name"), ())) for n in nodes)
        return cls(infos, dict(namespaces or {}), next(_generations), {}, volumes or Volumes())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {info.name: i for i, info in enumerate(self.nodes)})

    @cached_property
    def image_spread(self) -> dict[str, int]:
        """How many nodes hold each image (ImageLocality scales by it)."""
        counts: dict[str, int] = {}
        for info in self.nodes:
            for image in info.images:
                counts[image] = counts.get(image, 0) + 1
        return counts

    @cached_property
    def claim_users(self) -> dict[str, frozenset[str]]:
        """Claim ("namespace/name") → the nodes whose pods use it (bound, assumed or nominated)."""
        out: dict[str, set[str]] = {}
        for info in self.nodes:
            for key in info.claims:
                out.setdefault(key, set()).add(info.name)
        return {k: frozenset(v) for k, v in out.items()}

    def with_volumes(self, volumes: Volumes) -> Snapshot:
        """The same nodes and pods with other claims, volumes and classes (a new generation)."""
        out = self._copy()
        object.__setattr__(out, "volumes", volumes)
        return out

    def with_namespaces(self, namespaces: Mapping[str, Mapping[str, str]]) -> Snapshot:
        """The same nodes and pods with other namespace labels (a new generation)."""
        out = self._copy()
        object.__setattr__(out, "namespaces", namespaces)
        return out

    def with_avoid(self, avoid: Mapping[str, frozenset[str]]) -> Snapshot:
        """The same nodes and pods, with another map of nodes to avoid (no new generation: filters ignore it)."""
        out = self._copy()
        object.__setattr__(out, "generation", self.generation)
        object.__setattr__(out, "avoid", avoid)
        return out

    def _copy(self) -> Snapshot:
        """The same nodes and pods under a new generation (callers then set one field)."""
        if self.nodes:
            return self._replace_node(0, self.nodes[0], same_node=True)
        return Snapshot((), self.namespaces, next(_generations), self.avoid, self.volumes)

    def get(self, name: str) -> NodeInfo | None:
        i = self._index.get(name)  # type: ignore[attr-defined]
        return None if i is None else self.nodes[i]

    def _replace_node(self, i: int, info: NodeInfo, *, same_node: bool = False) -> Snapshot:
        """The snapshot with node i replaced; the name index is shared (names and order are unchanged),
        and so is the image spread when only the node's pods changed."""
        nodes = self.nodes[:i] + (info,) + self.nodes[i + 1:]
        out = object.__new__(Snapshot)
        object.__setattr__(out, "nodes", nodes)
        object.__setattr__(out, "namespaces", self.namespaces)
        object.__setattr__(out, "avoid", self.avoid)
        object.__setattr__(out, "volumes", self.volumes)
        object.__setattr__(out, "generation", next(_generations))
        object.__setattr__(out, "_index", self._index)  # type: ignore[attr-defined]
        if same_node:
            if "image_spread" in self.__dict__:
                out.__dict__["image_spread"] = self.__dict__["image_spread"]
            # Cluster-wide sums (filters' prepare) can be had from this snapshot's by the one node's change.
            out.__dict__["_parent"] = (self.memo, i, self.nodes[i])
        return out

    @cached_property
    def memo(self) -> dict[Any, Any]:
        """Values derived from this snapshot (never changed once stored), for filters' prepare."""
        return {}

    def derived(self, key: Any, full: Callable[[Snapshot], Any],
                delta: Callable[[Any, int, NodeInfo, NodeInfo], Any]) -> Any:
        """The memoized value `key` of this snapshot: `full(snapshot)` computes it; or, when the snapshot
        this one was made from (by one node's pods changing) has it already, `delta(value there, index,
        old NodeInfo, new NodeInfo)` brings that up to date (returning a new value: stored ones are shared)."""
        memo = self.memo
        value = memo.get(key)
        if value is None:
            parent = self.__dict__.get("_parent")
            before = parent[0].get(key) if parent is not None else None
            if before is not None:
                value = delta(before, parent[1], parent[2], self.nodes[parent[1]])
            else:
                value = full(self)
            memo[key] = value
        return value

    def with_pod(self, pod: Obj, node_name: str, requests: Requests | None = None) -> Snapshot:
        """The snapshot after binding `pod` to `node_name` (the pod's spec.nodeName is set in the copy);
        `requests` as NodeInfo.with_pod takes them."""
        i = self._index[node_name]  # type: ignore[attr-defined]
        bound = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node_name}}
        return self._replace_node(i, self.nodes[i].with_pod(bound, requests), same_node=True)

    def without_pod(self, key: str, node_name: str) -> Snapshot:
        i = self._index[node_name]  # type: ignore[attr-defined]
        return self._replace_node(i, self.nodes[i].without_pod(key), same_node=True)

    def with_node(self, node: Obj) -> Snapshot:
        """Add `node`, or replace the node of that name keeping its pods."""
        name = (node.get("metadata") or {}).get("name")
        i = self._index.get(name)  # type: ignore[attr-defined]
        if i is None:
            return Snapshot(self.nodes + (NodeInfo.build(node),), self.namespaces, next(_generations), self.avoid,
                            self.volumes)
        return self._replace_node(i, NodeInfo.build(node, self.nodes[i].pods))

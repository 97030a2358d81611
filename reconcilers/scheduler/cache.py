"""The scheduler's cache: nodes and the pods on them, as a Snapshot kept current event by event.

Fed by the loop's informer handlers (nodes; pods that are bound), by the loop
itself (`assume` when it decides, `forget` when a binding fails) and by
preemption (`nominate`); consumed by the loop, which hands `snapshot` to the
pipeline. Like kube-scheduler's cache, a pod the scheduler has placed counts on
its node from the moment of the decision ("assumed"), before the binding's
watch event arrives, so the next decision already sees it; the informer's
event then confirms it (or a failed binding forgets it).

A pod nominated to a node by preemption reserves its room there for every
other pod; its own attempts see the node without that reservation
(`snapshot_for`).

It also holds what the filters read besides nodes and pods: namespace labels
(inter-pod affinity's namespaceSelector) and the claims, PersistentVolumes and
StorageClasses of the volume filters (volumes.Volumes), each from its
informer. Their changes reach the snapshot on its next read (one copy per
pass, however many events came in between).

Invariant: `snapshot` holds exactly the nodes in `nodes` and, on each, the
pods of `by_node[name]` (bound, assumed and nominated pods, none terminal).

The cache also keeps a log of the nodes whose pods changed (`index`,
`since(i)`) and an `epoch` that moves when something every decision must see
again changed (a node, or a pod with required anti-affinity): batch.py keeps
each equivalence class's feasibility and scores across passes and brings them
up to date from that log (batch.ChangeLog).
"""
from __future__ import annotations

from typing import Any

from .resources import Obj, Requests, Snapshot, pod_key
from .volumes import Volumes

LOG_KEEP = 100_000   # node changes remembered; a class state older than that is rebuilt


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _scheduling_view(pod: Obj) -> Any:
    """What of a bound pod the filters and scorers read: spec, labels, namespace, deletion."""
    meta = pod.get("metadata") or {}
    return (pod.get("spec"), meta.get("labels"), meta.get("ownerReferences"), bool(meta.get("deletionTimestamp")))


class NodeCache:
    def __init__(self) -> None:
        self.nodes: dict[str, Obj] = {}
        self.by_node: dict[str, dict[str, Obj]] = {}      # node -> key -> pod (bound, assumed, nominated)
        self.where: dict[str, str] = {}                    # key -> node, for every pod in by_node
        self.assumed: dict[str, str] = {}                  # key -> node, decided but not yet seen bound
        self.nominated: dict[str, str] = {}                # key -> node, reserved by preemption
        self._snapshot = Snapshot.build([])
        self._stale = False      # nodes were added or removed: rebuild on the next read
        self.epoch = 0
        self._log: list[str] = []
        self._log_base = 0
        self.namespaces: dict[str, dict[str, str]] = {}       # name -> labels
        self.claims: dict[str, Obj] = {}                       # "namespace/name" -> PersistentVolumeClaim
        self.pvs: dict[str, Obj] = {}
        self.classes: dict[str, Obj] = {}                      # StorageClasses by name
        self._volumes_dirty = False
        self._namespaces_dirty = False

    @property
    def snapshot(self) -> Snapshot:
        if self._stale:
            self._rebuild()
        if self._volumes_dirty:
            self._volumes_dirty = False
            self._snapshot = self._snapshot.with_volumes(Volumes(dict(self.claims), dict(self.pvs),
                                                                 dict(self.classes)))
        if self._namespaces_dirty:
            self._namespaces_dirty = False
            self._snapshot = self._snapshot.with_namespaces(dict(self.namespaces))
        return self._snapshot

    @snapshot.setter
    def snapshot(self, value: Snapshot) -> None:
        self._snapshot = value

    # --- the change log (batch.ChangeLog) ---

    @property
    def index(self) -> int:
        return self._log_base + len(self._log)

    def since(self, index: int) -> list[str] | None:
        if index < self._log_base:
            return None
        return self._log[index - self._log_base:]

    def _logged(self, node: str, pod: Obj) -> None:
        self._log.append(node)
        if _has_required_anti(pod):
            self.epoch += 1   # its terms reach beyond its node (a zone, say): every class looks again
        if len(self._log) > 2 * LOG_KEEP:
            del self._log[:LOG_KEEP]
            self._log_base += LOG_KEEP

    def __len__(self) -> int:
        return len(self.nodes)

    # --- nodes ---

    def add_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        if name in self.nodes:
            self.update_node(node)
            return
        self.nodes[name] = node
        self._stale = True   # a sync adds nodes by the thousand: one rebuild when next read, not one each
        self.epoch += 1

    def update_node(self, node: Obj) -> set[str]:
        """Replace a node; returns what changed among labels, taints, unschedulable, allocatable, images."""
        name = node["metadata"]["name"]
        old = self.nodes.get(name)
        if old is None:
            self.add_node(node)
            return {"added"}
        changed = node_changes(old, node)
        self.nodes[name] = node
        if changed:
            if not self._stale:
                self.snapshot = self.snapshot.with_node(node)
            self.epoch += 1
        return changed

    def delete_node(self, name: str) -> None:
        if self.nodes.pop(name, None) is not None:
            self._stale = True
            self.epoch += 1

    # --- namespaces and volumes ---

    def set_namespace(self, ns: Obj) -> bool:
        """A namespace added or changed; True when its labels changed (inter-pod affinity may see it)."""
        name = (ns.get("metadata") or {}).get("name") or ""
        labels = dict((ns.get("metadata") or {}).get("labels") or {})
        if self.namespaces.get(name) == labels:
            return False
        self.namespaces[name] = labels
        self._namespaces_dirty = True
        self.epoch += 1   # a namespaceSelector's verdict may change on every node: every class looks again
        return True

    def delete_namespace(self, name: str) -> None:
        if self.namespaces.pop(name, None) is not None:
            self._namespaces_dirty = True
            self.epoch += 1

    def set_volume_object(self, kind: str, obj: Obj | None, key: str) -> None:
        """A claim ("claims", key namespace/name), PersistentVolume ("pvs") or StorageClass ("classes")
        added, changed (obj) or deleted (None). Only pods with claims read these: no epoch moves."""
        table = getattr(self, kind)
        if obj is None:
            if table.pop(key, None) is None:
                return
        else:
            table[key] = obj
        self._volumes_dirty = True

    @property
    def volumes(self) -> Volumes:
        return self.snapshot.volumes

    # --- pods ---

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def pod_bound(self, pod: Obj) -> bool:
        """The informer shows `pod` bound (or changed while bound). Returns True when the snapshot changed."""
        key = pod_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if _terminal(pod):
            return self.remove(key)
        self.nominated.pop(key, None)
        self.assumed.pop(key, None)
        current = self.where.get(key)
        if current == node:
            old = self.by_node[node][key]
            if _scheduling_view(old) == _scheduling_view(pod):
                self.by_node[node][key] = pod   # nothing the scheduler reads changed: keep the snapshot
                return False
        if current is not None:
            self._take(key)
        self._put(key, node, pod)
        return True

    def assume(self, pod: Obj, node: str, requests: Requests | None = None) -> None:
        """`requests`: the pod's (pod_requests, non-zero), when the caller has them (batch.Placement)."""
        key = pod_key(pod)
        if key in self.where:
            self._take(key)
        self.nominated.pop(key, None)
        self.assumed[key] = node
        self._put(key, node, {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}}, requests)

    def forget(self, key: str) -> None:
        """A binding failed: the assumed pod leaves its node."""
        if self.assumed.pop(key, None) is not None:
            self._take(key)

    def nominate(self, pod: Obj, node: str) -> None:
        key = pod_key(pod)
        if key in self.assumed or (key in self.where and key not in self.nominated):
            return
        if key in self.where:
            self._take(key)
        self.nominated[key] = node
        self._put(key, node, {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}})

    def remove(self, key: str) -> bool:
        """A pod was deleted or finished: its room is free."""
        self.assumed.pop(key, None)
        self.nominated.pop(key, None)
        if key in self.where:
            self._take(key)
            return True
        return False

    def snapshot_for(self, keys: list[str]) -> Snapshot:
        """The snapshot for deciding these pods: without their own nomination reservations."""
        snap = self.snapshot
        for key in keys:
            node = self.nominated.get(key)
            if node is not None and node in self.nodes:
                snap = snap.without_pod(key, node)
        return snap

    def pods_on(self, node: str) -> list[Obj]:
        return list(self.by_node.get(node, {}).values())

    # --- internals ---

    def _put(self, key: str, node: str, pod: Obj, requests: Requests | None = None) -> None:
        self.where[key] = node
        self.by_node.setdefault(node, {})[key] = pod
        if node in self.nodes:
            if not self._stale:
                self.snapshot = self.snapshot.with_pod(pod, node, requests)
            self._logged(node, pod)

    def _take(self, key: str) -> None:
        node = self.where.pop(key)
        pods = self.by_node.get(node, {})
        pod = pods.pop(key, None) or {}
        if not pods:
            self.by_node.pop(node, None)
        if node in self.nodes:
            if not self._stale:
                self.snapshot = self.snapshot.without_pod(key, node)
            self._logged(node, pod)

    def _rebuild(self) -> None:
        pods = [p for name in self.nodes for p in self.by_node.get(name, {}).values()]
        self._snapshot = Snapshot.build(self.nodes.values(), pods, namespaces=self._snapshot.namespaces,
                                        volumes=self._snapshot.volumes)
        self._stale = False
        self.epoch += 1


def _has_required_anti(pod: Obj) -> bool:
    return bool((((pod.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))


def node_changes(old: Obj, new: Obj) -> set[str]:
    """Which scheduling-relevant parts of a node differ (heartbeats and conditions do not count)."""
    out = set()
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    os_, ns = old.get("spec") or {}, new.get("spec") or {}
    ost, nst = old.get("status") or {}, new.get("status") or {}
    if om.get("labels") != nm.get("labels"):
        out.add("labels")
    if os_.get("taints") != ns.get("taints"):
        out.add("taints")
    if bool(os_.get("unschedulable")) != bool(ns.get("unschedulable")):
        out.add("unschedulable")
    if ost.get("allocatable") != nst.get("allocatable") or ost.get("capacity") != nst.get("capacity"):
        out.add("allocatable")
    if ost.get("images") != nst.get("images"):
        out.add("images")
    return out

"""Scorers: how good is a feasible node for this pod? Each gives a 0–100 score and a label.

Fed by the pipeline with the feasible nodes; `score` gives a raw value and a
label saying how it was reached, `normalize` maps the raw values of all
feasible nodes to 0–100 (kube's NormalizeScore). A Profile picks scorers and
weights; the pipeline records every score so explain.py can print it.

`cacheable` scorers depend only on the pod's equivalence class and this
NodeInfo, so their raw scores may be cached by node generation.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .filters import node_selector_term_matches, node_taints, tolerated
from .resources import CPU, MEMORY, ZONE_LABEL, NodeInfo, Obj, Snapshot, normalized_image, pod_requests

MAX_SCORE = 100


class Score(NamedTuple):
    value: int
    label: str


class Scorer:
    name: ClassVar[str] = ""
    cacheable: ClassVar[bool] = True

    def prepare(self, pod: Obj, snapshot: Snapshot) -> Any:
        """Per-pod work done once per decision (kube's PreScore); its result comes back as `state`."""
        return None

    def score(self, pod: Obj, node: NodeInfo, snapshot: Snapshot, state: Any = None) -> Score:
        raise NotImplementedError

    def value(self, pod: Obj, node: NodeInfo, snapshot: Snapshot, state: Any = None) -> int:
        """`score`'s value without its label (batch.py asks labels only of the nodes it records)."""
        return self.score(pod, node, snapshot, state)[0]

    def normalize(self, raw: Mapping[str, int], snapshot: Snapshot) -> dict[str, int]:
        """Raw scores of all feasible nodes to 0–100; by default raw scores already are."""
        return dict(raw)


def _normalize(raw: Mapping[str, int], *, reverse: bool) -> dict[str, int]:
    """helper.DefaultNormalizeScore: scale to the maximum; `reverse` makes fewer better."""
    top = max(raw.values(), default=0)
    if top == 0:
        return {k: MAX_SCORE if reverse else 0 for k in raw}
    return {k: (MAX_SCORE - v * MAX_SCORE // top) if reverse else v * MAX_SCORE // top for k, v in raw.items()}


# --- resource allocation -------------------------------------------------------------------------

_WEIGHTS = ((CPU, 1), (MEMORY, 1))


class _AllocationScorer(Scorer):
    def prepare(self, pod, snapshot):
        return pod_requests(pod, non_zero=True)


def _allocation(pod: Obj, node: NodeInfo, request: Any) -> list[tuple[str, int, int, int]]:
    """(resource, weight, requested including this pod, allocatable) on the scoring (non-zero) view."""
    if request is None:
        request = pod_requests(pod, non_zero=True)
    allocatable, requested = node.allocatable, node.non_zero_requested
    return [(r, w, requested.get(r, 0) + request.get(r, 0), allocatable.get(r, 0)) for r, w in _WEIGHTS]


def _weighted(parts: list[tuple[int, int]]) -> int:
    total = sum(w for _, w in parts)
    return sum(s * w for s, w in parts) // total if total else 0


def _least(req: int, cap: int) -> int:
    return 0 if cap == 0 or req > cap else (cap - req) * MAX_SCORE // cap


def _most(req: int, cap: int) -> int:
    return 0 if cap == 0 else min(req, cap) * MAX_SCORE // cap


def _balanced(fractions: list[float]) -> int:
    mean = sum(fractions) / len(fractions)
    std = (sum((f - mean) ** 2 for f in fractions) / len(fractions)) ** 0.5
    return int((1 - std) * MAX_SCORE)


class LeastAllocated(_AllocationScorer):
    """Worst fit: (allocatable − requested) × 100 / allocatable, averaged over cpu and memory."""

    name = "NodeResourcesLeastAllocated"

    def score(self, pod, node, snapshot, state=None):
        parts, label = [], []
        for r, w, req, cap in _allocation(pod, node, state):
            s = _least(req, cap)
            parts.append((s, w))
            label.append(f"{r} {s}")
        return Score(_weighted(parts), ", ".join(label))

    def value(self, pod, node, snapshot, state=None):
        return _weighted([(_least(req, cap), w) for _, w, req, cap in _allocation(pod, node, state)])


class MostAllocated(_AllocationScorer):
    """Best fit: requested × 100 / allocatable (requested capped at allocatable)."""

    name = "NodeResourcesMostAllocated"

    def score(self, pod, node, snapshot, state=None):
        parts, label = [], []
        for r, w, req, cap in _allocation(pod, node, state):
            s = _most(req, cap)
            parts.append((s, w))
            label.append(f"{r} {s}")
        return Score(_weighted(parts), ", ".join(label))

    def value(self, pod, node, snapshot, state=None):
        return _weighted([(_most(req, cap), w) for _, w, req, cap in _allocation(pod, node, state)])


class BalancedAllocation(_AllocationScorer):
    """(1 − standard deviation of the requested fractions) × 100: favours nodes used evenly across resources."""

    name = "NodeResourcesBalancedAllocation"

    def score(self, pod, node, snapshot, state=None):
        fractions = [min(req / cap, 1.0) for _, _, req, cap in _allocation(pod, node, state) if cap > 0]
        if not fractions:
            return Score(0, "no allocatable")
        return Score(_balanced(fractions), "fractions " + ", ".join(f"{f:.2f}" for f in fractions))

    def value(self, pod, node, snapshot, state=None):
        fractions = [min(req / cap, 1.0) for _, _, req, cap in _allocation(pod, node, state) if cap > 0]
        return _balanced(fractions) if fractions else 0


# --- affinity and taints -------------------------------------------------------------------------

_NO_PREFERENCE = Score(0, "matching weight 0")
_NO_SOFT_TAINTS = Score(0, "0 untolerated PreferNoSchedule")


class NodeAffinityPreferred(Scorer):
    """Sum of the weights of matching preferred node-affinity terms, scaled to the best node."""

    name = "NodeAffinity"

    def prepare(self, pod, snapshot):
        return ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
                .get("preferredDuringSchedulingIgnoredDuringExecution") or [])

    def score(self, pod, node, snapshot, state=None):
        preferred = state if state is not None else self.prepare(pod, snapshot)
        if not preferred:
            return _NO_PREFERENCE
        total = sum(int(p.get("weight") or 0) for p in preferred
                    if node_selector_term_matches(p.get("preference") or {}, node))
        return Score(total, f"matching weight {total}")

    def normalize(self, raw, snapshot):
        return _normalize(raw, reverse=False)


class TaintTolerationPreferred(Scorer):
    """Fewer untolerated PreferNoSchedule taints score higher."""

    name = "TaintToleration"

    def score(self, pod, node, snapshot, state=None):
        taints = node_taints(node)
        if not taints:
            return _NO_SOFT_TAINTS
        n = sum(1 for t in taints if t.get("effect") == "PreferNoSchedule" and not tolerated(pod, t))
        return Score(n, f"{n} untolerated PreferNoSchedule")

    def normalize(self, raw, snapshot):
        return _normalize(raw, reverse=True)


# --- image locality ------------------------------------------------------------------------------

_MB = 1024 * 1024
_IMAGE_MIN, _IMAGE_MAX_PER_CONTAINER = 23 * _MB, 1000 * _MB
_NO_IMAGES = Score(0, "0MiB of images present")


class ImageLocality(Scorer):
    """Nodes that already hold the pod's images, weighted by size and by how widely the image is spread."""

    name = "ImageLocality"
    cacheable = False  # the spread factor depends on every node's images

    def prepare(self, pod, snapshot):
        spec = pod.get("spec") or {}
        containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
        return len(containers), {normalized_image(c.get("image") or "") for c in containers}

    def score(self, pod, node, snapshot, state=None):
        count, wanted = state if state is not None else self.prepare(pod, snapshot)
        here = node.images
        if not here:
            return _NO_IMAGES
        total_nodes = len(snapshot.nodes) or 1
        s = 0
        for image in wanted & here.keys():
            s += int(here[image] * snapshot.image_spread[image] / total_nodes)
        hi = _IMAGE_MAX_PER_CONTAINER * max(count, 1)
        clamped = min(max(s, _IMAGE_MIN), hi)
        return Score(MAX_SCORE * (clamped - _IMAGE_MIN) // (hi - _IMAGE_MIN), f"{s // _MB}MiB of images present")



# --- default spreading ---------------------------------------------------------------------------

def controller_uid(pod: Obj) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


class SelectorSpread(Scorer):
    """Spread a controller's pods: fewer of its pods on the node, and in the node's zone, score higher.

    Zones weigh 2/3 and nodes 1/3 when nodes carry a zone label (kube's SelectorSpread).
    """

    name = "SelectorSpread"
    cacheable = False  # zone counts depend on other nodes

    def prepare(self, pod, snapshot):
        return controller_uid(pod), (pod.get("metadata") or {}).get("namespace") or "default"

    def score(self, pod, node, snapshot, state=None):
        n = self.value(pod, node, snapshot, state)
        return Score(n, f"{n} sibling pod(s) on node")

    def value(self, pod, node, snapshot, state=None):
        uid, ns = state if state is not None else self.prepare(pod, snapshot)
        if uid is None:
            return 0
        return node.controlled.get((uid, ns), 0)

    def normalize(self, raw, snapshot):
        """Normalize node counts and mix in zone counts (over the feasible nodes)."""
        zone_of: dict[str, str] = {}
        for name in raw:
            info = snapshot.get(name)
            zone = info.labels.get(ZONE_LABEL) if info else None
            if zone is not None:
                zone_of[name] = zone
        return self.normalize_zoned(raw, zone_of)

    @staticmethod
    def normalize_zoned(raw: Mapping[str, int], zone_of: Mapping[str, str]) -> dict[str, int]:
        """`normalize` with each node's zone given (the batch placer keeps that map across pods)."""
        zones: dict[str, int] = {}
        for name, count in raw.items():
            zone = zone_of.get(name)
            if zone is not None:
                zones[zone] = zones.get(zone, 0) + count
        max_node = max(raw.values(), default=0)
        max_zone = max(zones.values(), default=0)
        out = {}
        memo: dict[tuple[int, str | None], int] = {}   # few distinct (count, zone) pairs: score each once
        for name, count in raw.items():
            zone = zone_of.get(name)
            value = memo.get((count, zone))
            if value is None:
                s = MAX_SCORE * (max_node - count) / max_node if max_node > 0 else MAX_SCORE
                if zone is not None:
                    zs = MAX_SCORE * (max_zone - zones[zone]) / max_zone if max_zone > 0 else MAX_SCORE
                    s = s / 3 + zs * 2 / 3
                value = memo[(count, zone)] = int(s)
            out[name] = value
        return out


class RecentFailures(Scorer):
    """Borg's avoidance: a node where pods of the same controller recently failed to start (crash at
    start, image errors) scores 0, any other 100. A preference, not a filter: with nowhere else to
    go, the pod may still land there."""

    name = "RecentFailures"
    cacheable = False   # the map changes as failures are seen and expire, without the node changing

    def prepare(self, pod, snapshot):
        uid = controller_uid(pod)
        return snapshot.avoid.get(uid, frozenset()) if uid else frozenset()

    def score(self, pod, node, snapshot, state=None):
        avoid = state if state is not None else self.prepare(pod, snapshot)
        if node.name in avoid:
            return Score(0, "pods of its controller failed here recently")
        return Score(MAX_SCORE, "no recent failures")


@dataclass(frozen=True)
class Profile:
    """A named choice of scorers with weights; the node's total is Σ weight × normalized score."""

    name: str
    scorers: tuple[tuple[Scorer, int], ...]


# kube-scheduler's default weights (PodTopologySpread's 2 goes to SelectorSpread here).
DEFAULT_PROFILE = Profile("default-scheduler", (
    (TaintTolerationPreferred(), 3), (NodeAffinityPreferred(), 2), (SelectorSpread(), 2),
    (LeastAllocated(), 1), (BalancedAllocation(), 1), (ImageLocality(), 1), (RecentFailures(), 5),
))
BIN_PACKING_PROFILE = Profile("bin-packing", (
    (TaintTolerationPreferred(), 3), (NodeAffinityPreferred(), 2), (MostAllocated(), 1), (ImageLocality(), 1),
    (RecentFailures(), 5),
))
HYBRID_PROFILE = Profile("hybrid", (
    (TaintTolerationPreferred(), 3), (NodeAffinityPreferred(), 2), (SelectorSpread(), 2),
    (BalancedAllocation(), 2), (MostAllocated(), 1), (RecentFailures(), 5),
))
PROFILES: dict[str, Profile] = {p.name: p for p in (DEFAULT_PROFILE, BIN_PACKING_PROFILE, HYBRID_PROFILE)}


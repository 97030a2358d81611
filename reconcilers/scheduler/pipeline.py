"""One scheduling decision: filter the nodes, score the feasible ones, pick the best.

Fed by the scheduler loop (a later piece) with a pod, a Snapshot, a Profile and
Options; returns a Decision recording every filter result and every score, which
the loop turns into a binding and an Event (explain.py) and stores for
`epctl explain-schedule`. `schedule` has no side effects apart from filling the
optional `Cache` memo, which never changes a result — only its cost.

Borg's three optimizations, each switchable in Options for measurement:
- equivalence classes: pods with equal scheduling-relevant specs share
  feasibility results (per node generation, or per snapshot for cluster-wide
  filters);
- score caching: raw scores of per-node scorers are kept per node generation;
- relaxed randomization: stop after `nodes_to_find` feasible nodes, starting at
  a rotating offset (the Decision carries the next offset).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import volumes as vol
from .filters import DEFAULT_FILTERS, Filter, Rejected, applicable
from .resources import Obj, Snapshot, host_ports, pod_key, pod_requests
from .scorers import DEFAULT_PROFILE, Profile, controller_uid

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50


def nodes_to_find(num_nodes: int, percentage: int | None = None) -> int:
    """numFeasibleNodesToFind: all nodes below 100; else max(50 − nodes/125, 5)% of them, at least 100."""
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage == 100:
        return num_nodes
    if not percentage or percentage <= 0:
        percentage = max(BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


@dataclass(frozen=True)
class Options:
    equivalence_classes: bool = True
    score_cache: bool = True
    relaxed_randomization: bool = True
    percentage_of_nodes_to_score: int | None = None  # None: kube's adaptive formula


def equivalence_class(pod: Obj, snapshot: Snapshot | None = None) -> str:
    """The part of a pod that filters and per-node scorers read, as a canonical string.

    Requests (computed, so equal totals compare equal), nodeName, nodeSelector,
    affinity, tolerations, topology spread constraints, host ports, namespace,
    labels (others' anti-affinity and spread selectors match them) and the
    controlling owner (default spreading counts its siblings). A pod with
    PersistentVolumeClaims adds their names and, given the snapshot, what the
    volume filters read of them (volumes.view): it never shares a class with a
    pod without claims, and its class changes when its claims' state does.
    """
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    key = {
        "ns": meta.get("namespace") or "default",
        "labels": meta.get("labels") or {},
        "owner": controller_uid(pod),
        "requests": pod_requests(pod),
        "nonZero": pod_requests(pod, non_zero=True),
        "nodeName": spec.get("nodeName"),
        "nodeSelector": spec.get("nodeSelector") or {},
        "affinity": spec.get("affinity") or {},
        "tolerations": spec.get("tolerations") or [],
        "spread": spec.get("topologySpreadConstraints") or [],
        "ports": sorted(host_ports(pod)),
        "images": sorted(c.get("image") or "" for c in (spec.get("initContainers") or [])
                         + (spec.get("containers") or [])),
    }
    if vol.has_claims(pod):
        key["claims"] = list(vol.claim_names(pod))
        if snapshot is not None:
            key["volumes"] = vol.view(pod, snapshot.volumes, snapshot.claim_users)
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


@dataclass
class Cache:
    """Memo shared across decisions; counters make each optimization measurable."""

    # (class, node, node generation) -> the per-node filter results;
    # (class, filter, node, snapshot generation) -> one cluster-wide filter's result.
    feasibility: dict[tuple, Any] = field(default_factory=dict)
    scores: dict[tuple, tuple[int, str]] = field(default_factory=dict)
    filter_runs: int = 0
    filter_hits: int = 0
    score_runs: int = 0
    score_hits: int = 0

    def prune(self, snapshot: Snapshot) -> None:
        """Drop entries for node and snapshot generations no longer current (call between batches)."""
        live = {(n.name, n.generation) for n in snapshot.nodes}
        self.feasibility = {k: v for k, v in self.feasibility.items()
                            if tuple(k[1:]) in live or k[-1] == snapshot.generation}
        self.scores = {k: v for k, v in self.scores.items() if (k[2], k[3]) in live}


# NamedTuples, not dataclasses: a decision records thousands of these.
class FilterResult(NamedTuple):
    name: str
    reasons: tuple[str, ...] = ()  # empty: passed

    @property
    def passed(self) -> bool:
        return not self.reasons


class ScoreResult(NamedTuple):
    name: str
    weight: int
    raw: int
    score: int  # normalized 0–100
    label: str
    cached: bool = False


@dataclass(frozen=True)
class NodeResult:
    """One examined node: the filters run on it (up to the first failure) and, if feasible, its scores."""

    node: str
    filters: tuple[FilterResult, ...]
    feasible: bool
    scores: tuple[ScoreResult, ...] = ()
    total: int | None = None  # None: infeasible
    cached: bool = False  # the per-node filter results came from the equivalence class cache

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(r for f in self.filters for r in f.reasons)


@dataclass(frozen=True)
class Decision:
    """The outcome of one `schedule`: the chosen node (None when nothing fits) and how it was reached."""

    pod: str
    profile: str
    node: str | None
    results: tuple[NodeResult, ...]  # in the order the nodes were examined
    num_nodes: int
    start: int
    next_start: int
    nodes_to_find: int
    equivalence_class: str
    prefilter: str | None = None   # a reason that rejected the pod on every node before any node was examined

    @property
    def feasible(self) -> tuple[NodeResult, ...]:
        return tuple(r for r in self.results if r.feasible)

    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            for reason in r.reasons:
                counts[reason] = counts.get(reason, 0) + 1
        return counts


def _reasons(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _split(filters: Sequence[Filter]) -> tuple[tuple[Filter, ...], tuple[Filter, ...]]:
    """The leading per-node filters (cached together per node generation) and the rest."""
    n = 0
    while n < len(filters) and filters[n].scope == "node":
        n += 1
    return tuple(filters[:n]), tuple(filters[n:])


def schedule(pod: Obj, snapshot: Snapshot, profile: Profile = DEFAULT_PROFILE, options: Options = Options(), *,
             filters: Sequence[Filter] = DEFAULT_FILTERS, start: int = 0, cache: Cache | None = None) -> Decision:
    """Decide where `pod` goes in `snapshot`. Pure: the same inputs give the same Decision, cache or not."""
    cls = equivalence_class(pod, snapshot)
    n = len(snapshot.nodes)
    to_find = nodes_to_find(n, options.percentage_of_nodes_to_score) if options.relaxed_randomization else n
    start = start % n if (n and options.relaxed_randomization) else 0
    use_classes = cache is not None and options.equivalence_classes
    use_scores = cache is not None and options.score_cache
    filters = applicable(filters, pod)
    node_stage, cluster_stage = _split(filters)
    states: dict[str, Any] = {}
    # kube's PreFilter: a filter that rejects the pod as such rejects it on every node, examined or not.
    for f in filters:
        if f.prefilter:
            states[f.name] = f.prepare(pod, snapshot)
            if isinstance(states[f.name], Rejected):
                reason = states[f.name].reason
                results = tuple(NodeResult(info.name, (FilterResult(f.name, (reason,)),), False)
                                for info in snapshot.nodes)
                return Decision(pod=pod_key(pod), profile=profile.name, node=None, results=results, num_nodes=n,
                                start=start, next_start=start, nodes_to_find=to_find, equivalence_class=cls,
                                prefilter=reason)

    def run(f: Filter, info: Any) -> FilterResult:
        if f.name not in states:
            states[f.name] = f.prepare(pod, snapshot)
        if cache is not None:
            cache.filter_runs += 1
        return FilterResult(f.name, _reasons(f.check(pod, info, snapshot, states[f.name])))

    # Stage 1: feasibility, node by node from the offset until enough nodes fit;
    # a node's filters stop at its first failure, as kube's do.
    results: list[NodeResult] = []
    found = examined = 0
    for i in range(n):
        if found >= to_find:
            break
        info = snapshot.nodes[(start + i) % n]
        examined += 1
        # 1a: checks that read only this node, shared by the class per node generation.
        key = (cls, info.name, info.generation)
        cached = use_classes and key in cache.feasibility
        if cached:
            cache.filter_hits += 1
            done = cache.feasibility[key]
        else:
            done = []
            for f in node_stage:
                done.append(run(f, info))
                if done[-1].reasons:
                    break
            done = tuple(done)
            if use_classes:
                cache.feasibility[key] = done
        ok = not (done and done[-1].reasons)
        # 1b: checks that read other nodes' pods too, shared only within this snapshot.
        if ok:
            done = list(done)
            for f in cluster_stage:
                ckey = (cls, f.name, info.name, snapshot.generation)
                if use_classes and ckey in cache.feasibility:
                    cache.filter_hits += 1
                    result = cache.feasibility[ckey]
                else:
                    result = run(f, info)
                    if use_classes:
                        cache.feasibility[ckey] = result
                done.append(result)
                if result.reasons:
                    ok = False
                    break
            done = tuple(done)
        results.append(NodeResult(info.name, done, ok, cached=cached))
        found += ok
    next_start = (start + examined) % n if n else 0

    # Stage 2: raw scores per scorer (cached per node generation where they read
    # only the node), then normalization over the feasible nodes.
    feasible = [snapshot.get(r.node) for r in results if r.feasible]
    raw: dict[str, dict[str, tuple[int, str, bool]]] = {}
    normalized: dict[str, dict[str, int]] = {}
    for scorer, _ in profile.scorers:
        per_node = raw[scorer.name] = {}
        cacheable = use_scores and scorer.cacheable
        state = scorer.prepare(pod, snapshot) if feasible else None
        for info in feasible:
            key = (cls, scorer.name, info.name, info.generation)
            if cacheable and key in cache.scores:
                cache.score_hits += 1
                per_node[info.name] = (*cache.scores[key], True)
                continue
            value, label = scorer.score(pod, info, snapshot, state)
            if cache is not None:
                cache.score_runs += 1
                if cacheable:
                    cache.scores[key] = (value, label)
            per_node[info.name] = (value, label, False)
        normalized[scorer.name] = scorer.normalize({k: v[0] for k, v in per_node.items()}, snapshot)

    # Stage 3: totals; the highest wins, ties go to the node examined first.
    best: tuple[int, str] | None = None
    final: list[NodeResult] = []
    weights = [(s.name, w) for s, w in profile.scorers]
    for r in results:
        if not r.feasible:
            final.append(r)
            continue
        scores = []
        total = 0
        for name, weight in weights:
            value, label, hit = raw[name][r.node]
            score = normalized[name][r.node]
            total += weight * score
            scores.append(ScoreResult(name, weight, value, score, label, hit))
        scores = tuple(scores)
        final.append(NodeResult(r.node, r.filters, True, scores, total, r.cached))
        if best is None or total > best[0]:
            best = (total, r.node)
    return Decision(pod=pod_key(pod), profile=profile.name, node=best[1] if best else None, results=tuple(final),
                    num_nodes=n, start=start, next_start=next_start, nodes_to_find=to_find, equivalence_class=cls)


def plan(pods: Sequence[Obj], snapshot: Snapshot, profile: Profile = DEFAULT_PROFILE, options: Options = Options(),
         *, cache: Cache | None = None, start: int = 0) -> tuple[list[Decision], Snapshot]:
    """Schedule pods one after another against a private copy of the state (Nomad's harness).

    Each placed pod is added to the working snapshot before the next decision;
    nothing outside is touched. Returns the decisions and the final snapshot.
    """
    decisions = []
    for pod in pods:
        d = schedule(pod, snapshot, profile, options, start=start, cache=cache)
        decisions.append(d)
        start = d.next_start
        if d.node is not None:
            snapshot = snapshot.with_pod(pod, d.node)
    return decisions, snapshot

"""Feasibility checks: may this pod run on this node? Each answers with kube-scheduler's reason.

Fed by the pipeline with (pod, NodeInfo, Snapshot, prepared state); their
reasons are recorded per node in the Decision and aggregated into the
FailedScheduling message by explain.py. A check returns None when the pod fits,
else its rejection reason (NodeResourcesFit may return several, as kube's does).

`scope` says what a result depends on besides the pod's equivalence class:
"node" (only this NodeInfo, so it can be cached by node generation) or
"cluster" (other nodes' pods too, so it is cached per snapshot generation).
`prepare` runs once per pod per snapshot (kube's PreFilter) for checks that
need cluster-wide counts. A `prefilter` filter's prepare may answer `Rejected`:
the pod fits nowhere, and the pipeline records that one reason for every node
(VolumeBinding: a missing claim, an unbound Immediate claim). `claims_only`
filters (the volume filters, which read the Snapshot's claims, volumes and
classes through volumes.py) are left out for pods without claims
(`applicable`), so those pods pay nothing for them.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from eventplane.objects import selectors as sel

from . import volumes as vol
from .resources import CPU, EPHEMERAL_STORAGE, MEMORY, PODS, NodeInfo, Obj, Snapshot, host_ports, \
    pod_requests, ports_conflict

Reason = str | tuple[str, ...] | None

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

# kube-scheduler's reason texts.
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_POD_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
REASON_SPREAD = "node(s) didn't match pod topology spread constraints"
REASON_SPREAD_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
REASON_RWOP_CONFLICT = "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"
REASON_VOLUME_NODE_CONFLICT = "node(s) had volume node affinity conflict"
REASON_VOLUME_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
REASON_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
REASON_VOLUME_ZONE = "node(s) had no available volume zone"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


def untolerated_taint(taint: Obj) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


def _spec(pod: Obj) -> Obj:
    return pod.get("spec") or {}


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


class Rejected(NamedTuple):
    """What a `prefilter` Filter's prepare returns when no node can take the pod (kube's PreFilter
    answering Unschedulable): the reason, which FitError prints once rather than per node."""

    reason: str


class Filter:
    name: ClassVar[str] = ""
    scope: ClassVar[str] = "node"
    prefilter: ClassVar[bool] = False     # prepare may answer Rejected for every node at once
    claims_only: ClassVar[bool] = False   # applies only to pods with PersistentVolumeClaims

    def prepare(self, pod: Obj, snapshot: Snapshot) -> Any:
        return None

    def check(self, pod: Obj, node: NodeInfo, snapshot: Snapshot, state: Any) -> Reason:
        raise NotImplementedError

    def domain(self, state: Any) -> tuple[str, ...] | None:
        """The node labels `check` reads, given `state`: on nodes whose labels agree under these keys
        the verdict is the same (batch.py checks such nodes once). None: it reads more of the node."""
        return None


_WITHOUT_CLAIMS: dict[tuple[Filter, ...], tuple[Filter, ...]] = {}


def applicable(filters: Sequence[Filter], pod: Obj) -> tuple[Filter, ...]:
    """The filters that apply to `pod`: a pod without claims skips the volume filters (it pays nothing
    for them; kube's plugins answer Skip)."""
    filters = tuple(filters)
    if vol.has_claims(pod):
        return filters
    out = _WITHOUT_CLAIMS.get(filters)
    if out is None:
        out = _WITHOUT_CLAIMS[filters] = tuple(f for f in filters if not f.claims_only)
    return out


# --- tolerations ---------------------------------------------------------------------------------

def tolerates(toleration: Obj, taint: Obj) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return operator == "Equal" and bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(pod: Obj, taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in _spec(pod).get("tolerations") or [])


def node_taints(node: NodeInfo) -> list[Obj]:
    return (node.node.get("spec") or {}).get("taints") or []


class NodeUnschedulable(Filter):
    name = "NodeUnschedulable"

    def check(self, pod, node, snapshot, state):
        if not (node.node.get("spec") or {}).get("unschedulable"):
            return None
        if tolerated(pod, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
            return None
        return REASON_UNSCHEDULABLE


class NodeName(Filter):
    name = "NodeName"

    def check(self, pod, node, snapshot, state):
        wanted = _spec(pod).get("nodeName")
        return None if not wanted or wanted == node.name else REASON_NODE_NAME


class TaintToleration(Filter):
    """The first NoSchedule or NoExecute taint the pod does not tolerate."""

    name = "TaintToleration"

    def check(self, pod, node, snapshot, state):
        for taint in node_taints(node):
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(pod, taint):
                return untolerated_taint(taint)
        return None


# --- node affinity ---------------------------------------------------------------------------------

_NODE_OPERATORS = {"In": sel.IN, "NotIn": sel.NOT_IN, "Exists": sel.EXISTS, "DoesNotExist": sel.DOES_NOT_EXIST,
                   "Gt": sel.GREATER_THAN, "Lt": sel.LESS_THAN}


@functools.lru_cache(maxsize=4096)   # the same few expressions are matched against every node
def _requirement(key: str, operator: str | None, values: tuple[str, ...]) -> sel.Requirement | None:
    op = _NODE_OPERATORS.get(operator)   # type: ignore[arg-type]
    return None if op is None else sel.Requirement(key, op, values)


def _requirement_matches(expr: Obj, values: Mapping[str, str]) -> bool:
    args = (expr.get("key") or "", expr.get("operator"), tuple(expr.get("values") or ()))
    try:
        requirement = _requirement(*args)
    except TypeError:   # unhashable values (invalid, but matched as before, uncached)
        requirement = _requirement.__wrapped__(*args)
    return requirement is not None and requirement.matches(values)


def node_selector_term_matches(term: Obj, node: NodeInfo) -> bool:
    """A NodeSelectorTerm: matchExpressions on labels and matchFields on metadata.name, all must hold.

    An empty term matches nothing.
    """
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = node.labels
    return (all(_requirement_matches(e, labels) for e in expressions)
            and all(_requirement_matches(f, {"metadata.name": node.name}) for f in fields))


def node_affinity_matches(pod: Obj, node: NodeInfo) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution (terms ORed) both hold."""
    spec = _spec(pod)
    labels = node.labels
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is not None:
        return any(node_selector_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])
    return True


class NodeAffinity(Filter):
    name = "NodeAffinity"

    def prepare(self, pod, snapshot):
        """node_affinity_matches' two parts, read from the pod once: nodeSelector's pairs and the
        required terms (None: no required node affinity)."""
        spec = _spec(pod)
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution"))
        terms = None if required is None else tuple(required.get("nodeSelectorTerms") or ())
        return tuple((spec.get("nodeSelector") or {}).items()), terms

    def check(self, pod, node, snapshot, state):
        if state is None:
            return None if node_affinity_matches(pod, node) else REASON_NODE_AFFINITY
        selector, terms = state
        labels = node.labels
        for key, value in selector:
            if labels.get(key) != value:
                return REASON_NODE_AFFINITY
        if terms is not None and not any(node_selector_term_matches(t, node) for t in terms):
            return REASON_NODE_AFFINITY
        return None


class NodePorts(Filter):
    name = "NodePorts"

    def prepare(self, pod, snapshot):
        return host_ports(pod)

    def check(self, pod, node, snapshot, state):
        wanted = state if state is not None else host_ports(pod)
        return REASON_PORTS if wanted and ports_conflict(wanted, node.used_ports) else None


class NodeResourcesFit(Filter):
    """Requests against allocatable minus what the node's pods request; every shortage is a reason."""

    name = "NodeResourcesFit"

    def prepare(self, pod, snapshot):
        request = pod_requests(pod)
        ordered = [CPU, MEMORY, EPHEMERAL_STORAGE] + sorted(set(request) - {CPU, MEMORY, EPHEMERAL_STORAGE, PODS})
        return request, ordered

    def check(self, pod, node, snapshot, state):
        allocatable = node.allocatable
        reasons = []
        if len(node.pods) + 1 > allocatable.get(PODS, 0):
            reasons.append(REASON_TOO_MANY_PODS)
        request, ordered = state if state is not None else self.prepare(pod, snapshot)
        for resource in ordered:
            want = request.get(resource, 0)
            if want > 0 and want > allocatable.get(resource, 0) - node.requested.get(resource, 0):
                reasons.append(insufficient(resource))
        return tuple(reasons) or None


# --- inter-pod affinity --------------------------------------------------------------------------

def _term_namespaces(term: Obj, pod: Obj, snapshot: Snapshot) -> set[str] | None:
    """The namespaces a PodAffinityTerm looks in; None means all."""
    names = set(term.get("namespaces") or ())
    ns_selector = term.get("namespaceSelector")
    if ns_selector is not None:
        selector = sel.LabelSelector.from_object(ns_selector)
        if selector.empty:
            return None
        names |= {n for n, labels in snapshot.namespaces.items() if selector.matches(labels)}
    elif not names:
        names = {_meta(pod).get("namespace") or "default"}
    return names


def term_matches_pod(term: Obj, owner: Obj, other: Obj, snapshot: Snapshot) -> bool:
    """Does `other` match `term` of `owner`'s (anti-)affinity (namespaces and label selector)?"""
    namespaces = _term_namespaces(term, owner, snapshot)
    if namespaces is not None and (_meta(other).get("namespace") or "default") not in namespaces:
        return False
    return sel.LabelSelector.from_object(term.get("labelSelector")).matches(_meta(other).get("labels"))


def _required_terms(pod: Obj, kind: str) -> list[Obj]:
    return (((_spec(pod).get("affinity") or {}).get(kind) or {})
            .get("requiredDuringSchedulingIgnoredDuringExecution") or [])


_ANTI_NODES = "nodes with pods with required anti-affinity"


def _anti_nodes(snapshot: Snapshot) -> frozenset[int]:
    return frozenset(i for i, info in enumerate(snapshot.nodes) if info.pods_with_required_anti)


def _anti_nodes_delta(before: frozenset[int], i: int, old: NodeInfo, new: NodeInfo) -> frozenset[int]:
    return before | {i} if new.pods_with_required_anti else before - {i}


class InterPodAffinity(Filter):
    """Required pod affinity and anti-affinity, and existing pods' anti-affinity against this pod.

    `prepare` maps each term to the topology values (key, value) that hold a matching pod.
    """

    name = "InterPodAffinity"
    scope = "cluster"

    def prepare(self, pod, snapshot):
        affinity, anti = _required_terms(pod, "podAffinity"), _required_terms(pod, "podAntiAffinity")
        affinity_domains: list[set[str]] = [set() for _ in affinity]
        anti_domains: list[set[str]] = [set() for _ in anti]
        existing_anti: set[tuple[str, str]] = set()
        any_affinity_match = False
        nodes: Sequence[NodeInfo] = snapshot.nodes
        if not (affinity or anti):
            nodes = [nodes[i] for i in sorted(snapshot.derived(_ANTI_NODES, _anti_nodes, _anti_nodes_delta))]
        for info in nodes:
            labels = info.labels
            # Without terms of its own, only pods with anti-affinity can matter (kube's
            # HavePodsWithRequiredAntiAffinityList): most nodes have none, so skip their pods.
            for other in (info.pods if affinity or anti else info.pods_with_required_anti):
                for i, term in enumerate(affinity):
                    if term_matches_pod(term, pod, other, snapshot):
                        any_affinity_match = True
                        if term.get("topologyKey") in labels:
                            affinity_domains[i].add(labels[term["topologyKey"]])
                for i, term in enumerate(anti):
                    if term.get("topologyKey") in labels and term_matches_pod(term, pod, other, snapshot):
                        anti_domains[i].add(labels[term["topologyKey"]])
                for term in _required_terms(other, "podAntiAffinity"):
                    key = term.get("topologyKey")
                    if key in labels and term_matches_pod(term, other, pod, snapshot):
                        existing_anti.add((key, labels[key]))
        # The first pod of a group that selects itself may go anywhere its terms' keys exist.
        self_match = bool(affinity) and not any_affinity_match and all(
            term_matches_pod(t, pod, pod, snapshot) for t in affinity)
        return affinity, affinity_domains, anti, anti_domains, existing_anti, self_match

    def domain(self, state):
        affinity, _, anti, _, existing_anti, _ = state
        return (tuple(t.get("topologyKey") for t in affinity) + tuple(t.get("topologyKey") for t in anti)
                + tuple(sorted({key for key, _ in existing_anti})))

    def check(self, pod, node, snapshot, state):
        affinity, affinity_domains, anti, anti_domains, existing_anti, self_match = state
        if not (affinity or anti or existing_anti):
            return None   # no terms of its own, and no pod around with anti-affinity
        labels = node.labels
        for term, domains in zip(affinity, affinity_domains):
            key = term.get("topologyKey")
            if key not in labels or not (self_match or labels[key] in domains):
                return REASON_POD_AFFINITY
        for term, domains in zip(anti, anti_domains):
            key = term.get("topologyKey")
            if key in labels and labels[key] in domains:
                return REASON_POD_ANTI_AFFINITY
        if any(labels.get(key) == value for key, value in existing_anti):
            return REASON_EXISTING_ANTI_AFFINITY
        return None


# --- topology spread -----------------------------------------------------------------------------

def hard_spread_constraints(pod: Obj) -> list[Obj]:
    return [c for c in _spec(pod).get("topologySpreadConstraints") or []
            if (c.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule"]


class PodTopologySpread(Filter):
    """whenUnsatisfiable: DoNotSchedule constraints: placing here must keep skew ≤ maxSkew.

    Domains are counted over nodes that pass the pod's node affinity/selector and
    carry every constraint's topology key (nodeAffinityPolicy: Honor, the default).
    """

    name = "PodTopologySpread"
    scope = "cluster"

    def prepare(self, pod, snapshot):
        constraints = hard_spread_constraints(pod)
        if not constraints:
            return ()
        keys = [c.get("topologyKey") for c in constraints]
        namespace = _meta(pod).get("namespace") or "default"
        selectors = [sel.LabelSelector.from_object(c.get("labelSelector")) for c in constraints]
        memo_keys = [(namespace, repr(c.get("labelSelector"))) for c in constraints]
        spec = _spec(pod)
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution")
        selects_nodes = bool(spec.get("nodeSelector")) or bool(required)

        def count(info: NodeInfo, sign: int, into: list[dict[str, int]]) -> None:
            """Add (or take away) one node's matching pods to the counts of its domains."""
            labels = info.labels
            if not all(k in labels for k in keys) or (selects_nodes and not node_affinity_matches(pod, info)):
                return
            # A NodeInfo never changes (a change makes a new one): its matching counts are memoized on it.
            memo = info.__dict__.setdefault("_spread_counts", {})
            for i, (key, selector) in enumerate(zip(keys, selectors)):
                domain = labels[key]
                n = memo.get(memo_keys[i])
                if n is None:
                    n = memo[memo_keys[i]] = sum(
                        1 for p in info.pods if (_meta(p).get("namespace") or "default") == namespace
                        and not _meta(p).get("deletionTimestamp") and selector.matches(_meta(p).get("labels")))
                into[i][domain] = into[i].get(domain, 0) + sign * n

        def full(snap: Snapshot) -> list[dict[str, int]]:
            out: list[dict[str, int]] = [{} for _ in constraints]
            for info in snap.nodes:
                count(info, 1, out)
            return out

        def delta(before: list[dict[str, int]], _: int, old: NodeInfo, new: NodeInfo) -> list[dict[str, int]]:
            out = [dict(c) for c in before]   # the same node (its labels too): the same domains
            count(old, -1, out)
            count(new, 1, out)
            return out

        # Per snapshot, and from the previous snapshot by the one node that changed (a placement).
        memo_key = ("PodTopologySpread", namespace, tuple(keys), tuple(memo_keys),
                    repr((spec.get("nodeSelector"), required)) if selects_nodes else None)
        counts = snapshot.derived(memo_key, full, delta)
        prepared = []
        for c, key, selector, domain_counts in zip(constraints, keys, selectors, counts):
            minimum = min(domain_counts.values()) if domain_counts else 0
            if len(domain_counts) < int(c.get("minDomains") or 1):
                minimum = 0
            self_match = 1 if selector.matches(_meta(pod).get("labels")) else 0
            prepared.append((key, int(c.get("maxSkew") or 1), domain_counts, minimum, self_match))
        return tuple(prepared)

    def domain(self, state):
        return tuple(key for key, *_ in state)

    def check(self, pod, node, snapshot, state):
        labels = node.labels
        for key, max_skew, domain_counts, minimum, self_match in state:
            if key not in labels:
                return REASON_SPREAD_MISSING_LABEL
            if domain_counts.get(labels[key], 0) + self_match - minimum > max_skew:
                return REASON_SPREAD
        return None


# --- volumes (volumes.py sorts a pod's claims) ----------------------------------------------------
#
# All three read only the node and the pod's claims; what they read of the claims (their volumes,
# classes and the nodes already using them) is part of a pod's equivalence class, so their verdicts
# are cached per node generation like the other per-node filters.

class VolumeRestrictions(Filter):
    """ReadWriteOncePod: a claim with that access mode already used by a pod rejects every node."""

    name = "VolumeRestrictions"
    claims_only = True

    def prepare(self, pod, snapshot):
        users = snapshot.claim_users
        return any(c.rwop and users.get(c.key) for c in vol.resolve(pod, snapshot.volumes) if c.kind != "rejected")

    def check(self, pod, node, snapshot, state):
        if state is None:
            state = self.prepare(pod, snapshot)
        return REASON_RWOP_CONFLICT if state else None


def _pv_matches(pv: Obj, node: NodeInfo) -> bool:
    terms = vol.pv_node_terms(pv)
    return not terms or any(node_selector_term_matches(t, node) for t in terms)


class VolumeBinding(Filter):
    """Claims that must be bound first reject the pod outright (PreFilter); a bound claim's volume node
    affinity, and where a WaitForFirstConsumer claim could be bound or provisioned, restrict the nodes."""

    name = "VolumeBinding"
    prefilter = True
    claims_only = True

    def prepare(self, pod, snapshot):
        claims = vol.resolve(pod, snapshot.volumes)
        for c in claims:
            if c.kind == "rejected":
                return Rejected(c.reason)
        users = snapshot.claim_users
        return [(c, users.get(c.key, frozenset())) for c in claims]

    def check(self, pod, node, snapshot, state):
        if state is None:
            state = self.prepare(pod, snapshot)
        if isinstance(state, Rejected):
            return state.reason
        missing = bound_ok = unbound_ok = True
        for c, users in state:
            if c.kind == "bound":
                if c.pv is None:
                    missing = False
                elif not _pv_matches(c.pv, node):
                    bound_ok = False
            elif c.selected is not None:
                unbound_ok &= c.selected == node.name and (
                    vol.can_provision(c.storage_class, node.labels) or any(_pv_matches(pv, node) for pv in c.candidates))
            elif users:
                unbound_ok &= node.name in users   # a pod of ours already took it there: provisioned there
            else:
                unbound_ok &= any(_pv_matches(pv, node) for pv in c.candidates) or \
                    vol.can_provision(c.storage_class, node.labels)
        reasons = []
        if not missing:
            reasons.append(REASON_PV_NOT_EXIST)
        if not bound_ok:
            reasons.append(REASON_VOLUME_NODE_CONFLICT)
        if not unbound_ok:
            reasons.append(REASON_VOLUME_BIND_CONFLICT)
        return tuple(reasons) or None


class VolumeZone(Filter):
    """A bound volume's zone and region labels: a node with topology labels must agree with them."""

    name = "VolumeZone"
    claims_only = True

    def prepare(self, pod, snapshot):
        out = []
        for c in vol.resolve(pod, snapshot.volumes):
            if c.kind == "bound" and c.pv is not None:
                out.extend(vol.pv_zones(c.pv))
        return out

    def check(self, pod, node, snapshot, state):
        zones = state if state is not None else self.prepare(pod, snapshot)
        if not zones:
            return None
        labels = node.labels
        if not any(k in labels for k in vol.TOPOLOGY_LABELS):
            return None   # a node without topology labels takes any volume (kube's VolumeZone)
        for key, values in zones:
            value = labels.get(key)
            if value is None:
                value = labels.get(vol.GA_LABEL.get(key, key))
            if value is None or value not in values:
                return REASON_VOLUME_ZONE
        return None


# kube-scheduler's default filter order; the pipeline stops at a node's first failure.
DEFAULT_FILTERS: tuple[Filter, ...] = (
    NodeUnschedulable(), NodeName(), TaintToleration(), NodeAffinity(), NodePorts(), NodeResourcesFit(),
    VolumeRestrictions(), VolumeBinding(), VolumeZone(), PodTopologySpread(), InterPodAffinity(),
)

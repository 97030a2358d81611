"""Volumes as the scheduler reads them: a pod's PersistentVolumeClaims, their volumes and their classes.

Fed by the NodeCache, which keeps the claims, PersistentVolumes and
StorageClasses its informers deliver as one `Volumes` value in the Snapshot;
consumed by the volume filters in filters.py (VolumeRestrictions,
VolumeBinding, VolumeZone — Kubernetes' plugins of those names, in their
basics) and by pipeline.equivalence_class, which keys a pod with claims by
`view`: everything those filters read about its claims, so that a class's
cached per-node verdicts change when a claim, its volume or its class does.

`resolve` sorts each claim of a pod into one of:

- rejected outright (kube's PreFilter): the claim is missing, being deleted,
  of a StorageClass that does not exist, or unbound with Immediate binding
  (`pod has unbound immediate PersistentVolumeClaims`, until the binder binds it);
- bound: fully bound (spec.volumeName and the bind-completed annotation) — the
  volume's node affinity and zone labels then restrict the nodes;
- waiting for its first consumer (WaitForFirstConsumer, unbound): feasible on a
  node named by the claim's volume.kubernetes.io/selected-node annotation if it
  has one, else on the node of a pod already using the claim (bound or assumed
  by this scheduler), else where an Available volume fitting the claim could
  be bound, or where the class's provisioner may provision (allowedTopologies).

Pods without claims never reach any of this: the filters apply only to pods
with claims (`has_claims`), and their class key stays what it was.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

from eventplane.objects import quantity
from eventplane.objects.selectors import LabelSelector

Obj = Mapping[str, Any]

SELECTED_NODE = "volume.kubernetes.io/selected-node"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
READ_WRITE_ONCE_POD = "ReadWriteOncePod"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
# VolumeZone's labels (GA and beta): a volume with one of them may be used only where the node agrees.
TOPOLOGY_LABELS = ("topology.kubernetes.io/zone", "topology.kubernetes.io/region",
                   "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region")
GA_LABEL = {"failure-domain.beta.kubernetes.io/zone": "topology.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region": "topology.kubernetes.io/region"}

# Kubernetes' texts.
REASON_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"


def claim_not_found(name: str) -> str:
    return f'persistentvolumeclaim "{name}" not found'


def claim_deleting(name: str) -> str:
    return f'persistentvolumeclaim "{name}" is being deleted'


def ephemeral_not_created(name: str) -> str:
    return f'waiting for ephemeral volume controller to create the persistentvolumeclaim "{name}"'


def class_not_found(name: str) -> str:
    return f'storageclass.storage.k8s.io "{name}" not found'


@dataclass(frozen=True)
class Volumes:
    """The claims ("namespace/name"), PersistentVolumes and StorageClasses (by name) the scheduler knows."""

    claims: Mapping[str, Obj] = field(default_factory=dict)
    pvs: Mapping[str, Obj] = field(default_factory=dict)
    classes: Mapping[str, Obj] = field(default_factory=dict)
    # resolve's answers for this state, by (namespace, claim names, ephemeral names): the class key and
    # the three filters ask the same question of one decision.
    memo: dict[tuple, list[Claim]] = field(default_factory=dict, compare=False, repr=False)


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def claim_names(pod: Obj) -> tuple[str, ...]:
    """The names of the claims a pod's volumes use: persistentVolumeClaim, and generic ephemeral
    volumes (whose claim is named <pod>-<volume>)."""
    volumes = (pod.get("spec") or {}).get("volumes")
    if not volumes:
        return ()
    out = []
    for v in volumes:
        pvc = v.get("persistentVolumeClaim")
        if pvc is not None:
            out.append(pvc.get("claimName") or "")
        elif v.get("ephemeral") is not None:
            out.append(f"{_meta(pod).get('name') or ''}-{v.get('name') or ''}")
    return tuple(out)


def has_claims(pod: Obj) -> bool:
    volumes = (pod.get("spec") or {}).get("volumes")
    return bool(volumes) and any("persistentVolumeClaim" in v or v.get("ephemeral") is not None for v in volumes)


def _ephemeral(pod: Obj) -> set[str]:
    name = _meta(pod).get("name") or ""
    return {f"{name}-{v.get('name') or ''}" for v in (pod.get("spec") or {}).get("volumes") or []
            if v.get("ephemeral") is not None}


class Claim(NamedTuple):
    """One claim of a pod, sorted for the filters."""

    key: str                       # namespace/name
    kind: str                      # rejected | bound | wait
    reason: str = ""               # for rejected: the message
    pv: Obj | None = None          # for bound: its volume (None: the volume does not exist)
    storage_class: Obj | None = None   # for wait
    candidates: tuple[Obj, ...] = ()   # for wait: Available volumes that fit the claim
    selected: str | None = None    # for wait: the selected-node annotation
    rwop: bool = False             # ReadWriteOncePod


def _size(text: Any) -> Fraction:
    try:
        return quantity.value_of(str(text)) if text is not None else Fraction(0)
    except (ValueError, ZeroDivisionError):
        return Fraction(0)


def fully_bound(claim: Obj) -> bool:
    """kube's isPVCFullyBound: a volume name and the binder's bind-completed annotation."""
    return bool((claim.get("spec") or {}).get("volumeName")) and \
        BIND_COMPLETED in (_meta(claim).get("annotations") or {})


def volume_fits(pv: Obj, claim: Obj) -> bool:
    """Could the binder bind this volume to this claim (the node aside)? As pvbinder.fits."""
    ps, cs, cm = pv.get("spec") or {}, claim.get("spec") or {}, _meta(claim)
    if _meta(pv).get("deletionTimestamp") or (pv.get("status") or {}).get("phase") in ("Released", "Failed"):
        return False
    ref = ps.get("claimRef")
    if ref and not (ref.get("name") == cm.get("name") and ref.get("namespace") == cm.get("namespace")
                    and (not ref.get("uid") or ref.get("uid") == cm.get("uid"))):
        return False
    if (ps.get("storageClassName") or "") != (cs.get("storageClassName") or ""):
        return False
    if (ps.get("volumeMode") or "Filesystem") != (cs.get("volumeMode") or "Filesystem"):
        return False
    if not set(cs.get("accessModes") or []) <= set(ps.get("accessModes") or []):
        return False
    want = ((cs.get("resources") or {}).get("requests") or {}).get("storage")
    if _size((ps.get("capacity") or {}).get("storage")) < _size(want):
        return False
    return not cs.get("selector") or LabelSelector.from_object(cs["selector"]).matches(_meta(pv).get("labels"))


def resolve(pod: Obj, volumes: Volumes) -> list[Claim]:
    """Each claim of the pod, sorted into rejected, bound or wait (see the module docstring)."""
    ns = _meta(pod).get("namespace") or "default"
    ephemeral = _ephemeral(pod)
    names = claim_names(pod)
    key = (ns, names, frozenset(ephemeral))
    found = volumes.memo.get(key)
    if found is None:
        if len(volumes.memo) > 4096:
            volumes.memo.clear()
        found = volumes.memo[key] = _resolve(ns, names, ephemeral, volumes)
    return found


def _resolve(ns: str, names: tuple[str, ...], ephemeral: set[str], volumes: Volumes) -> list[Claim]:
    out = []
    for name in names:
        key = f"{ns}/{name}"
        claim = volumes.claims.get(key)
        if claim is None:
            reason = ephemeral_not_created(name) if name in ephemeral else claim_not_found(name)
            out.append(Claim(key, "rejected", reason))
            continue
        if _meta(claim).get("deletionTimestamp"):
            out.append(Claim(key, "rejected", claim_deleting(name)))
            continue
        spec = claim.get("spec") or {}
        rwop = READ_WRITE_ONCE_POD in (spec.get("accessModes") or ())
        if fully_bound(claim):
            out.append(Claim(key, "bound", pv=volumes.pvs.get(spec["volumeName"]), rwop=rwop))
            continue
        class_name = spec.get("storageClassName") or ""
        storage_class = volumes.classes.get(class_name) if class_name else None
        if class_name and storage_class is None:
            out.append(Claim(key, "rejected", class_not_found(class_name)))
            continue
        if storage_class is None or storage_class.get("volumeBindingMode") != WAIT_FOR_FIRST_CONSUMER:
            out.append(Claim(key, "rejected", REASON_UNBOUND_IMMEDIATE))
            continue
        if spec.get("volumeName"):   # pre-bound by the user: only that volume
            pv = volumes.pvs.get(spec["volumeName"])
            candidates = (pv,) if pv is not None and volume_fits(pv, claim) else ()
        else:
            candidates = tuple(sorted((pv for pv in volumes.pvs.values() if volume_fits(pv, claim)),
                                      key=lambda pv: _meta(pv).get("name") or ""))
        selected = (_meta(claim).get("annotations") or {}).get(SELECTED_NODE) or None
        out.append(Claim(key, "wait", storage_class=storage_class, candidates=candidates, selected=selected,
                         rwop=rwop))
    return out


def pv_node_terms(pv: Obj) -> list[Obj]:
    return ((((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
            .get("nodeSelectorTerms") or [])


def pv_zones(pv: Obj) -> list[tuple[str, frozenset[str]]]:
    """The volume's topology labels as (key, allowed values); a value may list several, joined by "__"."""
    labels = _meta(pv).get("labels") or {}
    return [(k, frozenset(labels[k].split("__"))) for k in TOPOLOGY_LABELS if labels.get(k)]


def topology_allows(terms: list[Obj] | None, labels: Mapping[str, str]) -> bool:
    """v1helper.MatchTopologySelectorTerms over a class's allowedTopologies: terms ORed, expressions ANDed;
    no terms allow every node."""
    if not terms:
        return True
    for term in terms:
        expressions = term.get("matchLabelExpressions") or []
        if all(labels.get(e.get("key") or "") in (e.get("values") or ()) for e in expressions):
            return True
    return False


def can_provision(storage_class: Obj | None, labels: Mapping[str, str]) -> bool:
    if storage_class is None:
        return False
    provisioner = storage_class.get("provisioner") or ""
    if not provisioner or provisioner == NO_PROVISIONER:
        return False
    return topology_allows(storage_class.get("allowedTopologies"), labels)


def view(pod: Obj, volumes: Volumes, users: Mapping[str, frozenset[str]]) -> list[Any]:
    """What the volume filters read about this pod's claims, as JSON-able data (for the class key).
    `users`: claim key → nodes with a pod using it."""
    out: list[Any] = []
    for c in resolve(pod, volumes):
        used = sorted(users.get(c.key, ()))
        if c.kind == "rejected":
            out.append(["rejected", c.key, c.reason])
        elif c.kind == "bound":
            out.append(["bound", c.key, None if c.pv is None else pv_node_terms(c.pv),
                        None if c.pv is None else [[k, sorted(v)] for k, v in pv_zones(c.pv)],
                        c.rwop and used])
        else:
            sc = c.storage_class or {}
            out.append(["wait", c.key, c.selected, used, sc.get("provisioner"), sc.get("allowedTopologies"),
                        [pv_node_terms(pv) for pv in c.candidates], c.rwop])
    return out


def view_key(pod: Obj, volumes: Volumes, users: Mapping[str, frozenset[str]]) -> str:
    return json.dumps(view(pod, volumes, users), sort_keys=True, separators=(",", ":"))

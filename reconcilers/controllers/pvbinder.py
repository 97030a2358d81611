"""The PersistentVolume binder, and a dynamic provisioner for `local-path` StorageClasses.

Fed by the persistentvolumeclaims, persistentvolumes, storageclasses, pods and
nodes informers. Two loops share one process: claims (`decide_claim`) and
volumes (`decide_volume`); each decision is a pure function returning the
ordered writes to make (`Write`), which the thin loop applies with the
causation of the event that woke it.

As Kubernetes' PV controller (pkg/controller/volume/persistentvolume):

- A claim binds to the smallest Available volume that fits: storageClassName,
  accessModes (a superset), volumeMode, capacity ≥ the request, the claim's
  selector, and — for WaitForFirstConsumer classes — node affinity matching the
  claim's volume.kubernetes.io/selected-node. A volume pre-bound to the claim
  (claimRef) wins. Binding writes, in Kubernetes' order: the volume's claimRef
  (annotated pv.kubernetes.io/bound-by-controller), the volume's phase Bound,
  the claim's volumeName (annotated pv.kubernetes.io/bind-completed and
  bound-by-controller), the claim's phase Bound with capacity and accessModes.
- A claim with no storageClassName gets the default class (retroactive default
  StorageClass assignment, Kubernetes 1.28).
- Volumes without a claimRef are Available; a volume whose claim is gone is
  Released, and then deleted when its reclaimPolicy is Delete and this
  provisioner made it (Retain keeps it Released). A claim whose volume is gone
  is Lost.
- Provisioning: a claim of a class whose provisioner is PROVISIONER
  (eventplane.io/local-path), with no volume to bind, gets a new volume
  `pvc-<claim uid>` with hostPath DATA_DIR/volumes/<pv name> (type
  DirectoryOrCreate: the node agent creates the directory; this controller
  never touches a host). With volumeBindingMode WaitForFirstConsumer it waits
  for the selected node (the scheduler's annotation, or the node of a pod that
  uses the claim, which it then records in the annotation) and pins the volume
  there with a required node affinity on kubernetes.io/hostname; Immediate
  classes are provisioned at once, unpinned. Claims of other provisioners are
  annotated volume.kubernetes.io/storage-provisioner and left to them.

`ctx.options["data_dir"]` sets DATA_DIR (default: the resolved eventplane data directory).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from eventplane.objects import errors, quantity
from eventplane.objects.selectors import LabelSelector
from reconcilers.runner import Request
from reconcilers.scheduler.filters import node_selector_term_matches
from reconcilers.scheduler.resources import NodeInfo

from . import _workload as w
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.pvbinder")

Obj = dict[str, Any]

PROVISIONER = "eventplane.io/local-path"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
HOSTNAME = "kubernetes.io/hostname"
CLAIM_INDEX = "pvbinder:claims"   # pods by the "namespace/claim" keys of the claims they use


@dataclass(frozen=True)
class Write:
    verb: str            # create | update | delete
    obj: Obj
    subresource: str = ""


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    note: str = ""       # why nothing happened (for logs and tests)


# --- matching -------------------------------------------------------------------------------------

def _size(text: Any) -> Fraction:
    try:
        return quantity.value_of(str(text)) if text is not None else Fraction(0)
    except (ValueError, ZeroDivisionError):
        return Fraction(0)


def requested(claim: Obj) -> Fraction:
    return _size((((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage"))


def capacity(pv: Obj) -> Fraction:
    return _size(((pv.get("spec") or {}).get("capacity") or {}).get("storage"))


def class_of(obj: Obj) -> str:
    return (obj.get("spec") or {}).get("storageClassName") or ""


def default_class(classes: list[Obj]) -> Obj | None:
    marked = [c for c in classes if (w.meta(c).get("annotations") or {}).get(DEFAULT_CLASS) == "true"]
    return max(marked, key=lambda c: w.meta(c).get("creationTimestamp") or "") if marked else None


def volume_node_matches(pv: Obj, node: Obj | None) -> bool:
    required = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    if node is None:
        return False
    info = NodeInfo(node=node)
    return any(node_selector_term_matches(t, info) for t in terms)


def prebound_to(pv: Obj, claim: Obj) -> bool:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    cm = w.meta(claim)
    return (ref.get("name") == cm.get("name") and ref.get("namespace") == cm.get("namespace")
            and (not ref.get("uid") or ref.get("uid") == cm.get("uid")))


def fits(pv: Obj, claim: Obj, *, node: Obj | None, wait_for_consumer: bool) -> bool:
    ps, cs = pv.get("spec") or {}, claim.get("spec") or {}
    if w.deleting(pv) or (ps.get("claimRef") and not prebound_to(pv, claim)):
        return False
    if (pv.get("status") or {}).get("phase") in ("Released", "Failed"):
        return False
    if class_of(pv) != class_of(claim):
        return False
    if (ps.get("volumeMode") or "Filesystem") != (cs.get("volumeMode") or "Filesystem"):
        return False
    if not set(cs.get("accessModes") or []) <= set(ps.get("accessModes") or []):
        return False
    if capacity(pv) < requested(claim):
        return False
    if cs.get("selector") and not LabelSelector.from_object(cs["selector"]).matches(w.meta(pv).get("labels") or {}):
        return False
    if wait_for_consumer and not volume_node_matches(pv, node):
        return False
    return True


def best_volume(claim: Obj, volumes: list[Obj], *, node: Obj | None, wait_for_consumer: bool) -> Obj | None:
    """findBestMatchForClaim: a volume pre-bound to the claim, else the smallest that fits."""
    candidates = [pv for pv in volumes if fits(pv, claim, node=node, wait_for_consumer=wait_for_consumer)]
    pre = [pv for pv in candidates if (pv.get("spec") or {}).get("claimRef")]
    if pre:
        return pre[0]
    return min(candidates, key=lambda pv: (capacity(pv), w.meta(pv).get("name") or ""), default=None)


# --- claims ---------------------------------------------------------------------------------------

def _claim_ref(claim: Obj) -> Obj:
    cm = w.meta(claim)
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": cm.get("namespace"),
            "name": cm.get("name"), "uid": cm.get("uid"), "resourceVersion": cm.get("resourceVersion")}


def _annotate(obj: Obj, **values: str) -> Obj:
    m = dict(w.meta(obj))
    m["annotations"] = {**(m.get("annotations") or {}), **values}
    return {**obj, "metadata": m}


def bind_writes(claim: Obj, pv: Obj) -> list[Write]:
    out: list[Write] = []
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if ref.get("uid") != w.meta(claim).get("uid"):
        new_pv = {**pv, "spec": {**(pv.get("spec") or {}), "claimRef": _claim_ref(claim)}}
        new_pv = _annotate(new_pv, **{BOUND_BY_CONTROLLER: "yes"})
        out.append(Write("update", new_pv))
    else:
        new_pv = pv
    if (pv.get("status") or {}).get("phase") != "Bound":
        out.append(Write("update", {**new_pv, "status": {**(pv.get("status") or {}), "phase": "Bound"}}, "status"))
    cs = claim.get("spec") or {}
    ann = w.meta(claim).get("annotations") or {}
    new_claim = claim
    if cs.get("volumeName") != w.meta(pv)["name"] or ann.get(BIND_COMPLETED) != "yes":
        extra = {BIND_COMPLETED: "yes"}
        if cs.get("volumeName") != w.meta(pv)["name"]:
            extra[BOUND_BY_CONTROLLER] = "yes"
        new_claim = _annotate({**claim, "spec": {**cs, "volumeName": w.meta(pv)["name"]}}, **extra)
        out.append(Write("update", new_claim))
    ps = pv.get("spec") or {}
    status = {**(claim.get("status") or {}), "phase": "Bound", "accessModes": ps.get("accessModes") or [],
              "capacity": dict(ps.get("capacity") or {})}
    if claim.get("status") != status:
        out.append(Write("update", {**new_claim, "status": status}, "status"))
    return out


def provisioned_volume(claim: Obj, storage_class: Obj, *, node: str | None, data_dir: str) -> Obj:
    cm, cs = w.meta(claim), claim.get("spec") or {}
    name = f"pvc-{cm.get('uid')}"
    spec: Obj = {"capacity": {"storage": ((cs.get("resources") or {}).get("requests") or {}).get("storage", "0")},
                 "accessModes": list(cs.get("accessModes") or ["ReadWriteOnce"]),
                 "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
                 "storageClassName": w.meta(storage_class)["name"],
                 "volumeMode": cs.get("volumeMode") or "Filesystem",
                 "hostPath": {"path": os.path.join(data_dir, "volumes", name), "type": "DirectoryOrCreate"},
                 "claimRef": _claim_ref(claim)}
    if storage_class.get("mountOptions"):
        spec["mountOptions"] = list(storage_class["mountOptions"])
    if node:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME, "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}}, "spec": spec}


def decide_claim(claim: Obj, volumes: list[Obj], classes: list[Obj], *, nodes: dict[str, Obj],
                 consumer_node: str | None = None, data_dir: str = "/var/lib/eventplane") -> Plan:
    plan = Plan()
    if w.deleting(claim):
        return plan
    cs = claim.get("spec") or {}
    by_name = {w.meta(v)["name"]: v for v in volumes}

    if cs.get("volumeName"):                                   # bound, or pre-bound by the user
        pv = by_name.get(cs["volumeName"])
        if pv is None:
            if (claim.get("status") or {}).get("phase") == "Bound":
                plan.writes.append(Write("update", {**claim, "status": {**(claim.get("status") or {}),
                                                                        "phase": "Lost"}}, "status"))
            else:
                plan.note = f"waiting for volume {cs['volumeName']}"
            return plan
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref and not prebound_to(pv, claim):
            plan.note = f"volume {cs['volumeName']} is bound to another claim"
            return plan
        plan.writes = bind_writes(claim, pv)
        return plan

    if cs.get("storageClassName") is None:                     # retroactive default StorageClass
        default = default_class(classes)
        if default is not None:
            plan.writes.append(Write("update", {**claim, "spec": {**cs, "storageClassName": w.meta(default)["name"]}}))
            return plan
    storage_class = next((c for c in classes if w.meta(c)["name"] == class_of(claim)), None)
    wait = storage_class is not None and storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"
    selected = (w.meta(claim).get("annotations") or {}).get(SELECTED_NODE) or None
    if wait and selected is None and consumer_node:
        plan.writes.append(Write("update", _annotate(claim, **{SELECTED_NODE: consumer_node})))
        return plan
    if wait and selected is None:
        plan.note = "waiting for first consumer to be created before binding"
        return plan

    pv = best_volume(claim, volumes, node=nodes.get(selected or ""), wait_for_consumer=wait)
    if pv is not None:
        plan.writes = bind_writes(claim, pv)
        return plan
    if storage_class is None or cs.get("selector"):
        plan.note = "no persistent volumes available for this claim and no storage class is set"
        _pending(claim, plan)
        return plan
    provisioner = storage_class.get("provisioner") or ""
    ann = w.meta(claim).get("annotations") or {}
    if ann.get(STORAGE_PROVISIONER) != provisioner:
        plan.writes.append(Write("update", _annotate(claim, **{STORAGE_PROVISIONER: provisioner,
                                                               BETA_STORAGE_PROVISIONER: provisioner})))
        return plan
    if provisioner != PROVISIONER:
        plan.note = f"waiting for a volume to be created by the external provisioner {provisioner!r}"
        _pending(claim, plan)
        return plan
    name = f"pvc-{w.meta(claim).get('uid')}"
    if name in by_name:
        plan.note = f"volume {name} is provisioned; binding when it is seen"
        return plan
    plan.writes.append(Write("create", provisioned_volume(claim, storage_class, node=selected if wait else None,
                                                          data_dir=data_dir)))
    _pending(claim, plan)
    return plan


def _pending(claim: Obj, plan: Plan) -> None:
    if (claim.get("status") or {}).get("phase") != "Pending":
        plan.writes.append(Write("update", {**claim, "status": {**(claim.get("status") or {}), "phase": "Pending"}},
                                 "status"))


# --- volumes --------------------------------------------------------------------------------------

def decide_volume(pv: Obj, claims: dict[str, Obj]) -> Plan:
    """syncVolume: the phase a volume is in given its claimRef, and the reclaim of a released one."""
    plan = Plan()
    if w.deleting(pv):
        return plan
    ps = pv.get("spec") or {}
    phase = (pv.get("status") or {}).get("phase")
    ref = ps.get("claimRef")

    def set_phase(p: str) -> None:
        if phase != p:
            plan.writes.append(Write("update", {**pv, "status": {**(pv.get("status") or {}), "phase": p}}, "status"))

    if not ref:
        set_phase("Available")
        return plan
    claim = claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
    if claim is not None and ref.get("uid") and w.meta(claim).get("uid") != ref.get("uid"):
        claim = None                                    # a new claim of the same name is not ours
    if claim is None:
        if not ref.get("uid"):
            set_phase("Available")                      # pre-bound by a user to a claim yet to come
            return plan
        if phase == "Bound" or phase == "Released" or (w.meta(pv).get("annotations") or {}).get(PROVISIONED_BY):
            policy = ps.get("persistentVolumeReclaimPolicy") or "Retain"
            if policy == "Delete" and (w.meta(pv).get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER:
                plan.writes.append(Write("delete", pv))
            else:
                set_phase("Released")
        return plan
    if (claim.get("spec") or {}).get("volumeName") == w.meta(pv)["name"]:
        set_phase("Bound")
    elif phase not in ("Bound", "Pending", None):
        pass                                            # the claim side binds next
    elif phase in (None, "Pending"):
        set_phase("Available")
    return plan


# --- the loops ------------------------------------------------------------------------------------

class PersistentVolumeBinder:
    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.claims = ctx.informers.informer("persistentvolumeclaims")
        self.volumes = ctx.informers.informer("persistentvolumes")
        self.classes = ctx.informers.informer("storageclasses")
        self.pods = ctx.informers.informer("pods")
        self.nodes = ctx.informers.informer("nodes")
        data_dir = ctx.options.get("data_dir")
        if not data_dir:
            from eventplane.config import resolve_data_dir
            data_dir = resolve_data_dir()
        self.data_dir = str(data_dir)
        self.barrier = w.ReadBarrier()
        self.events = w.EventRecorder(ctx.client, component="persistentvolume-controller", instance=ctx.identity,
                                      enabled=bool(ctx.options.get("events", True)))
        others = [self.volumes, self.classes, self.pods, self.nodes]
        self.claim_loop = w.WorkloadController("persistentvolume-binder", self.claims, self.reconcile_claim,
                                               secondary=others)
        self.volume_loop = w.WorkloadController("persistentvolume-binder:volumes", self.volumes,
                                                self.reconcile_volume, secondary=[self.claims])
        self.pods.add_indexer(CLAIM_INDEX, _claims_of_pod)
        # A volume's change wakes the claim it names; a claim's change wakes its volume; a class or a
        # consumer pod being scheduled wakes the claims waiting for them.
        self.volumes.add_handler(on_add=self._volume_to_claim, on_update=lambda o, n: self._volume_to_claim(n),
                                 on_delete=self._volume_to_claim)
        self.claims.add_handler(on_add=self._claim_to_volume, on_update=lambda o, n: self._claim_to_volume(n),
                                on_delete=self._claim_to_volume)
        self.pods.add_handler(on_add=self._pod_to_claims, on_update=lambda o, n: self._pod_to_claims(n))
        self.classes.add_handler(on_add=self._all_claims, on_update=lambda o, n: self._all_claims())

    def _volume_to_claim(self, pv: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.claim_loop.queue.add(f"{ref.get('namespace')}/{ref['name']}")
        else:
            self._all_claims()   # a new Available volume may fit a waiting claim

    def _claim_to_volume(self, claim: Obj) -> None:
        name = (claim.get("spec") or {}).get("volumeName")
        for pv in self.volumes.store.list():
            if (name and w.meta(pv)["name"] == name) or prebound_to(pv, claim):
                self.volume_loop.queue.add(w.meta(pv)["name"])

    def _pod_to_claims(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            for claim in _claims_of_pod(pod):
                self.claim_loop.queue.add(claim)

    def _all_claims(self, *_: Any) -> None:
        for key in self.claims.store.keys():
            claim = self.claims.store.get(key)
            if claim is not None and (claim.get("status") or {}).get("phase") != "Bound":
                self.claim_loop.queue.add(key)

    async def _apply(self, key: str, req: Request, plan: Plan) -> None:
        c = self.client
        writes = list(plan.writes)
        while writes:
            write = writes.pop(0)
            volume = write.obj.get("kind") == "PersistentVolume"
            m = w.meta(write.obj)
            try:
                if write.verb == "create":
                    out = await c.create(write.obj, causation=req.causation)
                elif write.verb == "delete":
                    out = await c.delete("persistentvolumes" if volume else "persistentvolumeclaims", m["name"],
                                         namespace=m.get("namespace"), causation=req.causation)
                else:
                    out = await c.update(write.obj, subresource=write.subresource, causation=req.causation)
            except errors.AlreadyExistsError:
                continue
            except errors.NotFoundError:
                return
            self.barrier.wrote(key, self.volumes if volume else self.claims, out)
            if write.verb == "create" and volume:
                claim = self.claims.store.get(req.key)
                if claim is not None:
                    self.events.record(claim, "Normal", "ProvisioningSucceeded",
                                       f"Successfully provisioned volume {m['name']} using {PROVISIONER}",
                                       causation=req.causation)
            # the next write to the same object must carry the version just written
            rv = w.meta(out).get("resourceVersion")
            writes = [Write(x.verb, {**x.obj, "metadata": {**w.meta(x.obj), "resourceVersion": rv}}, x.subresource)
                      if w.meta(x.obj).get("uid") == m.get("uid") and m.get("uid") else x for x in writes]

    async def reconcile_claim(self, req: Request) -> None:
        key = f"claim:{req.key}"
        if not self.barrier.passed(key):
            self.claim_loop.queue.add_after(req.key, 0.05)
            return
        claim = self.claims.store.get(req.key)
        if claim is None:
            return
        consumers = [p for p in self.pods.store.by_index(CLAIM_INDEX, req.key) if (p.get("spec") or {}).get("nodeName")]
        nodes = {w.meta(n)["name"]: n for n in self.nodes.store.list()}
        plan = decide_claim(claim, self.volumes.store.list(), self.classes.store.list(), nodes=nodes,
                            consumer_node=consumers[0]["spec"]["nodeName"] if consumers else None,
                            data_dir=self.data_dir)
        if plan.note:
            log.debug("claim %s: %s", req.key, plan.note)
        await self._apply(key, req, plan)

    async def reconcile_volume(self, req: Request) -> None:
        key = f"volume:{req.key}"
        if not self.barrier.passed(key):
            self.volume_loop.queue.add_after(req.key, 0.05)
            return
        pv = self.volumes.store.get(req.key)
        if pv is None:
            return
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        claims = {}
        if ref.get("name"):
            claim = self.claims.store.get(f"{ref.get('namespace')}/{ref['name']}")
            if claim is not None:
                claims[f"{ref.get('namespace')}/{ref['name']}"] = claim
        await self._apply(key, req, decide_volume(pv, claims))


def _claims_of_pod(pod: Obj) -> list[str]:
    ns = w.meta(pod).get("namespace")
    return [f"{ns}/{v['persistentVolumeClaim']['claimName']}" for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def build(ctx: ControllerContext) -> list:
    binder = PersistentVolumeBinder(ctx)
    return [binder.claim_loop, binder.volume_loop]

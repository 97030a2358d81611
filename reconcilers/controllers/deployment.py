"""The Deployment controller, as Kubernetes' pkg/controller/deployment: ReplicaSets named
`<deployment>-<pod-template-hash>`, RollingUpdate (maxSurge / maxUnavailable) and Recreate,
proportional scaling, revisions and their history, pause and resume, progressDeadlineSeconds,
the Progressing and Available conditions.

Fed by three informers of the shared factory: Deployments, ReplicaSets (an event wakes the
Deployment that controls the set, or for an orphan every Deployment whose selector matches it) and
pods (a deleted pod wakes a Recreate Deployment waiting for its old pods to go).

The decision is one pure function, `plan(deployment, replica_sets, pods_by_rs_uid, now)`, which
follows syncDeployment step by step on a local copy of the state and returns the writes it would
make (`CreateReplicaSet`, `UpdateReplicaSet`, `DeleteReplicaSet`, `UpdateDeploymentStatus`) and
when to look again. The Deployment's own write is one, through the status subresource, as
Kubernetes' controller makes it: its status and the revision annotation together (the status
strategy of Deployments lets annotations change there, and a status write does not bump
metadata.generation — an annotation change through the main resource would, and would cost the
rollout one more sync and status write). `DeploymentController` is the thin loop: it claims
the ReplicaSets (adopt / release by selector), plans, and applies the writes in order, each with
`causation=` the Deployment's position, stopping at the first failure (the next sync re-plans from
what the informers then show). Every ReplicaSet write carries the resourceVersion it was planned on,
so a plan made on a stale cache fails with a conflict instead of acting twice.

Consumed by the ReplicaSet controller (which makes the pods) and by kubectl: `rollout status`
reads the conditions and counts, `rollout history` and `rollout undo` read the sets' revision
annotations and templates.
"""
from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from eventplane.objects import errors
from eventplane.objects.meta import parse_time
from eventplane.objects.selectors import LabelSelector
from reconcilers.informer import BY_NAMESPACE, BY_OWNER, Informer, key_of
from reconcilers.runner import Controller, Request, Requeue

from ._workload import EventRecorder
from .podcontrol import BY_ORPHAN_NAMESPACE, PodControl, claim, controller_ref, controller_ref_of, orphan_namespace
from .registry import ControllerContext

log = logging.getLogger("eventplane.reconcilers.deployment")

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
POD_TEMPLATE_HASH = "pod-template-hash"
MAX_REV_HISTORY_LENGTH = 2000
MAX_INT32 = 2**31 - 1
WORKERS = 5   # ConcurrentDeploymentSyncs
SET_STATUS_DELAY = 0.1   # seconds before a ReplicaSet's status-only change wakes its Deployment

# Condition types and reasons (deploymentutil), with Kubernetes' wording.
PROGRESSING, AVAILABLE, REPLICA_FAILURE = "Progressing", "Available", "ReplicaFailure"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
FAILED_RS_CREATE = "ReplicaSetCreateError"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SKIP_COPY = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO})

__all__ = ["CreateReplicaSet", "DeleteReplicaSet", "DeploymentController", "Plan",
           "UpdateDeploymentStatus", "UpdateReplicaSet", "build", "compute_hash", "max_surge", "max_unavailable",
           "plan", "resolve_fenceposts", "scaled_value"]


# --- small facts ------------------------------------------------------------------------------------

def _meta(obj: Mapping[str, Any]) -> Obj:
    return obj.get("metadata") or {}  # type: ignore[return-value]


def _spec(obj: Mapping[str, Any]) -> Obj:
    return obj.get("spec") or {}  # type: ignore[return-value]


def _status(obj: Mapping[str, Any]) -> Obj:
    return obj.get("status") or {}  # type: ignore[return-value]


def replicas_of(obj: Mapping[str, Any]) -> int:
    r = _spec(obj).get("replicas")
    return 1 if r is None else int(r)


def _ann(obj: Mapping[str, Any]) -> Obj:
    return _meta(obj).get("annotations") or {}


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _created(obj: Mapping[str, Any]) -> tuple[str, str]:
    return (_meta(obj).get("creationTimestamp") or "", _meta(obj).get("name") or "")


def revision(obj: Mapping[str, Any]) -> int:
    """The revision annotation as a number (0 when absent or not a number, as Revision() errs)."""
    try:
        return int(_ann(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: Iterable[Mapping[str, Any]]) -> int:
    return max((revision(rs) for rs in rss), default=0)


# --- intstr and fenceposts --------------------------------------------------------------------------

def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as it is, "N%" of total rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")
    try:
        percent = int(text[:-1])
    except ValueError:
        raise ValueError(f'invalid value "{text}": strconv.Atoi: parsing "{text[:-1]}": invalid syntax') from None
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def is_rolling_update(d: Mapping[str, Any]) -> bool:
    return ((_spec(d).get("strategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(max_surge_: int | str | None, max_unavailable_: int | str | None, desired: int) -> tuple[int, int]:
    """deploymentutil.ResolveFenceposts: surge rounds up, unavailability down; both 0 makes it 1."""
    surge = scaled_value(0 if max_surge_ is None else max_surge_, desired, True)
    unavailable = scaled_value(0 if max_unavailable_ is None else max_unavailable_, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling(d: Mapping[str, Any]) -> Obj:
    return (_spec(d).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Mapping[str, Any]) -> int:
    if not is_rolling_update(d):
        return 0
    r = _rolling(d)
    return resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), replicas_of(d))[0]


def max_unavailable(d: Mapping[str, Any]) -> int:
    if not is_rolling_update(d) or replicas_of(d) == 0:
        return 0
    r = _rolling(d)
    unavailable = resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), replicas_of(d))[1]
    return min(unavailable, replicas_of(d))


# --- the pod-template-hash ----------------------------------------------------------------------------

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: no vowels, no 0/1/3, so a hash never spells a word."""
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in text)


def compute_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """controller.ComputeHash: FNV-32a over the template, then the collision count as 4 little-endian
    bytes when set, printed in decimal and safe-encoded. Kubernetes hashes the Go struct as printed
    by spew; here the template's canonical JSON (sorted keys) is hashed, so names differ from a
    kube-controller-manager's for the same template, while every property of them holds: stable,
    changed by any template change, and by the collision count."""
    h = 0x811C9DC5
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += int(collision_count).to_bytes(4, "little", signed=False)
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(h))


def _without_hash(template: Mapping[str, Any]) -> Obj:
    t = copy.deepcopy(dict(template))
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(POD_TEMPLATE_HASH, None)
        if not labels:
            t["metadata"].pop("labels")
    if "metadata" in t and not t["metadata"]:
        t.pop("metadata")
    return t


def equal_ignore_hash(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """deploymentutil.EqualIgnoreHash: templates equal once the pod-template-hash label is ignored."""
    return _without_hash(a or {}) == _without_hash(b or {})


def find_new_replica_set(d: Mapping[str, Any], rss: Iterable[Obj]) -> Obj | None:
    """The oldest set whose template equals the Deployment's (more than one can match after a
    collision; the oldest wins, as in FindNewReplicaSet)."""
    template = _spec(d).get("template") or {}
    for rs in sorted(rss, key=_created):
        if equal_ignore_hash(_spec(rs).get("template"), template):
            return rs
    return None


# --- conditions -------------------------------------------------------------------------------------

def get_condition(status: Mapping[str, Any], type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    t = _rfc3339(now)
    return {"type": type_, "status": status, "lastUpdateTime": t, "lastTransitionTime": t, "reason": reason,
            "message": message}


def set_condition(status: Obj, condition: Obj) -> None:
    """SetDeploymentCondition: unchanged when status and reason are; keeps lastTransitionTime when
    only the reason changes."""
    current = get_condition(status, condition["type"])
    if current is not None and current.get("status") == condition["status"] and \
            current.get("reason") == condition["reason"]:
        return
    if current is not None and current.get("status") == condition["status"]:
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]] + \
        [condition]


def remove_condition(status: Obj, type_: str) -> None:
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != type_]


def has_progress_deadline(d: Mapping[str, Any]) -> bool:
    p = _spec(d).get("progressDeadlineSeconds")
    return p is not None and int(p) != MAX_INT32


# --- counts -----------------------------------------------------------------------------------------

def _sum_spec(rss: Iterable[Mapping[str, Any] | None]) -> int:
    return sum(replicas_of(rs) for rs in rss if rs is not None)


def _sum_status(rss: Iterable[Mapping[str, Any] | None], f: str) -> int:
    return sum(int(_status(rs).get(f) or 0) for rs in rss if rs is not None)


def _active(rss: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas_of(rs) > 0]


def deployment_complete(d: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    r = replicas_of(d)
    return (int(status.get("updatedReplicas") or 0) == r and int(status.get("replicas") or 0) == r
            and int(status.get("availableReplicas") or 0) == r
            and int(status.get("observedGeneration") or 0) >= int(_meta(d).get("generation") or 0))


def deployment_progressing(d: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    old = _status(d)
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = int(new.get("replicas") or 0) - int(new.get("updatedReplicas") or 0)
    return (int(new.get("updatedReplicas") or 0) > int(old.get("updatedReplicas") or 0) or new_old < old_old
            or int(new.get("readyReplicas") or 0) > int(old.get("readyReplicas") or 0)
            or int(new.get("availableReplicas") or 0) > int(old.get("availableReplicas") or 0))


def deployment_timed_out(d: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    c = get_condition(status, PROGRESSING)
    if c is None or c.get("reason") == NEW_RS_AVAILABLE:
        return False
    if c.get("reason") == TIMED_OUT:
        return True
    since = parse_time(c.get("lastUpdateTime"))
    if since is None:
        return False
    return since + timedelta(seconds=int(_spec(d)["progressDeadlineSeconds"])) < now


def normalized_status(status: Mapping[str, Any] | None) -> Obj:
    """A status as Go serializes it: zero counts and empty lists omitted (they compare equal)."""
    return {k: v for k, v in (status or {}).items() if v not in (0, None, [], {}, "")}


# --- actions ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CreateReplicaSet:
    rs: Obj


@dataclass(frozen=True)
class UpdateReplicaSet:
    rs: Obj            # the whole set, carrying the resourceVersion it was planned on


@dataclass(frozen=True)
class DeleteReplicaSet:
    name: str
    resource_version: str | None


@dataclass(frozen=True)
class UpdateDeploymentStatus:
    """UpdateStatus of the Deployment: its status, and the annotations the controller sets (the
    revision) — Kubernetes' controller writes both through /status."""
    status: Obj
    annotations: dict[str, str] = field(default_factory=dict)


Action = CreateReplicaSet | UpdateReplicaSet | DeleteReplicaSet | UpdateDeploymentStatus


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None   # look again after this many seconds (progress deadline)
    # Where Kubernetes' sync returns an error, planning stops: the writes before it are made, none
    # after it, and the key is retried with backoff.
    error: str | None = None

    def kinds(self) -> list[str]:
        return [type(a).__name__ for a in self.actions]


# --- annotations --------------------------------------------------------------------------------------

def copy_deployment_annotations(d: Mapping[str, Any], rs: Obj) -> bool:
    """copyDeploymentAnnotationsToReplicaSet: the Deployment's annotations (kubernetes.io/change-cause
    among them) onto the set, except the controller's own and kubectl's last-applied."""
    changed = False
    annotations = rs["metadata"].setdefault("annotations", {})
    for k, v in _ann(d).items():
        if k in _SKIP_COPY or annotations.get(k) == v:
            continue
        annotations[k] = v
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if annotations.get(k) != v:
            annotations[k] = v
            changed = True
    return changed


def replicas_annotations_need_update(rs: Mapping[str, Any], desired: int, max_replicas: int) -> bool:
    a = _ann(rs)
    return a.get(DESIRED_REPLICAS) != str(desired) or a.get(MAX_REPLICAS) != str(max_replicas)


def set_new_replica_set_annotations(d: Mapping[str, Any], rs: Obj, new_revision: str, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copy the Deployment's annotations, raise the set's revision to
    new_revision (keeping the revisions it had before in revision-history: a rollback), and on a
    set about to be created the desired/max replicas."""
    changed = copy_deployment_annotations(d, rs)
    annotations = rs["metadata"].setdefault("annotations", {})
    old_revision = annotations.get(REVISION)
    had = old_revision is not None
    try:
        old_int = int(old_revision) if old_revision else 0
    except ValueError:
        return False
    new_int = int(new_revision)
    if old_int < new_int:
        annotations[REVISION] = new_revision
        changed = True
    if had and old_int < new_int:
        history = annotations.get(REVISION_HISTORY, "")
        old_revisions = history.split(",")
        if not old_revisions[0]:
            annotations[REVISION_HISTORY] = old_revision
        else:
            total = len(history) + len(old_revision) + 1
            start = 0
            while total > MAX_REV_HISTORY_LENGTH and start < len(old_revisions):
                total -= len(old_revisions[start]) + 1
                start += 1
            if total <= MAX_REV_HISTORY_LENGTH:
                annotations[REVISION_HISTORY] = ",".join([*old_revisions[start:], old_revision])
    if not exists and set_replicas_annotations(rs, replicas_of(d), replicas_of(d) + max_surge(d)):
        changed = True
    return changed


# --- proportional scaling -------------------------------------------------------------------------------

def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def replica_set_fraction(rs: Mapping[str, Any], d: Mapping[str, Any]) -> int:
    """getReplicaSetFraction: how many replicas this set gains (or loses) when the Deployment's
    maximum goes from the set's max-replicas annotation to its current maximum."""
    if replicas_of(d) == 0:
        return -replicas_of(rs)
    deployment_max = replicas_of(d) + max_surge(d)
    try:
        annotated = int(_ann(rs).get(MAX_REPLICAS, ""))
    except ValueError:
        annotated = int(_status(d).get("replicas") or 0)
    if annotated == 0:
        return 0
    return _round_half_away(replicas_of(rs) * deployment_max / annotated) - replicas_of(rs)


def replica_set_proportion(rs: Mapping[str, Any], d: Mapping[str, Any], to_add: int, added: int) -> int:
    if replicas_of(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def new_rs_new_replicas(d: Mapping[str, Any], all_rss: Iterable[Obj | None], new_rs: Mapping[str, Any]) -> int:
    """NewRSNewReplicas: how far the new set may grow now."""
    if not is_rolling_update(d):
        return replicas_of(d)
    surge = scaled_value(_rolling(d).get("maxSurge"), replicas_of(d), True)
    current = _sum_spec(all_rss)
    max_total = replicas_of(d) + surge
    if current >= max_total:
        return replicas_of(new_rs)
    up = min(max_total - current, replicas_of(d) - replicas_of(new_rs))
    return replicas_of(new_rs) + up


def is_saturated(d: Mapping[str, Any], rs: Mapping[str, Any] | None) -> bool:
    if rs is None:
        return False
    try:
        desired = int(_ann(rs).get(DESIRED_REPLICAS, ""))
    except ValueError:
        return False
    return desired == replicas_of(d) and replicas_of(rs) == replicas_of(d) and \
        int(_status(rs).get("availableReplicas") or 0) == replicas_of(d)


# --- the planner ------------------------------------------------------------------------------------

class _Stop(Exception):
    """Planning cannot go on from this state (Kubernetes' sync returns an error here)."""


class _Planner:
    """syncDeployment on a local copy: every write it would make is recorded as an action and
    applied to the copy, so later steps see earlier ones (as the Go code sees its own results)."""

    def __init__(self, d: Mapping[str, Any], rss: Iterable[Mapping[str, Any]], now: datetime) -> None:
        self.d = copy.deepcopy(dict(d))
        self.rss: list[Obj] = [copy.deepcopy(dict(rs)) for rs in rss]
        self.now = now
        self.status: Obj = copy.deepcopy(_status(d))
        self.annotations: dict[str, str] = dict(_ann(d))
        self.plan = Plan()
        self.stopped = False   # an action whose outcome the rest depends on cannot be planned past

    @property
    def name(self) -> str:
        return _meta(self.d).get("name", "")

    # --- writes on the local copy ---

    def _update_rs(self, rs: Obj) -> None:
        self.plan.actions.append(UpdateReplicaSet(copy.deepcopy(rs)))

    def scale_replica_set(self, rs: Obj, new_scale: int, *, always: bool = False) -> bool:
        """scaleReplicaSetAndRecordEvent (always=False) or scaleReplicaSet (always=True: also when
        only the replicas annotations are stale). True when the size changed."""
        if not always and replicas_of(rs) == new_scale:
            return False
        size_changed = replicas_of(rs) != new_scale
        desired, maximum = replicas_of(self.d), replicas_of(self.d) + max_surge(self.d)
        if size_changed or replicas_annotations_need_update(rs, desired, maximum):
            rs.setdefault("spec", {})["replicas"] = new_scale
            set_replicas_annotations(rs, desired, maximum)
            self._update_rs(rs)
        return size_changed

    # --- getAllReplicaSetsAndSyncRevision ---

    def sync_revision(self, create: bool) -> tuple[Obj | None, list[Obj]]:
        new_rs = find_new_replica_set(self.d, self.rss)
        old = [rs for rs in self.rss if rs is not new_rs]
        new_revision = str(max_revision(old) + 1)
        if new_rs is not None:
            changed = set_new_replica_set_annotations(self.d, new_rs, new_revision, exists=True)
            mrs = int(_spec(self.d).get("minReadySeconds") or 0)
            if changed or int(_spec(new_rs).get("minReadySeconds") or 0) != mrs:
                new_rs["spec"]["minReadySeconds"] = mrs
                self._update_rs(new_rs)
            self._set_revision(_ann(new_rs).get(REVISION, ""))
            if has_progress_deadline(self.d) and get_condition(self.status, PROGRESSING) is None:
                set_condition(self.status, new_condition(PROGRESSING, "True", FOUND_NEW_RS,
                                                         f'Found new replica set "{_meta(new_rs)["name"]}"', self.now))
            return new_rs, old
        if not create:
            return None, old
        return self._create_new(old, new_revision), old

    def _set_revision(self, rev: str) -> None:
        if self.annotations.get(REVISION) != rev:
            self.annotations[REVISION] = rev

    def _create_new(self, old: list[Obj], new_revision: str) -> Obj | None:
        d = self.d
        template = copy.deepcopy(_spec(d).get("template") or {})
        pod_hash = compute_hash(_spec(d).get("template") or {}, self.status.get("collisionCount"))
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), POD_TEMPLATE_HASH: pod_hash}
        selector = copy.deepcopy(_spec(d).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH: pod_hash}
        name = f"{self.name}-{pod_hash}"
        if any(_meta(rs).get("name") == name for rs in self.rss):
            # A set of ours has this name but another template: a hash collision. Count it in
            # status.collisionCount so that the next hash differs (syncDeployment then retries).
            self.status["collisionCount"] = int(self.status.get("collisionCount") or 0) + 1
            self.stopped = True
            return None
        rs: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": name, "namespace": _meta(d).get("namespace"),
                                "labels": dict(tmeta["labels"]),
                                "ownerReferences": [controller_ref(d, api_version="apps/v1", kind="Deployment")]},
                   "spec": {"replicas": 0, "minReadySeconds": int(_spec(d).get("minReadySeconds") or 0),
                            "selector": selector, "template": template}}
        rs["spec"]["replicas"] = new_rs_new_replicas(d, [*old, rs], rs)
        set_new_replica_set_annotations(d, rs, new_revision, exists=False)
        self.plan.actions.append(CreateReplicaSet(copy.deepcopy(rs)))
        self.rss.append(rs)
        if has_progress_deadline(d):
            set_condition(self.status, new_condition(PROGRESSING, "True", NEW_RS_CREATED,
                                                     f'Created new replica set "{name}"', self.now))
        self._set_revision(new_revision)
        return rs

    # --- status ---

    def calculate_status(self, all_rss: list[Obj | None], new_rs: Obj | None) -> Obj:
        d = self.d
        available = _sum_status(all_rss, "availableReplicas")
        total = _sum_spec(all_rss)
        status: Obj = {
            "observedGeneration": int(_meta(d).get("generation") or 0),
            "replicas": _sum_status(all_rss, "replicas"),
            "updatedReplicas": _sum_status([new_rs], "replicas"),
            "readyReplicas": _sum_status(all_rss, "readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
            "conditions": [dict(c) for c in self.status.get("conditions") or []],
        }
        if self.status.get("collisionCount") is not None:
            status["collisionCount"] = self.status["collisionCount"]
        if available >= replicas_of(d) - max_unavailable(d):
            set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.",
                                                self.now))
        else:
            set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                                "Deployment does not have minimum availability.", self.now))
        return status

    def sync_deployment_status(self, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        self.status = self.calculate_status(all_rss, new_rs)

    def sync_rollout_status(self, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        d = self.d
        new = self.calculate_status(all_rss, new_rs)
        if not has_progress_deadline(d):
            remove_condition(new, PROGRESSING)
        current = get_condition(self.status, PROGRESSING)
        complete_already = new["replicas"] == new["updatedReplicas"] and current is not None and \
            current.get("reason") == NEW_RS_AVAILABLE
        if has_progress_deadline(d) and not complete_already:
            what = f'ReplicaSet "{_meta(new_rs)["name"]}"' if new_rs is not None else f'Deployment "{self.name}"'
            if deployment_complete(d, new):
                set_condition(new, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE,
                                                 f"{what} has successfully progressed.", self.now))
            elif deployment_progressing(d, new):
                cond = new_condition(PROGRESSING, "True", RS_UPDATED, f"{what} is progressing.", self.now)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    remove_condition(new, PROGRESSING)
                set_condition(new, cond)
            elif deployment_timed_out(d, new, self.now):
                set_condition(new, new_condition(PROGRESSING, "False", TIMED_OUT,
                                                 f"{what} has timed out progressing.", self.now))
        failure = self._replica_failure(all_rss, new_rs)
        if failure is not None:
            set_condition(new, failure)
        else:
            remove_condition(new, REPLICA_FAILURE)
        if normalized_status(new) == normalized_status(_status(d)):
            self.plan.requeue_after = self._stuck_requeue(new)
        self.status = new

    def _replica_failure(self, all_rss: list[Obj | None], new_rs: Obj | None) -> Obj | None:
        """getReplicaFailures: the new set's ReplicaFailure first, else an old set's."""
        ordered = ([new_rs] if new_rs is not None else []) + [rs for rs in all_rss if rs is not new_rs]
        for rs in ordered:
            if rs is None:
                continue
            c = get_condition(_status(rs), REPLICA_FAILURE)
            if c is not None and c.get("status") == "True":
                t = c.get("lastTransitionTime") or _rfc3339(self.now)
                return {"type": REPLICA_FAILURE, "status": "True", "lastUpdateTime": t, "lastTransitionTime": t,
                        "reason": c.get("reason", ""), "message": c.get("message", "")}
        return None

    def _stuck_requeue(self, status: Obj) -> float | None:
        """requeueStuckDeployment: when a rollout is still within its deadline, look again when it
        would pass it."""
        d = self.d
        c = get_condition(status, PROGRESSING)
        if not has_progress_deadline(d) or c is None or c.get("reason") == NEW_RS_AVAILABLE \
                or c.get("status") != "True" or deployment_complete(d, status):
            return None
        since = parse_time(c.get("lastUpdateTime"))
        if since is None:
            return None
        after = (since + timedelta(seconds=int(_spec(d)["progressDeadlineSeconds"])) - self.now).total_seconds()
        return 0.0 if after < 1 else after + 1

    # --- checkPausedConditions, scaling, cleanup ---

    def check_paused_conditions(self) -> None:
        if not has_progress_deadline(self.d):
            return
        c = get_condition(self.status, PROGRESSING)
        if c is not None and c.get("reason") == TIMED_OUT:
            return
        paused_cond = c is not None and c.get("reason") == PAUSED
        if _spec(self.d).get("paused") and not paused_cond:
            set_condition(self.status, new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", self.now))
        elif not _spec(self.d).get("paused") and paused_cond:
            set_condition(self.status, new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed",
                                                     self.now))

    def is_scaling_event(self) -> bool:
        new_rs, old = self.sync_revision(False)
        for rs in _active([*old, new_rs]):
            try:
                desired = int(_ann(rs).get(DESIRED_REPLICAS, ""))
            except ValueError:
                continue
            if desired != replicas_of(self.d):
                return True
        return False

    def scale(self, new_rs: Obj | None, old: list[Obj]) -> None:
        d = self.d
        latest = self._active_or_latest(new_rs, old)
        if latest is not None:
            if replicas_of(latest) != replicas_of(d):
                self.scale_replica_set(latest, replicas_of(d))
            return
        if is_saturated(d, new_rs):
            for rs in _active(old):
                self.scale_replica_set(rs, 0)
            return
        if not is_rolling_update(d):
            return
        all_rss = _active([*old, new_rs])
        allowed = replicas_of(d) + max_surge(d) if replicas_of(d) > 0 else 0
        to_add = allowed - _sum_spec(all_rss)
        if to_add > 0:   # ReplicaSetsBySizeNewer: larger first, then newer first
            all_rss.sort(key=lambda rs: _created(rs), reverse=True)
            all_rss.sort(key=replicas_of, reverse=True)
        elif to_add < 0:  # ReplicaSetsBySizeOlder: larger first, then older first
            all_rss.sort(key=_created)
            all_rss.sort(key=replicas_of, reverse=True)
        added = 0
        sizes: list[int] = []
        for rs in all_rss:
            if to_add != 0:
                proportion = replica_set_proportion(rs, d, to_add, added)
                sizes.append(replicas_of(rs) + proportion)
                added += proportion
            else:
                sizes.append(replicas_of(rs))
        for i, rs in enumerate(all_rss):
            size = sizes[i]
            if i == 0 and to_add != 0:
                size = max(size + to_add - added, 0)
            self.scale_replica_set(rs, size, always=True)

    @staticmethod
    def _active_or_latest(new_rs: Obj | None, old: list[Obj]) -> Obj | None:
        if new_rs is None and not old:
            return None
        newest_first = sorted(old, key=_created, reverse=True)
        active = _active([*newest_first, new_rs])
        if not active:
            return new_rs if new_rs is not None else newest_first[0]
        if len(active) == 1:
            return active[0]
        return None

    def cleanup(self, old: list[Obj]) -> None:
        """cleanupDeployment: delete the oldest sets beyond revisionHistoryLimit (never one with pods)."""
        limit = _spec(self.d).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old if not _meta(rs).get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        alive.sort(key=lambda rs: (revision(rs), _created(rs)))
        for rs in alive[:diff]:
            if int(_status(rs).get("replicas") or 0) != 0 or replicas_of(rs) != 0 or \
                    int(_meta(rs).get("generation") or 0) > int(_status(rs).get("observedGeneration") or 0):
                continue
            self.plan.actions.append(DeleteReplicaSet(_meta(rs)["name"], _meta(rs).get("resourceVersion")))

    # --- strategies ---

    def sync(self) -> None:
        new_rs, old = self.sync_revision(False)
        if self.stopped:
            return
        self.scale(new_rs, old)
        if _spec(self.d).get("paused"):
            self.cleanup(old)
        self.sync_deployment_status([*old, new_rs], new_rs)

    def rollout_rolling(self) -> None:
        new_rs, old = self.sync_revision(True)
        if self.stopped or new_rs is None:
            return
        all_rss: list[Obj | None] = [*old, new_rs]
        if self._reconcile_new(all_rss, new_rs) or self._reconcile_old(all_rss, _active(old), new_rs):
            self.sync_rollout_status(all_rss, new_rs)
            return
        if deployment_complete(self.d, _status(self.d)):
            self.cleanup(old)
        self.sync_rollout_status(all_rss, new_rs)

    def _reconcile_new(self, all_rss: list[Obj | None], new_rs: Obj) -> bool:
        d = self.d
        if replicas_of(new_rs) == replicas_of(d):
            return False
        if replicas_of(new_rs) > replicas_of(d):
            return self.scale_replica_set(new_rs, replicas_of(d))
        return self.scale_replica_set(new_rs, new_rs_new_replicas(d, all_rss, new_rs))

    def _reconcile_old(self, all_rss: list[Obj | None], old: list[Obj], new_rs: Obj) -> bool:
        d = self.d
        if _sum_spec(old) == 0:
            return False
        min_available = replicas_of(d) - max_unavailable(d)
        new_unavailable = replicas_of(new_rs) - int(_status(new_rs).get("availableReplicas") or 0)
        max_scaled_down = _sum_spec(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # Unhealthy replicas first: they would otherwise block the rollout (kubernetes#16737).
        cleaned = 0
        for rs in sorted(old, key=_created):
            if cleaned >= max_scaled_down:
                break
            if replicas_of(rs) == 0 or replicas_of(rs) == int(_status(rs).get("availableReplicas") or 0):
                continue
            n = min(max_scaled_down - cleaned, replicas_of(rs) - int(_status(rs).get("availableReplicas") or 0))
            if n < 0:
                # More available than asked for: the set's status predates its last scale-down. Counting
                # on it would scale the set up and overrate availability; Kubernetes refuses the sync.
                raise _Stop(f"when cleaning up unhealthy replicas, got invalid request to scale down "
                            f"{_meta(rs).get('namespace')}/{_meta(rs).get('name')} {replicas_of(rs)} -> "
                            f"{replicas_of(rs) - n}")
            self.scale_replica_set(rs, replicas_of(rs) - n)
            cleaned += n
        # Then healthy ones, as far as availability allows.
        available = _sum_status([*old, new_rs], "availableReplicas")
        scaled = 0
        if available > min_available:
            budget = available - min_available
            for rs in sorted(old, key=_created):
                if scaled >= budget:
                    break
                if replicas_of(rs) == 0:
                    continue
                n = min(replicas_of(rs), budget - scaled)
                self.scale_replica_set(rs, replicas_of(rs) - n)
                scaled += n
        return cleaned + scaled > 0

    def rollout_recreate(self, pods_by_rs: Mapping[str, list[Obj]]) -> None:
        new_rs, old = self.sync_revision(False)
        if self.stopped:
            return
        all_rss: list[Obj | None] = [*old, new_rs]
        scaled_down = False
        for rs in _active(old):
            if self.scale_replica_set(rs, 0):
                scaled_down = True
        if scaled_down:
            self.sync_rollout_status(all_rss, new_rs)
            return
        if self._old_pods_running(new_rs, old, pods_by_rs):
            self.sync_rollout_status(all_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old = self.sync_revision(True)
            if self.stopped or new_rs is None:
                return
            all_rss = [*old, new_rs]
        self.scale_replica_set(new_rs, replicas_of(self.d))
        if deployment_complete(self.d, _status(self.d)):
            self.cleanup(old)
        self.sync_rollout_status(all_rss, new_rs)

    @staticmethod
    def _old_pods_running(new_rs: Obj | None, old: list[Obj], pods_by_rs: Mapping[str, list[Obj]]) -> bool:
        if _sum_status(old, "replicas") > 0:
            return True
        new_uid = _meta(new_rs).get("uid") if new_rs is not None else None
        for uid, pods in pods_by_rs.items():
            if new_uid is not None and uid == new_uid:
                continue
            for pod in pods:
                if _status(pod).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    # --- the end: the Deployment's own writes ---

    def finish(self) -> Plan:
        changed = {k: v for k, v in self.annotations.items() if _ann(self.d).get(k) != v}
        if changed or normalized_status(self.status) != normalized_status(_status(self.d)):
            self.plan.actions.append(UpdateDeploymentStatus(normalized_status(self.status), changed))
        return self.plan


def plan(d: Mapping[str, Any], rss: Iterable[Mapping[str, Any]], pods_by_rs: Mapping[str, list[Obj]] | None = None,
         *, now: datetime | None = None) -> Plan:
    """syncDeployment's decision for one Deployment and the ReplicaSets it owns (already claimed).
    `pods_by_rs` (ReplicaSet uid → its pods) matters only to Recreate."""
    p = _Planner(d, rss, now or datetime.now(timezone.utc))
    selector = _spec(d).get("selector")
    if selector == {}:
        # A Deployment selecting everything would fight every other controller: do nothing.
        if int(_status(d).get("observedGeneration") or 0) < int(_meta(d).get("generation") or 0):
            p.status["observedGeneration"] = int(_meta(d).get("generation") or 0)
        return p.finish()
    if _meta(d).get("deletionTimestamp"):
        new_rs, old = p.sync_revision(False)
        p.sync_deployment_status([*old, new_rs], new_rs)
        return p.finish()
    p.check_paused_conditions()
    try:
        if _spec(d).get("paused") or p.is_scaling_event():
            p.sync()
        elif not is_rolling_update(d):
            p.rollout_recreate(pods_by_rs or {})
        else:
            p.rollout_rolling()
    except _Stop as stop:
        p.plan.error = str(stop)
        return p.plan
    return p.finish()


# --- the loop ---------------------------------------------------------------------------------------

class DeploymentController:
    """The thin side: informers → keys → claim the sets, plan, apply the plan's writes in order."""

    def __init__(self, ctx: ControllerContext, *, workers: int = WORKERS) -> None:
        self.client = ctx.client
        self.deployments: Informer = ctx.informers.informer("deployments.apps")
        self.sets: Informer = ctx.informers.informer("replicasets.apps")
        self.sets.add_indexer(BY_ORPHAN_NAMESPACE, orphan_namespace)
        self.pods: Informer = ctx.informers.informer("pods")
        self.control = PodControl(ctx.client)
        self.events = EventRecorder(ctx.client, component="deployment-controller", instance=ctx.identity,
                                    enabled=bool(ctx.options.get("events", True)))
        self.controller = Controller("deployment-controller", self.deployments, self.sync, workers=workers)
        self.sets.add_handler(on_add=self._set_changed, on_update=lambda old, new: self._set_changed(new, old),
                              on_delete=self._set_changed)
        self.pods.add_handler(on_delete=self._pod_deleted)

    def _owner_key(self, obj: Mapping[str, Any]) -> str | None:
        ref = controller_ref_of(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        key = f"{_meta(obj).get('namespace')}/{ref.get('name')}"
        d = self.deployments.store.get(key)
        if d is None or _meta(d).get("uid") != ref.get("uid"):
            return None
        return key

    def _set_changed(self, rs: Obj, old: Obj | None = None) -> None:
        keys = {self._owner_key(rs)}
        if old is not None:
            keys.add(self._owner_key(old))
        if controller_ref_of(rs) is None:
            labels = _meta(rs).get("labels") or {}
            for d in self.deployments.store.by_index(BY_NAMESPACE, _meta(rs).get("namespace") or ""):
                try:
                    if LabelSelector.from_object(_spec(d).get("selector")).matches(labels):
                        keys.add(key_of(d))
                except errors.EventplaneError:
                    continue
        # A set whose status alone changed (its pods' counts) wakes its Deployment a little later, so
        # that a burst of such changes costs one sync and one status write of the Deployment.
        status_only = old is not None and _meta(old).get("generation") == _meta(rs).get("generation") and \
            _meta(old).get("annotations") == _meta(rs).get("annotations") and \
            _meta(old).get("ownerReferences") == _meta(rs).get("ownerReferences") and \
            _meta(old).get("deletionTimestamp") == _meta(rs).get("deletionTimestamp")
        for k in keys:
            if k is not None:
                self.controller.queue.add_after(k, SET_STATUS_DELAY if status_only else 0)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_ref_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.sets.store.get(f"{_meta(pod).get('namespace')}/{ref.get('name')}")
        if rs is None:
            return
        key = self._owner_key(rs)
        if key is not None:
            d = self.deployments.store.get(key)
            if d is not None and not is_rolling_update(d):
                self.controller.queue.add(key)

    async def _claim(self, d: Obj, causation: int | None) -> list[Obj]:
        """getReplicaSetsForDeployment: the sets this Deployment controls, adopting and releasing."""
        meta = d["metadata"]
        selector = LabelSelector.from_object(_spec(d).get("selector"))
        candidates = self.sets.store.by_index(BY_OWNER, meta.get("uid") or "") + \
            self.sets.store.by_index(BY_ORPHAN_NAMESPACE, meta.get("namespace") or "")
        decision = claim(d, selector, candidates)
        owned = list(decision.owned)
        for rs in decision.adopt:
            try:
                adopted = await self.control.adopt(rs, d, causation=causation, resource="replicasets.apps",
                                                   api_version="apps/v1", kind="Deployment")
                owned = [adopted if o is rs else o for o in owned]
            except (errors.ConflictError, errors.NotFoundError):
                owned = [o for o in owned if o is not rs]
        for rs in decision.release:
            try:
                await self.control.release(rs, d, causation=causation, resource="replicasets.apps")
            except errors.ConflictError:
                pass
        return owned

    async def sync(self, request: Request) -> None:
        d = self.deployments.store.get(request.key)
        if d is None:
            return
        causation = request.causation
        try:
            rss = await self._claim(d, causation)
        except errors.EventplaneError as exc:
            log.warning("deployment %s: %s", request.key, exc)
            return
        pods_by_rs: dict[str, list[Obj]] = {}
        if not is_rolling_update(d):
            for rs in rss:
                uid = _meta(rs).get("uid") or ""
                pods_by_rs[uid] = self.pods.store.by_index(BY_OWNER, uid)
        decided = plan(d, rss, pods_by_rs)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("deployment %s@%s gen %s: sets %s → %s", request.key, _meta(d).get("resourceVersion"),
                      _meta(d).get("generation"),
                      [(_meta(rs).get("name"), _meta(rs).get("resourceVersion"), replicas_of(rs),
                        _status(rs).get("availableReplicas")) for rs in rss],
                      [(type(a).__name__, _meta(a.rs).get("name"), replicas_of(a.rs))
                       if isinstance(a, (CreateReplicaSet, UpdateReplicaSet)) else type(a).__name__
                       for a in decided.actions])
        await self.apply(d, decided, causation)
        if decided.error is not None:
            log.info("deployment %s: %s; retrying", request.key, decided.error)
            raise Requeue()
        if decided.requeue_after is not None:
            self.controller.queue.add_after(request.key, decided.requeue_after)

    async def apply(self, d: Obj, decided: Plan, causation: int | None) -> None:
        """Carry out the writes in order; stop at the first failure and retry the key with backoff."""
        ns = _meta(d).get("namespace")
        current = d
        versions: dict[str, str] = {}   # a set written twice in one plan: the second write uses the first's answer
        for action in decided.actions:
            try:
                if isinstance(action, CreateReplicaSet):
                    try:
                        created = await self.client.create(action.rs, namespace=ns, causation=causation)
                        versions[created["metadata"]["name"]] = created["metadata"]["resourceVersion"]
                        if replicas_of(created) > 0:
                            self.events.record(d, "Normal", "ScalingReplicaSet",
                                               f"Scaled up replica set {created['metadata']['name']} from 0 to "
                                               f"{replicas_of(created)}", causation=causation)
                    except errors.AlreadyExistsError:
                        await self._already_exists(current, action.rs, causation)
                        raise Requeue() from None
                    except errors.EventplaneError as exc:
                        if has_progress_deadline(current) and not isinstance(exc, errors.ConflictError):
                            status = copy.deepcopy(_status(current))
                            set_condition(status, new_condition(
                                PROGRESSING, "False", FAILED_RS_CREATE,
                                f'Failed to create new replica set "{action.rs["metadata"]["name"]}": {exc}',
                                datetime.now(timezone.utc)))
                            await self.client.update({**current, "status": status}, subresource="status",
                                                     causation=causation)
                        raise
                elif isinstance(action, UpdateReplicaSet):
                    rs = action.rs
                    name = rs["metadata"]["name"]
                    if name in versions:
                        rs = {**rs, "metadata": {**rs["metadata"], "resourceVersion": versions[name]}}
                    before = self.sets.store.get(f"{ns}/{name}")
                    updated = await self.client.update(rs, namespace=ns, causation=causation)
                    versions[name] = updated["metadata"]["resourceVersion"]
                    old, new = (replicas_of(before) if before else None), replicas_of(updated)
                    if old is not None and old != new:
                        self.events.record(d, "Normal", "ScalingReplicaSet",
                                           f"Scaled {'up' if new > old else 'down'} replica set {name} from {old} "
                                           f"to {new}", causation=causation)
                elif isinstance(action, DeleteReplicaSet):
                    try:
                        await self.client.delete("replicasets.apps", action.name, namespace=ns, causation=causation)
                    except errors.NotFoundError:
                        pass
                elif isinstance(action, UpdateDeploymentStatus):
                    body = {**current, "status": action.status}
                    if action.annotations:
                        body["metadata"] = {**current["metadata"],
                                            "annotations": {**_ann(current), **action.annotations}}
                    current = await self.client.update(body, subresource="status", causation=causation)
            except errors.ConflictError:
                raise Requeue() from None   # planned on a version that has changed: plan again
            except errors.NotFoundError:
                return

    async def _already_exists(self, d: Obj, rs: Obj, causation: int | None) -> None:
        """A create of `<name>-<hash>` found the name taken. Ours with this template: the cache is
        behind, nothing to do. Anything else: a hash collision, so count it in collisionCount."""
        ns = _meta(d).get("namespace")
        try:
            existing = await self.client.get("replicasets.apps", rs["metadata"]["name"], namespace=ns)
        except errors.NotFoundError:
            return
        ref = controller_ref_of(existing)
        if ref is not None and ref.get("uid") == _meta(d).get("uid") and \
                equal_ignore_hash(_spec(existing).get("template"), _spec(d).get("template")):
            return
        status = copy.deepcopy(_status(d))
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        await self.client.update({**d, "status": status}, subresource="status", causation=causation)


def build(ctx: ControllerContext) -> list[Controller]:
    return [DeploymentController(ctx).controller]

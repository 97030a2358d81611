"""Replaying a controller's decisions against recorded history (`epctl replay --controller NAME`).

Fed, in log order, with the recorded events (`Recorded`: position, stream key, event type,
causation and the object after the event) by eventplane/cli/epctl_replay.py, which reads them from
the exported log (GET history.eventplane.io/v1/export); consumed by that command, which prints the
report, and by tests, which inject a changed decision function (`replayer(name, decide=...)`).

A replayer folds the events into the world they describe (the owners and what they own), and
recognises the writes the controller made: every controller write carries `causation` = the
position of the event that led to it (DESIGN invariant 10), and a controller's causation is the
position of the last event of the object it was reconciling (runner.Request). So the recorded
writes of one decision are those sharing a causation that is an event of the owner they touch:

* replicaset / replicationcontroller: pods Created with a controller reference to a set, pods
  deleted (Deleting or Deleted) whose causation is an event of their set, and the set's own
  status writes. A status write ends a sync, so a later pod write with the same causation is the
  next decision; so is a delete after creates (or a create after deletes): one sync does one or
  the other.
* deployment: ReplicaSets created, updated (scaled) or deleted whose causation is an event of
  the Deployment that controls them, and the Deployment's own annotation and status writes.

For each decision the world is taken as it was just before its first recorded write (the
controller's caches were at most that current when it decided), the pure decision function is run
on it (`manage_replicas`; `deployment.plan`) with the owner as of the causation (the version the
controller had), and the writes it would make are compared with the writes recorded. Since the
caches may have been behind the log, a decision that differs there is also replayed on every
earlier world back to its causation (going back through a journal of the changes to the owner's
children); a decision that agrees only on one of those agrees "earlier". What else makes this
imprecise is said in docs/history.md ("Replaying a controller"): failed writes leave no event,
and two syncs with one causation and no status write between them read as one decision.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from eventplane.objects import errors
from eventplane.objects.selectors import LabelSelector

from .controllers import deployment as deployment_controller
from .controllers.podcontrol import claim, controller_ref_of, filter_active_pods, selector_of
from .controllers.replicaset import BURST_REPLICAS, REPLICASET, REPLICATION_CONTROLLER, WorkloadKind, manage_replicas

__all__ = ["REPLAYABLE", "Decision", "DeploymentReplayer", "Recorded", "ReplicaSetReplayer", "replayer"]

Obj = dict[str, Any]

CREATED, STATUS_UPDATED, DELETING, DELETED = "Created", "StatusUpdated", "Deleting", "Deleted"


@dataclass(frozen=True)
class Recorded:
    """One event of the log, as a replayer needs it."""

    position: int
    stream: str              # StreamId.key: "apps/replicasets/default/web", "core/pods/default/web-x2b9q"
    type: str                # Created, Updated, StatusUpdated, Bound, Deleting, Deleted
    causation: int | None
    obj: Obj                 # the object after the event
    actor: str = ""
    time: str = ""           # RFC 3339, the API server's clock at commit


@dataclass
class Decision:
    """One sync of the controller, as recorded and as replayed."""

    controller: str
    kind: str
    object: str                  # namespace/name of the reconciled object
    uid: str
    causation: int
    view: int                    # the world the decision is replayed on: as of this position
    writes: list[int] = field(default_factory=list)       # positions of the recorded writes
    recorded: list[str] = field(default_factory=list)     # the recorded actions, as words
    replayed: list[str] = field(default_factory=list)     # what the decision function would do at `view`
    # … when that differs: on each earlier world, back to the causation, where it would decide otherwise
    earlier: list[tuple[int, list[str]]] = field(default_factory=list)   # newest first
    actors: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    closed: bool = False         # a status write ended the sync
    sort: str | None = None      # what its writes to children are, for a controller that does one sort per sync

    @property
    def agreed_at(self) -> int | None:
        """The position of the world on which the replayed decision is the recorded one: `view` (just
        before the first write) when it is there; else the latest earlier one, from the causation on,
        where it is (the controller's caches were behind the log when it decided); None if none."""
        recorded = Counter(self.recorded)
        if Counter(self.replayed) == recorded:
            return self.view
        for position, replayed in self.earlier:   # newest first
            if Counter(replayed) == recorded:
                return position
        return None

    @property
    def agreement(self) -> str | None:
        """"view", "earlier" (see agreed_at), or None when the decision differs."""
        at = self.agreed_at
        return None if at is None else "view" if at == self.view else "earlier"

    @property
    def agree(self) -> bool:
        return self.agreed_at is not None

    def to_json(self) -> dict[str, Any]:
        return {"controller": self.controller, "kind": self.kind, "object": self.object, "uid": self.uid,
                "causation": self.causation, "view": self.view, "writes": self.writes,
                "actors": sorted(set(self.actors)), "recorded": self.recorded, "replayed": self.replayed,
                "earlier": [{"at": at, "replayed": r} for at, r in self.earlier],
                "agree": self.agree, "agreement": self.agreement, "agreedAt": self.agreed_at, **self.detail}


def _meta(obj: Mapping[str, Any]) -> Obj:
    return obj.get("metadata") or {}


def _ns_name(obj: Mapping[str, Any]) -> str:
    m = _meta(obj)
    return f"{m.get('namespace')}/{m.get('name')}" if m.get("namespace") else str(m.get("name"))


def _prefix(kind: WorkloadKind) -> str:
    resource, _, group = kind.resource.partition(".")
    return f"{group or 'core'}/{resource}/"


class _Objects:
    """The current objects of one resource, with indexes by controller uid and orphans by namespace."""

    def __init__(self) -> None:
        self.by_stream: dict[str, Obj] = {}
        self.by_owner: dict[str, dict[str, Obj]] = {}
        self.orphans: dict[str, dict[str, Obj]] = {}

    def get(self, stream: str) -> Obj | None:
        return self.by_stream.get(stream)

    def owned_by(self, uid: str) -> list[Obj]:
        return list(self.by_owner.get(uid, {}).values())

    def orphans_in(self, namespace: str) -> list[Obj]:
        return list(self.orphans.get(namespace, {}).values())

    def apply(self, stream: str, type_: str, obj: Obj) -> None:
        old = self.by_stream.pop(stream, None)
        if old is not None:
            self._unindex(stream, old)
        if type_ != DELETED:
            self.by_stream[stream] = obj
            self._index(stream, obj)

    def _slot(self, obj: Obj) -> dict[str, Obj]:
        ref = controller_ref_of(obj)
        if ref is not None:
            return self.by_owner.setdefault(ref.get("uid") or "", {})
        return self.orphans.setdefault(_meta(obj).get("namespace") or "", {})

    def _index(self, stream: str, obj: Obj) -> None:
        self._slot(obj)[stream] = obj

    def _unindex(self, stream: str, obj: Obj) -> None:
        self._slot(obj).pop(stream, None)


WINDOWS = 4   # per owner: its latest events whose worlds can be gone back to (an older causation: none)

Journal = list[tuple[int, str, "Obj | None"]]   # (position, child stream, the child before that event)


class _Replayer:
    """What both replayers share: the owners' events by position, the open decision per owner, and
    per owner a journal of the changes to its children (pods of a set, sets of a Deployment) since
    the oldest of its latest WINDOWS events, to go back from the world at a decision's first write
    to the world as of its causation (`earlier_views`)."""

    name = ""

    def __init__(self, owner_prefix: str, kind: str) -> None:
        self.owner_prefix = owner_prefix
        self.kind = kind
        self.owners = _Objects()
        self.owner_at: dict[int, tuple[str, str, Obj]] = {}   # position → (stream, type, object after it)
        self.in_namespace: dict[str, set[str]] = {}            # namespace → uids of its owners
        self.recent: dict[str, list[int]] = {}                 # owner uid → its latest events
        self.journal: dict[str, Journal] = {}                  # owner uid → changes of its children since
        self.open: dict[str, Decision] = {}                    # owner uid → its latest decision
        self.done: list[Decision] = []
        self.now: datetime | None = None                       # the time of the event being fed

    def owner_event(self, position: int | None, uid: str | None) -> tuple[str, str, Obj] | None:
        """The owner event `position` names, if it is an event of the owner with this uid that the
        controller would have reconciled (not a deletion, nor an object being deleted)."""
        if position is None:
            return None
        at = self.owner_at.get(position)
        if at is None or (uid is not None and _meta(at[2]).get("uid") != uid):
            return None
        if at[1] == DELETED or _meta(at[2]).get("deletionTimestamp"):
            return None
        return at

    def decision_for(self, owner: Obj, causation: int, view: int, *,
                     fits: Callable[[Decision], bool] | None = None) -> Decision:
        """The decision a write with this causation belongs to: the open one (if the write `fits` it), or
        a new one replayed on the world as it is now (just before the write being fed)."""
        uid = _meta(owner).get("uid") or ""
        d = self.open.get(uid)
        if d is not None and d.causation == causation and not d.closed and (fits is None or fits(d)):
            return d
        if d is not None:
            self.finish(d)
        d = Decision(self.name, self.kind, _ns_name(owner), uid, causation, view)
        d.replayed = self.replay(owner, d.detail)
        self.open[uid] = d
        return d

    def finish(self, d: Decision) -> None:
        """A decision has all its writes: if it differs on the world at its view, go back."""
        if self.open.get(d.uid) is d:
            del self.open[d.uid]
        if not d.agree:
            d.earlier = self.earlier_views(d)
        self.done.append(d)

    def earlier_views(self, d: Decision) -> list[tuple[int, list[str]]]:
        """The decision replayed on each world from the causation up to the view where it would be
        different, newest first: undo the journal of the owner's children back to the causation."""
        at = self.owner_at.get(d.causation)
        journal = self.journal.get(d.uid)
        if at is None or journal is None or not self.recent.get(d.uid) or d.causation < self.recent[d.uid][0]:
            return []
        owner = at[2]
        children = self.children(owner)
        out: list[tuple[int, list[str]]] = []
        last = d.replayed
        for position, stream, before in reversed(journal):
            if position <= d.causation:
                break
            if position <= d.view:
                replayed = self.replay(owner, {}, children=list(children.values()))
                if replayed != last:
                    out.append((position, replayed))
                    last = replayed
            if before is None:
                children.pop(stream, None)
            else:
                children[stream] = before
        replayed = self.replay(owner, {}, children=list(children.values()))
        if replayed != last:
            out.append((d.causation, replayed))
        return out

    def children(self, owner: Obj) -> dict[str, Obj]:
        """The objects the owner's decision reads, by stream: those it controls and the orphans of its
        namespace (claim() sorts them out)."""
        raise NotImplementedError

    def replay(self, owner: Obj, detail: dict[str, Any], *, children: list[Obj] | None = None) -> list[str]:
        """What the decision function would do to `owner` in the world as it now is (or with these
        children instead of the current ones), as words."""
        raise NotImplementedError

    def note_owner(self, e: Recorded) -> None:
        self.owner_at[e.position] = (e.stream, e.type, e.obj)
        self.owners.apply(e.stream, e.type, e.obj)
        meta = _meta(e.obj)
        uid, ns = meta.get("uid") or "", meta.get("namespace") or ""
        if e.type == DELETED:
            self.in_namespace.get(ns, set()).discard(uid)
        else:
            self.in_namespace.setdefault(ns, set()).add(uid)
        recent = self.recent.setdefault(uid, [])
        recent.append(e.position)
        if len(recent) > WINDOWS:
            del recent[0]
            d = self.open.get(uid)
            if d is not None and d.causation < recent[0]:
                self.finish(d)   # before the journal it may need is cut
            self.journal[uid] = [j for j in self.journal.get(uid, []) if j[0] > recent[0]]
        if e.type == DELETED:
            d = self.open.get(uid)
            if d is not None:
                self.finish(d)
            self.recent.pop(uid, None)
            self.journal.pop(uid, None)

    def changed(self, position: int, stream: str, before: Obj | None, uids: Iterable[str]) -> None:
        """A child changed at `position` (it was `before`) in the world of these owners: journal it."""
        for uid in set(uids):
            if uid in self.recent:
                self.journal.setdefault(uid, []).append((position, stream, before))

    def owners_in(self, namespace: str) -> list[str]:
        """The uids of the owners of a namespace (an orphan may be claimed by any of them)."""
        return list(self.in_namespace.get(namespace, ()))

    def set_time(self, e: Recorded) -> None:
        if e.time:
            self.now = datetime.fromisoformat(e.time.replace("Z", "+00:00")).astimezone(timezone.utc)

    def decisions(self) -> list[Decision]:
        for d in list(self.open.values()):
            self.finish(d)
        return sorted(self.done, key=lambda d: (d.writes[0] if d.writes else d.view, d.causation))


class ReplicaSetReplayer(_Replayer):
    """The ReplicaSet (or ReplicationController) controller's manageReplicas, replayed."""

    def __init__(self, kind: WorkloadKind = REPLICASET, *,
                 decide: Callable[..., Any] = manage_replicas, burst: int = BURST_REPLICAS) -> None:
        super().__init__(_prefix(kind), kind.kind)
        self.name = "replicaset" if kind is REPLICASET else "replicationcontroller"
        self.workload = kind
        self.decide = decide
        self.burst = burst
        self.pods = _Objects()
        self.streams = (self.owner_prefix, "core/pods/")   # the events it needs

    def feed(self, e: Recorded) -> None:
        if e.stream.startswith(self.owner_prefix):
            if e.type == STATUS_UPDATED:
                at = self.owner_event(e.causation, _meta(e.obj).get("uid"))
                if at is not None and at[0] == e.stream:
                    d = self.decision_for(at[2], e.causation, e.position - 1)
                    d.writes.append(e.position)
                    d.actors.append(e.actor)
                    d.closed = True
            self.note_owner(e)
        elif e.stream.startswith("core/pods/"):
            before = self.pods.get(e.stream)
            self._pod(e)
            self.pods.apply(e.stream, e.type, e.obj)
            self.changed(e.position, e.stream, before, self._affected(before, e.obj))

    def _affected(self, *pods: Obj | None) -> list[str]:
        """The sets whose decision a change of this pod may change: its controller, before and after,
        or any set of its namespace for an orphan."""
        out: list[str] = []
        for pod in pods:
            if pod is None:
                continue
            ref = controller_ref_of(pod)
            if ref is None:
                out += self.owners_in(_meta(pod).get("namespace") or "")
            elif ref.get("kind") == self.workload.kind:
                out.append(ref.get("uid") or "")
        return out

    def _pod(self, e: Recorded) -> None:
        ref = controller_ref_of(e.obj)
        if ref is None or ref.get("kind") != self.workload.kind:
            return
        at = self.owner_event(e.causation, ref.get("uid"))
        if at is None:
            return   # not the set's controller: a person, the garbage collector, a node agent …
        if e.type == CREATED:
            action = "create"
        elif e.type in (DELETING, DELETED):
            before = self.pods.get(e.stream)
            if before is None or _meta(before).get("deletionTimestamp"):
                return   # the end of a graceful deletion already counted
            action = f"delete {_meta(e.obj).get('name')}"
        else:
            return       # adoption and release patches: claim() replays them
        # One sync creates or deletes, never both: a write of the other sort is the next sync's.
        sort = "create" if action == "create" else "delete"
        d = self.decision_for(at[2], e.causation, e.position - 1, fits=lambda d: d.sort in (None, sort))
        d.sort = sort
        d.writes.append(e.position)
        d.actors.append(e.actor)
        d.recorded.append(action)

    def children(self, rs: Obj) -> dict[str, Obj]:
        meta = _meta(rs)
        return {**self.pods.by_owner.get(meta.get("uid") or "", {}),
                **self.pods.orphans.get(meta.get("namespace") or "", {})}

    def replay(self, rs: Obj, detail: dict[str, Any], *, children: list[Obj] | None = None) -> list[str]:
        candidates = list(self.children(rs).values()) if children is None else children
        try:
            selector = selector_of(rs)
        except errors.EventplaneError:
            detail["note"] = "invalid selector: the controller decides nothing"
            return []
        owned = claim(rs, selector, filter_active_pods(candidates)).owned
        diff = self.decide(rs, owned, related=self._related(rs), burst=self.burst)
        replicas = (rs.get("spec") or {}).get("replicas")
        detail.update(replicas=1 if replicas is None else int(replicas), activePods=len(owned))
        return ["create"] * diff.create + [f"delete {_meta(p).get('name')}" for p in diff.delete]

    def _related(self, rs: Obj) -> list[Obj]:
        ref = controller_ref_of(rs)
        if ref is None:
            return []
        out: list[Obj] = []
        for sibling in self.owners.owned_by(ref.get("uid") or ""):
            out += filter_active_pods(self.pods.owned_by(_meta(sibling).get("uid") or ""))
        return out


def _rs_words(actions: Iterable[Any], sets: Mapping[str, Obj]) -> list[str]:
    """A Deployment plan's writes to ReplicaSets, as words comparable with recorded ones (a set
    written twice is compared, the second time, with what the first write made of it)."""
    current = dict(sets)
    out: list[str] = []
    for action in actions:
        if isinstance(action, deployment_controller.CreateReplicaSet):
            out.append(f"create {_meta(action.rs).get('name')} replicas={deployment_controller.replicas_of(action.rs)}")
            current[_meta(action.rs).get("name") or ""] = action.rs
        elif isinstance(action, deployment_controller.UpdateReplicaSet):
            name = _meta(action.rs).get("name") or ""
            out.append(_update_word(current.get(name), action.rs))
            current[name] = action.rs
        elif isinstance(action, deployment_controller.DeleteReplicaSet):
            out.append(f"delete {action.name}")
    return out


def _update_word(before: Obj | None, after: Obj) -> str:
    name = _meta(after).get("name")
    new = deployment_controller.replicas_of(after)
    old = deployment_controller.replicas_of(before) if before is not None else None
    if old != new:
        return f"scale {name} {old}→{new}"
    return f"update {name}"


class DeploymentReplayer(_Replayer):
    """The Deployment controller's plan(), replayed: its writes to ReplicaSets (create, scale, update,
    delete) against those recorded. Its own status and annotation writes are kept as positions but
    not compared (conditions carry the time they were computed)."""

    name = "deployment"

    def __init__(self, *, decide: Callable[..., Any] = deployment_controller.plan) -> None:
        super().__init__("apps/deployments/", "Deployment")
        self.decide = decide
        self.sets = _Objects()
        self.pods = _Objects()
        self.streams = (self.owner_prefix, "apps/replicasets/", "core/pods/")   # the events it needs

    def feed(self, e: Recorded) -> None:
        if e.stream.startswith(self.owner_prefix):
            at = self.owner_event(e.causation, _meta(e.obj).get("uid"))
            if at is not None and at[0] == e.stream and e.type != CREATED:
                d = self.decision_for(at[2], e.causation, e.position - 1)
                d.writes.append(e.position)
                d.actors.append(e.actor)
                if e.type == STATUS_UPDATED:
                    d.closed = True
            self.note_owner(e)
        elif e.stream.startswith("apps/replicasets/"):
            before = self.sets.get(e.stream)
            self._set(e)
            self.sets.apply(e.stream, e.type, e.obj)
            self.changed(e.position, e.stream, before, self._affected(before, e.obj))
        elif e.stream.startswith("core/pods/"):
            self.pods.apply(e.stream, e.type, e.obj)

    def _affected(self, *sets: Obj | None) -> list[str]:
        out: list[str] = []
        for rs in sets:
            if rs is None:
                continue
            ref = controller_ref_of(rs)
            if ref is None:
                out += self.owners_in(_meta(rs).get("namespace") or "")
            elif ref.get("kind") == "Deployment":
                out.append(ref.get("uid") or "")
        return out

    def _set(self, e: Recorded) -> None:
        ref = controller_ref_of(e.obj)
        if ref is None or ref.get("kind") != "Deployment":
            return
        at = self.owner_event(e.causation, ref.get("uid"))
        if at is None:
            return
        before = self.sets.get(e.stream)
        name = _meta(e.obj).get("name")
        if e.type == CREATED:
            word = f"create {name} replicas={deployment_controller.replicas_of(e.obj)}"
        elif e.type in (DELETING, DELETED):
            if before is None or _meta(before).get("deletionTimestamp"):
                return
            word = f"delete {name}"
        elif e.type == STATUS_UPDATED:
            return   # the ReplicaSet controller's, whatever its causation
        else:
            if before is not None and controller_ref_of(before) is None:
                return   # adoption: claim() replays it
            word = _update_word(before, e.obj)
        d = self.decision_for(at[2], e.causation, e.position - 1)
        d.writes.append(e.position)
        d.actors.append(e.actor)
        d.recorded.append(word)

    def children(self, dep: Obj) -> dict[str, Obj]:
        meta = _meta(dep)
        return {**self.sets.by_owner.get(meta.get("uid") or "", {}),
                **self.sets.orphans.get(meta.get("namespace") or "", {})}

    def replay(self, dep: Obj, detail: dict[str, Any], *, children: list[Obj] | None = None) -> list[str]:
        candidates = list(self.children(dep).values()) if children is None else children
        try:
            selector = LabelSelector.from_object((dep.get("spec") or {}).get("selector"))
        except errors.EventplaneError:
            detail["note"] = "invalid selector: the controller decides nothing"
            return []
        rss = claim(dep, selector, candidates).owned
        pods_by_rs = {_meta(rs).get("uid") or "": self.pods.owned_by(_meta(rs).get("uid") or "") for rs in rss}
        decided = self.decide(dep, rss, pods_by_rs, now=self.now)
        by_name = {_meta(rs).get("name") or "": rs for rs in rss}
        detail.update(replicas=deployment_controller.replicas_of(dep), replicaSets=sorted(by_name))
        return _rs_words(decided.actions, by_name)


# name → how to build its replayer; `decide` replaces the decision function (tests inject a changed one).
REPLAYABLE: dict[str, Callable[..., Any]] = {
    "replicaset": lambda decide=None: ReplicaSetReplayer(REPLICASET, **({"decide": decide} if decide else {})),
    "replicationcontroller": lambda decide=None: ReplicaSetReplayer(
        REPLICATION_CONTROLLER, **({"decide": decide} if decide else {})),
    "deployment": lambda decide=None: DeploymentReplayer(**({"decide": decide} if decide else {})),
}


def replayer(name: str, *, decide: Callable[..., Any] | None = None) -> ReplicaSetReplayer | DeploymentReplayer:
    """The replayer of controller `name` (a KeyError for a name not in REPLAYABLE)."""
    return REPLAYABLE[name](decide)


def replay(name: str, events: Iterable[Recorded], *, decide: Callable[..., Any] | None = None) -> list[Decision]:
    """Every decision of `name` recorded in `events` (in log order), replayed."""
    r = replayer(name, decide=decide)
    for e in events:
        feed(r, e)
    return r.decisions()


def feed(r: ReplicaSetReplayer | DeploymentReplayer, e: Recorded) -> None:
    r.set_time(e)
    r.feed(e)

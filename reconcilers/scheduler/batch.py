"""Placing a run of pending pods at once: Borg's equivalence classes carried into placement itself.

Fed by the scheduler loop with the pods it popped from the queue (priority
order) and the cache's Snapshot; returns one Placement per pod (its node or
none, the compact record of why, the filters that rejected nodes) and the
snapshot with the placed pods in it, which the loop adopts as "assumed".

Consecutive pods of one equivalence class whose feasibility cannot depend on
one another — no required inter-pod (anti-)affinity and no DoNotSchedule
topology spread — are placed in one incremental pass:

- the first pod is decided by pipeline.schedule (every examined node filtered
  and scored, with the caches);
- for each next pod only the node that took the previous pod is filtered and
  scored again; scorers whose normalization reads other nodes are normalized
  again (SelectorSpread's zone counts every pod, max-based ones when the
  feasible set changed);
- when placements leave fewer feasible nodes than `nodes_to_find`, the window
  grows from where the first pod's search stopped, so relaxed randomization
  keeps its meaning: stop once enough feasible nodes are known.

This gives the same choices as deciding the pods one by one against the same
window of nodes. Other pods (or all, with Options.equivalence_classes off) are
decided one by one by pipeline.schedule, each against the snapshot its
predecessors left.
"""
from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .filters import DEFAULT_FILTERS, Filter, applicable, hard_spread_constraints
from .pipeline import Cache, Decision, Options, _reasons, equivalence_class, nodes_to_find, schedule
from .record import TOP, Record, build, from_decision
from .resources import ZONE_LABEL, Obj, Requests, Snapshot, pod_key, pod_requests
from .scorers import DEFAULT_PROFILE, MAX_SCORE, Profile, Scorer, SelectorSpread
from .volumes import has_claims


@dataclass
class Placement:
    pod: Obj
    node: str | None
    record: Record
    rejected_by: frozenset[str]          # filters that rejected at least one examined node
    decision: Decision | None = None     # the full Decision when pipeline.schedule made it
    requests: Requests | None = None     # the pod's (requests, non-zero requests), for NodeCache.assume


def batchable(pod: Obj) -> bool:
    """Can placing one pod of this class change where another may go, beyond the node it took?"""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        if (affinity.get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution"):
            return False
    return not hard_spread_constraints(pod)


def place(pods: Sequence[Obj], snapshot: Snapshot, profile: Profile = DEFAULT_PROFILE, options: Options = Options(),
          *, filters: Sequence[Filter] = DEFAULT_FILTERS, start: int = 0, cache: Cache | None = None,
          top: int = TOP, states: ClassStates | None = None) -> tuple[list[Placement], Snapshot, int]:
    """Decide every pod; returns the placements (in the order of `pods`), the snapshot after them and the
    next offset. With equivalence classes on, pods of equal priority are taken class by class (each class
    where its first pod stood), as Borg groups a job's tasks: a class's pods are then consecutive.

    `states` (from the scheduler loop) keeps each class's feasibility and scores from one pass to the
    next, brought up to date from the cache's log of changed nodes; without it every pass starts afresh."""
    classes: list[str | None] = [None] * len(pods)
    order = list(range(len(pods)))
    if options.equivalence_classes:
        groups: dict[tuple[int, str], list[int]] = {}
        for k, pod in enumerate(pods):
            if has_claims(pod):
                # Decided alone, each against what its predecessors left: placing one pod can decide
                # where its claim is provisioned, and so where the next pod using it may go.
                groups[(_priority(pod), f"claims:{k}")] = [k]
                continue
            classes[k] = equivalence_class(pod)
            groups.setdefault((_priority(pod), classes[k]), []).append(k)
        order = [k for group in groups.values() for k in group]
        order.sort(key=lambda k: -_priority(pods[k]))   # stable: groups keep their first pod's place
    ctx = _Pass(profile, options, tuple(filters), cache, top, states)
    placed, snapshot, start = ctx.run([pods[k] for k in order], [classes[k] for k in order], snapshot, start)
    out: list[Placement | None] = [None] * len(pods)
    for k, pl in zip(order, placed):
        out[k] = pl
    return out, snapshot, start  # type: ignore[return-value]


def _priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


class ChangeLog(Protocol):
    """What the scheduler's cache tells a pass: `epoch` changes when something every class must see
    changed (a node, a pod with anti-affinity); `index` counts node-local changes; `since(i)` names the
    nodes changed after index i (None when no longer known)."""

    epoch: Any
    index: int

    def since(self, index: int) -> list[str] | None: ...


@dataclass
class ClassStates:
    """Class states kept between passes (at most `limit`, the least recently used dropped first)."""

    log: ChangeLog
    limit: int = 256
    runs: dict[str, _ClassRun] = field(default_factory=dict)
    reused: int = 0
    rebuilt: int = 0


class _Pass:
    def __init__(self, profile: Profile, options: Options, filters: tuple[Filter, ...], cache: Cache | None,
                 top: int, states: ClassStates | None) -> None:
        self.profile, self.options, self.filters, self.cache, self.top = profile, options, filters, cache, top
        self.states = states
        self.names = [f.name for f in filters]
        self.moved: list[str] = []    # nodes that received a pod earlier in this pass

    def run(self, pods: Sequence[Obj], classes: Sequence[str | None], snapshot: Snapshot,
            start: int) -> tuple[list[Placement], Snapshot, int]:
        out: list[Placement] = []
        log = self.states.log if self.states is not None else None
        pass_index = log.index if log is not None else 0
        used: list[_ClassRun] = []
        i = 0
        while i < len(pods):
            pod = pods[i]
            j = i + 1
            if classes[i] is not None:
                while j < len(pods) and classes[j] == classes[i]:
                    j += 1
            if classes[i] is None or (j - i == 1 and self.states is None):
                d = schedule(pod, snapshot, self.profile, self.options, filters=self.filters, start=start,
                             cache=self.cache)
                start = d.next_start
                out.append(_from_decision(pod, d, self.names, self.top))
                if d.node is not None:
                    snapshot = snapshot.with_pod(pod, d.node)
                    self.moved.append(d.node)
            else:
                run = self._state(classes[i], pod, snapshot, start, log, pass_index)
                for index, p in enumerate(pods[i:j]):
                    pl = run.take(p, index, j - i)
                    out.append(pl)
                    if pl.node is not None:
                        self.moved.append(pl.node)
                snapshot, start = run.snapshot, run.next_start
                used.append(run)
            i = j
        for run in used:
            run.synced = pass_index   # the loop assumes this pass's pods next: the log will name them
        return out, snapshot, start

    def _state(self, cls: str, pod: Obj, snapshot: Snapshot, start: int, log: ChangeLog | None,
               pass_index: int) -> _ClassRun:
        states = self.states
        if states is not None:
            run = states.runs.pop(cls, None)
            if run is not None and run.epoch == log.epoch and run.avoid == snapshot.avoid:
                changed = log.since(run.synced)
                if changed is not None:
                    changed = list(dict.fromkeys(changed))   # the log names a node once per pod change
                if changed is not None and len(changed) <= run.examined:
                    run.refresh(snapshot, changed + self.moved)
                    states.runs[cls] = run
                    states.reused += 1
                    return run
            states.rebuilt += 1
        run = _ClassRun(pod, snapshot, self.profile, self.options, self.filters, start, self.cache, self.top)
        run.epoch = log.epoch if log is not None else None
        run.synced = pass_index
        if states is not None:
            states.runs[cls] = run
            while len(states.runs) > states.limit:
                states.runs.pop(next(iter(states.runs)))
        return run


def _from_decision(pod: Obj, d: Decision, names: list[str], top: int) -> Placement:
    rejected = frozenset(r.filters[-1].name for r in d.results if not r.feasible)
    return Placement(pod, d.node, from_decision(d, names, top=top), rejected, d)


_UNSEEN = object()


class _ClassRun:
    """The incremental state of placing pods of one batchable class."""

    def __init__(self, pod: Obj, snapshot: Snapshot, profile: Profile, options: Options,
                 filters: Sequence[Filter], start: int, cache: Cache | None, top: int) -> None:
        self.pod, self.snapshot, self.profile, self.options = pod, snapshot, profile, options
        self.names = [f.name for f in filters]
        self.filters, self.cache, self.top = applicable(filters, pod), cache, top
        self.scope_of = {f.name: f.scope for f in filters}
        self._cluster_filters = tuple(f for f in self.filters if f.scope != "node")
        # Equal within the class (its key holds both): computed once, not per placed pod.
        self.requests: Requests = (pod_requests(pod), pod_requests(pod, non_zero=True))
        self.cluster = not batchable(pod)   # placing one of its pods may change other nodes' feasibility
        self.parked: dict[str, dict[str, tuple[int, str]]] = {}   # raw scores of nodes out for a while
        self.avoid = snapshot.avoid
        self.epoch: Any = None
        self.synced = 0
        n = len(snapshot.nodes)
        self.n = n
        relaxed = options.relaxed_randomization
        self.to_find = nodes_to_find(n, options.percentage_of_nodes_to_score) if relaxed else n
        self.start = start % n if (n and relaxed) else 0
        self.examined = 0
        self.next_start = self.start
        self.order: dict[str, int] = {}
        self.feasible: set[str] = set()
        self.rejected: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.scorers: list[tuple[Scorer, int]] = list(profile.scorers)
        self.raw: dict[str, dict[str, tuple[int, str]]] = {s.name: {} for s, _ in self.scorers}
        self.norm: dict[str, dict[str, int]] = {s.name: {} for s, _ in self.scorers}
        self.states: dict[str, Any] = {}
        self.score_states: dict[str, Any] = {}
        self.zone_of: dict[str, str] = {}
        self.identity = {s.name for s, _ in self.scorers if type(s).normalize is Scorer.normalize}
        self.spread = {s.name for s, _ in self.scorers if isinstance(s, SelectorSpread)}
        self.base: dict[str, int] = {}
        self._ranked: list[str] | None = None
        self._moved_raw: set[str] = set()   # scorers with a raw value changed since the last normalization
        # SelectorSpread, kept incrementally: zone totals and a histogram of node counts give its two
        # maxima without a pass over the nodes; a node's score is then a function of (count, zone).
        self.sp = next(iter(self.spread)) if len(self.spread) == 1 else None
        self.sp_w = next((w for s, w in self.scorers if s.name == self.sp), 0)
        self.sp_zone: dict[str, int] = {}
        self.sp_hist: dict[int, int] = {}
        # The feasible nodes ranked without a pass over them per pod: in buckets of equal SelectorSpread
        # input (count, zone) — within one, the rest of the total (`base`) decides — each kept sorted by
        # (−base, examination order); the nodes changed since the last ranking are moved (`_dirty`).
        self._buckets: dict[Any, list[tuple[int, int, str]]] | None = None
        self._bucket_of: dict[str, tuple[Any, tuple[int, int, str]]] = {}
        self._dirty: set[str] = set()
        self._entries: dict[str, list[list[Any]]] = {}   # see _scores_of
        self._sp_at = next((k for k, (s, _) in enumerate(self.scorers) if s.name == self.sp), -1)
        self._entered: set[str] = set()   # nodes that became feasible since the last normalization
        self._groups: tuple[dict, dict, frozenset] | None = None   # the rejections, grouped for the record
        self._domains: tuple[tuple, dict[tuple, list[str]]] | None = None   # see _recheck
        self._verdicts: dict[tuple, tuple] = {}
        self._sp_score: Callable[[int, str | None], int] | None = None
        if any(f.prefilter for f in self.filters):
            # A PreFilter may turn the pod away from every node at once: the pipeline's decision says so.
            self._adopt(schedule(pod, snapshot, profile, options, filters=filters, start=start, cache=cache))
        else:
            # The first pod's decision, made as pipeline.schedule makes it (nodes from the offset until
            # enough fit, each filtered up to its first failure, then scored), straight into this state.
            self._grow()
            self._normalize([], True)

    def _adopt(self, d: Decision) -> None:
        """Take over a pipeline Decision as the state."""
        self.examined = len(d.results)
        self.next_start = d.next_start
        for k, r in enumerate(d.results):
            self.order[r.node] = k
            if r.feasible:
                self.feasible.add(r.node)
                for s in r.scores:
                    self.raw[s.name][r.node] = (s.raw, s.label)
                    self.norm[s.name][r.node] = s.score
            else:
                last = r.filters[-1]
                self.rejected[r.node] = (last.name, last.reasons)
        self.zone_of = {name: info.labels[ZONE_LABEL] for name in self.feasible
                        if (info := self.snapshot.get(name)) is not None and ZONE_LABEL in info.labels}
        fixed = [(self.norm[s.name], w) for s, w in self.scorers if s.name not in self.spread]
        self.base = {n: sum(w * norm[n] for norm, w in fixed) for n in self.feasible}
        if self.sp is not None:
            for n in self.feasible:
                self._sp_add(n, self.raw[self.sp][n][0])

    # --- one node, filtered and scored for this class ---

    def _filter(self, name: str, cluster_only: bool = False) -> tuple[str, tuple[str, ...]] | None:
        snapshot = self.snapshot
        info = snapshot.get(name)
        pod, states, cache = self.pod, self.states, self.cache
        for f in (self._cluster_filters if cluster_only else self.filters):
            state = states.get(f.name, _UNSEEN)
            if state is _UNSEEN:   # prepared when first needed (kube's PreFilter)
                state = states[f.name] = f.prepare(pod, snapshot)
            if cache is not None:
                cache.filter_runs += 1
            reasons = f.check(pod, info, snapshot, state)
            if reasons:
                return f.name, _reasons(reasons)
        return None

    def _sp_add(self, name: str, count: int) -> None:
        zone = self.zone_of.get(name)
        if zone is not None:
            self.sp_zone[zone] = self.sp_zone.get(zone, 0) + count
        self.sp_hist[count] = self.sp_hist.get(count, 0) + 1

    def _sp_remove(self, name: str, count: int) -> None:
        zone = self.zone_of.get(name)
        if zone is not None:
            self.sp_zone[zone] -= count
        left = self.sp_hist[count] - 1
        if left:
            self.sp_hist[count] = left
        else:
            del self.sp_hist[count]

    def _sp_scores(self) -> Callable[[int, str | None], int]:
        """SelectorSpread's normalized score of a node by (its count, its zone): normalize_zoned's formula."""
        max_node = max(self.sp_hist, default=0)
        max_zone = max(self.sp_zone.values(), default=0)
        zones = self.sp_zone
        memo: dict[tuple[int, str | None], int] = {}

        def score(count: int, zone: str | None) -> int:
            value = memo.get((count, zone))
            if value is None:
                s = MAX_SCORE * (max_node - count) / max_node if max_node > 0 else MAX_SCORE
                if zone is not None:
                    zs = MAX_SCORE * (max_zone - zones[zone]) / max_zone if max_zone > 0 else MAX_SCORE
                    s = s / 3 + zs * 2 / 3
                value = memo[(count, zone)] = int(s)
            return value
        return score

    def _score(self, name: str) -> None:
        """Score one node: values only (Scorer.value); a label is made when a record shows the node."""
        snapshot = self.snapshot
        info = snapshot.get(name)
        pod, states, cache, raw, sp = self.pod, self.score_states, self.cache, self.raw, self.sp
        for s, _ in self.scorers:
            state = states.get(s.name, _UNSEEN)
            if state is _UNSEEN:
                state = states[s.name] = s.prepare(pod, snapshot)
            value = s.value(pod, info, snapshot, state)
            if cache is not None:
                cache.score_runs += 1
            table = raw[s.name]
            old = table.get(name)
            if old is None or old[0] != value:
                self._moved_raw.add(s.name)
                if s.name == sp:
                    if old is not None:
                        self._sp_remove(name, old[0])
                    self._sp_add(name, value)
            table[name] = (value, None)

    def _label(self, scorer: Scorer, name: str) -> str:
        """The label of a node's score, made (and kept) when first asked: the node and the class's scoring
        state are those its value was computed from (a changed node is scored again)."""
        value, label = self.raw[scorer.name][name]
        if label is None:
            label = scorer.score(self.pod, self.snapshot.get(name), self.snapshot,
                                 self.score_states.get(scorer.name)).label
            self.raw[scorer.name][name] = (value, label)
        return label

    def _examine(self, name: str, *, rescore: bool = True, cluster_only: bool = False,
                 verdict: Any = _UNSEEN) -> bool:
        """Filter (and if feasible score) one node; True when the feasible set changed. `cluster_only`
        runs only the filters that read other nodes (the node itself is unchanged), or takes their
        `verdict` when the caller knows it; a node that stays feasible is scored again only with
        `rescore`."""
        was = name in self.feasible
        self._dirty.add(name)
        self._entries.pop(name, None)
        before = self.rejected.get(name)
        rejected = self._filter(name, cluster_only) if verdict is _UNSEEN else verdict
        if rejected is None:
            self.feasible.add(name)
            if not was:
                self._entered.add(name)
            self.rejected.pop(name, None)
            info = self.snapshot.get(name)
            if info is not None and ZONE_LABEL in info.labels:
                self.zone_of[name] = info.labels[ZONE_LABEL]
            parked = self.parked.pop(name, None)
            if not was and parked is not None and not rescore:
                for scorer, value in parked.items():   # back from a spread/affinity rejection, unchanged
                    self.raw[scorer][name] = value
                    self._moved_raw.add(scorer)
                if self.sp is not None:
                    self._sp_add(name, parked[self.sp][0])
            elif rescore or not was:
                self._score(name)
        else:
            self.feasible.discard(name)
            self.rejected[name] = rejected
            if self.sp is not None and name in self.raw[self.sp]:
                self._sp_remove(name, self.raw[self.sp][name][0])
            if cluster_only and was:
                # Rejected for other nodes' sake: its own scores still hold if it comes back.
                self.parked[name] = {scorer: table[name] for scorer, table in self.raw.items()}
            elif not cluster_only:
                self.parked.pop(name, None)   # the node itself changed: what was parked is stale
            for table in (*self.raw.values(), *self.norm.values()):
                table.pop(name, None)
            self.base.pop(name, None)
        if self.rejected.get(name) != before:
            self._groups = None
        if was != (name in self.feasible):
            self._ranked = None
            return True
        return False

    def _recheck(self, rescore: set[str]) -> None:
        """For a class whose feasibility reads other nodes (spread, inter-pod affinity): prepare those
        filters again and bring every examined node in line with them; the `rescore` nodes get every
        filter and scorer again.

        Those filters read only a node's labels under their topology keys (Filter.domain), so the
        examined nodes are kept grouped by those labels' values (a zone, say) and each group's verdict
        is computed once: a group whose verdict did not change since the last recheck is skipped
        whole, and only a group whose verdict moved is walked node by node."""
        pod, snapshot, states = self.pod, self.snapshot, self.states
        cluster = [f for f in self.filters if f.scope == "cluster"]
        keys: list[str] | None = []
        for f in cluster:
            states[f.name] = f.prepare(pod, snapshot)
            domain = f.domain(states[f.name])
            keys = None if domain is None or keys is None else keys + list(domain)
        checks = [(f.name, f.check, states[f.name]) for f in cluster]

        def verdict_on(info: Any) -> tuple[str, tuple[str, ...]] | None:
            for fname, check, state in checks:
                reasons = check(pod, info, snapshot, state)
                if reasons:
                    return fname, _reasons(reasons)
            return None

        feasible, rejected, scope_of = self.feasible, self.rejected, self.scope_of
        changed = False
        for name in rescore:
            if name in self.order:
                changed |= self._examine(name)
        if keys is None:
            groups: Any = [(None, list(self.order))]   # no grouping: every node checked on its own
        else:
            key = tuple(dict.fromkeys(keys))
            if self._domains is None or self._domains[0] != key:
                by_domain: dict[tuple, list[str]] = {}
                for name in self.order:
                    labels = snapshot.get(name).labels
                    by_domain.setdefault(tuple(labels.get(k) for k in key), []).append(name)
                self._domains, self._verdicts = (key, by_domain), {}
            groups = self._domains[1].items()
        verdicts = self._verdicts
        for domain, names in groups:
            if domain is not None:
                verdict = verdict_on(snapshot.get(names[0]))
                if verdicts.get(domain, _UNSEEN) == verdict:
                    continue   # every node of the group already stands as this verdict says
                verdicts[domain] = verdict
            moving = []
            for name in names:
                if name in rescore:
                    continue
                prev = rejected.get(name)
                if prev is not None and scope_of.get(prev[0]) == "node":
                    continue   # rejected by the node itself, which did not change
                if domain is None:
                    verdict = verdict_on(snapshot.get(name))
                # The common cases, without the bookkeeping: still feasible, or still turned away alike.
                if verdict is None and name in feasible:
                    continue
                if verdict is not None and verdict == prev:
                    continue
                if domain is None:
                    changed |= self._examine(name, rescore=False, cluster_only=True)
                else:
                    moving.append(name)
            if moving:
                changed |= self._turn(moving, verdict)
        changed |= self._grow()
        self._normalize(list(rescore), changed)

    def _turn(self, names: list[str], verdict: tuple[str, tuple[str, ...]] | None) -> bool:
        """`_examine(name, rescore=False, cluster_only=True, verdict=verdict)` for the nodes of one domain
        whose cluster-wide verdict moved (each in or out as a whole zone turns): the same bookkeeping,
        without a call per node. True when the feasible set changed."""
        feasible, rejected, parked, raw, base = self.feasible, self.rejected, self.parked, self.raw, self.base
        dirty, entries, sp = self._dirty, self._entries, self.sp
        self._groups = None   # every one of them changes its rejection
        changed = False
        if verdict is None:   # back from a rejection by a cluster-wide filter
            snapshot, zone_of, entered = self.snapshot, self.zone_of, self._entered
            for name in names:
                dirty.add(name)
                entries.pop(name, None)
                feasible.add(name)
                entered.add(name)
                rejected.pop(name, None)
                labels = snapshot.get(name).labels
                if ZONE_LABEL in labels:
                    zone_of[name] = labels[ZONE_LABEL]
                kept = parked.pop(name, None)
                if kept is not None:   # its own scores still hold: the node did not change
                    for scorer, value in kept.items():
                        raw[scorer][name] = value
                    self._moved_raw.update(kept)
                    if sp is not None:
                        self._sp_add(name, kept[sp][0])
                else:
                    self._score(name)
                changed = True
        else:
            tables = (*raw.values(), *self.norm.values())
            sp_raw = raw[sp] if sp is not None else None
            for name in names:
                dirty.add(name)
                entries.pop(name, None)
                rejected[name] = verdict
                base.pop(name, None)
                if name in feasible:   # out for other nodes' sake: its scores are parked for its return
                    feasible.discard(name)
                    if sp_raw is not None:
                        self._sp_remove(name, sp_raw[name][0])
                    parked[name] = {scorer: table[name] for scorer, table in raw.items()}
                    for table in tables:
                        table.pop(name, None)
                    changed = True
        if changed:
            self._ranked = None
        return changed

    def _grow(self) -> bool:
        """Examine further nodes (from where the search stopped) until enough are feasible."""
        changed = False
        nodes = self.snapshot.nodes
        while len(self.feasible) < self.to_find and self.examined < self.n:
            info = nodes[(self.start + self.examined) % self.n]
            name = info.name
            self.order[name] = self.examined
            if self._domains is not None:
                labels = info.labels
                self._domains[1].setdefault(tuple(labels.get(k) for k in self._domains[0]), []).append(name)
            self.examined += 1
            changed |= self._examine(name)
        self.next_start = (self.start + self.examined) % self.n if self.n else 0
        return changed

    def _normalize(self, touched: Sequence[str], set_changed: bool) -> None:
        """Normalized scores after the `touched` nodes changed (and nodes entered or left the feasible
        set); `base` (the weighted sum of every scorer but SelectorSpread, whose zone counts move with
        every pod) is kept current alongside: for every node only when a max-based normalization moved
        the scores of nodes that did not change themselves, else for the changed and entering nodes."""
        feasible = self.feasible
        touched = [n for n in dict.fromkeys([*touched, *self._entered]) if n in feasible]
        self._entered.clear()
        moved = set(touched)
        redo_base = False
        for s, _ in self.scorers:
            raw = self.raw[s.name]
            if s.name in self.spread:
                continue
            norm = self.norm[s.name]
            if s.name in self.identity:
                for n in touched:
                    norm[n] = raw[n][0]
            elif set_changed or s.name in self._moved_raw:
                # A max-based normalization: redo it, and every node's base only when it moved.
                new = s.normalize({k: v[0] for k, v in raw.items()}, self.snapshot)
                if not redo_base:
                    redo_base = any(new.get(k) != v for k, v in norm.items() if k not in moved)
                self.norm[s.name] = new
        fixed = [(self.norm[s.name], w) for s, w in self.scorers if s.name not in self.spread]
        if redo_base:
            self.base = {n: sum(w * norm[n] for norm, w in fixed) for n in feasible}
            self._ranked = None
            self._buckets = None
            self._entries.clear()
        else:
            base = self.base
            for n in touched:
                base[n] = sum(w * norm[n] for norm, w in fixed)
        self._moved_raw.clear()
        for s, _ in self.scorers:
            if s.name in self.spread and self.sp is None:
                self.norm[s.name] = SelectorSpread.normalize_zoned(
                    {k: v[0] for k, v in self.raw[s.name].items()}, self.zone_of)

    def _norm_of(self, scorer: str, node: str) -> int:
        if scorer == self.sp:
            return self._sp_score(self.raw[scorer][node][0], self.zone_of.get(node))
        return self.norm[scorer][node]

    def _ranked_nodes(self) -> list[str]:
        """The feasible nodes in examination order (so that ties go to the node examined first)."""
        if self._ranked is None:
            self._ranked = sorted(self.feasible, key=self.order.__getitem__)
        return self._ranked

    def _totals(self) -> dict[str, int]:
        """Every feasible node's total (the general case: more than one SelectorSpread scorer)."""
        base = self.base
        nodes = self._ranked_nodes()
        spread = [(self.norm[s.name], w) for s, w in self.scorers if s.name in self.spread]
        if not spread:
            return {n: base[n] for n in nodes}
        return {n: base[n] + sum(w * norm[n] for norm, w in spread) for n in nodes}

    def _bucket_key(self, name: str) -> Any:
        return (self.raw[self.sp][name][0], self.zone_of.get(name)) if self.sp is not None else None

    def _rank(self) -> None:
        """Bring the buckets up to date: all of them after a new base, else only the changed nodes."""
        base, order, feasible = self.base, self.order, self.feasible
        if self._buckets is None or len(self._dirty) > len(feasible) // 4:
            buckets: dict[Any, list[tuple[int, int, str]]] = {}
            where = {}
            counts, zone_of = (self.raw[self.sp], self.zone_of) if self.sp is not None else (None, None)
            for name in feasible:
                key = (counts[name][0], zone_of.get(name)) if counts is not None else None
                entry = (-base[name], order[name], name)
                buckets.setdefault(key, []).append(entry)
                where[name] = (key, entry)
            for entries in buckets.values():
                entries.sort()
            self._buckets, self._bucket_of = buckets, where
        else:
            buckets, where = self._buckets, self._bucket_of
            for name in self._dirty:
                old = where.pop(name, None)
                if old is not None:
                    entries = buckets[old[0]]
                    del entries[bisect.bisect_left(entries, old[1])]
                    if not entries:
                        del buckets[old[0]]
                if name in feasible:
                    key, entry = self._bucket_key(name), (-base[name], order[name], name)
                    bisect.insort(buckets.setdefault(key, []), entry)
                    where[name] = (key, entry)
        self._dirty.clear()

    def _best(self) -> tuple[list[str], dict[str, int]]:
        """The `top` best feasible nodes, best first (ties: the node examined first), and their totals."""
        top = self.top
        if self.sp is None and self.spread:
            totals = self._totals()
            return heapq.nlargest(top, totals, key=totals.__getitem__), totals   # stable: ties keep the order
        self._rank()
        if self.sp is None:
            entries = next(iter(self._buckets.values()), [])[:top]
            return [name for _, _, name in entries], {name: -b for b, _, name in entries}
        score = self._sp_score = self._sp_scores()
        w = self.sp_w
        heads = []
        for (count, zone), entries in self._buckets.items():
            add = w * score(count, zone)
            heads.append((entries[0][0] - add, add, entries))
        heads.sort(key=lambda h: h[0])
        candidates: list[tuple[int, int, str]] = []
        for head, add, entries in heads:   # best bucket first; stop at one that cannot reach the top
            if len(candidates) >= top:
                candidates.sort()
                del candidates[top:]
                if head > candidates[-1][0]:
                    break
            candidates.extend((b - add, o, name) for b, o, name in entries[:top])
        candidates.sort()
        del candidates[top:]
        return [name for _, _, name in candidates], {name: -t for t, _, name in candidates}

    def _rejections(self) -> tuple[dict, dict, frozenset]:
        """The rejected nodes grouped by (filter, reasons) in examination order, the count of each reason
        and the filters that rejected any: kept until a node's rejection changes."""
        if self._groups is None:
            order = self.order
            groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
            counts: dict[str, int] = {}
            for name in sorted(self.rejected, key=order.__getitem__):
                f, reasons = self.rejected[name]
                groups.setdefault((f, reasons), []).append(name)
                for r in reasons:
                    counts[r] = counts.get(r, 0) + 1
            self._groups = (groups, counts, frozenset(f for f, _ in groups))
        return self._groups

    def _record(self, pod: Obj, node: str | None, index: int, size: int, totals: dict[str, int],
                best: list[str]) -> Record:
        if node is not None and node not in best:
            best.append(node)
        groups, counts, _ = self._rejections()
        top = [(n, totals[n], self._scores_of(n)) for n in best]
        return build(pod=pod_key(pod), profile=self.profile.name, node=node, num_nodes=self.n,
                     examined=self.examined, feasible=len(self.feasible), start=self.start,
                     nodes_to_find=self.to_find, filters=self.names, top=top, rejected=groups,
                     reason_counts=counts, batch=(index, size) if size > 1 else None)

    def _scores_of(self, name: str) -> list[list[Any]]:
        """A node's [scorer, weight, score, label] lists for the record. Kept per node until the node is
        examined again or the normalizations are redone (records share them: nobody changes a record);
        SelectorSpread's score, which moves with every pod, is put in fresh."""
        entry = self._entries.get(name)
        if entry is None or self.spread and self.sp is None:
            entry = [[s.name, w, None if s.name == self.sp else self.norm[s.name][name], self._label(s, name)]
                     for s, w in self.scorers]
            self._entries[name] = entry
        if self.sp is None:
            return entry
        out = entry.copy()
        i = self._sp_at
        out[i] = [self.sp, self.sp_w, self._norm_of(self.sp, name), entry[i][3]]
        return out

    # --- the run ---

    def refresh(self, snapshot: Snapshot, changed: Sequence[str]) -> None:
        """Bring the state to `snapshot`, which differs from the state's only on the `changed` nodes."""
        self.snapshot = snapshot
        if self.cluster:
            self._recheck({n for n in changed if n in self.order})
            return
        set_changed = False
        for name in dict.fromkeys(changed):
            if name in self.order:
                set_changed |= self._examine(name)
        set_changed |= self._grow()
        self._normalize(list(changed), set_changed)

    def take(self, pod: Obj, index: int, size: int) -> Placement:
        """Place one pod of the class on the best node now, and bring the state up to date after it."""
        best, totals = self._best()
        node = best[0] if best else None
        record = self._record(pod, node, index, size, totals, best)
        pl = Placement(pod, node, record, self._rejections()[2], requests=self.requests)
        if node is not None:
            self.snapshot = self.snapshot.with_pod(pod, node, self.requests)
            if self.cluster:
                self._recheck({node})
                return pl
            changed = self._examine(node)
            changed |= self._grow()
            self._normalize([node], changed)
        return pl

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

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .filters import DEFAULT_FILTERS, Filter, hard_spread_constraints
from .pipeline import Cache, Decision, Options, _reasons, equivalence_class, nodes_to_find, schedule
from .record import TOP, Record, build, from_decision
from .resources import ZONE_LABEL, Obj, Snapshot, pod_key
from .scorers import DEFAULT_PROFILE, Profile, Scorer, SelectorSpread


@dataclass
class Placement:
    pod: Obj
    node: str | None
    record: Record
    rejected_by: frozenset[str]          # filters that rejected at least one examined node
    decision: Decision | None = None     # the full Decision when pipeline.schedule made it


def batchable(pod: Obj) -> bool:
    """Can placing one pod of this class change where another may go, beyond the node it took?"""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        if (affinity.get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution"):
            return False
    return not hard_spread_constraints(pod)


def place(pods: Sequence[Obj], snapshot: Snapshot, profile: Profile = DEFAULT_PROFILE, options: Options = Options(),
          *, filters: Sequence[Filter] = DEFAULT_FILTERS, start: int = 0, cache: Cache | None = None,
          top: int = TOP) -> tuple[list[Placement], Snapshot, int]:
    """Decide every pod; returns the placements (in the order of `pods`), the snapshot after them and the
    next offset. With equivalence classes on, pods of equal priority are taken class by class (each class
    where its first pod stood), as Borg groups a job's tasks: a class's pods are then consecutive."""
    classes: list[str | None] = [None] * len(pods)
    order = list(range(len(pods)))
    if options.equivalence_classes:
        groups: dict[tuple[int, str], list[int]] = {}
        for k, pod in enumerate(pods):
            if batchable(pod):
                classes[k] = equivalence_class(pod)
                groups.setdefault((_priority(pod), classes[k]), []).append(k)
            else:
                groups[(_priority(pod), f"#{k}")] = [k]
        order = [k for group in groups.values() for k in group]
        order.sort(key=lambda k: -_priority(pods[k]))   # stable: groups keep their first pod's place
    placed, snapshot, start = _place_in_order([pods[k] for k in order], [classes[k] for k in order], snapshot,
                                              profile, options, filters, start, cache, top)
    out: list[Placement | None] = [None] * len(pods)
    for k, pl in zip(order, placed):
        out[k] = pl
    return out, snapshot, start  # type: ignore[return-value]


def _priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def _place_in_order(pods: Sequence[Obj], classes: Sequence[str | None], snapshot: Snapshot, profile: Profile,
                    options: Options, filters: Sequence[Filter], start: int, cache: Cache | None,
                    top: int) -> tuple[list[Placement], Snapshot, int]:
    out: list[Placement] = []
    names = [f.name for f in filters]
    i = 0
    while i < len(pods):
        pod = pods[i]
        j = i + 1
        if classes[i] is not None:
            while j < len(pods) and classes[j] == classes[i]:
                j += 1
        if j - i == 1:
            d = schedule(pod, snapshot, profile, options, filters=filters, start=start, cache=cache)
            start = d.next_start
            out.append(_from_decision(pod, d, names, top))
            if d.node is not None:
                snapshot = snapshot.with_pod(pod, d.node)
        else:
            run = _ClassRun(pods[i:j], snapshot, profile, options, filters, start, cache, top)
            out.extend(run.place_all())
            snapshot, start = run.snapshot, run.next_start
        i = j
    return out, snapshot, start


def _from_decision(pod: Obj, d: Decision, names: list[str], top: int) -> Placement:
    rejected = frozenset(r.filters[-1].name for r in d.results if not r.feasible)
    return Placement(pod, d.node, from_decision(d, names, top=top), rejected, d)


class _ClassRun:
    """The incremental state of placing pods of one batchable class."""

    def __init__(self, pods: Sequence[Obj], snapshot: Snapshot, profile: Profile, options: Options,
                 filters: Sequence[Filter], start: int, cache: Cache | None, top: int) -> None:
        self.pods, self.snapshot, self.profile, self.options = pods, snapshot, profile, options
        self.filters, self.cache, self.top = tuple(filters), cache, top
        self.names = [f.name for f in filters]
        self.first = schedule(pods[0], snapshot, profile, options, filters=filters, start=start, cache=cache)
        d = self.first
        n = d.num_nodes
        self.n = n
        self.to_find = d.nodes_to_find
        self.start = d.start
        self.examined = len(d.results)
        self.next_start = d.next_start
        self.order: dict[str, int] = {}
        self.feasible: set[str] = set()
        self.rejected: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.scorers: list[tuple[Scorer, int]] = list(profile.scorers)
        self.raw: dict[str, dict[str, tuple[int, str]]] = {s.name: {} for s, _ in self.scorers}
        self.norm: dict[str, dict[str, int]] = {s.name: {} for s, _ in self.scorers}
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
        self.states: dict[str, Any] = {}
        self.score_states: dict[str, Any] = {}
        self.zone_of = {name: info.labels[ZONE_LABEL] for name in self.feasible
                        if (info := snapshot.get(name)) is not None and ZONE_LABEL in info.labels}
        self.identity = {s.name for s, _ in self.scorers if type(s).normalize is Scorer.normalize}
        self.spread = {s.name for s, _ in self.scorers if isinstance(s, SelectorSpread)}
        fixed = [(self.norm[s.name], w) for s, w in self.scorers if s.name not in self.spread]
        self.base = {n: sum(w * norm[n] for norm, w in fixed) for n in self.feasible}

    # --- one node, filtered and scored for this class ---

    def _filter(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        info = self.snapshot.get(name)
        pod = self.pods[0]
        for f in self.filters:
            if f.name not in self.states:
                self.states[f.name] = f.prepare(pod, self.snapshot)
            if self.cache is not None:
                self.cache.filter_runs += 1
            reasons = _reasons(f.check(pod, info, self.snapshot, self.states[f.name]))
            if reasons:
                return f.name, reasons
        return None

    def _score(self, name: str) -> None:
        info = self.snapshot.get(name)
        pod = self.pods[0]
        for s, _ in self.scorers:
            if s.name not in self.score_states:
                self.score_states[s.name] = s.prepare(pod, self.snapshot)
            value, label = s.score(pod, info, self.snapshot, self.score_states[s.name])
            if self.cache is not None:
                self.cache.score_runs += 1
            self.raw[s.name][name] = (value, label)

    def _examine(self, name: str) -> bool:
        """Filter (and if feasible score) one node; True when the feasible set changed."""
        was = name in self.feasible
        rejected = self._filter(name)
        if rejected is None:
            self.feasible.add(name)
            self.rejected.pop(name, None)
            self._score(name)
            info = self.snapshot.get(name)
            if info is not None and ZONE_LABEL in info.labels:
                self.zone_of[name] = info.labels[ZONE_LABEL]
        else:
            self.feasible.discard(name)
            self.rejected[name] = rejected
            for table in (*self.raw.values(), *self.norm.values()):
                table.pop(name, None)
        return was != (name in self.feasible)

    def _grow(self) -> bool:
        """Examine further nodes (from where the search stopped) until enough are feasible."""
        changed = False
        nodes = self.snapshot.nodes
        while len(self.feasible) < self.to_find and self.examined < self.n:
            name = nodes[(self.start + self.examined) % self.n].name
            self.order[name] = self.examined
            self.examined += 1
            changed |= self._examine(name)
        self.next_start = (self.start + self.examined) % self.n if self.n else 0
        return changed

    def _normalize(self, touched: str | None, set_changed: bool) -> None:
        """Normalized scores after `touched` changed; `base` (the weighted sum of every scorer but
        SelectorSpread, whose zone counts move with every pod) is kept current alongside."""
        redo_base = set_changed
        for s, _ in self.scorers:
            raw = self.raw[s.name]
            if s.name in self.spread:
                continue
            if s.name in self.identity:
                if set_changed:
                    self.norm[s.name] = {k: v[0] for k, v in raw.items()}
                elif touched is not None and touched in raw:
                    self.norm[s.name][touched] = raw[touched][0]
            elif set_changed or (touched is not None and touched in raw):
                # A max-based normalization: redo it (and every node's base) only when it moved.
                new = s.normalize({k: v[0] for k, v in raw.items()}, self.snapshot)
                if new != self.norm[s.name]:
                    self.norm[s.name] = new
                    redo_base = True
        fixed = [(self.norm[s.name], w) for s, w in self.scorers if s.name not in self.spread]
        if redo_base:
            self.base = {n: sum(w * norm[n] for norm, w in fixed) for n in self.feasible}
        elif touched is not None and touched in self.feasible:
            self.base[touched] = sum(w * norm[touched] for norm, w in fixed)
        for s, _ in self.scorers:
            if s.name in self.spread:
                self.norm[s.name] = SelectorSpread.normalize_zoned(
                    {k: v[0] for k, v in self.raw[s.name].items()}, self.zone_of)

    def _totals(self) -> dict[str, int]:
        base = self.base
        spread = [(self.norm[s.name], w) for s, w in self.scorers if s.name in self.spread]
        if not spread:
            return {n: base[n] for n in self.feasible}
        if len(spread) == 1:
            (norm, w), = spread
            return {n: base[n] + w * norm[n] for n in self.feasible}
        return {n: base[n] + sum(w * norm[n] for norm, w in spread) for n in self.feasible}

    def _record(self, pod: Obj, node: str | None, index: int, totals: dict[str, int], best: list[str]) -> Record:
        order = self.order
        if node is not None and node not in best:
            best.append(node)
        groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        counts: dict[str, int] = {}
        for name in sorted(self.rejected, key=order.__getitem__):
            f, reasons = self.rejected[name]
            groups.setdefault((f, reasons), []).append(name)
            for r in reasons:
                counts[r] = counts.get(r, 0) + 1
        top = [(n, totals[n], [(s.name, w, self.norm[s.name][n], self.raw[s.name][n][1]) for s, w in self.scorers])
               for n in best]
        return build(pod=pod_key(pod), profile=self.profile.name, node=node, num_nodes=self.n,
                     examined=self.examined, feasible=len(self.feasible), start=self.start,
                     nodes_to_find=self.to_find, filters=self.names, top=top, rejected=groups,
                     reason_counts=counts, batch=(index, len(self.pods)))

    # --- the run ---

    def place_all(self) -> list[Placement]:
        out: list[Placement] = []
        d = self.first
        names = self.names
        first = _from_decision(self.pods[0], d, names, self.top)
        first.record["batch"] = [0, len(self.pods)]
        out.append(first)
        node = d.node
        for index, pod in enumerate(self.pods[1:], start=1):
            if node is None:
                # Nothing changed since the last pod of this class failed: it fails the same way.
                rec = dict(out[-1].record, pod=pod_key(pod), batch=[index, len(self.pods)])
                out.append(Placement(pod, None, rec, out[-1].rejected_by))
                continue
            self.snapshot = self.snapshot.with_pod(self.pods[index - 1], node)
            changed = self._examine(node)
            changed |= self._grow()
            self._normalize(node, changed)
            totals = self._totals()
            order = self.order
            best = heapq.nlargest(self.top, totals, key=lambda n: (totals[n], -order[n]))
            node = best[0] if best else None
            rejected_by = frozenset(f for f, _ in self.rejected.values())
            out.append(Placement(pod, node, self._record(pod, node, index, totals, best), rejected_by))
        if node is not None:
            self.snapshot = self.snapshot.with_pod(self.pods[-1], node)
        return out

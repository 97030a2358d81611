"""The compact record of one scheduling decision, stored in the log and printed by `epctl explain-schedule`.

Fed by batch.py (which builds it from a pipeline.Decision, or from its own
incremental state for the later pods of a batch); the scheduler loop stores it
as JSON in the annotation RECORD_ANNOTATION of the Kubernetes Event it posts
for the outcome (Scheduled or FailedScheduling), so the explanation comes from
the event history, never from the scheduler's memory. epctl reads the Event
back and prints it with `explain_record`.

It is compact on purpose: a decision over 1,000 nodes examines hundreds of
them. Kept are the scores of the best TOP feasible nodes (and of the chosen
one), each scorer's score, weight and label; and every rejection grouped by
(filter, reasons) with its node count and up to NAMES_PER_GROUP node names.
The filters a rejected node passed are those before its failing filter in
`filters` (kube's order; a node stops at its first failure).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .explain import fit_error
from .pipeline import Decision

RECORD_ANNOTATION = "scheduling.eventplane.io/decision"
VERSION = 1
TOP = 10
NAMES_PER_GROUP = 50

Record = dict[str, Any]


def build(*, pod: str, profile: str, node: str | None, num_nodes: int, examined: int, feasible: int, start: int,
          nodes_to_find: int, filters: Sequence[str], top: Iterable[tuple[str, int, Sequence[Sequence[Any]]]],
          rejected: Mapping[tuple[str, tuple[str, ...]], Sequence[str]], reason_counts: Mapping[str, int],
          batch: tuple[int, int] | None = None, prefilter: str | None = None) -> Record:
    """`top`: (node, total, scores) best first, scores being [scorer, weight, score, label] per scorer (a
    list of such lists is taken as it is, not copied: records are never changed; any other sequence is
    copied into lists); `rejected`: (filter, reasons) → node names; `reason_counts`: reason → nodes (for
    the FitError message)."""
    rec: Record = {
        "v": VERSION, "pod": pod, "profile": profile, "node": node, "nodes": num_nodes, "examined": examined,
        "feasible": feasible, "start": start, "nodesToFind": nodes_to_find, "filters": list(filters),
        "top": [{"node": n, "total": t, "scores": scores if type(scores) is list else [list(s) for s in scores]}
                for n, t, scores in top],
        "rejected": [{"filter": f, "reasons": list(reasons), "count": len(names),
                      "nodes": list(names[:NAMES_PER_GROUP])}
                     for (f, reasons), names in sorted(rejected.items(), key=lambda kv: (-len(kv[1]), kv[0]))],
        "message": (f"Successfully assigned {pod} to {node}" if node is not None
                    else fit_error(num_nodes, dict(reason_counts), prefilter=prefilter)),
    }
    if batch is not None:
        rec["batch"] = list(batch)
    if prefilter is not None:
        rec["prefilter"] = prefilter
    return rec


def from_decision(decision: Decision, filters: Sequence[str], *, top: int = TOP) -> Record:
    feasible = sorted((r for r in decision.results if r.feasible),
                      key=lambda r: -(r.total or 0))  # stable: ties keep the examination order
    best = feasible[:top]
    if decision.node is not None and all(r.node != decision.node for r in best):
        best += [r for r in feasible if r.node == decision.node]
    rejected: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for r in decision.results:
        if not r.feasible:
            last = r.filters[-1]
            rejected.setdefault((last.name, tuple(last.reasons)), []).append(r.node)
    return build(pod=decision.pod, profile=decision.profile, node=decision.node, num_nodes=decision.num_nodes,
                 examined=len(decision.results), feasible=len(feasible), start=decision.start,
                 nodes_to_find=decision.nodes_to_find, filters=filters,
                 top=[(r.node, r.total or 0, [[s.name, s.weight, s.score, s.label] for s in r.scores]) for r in best],
                 rejected=rejected, reason_counts=decision.reason_counts(), prefilter=decision.prefilter)


def dumps(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"))


def loads(text: str) -> Record:
    rec = json.loads(text)
    if not isinstance(rec, dict) or rec.get("v") != VERSION:
        raise ValueError(f"not a scheduling decision record of version {VERSION}")
    return rec


def explain_record(rec: Record, *, header: Sequence[str] = ()) -> str:
    """Per node: the filters it passed or the one that failed it, and each score with weight and label."""
    lines = list(header)
    lines.append(f"Pod {rec['pod']} (profile {rec['profile']})")
    if rec.get("node") is not None:
        lines.append(f"Decision: scheduled to {rec['node']}")
    else:
        lines.append(f"Decision: unschedulable: {rec['message']}")
    if rec.get("batch"):
        index, size = rec["batch"]
        lines.append(f"Placed as pod {index + 1} of {size} of one equivalence class (one feasibility pass)")
    lines.append(f"Examined {rec['examined']}/{rec['nodes']} nodes from offset {rec['start']}, "
                 f"{rec['feasible']} feasible (enough at {rec['nodesToFind']})")
    filters = rec.get("filters") or []
    if rec["top"]:
        shown = len(rec["top"])
        lines.append("")
        lines.append(f"Feasible nodes, best first ({shown} of {rec['feasible']} shown):")
        for entry in rec["top"]:
            mark = " <- chosen" if entry["node"] == rec.get("node") else ""
            lines.append(f"{entry['node']}: feasible, total {entry['total']}{mark}")
            lines.append(f"  filters passed: {', '.join(filters)}")
            for name, weight, score, label in entry["scores"]:
                lines.append(f"  score  {name}: {score} x {weight} = {score * weight} ({label})")
    if rec.get("prefilter"):
        group = rec["rejected"][0] if rec["rejected"] else {"filter": "?"}
        lines.append("")
        lines.append(f"Rejected before any node was examined: filter {group['filter']} (PreFilter): "
                     f"{rec['prefilter']}")
    elif rec["rejected"]:
        lines.append("")
        lines.append("Infeasible nodes:")
        for group in rec["rejected"]:
            f = group["filter"]
            passed = filters[:filters.index(f)] if f in filters else []
            why = "; ".join(group["reasons"])
            lines.append(f"{group['count']} node(s): filter {f} failed: {why}"
                         + (f" (passed: {', '.join(passed)})" if passed else ""))
            names = group["nodes"]
            more = group["count"] - len(names)
            lines.append("  " + ", ".join(names) + (f" and {more} more" if more > 0 else ""))
    not_examined = rec["nodes"] - rec["examined"]
    if not_examined > 0:
        lines.append("")
        lines.append(f"{not_examined} node(s) not examined (enough feasible nodes found)")
    if rec.get("preemption"):
        p = rec["preemption"]
        lines.append("")
        lines.append(f"Preemption: {p.get('summary', '')}")
    return "\n".join(lines) + "\n"

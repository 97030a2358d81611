"""Words for a Decision: the Kubernetes Event and the text of `epctl explain-schedule`.

Fed by pipeline.Decision; consumed by the scheduler loop (which posts the Event)
and by epctl (which prints a recorded decision). The failure message is
FitError.Error()'s: "0/N nodes are available: " then "COUNT REASON" strings
sorted as strings (Go's sort.Strings over the whole "count reason" text),
joined by ", ", ending with ".". Preemption's suffix (" preemption: …") is added
by the scheduler loop, which knows whether preemption found victims; the
loop's Events carry record.py's compact record rather than a whole Decision.
"""
from __future__ import annotations

from typing import NamedTuple

from .pipeline import Decision

NO_NODE_AVAILABLE = "0/{} nodes are available"


class EventText(NamedTuple):
    type: str  # "Normal" or "Warning"
    reason: str  # "Scheduled" or "FailedScheduling"
    message: str


def failure_message(decision: Decision) -> str:
    """kube-scheduler's FitError message for a decision that found no node."""
    return fit_error(decision.num_nodes, decision.reason_counts(), prefilter=decision.prefilter)


def fit_error(num_nodes: int, reason_counts: dict[str, int], *, prefilter: str | None = None) -> str:
    """FitError.Error(): "0/N nodes are available: " and the sorted "COUNT REASON" histogram; when a
    PreFilter rejected the pod, its reason once instead ("0/3 nodes are available: pod has unbound
    immediate PersistentVolumeClaims.")."""
    if num_nodes == 0:
        return "no nodes available to schedule pods"
    message = NO_NODE_AVAILABLE.format(num_nodes) + ":"
    if prefilter:
        return f"{message} {prefilter}."
    histogram = sorted(f"{count} {reason}" for reason, count in reason_counts.items())
    if histogram:
        message += f" {', '.join(histogram)}."
    return message


def event(decision: Decision) -> EventText:
    if decision.node is not None:
        return EventText("Normal", "Scheduled", f"Successfully assigned {decision.pod} to {decision.node}")
    if decision.num_nodes == 0:
        return EventText("Warning", "FailedScheduling", "no nodes available to schedule pods")
    return EventText("Warning", "FailedScheduling", failure_message(decision))


def explain(decision: Decision) -> str:
    """Per node: each filter passed or failed with its reason; each score with weight, label and the total."""
    lines = [f"Pod {decision.pod} (profile {decision.profile})"]
    if decision.node is not None:
        lines.append(f"Decision: scheduled to {decision.node}")
    else:
        lines.append(f"Decision: unschedulable: {event(decision).message}")
    lines.append(f"Examined {len(decision.results)}/{decision.num_nodes} nodes from offset {decision.start}, "
                 f"{len(decision.feasible)} feasible (enough at {decision.nodes_to_find})")
    ranked = sorted(decision.results, key=lambda r: (r.total is None, -(r.total or 0)))
    for r in ranked:
        lines.append("")
        mark = " <- chosen" if r.node == decision.node else ""
        shared = " (per-node filters shared by the equivalence class)" if r.cached else ""
        lines.append(f"{r.node}: " + (f"feasible, total {r.total}{mark}" if r.feasible else "infeasible") + shared)
        for f in r.filters:
            lines.append(f"  filter {f.name}: " + ("passed" if f.passed else "failed: " + "; ".join(f.reasons)))
        for s in r.scores:
            cached = " (cached)" if s.cached else ""
            lines.append(f"  score  {s.name}: {s.score} x {s.weight} = {s.score * s.weight} ({s.label}){cached}")
    not_examined = decision.num_nodes - len(decision.results)
    if not_examined:
        lines.append("")
        lines.append(f"{not_examined} node(s) not examined (enough feasible nodes found)")
    return "\n".join(lines) + "\n"

"""The scheduler's decision pipeline: pure functions from (pod, snapshot, profile, options) to a Decision.

resources.py parses requests and allocatable and holds the immutable Snapshot;
filters.py and scorers.py are the pipeline's pieces (volumes.py sorts a pod's
PersistentVolumeClaims for the volume filters); pipeline.py composes them
(with Borg's equivalence classes, score cache and relaxed randomization);
explain.py words a Decision as an Event and as `epctl explain-schedule` text.

Around it, the running component (docs/scheduler.md): queue.py (active,
backoff, unschedulable), cache.py (nodes, bound and assumed pods), batch.py
(placement per equivalence class), record.py (the decision stored on the
Event), preemption.py, and scheduler.py (informers, bindings, Events,
`run_scheduler`), which is imported on its own so the pipeline stays pure.
"""
from .explain import EventText, event, explain, failure_message
from .filters import DEFAULT_FILTERS, Filter
from .pipeline import Cache, Decision, NodeResult, Options, equivalence_class, nodes_to_find, plan, schedule
from .resources import NodeInfo, Snapshot, pod_requests
from .scorers import BIN_PACKING_PROFILE, DEFAULT_PROFILE, HYBRID_PROFILE, PROFILES, Profile, Scorer

__all__ = [
    "BIN_PACKING_PROFILE", "DEFAULT_FILTERS", "DEFAULT_PROFILE", "HYBRID_PROFILE", "PROFILES", "Cache",
    "Decision", "EventText", "Filter", "NodeInfo", "NodeResult", "Options", "Profile", "Scorer", "Snapshot",
    "equivalence_class", "event", "explain", "failure_message", "nodes_to_find", "plan", "pod_requests",
    "schedule",
]

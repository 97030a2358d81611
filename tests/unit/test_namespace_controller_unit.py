"""The namespace and ServiceAccount controllers' decisions, table-style."""
from __future__ import annotations

from collections import Counter

import pytest

from reconcilers.controllers.namespace import Progress, conditions, finalize_body, terminating
from reconcilers.controllers.serviceaccount import missing_default

NOW, EARLIER = "2026-01-01T00:01:00Z", "2026-01-01T00:00:00Z"


def ns(name="n", *, deleting=False, finalizers=("kubernetes",), phase="Active"):
    meta = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = EARLIER
    return {"metadata": meta, "spec": {"finalizers": list(finalizers)}, "status": {"phase": phase}}


@pytest.mark.parametrize("obj,expected", [
    (None, False),
    (ns(), False),
    (ns(deleting=True), True),
    (ns(deleting=True, finalizers=()), False),
    (ns(deleting=True, finalizers=("example.com/x",)), False),
])
def test_terminating(obj, expected):
    assert terminating(obj) is expected


def by_type(conds):
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in conds}


def test_conditions_when_everything_is_gone():
    out = by_type(conditions(Progress(), None, NOW))
    assert list(out) == ["NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
                         "NamespaceDeletionContentFailure", "NamespaceContentRemaining",
                         "NamespaceFinalizersRemaining"]
    assert out["NamespaceDeletionDiscoveryFailure"] == ("False", "ResourcesDiscovered",
                                                        "All resources successfully discovered")
    assert out["NamespaceDeletionContentFailure"] == (
        "False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization")
    assert out["NamespaceContentRemaining"] == ("False", "ContentRemoved", "All content successfully removed")
    assert out["NamespaceFinalizersRemaining"] == ("False", "ContentHasNoFinalizers",
                                                   "All content-preserving finalizers finished")


def test_conditions_with_content_and_finalizers_remaining():
    p = Progress(remaining=Counter({"pods.": 2, "widgets.example.com": 1}),
                 finalizers=Counter({"example.com/hold": 1}))
    out = by_type(conditions(p, None, NOW))
    assert out["NamespaceContentRemaining"] == (
        "True", "SomeResourcesRemain",
        "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances")
    assert out["NamespaceFinalizersRemaining"] == (
        "True", "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    assert not p.done


def test_conditions_with_failures():
    p = Progress(discovery_errors=["example.com/v1: boom"], delete_errors=["pods./x: denied"])
    out = by_type(conditions(p, None, NOW))
    assert out["NamespaceDeletionDiscoveryFailure"] == (
        "True", "DiscoveryFailed", "Discovery failed for some groups, 1 failing: example.com/v1: boom")
    assert out["NamespaceDeletionContentFailure"] == (
        "True", "ContentDeletionFailed", "Failed to delete all resource types, 1 remaining: pods./x: denied")
    assert not p.done and Progress().done


def test_transition_time_moves_only_with_the_status():
    first = conditions(Progress(remaining=Counter({"pods.": 1})), None, EARLIER)
    later = conditions(Progress(), first + [{"type": "Other", "status": "True"}], NOW)
    times = {c["type"]: c.get("lastTransitionTime") for c in later}
    assert times["NamespaceContentRemaining"] == NOW           # True → False
    assert times["NamespaceDeletionDiscoveryFailure"] == EARLIER  # False all along
    assert later[-1] == {"type": "Other", "status": "True"}       # someone else's condition is kept


def test_finalize_body_removes_only_kubernetes():
    obj = ns(deleting=True, finalizers=("kubernetes", "example.com/x"))
    out = finalize_body(obj)
    assert out["spec"]["finalizers"] == ["example.com/x"]
    assert obj["spec"]["finalizers"] == ["kubernetes", "example.com/x"]  # the cached object is untouched


@pytest.mark.parametrize("namespace,sa,expected", [
    (ns("a"), None, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "a"}}),
    (ns("a"), {"metadata": {"name": "default"}}, None),
    (ns("a", deleting=True), None, None),
    (ns("a", phase="Terminating"), None, None),
    (None, None, None),
])
def test_missing_default(namespace, sa, expected):
    assert missing_default(namespace, sa) == expected

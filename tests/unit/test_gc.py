"""The garbage collector's decisions, table-style: no server, no informers."""
from __future__ import annotations

import pytest

from reconcilers.controllers.garbagecollector import (ABSENT, FOREGROUND, ORPHAN, SOLID, WAITING, Delete, Dependent,
                                                      Ref, RemoveFinalizer, UpdateOwnerReferences, decide_deleting,
                                                      decide_dependent, graph_changed, owner_state)

POD = Ref("", "pods", "default", "p")
RS = Ref("apps", "replicasets", "default", "rs")


def obj(uid: str = "p-uid", *, owners: list[tuple[str, bool]] = (), finalizers: list[str] = (),
        deleting: bool = False) -> dict:
    meta: dict = {"name": "x", "namespace": "default", "uid": uid}
    if owners:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": u, "uid": u,
                                    **({"blockOwnerDeletion": True} if block else {})} for u, block in owners]
    if finalizers:
        meta["finalizers"] = list(finalizers)
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


DEPENDENT_CASES = [
    ("no owners: nothing", obj(), {}, False, []),
    ("owner alive: nothing", obj(owners=[("a", False)]), {"a": SOLID}, False, []),
    ("only owner gone: deleted in the background", obj(owners=[("a", False)]), {"a": ABSENT}, False,
     [Delete(POD, "p-uid", "Background")]),
    ("all owners gone", obj(owners=[("a", False), ("b", True)]), {"a": ABSENT, "b": ABSENT}, False,
     [Delete(POD, "p-uid", "Background")]),
    ("one owner gone, one alive: the dangling reference is dropped",
     obj(owners=[("a", False), ("b", False)]), {"a": ABSENT, "b": SOLID}, False,
     [UpdateOwnerReferences(POD, "p-uid", drop=frozenset({"a"}))]),
    ("owner waiting, another alive: the blocking reference is unblocked",
     obj(owners=[("a", True), ("b", False)]), {"a": WAITING, "b": SOLID}, False,
     [UpdateOwnerReferences(POD, "p-uid", unblock=frozenset({"a"}))]),
    ("owner waiting, non-blocking reference, another alive: nothing",
     obj(owners=[("a", False), ("b", False)]), {"a": WAITING, "b": SOLID}, False, []),
    ("owner waiting, no dependents: background", obj(owners=[("a", True)]), {"a": WAITING}, False,
     [Delete(POD, "p-uid", "Background")]),
    ("owner waiting, has dependents: foreground all the way down", obj(owners=[("a", True)]), {"a": WAITING}, True,
     [Delete(POD, "p-uid", "Foreground")]),
    ("owner gone, own orphan finalizer: orphan policy", obj(owners=[("a", False)], finalizers=[ORPHAN]),
     {"a": ABSENT}, True, [Delete(POD, "p-uid", "Orphan")]),
    ("already being deleted: nothing", obj(owners=[("a", False)], deleting=True), {"a": ABSENT}, False, []),
    ("owner of an unknown kind counts as alive", obj(owners=[("a", False)]), {}, False, []),
]


@pytest.mark.parametrize("name,o,owners,has_deps,expected", DEPENDENT_CASES, ids=[c[0] for c in DEPENDENT_CASES])
def test_decide_dependent(name, o, owners, has_deps, expected):
    assert decide_dependent(POD, o, owners, has_dependents=has_deps) == expected


def dep(name: str, *, deleting: bool = False, blocking: bool = False, has_deps: bool = False) -> Dependent:
    return Dependent(Ref("", "pods", "default", name), f"{name}-uid", deleting, blocking, has_deps)


DELETING_CASES = [
    ("not being deleted: nothing", obj("rs-uid", finalizers=[FOREGROUND]), [dep("a")], []),
    ("foreground, no dependents: finalizer removed", obj("rs-uid", finalizers=[FOREGROUND], deleting=True), [],
     [RemoveFinalizer(RS, "rs-uid", FOREGROUND)]),
    ("foreground: blocking dependents deleted, the finalizer waits",
     obj("rs-uid", finalizers=[FOREGROUND], deleting=True), [dep("a", blocking=True), dep("b", has_deps=True)],
     [Delete(Ref("", "pods", "default", "a"), "a-uid", "Background"),
      Delete(Ref("", "pods", "default", "b"), "b-uid", "Foreground")]),
    ("foreground: dependents already going are not deleted again, a blocking one still holds",
     obj("rs-uid", finalizers=[FOREGROUND], deleting=True), [dep("a", blocking=True, deleting=True)], []),
    ("foreground: only non-blocking dependents left: deleted, and the finalizer goes",
     obj("rs-uid", finalizers=[FOREGROUND], deleting=True), [dep("a")],
     [Delete(Ref("", "pods", "default", "a"), "a-uid", "Background"), RemoveFinalizer(RS, "rs-uid", FOREGROUND)]),
    ("orphan: references removed from every dependent, then the finalizer",
     obj("rs-uid", finalizers=[ORPHAN], deleting=True), [dep("a", blocking=True), dep("b")],
     [UpdateOwnerReferences(Ref("", "pods", "default", "a"), "a-uid", drop=frozenset({"rs-uid"})),
      UpdateOwnerReferences(Ref("", "pods", "default", "b"), "b-uid", drop=frozenset({"rs-uid"})),
      RemoveFinalizer(RS, "rs-uid", ORPHAN)]),
    ("other finalizers only: nothing", obj("rs-uid", finalizers=["example.com/x"], deleting=True), [dep("a")], []),
]


@pytest.mark.parametrize("name,o,deps,expected", DELETING_CASES, ids=[c[0] for c in DELETING_CASES])
def test_decide_deleting(name, o, deps, expected):
    assert decide_deleting(RS, o, deps) == expected


@pytest.mark.parametrize("owner,uid,expected", [
    (None, "a", ABSENT),
    (obj("b"), "a", ABSENT),                                   # same name, another incarnation
    (obj("a"), "a", SOLID),
    (obj("a", finalizers=["example.com/x"], deleting=True), "a", SOLID),
    (obj("a", finalizers=[FOREGROUND], deleting=True), "a", WAITING),
])
def test_owner_state(owner, uid, expected):
    assert owner_state(owner, uid) == expected


def test_graph_changed_ignores_status_and_spec():
    a = obj(owners=[("a", False)])
    assert not graph_changed(a, {**a, "status": {"phase": "Running"}})
    assert graph_changed(a, obj(owners=[("b", False)]))
    assert graph_changed(a, obj(owners=[("a", False)], deleting=True))


def test_ref_keys_round_trip():
    for ref in (POD, RS, Ref("", "namespaces", "", "ns1"), Ref("example.com", "widgets", "a", "w")):
        assert Ref.parse(ref.key) == ref

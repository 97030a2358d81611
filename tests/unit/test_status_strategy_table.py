"""The status strategies' table names every built-in kind served with a status subresource, so that
a kind added to the catalog gets its Kubernetes rule on purpose, not ResetObjectMetaForStatus by
default; and a status write over a body keeps exactly what the table says."""
from __future__ import annotations

from eventplane.api.strategy import RESET_OBJECT_META_FOR_STATUS, STATUS_KEEPS_METADATA, prepare_status_update
from eventplane.objects.schema import Catalog


def test_every_builtin_status_kind_has_its_rule():
    served = {(r.group, r.resource) for r in Catalog.builtin() if "status" in r.subresources}
    assert served == set(STATUS_KEEPS_METADATA)


def _objects():
    old = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"l": "old"},
                                                        "annotations": {"a": "old"}, "finalizers": ["f/old"]},
           "spec": {"v": 1}, "status": {"s": "old"}}
    new = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"l": "new"},
                                                        "annotations": {"a": "new"}, "finalizers": ["f/new"]},
           "spec": {"v": 2}, "extra": True, "status": {"s": "new"}}
    return old, new


def test_an_unnamed_builtin_kind_resets_object_meta_for_status():
    info = next(r for r in Catalog.builtin() if (r.group, r.resource) == ("apps", "replicasets"))
    old, new = _objects()
    got = prepare_status_update(info, new, old)
    assert got["spec"] == {"v": 1} and "extra" not in got and got["status"] == {"s": "new"}
    assert got["metadata"]["labels"] == {"l": "new"}   # replicasets: spec alone
    keeps = dict(STATUS_KEEPS_METADATA)
    del STATUS_KEEPS_METADATA[("apps", "replicasets")]
    try:
        old, new = _objects()
        got = prepare_status_update(info, new, old)
        for key in ("labels", "annotations", "finalizers"):
            assert key in RESET_OBJECT_META_FOR_STATUS and got["metadata"][key] == old["metadata"][key]
    finally:
        STATUS_KEEPS_METADATA.clear()
        STATUS_KEEPS_METADATA.update(keeps)

import copy

import pytest

from eventplane.objects.errors import BadRequestError
from eventplane.objects.patch import apply_merge_patch


# RFC 7386 appendix A, the cases whose patch is an object.
@pytest.mark.parametrize("doc, patch, result", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_rfc7386_examples(doc, patch, result):
    assert apply_merge_patch(doc, patch) == result


DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web", "tier": "frontend"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]}}},
}


@pytest.mark.parametrize("name, patch, check", [
    ("null deletes a label", {"metadata": {"labels": {"tier": None}}},
     lambda o: o["metadata"]["labels"] == {"app": "web"}),
    ("scale", {"spec": {"replicas": 5}},
     lambda o: o["spec"]["replicas"] == 5 and o["metadata"] == DEPLOYMENT["metadata"]),
    ("a list replaces, never merges",
     {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "x"}]}}}},
     lambda o: o["spec"]["template"]["spec"]["containers"] == [{"name": "nginx", "image": "x"}]),
    ("nulls inside a new value are dropped", {"metadata": {"annotations": {"a": "1", "b": None}}},
     lambda o: o["metadata"]["annotations"] == {"a": "1"}),
    ("an empty patch changes nothing", {}, lambda o: o == DEPLOYMENT),
])
def test_kubernetes_objects(name, patch, check):
    original = copy.deepcopy(DEPLOYMENT)
    result = apply_merge_patch(DEPLOYMENT, patch)
    assert check(result), name
    assert DEPLOYMENT == original, "the input must not be mutated"
    result["metadata"]["labels"]["new"] = "x"
    assert "new" not in DEPLOYMENT["metadata"]["labels"], "the result must not share values with the input"


@pytest.mark.parametrize("patch", [["a"], "a", 1, None])
def test_patch_that_is_not_an_object_is_400(patch):
    with pytest.raises(BadRequestError):
        apply_merge_patch(DEPLOYMENT, patch)

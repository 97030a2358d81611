import copy

import pytest

from eventplane.objects.errors import BadRequestError, InvalidError, RequestEntityTooLargeError
from eventplane.objects.patch import apply_json_patch

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                 "annotations": {"example.com/owner": "team-a", "tilde~key": "t"}},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]},
}


@pytest.mark.parametrize("name, ops, check", [
    ("add a member", [{"op": "add", "path": "/metadata/labels/tier", "value": "frontend"}],
     lambda o: o["metadata"]["labels"] == {"app": "web", "tier": "frontend"}),
    ("add replaces an existing member", [{"op": "add", "path": "/metadata/labels/app", "value": "api"}],
     lambda o: o["metadata"]["labels"] == {"app": "api"}),
    ("add inserts at an index", [{"op": "add", "path": "/spec/containers/1", "value": {"name": "mid"}}],
     lambda o: [c["name"] for c in o["spec"]["containers"]] == ["nginx", "mid", "log"]),
    ("add appends with -", [{"op": "add", "path": "/spec/containers/-", "value": {"name": "last"}}],
     lambda o: [c["name"] for c in o["spec"]["containers"]] == ["nginx", "log", "last"]),
    ("~1 escapes a slash", [{"op": "remove", "path": "/metadata/annotations/example.com~1owner"}],
     lambda o: o["metadata"]["annotations"] == {"tilde~key": "t"}),
    ("~0 escapes a tilde", [{"op": "replace", "path": "/metadata/annotations/tilde~0key", "value": "u"}],
     lambda o: o["metadata"]["annotations"]["tilde~key"] == "u"),
    ("remove a list item", [{"op": "remove", "path": "/spec/containers/0"}],
     lambda o: [c["name"] for c in o["spec"]["containers"]] == ["log"]),
    ("replace an image", [{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.27"}],
     lambda o: o["spec"]["containers"][0]["image"] == "nginx:1.27"),
    ("replace of a missing member adds it, as Kubernetes does",
     [{"op": "replace", "path": "/metadata/labels/tier", "value": "db"}],
     lambda o: o["metadata"]["labels"]["tier"] == "db"),
    ("move", [{"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/name"}],
     lambda o: o["metadata"]["labels"] == {"name": "web"}),
    ("copy", [{"op": "copy", "from": "/spec/containers/0", "path": "/spec/containers/-"}],
     lambda o: o["spec"]["containers"][2] == POD["spec"]["containers"][0]),
    ("test then replace", [{"op": "test", "path": "/metadata/labels/app", "value": "web"},
                           {"op": "replace", "path": "/metadata/labels/app", "value": "api"}],
     lambda o: o["metadata"]["labels"]["app"] == "api"),
    ("test null against a missing member passes", [{"op": "test", "path": "/metadata/labels/x", "value": None}],
     lambda o: o == POD),
    ("test compares deeply", [{"op": "test", "path": "/metadata/labels", "value": {"app": "web"}}],
     lambda o: o == POD),
    ("replace the whole document", [{"op": "replace", "path": "", "value": {"kind": "Pod"}}],
     lambda o: o == {"kind": "Pod"}),
    ("no operations", [], lambda o: o == POD),
])
def test_operations(name, ops, check):
    original = copy.deepcopy(POD)
    assert check(apply_json_patch(POD, ops)), name
    assert POD == original, "the input must not be mutated"


@pytest.mark.parametrize("name, ops, cause", [
    ("failed test", [{"op": "test", "path": "/metadata/labels/app", "value": "api"}],
     "testing value /metadata/labels/app failed: test failed"),
    ("test of 1 against true", [{"op": "add", "path": "/spec/x", "value": True},
                                {"op": "test", "path": "/spec/x", "value": 1}],
     "testing value /spec/x failed: test failed"),
    ("remove of a missing member", [{"op": "remove", "path": "/metadata/labels/tier"}],
     "error in remove for path: '/metadata/labels/tier': Unable to remove nonexistent key: tier: missing value"),
    ("add under a missing parent", [{"op": "add", "path": "/spec/template/spec", "value": {}}],
     'add operation does not apply: doc is missing path: "/spec/template/spec": missing value'),
    ("index out of range", [{"op": "add", "path": "/spec/containers/5", "value": {}}],
     "error in add for path: '/spec/containers/5': Unable to access invalid index: 5: invalid index referenced"),
    ("replace out of range", [{"op": "replace", "path": "/spec/containers/2", "value": {}}],
     "error in replace for path: '/spec/containers/2': Unable to access invalid index: 2: invalid index referenced"),
    ("not an index", [{"op": "remove", "path": "/spec/containers/first"}],
     "error in remove for path: '/spec/containers/first': value was not a proper array index: 'first'"),
    ("unknown op", [{"op": "merge", "path": "/spec"}], "Unexpected kind: merge"),
    ("missing value", [{"op": "add", "path": "/spec/x"}], "add operation, missing value field: missing value"),
    ("move into its own child", [{"op": "move", "from": "/spec", "path": "/spec/inner"}],
     "move operation does not apply: cannot move /spec into its own child /spec/inner"),
])
def test_operation_that_does_not_apply_is_422(name, ops, cause):
    with pytest.raises(InvalidError) as err:
        apply_json_patch(POD, ops)
    status = err.value.to_status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"] == "the server rejected our request due to an error in our request"
    assert status["details"]["causes"] == [{"reason": "UnexpectedServerResponse", "message": cause}]


def test_a_failed_operation_leaves_no_partial_result():
    ops = [{"op": "add", "path": "/metadata/labels/tier", "value": "x"},
           {"op": "test", "path": "/metadata/name", "value": "other"}]
    with pytest.raises(InvalidError):
        apply_json_patch(POD, ops)
    assert "tier" not in POD["metadata"]["labels"]


@pytest.mark.parametrize("body", [{"op": "add"}, "add", [1, 2], None])
def test_body_that_is_not_a_list_of_operations_is_400(body):
    with pytest.raises(BadRequestError):
        apply_json_patch(POD, body)


def test_too_many_operations_is_413():
    ops = [{"op": "test", "path": "/kind", "value": "Pod"}] * 10001
    with pytest.raises(RequestEntityTooLargeError) as err:
        apply_json_patch(POD, ops)
    assert err.value.message == "The allowed maximum operations in a JSON patch is 10000, got 10001"

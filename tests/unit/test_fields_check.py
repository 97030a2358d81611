"""check_fields reports unknown fields and wrong types with Kubernetes' paths (formatted only when
reported) and prunes unknown fields and nulls in every mode but Strict."""
from eventplane.objects.schema import Node
from eventplane.objects.schema.fields import check_fields

POD = Node.definition("io.k8s.api.core.v1.Pod")
CM = Node.definition("io.k8s.api.core.v1.ConfigMap")


def test_paths_of_unknown_fields_and_type_errors():
    obj = {"metadata": {"name": "p", "labels": {"a": None, "b": "c"}, "": {"x": 1}, "[w": 1},
           "spec": {"containers": [{"name": "c", "image": 5,
                                    "ports": [{"containerPort": "80"}, None, {"bogus": 1}]}],
                    "nodeSelector": {"a": 1}, "extra": True}}
    problems = check_fields(obj, POD, prune=True)
    assert problems.unknown == ["metadata.", "metadata.[w", "spec.containers[0].ports[2].bogus", "spec.extra"]
    assert problems.type_errors == [
        "json: cannot unmarshal number into Go struct field spec.containers[0].image of type string",
        "json: cannot unmarshal string into Go struct field spec.containers[0].ports[0].containerPort of type int64",
        "json: cannot unmarshal number into Go struct field spec.nodeSelector.a of type string"]
    assert obj["metadata"] == {"name": "p", "labels": {"b": "c"}}  # unknown and null fields pruned
    assert "extra" not in obj["spec"]


def test_strict_keeps_the_body_and_the_root_has_a_name():
    obj = {"data": {"k": "v", "n": None}, "bogus": 1}
    problems = check_fields(obj, CM, prune=False)
    assert problems.unknown == ["bogus"] and obj == {"data": {"k": "v", "n": None}, "bogus": 1}
    assert check_fields(["x"], CM, prune=True).type_errors == [
        "json: cannot unmarshal array into Go struct field (root) of type map[string]interface {}"]


def test_integral_floats_are_integers_and_bools_are_not():
    obj = {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80.0}, {"containerPort": True}]}]}}
    assert check_fields(obj, POD, prune=True).type_errors == [
        "json: cannot unmarshal bool into Go struct field spec.containers[0].ports[1].containerPort of type int64"]

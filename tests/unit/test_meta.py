import random

import pytest

from eventplane.objects import meta
from eventplane.objects.labels import error_string, invalid

LABEL_RULE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
              "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
              "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_RULE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                  "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
                  "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


@pytest.mark.parametrize("group, resource, rule", [
    pytest.param("", "namespaces", "label", id="namespaces"),
    pytest.param("", "services", "dns1035", id="services"),
    pytest.param("apps", "statefulsets", "label", id="statefulsets"),
    pytest.param("rbac.authorization.k8s.io", "clusterroles", "path", id="clusterroles"),
    pytest.param("rbac.authorization.k8s.io", "rolebindings", "path", id="rolebindings"),
    pytest.param("", "pods", "subdomain", id="pods"),
    pytest.param("apps", "deployments", "subdomain", id="deployments"),
    pytest.param("example.com", "widgets", "subdomain", id="custom-resource"),
])
def test_name_rule_for(group, resource, rule):
    assert meta.name_rule_for(group, resource) == rule


@pytest.mark.parametrize("name, rule, prefix, ok", [
    pytest.param("web.v1", "subdomain", False, True, id="subdomain-dots"),
    pytest.param("web.v1", "label", False, False, id="label-no-dots"),
    pytest.param("1web", "label", False, True, id="label-digit-first"),
    pytest.param("1web", "dns1035", False, False, id="dns1035-letter-first"),
    pytest.param("web-", "subdomain", True, True, id="prefix-trailing-dash-masked"),
    pytest.param("web-", "subdomain", False, False, id="name-trailing-dash"),
    pytest.param("a-", "label", True, True, id="two-char-prefix"),
    pytest.param("a.-", "label", True, True, id="mask-drops-two-characters-like-kubernetes"),
    pytest.param("system:admin", "path", False, True, id="path-colon"),
    pytest.param("..", "path", False, False, id="path-dotdot"),
    pytest.param("..", "path", True, True, id="path-prefix-dotdot"),
    pytest.param("a/b", "path", True, False, id="path-prefix-slash"),
])
def test_validate_name(name, rule, prefix, ok):
    assert (meta.validate_name(name, rule, prefix=prefix) == []) is ok


def test_unknown_name_rule_fails_loudly():
    with pytest.raises(ValueError, match="unknown name rule"):
        meta.validate_name("x", "dns")


@pytest.mark.parametrize("prefix, expected_base", [
    pytest.param("web-", "web-", id="short"),
    pytest.param("x" * 70, "x" * 58, id="cut-to-58"),
    pytest.param("", "", id="empty"),
])
def test_generate_name(prefix, expected_base):
    name = meta.generate_name(prefix, random.Random(7))
    assert name.startswith(expected_base) and len(name) == len(expected_base) + 5
    assert set(name[len(expected_base):]) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_generate_name_is_deterministic_for_a_seeded_rng():
    assert meta.generate_name("a-", random.Random(1)) == meta.generate_name("a-", random.Random(1))
    assert meta.generate_name("a-", random.Random(1)) != meta.generate_name("a-", random.Random(2))


@pytest.mark.parametrize("group, resource, name, expected", [
    pytest.param("", "pods", "web-1", [], id="label-name"),
    pytest.param("", "pods", "web.v1", ["metadata.name: this is used in the Pod's hostname, which can result in "
                                        "surprising behavior; a DNS label is recommended: [" + LABEL_RULE + "]"],
                 id="pod"),
    pytest.param("apps", "deployments", "web.v1", ["metadata.name: this is used in Pod names and hostnames, which can "
                                                   "result in surprising behavior; a DNS label is recommended: ["
                                                   + LABEL_RULE + "]"], id="deployment"),
    pytest.param("", "configmaps", "web.v1", [], id="not-a-workload"),
])
def test_name_warnings(group, resource, name, expected):
    assert meta.name_warnings(group, resource, name) == expected


def _obj(**m):
    return {"metadata": m}


def _texts(causes):
    return [error_string(c) for c in causes]


@pytest.mark.parametrize("metadata, rule, namespaced, expected", [
    pytest.param({"name": "web", "namespace": "default"}, "subdomain", True, [], id="valid"),
    pytest.param({"namespace": "default"}, "subdomain", True,
                 ["metadata.name: Required value: name or generateName is required"], id="no-name"),
    pytest.param({"generateName": "web-", "namespace": "default"}, "subdomain", True, [],
                 id="generate-name-only"),
    pytest.param({"generateName": "Web-", "namespace": "d"}, "subdomain", True,
                 ['metadata.generateName: Invalid value: "Web-": ' + SUBDOMAIN_RULE], id="bad-generate-name"),
    pytest.param({"name": "Web", "namespace": "default"}, "subdomain", True,
                 ['metadata.name: Invalid value: "Web": ' + SUBDOMAIN_RULE], id="bad-name"),
    pytest.param({"name": "a.b"}, "label", False, ['metadata.name: Invalid value: "a.b": ' + LABEL_RULE],
                 id="label-rule"),
    pytest.param({"name": "web"}, "subdomain", True, ["metadata.namespace: Required value"], id="namespace-missing"),
    pytest.param({"name": "web", "namespace": "Bad"}, "subdomain", True,
                 ['metadata.namespace: Invalid value: "Bad": ' + LABEL_RULE], id="namespace-not-a-label"),
    pytest.param({"name": "web", "namespace": "x"}, "subdomain", False,
                 ["metadata.namespace: Forbidden: not allowed on this type"], id="namespace-on-cluster-scoped"),
    pytest.param({"name": "web", "generation": -1}, "subdomain", False,
                 ["metadata.generation: Invalid value: -1: must be greater than or equal to 0"], id="generation"),
    pytest.param({"name": "web", "labels": {"a": "-"}}, "subdomain", False,
                 ['metadata.labels: Invalid value: "-": a valid label must be an empty string or consist of '
                  "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character "
                  "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                  "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"], id="labels"),
])
def test_validate_object_meta_on_create(metadata, rule, namespaced, expected):
    assert _texts(meta.validate_object_meta(_obj(**metadata), name_rule=rule, namespaced=namespaced)) == expected


@pytest.mark.parametrize("finalizers, builtin, expected", [
    pytest.param(["kubernetes", "orphan", "example.com/cleanup"], True, [], id="standard-and-qualified"),
    pytest.param(["cleanup"], True,
                 ['metadata.finalizers[0]: Invalid value: "cleanup": name is neither a standard finalizer name nor '
                  "is it fully qualified"], id="unqualified-builtin"),
    pytest.param(["cleanup"], False, [], id="unqualified-custom-resource"),
    pytest.param(["orphan", "foregroundDeletion"], True,
                 ['metadata.finalizers: Invalid value: []string{"orphan", "foregroundDeletion"}: finalizer orphan '
                  "and foregroundDeletion cannot be both set"], id="orphan-and-foreground"),
])
def test_finalizers(finalizers, builtin, expected):
    obj = _obj(name="web", finalizers=finalizers)
    causes = meta.validate_object_meta(obj, name_rule="subdomain", namespaced=False, builtin=builtin)
    assert _texts(causes) == expected


def test_bad_finalizer_is_reported_on_the_list_and_on_the_item():
    causes = meta.validate_object_meta(_obj(name="web", finalizers=["-x"]), name_rule="subdomain", namespaced=False)
    assert [c.field for c in causes] == ["metadata.finalizers", "metadata.finalizers[0]"]


def _ref(**kw):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", **kw}


@pytest.mark.parametrize("refs, expected", [
    pytest.param([_ref(controller=True), _ref(name="other")], [], id="one-controller"),
    pytest.param([_ref(apiVersion="")], ['metadata.ownerReferences.apiVersion: Invalid value: "": version must not '
                                         "be empty"], id="no-api-version"),
    pytest.param([_ref(apiVersion="a/b/c")], ['metadata.ownerReferences.apiVersion: Invalid value: "a/b/c": version '
                                              "must not be empty"], id="malformed-api-version"),
    pytest.param([_ref(kind="", name="", uid="")],
                 ['metadata.ownerReferences.kind: Invalid value: "": must not be empty',
                  'metadata.ownerReferences.name: Invalid value: "": must not be empty',
                  'metadata.ownerReferences.uid: Invalid value: "": must not be empty'], id="missing-fields"),
])
def test_owner_references(refs, expected):
    assert _texts(meta.validate_owner_references(refs)) == expected


def test_two_controllers_are_rejected():
    refs = [_ref(controller=True), _ref(kind="StatefulSet", name="ss", controller=True)]
    [cause] = meta.validate_owner_references(refs)
    assert cause.field == "metadata.ownerReferences"
    assert cause.message.endswith('Only one reference can have Controller set to true. Found "true" in references '
                                  "for ReplicaSet/rs and StatefulSet/ss")


def test_an_event_cannot_own_objects():
    [cause] = meta.validate_owner_references([_ref(apiVersion="v1", kind="Event")])
    assert cause.message.endswith("/v1, Kind=Event is disallowed from being an owner")


OLD = {"metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "5", "generation": 2,
                    "creationTimestamp": "2024-05-01T10:00:00Z"}}


def _updated(**changes):
    m = {**OLD["metadata"], **changes}
    return {"metadata": {k: v for k, v in m.items() if v is not None}}


@pytest.mark.parametrize("new, old, expected", [
    pytest.param(_updated(labels={"a": "b"}), OLD, [], id="labels-may-change"),
    pytest.param(_updated(creationTimestamp="2024-05-01T12:00:00+02:00"), OLD, [], id="same-instant-other-offset"),
    pytest.param(_updated(name="web2"), OLD, ['metadata.name: Invalid value: "web2": field is immutable'],
                 id="name"),
    pytest.param(_updated(uid="u2"), OLD, ['metadata.uid: Invalid value: "u2": field is immutable'], id="uid"),
    pytest.param(_updated(namespace="other"), OLD,
                 ['metadata.namespace: Invalid value: "other": field is immutable'], id="namespace"),
    pytest.param(_updated(creationTimestamp="2024-05-02T10:00:00Z"), OLD,
                 ["metadata.creationTimestamp: Invalid value: 2024-05-02 10:00:00 +0000 UTC: field is immutable"],
                 id="creation-timestamp"),
    pytest.param(_updated(deletionTimestamp="2024-05-02T10:00:00Z"), OLD,
                 ["metadata.deletionTimestamp: Invalid value: 2024-05-02 10:00:00 +0000 UTC: field is immutable"],
                 id="deletion-timestamp"),
    pytest.param(_updated(resourceVersion=None), OLD, [], id="no-rv-unconditional-update"),
    pytest.param(_updated(generation=1), OLD, ["metadata.generation: Invalid value: 1: must not be decremented"],
                 id="generation-decremented"),
    pytest.param(_updated(finalizers=["example.com/a", "example.com/b"], deletionTimestamp="2024-05-02T10:00:00Z"),
                 _updated(finalizers=["example.com/a"], deletionTimestamp="2024-05-02T10:00:00Z"),
                 ['metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, '
                  'found new finalizers []string{"example.com/b"}'], id="no-new-finalizers-while-deleting"),
])
def test_validate_object_meta_on_update(new, old, expected):
    assert _texts(meta.validate_object_meta(new, name_rule="subdomain", namespaced=True, old=old)) == expected


def test_resource_version_can_be_required_on_update():
    causes = meta.validate_object_meta(_updated(resourceVersion=None), name_rule="subdomain", namespaced=True,
                                       old=OLD, require_resource_version=True)
    assert _texts(causes) == ['metadata.resourceVersion: Invalid value: "": must be specified for an update']


def test_invalid_error_with_several_causes():
    causes = [invalid("metadata.name", "Web", "bad name"), invalid("spec.replicas", -1, "must be >= 0")]
    err = meta.invalid_error("Deployment.apps", "Web", causes)
    assert err.message == ('Deployment.apps "Web" is invalid: [metadata.name: Invalid value: "Web": bad name, '
                           "spec.replicas: Invalid value: -1: must be >= 0]")
    status = err.to_status()
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["details"]["kind"] == "Deployment" and status["details"]["group"] == "apps"
    assert status["details"]["name"] == "Web"
    assert status["details"]["causes"][1] == {"reason": "FieldValueInvalid", "field": "spec.replicas",
                                              "message": "Invalid value: -1: must be >= 0"}


@pytest.mark.parametrize("kind_qualified, causes, message", [
    pytest.param("Pod", [invalid("metadata.name", "A", "bad")], 'Pod "A" is invalid: metadata.name: Invalid value: '
                                                                 '"A": bad', id="single-no-brackets"),
    pytest.param("Pod", [invalid("a", 1, "x"), invalid("a", 1, "x")], 'Pod "A" is invalid: a: Invalid value: 1: x',
                 id="duplicates-collapse"),
    pytest.param("Pod", [], 'Pod "A" is invalid', id="no-causes"),
])
def test_invalid_error_message(kind_qualified, causes, message):
    err = meta.invalid_error(kind_qualified, "A", causes)
    assert err.message == message
    assert len(err.causes) == len(causes)


def test_invalid_error_for_the_core_group_has_no_group():
    err = meta.invalid_error("Pod", "p", [invalid("x", 1, "y")])
    assert "group" not in err.to_status()["details"] and err.kind == "Pod"

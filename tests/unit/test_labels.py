import pytest

from eventplane.objects import labels as fe
from eventplane.objects.errors import Cause

QNAME_RULE = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
              "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
              "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
VALUE_RULE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
              "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
              "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


@pytest.mark.parametrize("key, messages", [
    pytest.param("app", [], id="plain"),
    pytest.param("app.kubernetes.io/name", [], id="prefixed"),
    pytest.param("My_Key.1", [], id="mixed-case-underscore-dot"),
    pytest.param("a" * 63, [], id="name-63"),
    pytest.param("a" * 64, ["name part must be no more than 63 characters"], id="name-64"),
    pytest.param("-bad", ["name part " + QNAME_RULE], id="leading-dash"),
    pytest.param("bad-", ["name part " + QNAME_RULE], id="trailing-dash"),
    pytest.param("", ["name part must be non-empty", "name part " + QNAME_RULE], id="empty"),
    pytest.param("/name", ["prefix part must be non-empty"], id="empty-prefix"),
    pytest.param("example.com/", ["name part must be non-empty", "name part " + QNAME_RULE], id="empty-name-part"),
    pytest.param("Example.com/name", ["prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                                      "alphanumeric characters, '-' or '.', and must start and end with an "
                                      "alphanumeric character (e.g. 'example.com', regex used for validation is "
                                      "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"],
                 id="upper-case-prefix"),
    pytest.param("a/b/c", ["a qualified name " + QNAME_RULE + " with an optional DNS subdomain prefix and '/' "
                                                              "(e.g. 'example.com/MyName')"], id="two-slashes"),
])
def test_qualified_name(key, messages):
    assert fe.qualified_name(key) == messages


@pytest.mark.parametrize("value, messages", [
    pytest.param("", [], id="empty-is-fine"),
    pytest.param("v1.2_3-x", [], id="charset"),
    pytest.param("a" * 63, [], id="63"),
    pytest.param("a" * 64, ["must be no more than 63 characters"], id="64"),
    pytest.param("-x", [VALUE_RULE], id="leading-dash"),
    pytest.param("a b", [VALUE_RULE], id="space"),
    pytest.param("a/b", [VALUE_RULE], id="slash"),
])
def test_label_value(value, messages):
    assert fe.label_value(value) == messages


@pytest.mark.parametrize("labels, causes", [
    pytest.param({"app": "web", "tier": ""}, [], id="valid"),
    pytest.param(None, [], id="none"),
    pytest.param({"-bad": "x"}, [Cause("FieldValueInvalid", 'Invalid value: "-bad": name part ' + QNAME_RULE,
                                       "metadata.labels")], id="bad-key"),
    pytest.param({"app": "-x"}, [Cause("FieldValueInvalid", 'Invalid value: "-x": ' + VALUE_RULE,
                                       "metadata.labels")], id="bad-value"),
])
def test_validate_labels(labels, causes):
    assert fe.validate_labels(labels) == causes


@pytest.mark.parametrize("annotations, fields_and_types", [
    pytest.param({"Example.com/Some-Key": "any value at all, spaces and / too"}, [], id="upper-case-key-allowed"),
    pytest.param({"a": "x" * (262144 - 1)}, [], id="exactly-at-limit"),
    pytest.param({"a": "x" * 262144}, [("metadata.annotations", "FieldValueTooLong")], id="one-byte-over"),
    pytest.param({"a": "é" * 131072}, [("metadata.annotations", "FieldValueTooLong")], id="counts-utf8-bytes"),
    pytest.param({"bad key": "v"}, [("metadata.annotations", "FieldValueInvalid")], id="bad-key"),
])
def test_validate_annotations(annotations, fields_and_types):
    assert [(c.field, c.type) for c in fe.validate_annotations(annotations)] == fields_and_types


def test_annotation_size_message_is_kubernetes_wording():
    [cause] = fe.validate_annotations({"k": "v" * 300000})
    assert cause.message == "Too long: must have at most 262144 bytes"


@pytest.mark.parametrize("cause, text", [
    pytest.param(fe.invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                 "spec.replicas: Invalid value: -1: must be greater than or equal to 0", id="int-bare"),
    pytest.param(fe.invalid("metadata.name", "Web", "bad"), 'metadata.name: Invalid value: "Web": bad', id="quoted"),
    pytest.param(fe.invalid("spec.x", True, "no"), "spec.x: Invalid value: true: no", id="bool"),
    pytest.param(fe.invalid("spec.x", None, "no"), "spec.x: Invalid value: null: no", id="nil"),
    pytest.param(fe.invalid("spec.x", ["a", "b"], "no"), 'spec.x: Invalid value: []string{"a", "b"}: no',
                 id="string-slice"),
    pytest.param(fe.invalid("spec.x", 'a"b\n', "no"), 'spec.x: Invalid value: "a\\"b\\n": no', id="go-escapes"),
    pytest.param(fe.required("metadata.namespace"), "metadata.namespace: Required value", id="required-no-detail"),
    pytest.param(fe.required("metadata.name", "name or generateName is required"),
                 "metadata.name: Required value: name or generateName is required", id="required-detail"),
    pytest.param(fe.forbidden("metadata.namespace", "not allowed on this type"),
                 "metadata.namespace: Forbidden: not allowed on this type", id="forbidden"),
    pytest.param(fe.not_supported("spec.type", "X", ["ClusterIP", "NodePort"]),
                 'spec.type: Unsupported value: "X": supported values: "ClusterIP", "NodePort"', id="not-supported"),
    pytest.param(fe.duplicate("spec.ports[1].name", "http"), 'spec.ports[1].name: Duplicate value: "http"',
                 id="duplicate"),
    pytest.param(fe.too_many("spec.items", 5, 4), "spec.items: Too many: 5: must have at most 4 items", id="too-many"),
])
def test_field_errors_read_like_field_error(cause, text):
    assert fe.error_string(cause) == text


@pytest.mark.parametrize("labels, text", [
    pytest.param({"b": "2", "a": "1"}, "a=1,b=2", id="sorted"),
    pytest.param({}, "<none>", id="empty"),
    pytest.param(None, "<none>", id="none"),
])
def test_format_labels(labels, text):
    assert fe.format_labels(labels) == text

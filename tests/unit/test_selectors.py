import pytest

from eventplane.objects.errors import BadRequestError
from eventplane.objects.selectors import FieldSelector, LabelSelector, format_label_selector, validate_label_selector

LABELS = {"app": "web", "tier": "front", "version": "3", "empty": ""}


@pytest.mark.parametrize("text, matches", [
    pytest.param("", True, id="empty-selects-all"),
    pytest.param("app=web", True, id="equals"),
    pytest.param("app==web", True, id="double-equals"),
    pytest.param("app=db", False, id="equals-other"),
    pytest.param("app!=db", True, id="not-equals"),
    pytest.param("missing!=x", True, id="not-equals-missing-key"),
    pytest.param("app in (db, web)", True, id="in"),
    pytest.param("app notin (db,web)", False, id="notin"),
    pytest.param("missing notin (a)", True, id="notin-missing-key"),
    pytest.param("app", True, id="exists"),
    pytest.param("!app", False, id="does-not-exist"),
    pytest.param("!missing", True, id="does-not-exist-missing"),
    pytest.param("app=web,tier=front", True, id="and"),
    pytest.param("app=web,tier=back", False, id="and-one-fails"),
    pytest.param("  app = web ,\ttier\n= front ", True, id="whitespace"),
    pytest.param("empty=", True, id="empty-value"),
    pytest.param("empty in ()", True, id="in-empty-set-is-empty-value"),
    pytest.param("version>2", True, id="gt"),
    pytest.param("version<3", False, id="lt"),
    pytest.param("app>2", False, id="gt-non-integer-label"),
    pytest.param("app in (in, notin, web)", True, id="keywords-as-values"),
])
def test_label_selector_matches(text, matches):
    assert LabelSelector.parse(text).matches(LABELS) is matches


@pytest.mark.parametrize("text, message", [
    pytest.param("app in", "unable to parse requirement: found '' expected: '('", id="in-without-values"),
    pytest.param("app in (a", "unable to parse requirement: found '', expected: ',' or ')'", id="unclosed"),
    pytest.param("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
                 id="two-words"),
    pytest.param("a=b=c", "found '=', expected: ',' or 'end of string'", id="two-operators"),
    pytest.param("a,", "found '', expected: identifier after ','", id="trailing-comma"),
    pytest.param(",a", "found ',', expected: !, identifier, or 'end of string'", id="leading-comma"),
    pytest.param("!a=b", "found '=', expected: ',' or 'end of string'", id="not-with-value"),
    pytest.param("a=!b", "unable to parse requirement: found '!', expected: identifier", id="bang-value"),
    pytest.param("-a=b", "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of "
                         "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                         "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                         "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')", id="bad-key"),
    pytest.param("a=-b", "unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an "
                         "empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                         "with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                         "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')", id="bad-value"),
    pytest.param("a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the "
                        "value must be an integer", id="gt-not-integer"),
])
def test_label_selector_parse_errors(text, message):
    with pytest.raises(BadRequestError) as e:
        LabelSelector.parse(text)
    assert e.value.message == message
    assert e.value.to_status()["code"] == 400


@pytest.mark.parametrize("text, canonical", [
    pytest.param("b=2,a=1", "a=1,b=2", id="sorted-by-key"),
    pytest.param("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()", id="apimachinery-example"),
    pytest.param("!a,b!=c,d==e", "!a,b!=c,d==e", id="operators-kept"),
])
def test_label_selector_string(text, canonical):
    assert str(LabelSelector.parse(text)) == canonical


@pytest.mark.parametrize("selector, labels, matches", [
    pytest.param({"matchLabels": {"app": "web"}}, LABELS, True, id="match-labels"),
    pytest.param({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["back"]}]}, LABELS, False, id="and-expression"),
    pytest.param({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["back"]}]}, LABELS, True,
                 id="notin"),
    pytest.param({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, LABELS, True, id="exists"),
    pytest.param({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, LABELS, False,
                 id="does-not-exist"),
    pytest.param({}, LABELS, True, id="empty-selects-everything"),
    pytest.param(None, LABELS, False, id="nil-selects-nothing"),
    pytest.param(None, {}, False, id="nil-selects-nothing-even-unlabelled"),
])
def test_label_selector_from_object(selector, labels, matches):
    assert LabelSelector.from_object(selector).matches(labels) is matches


@pytest.mark.parametrize("selector, empty", [
    pytest.param({}, True, id="empty-object"),
    pytest.param(None, False, id="nil-is-not-empty"),
    pytest.param({"matchLabels": {"a": "b"}}, False, id="with-labels"),
])
def test_label_selector_empty(selector, empty):
    assert LabelSelector.from_object(selector).empty is empty


@pytest.mark.parametrize("selector, message", [
    pytest.param({"matchExpressions": [{"key": "a", "operator": "In"}]},
                 "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
                 id="in-without-values"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
                 '"Gt" is not a valid label selector operator', id="gt-not-allowed-in-objects"),
])
def test_label_selector_from_object_errors(selector, message):
    with pytest.raises(BadRequestError) as e:
        LabelSelector.from_object(selector)
    assert e.value.message == message


@pytest.mark.parametrize("selector, text", [
    pytest.param({"matchLabels": {"b": "1", "a": "2"}}, "a=2,b=1", id="labels"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "In", "values": ["y", "x"]}]}, "a in (x,y)",
                 id="expression"),
    pytest.param({}, "<none>", id="empty"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, "<error>", id="invalid"),
])
def test_format_label_selector(selector, text):
    assert format_label_selector(selector) == text


@pytest.mark.parametrize("selector, fields", [
    pytest.param({"matchLabels": {"app": "web"}}, [], id="valid"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "In"}]},
                 ["spec.selector.matchExpressions[0].values"], id="in-needs-values"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
                 ["spec.selector.matchExpressions[0].values"], id="exists-takes-none"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "Maybe"}]},
                 ["spec.selector.matchExpressions[0].operator"], id="bad-operator"),
    pytest.param({"matchLabels": {"-a": "b"}}, ["spec.selector.matchLabels"], id="bad-label-key"),
])
def test_validate_label_selector(selector, fields):
    assert [c.field for c in validate_label_selector(selector, "spec.selector")] == fields


POD = {"metadata": {"name": "web-1", "namespace": "prod"},
       "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": True, "serviceAccountName": "sa"},
       "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.9"}], "podIP": "10.0.0.9"}}


@pytest.mark.parametrize("text, matches", [
    pytest.param("metadata.name=web-1", True, id="name"),
    pytest.param("metadata.namespace!=prod", False, id="namespace-not-equal"),
    pytest.param("spec.nodeName=n1,status.phase==Running", True, id="and"),
    pytest.param("spec.nodeName=", False, id="unscheduled-only"),
    pytest.param("spec.host=n1", True, id="legacy-spec-host"),
    pytest.param("spec.hostNetwork=true", True, id="bool-as-string"),
    pytest.param("spec.schedulerName=", True, id="unset-field-reads-empty"),
    pytest.param("status.podIP=10.0.0.9", True, id="pod-ip"),
    pytest.param("status.podIPs=10.0.0.9", False, id="pod-ips-accepted-never-set"),
])
def test_field_selector_on_pods(text, matches):
    assert FieldSelector.parse(text).matches(POD, "pods", "") is matches


@pytest.mark.parametrize("resource, group, obj, text, matches", [
    pytest.param("nodes", "", {"metadata": {"name": "n1"}}, "spec.unschedulable=false", True,
                 id="node-unschedulable-defaults-false"),
    pytest.param("namespaces", "", {"metadata": {"name": "a"}, "status": {"phase": "Active"}}, "status.phase=Active",
                 True, id="namespace-phase"),
    pytest.param("secrets", "", {"metadata": {"name": "s"}, "type": "Opaque"}, "type=Opaque", True, id="secret-type"),
    pytest.param("services", "", {"metadata": {"name": "s"}, "spec": {"type": "NodePort"}}, "spec.type=NodePort",
                 True, id="service-type"),
    pytest.param("replicationcontrollers", "", {"metadata": {"name": "r"}}, "status.replicas=0", True,
                 id="rc-replicas-defaults-0"),
    pytest.param("jobs", "batch", {"metadata": {"name": "j"}, "status": {"succeeded": 2}}, "status.successful=2",
                 True, id="job-successful-reads-succeeded"),
    pytest.param("events", "", {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
                                "reportingComponent": "kubelet"}, "involvedObject.kind=Pod,source=kubelet", True,
                 id="core-event-source-falls-back-to-reporting-component"),
    pytest.param("events", "events.k8s.io", {"metadata": {"name": "e"}, "regarding": {"kind": "Pod"},
                                             "reportingController": "kubelet"},
                 "regarding.kind=Pod,reportingController=kubelet", True, id="events-v1-names"),
    pytest.param("certificatesigningrequests", "certificates.k8s.io",
                 {"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kubelet-serving"}},
                 "spec.signerName=kubernetes.io/kubelet-serving", True, id="csr-signer"),
    pytest.param("configmaps", "", {"metadata": {"name": "c", "namespace": "d"}}, "metadata.namespace=d", True,
                 id="default-metadata"),
])
def test_field_selector_per_kind(resource, group, obj, text, matches):
    assert FieldSelector.parse(text).matches(obj, resource, group) is matches


@pytest.mark.parametrize("resource, group, text, message", [
    pytest.param("pods", "", "spec.foo=x", "field label not supported: spec.foo", id="pods"),
    pytest.param("nodes", "", "metadata.namespace=x", "field label not supported: metadata.namespace",
                 id="nodes-no-namespace"),
    pytest.param("events", "events.k8s.io", "involvedObject.kind=Pod", "field label not supported: "
                 "involvedObject.kind", id="events-v1-rejects-core-names"),
    pytest.param("jobs", "batch", "status.active=1", 'field label "status.active" not supported for Job', id="jobs"),
    pytest.param("replicasets", "apps", "status.replicas=1",
                 '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"',
                 id="apps-has-no-conversion"),
    pytest.param("widgets", "example.com", "spec.size=1",
                 '"spec.size" is not a known field selector: only "metadata.name", "metadata.namespace"',
                 id="custom-resource"),
])
def test_unsupported_field_labels(resource, group, text, message):
    with pytest.raises(BadRequestError) as e:
        FieldSelector.parse(text, resource=resource, group=group)
    assert e.value.message == message
    with pytest.raises(BadRequestError):
        FieldSelector.parse(text).matches({"metadata": {}}, resource, group)


def test_a_checked_selector_can_be_matched_again():
    selector = FieldSelector.parse("regarding.kind=Pod", resource="events", group="events.k8s.io")
    assert selector.matches({"regarding": {"kind": "Pod"}}, "events", "events.k8s.io")


@pytest.mark.parametrize("text, value", [
    pytest.param(r"metadata.name=a\,b", "a,b", id="escaped-comma"),
    pytest.param(r"metadata.name=a\=b", "a=b", id="escaped-equals"),
    pytest.param(r"metadata.name=a\\b", "a\\b", id="escaped-backslash"),
    pytest.param("metadata.name==x", "x", id="double-equals-no-leading-equals"),
])
def test_field_selector_escapes(text, value):
    [requirement] = FieldSelector.parse(text).requirements
    assert requirement.value == value


@pytest.mark.parametrize("text, message", [
    pytest.param("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
                 id="no-operator"),
    pytest.param("a=b=c", "invalid field selector: unescaped character in value: 61", id="unescaped-equals"),
    pytest.param("a=b\\", "invalid field selector: invalid escape sequence: \\", id="trailing-backslash"),
    pytest.param("a=\\x", "invalid field selector: invalid escape sequence: \\x", id="unknown-escape"),
])
def test_field_selector_parse_errors(text, message):
    with pytest.raises(BadRequestError) as e:
        FieldSelector.parse(text)
    assert e.value.message == message


@pytest.mark.parametrize("text, empty", [
    pytest.param("", True, id="empty"),
    pytest.param(",", True, id="only-comma"),
    pytest.param("a=b", False, id="one"),
])
def test_field_selector_empty(text, empty):
    assert FieldSelector.parse(text).empty is empty


def test_exact_match_lookups():
    assert LabelSelector.parse("app in (web),x!=y").requires_exact_match("app") == "web"
    assert LabelSelector.parse("app in (a,b)").requires_exact_match("app") is None
    assert FieldSelector.parse("spec.nodeName=n1").requires_exact_match("spec.nodeName") == "n1"
    assert FieldSelector.parse("spec.nodeName!=n1").requires_exact_match("spec.nodeName") is None

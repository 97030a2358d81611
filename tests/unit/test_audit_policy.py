"""Audit policy rule matching, as kube-apiserver's policy checker decides: first match wins,
no match is None; Secrets are capped at Metadata whatever the rules say."""
import pytest

from eventplane.objects.auditpolicy import DEFAULT_POLICY, Attributes, Level, Policy, PolicyError, holds_secret, \
    outcome

POLICY = Policy.from_dict({
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"]},
        {"level": "None", "userGroups": ["system:nodes"], "resources": [{"group": "", "resources": ["events"]}]},
        {"level": "RequestResponse", "resources": [{"group": "apps", "resources": ["deployments/scale"]}]},
        {"level": "Request", "resources": [{"group": "", "resources": ["pods/*"]}], "namespaces": ["prod"]},
        {"level": "RequestResponse", "resources": [{"group": "", "resources": ["configmaps"],
                                                    "resourceNames": ["special"]}]},
        {"level": "Request", "resources": [{"group": "", "resources": ["*/status"]}]},
        {"level": "RequestResponse", "resources": [{"group": ""}]},  # the whole core group
        {"level": "None", "nonResourceURLs": ["/healthz*", "/version"]},
        {"level": "Metadata", "verbs": ["get", "list", "watch"], "omitStages": ["ResponseStarted"]},
    ]})


def attrs(user="alice", groups=(), verb="get", group="", resource="pods", sub="", ns="default", name="p",
          path="", resource_request=True):
    return Attributes(user=user, groups=tuple(groups), verb=verb, resource_request=resource_request,
                      api_group=group, resource=resource, subresource=sub, namespace=ns, name=name, path=path)


@pytest.mark.parametrize("a, level", [
    pytest.param(attrs(user="system:kube-proxy", verb="watch", resource="services"), "None", id="user-and-verb"),
    pytest.param(attrs(user="system:kube-proxy", verb="get", resource="services"), "RequestResponse",
                 id="user-other-verb-falls-through"),
    pytest.param(attrs(groups=["system:nodes"], resource="events"), "None", id="user-group"),
    pytest.param(attrs(groups=["devs"], resource="events"), "RequestResponse", id="other-group-falls-through"),
    pytest.param(attrs(group="apps", resource="deployments", sub="scale", verb="update"), "RequestResponse",
                 id="subresource-exact"),
    pytest.param(attrs(group="apps", resource="deployments", verb="update"), "None",
                 id="no-rule-matches-means-none"),
    pytest.param(attrs(group="apps", resource="deployments", verb="list"), "Metadata", id="verbs-only-rule"),
    pytest.param(attrs(sub="log", ns="prod"), "Request", id="resource-slash-star-in-namespace"),
    pytest.param(attrs(sub="log", ns="dev"), "RequestResponse", id="resource-slash-star-other-namespace"),
    pytest.param(attrs(resource="configmaps", name="special"), "RequestResponse", id="resource-names"),
    pytest.param(attrs(group="apps", resource="deployments", sub="status", verb="update"), "None",
                 id="star-slash-subresource-wrong-group"),
    pytest.param(attrs(resource="nodes", sub="status", ns="", verb="patch"), "Request", id="star-slash-status"),
    pytest.param(attrs(resource_request=False, verb="get", path="/healthz/ping", resource=""), "None",
                 id="non-resource-prefix"),
    pytest.param(attrs(resource_request=False, verb="get", path="/version", resource=""), "None",
                 id="non-resource-exact"),
    pytest.param(attrs(resource_request=False, verb="get", path="/openapi/v2", resource=""), "Metadata",
                 id="non-resource-unmatched-falls-through"),
    pytest.param(attrs(resource="secrets"), "Metadata", id="secrets-capped-at-metadata"),
    pytest.param(attrs(resource="secrets", verb="list", name=""), "Metadata", id="secret-lists-capped"),
])
def test_first_matching_rule_decides(a, level):
    assert POLICY.decide(a).level.value == level


def test_non_resource_rules_never_match_resources_and_back():
    p = Policy.from_dict({"rules": [{"level": "Request", "nonResourceURLs": ["*"]},
                                    {"level": "Metadata", "namespaces": [""]}]})
    assert p.decide(attrs(resource_request=False, path="/apis", resource="")).level is Level.REQUEST
    assert p.decide(attrs(ns="")).level is Level.METADATA  # "" is cluster-scoped
    assert p.decide(attrs(ns="default")).level is Level.NONE


def test_omitted_stages_are_the_policys_and_the_rules():
    d = POLICY.decide(attrs(group="apps", resource="deployments", verb="list"))
    assert d.omit_stages == {"RequestReceived", "ResponseStarted"}
    assert d.records("ResponseComplete") and not d.records("ResponseStarted")
    assert not POLICY.decide(attrs(group="apps", resource="deployments", verb="update")).records("ResponseComplete")


def test_default_policy_records_metadata_except_health_checks():
    assert DEFAULT_POLICY.decide(attrs()).level is Level.METADATA
    assert DEFAULT_POLICY.decide(attrs(resource_request=False, path="/readyz", resource="")).level is Level.NONE
    assert DEFAULT_POLICY.decide(attrs(resource_request=False, path="/livez/ping", resource="")).level is Level.NONE
    assert DEFAULT_POLICY.decide(attrs(resource_request=False, path="/version", resource="")).level is Level.METADATA
    assert not DEFAULT_POLICY.may_record_requests
    assert POLICY.may_record_requests


@pytest.mark.parametrize("doc, message", [
    pytest.param({"rules": [{"level": "Everything"}]}, "rules[0].level", id="bad-level"),
    pytest.param({"rules": [{"level": "None", "users": "bob"}]}, "rules[0].users", id="not-a-list"),
    pytest.param({"rules": [{"level": "None", "omitStages": ["Later"]}]}, "unknown stage", id="bad-stage"),
    pytest.param({"kind": "ConfigMap"}, "not Policy", id="wrong-kind"),
    pytest.param({"rules": [{"level": "None", "nonResourceURLs": ["/x"], "namespaces": ["a"]}]}, "both",
                 id="resource-and-non-resource"),
])
def test_malformed_policies_are_refused(doc, message):
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Policy.from_dict(doc)


@pytest.mark.parametrize("value, held", [
    pytest.param({"kind": "Secret", "data": {}}, True, id="secret"),
    pytest.param({"kind": "SecretList", "items": []}, True, id="secret-list"),
    pytest.param({"kind": "List", "items": [{"kind": "ConfigMap"}, {"kind": "Secret"}]}, True, id="in-a-list"),
    pytest.param([{"kind": "Secret"}], True, id="apply-documents"),
    pytest.param({"kind": "Table", "rows": [{"object": {"kind": "Secret"}}]}, True, id="table-with-objects"),
    pytest.param({"kind": "ConfigMap", "data": {"kind": "Secret"}}, False, id="configmap"),
    pytest.param(None, False, id="nothing"),
])
def test_holds_secret(value, held):
    assert holds_secret(value) is held


@pytest.mark.parametrize("code, result", [(200, "allowed"), (201, "allowed"), (304, "allowed"), (401, "denied"),
                                          (403, "denied"), (404, "error"), (409, "error"), (500, "error")])
def test_outcome(code, result):
    assert outcome(code) == result

import pytest

from eventplane.bus.subjects import escape, event_subject, filter_subject, unescape
from eventplane.objects.events import StreamId


@pytest.mark.parametrize("value, token", [
    ("web", "web"),
    ("web-1", "web-1"),
    ("", "_"),
    ("a.b", "a~2eb"),
    ("system:controller:job", "system~3acontroller~3ajob"),
    ("rbac.authorization.k8s.io", "rbac~2eauthorization~2ek8s~2eio"),
    ("_", "~5f"),
    ("~", "~7e"),
    ("ünï", "~c3~bcn~c3~af"),
    ("a*b>c d", "a~2ab~3ec~20d"),
])
def test_escape_round_trips(value, token):
    assert escape(value) == token
    assert unescape(token) == value


@pytest.mark.parametrize("value", ["web.example.com", "x" * 253, "a.b.c", "A_b", "q%2F"])
def test_every_escaped_token_is_one_valid_subject_token(value):
    token = escape(value)
    assert "." not in token and "*" not in token and ">" not in token and " " not in token
    assert unescape(token) == value


def test_event_subject_names_group_resource_namespace_name_node():
    assert event_subject("ep.ev", StreamId("apps", "deployments", "default", "web")) == \
        "ep.ev.apps.deployments.default.web._"
    assert event_subject("ep.ev", StreamId("", "pods", "ns1", "web-abc.x"), node="node-1") == \
        "ep.ev.core.pods.ns1.web-abc~2ex.node-1"
    assert event_subject("ep.ev", StreamId("", "nodes", "", "node-1")) == "ep.ev.core.nodes._.node-1._"


def test_filter_subject_uses_wildcards_for_unspecified_tokens():
    assert filter_subject("ep.ev", group="", resource="pods", node="node-1") == "ep.ev.core.pods.*.*.node-1"
    assert filter_subject("ep.ev", group="apps") == "ep.ev.apps.*.*.*.*"

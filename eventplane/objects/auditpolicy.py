"""Audit policy: which requests are recorded, and how much of each — Kubernetes'
audit.k8s.io/v1 Policy, evaluated as kube-apiserver's policy checker does.

Fed by the API layer (eventplane/api/audit.py) with one request's attributes
(user, verb, resource or non-resource path); answers a level and the stages to
omit. Pure: no I/O — loading the YAML file is the caller's job.

Rules are tried in order and the first that matches decides; no match is
level None. A rule's fields narrow it (an empty field matches everything);
`resources` and `namespaces` make it a rule for resource requests only,
`nonResourceURLs` one for other paths only.

Secrets are never recorded beyond Metadata, whatever the policy says
(`effective_level`), and any object that is or holds a Secret is dropped from
a record (`holds_secret`) — the belt to the policy's braces.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple


class Level(str, enum.Enum):
    NONE = "None"
    METADATA = "Metadata"
    REQUEST = "Request"
    REQUEST_RESPONSE = "RequestResponse"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_most(self, other: Level) -> Level:
        return self if self.rank <= other.rank else other


_RANK = {Level.NONE: 0, Level.METADATA: 1, Level.REQUEST: 2, Level.REQUEST_RESPONSE: 3}

STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


class PolicyError(ValueError):
    """The policy document is malformed; the message names the rule and the field."""


class Attributes(NamedTuple):
    """What the policy looks at in one request (Kubernetes' authorizer.Attributes). A NamedTuple:
    one is made per request, several times cheaper than a frozen dataclass."""

    user: str
    groups: tuple[str, ...] = ()
    verb: str = ""
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def matches(self, a: Attributes) -> bool:
        if self.group != a.api_group:
            return False
        if not self.resources:
            return True
        if self.resource_names and a.name not in self.resource_names:
            return False
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        for res in self.resources:
            if res in ("*", combined):
                return True
            if a.subresource and res.startswith("*/") and res[2:] == a.subresource:
                return True
            if res.endswith("/*") and res[:-2] == a.resource:
                return True
        return False


@dataclass(frozen=True)
class Rule:
    level: Level
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: tuple[str, ...] = ()

    def matches(self, a: Attributes) -> bool:
        if self.users and a.user not in self.users:
            return False
        if self.user_groups and not any(g in self.user_groups for g in a.groups):
            return False
        if self.verbs and a.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            if not a.resource_request:
                return False
            # cluster-scoped resources have the namespace "" (Kubernetes' convention)
            if self.namespaces and a.namespace not in self.namespaces:
                return False
            return not self.resources or any(gr.matches(a) for gr in self.resources)
        if self.non_resource_urls:
            return not a.resource_request and any(_path_matches(a.path, s) for s in self.non_resource_urls)
        return True


def _path_matches(path: str, spec: str) -> bool:
    return spec in ("*", path) or (spec.endswith("*") and path.startswith(spec[:-1]))


@dataclass(frozen=True)
class Decision:
    level: Level
    omit_stages: frozenset[str] = frozenset()

    def records(self, stage: str) -> bool:
        return self.level is not Level.NONE and stage not in self.omit_stages


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    omit_stages: tuple[str, ...] = ()

    def decide(self, a: Attributes) -> Decision:
        for rule in self.rules:
            if rule.matches(a):
                return _decision(effective_level(a, rule.level), tuple(self.omit_stages), tuple(rule.omit_stages))
        return _NOTHING

    @property
    def may_record_requests(self) -> bool:
        """Whether any rule asks for request bodies (so the API layer must keep them)."""
        return any(r.level.rank >= Level.REQUEST.rank for r in self.rules)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Policy:
        """An audit.k8s.io/v1 (or v1beta1) Policy document."""
        if not isinstance(doc, Mapping):
            raise PolicyError("the audit policy must be a mapping (kind: Policy)")
        if doc.get("kind", "Policy") != "Policy":
            raise PolicyError(f"the audit policy has kind {doc.get('kind')!r}, not Policy")
        rules = doc.get("rules") or []
        if not isinstance(rules, list):
            raise PolicyError("rules must be a list")
        return cls(tuple(_rule(i, r) for i, r in enumerate(rules)),
                   _stages(doc.get("omitStages"), "omitStages"))


_NOTHING = Decision(Level.NONE)


@lru_cache(maxsize=256)  # every request is decided; a policy has a few (level, stages) outcomes
def _decision(level: Level, policy_omits: tuple[str, ...], rule_omits: tuple[str, ...]) -> Decision:
    return Decision(level, frozenset(policy_omits) | set(rule_omits))


DEFAULT_POLICY = Policy((
    Rule(Level.NONE, non_resource_urls=("/livez", "/livez/*", "/readyz", "/readyz/*", "/healthz", "/healthz/*")),
    Rule(Level.METADATA),
))
"""Without --audit-policy-file: everything at Metadata, except health checks."""


def effective_level(a: Attributes, level: Level) -> Level:
    """The level after the rules no policy can change: Secrets at Metadata at most."""
    if a.resource_request and a.api_group == "" and a.resource == "secrets":
        return level.at_most(Level.METADATA)
    return level


def holds_secret(value: Any) -> bool:
    """Whether a request or response object is a Secret, a list of them, or a list holding one."""
    if value is None:
        return False
    if isinstance(value, dict) or isinstance(value, Mapping):
        kind = value.get("kind")
        if kind in ("Secret", "SecretList"):
            return True
        if kind == "Table":  # a Table may include the objects themselves (includeObject=Object)
            return any(holds_secret((row or {}).get("object")) for row in value.get("rows") or [])
        items = value.get("items")
        return isinstance(items, list) and any(holds_secret(i) for i in items)
    if isinstance(value, list):
        return any(holds_secret(i) for i in value)
    return False


def outcome(code: int) -> str:
    """allowed, denied (401, 403) or error (any other failure)."""
    if code in (401, 403):
        return "denied"
    return "error" if code >= 400 or code == 0 else "allowed"


# --- reading a policy document ----------------------------------------------------------------

def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} must be a list of strings")
    return tuple(value)


def _stages(value: Any, where: str) -> tuple[str, ...]:
    stages = _strings(value, where)
    for s in stages:
        if s not in STAGES:
            raise PolicyError(f"{where}: unknown stage {s!r} (one of {', '.join(STAGES)})")
    return stages


def _rule(i: int, doc: Any) -> Rule:
    where = f"rules[{i}]"
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where} must be a mapping")
    try:
        level = Level(doc.get("level"))
    except ValueError:
        raise PolicyError(f"{where}.level must be one of None, Metadata, Request, RequestResponse, "
                          f"not {doc.get('level')!r}") from None
    resources = []
    for j, gr in enumerate(doc.get("resources") or []):
        if not isinstance(gr, Mapping):
            raise PolicyError(f"{where}.resources[{j}] must be a mapping")
        resources.append(GroupResources(str(gr.get("group") or ""),
                                        _strings(gr.get("resources"), f"{where}.resources[{j}].resources"),
                                        _strings(gr.get("resourceNames"), f"{where}.resources[{j}].resourceNames")))
    urls = _strings(doc.get("nonResourceURLs"), f"{where}.nonResourceURLs")
    namespaces = _strings(doc.get("namespaces"), f"{where}.namespaces")
    if urls and (resources or namespaces):
        raise PolicyError(f"{where}: a rule cannot name both nonResourceURLs and resources or namespaces")
    return Rule(level, users=_strings(doc.get("users"), f"{where}.users"),
                user_groups=_strings(doc.get("userGroups"), f"{where}.userGroups"),
                verbs=_strings(doc.get("verbs"), f"{where}.verbs"), resources=tuple(resources),
                namespaces=namespaces, non_resource_urls=urls,
                omit_stages=_stages(doc.get("omitStages"), f"{where}.omitStages"))

"""ObjectMeta rules: which names a kind accepts, generated names, and metadata validation.

The API server's create and update paths call `validate_object_meta` after the
strategy has filled server-owned metadata (uid, creationTimestamp, a generated
name) and turn the causes into a 422 with `invalid_error`. Wording follows
apimachinery's api/validation/objectmeta.go and the core wrapper that also
checks finalizer names, so clients comparing messages see Kubernetes' text.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, Protocol

from . import labels as fe
from .errors import Cause, InvalidError
from .names import (dns1035_label, dns1123_label, dns1123_subdomain, mask_trailing_dash, path_segment_name,
                    path_segment_prefix)

# utilrand's alphabet: no vowels (no words), no 0/1/3 (look like letters).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATED_SUFFIX_LENGTH = 5
# names.SimpleNameGenerator: the base is cut so the result fits 63 characters for every kind.
MAX_GENERATED_NAME_LENGTH = 63 - GENERATED_SUFFIX_LENGTH

FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"
FINALIZER_KUBERNETES = "kubernetes"
STANDARD_FINALIZERS = frozenset({FINALIZER_KUBERNETES, FINALIZER_ORPHAN, FINALIZER_FOREGROUND})
# Objects that may not own others (apimachinery's BannedOwners).
BANNED_OWNERS = frozenset({("", "v1", "Event")})
IMMUTABLE_MSG = "field is immutable"
# Groups kube-apiserver serves itself; any other group holds custom resources.
BUILTIN_GROUPS = frozenset({
    "", "apps", "batch", "autoscaling", "policy", "rbac.authorization.k8s.io", "networking.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "certificates.k8s.io", "apiextensions.k8s.io",
    "admissionregistration.k8s.io", "discovery.k8s.io", "events.k8s.io", "node.k8s.io",
    "flowcontrol.apiserver.k8s.io", "apiregistration.k8s.io", "resource.k8s.io", "storagemigration.k8s.io",
    "internal.apiserver.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
})

NameRule = str  # "subdomain" | "label" | "dns1035" | "path"

_LABEL_NAMED = {("", "namespaces"), ("apps", "statefulsets")}
_DNS1035_NAMED = {("", "services")}
_PATH_NAMED = {("rbac.authorization.k8s.io", r) for r in ("roles", "clusterroles", "rolebindings",
                                                           "clusterrolebindings")}


def name_rule_for(group: str, resource: str) -> NameRule:
    """The name rule of a kind, as its Validate function picks it in Kubernetes 1.32.

    Namespaces and StatefulSets need DNS-1123 labels, Services DNS-1035 labels (a
    letter first), RBAC objects only path segments; everything else, custom
    resources included, DNS-1123 subdomains.
    """
    key = (group, resource)
    if key in _LABEL_NAMED:
        return "label"
    if key in _DNS1035_NAMED:
        return "dns1035"
    if key in _PATH_NAMED:
        return "path"
    return "subdomain"


def _masked(check: Callable[[str], list[str]]) -> Callable[[str, bool], list[str]]:
    return lambda name, prefix: check(mask_trailing_dash(name) if prefix else name)


_NAME_CHECKS: dict[str, Callable[[str, bool], list[str]]] = {
    "subdomain": _masked(dns1123_subdomain),
    "label": _masked(dns1123_label),
    "dns1035": _masked(dns1035_label),
    "path": lambda name, prefix: path_segment_prefix(name) if prefix else path_segment_name(name),
}


def validate_name(name: str, rule: NameRule, *, prefix: bool = False) -> list[str]:
    """Messages for `name` under `rule`; `prefix` checks a generateName (a trailing '-' is fine)."""
    try:
        check = _NAME_CHECKS[rule]
    except KeyError:
        raise ValueError(f"unknown name rule {rule!r}") from None
    return check(name, prefix)


_POD_NAMED = {("apps", "deployments"), ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"),
              ("", "replicationcontrollers")}


def name_warnings(group: str, resource: str, name: str) -> list[str]:
    """The Warning headers kube-apiserver sends on create when a workload's name is not a DNS label.

    Such names are valid, but they end up in Pod hostnames (strategies' WarningsOnCreate).
    """
    msgs = dns1123_label(name)
    if not msgs:
        return []
    # Go prints the []string with %v: "[first second]".
    shown = "[" + " ".join(msgs) + "]"
    if (group, resource) == ("", "pods"):
        return ["metadata.name: this is used in the Pod's hostname, which can result in surprising behavior; "
                f"a DNS label is recommended: {shown}"]
    if (group, resource) in _POD_NAMED:
        return ["metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; "
                f"a DNS label is recommended: {shown}"]
    return []


class _Chooser(Protocol):
    def choice(self, seq: str) -> str: ...


def generate_name(prefix: str, rng: _Chooser, *, label_rule: bool = False) -> str:
    """generateName + 5 random characters, the prefix cut to 58 so the name fits 63.

    Kubernetes cuts at 58 for every kind (names.SimpleNameGenerator), so
    `label_rule` changes nothing; it is accepted so callers can say what they know.
    """
    del label_rule
    base = prefix[:MAX_GENERATED_NAME_LENGTH]
    return base + "".join(rng.choice(NAME_ALPHABET) for _ in range(GENERATED_SUFFIX_LENGTH))


# --- validation -------------------------------------------------------------------------------------

def validate_object_meta(obj: dict[str, Any], *, name_rule: NameRule, namespaced: bool,
                         old: dict[str, Any] | None = None, builtin: bool = True,
                         require_resource_version: bool = False) -> list[Cause]:
    """Causes for obj.metadata on create (old is None) or update (old is the stored object).

    `builtin` adds the core rule that an unqualified finalizer must be a standard one
    ("kubernetes", "orphan", "foregroundDeletion"); custom resources skip it, as in
    Kubernetes. `require_resource_version` adds Kubernetes' update check
    "must be specified for an update": Kubernetes' registry fills the current
    resourceVersion into unconditional updates before validating, so turn it on only
    where the caller does the same.
    """
    m = obj.get("metadata") or {}
    if old is None:
        return _validate_create(m, name_rule, namespaced, builtin)
    return _validate_update(m, old.get("metadata") or {}, builtin, require_resource_version)


def _validate_create(m: dict[str, Any], rule: NameRule, namespaced: bool, builtin: bool) -> list[Cause]:
    causes: list[Cause] = []
    name, generate = m.get("name") or "", m.get("generateName") or ""
    if generate:
        causes += [fe.invalid("metadata.generateName", generate, msg)
                   for msg in validate_name(generate, rule, prefix=True)]
    if name:
        causes += [fe.invalid("metadata.name", name, msg) for msg in validate_name(name, rule)]
    elif not generate:
        causes.append(fe.required("metadata.name", "name or generateName is required"))
    namespace = m.get("namespace") or ""
    if namespaced:
        if not namespace:
            causes.append(fe.required("metadata.namespace"))
        else:
            causes += [fe.invalid("metadata.namespace", namespace, msg) for msg in dns1123_label(namespace)]
    elif namespace:
        causes.append(fe.forbidden("metadata.namespace", "not allowed on this type"))
    generation = m.get("generation")
    if isinstance(generation, int) and generation < 0:
        causes.append(fe.invalid("metadata.generation", generation, "must be greater than or equal to 0"))
    return causes + _validate_common(m, builtin)


def _validate_common(m: dict[str, Any], builtin: bool) -> list[Cause]:
    causes = fe.validate_labels(m.get("labels"))
    causes += fe.validate_annotations(m.get("annotations"))
    causes += validate_owner_references(m.get("ownerReferences") or [])
    causes += validate_finalizers(m.get("finalizers") or [], builtin=builtin)
    return causes


def _validate_update(m: dict[str, Any], om: dict[str, Any], builtin: bool,
                     require_resource_version: bool) -> list[Cause]:
    causes: list[Cause] = []
    if om.get("deletionTimestamp"):
        new = sorted(set(m.get("finalizers") or []) - set(om.get("finalizers") or []))
        if new:
            causes.append(fe.forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the object is being deleted, found new finalizers "
                + fe.format_value(new)))
    if require_resource_version and not m.get("resourceVersion"):
        causes.append(fe.invalid("metadata.resourceVersion", m.get("resourceVersion") or "",
                                 "must be specified for an update"))
    generation, old_generation = m.get("generation") or 0, om.get("generation") or 0
    if isinstance(generation, int) and isinstance(old_generation, int) and generation < old_generation:
        causes.append(fe.invalid("metadata.generation", generation, "must not be decremented"))
    for key in ("name", "namespace", "uid"):
        new_value, old_value = m.get(key) or "", om.get(key) or ""
        if new_value != old_value:
            causes.append(fe.invalid(f"metadata.{key}", new_value, IMMUTABLE_MSG))
    creation, old_creation = m.get("creationTimestamp"), om.get("creationTimestamp")
    if not _same_time(creation, old_creation):
        causes.append(fe.invalid("metadata.creationTimestamp", fe.raw(go_time(creation)), IMMUTABLE_MSG))
    deletion, old_deletion = m.get("deletionTimestamp"), om.get("deletionTimestamp")
    if not _same_time(deletion, old_deletion, nullable=True):
        shown = fe.raw(go_time(deletion)) if deletion else None
        causes.append(fe.invalid("metadata.deletionTimestamp", shown, IMMUTABLE_MSG))
    grace, old_grace = m.get("deletionGracePeriodSeconds"), om.get("deletionGracePeriodSeconds")
    if grace != old_grace:
        causes.append(fe.invalid("metadata.deletionGracePeriodSeconds", grace, IMMUTABLE_MSG))
    return causes + _validate_common(m, builtin)


def validate_owner_references(refs: Iterable[dict[str, Any]],
                              field: str = "metadata.ownerReferences") -> list[Cause]:
    refs = list(refs)
    causes: list[Cause] = []
    first_controller = ""
    for ref in refs:
        api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
        group, version = _parse_group_version(api_version)
        if not version:
            causes.append(fe.invalid(f"{field}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            causes.append(fe.invalid(f"{field}.kind", kind, "must not be empty"))
        if not ref.get("name"):
            causes.append(fe.invalid(f"{field}.name", ref.get("name") or "", "must not be empty"))
        if not ref.get("uid"):
            causes.append(fe.invalid(f"{field}.uid", ref.get("uid") or "", "must not be empty"))
        if (group, version, kind) in BANNED_OWNERS:
            causes.append(fe.invalid(field, ref, f"{group}/{version}, Kind={kind} is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{kind}/{ref.get('name') or ''}"
            if first_controller:
                causes.append(fe.invalid(
                    field, refs, "Only one reference can have Controller set to true. Found \"true\" in references "
                                 f"for {first_controller} and {current}"))
            else:
                first_controller = current
    return causes


def _parse_group_version(api_version: str) -> tuple[str, str]:
    """schema.ParseGroupVersion; a malformed value yields no version, as FromAPIVersionAndKind does."""
    if api_version in ("", "/"):
        return "", ""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def validate_finalizers(finalizers: list[str], *, field: str = "metadata.finalizers",
                        builtin: bool = True) -> list[Cause]:
    """apimachinery's ValidateFinalizers, then (built-in kinds) core's per-item finalizer-name check."""
    causes: list[Cause] = []
    for finalizer in finalizers:
        causes += [fe.invalid(field, finalizer, msg) for msg in fe.qualified_name(finalizer)]
    if FINALIZER_ORPHAN in finalizers and FINALIZER_FOREGROUND in finalizers:
        causes.append(fe.invalid(field, finalizers, f"finalizer {FINALIZER_ORPHAN} and {FINALIZER_FOREGROUND} "
                                                    "cannot be both set"))
    if builtin:
        for i, finalizer in enumerate(finalizers):
            causes += validate_finalizer_name(finalizer, f"{field}[{i}]")
    return causes


def validate_finalizer_name(finalizer: str, field: str) -> list[Cause]:
    """core's validateKubeFinalizerName: a qualified name, and if it has no '/' a standard one.

    Also the rule for a Namespace's spec.finalizers (field "spec.finalizers[i]").
    """
    causes = [fe.invalid(field, finalizer, msg) for msg in fe.qualified_name(finalizer)]
    if not causes and "/" not in finalizer and finalizer not in STANDARD_FINALIZERS:
        causes.append(fe.invalid(field, finalizer, "name is neither a standard finalizer name nor is it "
                                                   "fully qualified"))
    return causes


# --- times as Go prints them ------------------------------------------------------------------------

def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _same_time(a: Any, b: Any, *, nullable: bool = False) -> bool:
    """Semantic equality of metav1.Time: the same instant (to the second) whatever the offset."""
    if a == b:
        return True  # the same text (an update carries the stored times back): nothing to parse
    if not a and not b:
        return True
    if nullable and (not a or not b):
        return False
    ta, tb = parse_time(a), parse_time(b)
    if ta is None or tb is None:
        return a == b
    return ta.replace(microsecond=0) == tb.replace(microsecond=0)


def go_time(value: Any) -> str:
    """time.Time.String() in UTC, e.g. `2024-05-01 10:00:00 +0000 UTC` (the zero time when unset)."""
    t = parse_time(value)
    if t is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


# --- the 422 ----------------------------------------------------------------------------------------

def invalid_error(kind_qualified: str, name: str, causes: Iterable[Cause], *, group: str | None = None,
                  kind: str | None = None) -> InvalidError:
    """errors.NewInvalid: `<Kind[.group]> "<name>" is invalid: <aggregate>`.

    One distinct error is shown bare, several inside [ ] joined by ", " with
    duplicates dropped (field.ErrorList.ToAggregate); details keep every cause.
    """
    causes = tuple(causes)
    parsed_kind, _, parsed_group = kind_qualified.partition(".")
    kind = parsed_kind if kind is None else kind
    group = parsed_group if group is None else group
    distinct: list[str] = []
    for cause in causes:
        text = fe.error_string(cause)
        if text not in distinct:
            distinct.append(text)
    message = f"{kind_qualified} {fe.go_quote(name)} is invalid"
    if len(distinct) == 1:
        message += ": " + distinct[0]
    elif distinct:
        message += ": [" + ", ".join(distinct) + "]"
    return InvalidError(message, name=name, group=group, kind=kind, causes=causes)

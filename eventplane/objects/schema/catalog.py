"""The catalog of served resources: built-in kinds from resources.json, plus custom
resources added at run time from CustomResourceDefinitions.

Consumed by discovery, OpenAPI, routing and validation in the API layer, and by
the client and epctl to resolve `deploy`, `deployments.apps`, `Deployment`.
A catalog is immutable; adding CRDs makes a new one, so readers never see a
half-updated catalog.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Subresource:
    name: str
    group: str
    version: str
    kind: str
    verbs: frozenset[str]
    # scale of a custom resource: the CRD's specReplicasPath, statusReplicasPath and
    # labelSelectorPath (".spec.replicas"); empty for built-in kinds (spec/status.replicas).
    paths: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    resource: str  # plural, lowercase
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    singular: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: Mapping[str, Subresource] = field(default_factory=dict)
    definition: str | None = None  # built-in kinds: the OpenAPI definition name
    list_kind: str = ""
    schema: Mapping[str, Any] | None = None  # custom resources: the version's openAPIV3Schema
    custom: bool = False
    served: bool = True
    storage: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`deployments.apps`, `pods`: how Kubernetes names a resource in messages."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def qualified_kind(self) -> str:
        """`Deployment.apps`, `Pod`: how Kubernetes names a kind in Invalid errors."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


class Catalog:
    def __init__(self, resources: Iterable[ResourceInfo]) -> None:
        self._all = tuple(resources)
        self._by_resource = {(r.group, r.version, r.resource): r for r in self._all}
        self._by_kind = {(r.group, r.version, r.kind): r for r in self._all}

    @classmethod
    def builtin(cls) -> Catalog:
        return _builtin()

    def __iter__(self):
        return iter(self._all)

    def get(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        return self._by_resource.get((group, version, resource))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceInfo | None:
        return self._by_kind.get((group, version, kind))

    def by_api_version(self, api_version: str, kind: str) -> ResourceInfo | None:
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, version, kind)

    def group_versions(self) -> dict[str, list[str]]:
        """Group name → its served versions, preferred first, groups in discovery order."""
        out: dict[str, list[str]] = {}
        for r in self._all:
            versions = out.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        return out

    def resolve(self, name: str) -> list[ResourceInfo]:
        """What `kubectl get NAME` means: plural, singular, short name or kind, optionally `.group`
        or `.version.group`; the preferred version first."""
        name = name.lower()
        matches = []
        for r in self._all:
            for alias in (r.resource, r.singular, r.kind.lower(), *r.short_names):
                if name in (alias, f"{alias}.{r.group}", f"{alias}.{r.version}.{r.group}") or \
                        (not r.group and name == f"{alias}.{r.version}"):
                    matches.append(r)
                    break
        return matches

    def with_custom(self, custom: Iterable[ResourceInfo]) -> Catalog:
        builtin = [r for r in self._all if not r.custom]
        return Catalog([*builtin, *custom])


@cache
def _builtin() -> Catalog:
    raw = json.loads((_HERE / "resources.json").read_text())
    resources = []
    for e in raw:
        subs = {name: Subresource(name, s["group"], s["version"], s["kind"], frozenset(s["verbs"]))
                for name, s in e["subresources"].items()}
        resources.append(ResourceInfo(
            group=e["group"], version=e["version"], resource=e["resource"], kind=e["kind"],
            namespaced=e["namespaced"], verbs=frozenset(e["verbs"]), singular=e["singular"],
            short_names=tuple(e["shortNames"]), categories=tuple(e["categories"]), subresources=subs,
            definition=e["definition"], list_kind=e["kind"] + "List"))
    return Catalog(resources)


def custom_resource(crd: Mapping[str, Any]) -> list[ResourceInfo]:
    """The resources one CustomResourceDefinition serves: one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs: dict[str, Subresource] = {}
        declared = v.get("subresources") or {}
        if "status" in declared:
            subs["status"] = Subresource("status", spec["group"], v["name"], names["kind"],
                                         frozenset({"get", "update", "patch"}))
        if "scale" in declared:
            scale = declared["scale"] or {}
            paths = {k: scale[k] for k in ("specReplicasPath", "statusReplicasPath", "labelSelectorPath")
                     if isinstance(scale.get(k), str)}
            subs["scale"] = Subresource("scale", "autoscaling", "v1", "Scale", frozenset({"get", "update", "patch"}),
                                        paths)
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append(ResourceInfo(
            group=spec["group"], version=v["name"], resource=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            verbs=frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}),
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
            subresources=subs, list_kind=names.get("listKind") or names["kind"] + "List", schema=schema,
            custom=True, storage=bool(v.get("storage"))))
    return out


def without_schema(r: ResourceInfo) -> ResourceInfo:
    return replace(r, schema=None)

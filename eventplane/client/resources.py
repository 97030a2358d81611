"""What the server serves, learnt from aggregated discovery, and what a user's name for
a resource means: `deploy`, `deployments.apps`, `Deployment`, `deployment.v1.apps`.

Fed by a transport's `discover()` (APIGroupDiscovery items, core group first);
consumed by client.py, which resolves every resource argument here, and by
epctl for names like `deployment.apps/web`. Built on the same Catalog the
server uses, so that both sides read a name the same way.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventplane.objects import errors
from eventplane.objects.schema import Catalog, ResourceInfo, Subresource


class Resources:
    def __init__(self, resources: Iterable[ResourceInfo]) -> None:
        self.catalog = Catalog(resources)

    @classmethod
    def from_discovery(cls, items: list[dict[str, Any]]) -> Resources:
        return cls(_infos(items))

    def __iter__(self):
        return iter(self.catalog)

    def find(self, name: str) -> ResourceInfo | None:
        """The resource `name` means, preferred version first; None when nothing matches."""
        return next(iter(self.catalog.resolve(name)), None)

    def category(self, name: str) -> list[ResourceInfo]:
        """The resources of a category (`all`), one version each, in discovery order."""
        seen, out = set(), []
        for r in self.catalog:
            if name.lower() in r.categories and (r.group, r.resource) not in seen:
                seen.add((r.group, r.resource))
                out.append(r)
        return out

    def resolve(self, name: str) -> ResourceInfo:
        info = self.find(name)
        if info is None:
            raise errors.NotFoundError(f'the server doesn\'t have a resource type "{name}"')
        return info

    def for_object(self, obj: Any) -> ResourceInfo:
        """The resource an object (a manifest) belongs to, from its apiVersion and kind."""
        if not isinstance(obj, dict):
            raise errors.BadRequestError("an object must be a mapping with apiVersion and kind")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not api_version or not kind:
            raise errors.BadRequestError(f"Object 'Kind' is missing in '{_short(obj)}'" if not kind
                                         else f"Object 'apiVersion' is missing in '{_short(obj)}'")
        info = self.catalog.by_api_version(api_version, kind)
        if info is None:
            raise errors.NotFoundError(f'resource mapping not found for name: "{_name(obj)}" namespace: '
                                       f'"{_namespace(obj)}": no matches for kind "{kind}" in version '
                                       f'"{api_version}"', kind=kind)
        return info


def kind_name(info: ResourceInfo) -> str:
    """`deployment.apps`, `configmap`: how kubectl names a kind in `-o name` and in its messages."""
    return f"{info.kind.lower()}.{info.group}" if info.group else info.kind.lower()


def _infos(items: list[dict[str, Any]]) -> list[ResourceInfo]:
    out = []
    for item in items:
        group = (item.get("metadata") or {}).get("name") or ""
        for v in item.get("versions") or []:
            version = v.get("version", "")
            for r in v.get("resources") or []:
                kind = (r.get("responseKind") or {}).get("kind", "")
                subs = {s["subresource"]: Subresource(s["subresource"], (s.get("responseKind") or {}).get("group", ""),
                                                      (s.get("responseKind") or {}).get("version", ""),
                                                      (s.get("responseKind") or {}).get("kind", ""),
                                                      frozenset(s.get("verbs") or ()))
                        for s in r.get("subresources") or [] if s.get("subresource")}
                out.append(ResourceInfo(
                    group=group, version=version, resource=r["resource"], kind=kind,
                    namespaced=r.get("scope") == "Namespaced", verbs=frozenset(r.get("verbs") or ()),
                    singular=r.get("singularResource") or kind.lower(),
                    short_names=tuple(r.get("shortNames") or ()), categories=tuple(r.get("categories") or ()),
                    subresources=subs, list_kind=f"{kind}List"))
    return out


def _name(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def _namespace(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("namespace") or ""


def _short(obj: dict[str, Any]) -> str:
    import json

    text = json.dumps(obj, separators=(",", ":"))
    return text if len(text) < 120 else text[:117] + "..."

"""Discovery documents, built from the catalog: /api, /apis, /api/v1, /apis/G/V and the
aggregated form (apidiscovery.k8s.io v2 and v2beta1) that kubectl asks for first."""
from __future__ import annotations

from typing import Any

from eventplane.objects.schema import Catalog, ResourceInfo

from . import audit, history

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"


def _resource_list_entries(resources: list[ResourceInfo]) -> list[dict[str, Any]]:
    out = []
    for r in resources:
        entry = {"name": r.resource, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": sorted(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for s in r.subresources.values():
            sub = {"name": f"{r.resource}/{s.name}", "singularName": "", "namespaced": r.namespaced,
                   "kind": s.kind, "verbs": sorted(s.verbs)}
            if s.group != r.group or s.version != r.version:
                sub["group"], sub["version"] = s.group, s.version
            out.append(sub)
    return out


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list(catalog: Catalog) -> dict[str, Any]:
    groups = []
    for group, versions in catalog.group_versions().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    groups.append(history.api_group())
    groups.append(audit.api_group())
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(catalog: Catalog, group: str) -> dict[str, Any] | None:
    versions = catalog.group_versions().get(group)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def resource_list(catalog: Catalog, group: str, version: str) -> dict[str, Any] | None:
    resources = [r for r in catalog if r.group == group and r.version == version]
    if not resources:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": _resource_list_entries(resources)}


def aggregated(catalog: Catalog, *, core: bool, version: str = "v2") -> dict[str, Any]:
    """APIGroupDiscoveryList: for /api the core group alone, for /apis every other group."""
    items = []
    for group, versions in catalog.group_versions().items():
        if bool(group) == core:
            continue
        vs = []
        for v in versions:
            resources = []
            for r in catalog:
                if r.group != group or r.version != v:
                    continue
                entry: dict[str, Any] = {
                    "resource": r.resource,
                    "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "scope": "Namespaced" if r.namespaced else "Cluster",
                    "singularResource": r.singular,
                    "verbs": sorted(r.verbs),
                }
                if r.short_names:
                    entry["shortNames"] = list(r.short_names)
                if r.categories:
                    entry["categories"] = list(r.categories)
                if r.subresources:
                    entry["subresources"] = [
                        {"subresource": s.name, "responseKind": {"group": s.group, "version": s.version,
                                                                 "kind": s.kind},
                         "verbs": sorted(s.verbs)} for s in r.subresources.values()]
                resources.append(entry)
            vs.append({"version": v, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": vs})
    if not core:
        items.append(history.aggregated_item())
        items.append(audit.aggregated_item())
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


def aggregated_version(accept: list) -> str | None:
    """v2 or v2beta1 when the client asks for aggregated discovery, None otherwise."""
    for m in accept:
        if m.params.get("as") == "APIGroupDiscoveryList" and m.params.get("g") == "apidiscovery.k8s.io" and \
                m.params.get("v") in ("v2", "v2beta1"):
            return m.params["v"]
        if m.type == "application/json" and "as" not in m.params:
            return None
    return None

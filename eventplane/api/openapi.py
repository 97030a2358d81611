"""OpenAPI documents for kubectl (apply, create, explain) and client generators:
/openapi/v2 as JSON, /openapi/v3 as an index of per group-version documents.

Built from the catalog and the derived definitions (descriptions are not
kept, see objects/schema/generate.py); custom resources contribute their
openAPIV3Schema. Documents are cached per catalog and carry a content hash so
that kubectl's cache works.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from eventplane.objects.schema import Catalog, ResourceInfo, definitions
from eventplane.objects.schema.nodes import references

from . import history

VERSION = "v1.32.0"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _custom_definition_name(r: ResourceInfo) -> str:
    return ".".join(reversed(r.group.split("."))) + f".{r.version}.{r.kind}"


def _closure(roots: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    defs = definitions()
    out: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        d = extra.get(name) or defs.get(name)
        if d is None:
            continue
        out[name] = d
        todo.extend(references(d))
    return out


def _custom_schemas(catalog: Catalog) -> dict[str, Any]:
    out = {}
    for r in catalog:
        if not r.custom:
            continue
        schema = json.loads(json.dumps(r.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}))
        props = schema.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"$ref": f"#/definitions/{META}ObjectMeta"}
        schema["x-kubernetes-group-version-kind"] = [{"group": r.group, "version": r.version, "kind": r.kind}]
        out[_custom_definition_name(r)] = schema
        out[_custom_definition_name(r) + "List"] = {
            "type": "object", "required": ["items"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"$ref": f"#/definitions/{META}ListMeta"},
                           "items": {"type": "array",
                                     "items": {"$ref": f"#/definitions/{_custom_definition_name(r)}"}}},
            "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version,
                                                  "kind": r.list_kind}]}
    return out


def _roots(resources: list[ResourceInfo]) -> list[str]:
    roots = [META + "Status", META + "DeleteOptions", META + "WatchEvent", META + "APIResourceList"]
    for r in resources:
        if r.custom:
            roots += [_custom_definition_name(r), _custom_definition_name(r) + "List"]
        else:
            roots += [r.definition, r.definition + "List"] if r.definition else []
        roots += [_definition_of(s.group, s.version, s.kind) for s in r.subresources.values()]
    return [x for x in roots if x]


def _definition_of(group: str, version: str, kind: str) -> str:
    for name, d in definitions().items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if (gvk["group"], gvk["version"], gvk["kind"]) == (group, version, kind):
                return name
    return ""


_QUERY_PARAMS = {
    "post": ("dryRun", "fieldManager", "fieldValidation"),
    "put": ("dryRun", "fieldManager", "fieldValidation"),
    "patch": ("dryRun", "fieldManager", "fieldValidation", "force"),
    "delete": ("dryRun", "gracePeriodSeconds", "propagationPolicy"),
    "list": ("labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch",
             "watch", "timeoutSeconds", "allowWatchBookmarks", "sendInitialEvents"),
}


def _paths(resources: list[ResourceInfo], ref_prefix: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in resources:
        base = "/" + _gv_path(r.group, r.version)
        collection = f"{base}/namespaces/{{namespace}}/{r.resource}" if r.namespaced else f"{base}/{r.resource}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        obj_ref = {"$ref": ref_prefix + (_custom_definition_name(r) if r.custom else r.definition)}

        def op(action: str, op_id: str) -> dict[str, Any]:
            # kubectl reads the write operations' query parameters to learn that the server does
            # field validation and dry runs itself (and then skips its own client-side checks).
            params = [{"name": p, "in": "query", "type": "string", "uniqueItems": True}
                      for p in _QUERY_PARAMS.get(action, ())]
            return {"operationId": op_id, "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                    "parameters": params, "responses": {"200": {"description": "OK", "schema": obj_ref}}}

        paths[collection] = {"get": op("list", f"list{r.kind}"), "post": op("post", f"create{r.kind}")}
        paths[collection + "/{name}"] = {"get": op("get", f"read{r.kind}"), "put": op("put", f"replace{r.kind}"),
                                         "patch": op("patch", f"patch{r.kind}"),
                                         "delete": op("delete", f"delete{r.kind}")}
    return paths


def _to_v3(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out[k] = v.replace("#/definitions/", "#/components/schemas/")
            elif k == "parameters" and isinstance(v, list):
                out[k] = [{"name": p["name"], "in": p["in"], "schema": {"type": p.get("type", "string")},
                           "uniqueItems": True} for p in v]
            else:
                out[k] = _to_v3(v)
        return out
    if isinstance(node, list):
        return [_to_v3(v) for v in node]
    return node


class OpenAPI:
    """Documents for one catalog, computed once each."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._custom = _custom_schemas(catalog)
        self._v2: bytes | None = None
        self._v3: dict[str, bytes] = {}

    def v2(self) -> bytes:
        if self._v2 is None:
            resources = list(self.catalog)
            doc = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": VERSION},
                   "paths": _paths(resources, "#/definitions/"),
                   "definitions": _closure(_roots(resources), self._custom)}
            self._v2 = json.dumps(doc, separators=(",", ":")).encode()
        return self._v2

    def group_versions(self) -> list[str]:
        return [_gv_path(g, v) for g, versions in self.catalog.group_versions().items() for v in versions] + \
            [_gv_path(history.GROUP, history.VERSION)]

    def v3(self, gv_path: str) -> bytes | None:
        if gv_path == _gv_path(history.GROUP, history.VERSION):
            return json.dumps(history.openapi_v3(), separators=(",", ":")).encode()
        if gv_path not in self._v3:
            resources = [r for r in self.catalog if _gv_path(r.group, r.version) == gv_path]
            if not resources:
                return None
            doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION},
                   "paths": _to_v3(_paths(resources, "#/components/schemas/")),
                   "components": {"schemas": _to_v3(_closure(_roots(resources), self._custom))}}
            self._v3[gv_path] = json.dumps(doc, separators=(",", ":")).encode()
        return self._v3[gv_path]

    def v3_index(self) -> dict[str, Any]:
        paths = {}
        for gv in self.group_versions():
            digest = hashlib.sha512(self.v3(gv) or b"").hexdigest()[:32].upper()
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
        return {"paths": paths}

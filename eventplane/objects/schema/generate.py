"""Derives the structural facts eventplane needs from Kubernetes' OpenAPI document.

Run at development time, not at run time:

    python -m eventplane.objects.schema.generate ../shared/k8s-openapi/swagger-v1.32.json

It writes two files beside this module, which are committed:
- resources.json: every served resource (group, version, plural, kind, scope,
  verbs, subresources), read from the document's paths;
- definitions.json: the schema definitions reachable from those kinds, with
  every description removed (types, required fields, formats, list merge keys
  and strategies, list/map types are kept).
Short names, singular names and categories are not in the document; they are
the small table below, as kube-apiserver's discovery reports them.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from .nodes import references

HERE = Path(__file__).parent

# (group, version, plural) -> (short names, categories). The list plus what later issues build on.
SERVED: dict[tuple[str, str, str], tuple[list[str], list[str]]] = {
    ("", "v1", "namespaces"): (["ns"], []),
    ("", "v1", "nodes"): (["no"], []),
    ("", "v1", "pods"): (["po"], ["all"]),
    ("", "v1", "services"): (["svc"], ["all"]),
    ("", "v1", "endpoints"): (["ep"], []),
    ("", "v1", "configmaps"): (["cm"], []),
    ("", "v1", "secrets"): ([], []),
    ("", "v1", "serviceaccounts"): (["sa"], []),
    ("", "v1", "events"): (["ev"], []),
    ("", "v1", "persistentvolumes"): (["pv"], []),
    ("", "v1", "persistentvolumeclaims"): (["pvc"], []),
    ("", "v1", "limitranges"): (["limits"], []),
    ("", "v1", "resourcequotas"): (["quota"], []),
    ("", "v1", "replicationcontrollers"): (["rc"], ["all"]),
    ("apps", "v1", "deployments"): (["deploy"], ["all"]),
    ("apps", "v1", "replicasets"): (["rs"], ["all"]),
    ("apps", "v1", "statefulsets"): (["sts"], ["all"]),
    ("apps", "v1", "daemonsets"): (["ds"], ["all"]),
    ("apps", "v1", "controllerrevisions"): ([], []),
    ("batch", "v1", "jobs"): ([], ["all"]),
    ("batch", "v1", "cronjobs"): (["cj"], ["all"]),
    ("coordination.k8s.io", "v1", "leases"): ([], []),
    ("scheduling.k8s.io", "v1", "priorityclasses"): (["pc"], []),
    ("policy", "v1", "poddisruptionbudgets"): (["pdb"], []),
    ("rbac.authorization.k8s.io", "v1", "roles"): ([], []),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): ([], []),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): ([], []),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"): ([], []),
    ("events.k8s.io", "v1", "events"): (["ev"], []),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): (["crd", "crds"], ["api-extensions"]),
    ("discovery.k8s.io", "v1", "endpointslices"): ([], []),
    ("storage.k8s.io", "v1", "storageclasses"): (["sc"], []),
}
SUBRESOURCES = {"status", "scale", "binding", "eviction", "finalize"}
# Kinds every group-version document also needs (request and response bodies of the generic verbs).
COMMON_DEFINITIONS = [
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
]
ACTION_VERB = {"post": "create", "list": "list", "watchlist": "watch", "deletecollection": "deletecollection",
               "get": "get", "put": "update", "patch": "patch", "delete": "delete"}
_PATH = re.compile(r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
                   r"(?P<ns>/namespaces/\{namespace\})?/(?P<plural>[a-z0-9]+)(?P<name>/\{name\})?"
                   r"(?:/(?P<sub>[a-z]+))?$")


def derive(doc: dict) -> tuple[list[dict], dict]:
    defs = doc["definitions"]
    kind_def = {}
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            kind_def[(gvk["group"], gvk["version"], gvk["kind"])] = name
    found: dict[tuple[str, str, str], dict] = {}
    for path, item in doc["paths"].items():
        m = _PATH.match(path)
        if not m:
            continue
        group, version = (m["g"] or ""), (m["v"] or m["cv"])
        key = (group, version, m["plural"])
        if key not in SERVED:
            continue
        entry = found.setdefault(key, {"group": group, "version": version, "resource": m["plural"],
                                       "namespaced": False, "verbs": set(), "subresources": {}})
        for method, op in item.items():
            if method == "parameters":
                continue
            action = op.get("x-kubernetes-action")
            gvk = op.get("x-kubernetes-group-version-kind") or {}
            if m["sub"]:
                if m["sub"] not in SUBRESOURCES:
                    continue
                sub = entry["subresources"].setdefault(m["sub"], {"verbs": set(), "group": gvk.get("group", ""),
                                                                  "version": gvk.get("version", ""),
                                                                  "kind": gvk.get("kind", "")})
                sub["verbs"].add(ACTION_VERB[action])
                continue
            if action in ACTION_VERB:
                entry["verbs"].add(ACTION_VERB[action])
            if action in ("get", "post") and gvk:
                entry["kind"] = gvk["kind"]
            if m["ns"]:
                entry["namespaced"] = True
    resources = []
    for key, (short, categories) in SERVED.items():
        e = found[key]
        kind = e["kind"]
        e["singular"] = kind.lower()
        e["shortNames"] = short
        e["categories"] = categories
        if "list" in e["verbs"]:
            e["verbs"].add("watch")  # the watch paths live under /watch/, which the pattern skips
        e["verbs"] = sorted(e["verbs"])
        e["definition"] = kind_def[(e["group"], e["version"], kind)]
        e["listDefinition"] = kind_def[(e["group"], e["version"], kind + "List")]
        for sub in e["subresources"].values():
            sub["verbs"] = sorted(sub["verbs"])
            sub["definition"] = kind_def[(sub["group"], sub["version"], sub["kind"])]
        resources.append(e)
    roots = COMMON_DEFINITIONS + [r["definition"] for r in resources] + [r["listDefinition"] for r in resources] \
        + [s["definition"] for r in resources for s in r["subresources"].values()]
    return resources, _reachable(defs, roots)


def _reachable(defs: dict, roots: list[str]) -> dict:
    out: dict[str, dict] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = _strip(defs[name])
        todo.extend(references(out[name]))
    return dict(sorted(out.items()))


def _strip(node):
    """The definitions without their documentation. Under "properties" the keys are field names: a
    field called description (PriorityClass, JSONSchemaProps, ...) stays."""
    if isinstance(node, dict):
        return {k: ({name: _strip(sub) for name, sub in v.items()} if k == "properties" and isinstance(v, dict)
                    else _strip(v))
                for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m eventplane.objects.schema.generate SWAGGER_JSON", file=sys.stderr)
        return 2
    resources, definitions = derive(json.loads(Path(argv[0]).read_text()))
    (HERE / "resources.json").write_text(json.dumps(resources, indent=1, sort_keys=True) + "\n")
    (HERE / "definitions.json").write_text(json.dumps(definitions, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(resources)} resources, {len(definitions)} definitions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

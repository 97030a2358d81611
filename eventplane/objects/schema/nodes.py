"""Walking a schema: one node per position in an object.

Built-in kinds are walked over definitions.json (Swagger 2.0 schemas with
$ref); custom resources over their openAPIV3Schema. Both look the same from
here, so validation, pruning, strategic merge patch and server-side apply need
only this interface: a node knows its type, its fields, its items or map
values, and the Kubernetes extensions that steer merging (patch strategy and
merge key, list type and map keys, map type, preserve-unknown-fields).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache, cached_property
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


@cache
def definitions() -> dict[str, dict[str, Any]]:
    return json.loads((_HERE / "definitions.json").read_text())


class Node:
    """A schema position. `ref` is the definition name when the position was reached through $ref."""

    __slots__ = ("_schema", "_resolve", "ref", "__dict__")

    def __init__(self, schema: Mapping[str, Any], resolve: Callable[[str], Mapping[str, Any]] | None = None,
                 ref: str | None = None) -> None:
        self._resolve = resolve or _no_refs
        while isinstance(schema.get("$ref"), str) and "properties" not in schema:
            ref = schema["$ref"].rsplit("/", 1)[1]
            schema = {**self._resolve(ref), **{k: v for k, v in schema.items() if k != "$ref"}}
        # allOf with a single $ref is how OpenAPI v3 documents wrap references
        if "allOf" in schema and len(schema["allOf"]) == 1 and isinstance(schema["allOf"][0].get("$ref"), str):
            inner = Node(schema["allOf"][0], self._resolve)
            ref, schema = inner.ref, {**inner._schema, **{k: v for k, v in schema.items() if k != "allOf"}}
        self._schema = schema
        self.ref = ref

    @classmethod
    def definition(cls, name: str) -> Node:
        return cls({"$ref": f"#/definitions/{name}"}, definitions().__getitem__)

    @classmethod
    def custom(cls, schema: Mapping[str, Any] | None) -> Node:
        """A custom resource's openAPIV3Schema, with the metadata Kubernetes adds to every object."""
        schema = dict(schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
        props = dict(schema.get("properties") or {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
        schema["properties"] = props
        schema.setdefault("type", "object")
        return cls(schema, definitions().__getitem__)

    # --- shape ---------------------------------------------------------------------------------

    @property
    def raw(self) -> Mapping[str, Any]:
        return self._schema

    @cached_property
    def type(self) -> str | None:
        """object, array, string, integer, number, boolean; None when anything goes."""
        t = self._schema.get("type")
        if t is None and "properties" in self._schema:
            return "object"
        return t

    @cached_property
    def properties(self) -> Mapping[str, Any]:
        return self._schema.get("properties") or {}

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self._schema.get("required") or ())

    def field(self, name: str) -> Node | None:
        # Children are made once and kept: every request walks the same few schemas.
        children = self._children
        if name not in children:
            sub = self.properties.get(name)
            children[name] = Node(sub, self._resolve) if sub is not None else None
        return children[name]

    @cached_property
    def _children(self) -> dict[str, Node | None]:
        return {}

    @cached_property
    def _items(self) -> Node | None:
        sub = self._schema.get("items")
        return Node(sub, self._resolve) if isinstance(sub, Mapping) else None

    def items(self) -> Node | None:
        return self._items

    @cached_property
    def _values(self) -> Node | None:
        sub = self._schema.get("additionalProperties")
        return Node(sub, self._resolve) if isinstance(sub, Mapping) else None

    def values(self) -> Node | None:
        """The schema of a map's values (additionalProperties)."""
        return self._values

    @cached_property
    def is_map(self) -> bool:
        return self.type == "object" and not self.properties and isinstance(
            self._schema.get("additionalProperties"), Mapping)

    @cached_property
    def is_open(self) -> bool:
        """Any content is allowed below (RawExtension, JSON, preserve-unknown-fields, untyped)."""
        if self._schema.get("x-kubernetes-preserve-unknown-fields"):
            return True
        if self.type is None and not self.int_or_string:
            return True
        return self.type == "object" and not self.properties and "additionalProperties" not in self._schema

    @cached_property
    def int_or_string(self) -> bool:
        return self.ref == INT_OR_STRING or self._schema.get("format") == "int-or-string" or \
            bool(self._schema.get("x-kubernetes-int-or-string"))

    @cached_property
    def quantity(self) -> bool:
        return self.ref == QUANTITY

    @cached_property
    def plain_string(self) -> bool:
        """A string and nothing else: a str value here needs no further check."""
        return self.type == "string" and not self.int_or_string and not self.quantity and not self.is_open

    # --- merging --------------------------------------------------------------------------------

    @property
    def patch_strategy(self) -> str:
        return self._schema.get("x-kubernetes-patch-strategy", "")

    @property
    def patch_merge_key(self) -> str:
        return self._schema.get("x-kubernetes-patch-merge-key", "")

    @property
    def list_type(self) -> str:
        """atomic, set or map (x-kubernetes-list-type); a merge key implies map."""
        t = self._schema.get("x-kubernetes-list-type")
        if t:
            return t
        if self.patch_merge_key:
            return "map"
        return "atomic"

    @property
    def list_map_keys(self) -> tuple[str, ...]:
        keys = self._schema.get("x-kubernetes-list-map-keys")
        if keys:
            return tuple(keys)
        return (self.patch_merge_key,) if self.patch_merge_key else ()

    @property
    def map_type(self) -> str:
        """granular (merge key by key) or atomic (x-kubernetes-map-type)."""
        return self._schema.get("x-kubernetes-map-type", "granular")

    def __repr__(self) -> str:
        return f"Node({self.ref or self.type})"


def references(schema: Any) -> list[str]:
    """The definition names a schema refers to ($ref), anywhere inside it."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        found = [ref.rsplit("/", 1)[1]] if isinstance(ref, str) else []
        for v in schema.values():
            found.extend(references(v))
        return found
    if isinstance(schema, list):
        return [r for v in schema for r in references(v)]
    return []


def _no_refs(name: str) -> Mapping[str, Any]:
    raise KeyError(f"schema reference {name!r} cannot be resolved here")

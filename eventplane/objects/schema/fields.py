"""Unknown fields and wrong types in a request body, judged against a schema.

The API layer calls this on every create, update and patch result. Unknown
fields follow the request's fieldValidation (Strict: refuse; Warn: warn;
Ignore: drop silently); Kubernetes drops them in every mode but Strict,
because a built-in kind has nowhere to keep them. Explicit nulls are dropped
as Kubernetes' decoding drops them. A wrong type is always refused, worded as
Kubernetes' JSON decoder words it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .nodes import Node

_GO_TYPE = {"integer": "int64", "number": "float64", "boolean": "bool", "string": "string",
            "object": "map[string]interface {}", "array": "[]interface {}"}


@dataclass
class FieldProblems:
    unknown: list[str] = field(default_factory=list)  # paths such as spec.template.spec.containers[0].foo
    type_errors: list[str] = field(default_factory=list)


def check_fields(obj: dict[str, Any], node: Node, *, prune: bool) -> FieldProblems:
    """Walk `obj` against `node`; with `prune`, remove unknown fields and nulls in place."""
    problems = FieldProblems()
    _walk(obj, node, "", problems, prune)
    return problems


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_ok(value: Any, node: Node) -> bool:
    if node.int_or_string:
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    if node.quantity:
        return isinstance(value, (int, float, str)) and not isinstance(value, bool)
    t = node.type
    if t is None:
        return True
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    return True


def _walk(value: Any, node: Node, path: str, problems: FieldProblems, prune: bool) -> None:
    # Paths are formatted only for what is reported: most bodies have nothing to report.
    _check(value, node, None, path, problems, prune)


def _path(at: tuple | None, tail: str) -> str:
    """The dotted path of a position: `at` is (parent, key or index), innermost last."""
    keys = []
    while at is not None:
        at, key = at
        keys.append(key)
    out = tail
    for key in reversed(keys):
        out = f"{out}[{key}]" if type(key) is int else (f"{out}.{key}" if out else key)
    return out


_SIMPLE = {dict: "object", list: "array", str: "string"}  # exact types whose check is one comparison


def _check(value: Any, node: Node, at: tuple | None, root: str, problems: FieldProblems, prune: bool) -> None:
    simple = _SIMPLE.get(type(value))
    t = node.type
    if simple is None or t != simple or node.int_or_string or node.quantity:
        if not _type_ok(value, node):
            where = _path(at, root) or "(root)"
            problems.type_errors.append(
                f"json: cannot unmarshal {_json_type(value)} into Go struct field {where} of type "
                f"{_GO_TYPE.get(node.type or '', node.type or 'value')}")
            return
        if node.is_open or node.int_or_string or node.quantity:
            return
    elif node.is_open:
        return
    if type(value) is dict or isinstance(value, dict):
        # A string where a plain string belongs (most leaves) is not walked into: nothing is below it.
        if node.is_map:
            values = node.values()
            strings = values is not None and values.plain_string
            for k in list(value):
                v = value[k]
                if v is None:
                    if prune:
                        del value[k]
                elif values is not None and not (strings and type(v) is str):
                    _check(v, values, (at, k), root, problems, prune)
            return
        field = node.field
        for k in list(value):
            child = field(k)
            if child is None:
                problems.unknown.append(_path((at, k), root))
                if prune:
                    del value[k]
                continue
            v = value[k]
            if v is None:
                if prune:
                    del value[k]
            elif not (type(v) is str and child.plain_string):
                _check(v, child, (at, k), root, problems, prune)
    elif isinstance(value, list):
        items = node.items()
        if items is None:
            return
        for i, item in enumerate(value):
            if item is not None:
                _check(item, items, (at, i), root, problems, prune)

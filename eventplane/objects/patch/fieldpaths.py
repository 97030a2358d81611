"""Field paths and field sets: which fields an object sets, as managedFields records them.

Fed by a JSON object and its schema `Node`; consumed by apply.py (server-side
apply) and managed.py (ownership on create, update and patch). The rules are
structured-merge-diff v4's, the library kube-apiserver tracks ownership with:

- a path is a tuple of path elements; an element is one of
  ``("f", name)`` a struct field or map key, written ``f:name``;
  ``("k", ((key, json), ...))`` an item of an associative list, by its map keys
  sorted by name, written ``k:{"name":"c"}``;
  ``("v", json)`` an item of a set, written ``v:"x"``;
  ``("i", n)`` an item by position, written ``i:0`` (only read, never produced);
- a FieldSet is a frozenset of paths. An object's set holds every scalar leaf,
  every atomic list or map as a whole, every list item, every map entry that is
  not a declared struct field, and explicit nulls and empty maps.

The schema decides the shape at each position (see `shape`): struct fields and
granular maps are walked key by key, lists by their list type, and positions
without a schema (preserve-unknown-fields, RawExtension) are "deduced" the way
structured-merge-diff deduces them: maps are granular, lists atomic.
"""
from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from ..errors import BadRequestError
from ..schema import Node

PathElement = tuple
Path = tuple
FieldSet = frozenset

# Shapes of a position, from the schema and (where the schema is silent) the value.
LEAF = "leaf"          # a scalar, or null
ATOMIC = "atomic"      # an atomic list or map: owned and replaced as a whole
FIELDS = "fields"      # a struct or a granular map: walked key by key
SET = "set"            # a list of scalars merged as a set
ASSOC = "assoc"        # a list of maps merged by their map keys

# Kubernetes' built-in list-map keys omitted from an item take their schema
# default; definitions.json carries no defaults, and protocol is the only key
# of a built-in list map that has one.
_KEY_DEFAULTS = {"protocol": "TCP"}


class _Missing:
    """Absent, as opposed to present and null."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


# --- path elements ------------------------------------------------------------------------------

_ESCAPED = ("<", ">", "&", "\u2028", "\u2029")


def canonical_json(value: Any) -> str:
    """Compact JSON as Go's encoder writes it: sorted keys, integral floats as integers,
    and <, >, & escaped, so that equal values give equal path elements."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = json.dumps(_integral(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if not any(c in text for c in _ESCAPED):
        return text
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _integral(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def field(name: str) -> PathElement:
    return ("f", name)


def element_string(pe: PathElement) -> str:
    """The fieldsV1 key of one path element."""
    kind, body = pe
    if kind == "f":
        return "f:" + body
    if kind == "k":
        return "k:{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in body) + "}"
    if kind == "v":
        return "v:" + body
    return f"i:{body}"


def parse_element(text: str) -> PathElement:
    """The path element of one fieldsV1 key; BadRequestError when it is not one."""
    prefix, _, body = text.partition(":")
    try:
        if prefix == "f":
            return ("f", body)
        if prefix == "k":
            keys = json.loads(body)
            if not isinstance(keys, dict):
                raise ValueError("not an object")
            return ("k", tuple(sorted((k, canonical_json(v)) for k, v in keys.items())))
        if prefix == "v":
            return ("v", canonical_json(json.loads(body)))
        if prefix == "i":
            return ("i", int(body))
    except ValueError as e:
        raise BadRequestError(f"invalid managed fields path element {text!r}: {e}") from None
    raise BadRequestError(f"invalid managed fields path element {text!r}: unknown prefix {prefix!r}")


def _value_order(value: Any) -> tuple:
    """structured-merge-diff's total order of values: numbers, strings, booleans, lists, maps, null."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, tuple(_value_order(v) for v in value))
    if isinstance(value, dict):
        return (4, tuple((k, _value_order(value[k])) for k in sorted(value)))
    return (5,)


def element_order(pe: PathElement) -> tuple:
    """Field names first, then keys, then set values, then indexes — the order fieldsV1 is written in."""
    kind, body = pe
    if kind == "f":
        return (0, body)
    if kind == "k":
        return (1, tuple((k, _value_order(json.loads(v))) for k, v in body))
    if kind == "v":
        return (2, _value_order(json.loads(body)))
    return (3, body)


def path_string(path: Path) -> str:
    """A path as Kubernetes prints it in conflicts: `.spec.containers[name="web"].image`."""
    out = []
    for kind, body in path:
        if kind == "f":
            out.append("." + body)
        elif kind == "k":
            out.append("[" + ",".join(f"{k}={v}" for k, v in body) + "]")
        elif kind == "v":
            out.append(f"[={body}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


# --- fieldsV1 ------------------------------------------------------------------------------------

def to_fields_v1(fields: Iterable[Path]) -> dict[str, Any]:
    """Encode a set as fieldsV1: a tree of element keys, `.` marking a member that has children."""
    return _emit(trie(p for p in fields if p), top=True)


def _emit(tree: dict, *, top: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    children = sorted((pe for pe in tree if pe is not None), key=element_order)
    if not top and None in tree and children:
        out["."] = {}
    for pe in children:
        out[element_string(pe)] = _emit(tree[pe], top=False)
    return out


def from_fields_v1(data: Mapping[str, Any]) -> FieldSet:
    """Decode fieldsV1; BadRequestError when it is malformed."""
    if not isinstance(data, Mapping):
        raise BadRequestError("invalid managed fields: fieldsV1 must be an object")
    out: set[Path] = set()
    _decode(data, (), out)
    return frozenset(out)


def _decode(data: Mapping[str, Any], prefix: Path, out: set[Path]) -> None:
    for key, sub in data.items():
        if key == ".":
            if prefix:
                out.add(prefix)
            continue
        if not isinstance(sub, Mapping):
            raise BadRequestError(f"invalid managed fields: the value of {key!r} must be an object")
        path = prefix + (parse_element(key),)
        if not sub:
            out.add(path)
        else:
            _decode(sub, path, out)


# --- shapes --------------------------------------------------------------------------------------

class Schema:
    """A schema Node with what walks ask of it worked out once. A walk asks one position for its
    shape and children many times, and a Node builds a new child on every call."""

    __slots__ = ("node", "properties", "on_dict", "on_list", "typed", "_children", "_items")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.properties = node.properties
        self.typed = bool(self.properties or node.is_map or node.type == "array")
        self.on_dict, self.on_list = LEAF, (LEAF, ())
        if node.int_or_string or node.quantity:
            pass
        elif self.properties or node.is_map:
            self.on_dict = ATOMIC if node.map_type == "atomic" else FIELDS
        elif node.type == "array":
            self.on_list = list_kind(node)
        elif node.type == "object" or node.is_open:
            # preserve-unknown-fields, RawExtension, untyped: deduced as structured-merge-diff does
            self.on_dict, self.on_list = FIELDS, (ATOMIC, ())
        self._children: dict[str, Schema | None] = {}
        self._items: Any = MISSING

    def child(self, name: str) -> Schema | None:
        if name not in self._children:
            sub = self.node.field(name) if name in self.properties else (
                self.node.values() if self.node.is_map else None)
            self._children[name] = Schema(sub) if sub is not None else None
        return self._children[name]

    def items(self) -> Schema | None:
        if self._items is MISSING:
            sub = self.node.items()
            self._items = Schema(sub) if sub is not None else None
        return self._items

    def __repr__(self) -> str:
        return repr(self.node)


@lru_cache(maxsize=128)
def _schema_of(node: Node) -> Schema:
    return Schema(node)


def schema(node: Node | Schema | None) -> Schema | None:
    """The walkable form of `node` (the same one for the same Node, while it is recently used)."""
    if node is None or isinstance(node, Schema):
        return node
    return _schema_of(node)


def shape(node: Schema | None, value: Any) -> tuple[str, tuple[str, ...]]:
    """The shape of a position holding `value`, and the map keys when it is an associative list."""
    if value is None or value is MISSING:
        return LEAF, ()
    if isinstance(value, dict):
        return (FIELDS if node is None else node.on_dict), ()
    if isinstance(value, list):
        return (ATOMIC, ()) if node is None else node.on_list
    return LEAF, ()


def list_kind(node: Node) -> tuple[str, tuple[str, ...]]:
    """A list's merge relationship. An explicit x-kubernetes-list-type wins; otherwise a merge
    patch strategy makes it associative (by its merge key) or a set, as kube-openapi converts it."""
    declared = node.raw.get("x-kubernetes-list-type")
    if declared == "atomic":
        return ATOMIC, ()
    if declared == "set":
        return SET, ()
    if declared == "map":
        return ASSOC, node.list_map_keys
    if "merge" in node.patch_strategy.split(","):
        return (ASSOC, node.list_map_keys) if node.patch_merge_key else (SET, ())
    return ATOMIC, ()


def child(node: Schema | None, name: str) -> Schema | None:
    """The schema of field or map key `name` under `node`; None where the schema is silent."""
    return node.child(name) if node is not None else None


def declared(node: Schema | None, name: str) -> bool:
    return node is not None and name in node.properties


def items(node: Schema | None) -> Schema | None:
    return node.items() if node is not None else None


def item_element(kind: str, keys: tuple[str, ...], item: Any, item_node: Schema | None) -> PathElement:
    """The path element of one list item; BadRequestError when an associative item is not a map."""
    if kind == SET:
        return ("v", canonical_json(item))
    if not isinstance(item, dict):
        raise BadRequestError("associative list with keys may not have non-map elements")
    pairs = []
    for k in keys:
        if k in item:
            pairs.append((k, canonical_json(item[k])))
            continue
        sub = child(item_node, k)
        default = sub.node.raw.get("default") if sub is not None else None
        if default is None:
            default = _KEY_DEFAULTS.get(k)
        if default is not None:
            pairs.append((k, canonical_json(default)))
    return ("k", tuple(sorted(pairs)))


def indexed(kind: str, keys: tuple[str, ...], value: list, item_node: Schema | None,
            *, strict: bool = False, where: Path = ()) -> list[tuple[PathElement, Any]]:
    """The items of a set or associative list with their path elements, first occurrence of each.
    With `strict`, a repeated element is a BadRequestError (an applied configuration may not repeat)."""
    seen: set[PathElement] = set()
    out = []
    for item in value:
        pe = item_element(kind, keys, item, item_node)
        if pe in seen:
            if strict:
                raise BadRequestError(
                    f"{path_string(where)}: duplicate entries for key {path_string((pe,))}")
            continue
        seen.add(pe)
        out.append((pe, item))
    return out


# --- what an object sets -------------------------------------------------------------------------

# Fields the server owns: never attributed to a manager (Kubernetes' stripMeta set, plus the
# deletion fields that only graceful deletion writes).
_SERVER_METADATA = frozenset({
    "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
    "managedFields", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
})


@dataclass(frozen=True)
class Scope:
    """The top-level fields one request may change: Kubernetes' reset fields of the strategy.

    The main resource may not change `status` (when the kind has a status subresource); the
    status subresource may change only `status` and `metadata`."""

    reset: frozenset[str] = frozenset()
    only: frozenset[str] | None = None

    def allows(self, name: str) -> bool:
        if self.only is not None:
            return name in self.only
        return name not in self.reset

    def tracked(self, path: Path) -> bool:
        """Whether ownership of `path` is recorded."""
        if not path:
            return False
        top = path[0][1]
        if top in ("apiVersion", "kind") or not self.allows(top):
            return False
        if top == "metadata":
            return len(path) > 1 and path[1][1] not in _SERVER_METADATA
        return True

    def filter(self, fields: Iterable[Path]) -> FieldSet:
        return frozenset(p for p in fields if self.tracked(p))


def scope_for(node: Node | Schema, subresource: str = "", reset: Collection[str] | None = None) -> Scope:
    """The scope of a request: explicit `reset` top-level fields, or Kubernetes' usual ones."""
    if subresource == "status":
        return _STATUS_SCOPE
    if reset is not None:
        return Scope(reset=frozenset(reset))
    return _WITHOUT_STATUS if "status" in node.properties else _EVERYTHING


_STATUS_SCOPE = Scope(only=frozenset({"status", "metadata"}))
_WITHOUT_STATUS = Scope(reset=frozenset({"status"}))
_EVERYTHING = Scope()


def fieldset(obj: Mapping[str, Any], node: Node, *, subresource: str = "",
             reset: Collection[str] | None = None) -> FieldSet:
    """The fields `obj` sets, less the server's metadata and the fields the request may not change."""
    return scope_for(node, subresource, reset).filter(raw_fieldset(obj, node))


def raw_fieldset(obj: Any, node: Node | Schema | None, *, strict: bool = False) -> FieldSet:
    """Every field `obj` sets, metadata and status included."""
    out: set[Path] = set()
    _collect(obj, schema(node), (), out, strict)
    return frozenset(out)


def _collect(value: Any, node: Schema | None, path: Path, out: set[Path], strict: bool) -> None:
    kind, keys = shape(node, value)
    if kind in (LEAF, ATOMIC):
        if path:
            out.add(path)
    elif kind == FIELDS:
        for name, sub in value.items():
            p = path + (("f", name),)
            _collect(sub, child(node, name), p, out, strict)
            if sub is None or sub == {} or not declared(node, name):
                out.add(p)
    else:
        item_node = items(node)
        for pe, item in indexed(kind, keys, value, item_node, strict=strict, where=path):
            p = path + (pe,)
            _collect(item, item_node, p, out, strict)
            out.add(p)


def created_fields_v1(obj: Mapping[str, Any], node: Schema, scope: Scope) -> dict[str, Any] | None:
    """`to_fields_v1(scope.filter(compare({}, obj, node).added))` in one walk, without building the
    set: what a create records as its manager's fields. None when the root is not walked field by
    field (the caller then takes the general path)."""
    if shape(node, obj)[0] != FIELDS:
        return None
    out: dict[str, Any] = {}
    for name in sorted(obj):
        if name in ("apiVersion", "kind") or not scope.allows(name):
            continue  # nothing under an untracked top-level field is tracked
        value, sub = obj[name], node.child(name)
        if name != "metadata":
            out["f:" + name] = _added_tree(value, sub)
            continue
        # metadata itself is never tracked, nor the server's fields in it; the rest is
        if isinstance(value, dict) and value and shape(sub, value)[0] == FIELDS:
            kept = {"f:" + k: _added_tree(value[k], child(sub, k)) if isinstance(value[k], (dict, list)) else {}
                    for k in sorted(value) if k not in _SERVER_METADATA}
            if kept:
                out["f:metadata"] = kept
    return out


def _added_tree(value: Any, node: Schema | None) -> dict[str, Any]:
    """The fieldsV1 of a position that is absent before and holds `value` after (in the set itself,
    with everything under it), as `_compare(MISSING, value, ...)` and `_emit` make it."""
    if not isinstance(value, (dict, list)):
        return {}  # a leaf (shape's LEAF), the most common position by far
    kind, keys = shape(node, value)
    if kind in (LEAF, ATOMIC) or empty(value):
        return {}
    out: dict[str, Any] = {".": {}}
    if kind == FIELDS:
        for name in sorted(value):
            v = value[name]  # a leaf's tree is {} (the check _added_tree starts with, without the call)
            out["f:" + name] = _added_tree(v, child(node, name)) if isinstance(v, (dict, list)) else {}
        return out
    item_node = items(node)
    grouped: dict[PathElement, list] = {}
    for item in value:
        grouped.setdefault(item_element(kind, keys, item, item_node), []).append(item)
    for pe in sorted(grouped, key=element_order):
        found = grouped[pe]
        # a repeated item is recorded as itself, without what is under it, as _compare_items does
        out[element_string(pe)] = _added_tree(found[0], item_node) if len(found) == 1 else {}
    return out


def trie(paths: Iterable[Path]) -> dict:
    """Paths as a tree of path elements; the key None marks a path that is itself in the set."""
    root: dict = {}
    for path in paths:
        node = root
        for pe in path:
            node = node.setdefault(pe, {})
        node[None] = True
    return root


def ensure_named_fields(fields: Iterable[Path], node: Node | Schema) -> FieldSet:
    """`fields` plus every declared struct field above one of them, as structured-merge-diff's
    EnsureNamedFieldsAreMembers: pruning treats a struct as owned when anything in it is."""
    out = set(fields)

    def walk(tree: dict, current: Schema | None, prefix: Path) -> None:
        for pe, below in tree.items():
            if pe is None or not any(k is not None for k in below):
                continue  # only paths with something below them are added
            path = prefix + (pe,)
            kind, name = pe
            if kind == "f":
                if declared(current, name):
                    out.add(path)
                walk(below, child(current, name), path)
            else:
                walk(below, items(current), path)

    walk(trie(out), schema(node), ())
    return frozenset(out)


# --- what changed --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """Paths added, modified and removed between two objects (structured-merge-diff's Compare)."""

    added: FieldSet
    modified: FieldSet
    removed: FieldSet

    def filter(self, scope: Scope) -> Comparison:
        return Comparison(scope.filter(self.added), scope.filter(self.modified), scope.filter(self.removed))


def compare(old: Any, new: Any, node: Node | Schema | None) -> Comparison:
    added: set[Path] = set()
    modified: set[Path] = set()
    removed: set[Path] = set()
    _compare(old, new, schema(node), (), added, modified, removed)
    return Comparison(frozenset(added), frozenset(modified), frozenset(removed))


def common_shape(node: Schema | None, lhs: Any, rhs: Any) -> tuple[str, tuple[str, ...]]:
    """The shape two values at one position share. Null stands for an empty value of the other's
    shape; values of different shapes are compared (and merged) as leaves."""
    left, right = shape(node, lhs), shape(node, rhs)
    if lhs is MISSING or lhs is None:
        return right if rhs is not MISSING else left
    if rhs is MISSING or rhs is None:
        return left
    return left if left == right else (LEAF, ())


def empty(value: Any) -> bool:
    """Absent, null, or an empty map or list."""
    return value is MISSING or value is None or value == {} or value == []


def _compare(lhs: Any, rhs: Any, node: Schema | None, path: Path,
             added: set[Path], modified: set[Path], removed: set[Path]) -> None:
    if type(lhs) is str and type(rhs) is str:
        # two strings (most leaves): what the general path below decides for them, sooner
        if path and lhs != rhs:
            modified.add(path)
        return
    if type(lhs) is type(rhs) and type(lhs) in (dict, list) and _identical(lhs, rhs):
        return  # an unchanged subtree adds, modifies and removes nothing: not walked
    kind, keys = common_shape(node, lhs, rhs)
    # Two empty or null values compare as leaves, keeping the empty/null distinction.
    if kind in (LEAF, ATOMIC) or (kind in (FIELDS, SET, ASSOC) and empty(lhs) and empty(rhs)):
        if not path:
            return
        if lhs is MISSING:
            added.add(path)
        elif rhs is MISSING:
            removed.add(path)
        elif not json_equal(lhs, rhs):
            modified.add(path)
        return
    if kind == FIELDS:
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        for name in [*left, *(k for k in right if k not in left)]:
            _compare(left.get(name, MISSING), right.get(name, MISSING), child(node, name),
                     path + (("f", name),), added, modified, removed)
    else:
        _compare_items(lhs, rhs, kind, keys, items(node), path, added, modified, removed)
    if path:
        if lhs is MISSING:
            added.add(path)
        elif rhs is MISSING:
            removed.add(path)


def _compare_items(lhs: Any, rhs: Any, kind: str, keys: tuple[str, ...], item_node: Schema | None,
                   path: Path, added: set[Path], modified: set[Path], removed: set[Path]) -> None:
    def group(value: Any) -> dict[PathElement, list]:
        out: dict[PathElement, list] = {}
        for item in value if isinstance(value, list) else ():
            out.setdefault(item_element(kind, keys, item, item_node), []).append(item)
        return out

    left, right = group(lhs), group(rhs)
    for pe in [*left, *(k for k in right if k not in left)]:
        ls, rs = left.get(pe, []), right.get(pe, [])
        p = path + (pe,)
        if len(ls) <= 1 and len(rs) <= 1:
            _compare(ls[0] if ls else MISSING, rs[0] if rs else MISSING, item_node, p,
                     added, modified, removed)
        elif len(ls) >= 2 and len(rs) >= 2:
            # Duplicates on both sides compare as one atomic value.
            if not json_equal(ls, rs):
                modified.add(p)
        elif len(ls) >= 2:
            if rs:
                _compare(MISSING, rs[0], item_node, p, added, modified, removed)
            removed.add(p)
        else:
            if ls:
                _compare(ls[0], MISSING, item_node, p, added, modified, removed)
            added.add(p)


def _identical(a: Any, b: Any) -> bool:
    """The same JSON value, types included: Python's == first (cheap, and it fails fast), then the
    encodings, which tell true from 1 (== does not). A false answer only means "walk it"."""
    if a != b:
        return False
    try:
        return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits, or a key that is not a string
        return False


def json_equal(a: Any, b: Any) -> bool:
    """Deep equality of JSON values where true is not 1 (Python's == says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)):
        return isinstance(b, (int, float)) and a == b
    return type(a) is type(b) and a == b

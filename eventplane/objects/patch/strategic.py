"""Strategic merge patch for built-in kinds (`application/strategic-merge-patch+json`).

The API layer calls `apply_strategic_merge_patch` with the stored object, the
decoded patch and the kind's schema `Node`; kubectl's client-side apply, edit,
label, annotate and patch all send these. The semantics are
apimachinery/pkg/util/strategicpatch's, with the field strategies read from
the schema (x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key):

- maps merge key by key; a null deletes the key;
- lists whose strategy is "merge" merge: lists of maps by the merge key
  (containers by name, ports by containerPort, env by name ...), lists of
  scalars as sets (union); every other list is replaced whole;
- directives: `$patch: replace|delete` in a map or list item (`merge` in a
  map is accepted as the default it names), `$retainKeys: [...]` (clear the
  keys not listed, as for strategy/rollingUpdate or a volume's source),
  `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`;
- order: `$setElementOrder` wins; otherwise patch items keep the patch's order
  and are interleaved with the items only the object has, which keep theirs —
  so an item new to the list comes first, exactly as Kubernetes places it.

Errors follow kube-apiserver's interpretStrategicMergePatchError: malformed
directives are 400 BadRequest, lists of lists and content outside $retainKeys
are 422 Invalid. Errors Kubernetes leaves unclassified (an unknown `$patch`,
an item without its merge key) would be 500 there; here they are 400.

`create_two_way_merge_patch` and `create_three_way_merge_patch` compute
patches the way kubectl does client-side (strategicdiff.py).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError
from ..schema import Node
from .jsonpatch import rejected

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_PREFIX = "$deleteFromPrimitiveList"
ORDER_PREFIX = "$setElementOrder"

ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_ORDER_LIST = "invalid patch format of setElementOrder list"
ERR_NOT_RETAINED = "patch content doesn't match retainKeys list"
ERR_LIST_OF_LISTS = "lists of lists are not supported"


@dataclass(frozen=True)
class Mode:
    """How a merge treats directives and nulls.

    `parallel`: apply the parallel lists ($deleteFromPrimitiveList, $setElementOrder, $retainKeys)
    — the server applying a patch — rather than carry them along — a client merging two patches.
    `ignore_nulls`: a null for a key the original lacks is dropped rather than kept."""

    parallel: bool
    ignore_nulls: bool


SERVER = Mode(parallel=True, ignore_nulls=True)
PATCHES = Mode(parallel=False, ignore_nulls=False)


def apply_strategic_merge_patch(doc: Mapping[str, Any], patch: Any, node: Node) -> dict[str, Any]:
    """`doc` with the strategic merge patch applied; neither input is modified."""
    if patch is None:
        patch = {}  # JSON null decodes to an empty patch in Kubernetes too
    if not isinstance(patch, dict):
        kind = {"list": "array", "map": "object"}.get(_json_kind(patch), _json_kind(patch))
        raise BadRequestError(f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
    original = copy.deepcopy(dict(doc)) if isinstance(doc, Mapping) else {}
    return merge_map(original, copy.deepcopy(patch), node, SERVER)


# --- schema lookups ------------------------------------------------------------------------------

def field_meta(node: Node | None, key: str) -> tuple[Node | None, str, bool, str]:
    """The schema of `key` under `node`, its patch strategy ("merge", "replace" or ""), whether it
    retains keys, and its merge key. Unknown fields merge maps and replace lists."""
    sub = None
    if node is not None:
        if key in node.properties:
            sub = node.field(key)
        elif node.is_map:
            sub = node.values()
    if sub is None:
        return None, "", False, ""
    strategies = [s for s in sub.patch_strategy.split(",") if s]
    retain = "retainKeys" in strategies
    others = [s for s in strategies if s != "retainKeys"]
    if len(others) > 1:
        raise BadRequestError(f"unexpected patch strategy: {strategies}")
    return sub, (others[0] if others else ""), retain, sub.patch_merge_key


def _items(node: Node | None) -> Node | None:
    return node.items() if node is not None else None


# --- maps ----------------------------------------------------------------------------------------

def merge_map(original: dict[str, Any], patch: dict[str, Any], node: Node | None, mode: Mode) -> dict[str, Any]:
    """Merge `patch` into `original` (both are consumed)."""
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        rest = {k: v for k, v in patch.items() if k != DIRECTIVE}
        if directive == "replace":
            return merge_map({}, rest, node, mode) if mode.parallel else rest
        if directive == "delete":
            return {}
        if directive != "merge":
            raise BadRequestError(f"unknown patch type: {go_format(directive)} in map: {go_format(patch)}")
        patch = rest
    if original is None:
        original = {}
    _retain_keys(original, patch, mode)
    _merge_ordered_lists(original, patch, node, mode)
    # Deletions from primitive lists come after additions, so an item both added and deleted goes.
    keys = sorted(patch, key=lambda k: k.startswith(DELETE_PREFIX))
    for key in keys:
        value = patch[key]
        delete_list = False
        if key.startswith(DELETE_PREFIX):
            if not mode.parallel:
                original[key] = value
                continue
            key = _strip_prefix(key, DELETE_PREFIX, ERR_PRIMITIVE_LIST)
            delete_list = True
        if value is None:
            original.pop(key, None)
            if mode.ignore_nulls:
                continue
        sub, strategy, _, merge_key = field_meta(node, key)
        if key not in original or _json_kind(original[key]) != _json_kind(value):
            if not delete_list:
                original[key] = _fresh(value, sub, strategy, merge_key, mode)
            continue
        current = original[key]
        if isinstance(value, dict):
            original[key] = value if strategy == "replace" else merge_map(current, value, sub, mode)
        elif isinstance(value, list):
            original[key] = merge_list(current, value, sub, strategy, merge_key, delete_list, mode)
        else:
            original[key] = value
    return original


def _fresh(value: Any, sub: Node | None, strategy: str, merge_key: str, mode: Mode) -> Any:
    """A patch value for a key the original lacks. Kubernetes takes it as it is; on the server it
    is merged into an empty value instead, so that its directives and nulls are processed."""
    if not mode.parallel or value is None:
        return value
    if isinstance(value, dict):
        return value if strategy == "replace" else merge_map({}, value, sub, mode)
    if isinstance(value, list):
        if merge_key and any(isinstance(v, dict) and merge_key not in v for v in value):
            return value  # items without their merge key: taken as they are, as Kubernetes takes them
        return merge_list([], value, sub, strategy, merge_key, False, mode)
    return value


def _strip_prefix(key: str, prefix: str, error: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise BadRequestError(error)
    return rest


def _retain_keys(original: dict[str, Any], patch: dict[str, Any], mode: Mode) -> None:
    """Apply `$retainKeys`: clear the keys of `original` it does not list."""
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not mode.parallel:
        if RETAIN_KEYS in original and original[RETAIN_KEYS] != retain:
            raise BadRequestError(f"{go_format(original[RETAIN_KEYS])} and {go_format(retain)} are not deep "
                                  "equal: this may happen when calculating the 3-way diff patch")
        original[RETAIN_KEYS] = retain
        return
    if not isinstance(retain, list):
        raise BadRequestError(ERR_RETAIN_KEYS)
    kept = {_hashable(k) for k in retain}
    for key, value in patch.items():
        if value is None or key.startswith(DELETE_PREFIX) or key.startswith(ORDER_PREFIX):
            continue
        if _hashable(key) not in kept:
            raise rejected(ERR_NOT_RETAINED)
    for key in [k for k in original if _hashable(k) not in kept]:
        del original[key]


def _merge_ordered_lists(original: dict[str, Any], patch: dict[str, Any], node: Node | None, mode: Mode) -> None:
    """Process each `$setElementOrder/<list>` together with `<list>`: merge, then order the result
    by the directive, then by the patch, then by the original (precedence in that order)."""
    for key in [k for k in patch if k.startswith(ORDER_PREFIX)]:
        order = patch.pop(key)
        if not mode.parallel:
            if key in original and original[key] != order:
                raise BadRequestError(ERR_ORDER_LIST)
            original[key] = order
        if not isinstance(order, list):
            raise BadRequestError(f"expected a []interface {{}}, but received a {_go_type(order)}")
        name = _strip_prefix(key, ORDER_PREFIX, ERR_ORDER_LIST)
        current, changes = original.get(name), patch.get(name)
        for value in (current, changes):
            if value is not None and not isinstance(value, list):
                raise BadRequestError(f"expected a []interface {{}}, but received a {_go_type(value)}")
        sub, strategy, _, merge_key = field_meta(node, name)
        _check_order(changes or [], order, merge_key)
        if current is not None and changes is None:
            merged = current
        elif current is None and changes is not None:
            merged = _fresh(changes, sub, strategy, merge_key, mode)
        elif current is not None:
            merged = merge_list(current, changes, sub, strategy, merge_key, False, mode)
        else:
            continue
        if merged:
            kind = _element_kind(current or [], changes or [])
            listed, unlisted = _partition(merged, order, merge_key)
            merged = _normalize_order(listed, unlisted, order, current or [], merge_key, kind)
        original[name] = merged
        patch.pop(name, None)


def _check_order(changes: list, order: list, merge_key: str) -> None:
    """The patch list's items must appear in `$setElementOrder` in the same relative order."""
    if not order or not changes:
        return
    kept = [c for c in changes if not (merge_key and isinstance(c, dict) and c.get(DIRECTIVE) == "delete")]
    pi = oi = 0
    while pi < len(kept) and oi < len(order):
        item = kept[pi]
        if isinstance(item, dict) and DIRECTIVE in item:
            pi += 1
            continue
        if _same(item, order[oi], merge_key):
            pi += 1
        oi += 1
    if pi < len(kept):
        raise BadRequestError(f"The order in patch list:\n{go_format(changes)}\n doesn't match "
                              f"{ORDER_PREFIX} list:\n{go_format(order)}\n")


# --- lists ---------------------------------------------------------------------------------------

def merge_list(original: list, patch: list, node: Node | None, strategy: str, merge_key: str,
               delete_list: bool, mode: Mode) -> list:
    """Merge a list field: by its merge strategy, or replaced whole. Deletion lists are merged
    whatever the strategy."""
    if strategy == "merge" or delete_list:
        return _merge_slice(original, patch, _items(node), merge_key, mode, delete_list)
    return patch


def _merge_slice(original: list, patch: list, item_node: Node | None, merge_key: str, mode: Mode,
                 delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if mode.parallel and delete_list:
            doomed = {_hashable(v) for v in patch}
            return [v for v in original if _hashable(v) not in doomed]
        merged = _dedupe(original + patch)
        merge_key = ""
    else:
        if not merge_key:
            raise BadRequestError(f"cannot merge lists without merge key for {item_node!r}")
        original, patch = _special_items(original, patch, merge_key)
        merged = _merge_items(original, patch, merge_key, item_node, mode)
    listed, unlisted = _partition(merged, patch, merge_key)
    return _normalize_order(listed, unlisted, patch, original, merge_key, kind)


def _special_items(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Apply the `$patch` items of a list patch; return the original left and the plain items."""
    plain = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise BadRequestError(f"map: {go_format(item)} does not contain declared merge key: {merge_key}")
            original = [o for o in original if not _matches(o, merge_key, item[merge_key])]
        elif directive == "replace":
            replace = True  # keep going: the other $patch items must still be dropped
        elif directive == "merge":
            raise BadRequestError("merging lists cannot yet be specified in the patch")
        else:
            raise BadRequestError(f"unknown patch type: {go_format(directive)} in map: {go_format(item)}")
    if replace:
        return plain, []
    return original, plain


def _matches(item: Any, merge_key: str, value: Any) -> bool:
    if not isinstance(item, dict):
        raise BadRequestError("value for key is not a map.")
    return merge_key in item and _hashable(item[merge_key]) == _hashable(value)


def _merge_items(original: list, patch: list, merge_key: str, item_node: Node | None, mode: Mode) -> list:
    out = list(original)
    for item in patch:
        if merge_key not in item:
            raise BadRequestError(f"map: {go_format(item)} does not contain declared merge key: {merge_key}")
        found = next((i for i, o in enumerate(out) if _matches(o, merge_key, item[merge_key])), None)
        if found is not None:
            out[found] = merge_map(out[found], item, item_node, mode)
        else:
            out.append(merge_map({}, item, item_node, mode) if mode.parallel else item)
    return out


def _partition(items: list, by: list, merge_key: str) -> tuple[list, list]:
    """Items present in `by` (by merge key, or by value for scalars), and the others."""
    present = {_identity(v, merge_key) for v in by}
    listed = [v for v in items if _identity(v, merge_key) in present]
    unlisted = [v for v in items if _identity(v, merge_key) not in present]
    return listed, unlisted


def _normalize_order(listed: list, unlisted: list, listed_order: list, server_order: list,
                     merge_key: str, kind: str) -> list:
    """Sort the patch's items by the patch (or $setElementOrder) order and the object's own items by
    their order, then interleave them (Kubernetes' normalizeElementOrder)."""
    listed = _sort_by(listed, listed_order, merge_key, kind)
    unlisted = _sort_by(unlisted, server_order, merge_key, kind)
    return _interleave(unlisted, listed, server_order, merge_key)


def _sort_by(items: list, order: list, merge_key: str, kind: str) -> list:
    deletions: list = []
    if kind == "map":
        for v in [*items, *order]:
            if not isinstance(v, dict):
                raise BadRequestError(f"expected a map[string]interface {{}}, but received a {_go_type(v)}")
            if merge_key not in v:
                raise BadRequestError(f"map: {go_format(v)} does not contain declared merge key: {merge_key}")
        deletions = [v for v in items if v.get(DIRECTIVE) == "delete"]
        items = [v for v in items if v.get(DIRECTIVE) != "delete"]
    positions = _positions(order, merge_key)
    ranked = sorted(enumerate(items), key=lambda iv: (positions.get(_identity(iv[1], merge_key), len(order)), iv[0]))
    return [v for _, v in ranked] + deletions


def _interleave(left: list, right: list, server_order: list, merge_key: str) -> list:
    """Kubernetes' mergeSortedSlice: insert the object's own items (left) among the patch's (right),
    a left item going first only when both are in the object and it came first there."""
    positions = _positions(server_order, merge_key)
    out = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i < len(left) and j < len(right):
            li = positions.get(_identity(left[i], merge_key))
            ri = positions.get(_identity(right[j], merge_key))
            if li is not None and ri is not None and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
        elif i < len(left):
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out


def _positions(order: list, merge_key: str) -> dict:
    out: dict = {}
    for i, v in enumerate(order):
        out.setdefault(_identity(v, merge_key), i)
    return out


def _identity(item: Any, merge_key: str) -> Any:
    if merge_key and isinstance(item, dict):
        return _hashable(item.get(merge_key))
    return _hashable(item)


def _same(a: Any, b: Any, merge_key: str) -> bool:
    if not merge_key:
        return _hashable(a) == _hashable(b)
    for v in (a, b):
        if not isinstance(v, dict) or merge_key not in v:
            raise BadRequestError(f"map: {go_format(v)} does not contain declared merge key: {merge_key}")
    return _hashable(a[merge_key]) == _hashable(b[merge_key])


def _dedupe(values: list) -> list:
    seen: set = set()
    out = []
    for v in values:
        h = _hashable(v)
        if h not in seen:
            seen.add(h)
            out.append(v)
    return out


def _element_kind(*lists: list) -> str:
    kind = None
    for values in lists:
        for v in values:
            k = _json_kind(v)
            if k == "list":
                raise rejected(ERR_LIST_OF_LISTS)
            if kind is None:
                kind = k
            elif kind != k:
                raise BadRequestError(f"list element types are not identical: {go_format(list(lists))}")
    if kind is None:
        raise BadRequestError("no elements in any of the given slices")
    return kind


# --- values --------------------------------------------------------------------------------------

def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def _hashable(value: Any) -> Any:
    """A key under which equal JSON values (and only they) meet: true is not 1."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z",)
    if isinstance(value, list):
        return ("l", tuple(_hashable(v) for v in value))
    return ("m", tuple(sorted((k, _hashable(v)) for k, v in value.items())))


def _go_type(value: Any) -> str:
    return {"map": "map[string]interface {}", "list": "[]interface {}", "bool": "bool",
            "number": "float64", "string": "string", "null": "<nil>"}[_json_kind(value)]


def go_format(value: Any) -> str:
    """A value as Go's %v prints it, for messages worded as Kubernetes words them."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
